"""Offline training data: every data set in ``catalog.DATASETS`` as uint8 numpy arrays.

Nothing here downloads: training must work on a machine with no network, so
each data set is read from files already on disk (a Debian package, the
scikit-learn / scikit-image wheels, or a folder the user names). Arrays are
uint8 NHWC so the caller decides how to normalise; torch is not needed.

Every failure a user can cause (unknown name, missing or empty folder,
truncated file) raises ``DatasetError`` with a one-line message that names
the path and says how to fix it, so the CLI can print it instead of a
traceback.

    >>> s = load_images("digits", split="test")
    >>> s.images.shape, s.images.dtype, s.class_names[:3]
    ((297, 8, 8, 1), dtype('uint8'), ('0', '1', '2'))
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganexport import catalog, images
from ganexport.training import photos
from ganexport.sketch import pencil_sketch, stroke_mask

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLITS = ("train", "test")
IDX_PREFIX = {"train": "train", "test": "t10k"}
DIGITS_TRAIN = 1500  # load_digits has 1797 images: first 1500 train, the remaining 297 test

# photo2sketch (the photos themselves: training/photos.py): crops per domain, and the share of a crop
# that must be pencil strokes for it to be kept (the filter draws strokes on 4-24% of a whole photo).
P2S_COUNTS = {"train": (4000, 4000), "test": (200, 200)}
P2S_MIN_STROKES = 0.03
P2S_CROP_TRIES = 50


class DatasetError(Exception):
    """One-line, user-facing: names the path and how to fix it."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class ImageSet:
    """One image set (GANs, VAEs): uint8 N x H x W x C, optional integer labels."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    source: str
    attributes: np.ndarray | None = None  # N x A binary labels (catalog's attribute_names), where the set has them


@dataclass
class DomainPair:
    """CycleGAN's two domains; ``aligned`` when b[i] is the true translation of a[i]."""

    a: np.ndarray
    b: np.ndarray
    source: str
    aligned: bool = False
    photos: list[dict] | None = None  # photo2sketch: the manifest of the photos behind each domain


# --------------------------------------------------------------------------- dispatch


def _info(dataset: str) -> catalog.DatasetInfo:
    """The catalog entry, or a DatasetError that lists the known names."""
    try:
        return catalog.DATASETS[dataset]
    except KeyError:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of: {', '.join(catalog.DATASETS)}") from None


def _check_args(split: str, limit: int | None = None, image_size: int | None = None) -> None:
    """Reject bad arguments up front with a one-line message."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose 'train' or 'test'")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if image_size is not None and image_size < 1:
        raise DatasetError(f"image size must be at least 1, got {image_size}")


def load(dataset: str, **kw) -> ImageSet | DomainPair:
    """``load_domains`` for paired (CycleGAN) data sets, ``load_images`` otherwise."""
    return (load_domains if _info(dataset).paired else load_images)(dataset, **kw)


def load_images(dataset: str, *, data_dir: str | None = None, split: str = "train",
                image_size: int | None = None, seed: int = 0, limit: int | None = None) -> ImageSet:
    """Load an unpaired image set.

    ``image_size`` resizes to a square side (default: the catalog's shape);
    ``limit`` keeps a random subset of that many images, chosen by ``seed``
    and kept in file order, so small runs still see every class.
    """
    info = _info(dataset)
    if info.paired:
        raise DatasetError(f"dataset {dataset!r} has two domains; load it with load_domains()")
    _check_args(split, limit, image_size)
    if dataset == "fashion-mnist":
        out = _load_idx_set(data_dir or FASHION_MNIST_DIR, split, default=data_dir is None)
    elif dataset == "digits":
        out = _load_digits(split)
    elif dataset == "folder":
        size = image_size or info.image_shape[0]
        images, src = _load_folder_images(_require_dir(data_dir, dataset), size)
        out = ImageSet(images, None, (), src)
        image_size = None  # already at size
    elif dataset == "faces":
        from ganexport import faces

        try:
            images, labels, src = faces.load(split, limit=limit, seed=seed)
            out = ImageSet(images, None, (), src, attributes=labels)
        except faces.FacesError as e:
            raise DatasetError(str(e)) from None
        limit = None  # already chosen: only those faces were drawn
    else:  # a catalog entry this module does not know how to read
        raise DatasetError(f"dataset {dataset!r} has no loader in ganexport.training.data")
    out = _subset(out, limit, seed)
    if image_size and out.images.shape[1:3] != (image_size, image_size):
        out.images = _resize_all(out.images, image_size)
        out.source += f", resized to {image_size}x{image_size}"
    return out


def example(dataset: str, index: int, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """One image of a split (uint8 HWC) and its attribute labels (None where the set has none), without loading
    the rest: a drawn data set draws that one image (the demo's "pick a held-out face")."""
    _check_args(split)
    if dataset == "faces":
        from ganexport import faces

        try:
            return faces.example(split, index)
        except faces.FacesError as e:
            raise DatasetError(str(e)) from None
    images = load_images(dataset, split=split).images
    if not 0 <= index < len(images):
        raise DatasetError(f"{dataset}: the {split} split has images 0..{len(images) - 1}, not {index}")
    return images[index], None


def load_domains(dataset: str, *, data_dir: str | None = None, split: str = "train",
                 image_size: int | None = None, seed: int = 0, limit: int | None = None) -> DomainPair:
    """Load CycleGAN's two domains A and B (uint8 RGB, ``image_size`` square).

    ``limit``: for photo2sketch the number of crops per domain (defaults
    2000 A / 1800 B for train, 200 for test); for cyclegan-folder the most
    images kept per domain (a random subset chosen by ``seed``).
    ``image_size=None`` means the catalog's size; photo2sketch ignores ``data_dir``.
    """
    info = _info(dataset)
    if not info.paired:
        raise DatasetError(f"dataset {dataset!r} is a single image set; load it with load_images()")
    _check_args(split, limit, image_size)
    image_size = image_size or info.image_shape[0]
    if dataset == "photo2sketch":
        return _load_photo2sketch(split, image_size, seed, limit)
    if dataset == "cyclegan-folder":
        return _load_cyclegan_folder(_require_dir(data_dir, dataset), split, image_size, seed, limit)
    raise DatasetError(f"dataset {dataset!r} has no loader in ganexport.training.data")


def detect_dataset(data_dir: str) -> str:
    """Guess the layout of a user folder: IDX files, trainA/trainB, or plain images."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder {data_dir} does not exist or is not a folder; pass an existing --data DIR")
    if any(_find_idx(root, f"{p}-{kind}") for p in IDX_PREFIX.values() for kind in ("images", "labels")):
        return "fashion-mnist"
    if (root / "trainA").is_dir() and (root / "trainB").is_dir():
        return "cyclegan-folder"
    if _image_files(root):
        return "folder"
    raise DatasetError(f"no Fashion-MNIST IDX files, trainA/trainB folders or images ({', '.join(IMAGE_EXTENSIONS)}) "
                       f"found in {data_dir}; put your images there")


# --------------------------------------------------------------------------- helpers


def _require_dir(data_dir: str | None, dataset: str) -> Path:
    if not data_dir:
        raise DatasetError(f"dataset {dataset!r} reads your own images; pass --data DIR")
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data folder {data_dir} does not exist or is not a folder; pass an existing --data DIR")
    return root


def _subset(s: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """Keep ``limit`` images chosen at random by ``seed``, in their original order."""
    if limit is None or limit >= len(s.images):
        return s
    idx = _pick(len(s.images), limit, seed)
    labels = None if s.labels is None else s.labels[idx]
    return ImageSet(s.images[idx], labels, s.class_names, f"{s.source}, random subset of {limit} (seed {seed})")


def _pick(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 NHWC batch to size x size with PIL (antialiased bicubic)."""
    from PIL import Image

    c = images.shape[3]
    out = np.empty((len(images), size, size, c), np.uint8)
    for i, img in enumerate(images):
        pil = Image.fromarray(img[:, :, 0] if c == 1 else img)
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC)).reshape(size, size, c)
    return out


# --------------------------------------------------------------------------- IDX (Fashion-MNIST, MNIST)


def _find_idx(root: Path, stem: str) -> Path | None:
    """``train-images`` -> train-images-idx3-ubyte[.gz] (or MNIST's dotted train-images.idx3-ubyte)."""
    dims = "idx3" if "images" in stem else "idx1"
    for name in (f"{stem}-{dims}-ubyte", f"{stem}.{dims}-ubyte"):
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (raw or gzipped) into a uint8 array, validating header and size.

    The header is 0x00 0x00, a type code (0x08 = unsigned byte), the number of
    dimensions, then one big-endian uint32 per dimension.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"cannot read IDX file {path} ({e}); re-download or reinstall it") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DatasetError(f"{path} is not an IDX file (bad magic number); re-download it")
    if raw[2] != 0x08:
        raise DatasetError(f"{path} holds IDX type 0x{raw[2]:02x}; "
                           "only unsigned-byte (0x08) images and labels are supported")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"IDX file {path} has a truncated header; re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DatasetError(f"IDX file {path} is {'truncated' if len(raw) < expected else 'too long'} "
                           f"({len(raw)} bytes, header says {expected}); re-download it")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load_idx_set(data_dir: str, split: str, *, default: bool) -> ImageSet:
    """Images and labels of one IDX split, checked against each other."""
    root = Path(data_dir)
    fix = "apt-get install dataset-fashion-mnist or pass --data DIR" if default else "pass the folder that holds them"
    if not root.is_dir():
        raise DatasetError(f"Fashion-MNIST folder {data_dir} not found or not a folder; {fix}")
    prefix = IDX_PREFIX[split]
    paths = {kind: _find_idx(root, f"{prefix}-{kind}") for kind in ("images", "labels")}
    for kind, p in paths.items():
        if p is None:
            raise DatasetError(f"no {prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz] in {data_dir}; {fix}")
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3:
        raise DatasetError(f"{paths['images']} has {images.ndim} dimensions, expected 3 (N, H, W); re-download it")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{paths['labels']} has shape {labels.shape}, expected ({len(images)},) to match "
                           f"{paths['images'].name}; re-download it")
    names = catalog.FASHION_MNIST_CLASSES
    if labels.size and labels.max() >= len(names):
        raise DatasetError(f"{paths['labels']} has label {labels.max()}, expected 0..{len(names) - 1}")
    return ImageSet(images[..., None].copy(), labels.astype(np.int64), names,
                    f"{len(images)} {split} images from {paths['images']}")


# --------------------------------------------------------------------------- digits


def _load_digits(split: str) -> ImageSet:
    """scikit-learn's 8x8 digits (values 0..16) scaled to 0..255; fixed train/test cut."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("dataset 'digits' needs scikit-learn; pip install 'ganexport[train]'") from None
    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    cut = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    names = catalog.DATASETS["digits"].class_names
    return ImageSet(images[cut].copy(), labels[cut].copy(), names,
                    f"{len(labels[cut])} {split} images from scikit-learn load_digits")


# --------------------------------------------------------------------------- image folders


def _image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted so runs are reproducible.

    Hidden files and folders (``.thumbnails/``, macOS ``._photo.jpg`` sidecars) are
    not the user's images: they are left out, not counted as unreadable.
    """
    def visible(p: Path) -> bool:
        return not any(part.startswith(".") for part in p.relative_to(root).parts)

    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and visible(p))


def _open_rgb(path: Path, size: int):
    """Open an image as RGB: EXIF-rotated, alpha composited on white (not black)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        return Image.fromarray(images.to_array(im, channels=3))


def _resize_short_side(im, short: int):
    """Scale a PIL image so its shorter side is ``short`` pixels."""
    from PIL import Image

    w, h = im.size
    scale = short / min(w, h)
    new = (max(short, round(w * scale)), max(short, round(h * scale)))
    return im if new == (w, h) else im.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)


def square_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 size x size x 3: shorter side resized to ``size``, centre-cropped."""
    im = _resize_short_side(_open_rgb(path, size), size)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


SHOWN_UNREADABLE = 3  # skipped files named in the data summary; config.json keeps the same line


def _load_folder_images(root: Path, size: int) -> tuple[np.ndarray, str]:
    """Every readable image under ``root`` as N x size x size x 3; unreadable ones named, with the reason."""
    files = _image_files(root)
    images, bad = [], []
    for path in files:
        try:
            images.append(square_image(path, size))
        except Exception as e:  # noqa: BLE001 - any decoder failure (OSError, bomb, bad header): skip, say why
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:80]
            bad.append(f"{path.relative_to(root)}: {reason}")
    if not images:
        what = f"{len(files)} image files, none readable" if files else "no image files"
        raise DatasetError(f"{what} ({', '.join(IMAGE_EXTENSIONS)}) in {root}; "
                           "put images there or pass another --data DIR")
    src = f"{len(images)} images from {root}"
    if bad:
        shown = "; ".join(bad[:SHOWN_UNREADABLE]) + (f"; and {len(bad) - SHOWN_UNREADABLE} more"
                                                     if len(bad) > SHOWN_UNREADABLE else "")
        src += f" ({len(bad)} unreadable files skipped: {shown})"
    return np.stack(images), src


def _load_cyclegan_folder(root: Path, split: str, size: int, seed: int, limit: int | None) -> DomainPair:
    """DIR/trainA + DIR/trainB (or testA/testB), each loaded like ``folder``."""
    domains = []
    for side in ("A", "B"):
        sub = root / f"{split}{side}"
        if not sub.is_dir():
            raise DatasetError(f"CycleGAN folder {sub} is missing; "
                               f"create {root}/{split}A and {root}/{split}B with images")
        images, src = _load_folder_images(sub, size)
        if limit is not None and limit < len(images):
            images = images[_pick(len(images), limit, seed)]
            src += f", random subset of {limit} (seed {seed})"
        if len(images) == 1:
            src += f" (warning: one image only; the model will learn that one picture as {side})"
        domains.append((images, src))
    (a, src_a), (b, src_b) = domains
    return DomainPair(a, b, f"A: {src_a}; B: {src_b}")


# --------------------------------------------------------------------------- photo2sketch


def photo2sketch_photos(split: str = "train") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the installed photos behind domain A and domain B of a split.

    "test" is the held-out photos (``photos.TEST_EVERY``, by name hash), both
    domains from the same photos, aligned; "train" alternates the others
    between A and B, so the two train domains never share a photo and the
    CycleGAN really learns from unpaired data.
    """
    _check_args(split)
    names = [p.name for p in photos.available(split)[0]]
    if split == "test":
        return tuple(names), tuple(names)
    return tuple(names[0::2]), tuple(names[1::2])


def _photos_by_name(names: tuple[str, ...]) -> list[photos.Photo]:
    by_name = {p.name: p for p in photos.catalogue()}
    return [by_name[n] for n in names]


def _structured_crops(chosen: list[photos.Photo], n: int, size: int, rng: np.random.Generator,
                      take_sketch: bool) -> np.ndarray:
    """``n`` size x size crops of photos at the served scale, each with pencil strokes on P2S_MIN_STROKES of it.

    A crop of sky or a white wall is a blank page in domain B; with many of them
    the discriminator learns that blank patches are sketches and the generator
    draws nothing. Each crop is drawn from a random photo at a random position
    (random horizontal flip) until the filter marks enough stroke pixels there;
    a photo too small for the crop is scaled up to fit.
    """
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        for attempt in range(P2S_CROP_TRIES):
            photo = chosen[rng.integers(len(chosen))]
            pic, sketch = _fit(photos.at_long_side(photo), size), _fit(photos.sketch_at_long_side(photo), size)
            y, x = rng.integers(pic.shape[0] - size + 1), rng.integers(pic.shape[1] - size + 1)
            strokes = stroke_mask(sketch[y:y + size, x:x + size]).mean()
            if strokes >= P2S_MIN_STROKES or attempt == P2S_CROP_TRIES - 1:
                crop = (sketch if take_sketch else pic)[y:y + size, x:x + size]
                out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
                break
    return out


def _fit(arr: np.ndarray, size: int) -> np.ndarray:
    """``arr`` unchanged, or scaled up so that both sides hold a ``size`` crop."""
    h, w = arr.shape[:2]
    if min(h, w) >= size:
        return arr
    from PIL import Image

    scale = size / min(h, w)
    return np.asarray(Image.fromarray(arr).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                                  Image.Resampling.BICUBIC))


def _load_photo2sketch(split: str, size: int, seed: int, limit: int | None) -> DomainPair:
    """Train: A = crops of half the photos, B = the filter's sketches of crops of the other half.

    Test: crops of held-out photos as A and ``pencil_sketch`` of the same
    crops as B (aligned), to score G_A->B against the exact filter output.
    Photos are at the served scale (``photos.LONG_SIDE`` on the longer side);
    a small ``limit`` reads only that many photos per domain (tests).
    """
    if size < 8:
        raise DatasetError(f"photo2sketch image_size must be at least 8, got {size}")
    names_a, names_b = photo2sketch_photos(split)
    if not names_a or not names_b:
        raise DatasetError("photo2sketch found too few photos; pip install scikit-image scikit-learn and "
                           "apt-get install the photo packages (make setup)")
    n_a, n_b = (limit, limit) if limit is not None else P2S_COUNTS[split]
    rng = np.random.default_rng([seed, 3])
    pick = lambda names, k: _photos_by_name(  # noqa: E731
        names if k >= len(names) else tuple(np.asarray(names)[np.sort(rng.choice(len(names), k, replace=False))]))
    chosen_a, chosen_b = pick(names_a, n_a), pick(names_b, n_b)
    missing = photos.available()[1]
    note = f"; not installed: {', '.join(f'{k} ({v})' for k, v in sorted(missing.items()))}" if missing else ""
    try:
        return _photo2sketch_domains(split, size, seed, chosen_a, chosen_b, n_a, n_b, note)
    except photos.PhotoError as e:  # a listed photo whose file is damaged: one line, with the package to reinstall
        raise DatasetError(f"{e}; reinstall that package (make setup)") from None


def _photo2sketch_domains(split: str, size: int, seed: int, chosen_a: list[photos.Photo],
                          chosen_b: list[photos.Photo], n_a: int, n_b: int, note: str) -> DomainPair:
    """The crops of the chosen photos: aligned photo / sketch pairs for "test", two unpaired domains for "train"."""
    if split == "test":
        a = _structured_crops(chosen_a, n_a, size, np.random.default_rng([seed, 2]), take_sketch=False)
        b = np.stack([pencil_sketch(crop) for crop in a])
        return DomainPair(a, b, f"photo2sketch test: {n_a} {size}x{size} crops of {len(chosen_a)} held-out photos "
                                f"at {photos.LONG_SIDE} px, B = pencil_sketch of the same crops{note}", aligned=True)
    a = _structured_crops(chosen_a, n_a, size, np.random.default_rng([seed, 0]), take_sketch=False)
    b = _structured_crops(chosen_b, n_b, size, np.random.default_rng([seed, 1]), take_sketch=True)
    used = [{"domain": d, **row} for d, chosen in (("A", chosen_a), ("B", chosen_b)) for row in photos.manifest(chosen)]
    return DomainPair(a, b, f"photo2sketch train: A = {n_a} {size}x{size} crops of {len(chosen_a)} photos, "
                            f"B = {n_b} pencil-sketch crops of {len(chosen_b)} other photos (B is made by a filter), "
                            f"photos at {photos.LONG_SIDE} px on the longer side, crops with strokes on at least "
                            f"{P2S_MIN_STROKES:.0%} of pixels{note}", photos=used)
