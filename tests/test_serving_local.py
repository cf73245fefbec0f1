"""In-process backends and `ganexport infer`: same images from ONNX Runtime and TorchScript, clear errors."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import invalid_requests
import numpy as np
import pytest
from PIL import Image

from ganexport import images
from ganexport.repository import MODEL_FILES
from ganexport.serving.backends import BackendError, connect
from ganexport.serving.validation import InvalidInput


def request_for(sig, rng, n=3):
    if sig.kind == "translate":
        return {"images": rng.integers(0, 256, (n, 45, 61, sig.inputs[0].shape[-1]), dtype=np.uint8)}
    if sig.kind == "diffuse":  # a short deterministic walk, labels from 0 up to "no class"
        labels = np.arange(n, dtype=np.int64) % (int(sig.inputs[1].high) + 1)
        labels[-1] = sig.diffusion["null_label"]
        return {"noise": rng.standard_normal((n, *sig.inputs[0].shape)).astype(np.float32), "label": labels,
                "steps": 4, "guidance": 2.0, "eta": 0.0}
    if sig.kind in ("encode", "edit"):  # images of the encoder's size; an edit moves every attribute
        req = {"images": rng.integers(0, 256, (n, *sig.inputs[0].shape), dtype=np.uint8)}
        if sig.kind == "edit":
            req["strength"] = rng.uniform(-1, 1, (n, *sig.inputs[1].shape)).astype(np.float32)
        return req
    req = {"z": rng.standard_normal((n, *sig.inputs[0].shape)).astype(np.float32)}
    if len(sig.inputs) > 1:
        req["label"] = np.arange(n, dtype=np.int64) % (int(sig.inputs[1].high) + 1)
    return req


def call(backend, model, sig, req):
    method = {"translate": backend.translate, "diffuse": backend.diffuse, "encode": backend.encode,
              "edit": backend.edit}.get(sig.kind, backend.sample)
    return method(model, **req)


def triton_names(published):
    repo, versions = published
    return [name for pairs in versions.values() for name, _ in pairs if not name.endswith("_torchscript")]


def test_onnxruntime_and_torchscript_backends_agree_for_every_model(published):
    repo, _ = published
    rng = np.random.default_rng(0)
    with connect("onnxruntime", repository=repo) as ort_b, connect("torchscript", repository=repo) as ts_b:
        for model in triton_names(published):
            sig = ort_b.metadata(model)
            req = request_for(sig, rng)
            a, b = call(ort_b, model, sig, req), call(ts_b, model, sig, req)
            assert a.dtype == np.dtype(sig.outputs[0].numpy_dtype) and a.shape == b.shape
            assert a.shape[1:] == (req["images"].shape[1:] if sig.kind == "translate" else sig.outputs[0].shape)
            if a.dtype == np.uint8:
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, model
            else:  # an encoder's latents: the parity gate's float tolerance
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=model)


@pytest.mark.parametrize("case", invalid_requests.cases(invalid_requests.base_models()), ids=lambda c: c.id)
def test_every_invalid_request_of_the_shared_table_is_refused_before_running(published, case):
    with connect("onnxruntime", repository=published[0]) as backend:
        sig = backend.metadata(case.model)
        with pytest.raises(InvalidInput) as err:
            invalid_requests.through_api(backend, case.model, case.inputs(sig))
        message = str(err.value)
        assert "\n" not in message and all(w in message for w in case.words), message
        valid = invalid_requests.through_api(backend, case.model, invalid_requests.valid_inputs(sig, batch=1))
        assert valid.shape[0] == 1  # and the next valid request works


def test_translator_refuses_images_outside_the_size_limits(published):
    backend = connect("onnxruntime", repository=published[0])
    sig = backend.metadata("cyclegan_a2b")
    for h, w in [(sig.min_image_side - 1, 32), (32, sig.max_image_side + 1)]:
        with pytest.raises(InvalidInput, match=str(sig.min_image_side if h < 32 else sig.max_image_side)):
            backend.translate("cyclegan_a2b", np.zeros((1, h, w, 3), np.uint8))


def test_unpublished_model_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="not published"):
        connect("onnxruntime", repository=tmp_path).metadata("dcgan")


def test_another_runtimes_file_is_pointed_at_its_backend(published):
    with pytest.raises(BackendError, match="run it with --backend torchscript"):
        connect("onnxruntime", repository=published[0]).metadata("dcgan_torchscript")


def test_torchscript_takes_a_read_only_image_without_a_warning(published):
    """A decoded image's array is read-only; torch.from_numpy would warn on every request."""
    import warnings

    image = np.full((1, 16, 16, 3), 128, np.uint8)
    image.flags.writeable = False
    backend = connect("torchscript", repository=published[0])
    backend.metadata("cyclegan_a2b")  # loaded first: torch.jit.load's own deprecation notice is not the point
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = backend.translate("cyclegan_a2b", image)
    assert out.shape == image.shape


def test_corrupt_model_file_is_a_backend_error_naming_the_file(tmp_path, published):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    (repo / "dcgan" / "1" / MODEL_FILES["onnxruntime"]).write_bytes(b"not a model")
    with pytest.raises(BackendError, match="dcgan"):
        connect("onnxruntime", repository=repo).metadata("dcgan")


# --------------------------------------------------------------------------- image files


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_read_image_converts_every_common_mode():
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red -> white
    assert (images.read_image(png_bytes(rgba)) == 255).all()
    gray = Image.new("L", (20, 10), 77)
    assert images.read_image(png_bytes(gray)).shape == (10, 20, 3)
    assert (images.read_image(png_bytes(gray)) == 77).all()
    pal = Image.new("P", (12, 9))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.paste(1, (0, 0, 12, 9))
    assert tuple(images.read_image(png_bytes(pal))[0, 0]) == (10, 200, 30)
    deep = Image.fromarray(np.full((8, 16), 65535, np.uint16))
    assert (images.read_image(png_bytes(deep), channels=1) == 255).all()
    assert images.read_image(png_bytes(gray), channels=1).shape == (10, 20, 1)


def test_read_image_applies_exif_rotation():
    im = Image.new("RGB", (30, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    arr = images.read_image(png_bytes(im, format="JPEG", exif=exif.tobytes()))
    assert arr.shape == (30, 10, 3)


@pytest.mark.parametrize("data,match", [
    (b"hello, not an image", "not an image"),
    (None, "truncated|unreadable"),
])
def test_read_image_refuses_bad_bytes_with_one_line(data, match):
    if data is None:
        data = png_bytes(Image.new("RGB", (64, 64), "green"))[:60]
    with pytest.raises(images.ImageError, match=match) as err:
        images.read_image(data)
    assert "\n" not in str(err.value)


def test_read_image_checks_size_limits():
    small = png_bytes(Image.new("RGB", (7, 7)))
    with pytest.raises(images.ImageError, match="at least 8"):
        images.read_image(small, min_side=8)
    with pytest.raises(images.ImageError, match="limit is 32"):
        images.read_image(png_bytes(Image.new("RGB", (40, 20))), max_side=32)


# --------------------------------------------------------------------------- the CLI


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ganexport.cli", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


def test_infer_translates_a_photo_and_keeps_its_size(tmp_path, published):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (427, 640, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "sketch.png"
    for backend in ("onnxruntime", "torchscript"):
        r = cli("infer", "--model", "cyclegan_a2b", "--backend", backend, "--repository", str(published[0]),
                "--input", str(photo), "--output", str(out))
        assert r.returncode == 0, r.stderr
        assert Image.open(out).size == (640, 427)
        assert re.search(rf"via {backend}: 640x427 image -> 640x427 in \d+ ms", r.stdout), r.stdout


def test_infer_says_it_translates_only_the_first_frame_of_an_animation(tmp_path, published):
    rng = np.random.default_rng(2)
    frames = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    gif, out = tmp_path / "wave.gif", tmp_path / "sketch.png"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = cli("infer", "--model", "cyclegan_a2b", "--repository", str(published[0]), "--input", str(gif),
            "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "wave.gif is animated (3 frames); only its first frame is used" in r.stderr, r.stderr
    with Image.open(gif) as im:
        first = np.asarray(im.convert("RGB"))  # the first frame, as the GIF's palette holds it
    with connect("onnxruntime", repository=published[0]) as local:
        want = local.translate("cyclegan_a2b", first[None])[0]
    got = np.asarray(Image.open(out)).astype(int)
    assert np.abs(got - want).max() <= 1  # the first frame's translation (the others are other noise)


def test_infer_samples_a_grid_for_a_class(tmp_path, published):
    out = tmp_path / "grid.png"
    r = cli("infer", "--model", "cgan", "--label", "3", "--n", "9", "--repository", str(published[0]),
            "--output", str(out))
    assert r.returncode == 0, r.stderr
    width, height = Image.open(out).size
    assert width == height  # nine square samples in three rows of three
    assert re.search(r"9 samples of \d+x\d+ -> a \d+x\d+ grid in \d+ ms", r.stdout), r.stdout


@pytest.mark.parametrize("args,match", [
    (["--model", "cgan", "--label", "10"], "label"),
    (["--model", "cyclegan_a2b", "--input", "MISSING"], "no such file"),
    (["--model", "dcgan", "--backend", "triton-http", "--url", "127.0.0.1:9"], "unreachable"),
])
def test_infer_errors_are_one_line_with_exit_2(tmp_path, published, args, match):
    args = [a.replace("MISSING", str(tmp_path / "missing.jpg")) for a in args]
    r = cli("infer", *args, "--repository", str(published[0]), "--output", str(tmp_path / "o.png"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
