"""The demo's Gradio-free parts: reading uploads, the tab plan from signatures, what a page says about a model."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ganexport import catalog
from ganexport.repository import public_command
from ganexport.demo.tabs import (NO_CLASS, DemoModel, DemoPlan, catalog_endpoints, label_input,
                                 published_source, tabs_for)
from ganexport.demo.uploads import display_name, read_upload
from ganexport.images import ImageError

LIMITS = dict(channels=3, min_side=catalog.MIN_IMAGE_SIDE, max_side=catalog.MAX_IMAGE_SIDE)


def _encoded(arr: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **save)
    return buf.getvalue()


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- uploads


def test_a_phone_photo_is_scaled_down_to_the_largest_side_upright_and_said_so():
    """A 1600x1200 JPEG stored sideways (EXIF orientation 6, as phones write it) is 1200x1600 upright."""
    im = Image.fromarray(_noise(1200, 1600))
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    arr, notes = read_upload(buf.getvalue(), "IMG_0001.jpg", **LIMITS)
    assert arr.shape == (1024, 768, 3) and arr.dtype == np.uint8
    assert notes == ["IMG_0001.jpg: scaled down from 1200x1600 to 768x1024 to fit the 1024-pixel limit."]


@pytest.mark.parametrize("w,h", [(1025, 40), (4000, 3000), (1024, 1024)])
def test_anything_above_the_largest_side_fits_keeping_the_aspect_ratio(w, h):
    arr, notes = read_upload(_encoded(_noise(h, w)), "x.png", **LIMITS)
    assert max(arr.shape[:2]) == min(1024, max(w, h))
    assert abs(arr.shape[1] / arr.shape[0] - w / h) < 0.05
    assert bool(notes) == (max(w, h) > 1024)


def test_an_animated_gif_is_translated_from_its_first_frame():
    frames = [Image.fromarray(np.full((40, 60, 3), c, np.uint8)) for c in (10, 200, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    arr, notes = read_upload(buf.getvalue(), "wave.gif", **LIMITS)
    assert arr.shape == (40, 60, 3) and (arr == 10).all()
    assert notes == ["wave.gif is animated (3 frames); only its first frame is used."]


@pytest.mark.parametrize("data,words", [
    (_encoded(_noise(4, 4)), "4x4 is too small; both sides must be at least 8 pixels"),
    (_encoded(_noise(10, 3000)), "3000x10 is too narrow; scaled to fit the 1024-pixel limit it would be 1024x3"),
    (b"not a picture\n", "not an image file"),
    (_encoded(_noise(64, 64))[:300], "unreadable or truncated"),
    (_encoded(_noise(16, 16), "EPS"), "not an image file"),  # its decoder would run Ghostscript
    (_encoded(_noise(16, 16), "PPM"), "not an image file"),
])
def test_unusable_uploads_are_refused_by_name(data, words):
    with pytest.raises(ImageError) as e:
        read_upload(data, "holiday.png", **LIMITS)
    assert str(e.value).startswith("holiday.png: ") and words in str(e.value), str(e.value)


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels and holds none."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_a_large_claim_is_refused_in_our_line_without_pillows_warning():
    """10000x9000 is past Pillow's warning (89.5 Mpx) and short of its error: our limit says it, alone."""
    import warnings

    with warnings.catch_warnings(record=True) as seen, pytest.raises(ImageError, match="64,000,000-pixel limit"):
        warnings.simplefilter("always")
        read_upload(_png_header(10000, 9000), "huge.png", **LIMITS)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)], seen


def test_a_float_tiff_keeps_its_values():
    """Float TIFFs hold 0..1 (scientific and HDR tools): scaled to 0..255, not truncated to black."""
    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    arr, _ = read_upload(_encoded(ramp, "TIFF"), "ramp.tif", channels=1, min_side=8, max_side=1024)
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255 and abs(int(arr[16, 0, 0]) - 128) <= 2


def test_an_encoder_refuses_an_image_far_smaller_than_its_input():
    from ganexport.images import read_image_at

    with pytest.raises(ImageError, match="at least 16 pixels"):
        read_image_at(_encoded(_noise(1, 1)), (64, 64, 3), name="dot.png")
    arr, notes = read_image_at(_encoded(_noise(16, 40)), (64, 64, 3), name="strip.png")
    assert arr.shape == (64, 64, 3) and "cropped to 16x16 and resized to 64x64" in notes[-1]


def test_uploads_are_named_by_their_base_name(tmp_path):
    assert display_name(str(tmp_path / "3f2a9c" / "holiday photo.jpg")) == "holiday photo.jpg"  # a server path
    assert display_name(None) == display_name("") == "upload"


# --------------------------------------------------------------------------- tabs from signatures


def test_every_catalog_model_lands_in_the_tab_its_signature_says():
    tabs = {name: tabs_for(sig) for name, (_, sig) in catalog.triton_models().items()}
    for name, (spec, sig) in catalog.triton_models().items():
        if spec.kind == "translate":
            assert tabs[name] == ("translate",), name
        elif spec.kind == "diffuse":  # a class-conditional one also meets the GANs in the Conditional tab
            assert tabs[name] == (("conditional", "diffusion") if spec.conditional else ("diffusion",)), name
        elif sig.kind == "encode":  # no tab of its own: it works in its decoder's tabs
            assert tabs[name] == (), name
        elif sig.kind == "edit":
            assert tabs[name] == ("arithmetic",), name
        elif spec.conditional:
            assert tabs[name] == ("conditional",), name
        else:
            assert "sample" in tabs[name] and (("latent" in tabs[name]) == (sig.inputs[0].shape == (2,))), name
    sample, translators = catalog_endpoints()
    assert set(sample) == {n for n, t in tabs.items() if "sample" in t}
    assert translators == {n: n for n, t in tabs.items() if t == ("translate",)}


def test_a_signature_the_demo_has_no_widgets_for_gets_no_tab():
    sig = catalog.get("dcgan").signatures()[0]
    steps = catalog.TensorSpec("steps", "INT32", (1,))
    assert tabs_for(dataclasses.replace(sig, inputs=(*sig.inputs, steps, steps))) == ()
    plan = DemoPlan({"odd": DemoModel("odd", dataclasses.replace(sig, inputs=(*sig.inputs, steps, steps)),
                                      catalog.get("dcgan"))}, {"cgan": "not found"})
    assert plan.tabs == [] and plan.missing_line() == ("Not published: cgan. Published, but this demo has no tab "
                                                       "for: odd.")


def _ddpm(**source) -> DemoModel:
    spec = catalog.get("ddpm")
    return DemoModel("ddpm", spec.signatures()[0], spec, source)


def test_a_diffusion_model_gets_the_diffusion_tab_and_meets_the_gans_in_the_conditional_one():
    """From its signature alone: kind "diffuse", image-shaped noise, steps / guidance / eta, and a label whose
    range ends at "no class" (not steps, the other integer with a range)."""
    ddpm = _ddpm()
    assert ddpm.tabs == ("conditional", "diffusion")
    assert label_input(ddpm.signature).name == "label" and ddpm.null_label == 10
    assert ddpm.class_names[7] == "Sneaker" and len(ddpm.class_names) == 10  # "no class" is not a class
    assert _ddpm(dataset="digits").class_names == [str(i) for i in range(10)]
    assert ddpm.setting("steps").high == 1000 and ddpm.default_guidance == 2.0
    cgan = DemoModel("cgan", catalog.get("cgan").signatures()[0], catalog.get("cgan"))
    plan = DemoPlan({"cgan": cgan, "ddpm": ddpm})
    assert plan.tabs == ["conditional", "diffusion"]
    assert [m.name for m in plan.tab("conditional")] == ["cgan", "ddpm"]
    assert [m.name for m in plan.tab("diffusion")] == ["ddpm"]
    assert plan.first_partner("cgan") == "ddpm" and plan.first_partner("ddpm") == "cgan"
    # different classes: nothing to compare class by class
    assert DemoPlan({"cgan": cgan, "ddpm": _ddpm(dataset="digits")}).first_partner("cgan") is None
    assert NO_CLASS not in ddpm.class_names


def test_a_diffusion_signature_without_a_label_or_a_setting():
    sig = catalog.get("ddpm").signatures()[0]
    no_label = dataclasses.replace(sig, inputs=tuple(t for t in sig.inputs if t.name != "label"))
    assert tabs_for(no_label) == ("diffusion",) and label_input(no_label) is None
    assert tabs_for(dataclasses.replace(sig, inputs=tuple(t for t in sig.inputs if t.name != "eta"))) == ()
    assert tabs_for(dataclasses.replace(sig, diffusion=None)) == ()
    assert tabs_for(dataclasses.replace(sig, kind="sample")) == ()  # no latent: not a sampler either


def test_diffusion_settings_are_refused_by_name_before_anything_runs(tmp_path):
    """NaN passes a slider's bounds over the API; a class the model lacks, or a class for a model that takes
    none, is the caller's mistake. Each is one line, before the backend is even opened (an empty repository)."""
    from ganexport.demo.backend import DemoError, FallbackBackend
    from ganexport.demo.handlers import Handlers
    from ganexport.serving.backends import connect

    sig = catalog.get("ddpm").signatures()[0]
    unlabelled = dataclasses.replace(_ddpm(), name="plain", signature=dataclasses.replace(
        sig, inputs=tuple(t for t in sig.inputs if t.name != "label")))
    backend = FallbackBackend(lambda: connect("onnxruntime", repository=tmp_path), None, "onnxruntime")
    h = Handlers(backend, DemoPlan({"ddpm": _ddpm(), "plain": unlabelled}))
    for args, words in [(("Sneaker", float("nan"), 2, 0, 1, "ddpm"), "steps must be a finite number"),
                        (("Sneaker", 3, float("inf"), 0, 1, "ddpm"), "guidance must be a finite number"),
                        (("Unicorn", 3, 2, 0, 1, "ddpm"), "ddpm has no class 'Unicorn'"),
                        (("Sneaker", 3, 2, 0, 1, "plain"), "plain takes no class"),
                        (("Sneaker", 3, 2, 0, 1, "cgan"), "not offered in the Diffusion tab")]:
        with pytest.raises(DemoError, match=words):
            h.diffusion(*args)
    assert backend._primary is None  # nothing reached a backend


# --------------------------------------------------------------------------- what was published


def _version(repo, model, version, source):
    vdir = repo / model / str(version)
    vdir.mkdir(parents=True)
    (vdir / "parity.json").write_text(json.dumps({"model": model, "source": source}))


def test_the_training_record_comes_from_the_newest_numeric_version(tmp_path):
    _version(tmp_path, "cyclegan_a2b", 2, {"dataset": "photo2sketch", "step": 100})
    _version(tmp_path, "cyclegan_a2b", 10, {"dataset": "cyclegan-folder", "step": 600})
    (tmp_path / "cyclegan_a2b" / "99-old").mkdir()
    assert published_source(tmp_path, "cyclegan_a2b") == {"dataset": "cyclegan-folder", "step": 600}
    assert published_source(tmp_path, "dcgan") == {}
    (tmp_path / "cyclegan_a2b" / "10" / "parity.json").write_text("{not json")
    assert published_source(tmp_path, "cyclegan_a2b") == {}


@pytest.mark.parametrize("command,shown", [
    ("/home/me/.venv/bin/ganexport train --model cyclegan --data '/home/me/my photos' --steps 600",
     "ganexport train --model cyclegan --data … --steps 600"),
    ("ganexport train --model cyclegan '--data=/srv/data/pics' --out=runs/x --profile quick",
     "ganexport train --model cyclegan --data=… --out=… --profile quick"),
    ("ganexport build --model cgan", "ganexport build --model cgan"),
    ("/v/bin/ganexport train --model cyclegan --steps 5 && /v/bin/ganexport train --resume runs/cyclegan/r --steps 9",
     "ganexport train --model cyclegan --steps 5 && ganexport train --resume … --steps 9"),  # a resumed run's recipe
    ("", ""),
])
def test_a_published_command_shows_no_path_of_the_training_machine(command, shown):
    assert public_command(command) == shown


def test_a_translator_is_described_from_its_published_record():
    spec = catalog.get("cyclegan")
    a2b, b2a = spec.signatures()
    record = {"dataset": "cyclegan-folder", "step": 600, "command": "ganexport train --model cyclegan --data /x/y"}
    mine = DemoModel("cyclegan_a2b", a2b, spec, record)
    assert mine.direction == "A -> B" and not mine.shows_filter_target
    assert DemoModel("cyclegan_b2a", b2a, spec, record).direction == "B -> A"
    assert mine.describe().endswith("; trained for 600 steps on your own CycleGAN layout: DIR/trainA, DIR/trainB "
                                    "(testA, testB optional); trained by `ganexport train --model cyclegan --data "
                                    "…`.")
    filtered = DemoModel("cyclegan_a2b", a2b, spec, {"dataset": "photo2sketch", "step": 5})
    assert filtered.direction == "photo -> sketch" and filtered.shows_filter_target
    assert not DemoModel("cyclegan_b2a", b2a, spec, {"dataset": "photo2sketch"}).shows_filter_target
    assert "no training record was published" in DemoModel("cyclegan_a2b", a2b, spec).describe()


def test_class_names_are_those_of_the_published_dataset():
    spec = catalog.get("cgan")
    sig = spec.signatures()[0]
    assert DemoModel("cgan", sig, spec, {"dataset": "digits"}).class_names == [str(i) for i in range(10)]
    assert DemoModel("cgan", sig, spec).class_names[7] == "Sneaker"


def test_the_gradio_free_parts_import_neither_gradio_nor_torch():
    code = ("import sys, ganexport.demo.handlers, ganexport.demo.tabs, ganexport.demo.uploads, "
            "ganexport.demo.backend; bad = {'gradio', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
