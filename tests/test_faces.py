"""The faces data set: drawn from seeds, labelled by what DiceBear really drew, rendered a handful at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ganexport import catalog
from ganexport import faces
from ganexport.training import data

pytest.importorskip("dicebear")
pytest.importorskip("cairosvg")

# What each attribute means, written from the style's own variant names (not read from ganexport/faces.py).
MEANING = {
    "smiling": lambda r: r.get("mouthVariant") == "smile",
    "glasses": lambda r: r.get("accessoriesVariant") in {"kurt", "prescription01", "prescription02", "round",
                                                          "sunglasses", "wayfarers"},
    "beard": lambda r: r.get("facialHairVariant") in {"beardLight", "beardMajestic", "beardMedium"},
    "moustache": lambda r: r.get("facialHairVariant") in {"moustacheFancy", "moustacheMagnum"},
    "hat": lambda r: r.get("topVariant") in {"hat", "hijab", "turban", "winterHat02", "winterHat03", "winterHat04",
                                             "winterHat1"},
    "bald": lambda r: "topVariant" not in r,
    "eyes_closed": lambda r: r.get("eyesVariant") == "closed",
}


def drawn(opts: dict) -> dict:
    """The variants DiceBear resolved for these options: what is in the picture (absent: not drawn)."""
    from dicebear import Avatar

    return Avatar(faces._style(), opts).to_json()["options"]


def test_the_catalog_names_the_attributes_this_test_checks():
    assert set(catalog.DATASETS["faces"].attribute_names) == set(MEANING)


def test_labels_are_what_dicebear_drew_for_every_attribute():
    names = faces.attribute_names()
    seen = np.zeros(len(names), int)
    for split in ("train", "test"):
        for i in range(40):
            opts = faces.face_options(split, i)
            labels = faces.attributes(opts)
            resolved = drawn(opts)
            assert [bool(v) for v in labels] == [MEANING[n](resolved) for n in names], (split, i, resolved)
            seen += labels
    assert (seen > 0).all() and (seen < 80).all()  # every attribute both present and absent among 80 faces


def test_a_face_is_the_same_alone_or_in_a_batch_and_splits_differ():
    assert faces.face_options("test", 7) == faces.face_options("test", 7)
    assert faces.face_options("train", 7)["seed"] != faces.face_options("test", 7)["seed"]
    batch, labels, options = faces.draw("test", [3, 7])
    alone = faces.render(faces.face_options("test", 7))
    np.testing.assert_array_equal(batch[1], alone)
    assert options[1] == faces.face_options("test", 7) and labels.shape == (2, len(faces.attribute_names()))


def test_rendering_is_opaque_rgb_on_the_fixed_background_and_glasses_change_the_eyes():
    opts = {**faces.face_options("test", 0), "accessoriesProbability": 0}
    bare = faces.render(opts)
    assert bare.shape == (faces.SIDE, faces.SIDE, 3) and bare.dtype == np.uint8
    assert (bare.reshape(-1, 3) == faces.BACKGROUND).all(1).mean() > 0.05  # transparency flattened onto it
    glasses = faces.render({**opts, "accessoriesProbability": 100, "accessoriesVariant": ["round"]})
    changed = np.argwhere((glasses != bare).any(-1))
    assert len(changed) > 20
    top, bottom = changed[:, 0].min(), changed[:, 0].max()
    assert faces.SIDE * 0.2 < top and bottom < faces.SIDE * 0.7  # the eye band, not the mouth or the hair


def test_a_limit_draws_only_its_faces_and_matches_the_cached_split(tmp_path, monkeypatch):
    monkeypatch.setenv("GANEXPORT_CACHE", str(tmp_path))
    monkeypatch.setitem(faces.COUNTS, "test", 6)
    few = data.load_images("faces", split="test", limit=3, seed=5)
    assert not (tmp_path / "faces").exists()  # drawn now, nothing cached
    assert few.images.shape == (3, 64, 64, 3) and few.attributes.shape == (3, len(faces.attribute_names()))
    whole = data.load_images("faces", split="test")  # renders the (six-face) split into the cache
    chosen = np.sort(np.random.default_rng(5).choice(6, 3, replace=False))
    np.testing.assert_array_equal(few.images, whole.images[chosen])
    np.testing.assert_array_equal(few.attributes, whole.attributes[chosen])
    again = data.load_images("faces", split="test", limit=3, seed=5)  # now read from the cache
    np.testing.assert_array_equal(again.images, few.images)


def test_the_manifest_records_the_licence_and_every_faces_options(tmp_path, monkeypatch):
    monkeypatch.setenv("GANEXPORT_CACHE", str(tmp_path))
    monkeypatch.setitem(faces.COUNTS, "test", 4)
    faces.build_cache("test")
    (manifest,) = (tmp_path / "faces").glob("*test*.manifest.jsonl")
    head, *rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert head["style"] == "avataaars" and "commercial" in head["licence"]["name"]
    assert head["attributes"] == list(faces.attribute_names()) and head["background"] == list(faces.BACKGROUND)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    cached = data.load_images("faces", split="test")
    for r in rows:  # the recorded options draw the cached face again, and say its attributes
        np.testing.assert_array_equal(faces.render(r["options"]), cached.images[r["index"]])
        assert r["attributes"] == [n for n in faces.attribute_names() if MEANING[n](drawn(r["options"]))]


def test_one_held_out_face_by_number_and_its_limits():
    image, labels = data.example("faces", 11)
    np.testing.assert_array_equal(image, faces.render(faces.face_options("test", 11)))
    assert list(labels) == list(faces.attributes(faces.face_options("test", 11)))
    with pytest.raises(data.DatasetError, match="0..1999"):
        data.example("faces", faces.COUNTS["test"])
