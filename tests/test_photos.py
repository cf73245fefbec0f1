"""The offline photo collection (training/photos.py) and the stroke score of sketches (ganexport/sketch.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ganexport.sketch import pencil_sketch, sobel_sketch, stroke_f1, stroke_mask
from ganexport.training import data, photos

# --------------------------------------------------------------------------- the collection


def test_every_listed_photo_has_a_package_a_licence_and_a_unique_name():
    every = photos.catalogue()
    assert len(every) >= 300
    assert len({p.name for p in every}) == len(every)
    assert len({p.location for p in every}) == len(every)
    for p in every:
        assert p.package and p.licence and p.location, p


def test_held_out_split_is_by_photo_and_stable():
    every = photos.catalogue()
    test = [p for p in every if p.split == "test"]
    assert 0.07 < len(test) / len(every) < 0.2  # one in TEST_EVERY, by hash
    # the split is a function of the name alone: the same photo under another location stays where it is
    p = test[0]
    assert photos.Photo(p.name, "elsewhere", "x", "/nonexistent.jpg").split == "test"


def test_installed_photos_read_as_rgb_at_the_served_scale():
    have, _ = photos.available("test")
    if not have:
        pytest.skip("no held-out photo installed (make setup installs the photo packages)")
    from scipy.ndimage import gaussian_filter

    for p in have[:3]:
        arr = photos.at_long_side(p)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert max(arr.shape[:2]) == photos.LONG_SIDE
        sketch = photos.sketch_at_long_side(p)
        assert sketch.shape == arr.shape and (sketch == sketch[..., :1]).all()
        # the colour dodge written again here with scipy's Gaussian (PIL's blur approximates it with boxes): a
        # sketch of this photo at this scale agrees to under a level on average, another photo's by tens
        gray = np.rint(arr.astype(np.float64) @ [0.299, 0.587, 0.114])
        paper = 255.0 - gaussian_filter(255.0 - gray, sigma=3.0, mode="nearest")
        dodge = np.clip(np.rint(np.where(paper > 0, gray * 255 / np.maximum(paper, 1e-9), 255)), 0, 255)
        assert np.abs(dodge - sketch[..., 0]).mean() < 1.5
        assert ((dodge < 0.8 * 255) == (sketch[..., 0] < 0.8 * 255)).mean() > 0.98  # the same strokes


def test_a_missing_package_is_counted_not_fatal():
    ghost = photos.Photo("ghost/x.jpg", "no-such-package", "CC0-1.0", "/nonexistent/x.jpg")
    assert not ghost.installed()
    with pytest.raises(photos.PhotoError, match="ghost/x.jpg"):
        ghost.read()


def test_manifest_names_source_licence_and_size():
    have, _ = photos.available()
    rows = photos.manifest(have[:4])
    assert [r["name"] for r in rows] == [p.name for p in have[:4]]
    for r in rows:
        assert r["width"] >= 64 and r["height"] >= 64 and r["licence"] and r["split"] in ("train", "test")


def test_a_damaged_photo_file_is_a_one_line_dataset_error(monkeypatch, tmp_path):
    """Every listed photo pointed at a real file cut off halfway: the real decoder fails on it."""
    import dataclasses

    whole = next((p for p in photos.available()[0] if p.file is not None and "!" not in p.location), None)
    if whole is None:
        pytest.skip("no photo file installed (make setup installs the photo packages)")
    broken = tmp_path / f"broken{whole.file.suffix}"
    broken.write_bytes(whole.file.read_bytes()[: whole.file.stat().st_size // 2])
    damaged = tuple(dataclasses.replace(p, location=str(broken)) for p in photos.catalogue())
    photos._at_long_side.cache_clear()
    photos._sketch.cache_clear()
    monkeypatch.setattr(photos, "catalogue", lambda: damaged)
    with pytest.raises(data.DatasetError, match="reinstall that package") as e:
        data.load_domains("photo2sketch", limit=2, image_size=32)
    assert "\n" not in str(e.value) and "cannot read photo" in str(e.value) and "truncated" in str(e.value)
    monkeypatch.undo()
    photos._at_long_side.cache_clear()
    photos._sketch.cache_clear()


def test_training_crops_carry_strokes():
    pair = data.load_domains("photo2sketch", limit=40, image_size=64, seed=0)
    strokes = [stroke_mask(b).mean() for b in pair.b]
    assert min(strokes) >= data.P2S_MIN_STROKES  # no blank pages in domain B
    assert min(stroke_mask(pencil_sketch(a)).mean() for a in pair.a) > 0.01  # nor flat sky in domain A


# --------------------------------------------------------------------------- the stroke score


def _page(strokes: list[tuple[int, int]], size: int = 10) -> np.ndarray:
    page = np.full((size, size, 3), 255, np.uint8)
    for y, x in strokes:
        page[y, x] = 0
    return page


def test_stroke_f1_counts_a_one_pixel_miss_as_a_hit_and_a_far_one_as_a_miss():
    truth = _page([(5, 5)])
    assert stroke_f1(_page([(5, 6)]), truth)["f1"] == 1.0  # one pixel off: inside the tolerance
    assert stroke_f1(_page([(5, 6)]), truth, tolerance=0)["f1"] == 0.0
    far = stroke_f1(_page([(5, 5), (0, 0)]), truth)  # one right, one 5 pixels away
    assert far["precision"] == 0.5 and far["recall"] == 1.0 and far["f1"] == pytest.approx(2 / 3)


def test_stroke_f1_of_a_blank_page_is_zero_and_of_the_truth_is_one():
    truth = _page([(1, 1), (2, 2), (7, 3)])
    assert stroke_f1(_page([]), truth)["f1"] == 0.0
    assert stroke_f1(truth, truth)["f1"] == 1.0
    assert stroke_f1(_page([]), _page([]))["f1"] == 1.0
    with pytest.raises(ValueError, match="same size"):
        stroke_f1(_page([], 8), truth)


def test_light_gray_is_paper_and_dark_gray_is_a_stroke():
    page = np.full((4, 4, 3), 210, np.uint8)  # above 0.8 of white
    assert not stroke_mask(page).any()
    page[0, 0] = 200
    assert stroke_mask(page).sum() == 1


def test_sobel_baseline_draws_an_edge_and_leaves_flat_areas_white():
    img = np.zeros((12, 12, 3), np.uint8)
    img[:, 6:] = 255
    out = sobel_sketch(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[:, 5:7, 0] == 0).all() and (out[:, :4] == 255).all() and (out[:, 8:] == 255).all()


def test_a_package_unpacked_under_the_photo_root_is_found(tmp_path, monkeypatch):
    """`make setup` unpacks photo packages it does not install under PHOTO_ROOT; the listed path maps there."""
    from PIL import Image

    listed = "/usr/share/ganexport-test-photos/leaf.png"
    unpacked = tmp_path / "usr/share/ganexport-test-photos/leaf.png"
    unpacked.parent.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(unpacked)
    photo = photos.Photo("test/leaf.png", "ganexport-test", "CC0-1.0", listed)
    monkeypatch.setattr(photos, "PHOTO_ROOT", tmp_path / "elsewhere")
    assert not photo.installed()
    monkeypatch.setattr(photos, "PHOTO_ROOT", tmp_path)
    assert photo.installed() and photo.read().shape == (30, 40, 3)


def test_a_training_run_lists_every_photo_it_trained_on(tiny_checkpoints):
    import csv

    rows = list(csv.DictReader((tiny_checkpoints["cyclegan"].parent / "photos.tsv").open(), delimiter="\t"))
    a = {r["name"] for r in rows if r["domain"] == "A"}
    b = {r["name"] for r in rows if r["domain"] == "B"}
    assert a and b and not a & b  # unpaired: no photo in both domains
    assert all(r["split"] == "train" and r["licence"] for r in rows)  # never a held-out photo
