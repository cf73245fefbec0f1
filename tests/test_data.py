"""Offline data sets read from real files: IDX, digits, image folders, photo2sketch."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganexport import catalog
from ganexport.sketch import pencil_sketch
from ganexport.training import data

FASHION = Path(data.FASHION_MNIST_DIR)
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)",
)


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write a uint8 array in IDX format (big-endian dims), optionally gzipped."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def idx_dir(tmp_path: Path, n: int = 12, *, compress: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{ext}", images, compress=compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress=compress)
    return tmp_path, images, labels


def save_image(path: Path, mode: str, size=(40, 30), color=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if color is not None else (10, 200, 30, 255)[: len(mode)]).save(path)
    return path


def image_folder(root: Path) -> Path:
    save_image(root / "a.png", "RGB")
    save_image(root / "b.jpg", "RGB", size=(30, 50))
    save_image(root / "sub" / "c.png", "RGBA", color=(255, 0, 0, 0))  # fully transparent -> white
    save_image(root / "sub" / "d.png", "L", color=77)
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG garbage")
    return root


# --------------------------------------------------------------------------- IDX


@needs_fashion
def test_real_fashion_mnist():
    train = data.load_images("fashion-mnist")
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and set(np.unique(train.labels)) == set(range(10))
    assert train.class_names == catalog.FASHION_MNIST_CLASSES
    test = data.load("fashion-mnist", split="test", limit=50, seed=3)
    assert test.images.shape == (50, 28, 28, 1) and len(test.labels) == 50
    assert "t10k" in test.source


@pytest.mark.parametrize("compress", [False, True])
def test_idx_roundtrip(tmp_path, compress):
    root, images, labels = idx_dir(tmp_path, compress=compress)
    assert data.detect_dataset(str(root)) == "fashion-mnist"
    s = data.load_images("fashion-mnist", data_dir=str(root), split="test")
    np.testing.assert_array_equal(s.images[..., 0], images)
    np.testing.assert_array_equal(s.labels, labels.astype(np.int64))


def test_mnist_dotted_names(tmp_path):
    """Some MNIST mirrors name files train-images.idx3-ubyte."""
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "train-images.idx3-ubyte", images)
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.array([3, 4], np.uint8))
    s = data.load_images("fashion-mnist", data_dir=str(tmp_path))
    np.testing.assert_array_equal(s.images[..., 0], images)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_idx(tmp_path, compress):
    root, _, _ = idx_dir(tmp_path, compress=compress)
    path = root / f"train-images-idx3-ubyte{'.gz' if compress else ''}"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte"):
        data.load_images("fashion-mnist", data_dir=str(root))


def test_malformed_idx(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00")
    with pytest.raises(data.DatasetError, match="not an IDX"):
        data.read_idx(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "x").mkdir()
    root, _, _ = idx_dir(tmp_path / "x", compress=False)
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))  # count mismatch
    with pytest.raises(data.DatasetError, match="labels"):
        data.load_images("fashion-mnist", data_dir=str(root))


def test_missing_idx_names_fix(tmp_path):
    with pytest.raises(data.DatasetError, match="train-images") as e:
        data.load_images("fashion-mnist", data_dir=str(tmp_path))
    assert str(tmp_path) in str(e.value)


# --------------------------------------------------------------------------- digits


def test_digits():
    train, test = data.load_images("digits"), data.load_images("digits", split="test")
    assert train.images.shape == (1500, 8, 8, 1) and test.images.shape == (297, 8, 8, 1)
    assert train.images.dtype == np.uint8 and train.images.min() == 0 and train.images.max() == 255
    assert train.labels.dtype == np.int64 and train.class_names == catalog.DATASETS["digits"].class_names
    small = data.load_images("digits", limit=20, image_size=16)
    assert small.images.shape == (20, 16, 16, 1)


# --------------------------------------------------------------------------- folders


def test_folder(tmp_path):
    root = image_folder(tmp_path)
    assert data.detect_dataset(str(root)) == "folder"
    s = data.load_images("folder", data_dir=str(root), image_size=16)
    assert s.images.shape == (4, 16, 16, 3) and s.images.dtype == np.uint8
    assert s.labels is None and s.class_names == ()
    assert "1 unreadable" in s.source
    # sorted order: a.png, b.jpg, sub/c.png (transparent -> white), sub/d.png (gray -> RGB)
    np.testing.assert_array_equal(s.images[0, 0, 0], [10, 200, 30])
    assert (s.images[2] == 255).all()
    assert (s.images[3] == 77).all()
    default = data.load("folder", data_dir=str(root))
    assert default.images.shape[1:] == catalog.DATASETS["folder"].image_shape


def test_tiff_photos_train_and_hidden_files_are_not_the_users(tmp_path):
    save_image(tmp_path / "scan.tif", "RGB", color=(1, 2, 3))
    save_image(tmp_path / "scan2.TIFF", "RGB")
    save_image(tmp_path / ".thumbnails" / "scan.png", "RGB")  # an image viewer's cache
    (tmp_path / "._scan.tif").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # a Finder sidecar
    assert data.detect_dataset(str(tmp_path)) == "folder"
    s = data.load_images("folder", data_dir=str(tmp_path), image_size=8)
    assert s.images.shape[0] == 2 and "unreadable" not in s.source
    np.testing.assert_array_equal(s.images[0, 0, 0], [1, 2, 3])


def test_a_domain_of_one_image_is_flagged(tmp_path):
    for side, n in (("A", 3), ("B", 1)):
        for i in range(n):
            save_image(tmp_path / f"train{side}" / f"{i}.png", "RGB")
    pair = data.load_domains("cyclegan-folder", data_dir=str(tmp_path), image_size=16)
    assert "B: 1 images" in pair.source and "one image only" in pair.source.split("B:")[1]
    assert "one image only" not in pair.source.split("B:")[0]


def test_exif_rotation(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = data.load_images("folder", data_dir=str(tmp_path), image_size=20).images[0]
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # white half is now on top


def test_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(data.DatasetError, match="no image files"):
        data.load_images("folder", data_dir=str(tmp_path))
    with pytest.raises(data.DatasetError):
        data.detect_dataset(str(tmp_path))


def test_cyclegan_folder(tmp_path):
    for side, n in (("A", 3), ("B", 2)):
        for i in range(n):
            save_image(tmp_path / f"train{side}" / f"{i}.png", "RGB", size=(50 + i, 40))
    assert data.detect_dataset(str(tmp_path)) == "cyclegan-folder"
    pair = data.load("cyclegan-folder", data_dir=str(tmp_path), image_size=32)
    assert pair.a.shape == (3, 32, 32, 3) and pair.b.shape == (2, 32, 32, 3) and not pair.aligned
    assert data.load_domains("cyclegan-folder", data_dir=str(tmp_path), image_size=32, limit=2).a.shape[0] == 2
    with pytest.raises(data.DatasetError, match="testA"):
        data.load_domains("cyclegan-folder", data_dir=str(tmp_path), split="test")


@pytest.mark.parametrize("call", [
    lambda p: data.detect_dataset(p),
    lambda p: data.load_images("folder", data_dir=p),
    lambda p: data.load_images("fashion-mnist", data_dir=p),
    lambda p: data.load_domains("cyclegan-folder", data_dir=p),
])
def test_missing_dir_is_one_line(tmp_path, call):
    missing = str(tmp_path / "nope")
    with pytest.raises(data.DatasetError) as e:
        call(missing)
    assert "\n" not in str(e.value) and missing in str(e.value)


def test_bad_names():
    with pytest.raises(data.DatasetError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(data.DatasetError, match="split"):
        data.load_images("digits", split="val")
    with pytest.raises(data.DatasetError, match="load_domains"):
        data.load_images("photo2sketch")
    with pytest.raises(data.DatasetError, match="pass --data"):
        data.load_images("folder")


# --------------------------------------------------------------------------- photo2sketch


def test_photo2sketch_photo_split_is_disjoint():
    a, b = data.photo2sketch_photos("train")
    test_a, test_b = data.photo2sketch_photos("test")
    assert a and b and test_a and test_a == test_b
    assert not set(a) & set(b) and not (set(a) | set(b)) & set(test_a)
    assert len(set(a) | set(b) | set(test_a)) == len(a) + len(b) + len(test_a)


def test_photo2sketch_train_deterministic():
    p1 = data.load_domains("photo2sketch", limit=24, image_size=32, seed=5)
    p2 = data.load("photo2sketch", limit=24, image_size=32, seed=5)
    p3 = data.load_domains("photo2sketch", limit=24, image_size=32, seed=6)
    assert p1.a.shape == (24, 32, 32, 3) and p1.b.shape == (24, 32, 32, 3) and not p1.aligned
    np.testing.assert_array_equal(p1.a, p2.a)
    np.testing.assert_array_equal(p1.b, p2.b)
    assert not np.array_equal(p1.a, p3.a) and not np.array_equal(p1.b, p3.b)
    # domain B is exactly filter output: three equal channels
    assert (p1.b[..., 0] == p1.b[..., 1]).all() and (p1.b[..., 0] == p1.b[..., 2]).all()


def test_photo2sketch_test_aligned():
    pair = data.load_domains("photo2sketch", split="test", limit=8)
    assert pair.aligned and pair.a.shape == pair.b.shape == (8, *catalog.DATASETS["photo2sketch"].image_shape)
    for a, b in zip(pair.a, pair.b):
        np.testing.assert_array_equal(b, pencil_sketch(a))


def test_pencil_sketch_properties():
    flat = np.full((16, 16, 3), 120, np.uint8)
    assert (pencil_sketch(flat) == 255).all()  # no edges -> blank paper
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = pencil_sketch(img)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pencil_sketch(img.copy()))
    with pytest.raises(ValueError):
        pencil_sketch(img.astype(np.float32))
