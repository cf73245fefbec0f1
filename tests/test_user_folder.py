"""A user's own messy photo folder, end to end through the commands of the docs, as a new user runs them.

The folder holds what real folders hold: every format the reader takes (JPEG, PNG, WebP, BMP, GIF,
TIFF), a 16-bit PNG, a CMYK JPEG, an RGBA PNG, a phone photo stored sideways with an EXIF orientation,
a non-ASCII file and folder name, a broken file, a hidden folder and macOS ``._`` sidecars. Then:
train (smoke) -> build --checkpoint RUN -> verify -> eval -> infer through the real Triton, each command
in a fresh process from a working directory of its own, asserting on counts, sizes, orientation and what
each command says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

SIDE = 32  # --image-size: small, so the smoke run takes seconds


def _photo(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_messy_folder(root: Path) -> dict[str, int]:
    """DIR/trainA, trainB, testA, testB as a user would have them; returns the readable count per folder."""
    a = root / "trainA"
    (a / "phone").mkdir(parents=True)
    _photo(60, 40, 1).save(a / "beach.jpg")
    _photo(40, 44, 2).save(a / "cat.png")
    _photo(50, 40, 3).save(a / "dog.webp")
    _photo(40, 40, 4).save(a / "old scan.bmp")
    _photo(48, 40, 5).save(a / "wave.gif")
    _photo(40, 56, 6).save(a / "negative.tiff")
    _photo(40, 40, 7).save(a / "IMG_0002.TIF")  # upper-case extension
    Image.fromarray((np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 30)).save(a / "depth16.png")
    _photo(40, 40, 8).convert("CMYK").save(a / "print.jpg")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (200, 30, 30, 255)
    Image.fromarray(rgba, "RGBA").save(a / "sticker.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    _photo(64, 40, 9).save(a / "phone" / "IMG_1234.jpg", exif=exif)
    _photo(40, 40, 10).save(a / "фото котика.png")
    (a / "broken.jpg").write_bytes(_jpeg(_photo(40, 40, 11))[:200])
    (a / ".thumbnails").mkdir()
    _photo(40, 40, 12).save(a / ".thumbnails" / "beach.png")
    (a / "._beach.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (a / "notes.txt").write_text("holiday 2024")
    b = root / "trainB"
    b.mkdir()
    for i in range(3):
        _photo(44, 40, 20 + i).save(b / f"sketch_{i}.png")
    (b / "._sketch_0.png").write_bytes(b"\x00\x05\x16\x07")
    for split, n in (("testA", 2), ("testB", 2)):
        (root / split).mkdir()
        for i in range(n):
            _photo(40, 48, 30 + i).save(root / split / f"{i}.jpg")
    return {"trainA": 12, "trainB": 3, "testA": 2, "testB": 2}


def _jpeg(im: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


def ganexport(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganexport.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """(data folder, working directory, run folder): the smoke run trained on the messy folder."""
    home = tmp_path_factory.mktemp("user")
    data = home / "Мои фото"
    counts = make_messy_folder(data)
    work = home / "work"
    work.mkdir()
    r = ganexport(work, "train", "--model", "cyclegan", "--profile", "smoke", "--data", str(data),
                  "--image-size", str(SIDE))
    assert r.returncode == 0, r.stderr
    runs = list((work / "runs" / "cyclegan").iterdir())
    assert len(runs) == 1
    return data, work, runs[0], counts, r.stdout + r.stderr


def test_training_says_what_it_read_and_what_it_skipped(user):
    data, _, run, counts, output = user
    summary = next(line for line in output.splitlines() if "cyclegan: data:" in line)
    assert f"A: {counts['trainA']} images from {data / 'trainA'}" in summary, summary
    assert f"B: {counts['trainB']} images from {data / 'trainB'}" in summary, summary
    assert "1 unreadable files skipped: broken.jpg:" in summary, summary  # named, with the reason
    assert "beach.png" not in summary and "._" not in summary  # hidden files are not the user's images
    meta = json.loads((run / "config.json").read_text())
    assert meta["data_dir"] == str(data.resolve())  # recorded, for eval, build and verify
    assert meta["image_shape"] == [SIDE, SIDE, 3]
    assert re.search(r"step \d+/\d+", output) or "it/s" in output  # progress, also without a terminal


@pytest.fixture(scope="module")
def built(user):
    """(repository, the build's output): `ganexport build --checkpoint RUN` run once in the user's directory,
    for every test that needs the published models, whichever of them runs first or alone."""
    _, work, run, _, _ = user
    r = ganexport(work, "build", "--model", "cyclegan", "--checkpoint", str(run.relative_to(work)),
                  "--repository", "model_repository")
    assert r.returncode == 0, r.stderr
    return work / "model_repository", r


def test_build_takes_the_run_folder_and_says_so(user, built):
    _, work, run, _, _ = user
    repo, r = built
    first = r.stdout.splitlines()[0]
    assert f"checkpoint {run.relative_to(work)}/checkpoint.safetensors (given with --checkpoint" in first, first
    assert "trained on cyclegan-folder" in first, first
    assert "published version 1" in r.stdout
    assert "torchvision" not in r.stdout + r.stderr  # the exporter's warnings about operators we never use
    source = json.loads((repo / "cyclegan_a2b" / "1" / "parity.json").read_text())["source"]
    assert source["dataset"] == "cyclegan-folder" and "--data … --image-size 32" in source["command"]
    assert str(work) not in json.dumps(source)  # no folder of this machine in a published file


def test_verify_checks_against_the_run_it_was_built_from(user, built):
    _, work, _, _, _ = user
    r = ganexport(work, "verify", "--model", "cyclegan", "--repository", "model_repository")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the one this repository was built from" in r.stdout
    assert r.stdout.count(": ok") == 4  # a2b, b2a, each as ONNX and TorchScript


def test_eval_measures_on_the_folders_own_test_split(user, tmp_path):
    _, _, run, _, _ = user
    r = ganexport(tmp_path, "eval", "--model", "cyclegan", "--checkpoint", str(run))  # another directory
    assert r.returncode == 0, r.stderr
    assert "cycle_l1: A-B-A" in r.stdout
    record = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert record["metric"] == "cycle_l1" and record["model"] == "cyclegan"


def test_infer_through_triton_keeps_sizes_and_turns_phone_photos_upright(user, built, tmp_path):
    from ganexport.repository import default_models
    from ganexport.serving.triton_server import TritonServer, free_port

    data = user[0]
    repo = built[0]
    a = data / "trainA"
    # file -> (width, height) people see: EXIF-rotated for the phone photo
    expected = {a / "phone" / "IMG_1234.jpg": (40, 64), a / "sticker.png": (40, 40), a / "depth16.png": (48, 40),
                a / "print.jpg": (40, 40), a / "negative.tiff": (40, 56), a / "фото котика.png": (40, 40),
                a / "wave.gif": (48, 40)}
    server = TritonServer(repo, models=default_models(repo), http_port=free_port(), grpc_port=free_port(),
                          metrics_port=free_port())
    with server:
        for src, size in expected.items():
            out = tmp_path / f"{src.stem}.png"
            r = ganexport(tmp_path, "infer", "--model", "cyclegan_a2b", "--backend", "triton-http", "--url",
                          server.http_url, "--input", str(src), "--output", str(out))
            assert r.returncode == 0, r.stderr
            assert Image.open(out).size == size, src.name
            assert f"{size[0]}x{size[1]} image -> {size[0]}x{size[1]}" in r.stdout, r.stdout
        r = ganexport(tmp_path, "infer", "--model", "cyclegan_a2b", "--backend", "triton-http", "--url",
                      server.http_url, "--input", str(a / "broken.jpg"), "--output", str(tmp_path / "x.png"))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "x.png").exists()
