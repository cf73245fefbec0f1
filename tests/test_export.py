"""Export: every catalog entry exports, passes parity, publishes; the gate refuses bad exports."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ganexport import catalog, repository
from ganexport.export import build as pipeline
from ganexport.export import onnx_export, parity, wrappers
from ganexport.repository import CONFIG_FILE, MODEL_FILES, PYTHON_MODEL_FILE, read_parity
from ganexport.training import checkpoint

from conftest import perturbing_export

ONNX_FILE, TS_FILE = MODEL_FILES["onnxruntime"], MODEL_FILES["torchscript"]

def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with its sha256: 'exactly as it was' means this is unchanged."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("model", list(catalog.MODELS))
def test_build_publishes_every_triton_model_with_passing_parity(published, tiny_checkpoints, model):
    repo, versions = published
    ckpt = checkpoint.load(tiny_checkpoints[model])
    sigs = ckpt.spec.signatures(ckpt.image_shape, ckpt.hp)
    expected = {s.for_runtime(r).name for s in sigs for r in catalog.RUNTIME_SUFFIX}
    assert {name for name, _ in versions[model]} == expected
    for name, version in versions[model]:
        vdir = repo / name / str(version)
        report = read_parity(vdir)
        assert report["passed"] is True
        sig = next(s for s in sigs if name.startswith(s.name))
        levels = parity.SAMPLER_MAX_LEVELS if sig.diffusion else parity.MAX_LEVELS  # the sampler loop's images
        ort_gate = report["backends"]["onnxruntime"]
        assert ort_gate["max_abs_error"] <= 1e-4 and ort_gate["max_uint8_levels"] <= levels
        assert report["backends"]["torchscript"]["max_abs_error"] <= 1e-6
        batches = {shape[0] for tried in report["inputs_tried"] for shape in tried.values()}
        assert {1, 4, sig.max_batch_size} <= batches
        model_file = vdir / MODEL_FILES[report["runtime"]]
        assert report["files"][model_file.name] == repository.sha256(model_file)
        assert (repo / name / CONFIG_FILE).is_file() and (vdir / PYTHON_MODEL_FILE).is_file()
    # published files carry no absolute local paths
    for p in repo.rglob("*.json"):
        assert str(repo.parent) not in p.read_text() and str(Path.home()) not in p.read_text()


def _uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """An eager net's NCHW output in [-1, 1] as the uint8 NHWC image a client receives, written here from the
    convention (tanh range onto 0..255, rounded) rather than taken from the wrappers under test."""
    return np.clip(np.rint((x.permute(0, 2, 3, 1).numpy().astype(np.float64) + 1.0) * 127.5), 0, 255)


@pytest.mark.parametrize("model", [m for m, spec in catalog.MODELS.items() if spec.kind in ("sample", "translate")])
def test_each_published_file_run_by_onnxruntime_gives_the_eager_nets_images(published, tiny_checkpoints, model):
    """Not parity.json's own figures: the published .onnx file in a plain onnxruntime session, against the
    checkpoint's net run eagerly in this test, on inputs drawn here (images at sides that need no padding)."""
    import onnxruntime as ort

    ckpt = checkpoint.load(tiny_checkpoints[model])
    rng = np.random.default_rng(11)
    for sig in ckpt.spec.signatures(ckpt.image_shape, ckpt.hp):
        path = repository.latest(published[0], sig.name) / ONNX_FILE
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        net = ckpt.build(sig.net).eval()
        if sig.kind in ("encode", "edit"):
            _check_latent_model(session, sig, ckpt, rng)
            continue
        if sig.kind == "translate":
            image = rng.integers(0, 256, (2, 16, 24, sig.inputs[0].shape[-1]), dtype=np.uint8)
            feeds = {sig.inputs[0].name: image}
            eager_in = (torch.from_numpy(image).permute(0, 3, 1, 2).double() / 127.5 - 1.0).float(),
        else:
            z = rng.standard_normal((3, *sig.inputs[0].shape)).astype(np.float32)
            feeds, eager_in = {sig.inputs[0].name: z}, ()
            prior = ckpt.latent_prior  # a decoder fitted to its codes maps N(0, I) onto them in the graph
            code = z * np.asarray(prior[1], np.float32) + np.asarray(prior[0], np.float32) if prior else z
            eager_in = (torch.from_numpy(code),)
            if len(sig.inputs) == 2:  # a class label
                label = np.array([[0], [int(sig.inputs[1].high)], [1]], np.int64)
                feeds[sig.inputs[1].name] = label
                eager_in += (torch.from_numpy(label.reshape(-1)),)
        served = session.run([sig.outputs[0].name], feeds)[0]
        with torch.no_grad():
            want = _uint8_nhwc(net(*eager_in))
        assert served.dtype == np.uint8 and served.shape == want.shape, sig.name
        assert np.abs(served.astype(np.int64) - want).max() <= 1, sig.name  # float rounding at a level's edge


def _check_latent_model(session, sig, ckpt, rng):
    """An encoder file against the eager encoder's code (a VAE's mean), moved into the served decoder's latent
    space where the decoder carries a prior; an edit file against the eager decoder of that code plus the
    strengths times the attribute vectors the checkpoint stores."""
    image = rng.integers(0, 256, (3, *sig.inputs[0].shape), dtype=np.uint8)
    with torch.no_grad():
        out = ckpt.build(ckpt.spec.encoder)(torch.from_numpy(image).permute(0, 3, 1, 2).float() / 127.5 - 1)
        code = (out[0] if isinstance(out, tuple) else out).double()
        if sig.kind == "encode":
            prior = ckpt.latent_prior
            want = (code - torch.tensor(prior[0]).double()) / torch.tensor(prior[1]).double() if prior else code
            served = session.run([sig.outputs[0].name], {sig.inputs[0].name: image})[0]
            assert served.shape == tuple(want.shape), sig.name
            assert np.allclose(served, want.numpy(), rtol=1e-4, atol=1e-4), sig.name
            return
        stored = ckpt.meta["attribute_names"]
        vectors = torch.tensor(ckpt.meta["attribute_vectors"]).double()[[stored.index(a) for a in sig.attributes]]
        strength = rng.uniform(-1, 1, (3, len(sig.attributes))).astype(np.float32)
        want = _uint8_nhwc(ckpt.build(sig.net).double()(code + torch.from_numpy(strength).double() @ vectors))
    served = session.run([sig.outputs[0].name], {sig.inputs[0].name: image, sig.inputs[1].name: strength})[0]
    assert served.dtype == np.uint8 and served.shape == want.shape, sig.name
    assert np.abs(served.astype(np.int64) - want).max() <= 1, sig.name


def test_onnx_file_is_self_contained_with_requested_opset_and_dynamic_axes(published):
    repo, _ = published
    files = os.listdir(repo / "cgan" / "1")
    assert not any(f.endswith(".data") for f in files)  # no external data
    model = onnx.load(str(repo / "cgan" / "1" / ONNX_FILE))
    assert {o.domain: o.version for o in model.opset_import}[""] == onnx_export.DEFAULT_OPSET
    sig = catalog.get("cgan").signatures()[0]
    assert [i.name for i in model.graph.input] == [t.name for t in sig.inputs]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not fixed


@pytest.mark.parametrize("hw", [(8, 8), (9, 9), (37, 53), (250, 250), (64, 30)])
def test_translators_keep_arbitrary_input_sizes_exactly(published, hw):
    a2b = repository.latest(published[0], "cyclegan_a2b")
    sess = parity.ort_session(a2b / ONNX_FILE)
    ts = torch.jit.load(str(repository.latest(published[0], "cyclegan_a2b_torchscript") / TS_FILE))
    image = np.random.default_rng(0).integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    assert sess.run(None, {"image": image})[0].shape == image.shape
    assert tuple(ts(torch.from_numpy(image)).shape) == image.shape


def test_parity_gate_refuses_a_perturbed_onnx_weight(tmp_path, published, tiny_checkpoints, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    before = tree_digest(repo)
    monkeypatch.setattr(onnx_export, "export_onnx", perturbing_export(onnx_export.export_onnx))
    with pytest.raises(parity.ParityError, match="dcgan: onnxruntime disagrees"):
        pipeline.build("dcgan", checkpoint_path=tiny_checkpoints["dcgan"], repo=repo, log=lambda m: None)
    assert tree_digest(repo) == before


def test_the_float_gate_reads_the_float_inside_the_published_file(tmp_path):
    """A file whose float is off by a fraction of a uint8 level (its last bias nudged by 3e-3 after export) keeps
    its images within a level, so only the float gate can refuse it, and it must read that file's own float."""
    sig = catalog.get("cyclegan").signatures()[0]
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Tanh())
    with torch.no_grad():  # tanh(x + 0.1) on [-1, 1]: a slope of 1 near x = -0.1 (a zero bias is not exported)
        net[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        net[0].bias.fill_(0.1)
    wrapper = wrappers.Translator(net)
    path = onnx_export.export_onnx(wrapper, sig, pipeline.example_inputs(sig), tmp_path / ONNX_FILE)
    assert parity.check_parity(sig, wrapper, path, None)["passed"]
    model = onnx.load(str(path))
    bias = next(t for t in model.graph.initializer if t.name == "net.0.bias")
    bias.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) + np.float32(3e-3), bias.name))
    onnx.save(model, str(path))

    report = parity.check_parity(sig, wrapper, path, None)["backends"]["onnxruntime"]
    assert report["max_uint8_levels"] <= 1 and not report["passed"]
    assert "float max abs error" in report["failures"][0] and 2.5e-3 < report["max_abs_error"] <= 3.1e-3


def test_verify_names_a_corrupted_published_weight(tmp_path, published, tiny_checkpoints):
    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    assert pipeline.verify("cyclegan", checkpoint_path=tiny_checkpoints["cyclegan"], repo=repo, log=lambda m: None)
    path = repo / "cyclegan_a2b" / "1" / ONNX_FILE
    weight = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(path.read_bytes())
    offset = data.find(weight.raw_data) + len(weight.raw_data) // 2
    data[offset - offset % 4 + 3] ^= 0x40  # the exponent byte of one float32
    path.write_bytes(bytes(data))
    with pytest.raises(pipeline.VerifyError) as err:
        pipeline.verify("cyclegan", checkpoint_path=tiny_checkpoints["cyclegan"], repo=repo, log=lambda m: None)
    assert "cyclegan_a2b:" in str(err.value) and ONNX_FILE in str(err.value)
    assert "cyclegan_b2a" not in str(err.value)


def _nudged_checkpoint(path: Path, out: Path, by: float) -> Path:
    """The checkpoint at ``path`` with every RGB output layer's bias (the 3-value biases before the tanh) moved."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    nudged = [k for k, v in tensors.items() if k.endswith(".bias") and v.shape == (3,)]
    assert nudged, "no RGB output bias found"
    for k in nudged:
        tensors[k] = tensors[k] + by
    save_file(tensors, str(out), metadata=meta)
    return out


def test_verify_holds_published_files_to_the_float_gate(tmp_path, published, tiny_checkpoints):
    """A checkpoint a fraction of a uint8 level away (its output biases moved by 3e-3, 0.4 of a level) keeps the
    published images within a level, so only the float the files round can tell them apart: verify must."""
    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    nearby = _nudged_checkpoint(tiny_checkpoints["cyclegan"], tmp_path / "nearby.safetensors", 3e-3)
    with pytest.raises(pipeline.VerifyError) as err:
        pipeline.verify("cyclegan", checkpoint_path=nearby, repo=repo, log=lambda m: None)
    for name in ("cyclegan_a2b:", "cyclegan_a2b_torchscript:", "cyclegan_b2a:"):
        assert name in str(err.value)
    assert "float max abs error" in str(err.value) and "uint8 outputs differ" not in str(err.value)


def test_verify_holds_an_onnx_file_without_its_float_to_its_images(tmp_path, published, tiny_checkpoints):
    """An ONNX file that does not hold the float it rounds (as earlier versions exported them) is still verified,
    on its images: it passes against its own checkpoint and fails against one that moves the images."""
    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    version = repository.latest(repo, "cyclegan_a2b")
    path = version / ONNX_FILE
    model = onnx.load(str(path))
    kept = [v for v in model.graph.value_info if v.name != wrappers.FLOAT_OUTPUT]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(path))
    repository.write_checksums(version)
    assert not onnx_export.holds_float(path)

    assert "cyclegan_a2b" in pipeline.verify("cyclegan", checkpoint_path=tiny_checkpoints["cyclegan"], repo=repo,
                                             log=lambda m: None)
    far = _nudged_checkpoint(tiny_checkpoints["cyclegan"], tmp_path / "far.safetensors", 0.5)
    with pytest.raises(pipeline.VerifyError, match="cyclegan_a2b: published onnxruntime .*uint8 outputs differ"):
        pipeline.verify("cyclegan", checkpoint_path=far, repo=repo, log=lambda m: None)


def test_killed_build_leaves_the_repository_unchanged(tmp_path, published, tiny_checkpoints):
    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    before = tree_digest(repo)
    # vae: two signatures (decoder, encoder), so a kill after the first one's parity is mid-build, in seconds
    proc = subprocess.Popen([sys.executable, "-u", "-m", "ganexport.cli", "build", "--model", "vae",
                             "--checkpoint", str(tiny_checkpoints["vae"]), "--repository", str(repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # kill it once the first export has passed parity: mid-build
        if "parity torchscript" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert tree_digest(repo) == before
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_build_refuses_a_checkpoint_of_another_model(tmp_path, tiny_checkpoints):
    with pytest.raises(checkpoint.CheckpointError, match="not cgan"):
        pipeline.build("cgan", checkpoint_path=tiny_checkpoints["dcgan"], repo=tmp_path / "r", log=lambda m: None)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # a whole build: export and parity
def test_build_takes_a_run_directory_as_its_checkpoint(tmp_path, tiny_checkpoints):
    """`ganexport build --checkpoint runs/<model>/<run-id>`, the form the docs show."""
    from click.testing import CliRunner

    from ganexport.cli import cli

    run_dir = tiny_checkpoints["dcgan"].parent
    result = CliRunner().invoke(cli, ["build", "-m", "dcgan", "--checkpoint", str(run_dir),
                                      "--repository", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    report = read_parity(tmp_path / "r" / "dcgan" / "1")
    assert report["source"]["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoints["dcgan"].read_bytes()).hexdigest()


@pytest.mark.slow  # a whole export and parity run for one config line
def test_tensorrt_build_accelerates_the_onnx_model_only(tmp_path, tiny_checkpoints):
    repo = tmp_path / "r"
    pipeline.build("dcgan", checkpoint_path=tiny_checkpoints["dcgan"], repo=repo, flavor="native", gpu=True,
                   tensorrt=True, log=lambda m: None)
    onnx_config = (repo / "dcgan" / CONFIG_FILE).read_text()
    assert 'name : "tensorrt"' in onnx_config and "KIND_GPU" in onnx_config
    assert "tensorrt" not in (repo / "dcgan_torchscript" / CONFIG_FILE).read_text()


@pytest.mark.parametrize("flags", [["--tensorrt"], ["--tensorrt", "--flavor", "native"], ["--tensorrt", "--gpu"]])
def test_cli_refuses_tensorrt_outside_the_native_gpu_flavour(tmp_path, tiny_checkpoints, flags):
    from click.testing import CliRunner

    from ganexport.cli import cli

    result = CliRunner().invoke(cli, ["build", "-m", "dcgan", "--checkpoint", str(tiny_checkpoints["dcgan"]),
                                      "--repository", str(tmp_path / "r"), *flags])
    assert result.exit_code == 2 and "--tensorrt needs --flavor native --gpu" in result.output
    assert not (tmp_path / "r").exists()


def test_wrapper_rounds_tanh_range_to_full_uint8_range():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0]).view(1, 1, 1, 5)
    assert wrappers.to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255]


def test_published_autoencoder_decoder_maps_standard_normal_z_onto_its_training_codes(published, tiny_checkpoints):
    """Clients send z ~ N(0, I) to every sampler; the autoencoder's graph carries the fit to its codes."""
    ckpt = checkpoint.load(tiny_checkpoints["autoencoder"])
    mean, std = (np.asarray(v, np.float32) for v in ckpt.latent_prior)
    assert not (np.allclose(mean, 0, atol=1e-3) and np.allclose(std, 1, atol=1e-3))  # else the test proves nothing
    z = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    session = parity.ort_session(repository.latest(published[0], "autoencoder_decoder") / ONNX_FILE)
    served = session.run(None, {"z": z})[0].astype(np.int16)
    decoder = ckpt.build("decoder")
    with torch.no_grad():
        on_codes = wrappers.to_uint8(decoder(torch.from_numpy(z * std + mean))).numpy().astype(np.int16)
        raw = wrappers.to_uint8(decoder(torch.from_numpy(z))).numpy().astype(np.int16)
    assert np.abs(served - on_codes).max() <= 1
    assert np.abs(served - raw).max() > 1
    assert checkpoint.load(tiny_checkpoints["dcgan"]).latent_prior is None  # GANs sample N(0, I) as trained


def test_a_full_disk_while_publishing_is_one_line_and_leaves_every_twin_as_it_was(tmp_path, published,
                                                                                   tiny_checkpoints, monkeypatch):
    """The disk fills while the second of vae's four Triton models (decoder and encoder, each for two runtimes;
    seconds to build) is staged: nothing is installed, so the ONNX and TorchScript twins of both stay at the same
    version."""
    import errno

    from click.testing import CliRunner

    from ganexport import repository_writer
    from ganexport.cli import cli

    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    before = tree_digest(repo)
    real_copy, calls = shutil.copy2, []

    def copy_until_full(src, dst, *a, **kw):
        calls.append(dst)
        if len(calls) == 5:  # model file, parity.json, model.py per staged version: the second model's parity.json
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copy(src, dst, *a, **kw)

    monkeypatch.setattr(repository_writer.shutil, "copy2", copy_until_full)
    result = CliRunner().invoke(cli, ["build", "--model", "vae", "--checkpoint", str(tiny_checkpoints["vae"]),
                                      "--repository", str(repo)])
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and "No space left on device" in error and str(repo) in error, error
    assert "Traceback" not in result.output and ".staging-" not in error
    assert tree_digest(repo) == before
    assert not list(tmp_path.glob(".repo.staging-*"))
