"""A diffusion model end to end: its files are the denoiser, parity covers the sampler loop, and every serving
path runs that loop (in-process, Triton's model.py over HTTP and gRPC, the front door, `ganexport infer`).

One tiny smoke model (8x8 digits), built once (``diffusion_published``) and served by one Triton for this
module. Names, shapes and ranges come from the catalog and the published signature, never typed here.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from ganexport import catalog, images
from ganexport.cli import cli
from ganexport.export import build as pipeline
from ganexport.export import onnx_export, parity
from ganexport.repository import (
    CONFIG_FILE, MODEL_FILES, WARMUP_DIR, latest, read_parity, read_signature,
)
from ganexport.repository_config import config_pbtxt, warmup_files
from ganexport.serving.backends import connect
from ganexport.serving.supervisor import probe_inputs
from ganexport.serving.validation import InvalidInput
from ganexport.training import checkpoint

from conftest import assert_rows_are_their_own, perturbing_export

MODEL = next(name for name, spec in catalog.MODELS.items() if spec.kind == "diffuse")
ONNX_FILE, TS_FILE = MODEL_FILES["onnxruntime"], MODEL_FILES["torchscript"]
TWIN = catalog.get(MODEL).signatures()[0].for_runtime("torchscript").name


@pytest.fixture(scope="module")
def repo(diffusion_published):
    return diffusion_published[0]


@pytest.fixture(scope="module")
def sig(repo):
    """The signature the tiny model was published with (8x8 images, not the catalog's 28x28)."""
    return read_signature(latest(repo, MODEL))


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def seeded(sig, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise and labels from 0 up, the last row "no class"."""
    noise = np.random.default_rng(seed).standard_normal((n, *sig.inputs[0].shape)).astype(np.float32)
    labels = np.arange(n, dtype=np.int64) % (int(sig.input("label").high) + 1)
    labels[-1] = sig.diffusion["null_label"]
    return noise, labels


# --------------------------------------------------------------------------- export and parity


def test_the_files_are_the_denoiser_and_the_model_directory_carries_the_diffuse_signature(repo, sig):
    den = sig.denoiser()
    model = onnx.load(str(latest(repo, MODEL) / ONNX_FILE))
    assert [i.name for i in model.graph.input] == [t.name for t in den.inputs]
    assert [o.name for o in model.graph.output] == [t.name for t in den.outputs]
    for tensor in model.graph.input:
        assert tensor.type.tensor_type.shape.dim[0].dim_param  # a symbolic batch
    feeds = parity.denoiser_inputs(sig)[-1]  # the denoiser's max batch, the last timestep
    assert len(feeds["x"]) == den.max_batch_size == 2 * sig.max_batch_size
    ts = parity.torch_run(pipeline.torchscript.load(latest(repo, TWIN) / TS_FILE), den)
    assert ts(feeds)[0].shape == feeds[den.inputs[0].name].shape
    for name in (MODEL, TWIN):
        published = read_signature(latest(repo, name))
        assert published.kind == "diffuse" and published.diffusion == sig.diffusion
        config = (repo / name / CONFIG_FILE).read_text()
        assert all(f'name: "{t.name}"' in config for t in (*sig.inputs, *sig.outputs))
        for fname, data in warmup_files(sig).items():  # steps = 1 for the warm-up, from a file
            assert (repo / name / WARMUP_DIR / fname).read_bytes() == data and fname in config


def test_parity_records_the_denoiser_and_the_sampler_at_each_step_count(repo, sig):
    report = read_parity(latest(repo, MODEL))
    assert report["passed"] and report["sampler_gate"]["steps"] == list(parity.SAMPLER_STEPS)
    den = sig.denoiser()
    denoised = [t for t in report["inputs_tried"] if den.inputs[0].name in t]
    assert {t["x"][0] for t in denoised} == {1, 4, den.max_batch_size}
    assert len(denoised) == 3 * len(parity.denoiser_timesteps(sig))
    assert parity.denoiser_timesteps(sig) == (0, 1, sig.diffusion["timesteps"] // 2 - 1, sig.diffusion["timesteps"] - 1)
    for backend, r in report["backends"].items():
        assert r["max_abs_error"] <= parity.GATES[backend]["atol"]
        assert set(r["sampler"]) == {str(s) for s in parity.SAMPLER_STEPS}
        for figures in r["sampler"].values():
            assert figures["max_uint8_levels"] <= parity.SAMPLER_MAX_LEVELS
            assert figures["differing_fraction"] <= parity.SAMPLER_MAX_DIFFERING
    assert report["backends"]["torchscript"]["max_abs_error"] == 0.0  # a trace of the same ops


def test_the_sampler_gate_counts_levels_and_differing_values():
    ref = np.full((4, 8, 8, 1), 100, np.uint8)
    near, far, many = ref.copy(), ref.copy(), ref.copy()
    near.flat[0] += parity.SAMPLER_MAX_LEVELS
    far.flat[0] += parity.SAMPLER_MAX_LEVELS + 1
    many.flat[:int(ref.size * parity.SAMPLER_MAX_DIFFERING) + 1] += 1
    for got, fails in ((near, False), (far, True), (many, True)):
        c = parity.Comparison("onnxruntime")
        parity._sampler_gate(c, ref, got, "sampler 10 steps")
        assert bool(c.failures) == fails, c.failures


@pytest.mark.slow  # a second whole build (export and the sampler's parity); verify's refusal stays fast
def test_build_refuses_a_tampered_denoiser_and_the_previous_version_keeps_serving(tmp_path, repo, sig,
                                                                                  tiny_checkpoints, monkeypatch):
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    before = tree_digest(copy)
    noise, labels = seeded(sig, 3)
    with connect("onnxruntime", repository=copy) as b:
        served = b.diffuse(MODEL, noise, labels, 5, guidance=2.0)
    monkeypatch.setattr(onnx_export, "export_onnx", perturbing_export(onnx_export.export_onnx))
    result = CliRunner().invoke(cli, ["build", "--model", MODEL, "--checkpoint", str(tiny_checkpoints[MODEL]),
                                      "--repository", str(copy)])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and f"{MODEL}: onnxruntime disagrees" in error, error
    assert tree_digest(copy) == before
    with connect("onnxruntime", repository=copy) as b:
        np.testing.assert_array_equal(b.diffuse(MODEL, noise, labels, 5, guidance=2.0), served)


def test_verify_rechecks_the_published_denoiser(tmp_path, repo, tiny_checkpoints):
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    assert pipeline.verify(MODEL, checkpoint_path=tiny_checkpoints[MODEL], repo=copy, log=lambda m: None)
    path = latest(copy, MODEL) / ONNX_FILE
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[:] += 0.5
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(path))
    with pytest.raises(pipeline.VerifyError) as err:
        pipeline.verify(MODEL, checkpoint_path=tiny_checkpoints[MODEL], repo=copy, log=lambda m: None)
    assert f"{MODEL}:" in str(err.value) and "denoiser differs" in str(err.value) and TWIN not in str(err.value)


def test_the_native_flavour_refuses_a_diffusion_model_in_one_line(tmp_path, tiny_checkpoints, sig):
    result = CliRunner().invoke(cli, ["build", "--model", MODEL, "--checkpoint", str(tiny_checkpoints[MODEL]),
                                      "--flavor", "native", "--repository", str(tmp_path / "r")])
    assert result.exit_code == 2
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and "--flavor embedded" in error, error
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="Python backend"):
        config_pbtxt(sig, flavor="native")


# --------------------------------------------------------------------------- in-process serving


def _ddim_oracle(eps, timesteps: int, noise: np.ndarray, labels: np.ndarray, null: int, steps: int,
                 guidance: float) -> np.ndarray:
    """Deterministic DDIM written here from its definition, in float64, apart from ganexport.diffusion: the cosine
    schedule (Nichol & Dhariwal, betas capped at 0.999), "trailing" timesteps from T - 1 down, classifier-free
    guidance, x0 clipped to [-1, 1] and the noise it implies. ``eps(x NHWC, t, labels)`` is the denoiser."""
    f = np.cos((np.arange(timesteps + 1) / timesteps + 0.008) / 1.008 * np.pi / 2) ** 2
    abar = np.cumprod(1 - np.minimum(1 - f[1:] / f[:-1], 0.999))
    walk = [int(round(timesteps - i * timesteps / steps)) - 1 for i in range(steps)]
    x = noise.astype(np.float64)
    for i, t in enumerate(walk):
        prev = abar[walk[i + 1]] if i + 1 < steps else 1.0
        cond, uncond = eps(x, t, labels), eps(x, t, np.full_like(labels, null))
        e = np.where((labels != null)[:, None, None, None], uncond + guidance * (cond - uncond), cond)
        x0 = np.clip((x - np.sqrt(1 - abar[t]) * e) / np.sqrt(abar[t]), -1, 1)
        e = (x - np.sqrt(abar[t]) * x0) / np.sqrt(1 - abar[t])
        x = np.sqrt(prev) * x0 + np.sqrt(1 - prev) * e
    return np.clip(np.rint((x + 1) * 127.5), 0, 255)


def test_in_process_backends_run_ddim_around_the_published_denoiser(repo, sig, tiny_checkpoints):
    """Against an oracle: DDIM written in this test around the checkpoint's PyTorch net. And the published
    denoiser file, in a plain onnxruntime session, gives the eager net's noise estimate (not parity.json's)."""
    import onnxruntime as ort
    import torch

    net = checkpoint.load(tiny_checkpoints[MODEL]).build(sig.net).eval()

    def eager_eps(x, t, labels):
        with torch.no_grad():
            out = net.eps(torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2),
                          torch.full((len(x),), float(t)), torch.from_numpy(labels))
        return out.permute(0, 2, 3, 1).double().numpy()

    den = sig.denoiser()
    session = ort.InferenceSession(str(latest(repo, MODEL) / ONNX_FILE), providers=["CPUExecutionProvider"])
    noise, labels = seeded(sig, 5)
    for t in (0, sig.diffusion["timesteps"] // 3, sig.diffusion["timesteps"] - 1):
        served = session.run(None, {den.inputs[0].name: noise, den.inputs[1].name: np.full((5, 1), t, np.float32),
                                    den.inputs[2].name: labels[:, None]})[0]
        assert np.abs(served - eager_eps(noise, t, labels)).max() < 1e-4, t

    want = _ddim_oracle(eager_eps, sig.diffusion["timesteps"], noise, labels, sig.diffusion["null_label"], 6, 2.0)
    with connect("onnxruntime", repository=repo) as ort_b, connect("torchscript", repository=repo) as ts_b:
        images = ort_b.diffuse(MODEL, noise, labels, 6, guidance=2.0)
        ts_images, frames = ts_b.diffuse(MODEL, noise, labels[:, None], 6, guidance=2.0, trajectory=True)
    assert images.dtype == np.uint8 and images.shape == (5, *sig.outputs[0].shape)
    for got in (images, ts_images):
        assert np.abs(got.astype(np.int64) - want).max() <= 1  # float32 against float64: a level's edge at most
    assert frames.shape == (5, *sig.output("trajectory").shape)
    np.testing.assert_array_equal(frames[:, -1], ts_images)


def test_settings_broadcast_and_rows_with_different_settings_are_answered_alike(repo, sig):
    noise, labels = seeded(sig, 4)
    steps, guidance, eta = np.array([3, 3, 5, 5], np.int32), np.array([1, 2, 2, 0], np.float32), \
        np.array([0, 0, 1, 0], np.float32)
    with connect("onnxruntime", repository=repo) as b:
        mixed = b.diffuse(MODEL, noise, labels, steps, guidance=guidance, eta=eta)
        alone = [b.diffuse(MODEL, noise[i:i + 1], int(labels[i]), int(steps[i]), guidance=float(guidance[i]),
                           eta=float(eta[i]))[0] for i in range(4)]  # one request per row, scalar settings
        assert_rows_are_their_own(alone, mixed)
        no_class = np.full(4, sig.diffusion["null_label"], np.int64)
        np.testing.assert_array_equal(b.diffuse(MODEL, noise, None, 3), b.diffuse(MODEL, noise, no_class, 3))
        method, args = probe_inputs(b.metadata(MODEL))  # what the supervisor asks a served model
        assert getattr(b, method)(MODEL, *args).shape == (1, *sig.outputs[0].shape)


@pytest.mark.parametrize("setting,value,words", [
    ("steps", 0, ("steps", "1000")), ("steps", 1001, ("steps", "1000")), ("steps", 2**40, ("steps",)),
    ("steps", 2.5, ("steps", "integer")), ("guidance", 21.0, ("guidance", "20")), ("guidance", -1.0, ("guidance",)),
    ("eta", 1.5, ("eta",)), ("eta", float("nan"), ("eta", "NaN")), ("label", 11, ("label", "10")),
    ("label", -1, ("label",)), ("noise", "nan", ("noise", "NaN")),
])
def test_bad_settings_are_refused_in_one_line(repo, sig, setting, value, words):
    noise, _ = seeded(sig, 2)
    args = {"label": 3, "steps": 4, "guidance": 2.0, "eta": 0.0}
    if setting == "noise":
        noise[0, 0] = np.nan
    else:
        args[setting] = value
    with connect("onnxruntime", repository=repo) as b, pytest.raises(InvalidInput) as err:
        b.diffuse(MODEL, noise, args.pop("label"), args.pop("steps"), **args)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_sample_and_translate_point_a_diffusion_model_at_diffuse(repo, sig):
    noise, labels = seeded(sig, 1)
    with connect("onnxruntime", repository=repo) as b:
        for call in (lambda: b.sample(MODEL, noise, labels), lambda: b.translate(MODEL, noise)):
            with pytest.raises(InvalidInput, match=r"use diffuse\(\)"):
                call()


def test_infer_draws_a_grid_and_a_trajectory_and_refuses_bad_steps_in_one_line(tmp_path, repo, sig):
    run = CliRunner().invoke
    grid = run(cli, ["infer", "--model", MODEL, "--label", "7", "--steps", "5", "--guidance", "2", "--count", "4",
                     "--repository", str(repo), "--output", str(tmp_path / "grid.png")])
    assert grid.exit_code == 0, grid.output
    assert "4 samples" in grid.output and "5 steps, guidance 2, eta 0" in grid.output
    walk = run(cli, ["infer", "--model", MODEL, "--steps", "5", "--count", "3", "--trajectory",
                     "--repository", str(repo), "--output", str(tmp_path / "walk.png")])
    assert walk.exit_code == 0, walk.output
    frames, (h, w, c) = sig.diffusion["frames"], sig.outputs[0].shape
    rows_of_frames = images.grid_image(np.zeros((3 * frames, h, w, c), np.uint8), frames,
                                       scale=images.upscale_for_viewing(h))
    assert Image.open(tmp_path / "walk.png").size == rows_of_frames.size
    assert f"3 trajectories of {frames} frames" in walk.output
    for args, words in ((["--steps", "0"], "steps"), (["--label", "11"], "label")):
        bad = run(cli, ["infer", "--model", MODEL, *args, "--repository", str(repo),
                        "--output", str(tmp_path / "bad.png")])
        assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and words in bad.stderr, bad.output
    other = run(cli, ["infer", "--model", "cgan", "--steps", "5", "--repository", str(repo)])
    assert other.exit_code == 2 and "--steps" in other.output


def test_the_front_door_caps_fit_the_largest_request_of_the_catalog_model():
    """At the catalog's own shapes (28x28, batch 64), not only the tiny test net's: the largest valid request,
    as tritonclient writes it in JSON and in binary, passes the body cap and the declared-shape checks."""
    httpclient = pytest.importorskip("tritonclient.http")
    import orjson

    from ganexport.serving.front_door import Gatekeeper
    from ganexport.serving.front_door_http import infer_declaration
    from ganexport.serving.validation import Declared

    sig = catalog.get(MODEL).signatures()[0]
    gate, n = Gatekeeper({MODEL: sig}), sig.max_batch_size
    largest = {"noise": np.full((n, *sig.inputs[0].shape), -1.2345678901234567e-05, np.float32),
               "label": np.full((n, 1), sig.input("label").high, np.int64),
               "steps": np.full((n, 1), sig.input("steps").high, np.int32),
               "guidance": np.full((n, 1), sig.input("guidance").high, np.float32),
               "eta": np.full((n, 1), sig.input("eta").high, np.float32)}
    for binary in (True, False):
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            _raw_request(httpclient, largest, binary))
        json_size = json_size if json_size is not None else len(body)
        assert len(body) <= gate.body_limit(MODEL, binary=binary)
        declared, values = infer_declaration(orjson.loads(body[:json_size]), len(body) - json_size)
        gate.check_infer(MODEL, declared, values)
    with pytest.raises(InvalidInput, match="steps"):
        gate.check_infer(MODEL, {**declared, "steps": Declared("INT64", (n, 1), nbytes=8 * n)}, {})


# --------------------------------------------------------------------------- through Triton


@pytest.fixture(scope="module")
def server(repo, sig):
    """The real Triton (behind its front door) on the tiny diffusion model and its TorchScript twin. The ONNX
    model waits up to 0.5 s for company (less once a preferred batch is queued), so concurrent requests are merged
    into one execution however loaded the machine is."""
    pytest.importorskip("tritonclient.http")
    from ganexport.serving.triton_server import TritonServer, free_port

    patient = {MODEL: config_pbtxt(sig, max_queue_delay_us=500_000)}
    with TritonServer(repo, configs=patient, http_port=free_port(), grpc_port=free_port(), metrics_port=0) as srv:
        yield srv


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_returns_the_in_process_images(server, repo, sig, protocol):
    noise, labels = seeded(sig, 3, seed=protocol == "grpc")
    url = server.http_url if protocol == "http" else server.grpc_url
    with connect(f"triton-{protocol}", url=url) as remote, connect("onnxruntime", repository=repo) as local:
        assert remote.metadata(MODEL) == sig
        want, want_frames = local.diffuse(MODEL, noise, labels, 7, guidance=2.0, trajectory=True)
        for name in (MODEL, TWIN):
            got = remote.diffuse(name, noise, labels, 7, guidance=2.0)
            got_image, got_frames = remote.diffuse(name, noise, labels, 7, guidance=2.0, trajectory=True)
            assert np.abs(got.astype(int) - want).max() <= 1 and np.array_equal(got, got_image)
            assert np.abs(got_frames.astype(int) - want_frames).max() <= 1


@pytest.mark.integration
def test_requests_with_different_settings_merged_by_triton_each_get_their_own_images(server, repo, sig):
    settings = [(steps, guidance, eta) for steps in (2, 4) for guidance in (1.0, 3.0) for eta in (0.0, 1.0)]
    noise, labels = seeded(sig, len(settings), seed=5)
    with connect("onnxruntime", repository=repo) as local:
        want = [local.diffuse(MODEL, noise[i:i + 1], labels[i:i + 1], s, guidance=g, eta=e)
                for i, (s, g, e) in enumerate(settings)]
    got, errors = [None] * len(settings), []

    def ask(i):
        s, g, e = settings[i]
        try:
            with connect("triton-http", url=server.http_url) as remote:
                got[i] = remote.diffuse(MODEL, noise[i:i + 1], labels[i:i + 1], s, guidance=g, eta=e)
        except Exception as err:  # collected, asserted below
            errors.append(err)

    before = _stats(server)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(settings))]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    after = _stats(server)
    assert not errors, errors
    assert_rows_are_their_own([g[0] for g in got], [w[0] for w in want])
    assert after[0] - before[0] == len(settings)
    assert after[1] - before[1] < len(settings), "the dynamic batcher merged no requests"


def _stats(server) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        s = client.get_inference_statistics(MODEL)["model_stats"][0]
    finally:
        client.close()
    return int(s["inference_count"]), int(s["execution_count"])


def _raw_request(module, inputs: dict[str, np.ndarray], binary: bool = True):
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        tensor = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        if module.__name__.endswith("http"):
            tensor.set_data_from_numpy(value, binary_data=binary)
        else:
            tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["http-binary", "http-json", "grpc"])
def test_the_front_door_passes_the_largest_request_and_refuses_bad_ones(server, sig, transport):
    """Raw tritonclient, no client-side checks: the front door's caps and declared-shape checks (from the
    signature) let the largest valid request through, batch and settings at their limits, and refuse others."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    module = grpcclient if transport == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc_url if transport == "grpc" else server.http_url)
    binary = transport != "http-json"
    n = sig.max_batch_size
    noise, labels = seeded(sig, n)
    largest = {"noise": noise * 100, "label": labels[:, None],
               "steps": np.full((n, 1), sig.input("steps").low, np.int32),  # the largest batch; a long walk is slow
               "guidance": np.full((n, 1), sig.input("guidance").high, np.float32),
               "eta": np.full((n, 1), sig.input("eta").high, np.float32)}
    bad = {"steps 0": {**largest, "steps": np.zeros((n, 1), np.int32)},
           "steps as INT64": {**largest, "steps": largest["steps"].astype(np.int64)},
           "a batch too large": {k: np.concatenate([v, v[:1]]) for k, v in largest.items()},
           "guidance above its range": {**largest, "guidance": largest["guidance"] + 1}}
    try:
        result = client.infer(MODEL, _raw_request(module, largest, binary),
                              outputs=[module.InferRequestedOutput(sig.outputs[0].name)])
        assert result.as_numpy(sig.outputs[0].name).shape == (n, *sig.outputs[0].shape)
        for why, inputs in bad.items():
            with pytest.raises(InferenceServerException) as err:
                client.infer(MODEL, _raw_request(module, inputs, binary))
            assert str(err.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), (why, err.value)
            assert "\n" not in err.value.message(), why
    finally:
        client.close()


def _log_lines(server, words: str) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines() if words in line]


@pytest.mark.integration
@pytest.mark.parametrize("door", ["front door", "triton"])
def test_a_grpc_client_that_gives_up_stops_its_walk(server, sig, door):
    """A gRPC client that passes its deadline on the longest walk (the largest batch, the most steps, seconds of
    CPU): through the front door, which passes the cancellation on, and straight to Triton, the stub stops the
    walk at its next step, says so in Triton's log, and is free for the next request."""
    from ganexport.serving.backends import BackendError

    url = server.grpc_url if door == "front door" else server.triton_grpc_url
    batch, steps = sig.max_batch_size, int(sig.input("steps").high)
    noise, labels = seeded(sig, batch)
    gave_up = "gave up: the walk stopped after"
    seen = len(_log_lines(server, gave_up))
    with connect("triton-grpc", url=url, timeout=2.0) as remote, pytest.raises(BackendError):
        remote.diffuse(MODEL, noise, labels, steps, guidance=2.0)
    deadline = time.monotonic() + 120  # the whole walk, many times over, on a loaded machine
    while len(_log_lines(server, gave_up)) == seen:
        assert time.monotonic() < deadline, "the walk ran to its end after its client gave up"
        time.sleep(0.2)
    calls = int(_log_lines(server, gave_up)[-1].split(gave_up)[1].split()[0])
    assert calls < steps, _log_lines(server, gave_up)[-1]  # one denoiser call per step (guided rows are twins)
    with connect("triton-grpc", url=url) as remote:
        assert remote.diffuse(MODEL, noise[:1], labels[:1], 2).shape == (1, *sig.outputs[0].shape)


@pytest.mark.integration
def test_a_model_busy_with_long_requests_is_not_reloaded(server, sig):
    """Every instance at work on long, valid requests (the largest batch, the most steps) makes the supervisor's
    probe wait past its timeout; the stubs' CPU time says busy, not hung, so the model is not reloaded (which
    would count towards giving up) and every request is answered."""
    from ganexport.serving.supervisor import Supervisor

    messages: list[str] = []
    supervisor = Supervisor(server, log=messages.append, probe_every=0.5, probe_timeout=2.0)
    watcher = threading.Thread(target=supervisor.run, daemon=True)
    watcher.start()
    batch, steps = sig.max_batch_size, int(sig.input("steps").high)
    noise, labels = seeded(sig, batch)
    answered, failed = [], []

    def client():  # back to back, until the supervisor has seen the model busy (or a minute and a half)
        with connect("triton-http", url=server.http_url, timeout=600) as remote:
            while not any(f"{MODEL} is busy" in m for m in messages) and time.monotonic() < deadline:
                try:
                    answered.append(remote.diffuse(MODEL, noise, labels, steps, guidance=2.0).shape)
                except Exception as e:  # noqa: BLE001 (a failed request is what the test looks for)
                    failed.append(str(e)[:200])

    deadline = time.monotonic() + 90
    try:
        while not supervisor.stubs.get(MODEL):
            assert time.monotonic() < deadline, "the supervisor found no stub to watch"
            time.sleep(0.1)
        clients = [threading.Thread(target=client) for _ in range(len(supervisor.stubs[MODEL]) + 1)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=600)
    finally:
        supervisor.stop()
        watcher.join(timeout=60)
    assert any(f"{MODEL} is busy" in m for m in messages), messages
    reloaded = [m for m in messages if f"reloading {MODEL}" in m or "does not answer" in m]
    assert not failed and not reloaded, (failed, messages)
    assert answered and all(shape == (batch, *sig.outputs[0].shape) for shape in answered)
