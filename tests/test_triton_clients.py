"""The real Triton server against in-process ONNX Runtime: same images, batching, refusals, the docs' examples."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import invalid_requests
import numpy as np
import pytest
from PIL import Image

from ganexport.repository import latest, read_signature
from ganexport.serving.backends import connect
from ganexport.serving.triton_server import TritonServer, free_port
from ganexport.serving.validation import InvalidInput

from conftest import assert_rows_are_their_own
from test_serving_local import call, request_for, triton_names

pytestmark = pytest.mark.integration
PAGE = Path(__file__).resolve().parent.parent / "docs" / "serving.md"  # the client examples


@pytest.fixture(scope="module")
def server(published):
    with TritonServer(published[0], http_port=free_port(), grpc_port=free_port(), metrics_port=0) as srv:
        yield srv


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_model_over_triton_equals_in_process(server, published, protocol):
    repo, versions = published
    rng = np.random.default_rng(7)
    url = server.http_url if protocol == "http" else server.grpc_url
    with connect(f"triton-{protocol}", url=url) as remote, \
            connect("onnxruntime", repository=repo) as ort_b, connect("torchscript", repository=repo) as ts_b:
        for model in triton_names(published):
            sig = ort_b.metadata(model)
            assert remote.metadata(model) == sig  # the signature travels in the config
            req = request_for(sig, rng, n=min(3, sig.max_batch_size))
            np.testing.assert_array_equal(call(remote, model, sig, req), call(ort_b, model, sig, req))
            np.testing.assert_array_equal(call(remote, model + "_torchscript", sig, req), call(ts_b, model, sig, req))


def test_concurrent_requests_are_batched_and_answered_right(published):
    """Requests merged by the dynamic batcher come back split to the right callers.

    The published config has no queue delay, so whether requests merge depends on
    timing (eight blocking clients on two busy cores may never overlap). Here the
    same model waits up to 1 s for company (it runs as soon as a preferred batch of 4
    or 8 is queued), so merged executions are certain however loaded the machine is:
    Triton's own statistics count them.
    """
    from ganexport.benchmarks.targets import Variant, variant_configs

    expected_calls = 48
    rng = np.random.default_rng(3)
    with connect("onnxruntime", repository=published[0]) as ort_b:
        sig = ort_b.metadata("dcgan")
        zs = [rng.standard_normal((1, *sig.inputs[0].shape)).astype(np.float32) for _ in range(expected_calls)]
        want = [ort_b.sample("dcgan", z) for z in zs]
    patient = variant_configs(published[0], ["dcgan"], Variant("wait", {"max_queue_delay_us": 1_000_000}))
    got, errors = [None] * expected_calls, []

    with TritonServer(published[0], models=["dcgan"], configs=patient, http_port=free_port(), grpc_port=free_port(),
                      metrics_port=0) as server:
        def worker(k):
            with connect("triton-http", url=server.http_url) as remote:
                for i in range(k, expected_calls, 8):
                    try:
                        got[i] = remote.sample("dcgan", zs[i])
                    except Exception as e:  # collected, asserted below
                        errors.append(e)

        before = _stats(server, "dcgan")
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        [t.start() for t in threads]
        [t.join(timeout=120) for t in threads]
        after = _stats(server, "dcgan")
    assert not errors
    assert_rows_are_their_own([g[0] for g in got], [w[0] for w in want])
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == expected_calls
    assert executions < inferences, "the dynamic batcher merged no requests"


def _stats(server, model):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        s = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return {"inference_count": int(s["inference_count"]), "execution_count": int(s["execution_count"])}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", invalid_requests.cases(invalid_requests.base_models()), ids=lambda c: c.id)
def test_every_invalid_request_of_the_shared_table_gets_a_client_error_and_the_server_keeps_serving(
        server, published, protocol, case):
    """Straight tritonclient (no client-side checks): Triton's own checks or the model's validation answer."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    module = {"http": httpclient, "grpc": grpcclient}[protocol]
    client = module.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    try:
        def tensors(inputs):
            out = []
            for name, value in inputs.items():
                tensor = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
                tensor.set_data_from_numpy(value)
                out.append(tensor)
            return out

        sig = read_signature(latest(published[0], case.model))  # what the server was given
        with pytest.raises(InferenceServerException) as err:
            client.infer(case.model, tensors(case.inputs(sig)))
        assert str(err.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), err.value
        message = err.value.message()
        assert "\n" not in message, message
        assert all(w in message for w in case.words), message
        # the next valid request is served
        good = client.infer(case.model, tensors(invalid_requests.valid_inputs(sig, batch=1)))
        assert good.as_numpy(sig.outputs[0].name).shape[0] == 1
    finally:
        client.close()


def test_triton_backend_validates_before_sending(server):
    with connect("triton-grpc", url=server.grpc_url) as remote:
        sig = remote.metadata("cyclegan_a2b")
        with pytest.raises(InvalidInput, match=str(sig.min_image_side)):
            remote.translate("cyclegan_a2b", np.zeros((1, 7, 7, 3), np.uint8))


def readme_example(name: str) -> str:
    text = PAGE.read_text()
    match = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"{PAGE.name} has no example {name!r}"
    return match.group(1)


def run_example(name, server, cwd):
    env = {"TRITON_HTTP_URL": server.http_url, "TRITON_GRPC_URL": server.grpc_url, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", readme_example(name)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_readme_translate_example_runs_verbatim(server, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(
        tmp_path / "photo.jpg")
    out = run_example("translate", server, tmp_path)
    assert "photo (427, 640, 3) -> sketch (427, 640, 3)" in out
    assert Image.open(tmp_path / "sketch.png").size == (640, 427)


def _infer_through_triton(server, photo, out):
    r = subprocess.run([sys.executable, "-m", "ganexport.cli", "infer", "--model", "cyclegan_a2b", "--backend",
                        "triton-http", "--url", server.http_url, "--input", str(photo), "--output", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.asarray(Image.open(out))


def test_readme_translate_example_turns_a_portrait_phone_photo_upright(server, tmp_path):
    """Stored 640x427 with EXIF orientation 6 (the camera was turned): people see, and get back, 427x640."""
    stored = Image.fromarray(np.random.default_rng(2).integers(0, 256, (427, 640, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "photo.jpg", exif=exif)
    out = run_example("translate", server, tmp_path)
    assert "photo (640, 427, 3) -> sketch (640, 427, 3)" in out
    sketch = np.asarray(Image.open(tmp_path / "sketch.png"))
    assert np.array_equal(sketch, _infer_through_triton(server, tmp_path / "photo.jpg", tmp_path / "infer.png"))


def test_readme_translate_example_reads_transparency_as_infer_does(server, tmp_path):
    """A transparent PNG whose hidden pixels are black: the example and `infer` both see white paper."""
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[20:60, 30:90] = (200, 40, 40, 255)  # an opaque red patch on a fully transparent page
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.jpg", format="PNG")  # the example's file name
    run_example("translate", server, tmp_path)
    sketch = np.asarray(Image.open(tmp_path / "sketch.png"))
    assert np.array_equal(sketch, _infer_through_triton(server, tmp_path / "photo.jpg", tmp_path / "infer.png"))
    black = tmp_path / "black.png"
    Image.fromarray(np.where(rgba[..., 3:] > 0, rgba[..., :3], 0).astype(np.uint8)).save(black)
    assert not np.array_equal(sketch, _infer_through_triton(server, black, tmp_path / "black-out.png"))


def test_readme_cgan_example_runs_verbatim(server, published, tmp_path):
    with connect("onnxruntime", repository=published[0]) as ort_b:
        shape = ort_b.metadata("cgan").outputs[0].shape
    out = run_example("cgan", server, tmp_path)
    assert f"cgan images {(8, *shape)} uint8" in out


def test_readme_ddpm_example_runs_verbatim(server, published, tmp_path):
    """The server runs the whole sampling walk: finished images and the trajectory in one request."""
    with connect("onnxruntime", repository=published[0]) as ort_b:
        sig = ort_b.metadata("ddpm")
    image, frames = sig.output("image").shape, sig.output("trajectory").shape
    out = run_example("ddpm", server, tmp_path)
    assert f"ddpm images {(8, *image)} trajectory {(8, *frames)}" in out


def test_invalid_requests_in_a_dynamic_batch_fail_alone(server, published):
    """Valid and invalid requests arrive together; the batcher may merge them, yet only the bad ones fail."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    with connect("onnxruntime", repository=published[0]) as ort_b:
        sig = ort_b.metadata("cgan")
        rng = np.random.default_rng(11)
        zs = [rng.standard_normal((1, *sig.inputs[0].shape)).astype(np.float32) for _ in range(32)]
        labels = [np.array([[i % (int(sig.inputs[1].high) + 1)]], np.int64) for i in range(32)]
        bad = set(range(1, 32, 4))
        for i in bad:
            labels[i] = labels[i] + int(sig.inputs[1].high) + 1  # out of range
        want = {i: ort_b.sample("cgan", zs[i], labels[i]) for i in range(32) if i not in bad}
    results, failures = {}, {}

    def worker(k):
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            for i in range(k, 32, 8):
                inputs = [httpclient.InferInput(t.name, list(v.shape), t.dtype)
                          for t, v in zip(sig.inputs, (zs[i], labels[i]))]
                inputs[0].set_data_from_numpy(zs[i])
                inputs[1].set_data_from_numpy(labels[i])
                try:
                    results[i] = client.infer("cgan", inputs).as_numpy(sig.outputs[0].name)
                except InferenceServerException as e:
                    failures[i] = str(e.status())
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert set(failures) == bad and set(failures.values()) == {"400"}
    assert_rows_are_their_own([results[i][0] for i in want], [image[0] for image in want.values()])
