"""The offline photo collection behind photo2sketch: real photographs that Debian packages and wheels ship.

A photo -> sketch model is judged on the photos people upload: whole pictures
of people, animals, streets and rooms, 300 to 1000 pixels a side. It learns
from what it sees, so it needs many photos of that kind, at that scale.
Nothing may be downloaded at run time, so the collection is the photographs
already on disk: several hundred installed by Debian packages (wallpapers,
game and demo data) plus the few inside scikit-image and scikit-learn.

``photo_sources.tsv`` beside this file lists every photograph by hand-checked
name (drawings, logos, textures and screenshots in the same packages are left
out), with the package that ships it and its licence. A photo whose package
is not installed is skipped and counted, so the set works with what is there;
``make setup`` installs the packages (see the Makefile's APT_PACKAGES).

The held-out split is by photo, never by crop: a fixed share of the names
(chosen by a hash of the name, so it does not move when a package is missing)
is kept for evaluation, and no crop of those photos is ever trained on.

    >>> from ganexport.training import photos
    >>> every = photos.catalogue()
    >>> sorted({p.split for p in every})
    ['test', 'train']
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ganexport import images
from ganexport.sketch import pencil_sketch

SOURCES_FILE = Path(__file__).with_name("photo_sources.tsv")
# Where `make setup` unpacks the photo packages it does not install (their files only, not their dependencies).
PHOTO_ROOT = Path(os.environ.get("GANEXPORT_PHOTO_ROOT", "/opt/ganexport/photo-packages"))
# Photos are used at the size people upload and the demo serves: 512 pixels on the longer side.
LONG_SIDE = 512
# One name in TEST_EVERY (by hash) is held out for evaluation.
TEST_EVERY = 8


class PhotoError(Exception):
    """A listed photo that cannot be read; one line that names it."""


@dataclass(frozen=True)
class Photo:
    """One photograph: a stable name, who ships it, under which licence, and where it is on disk.

    ``location`` is a file path, ``ARCHIVE.rcc!entry`` for a file inside a
    Qt resource archive, or ``skimage:NAME`` / ``sklearn:NAME`` for the
    photos inside those wheels.
    """

    name: str
    package: str
    licence: str
    location: str
    credit: str = ""

    @property
    def split(self) -> str:
        digest = hashlib.sha256(self.name.encode()).digest()
        return "test" if int.from_bytes(digest[:4], "big") % TEST_EVERY == 0 else "train"

    @property
    def file(self) -> Path | None:
        """The file on disk that holds the photo (a Qt archive for ``!`` locations), if any is found."""
        if self.location.startswith(("skimage:", "sklearn:")):
            return None
        listed = Path(self.location.split("!", 1)[0])
        unpacked = PHOTO_ROOT / listed.relative_to(listed.anchor)
        return next((p for p in (listed, unpacked) if p.is_file()), None)

    def installed(self) -> bool:
        return self.location.startswith(("skimage:", "sklearn:")) or self.file is not None

    def read(self) -> np.ndarray:
        """The photo at full size as uint8 HxWx3 (EXIF rotation applied)."""
        try:
            if self.location.startswith("skimage:"):
                return _skimage_photo(self.location.removeprefix("skimage:"))
            if self.location.startswith("sklearn:"):
                from sklearn.datasets import load_sample_image

                return load_sample_image(self.location.removeprefix("sklearn:"))
            if self.file is None:
                raise OSError("not installed")
            if "!" in self.location:
                from ganexport.training import qt_resources

                return images.read_image(qt_resources.read_file(self.file, self.location.split("!", 1)[1]))
            return images.read_image(self.file)
        except Exception as e:  # noqa: BLE001 - any decoder or archive failure: one line that names the photo
            raise PhotoError(f"cannot read photo {self.name} from {self.package} ({e})") from None


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view; the right one is nearly the same picture
    return getattr(skimage.data, name)()


@lru_cache(maxsize=1)
def catalogue() -> tuple[Photo, ...]:
    """Every listed photo, installed or not, sorted by name."""
    with SOURCES_FILE.open(newline="") as f:
        rows = [r for r in csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")]
    return tuple(sorted((Photo(r["name"], r["package"], r["licence"], r["location"], r["credit"]) for r in rows),
                        key=lambda p: p.name))


def available(split: str | None = None) -> tuple[list[Photo], dict[str, int]]:
    """The installed photos (of ``split``, when given), and how many are missing per package."""
    have, missing = [], {}
    for p in catalogue():
        if split is not None and p.split != split:
            continue
        if p.installed():
            have.append(p)
        else:
            missing[p.package] = missing.get(p.package, 0) + 1
    return have, missing


@lru_cache(maxsize=512)
def _at_long_side(photo: Photo, long_side: int) -> np.ndarray:
    from PIL import Image

    arr = photo.read()
    h, w = arr.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), np.uint8)


def at_long_side(photo: Photo, long_side: int = LONG_SIDE) -> np.ndarray:
    """``photo`` scaled so its longer side is ``long_side`` pixels (read once per process)."""
    out = _at_long_side(photo, long_side)
    out.flags.writeable = False
    return out


def sketch_at_long_side(photo: Photo, long_side: int = LONG_SIDE) -> np.ndarray:
    """``pencil_sketch`` of the photo at ``long_side``: the exact target a model is scored against."""
    return _sketch(photo, long_side)


@lru_cache(maxsize=512)
def _sketch(photo: Photo, long_side: int) -> np.ndarray:
    out = pencil_sketch(at_long_side(photo, long_side))
    out.flags.writeable = False
    return out


def held_out(long_side: int = LONG_SIDE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, photo, its pencil sketch) of every installed held-out photo at ``long_side``: what is scored."""
    return [(p.name, at_long_side(p, long_side), sketch_at_long_side(p, long_side)) for p in available("test")[0]]


def manifest(photos: list[Photo]) -> list[dict]:
    """One row per photo: name, package, licence, split, and its size as shipped (read from the header)."""
    from PIL import Image

    rows = []
    for p in photos:
        if p.location.startswith(("skimage:", "sklearn:")):
            h, w = p.read().shape[:2]
        elif "!" in p.location:
            from ganexport.training import qt_resources

            with Image.open(io.BytesIO(qt_resources.read_file(p.file, p.location.split("!", 1)[1]))) as im:
                w, h = im.size
        else:
            with Image.open(p.file) as im:
                w, h = im.size
        rows.append({"name": p.name, "package": p.package, "licence": p.licence, "credit": p.credit, "split": p.split,
                     "width": w, "height": h})
    return rows


def write_manifest(rows: list[dict], path: Path) -> Path:
    """``rows`` (from ``manifest``, perhaps with more columns) as a tab-separated file with a header."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
