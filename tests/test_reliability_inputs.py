"""Bad input: every surface refuses it in one clear line, keeps serving, and serves the next request.

Four surfaces, all real: the served endpoints over HTTP and gRPC with raw
tritonclient requests (no client-side checks, so what is proven is the
server side's own validation: the front door before Triton, serving/front_door.py),
raw HTTP bodies, `ganexport infer`, and the Gradio demo through gradio_client.
After every bad case a valid request must succeed and the server process must
still be alive.

Covered elsewhere and not repeated here (docs/reliability.md lists them):
serving/validation.py case by case (test_validation.py), the in-process
backends (test_serving_local.py), invalid requests inside a dynamic batch
(test_triton_clients.py), and the demo's text / 4x4 / 1100x40 / half-PNG /
garbage uploads (test_demo.py::test_bad_uploads_get_a_clear_message).
"""

from __future__ import annotations

import io
import json
import math
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganexport import catalog
from ganexport.repository import latest, read_signature
from ganexport.serving.validation import request_bytes_limit

pytestmark = pytest.mark.integration
httpclient = pytest.importorskip("tritonclient.http")
import tritonclient.grpc as grpcclient  # noqa: E402
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

SAMPLER, LABELLED, TRANSLATOR = "dcgan", "cgan", "cyclegan_a2b"
TIMEOUT = 60  # seconds: every client call is bounded, so a hang fails the test instead of stalling it


@pytest.fixture(scope="module")
def sigs(published) -> dict[str, catalog.Signature]:
    """What the build published (tiny-net shapes), by Triton model name."""
    repo = published[0]
    return {name: read_signature(latest(repo, name))
            for name in (SAMPLER, LABELLED, TRANSLATOR)}


# --------------------------------------------------------------------------- request builders


def latent(sig, n=1, fill=0.0, dtype=np.float32, shape=None):
    spec = sig.inputs[0]
    return spec.name, np.full(shape if shape is not None else (n, *spec.shape), fill, dtype)


def label(sig, value, n=1, dtype=np.int64):
    spec = sig.inputs[1]
    return spec.name, np.full((n, *spec.shape), value, dtype)


def image(sig, n=1, h=16, w=16, channels=None, dtype=np.uint8):
    spec = sig.inputs[0]
    return spec.name, np.zeros((n, h, w, channels or spec.shape[-1]), dtype)


def label_range(S) -> str:
    """How the refusal names the class range: 'outside [0, 9]' for 10 classes."""
    spec = S[LABELLED].inputs[1]
    return f"outside [{int(spec.low)}, {int(spec.high)}]"


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def far_above_limit_side(sig) -> int:
    """The side of a square image of one request that is 4x the largest valid request in bytes."""
    return math.ceil(math.sqrt(4 * request_bytes_limit(sig) / sig.inputs[0].shape[-1]))


# Transport-level cases the shared table (tests/invalid_requests.py) cannot express through a Signature:
# wrong dtypes and ranks on the wire, unknown names, bytes tensors, unknown models. Each: signatures -> (model,
# [(input name, array)], fragment the error must contain).
RAW_CASES = {
    "wrong_dtype_latent_fp64": lambda S: (SAMPLER, [latent(S[SAMPLER], dtype=np.float64)],
                                          "has datatype FP64, expected FP32"),
    "wrong_dtype_image_fp32": lambda S: (TRANSLATOR, [image(S[TRANSLATOR], dtype=np.float32)],
                                         "has datatype FP32, expected UINT8"),
    "wrong_rank_no_batch_dim": lambda S: (SAMPLER, [latent(S[SAMPLER], shape=S[SAMPLER].inputs[0].shape)],
                                          "expected rank 2"),
    "wrong_rank_extra_dim": lambda S: (SAMPLER, [latent(S[SAMPLER], shape=(1, *S[SAMPLER].inputs[0].shape, 1))],
                                       "expected rank 2"),
    "wrong_rank_image_without_channels": lambda S: (TRANSLATOR, [(S[TRANSLATOR].inputs[0].name,
                                                                  np.zeros((1, 16, 16), np.uint8))],
                                                    "expected rank 4"),
    "non_image_bytes_tensor": lambda S: (TRANSLATOR, [(S[TRANSLATOR].inputs[0].name, np.array(
        [[png_bytes(Image.new("RGB", (16, 16)))]], dtype=object))], "has datatype BYTES, expected UINT8"),
    "unknown_input_name": lambda S: (SAMPLER, [latent(S[SAMPLER]), ("not_" + S[SAMPLER].inputs[0].name,
                                                                    latent(S[SAMPLER])[1])], "unknown input 'not_"),
    "batch_sizes_disagree": lambda S: (LABELLED, [latent(S[LABELLED], n=2), label(S[LABELLED], 1, n=1)],
                                       "inputs disagree on batch size"),
    "body_far_above_limit": lambda S: (TRANSLATOR, [image(S[TRANSLATOR], h=far_above_limit_side(S[TRANSLATOR]),
                                                          w=far_above_limit_side(S[TRANSLATOR]))],
                                       {"http": "above this endpoint's limit", "grpc": "larger than max"}),
    "unknown_model": lambda S: ("no_such_model", [latent(S[SAMPLER])], "not found"),
}
INVALID = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
NOT_FOUND = {"http": "404", "grpc": "StatusCode.NOT_FOUND"}
TOO_LARGE = {"http": "413", "grpc": "StatusCode.RESOURCE_EXHAUSTED"}  # refused from its length, before reading
STATUS = {"unknown_model": NOT_FOUND, "body_far_above_limit": TOO_LARGE}
CLIENTS = {"http": httpclient, "grpc": grpcclient}


def tensors(module, inputs):
    out = []
    for name, arr in inputs:
        t = module.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


@pytest.fixture(scope="module")
def raw(onnx_triton):
    """One raw tritonclient per protocol, closed before the server stops (keep-alive would hold it)."""
    clients = {"http": httpclient.InferenceServerClient(onnx_triton.http_url, connection_timeout=TIMEOUT,
                                                        network_timeout=TIMEOUT),
               "grpc": grpcclient.InferenceServerClient(onnx_triton.grpc_url)}
    yield clients
    for c in clients.values():
        c.close()


def infer(protocol, client, model, inputs):
    kw = {"client_timeout": TIMEOUT} if protocol == "grpc" else {}
    return client.infer(model, tensors(CLIENTS[protocol], inputs), **kw)


def assert_still_serving(server, protocol, client, sigs):
    """The server process is alive and the next valid request is answered."""
    assert server.process.poll() is None, "tritonserver died"
    assert client.is_server_live() and client.is_server_ready()
    sig = sigs[SAMPLER]
    out = infer(protocol, client, SAMPLER, [latent(sig, n=2, fill=0.5)]).as_numpy(sig.outputs[0].name)
    assert out.shape == (2, *sig.outputs[0].shape) and out.dtype == np.uint8


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", list(RAW_CASES))
def test_triton_refuses_a_bad_tensor_in_one_line_and_keeps_serving(onnx_triton, raw, sigs, protocol, case):
    model, inputs, fragment = RAW_CASES[case](sigs)
    client = raw[protocol]
    with pytest.raises(InferenceServerException) as err:
        infer(protocol, client, model, inputs)
    assert str(err.value.status()) == STATUS.get(case, INVALID)[protocol], err.value
    message = err.value.message()
    fragment = fragment[protocol] if isinstance(fragment, dict) else fragment
    assert fragment in message and "\n" not in message, message
    assert_still_serving(onnx_triton, protocol, client, sigs)


# --------------------------------------------------------------------------- raw HTTP bodies


def _json_body(sig, data) -> bytes:
    spec = sig.inputs[0]
    return json.dumps({"inputs": [{"name": spec.name, "shape": [1, *spec.shape], "datatype": spec.dtype,
                                   "data": data}]}).encode()


# body, extra headers, HTTP status, fragment of the error. (Triton 2.51 itself answers 500 for JSON it cannot
# parse; the front door answers 400 first.)
RAW_HTTP_CASES = {
    "malformed_json": (lambda S: b'{"inputs": [{"name": "z"', {}, 400, "malformed JSON"),
    "json_data_does_not_match_shape": (lambda S: _json_body(S[SAMPLER], [1.0, 2.0, 3.0]), {}, 400,
                                       "the request carries 3"),
    "binary_header_length_beyond_body": (lambda S: b'{"inputs": []}', {"Inference-Header-Content-Length": "500"},
                                         400, "outside the body"),
    "image_file_posted_as_body": (lambda S: png_bytes(Image.new("RGB", (16, 16))), {}, 400, "malformed JSON"),
}


@pytest.mark.parametrize("case", list(RAW_HTTP_CASES))
def test_triton_refuses_a_malformed_http_body_and_keeps_serving(onnx_triton, raw, sigs, case):
    make, headers, status, fragment = RAW_HTTP_CASES[case]
    request = urllib.request.Request(f"{onnx_triton.base_url}/v2/models/{SAMPLER}/infer", data=make(sigs),
                                     headers={"Content-Type": "application/octet-stream", **headers})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    assert err.value.code == status
    message = json.loads(err.value.read())["error"]
    assert fragment in message, message
    assert_still_serving(onnx_triton, "http", raw["http"], sigs)


# --------------------------------------------------------------------------- image files


def png_header_only(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims width x height: a decompression bomb's shape, without the bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _palette() -> Image.Image:
    im = Image.new("P", (40, 30))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.paste(1, (0, 0, 40, 30))
    return im


# name -> bytes of the file; the refused ones map to the words their error must contain.
BAD_FILES = {
    "non_image_bytes": (lambda: b"not a picture, just text\n", "not an image"),
    "empty_file": (lambda: b"", "not an image"),
    "truncated_png": (lambda: png_bytes(Image.new("RGB", (64, 64), "green"))[:80], "truncated"),
    "png_1x1": (lambda: png_bytes(Image.new("RGB", (1, 1))), "at least 8"),
    "png_7x7": (lambda: png_bytes(Image.new("RGB", (7, 7))), "at least 8"),
    "png_1025_wide": (lambda: png_bytes(Image.new("RGB", (1025, 16))), "the limit is 1024"),
    "header_claims_5000x5000": (lambda: png_header_only(5000, 5000), "the limit is 1024"),
    "header_claims_20000x20000": (lambda: png_header_only(20000, 20000), "the limit is 1024"),
}
# name -> (file bytes, the RGB pixel the tool must read at (0, 0)): converted as images.py promises.
GOOD_FILES = {
    "grayscale": (lambda: png_bytes(Image.new("L", (40, 30), 77)), (77, 77, 77)),
    "grayscale_alpha": (lambda: png_bytes(Image.new("LA", (40, 30), (90, 255))), (90, 90, 90)),
    "rgba_transparent": (lambda: png_bytes(Image.new("RGBA", (40, 30), (255, 0, 0, 0))), (255, 255, 255)),
    "palette": (lambda: png_bytes(_palette()), (10, 200, 30)),
    "gray_16bit": (lambda: png_bytes(Image.fromarray(np.full((30, 40), 32768, np.uint16))), (128, 128, 128)),
    "cmyk_jpeg": (lambda: png_bytes(Image.new("CMYK", (40, 30), (0, 0, 0, 0)), format="JPEG", quality=100),
                  (255, 255, 255)),
}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.{'jpg' if 'jpeg' in name else 'png'}"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- `ganexport infer`


def run_infer(server, *args):
    """`ganexport infer` in-process (CliRunner) against the module's Triton over gRPC."""
    from click.testing import CliRunner

    from ganexport.cli import cli

    return CliRunner().invoke(cli, ["infer", "--backend", "triton-grpc", "--url", server.grpc_url, *args])


def assert_cli_refused(result, fragment: str, output: Path):
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "Traceback" not in result.output, result.stderr
    assert not output.exists()


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_infer_refuses_a_bad_image_file_in_one_line(onnx_triton, raw, sigs, tmp_path, case):
    make, fragment = BAD_FILES[case]
    out = tmp_path / "out.png"
    result = run_infer(onnx_triton, "--model", TRANSLATOR, "--input", str(write(tmp_path, case, make())),
                       "-o", str(out))
    assert_cli_refused(result, fragment, out)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert_still_serving(onnx_triton, "grpc", raw["grpc"], sigs)


@pytest.mark.parametrize("case", list(GOOD_FILES))
def test_infer_accepts_and_converts_other_image_modes(onnx_triton, tmp_path, case):
    src = write(tmp_path, case, GOOD_FILES[case][0]())
    out = tmp_path / "out.png"
    result = run_infer(onnx_triton, "--model", TRANSLATOR, "--input", str(src), "-o", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(src) as sent, Image.open(out) as got:
        assert got.size == sent.size and got.mode == "RGB"


@pytest.mark.parametrize("case,args,fragment", [
    ("label_minus_1", ["--model", LABELLED, "--label=-1"], "LABEL_RANGE"),
    ("label_10", ["--model", LABELLED, "--label", "10"], "LABEL_RANGE"),
    ("count_above_max_batch", ["--model", SAMPLER, "--n", "MAXPLUS1"], "above max_batch_size"),
    ("count_zero", ["--model", SAMPLER, "--n", "0"], "0 is not in the range"),
    ("translator_without_input", ["--model", TRANSLATOR], "give --input"),
    ("label_on_an_unconditional_sampler", ["--model", SAMPLER, "--label", "3"], f"{SAMPLER} takes none"),
    ("label_on_a_translator", ["--model", TRANSLATOR, "--label", "3"], f"{TRANSLATOR} takes none"),
    ("input_on_a_sampler", ["--model", SAMPLER, "--input", "photo.jpg"], "draws its images from noise"),
    ("count_on_a_translator", ["--model", TRANSLATOR, "--n", "4"], "one image per input"),
])
def test_infer_refuses_bad_arguments(onnx_triton, raw, sigs, tmp_path, case, args, fragment):
    out = tmp_path / "out.png"
    args = [a.replace("MAXPLUS1", str(sigs[SAMPLER].max_batch_size + 1)) for a in args]
    fragment = fragment.replace("LABEL_RANGE", label_range(sigs))
    assert_cli_refused(run_infer(onnx_triton, *args, "-o", str(out)), fragment, out)
    assert_still_serving(onnx_triton, "grpc", raw["grpc"], sigs)


def test_infer_refuses_an_output_it_cannot_write_in_one_line(onnx_triton, tmp_path):
    """An output without an image extension is refused before any work; one that cannot be written, in a line."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out, fragment in ((tmp_path / "grid", "name the image format"),
                          (blocker / "grid.png", f"cannot write it ({blocker} is a file, not a folder)")):
        result = run_infer(onnx_triton, "--model", SAMPLER, "-o", str(out))
        assert_cli_refused(result, fragment, out)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def demo(onnx_triton, published):
    """The real Gradio app on Triton over gRPC (ONNX Runtime fallback on the same repository)."""
    from gradio_client import Client

    from ganexport.demo.app import launch
    from ganexport.serving.triton_server import free_port

    port = free_port()
    app = launch(backend_kind="triton-grpc", triton_url=onnx_triton.grpc_url, repository=published[0],
                 port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        yield url, Client(url, verbose=False)
    finally:
        app.close()
        app.demo_backend.close()


def assert_demo_still_serves(onnx_triton, client):
    assert onnx_triton.process.poll() is None
    image_path, status, banner = client.predict(SAMPLER, 0, 2, api_name="/sample")
    assert image_path and Path(image_path).is_file(), status
    assert "triton-grpc" in status and "fallback" not in status, status


def translate(client, path: Path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), TRANSLATOR, api_name="/translate")


# The demo scales a photo above the largest side down instead of refusing it, so a file whose header
# claims a big image gets as far as decoding, and fails there or at the pixel limit.
DEMO_FRAGMENTS = {"header_claims_5000x5000": "unreadable or truncated",
                  "header_claims_20000x20000": "too large to decode"}


@pytest.mark.parametrize("case", ["empty_file", "png_1x1", "png_7x7", "header_claims_5000x5000",
                                  "header_claims_20000x20000"])
def test_demo_refuses_a_bad_upload_in_one_line(onnx_triton, demo, tmp_path, case):
    from gradio_client.exceptions import AppError

    make, fragment = BAD_FILES[case]
    fragment = DEMO_FRAGMENTS.get(case, fragment)
    _, client = demo
    with pytest.raises(AppError) as err:  # an error gradio_client sees as one, not a finished call
        translate(client, write(tmp_path, case, make()))
    message = str(err.value.message)
    assert fragment in message and "Traceback" not in message and "\n" not in message, message
    assert str(tmp_path) not in message and "gradio" not in message.lower(), message  # no server path
    assert_demo_still_serves(onnx_triton, client)


@pytest.mark.parametrize("case", ["grayscale", "rgba_transparent", "palette", "gray_16bit"])
def test_demo_accepts_and_converts_other_image_modes(demo, tmp_path, case):
    """The page shows the input as the model got it: read_image's conversion, not Gradio's."""
    make, pixel = GOOD_FILES[case]
    src = write(tmp_path, case, make())
    _, client = demo
    shown, out, truth, status, _ = translate(client, src)
    assert out and "triton-grpc" in status, status
    with Image.open(src) as sent, Image.open(shown) as seen, Image.open(out) as got:
        assert seen.size == got.size == sent.size
        assert tuple(np.asarray(seen.convert("RGB"))[0, 0]) == pixel


@pytest.mark.parametrize("case,api,args,fragment", [
    ("seed_negative", "/sample", (SAMPLER, -1, 4), "less than minimum value 0"),
    ("count_zero", "/sample", (SAMPLER, 0, 0), "less than minimum value 1"),
    ("count_above_max", "/sample", (SAMPLER, 0, 10_000), "greater than maximum value 64"),  # MAX_COUNT
    ("unknown_model", "/sample", ("no_such_model", 0, 4), "not in the list of choices"),
    ("unknown_class", "/conditional", ("Unicorn", 0, 4), "not in the list of choices"),
    ("latent_point_outside_slider", "/decode_point", ("autoencoder_decoder", 9.0, 0.0), "greater than maximum value 4"),
    # the Latent tab offers 2-D decoders only: the VAE's latent is wider (catalog), so it is not a choice there
    ("latent_tab_wider_latent", "/decode_point", ("vae_decoder", 0.0, 0.0), "not in the list of choices"),
])
def test_demo_refuses_bad_arguments(onnx_triton, demo, case, api, args, fragment):
    from gradio_client.exceptions import AppError

    _, client = demo
    with pytest.raises(AppError, match=fragment.replace(".", r"\.")):
        client.predict(*args, api_name=api)
    assert_demo_still_serves(onnx_triton, client)


def call_raw(url: str, api: str, body: bytes) -> tuple[str, object]:
    """(event, data) of a gradio API call whose JSON body gradio_client refuses to send (NaN, Infinity)."""
    request = urllib.request.Request(f"{url}gradio_api/call/{api}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=TIMEOUT) as r:
        stream = r.read().decode()
    kind, data = stream.split("event: ", 1)[1].split("\ndata: ", 1)
    return kind.strip(), json.loads(data.strip().splitlines()[0])


@pytest.mark.parametrize("value,event,fragment", [
    ("NaN", "error", "NaN or infinite"),  # NaN passes the slider's bounds; validation refuses it
    ("Infinity", "error", "greater than maximum value 4"),
])
def test_demo_refuses_a_non_finite_latent_point(onnx_triton, demo, value, event, fragment):
    url, client = demo
    kind, data = call_raw(url, "decode_point", f'{{"data": ["autoencoder_decoder", {value}, 0]}}'.encode())
    assert kind == event, data
    message = data["error"]
    assert fragment in message and "Traceback" not in message, message
    assert_demo_still_serves(onnx_triton, client)
