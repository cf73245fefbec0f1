"""The photos people translate: what their phones and editors write, read into what a translator takes.

A phone photo is larger than a translator's largest side (signature
``max_image_side``): it is scaled down to fit, keeping its aspect ratio, and
the page says so. An animated GIF (or PNG, WebP) is translated from its first
frame, also said. Only an image whose shorter side is below the translator's
smallest side, before or after that scaling, is refused. Messages name the
file by its base name, never by where the server keeps it. Gradio-free.

    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.zeros((1500, 2000, 3), np.uint8)).save(buf, "PNG")
    >>> image, notes = read_upload(buf.getvalue(), "phone.png", max_side=1024)
    >>> image.shape, notes[0][:40]
    ((768, 1024, 3), 'phone.png: scaled down from 2000x1500 to')
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganexport.images import MAX_PIXELS, ImageError, to_array
from ganexport.sketch import pencil_sketch

EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")
MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: where Gradio put it (never shown), its base name, its bytes (decoded per translator)."""

    path: str
    name: str
    data: bytes = field(repr=False)


def display_name(path: str | Path | None) -> str:
    """How messages call an upload: its base name (Gradio keeps the uploader's file name), else "upload"."""
    name = Path(str(path)).name if path else ""
    return name or "upload"


def fit_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) scaled down, aspect ratio kept, so the longer side is at most ``max_side``; unchanged if it fits."""
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def read_upload(data: bytes, name: str = "upload", channels: int = 3, min_side: int | None = None,
                max_side: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file into uint8 HxWxC that fits the side limits; (image, notes for the page).

    Raises ``ImageError`` (one line, naming ``name``) for what is not a usable image. The sides are
    checked from the header (EXIF rotation swaps them), before any pixel is decoded; a JPEG much larger
    than ``max_side`` is decoded at a reduced scale (Pillow's draft mode) rather than in full.
    """
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            stored_w, stored_h = im.size
            if stored_w * stored_h > MAX_PIXELS:
                raise ImageError(f"{name}: {stored_w}x{stored_h} is above the {MAX_PIXELS:,}-pixel limit")
            turned = im.getexif().get(EXIF_ORIENTATION, 1) in QUARTER_TURNS
            w, h = (stored_h, stored_w) if turned else (stored_w, stored_h)
            if min_side and min(w, h) < min_side:
                raise ImageError(f"{name}: {w}x{h} is too small; both sides must be at least {min_side} pixels")
            fit_w, fit_h = fit_size(w, h, max_side)
            if min_side and min(fit_w, fit_h) < min_side:
                raise ImageError(f"{name}: {w}x{h} is too narrow; scaled to fit the {max_side}-pixel limit it would "
                                 f"be {fit_w}x{fit_h}, and both sides must be at least {min_side} pixels")
            if getattr(im, "is_animated", False) and im.format != "MPO":  # a phone's MPO: the first is the photo
                what = "is animated" if im.format in ANIMATED_FORMATS else "holds several images"
                notes.append(f"{name} {what} ({getattr(im, 'n_frames', 2)} frames); its first frame is translated.")
            if (fit_w, fit_h) != (w, h):
                scale = fit_w / w
                im.draft(None, (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))  # JPEG only
            im.load()
            image = to_array(im, channels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (JPEG, PNG, WebP, BMP, GIF, TIFF are read)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: too large to decode ({_first_line(e)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: unreadable or truncated image ({_first_line(e)})") from None
    if image.shape[:2] != (fit_h, fit_w):
        picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        image = np.asarray(picture.resize((fit_w, fit_h), Image.LANCZOS), np.uint8).reshape(fit_h, fit_w, -1)
        notes.append(f"{name}: scaled down from {w}x{h} to {fit_w}x{fit_h} to fit the translator's "
                     f"{max_side}-pixel limit.")
    return np.ascontiguousarray(image), notes


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return lines[0] if lines else type(e).__name__


def bundled_examples(folder: Path) -> list[Path]:
    """A few photos for the Translate tab, written at runtime (never downloaded).

    scikit-image / scikit-learn sample photos when installed, else the MATE
    nature backgrounds (scaled down); plus one pencil sketch for the reverse direction.
    """
    folder.mkdir(parents=True, exist_ok=True)
    photos: dict[str, np.ndarray] = {}
    try:
        import skimage.data

        photos["chelsea"] = skimage.data.chelsea()
        photos["coffee"] = skimage.data.coffee()
    except Exception:  # optional: the base install has no scikit-image
        pass
    try:
        from sklearn.datasets import load_sample_image

        photos["china"] = load_sample_image("china.jpg")
    except Exception:  # optional
        pass
    if MATE_NATURE_DIR.is_dir():
        for path in sorted(MATE_NATURE_DIR.glob("*.jpg"))[:2]:
            try:
                with Image.open(path) as im:
                    im.thumbnail((640, 640))
                    photos[path.stem.lower()] = np.asarray(im.convert("RGB"))
            except OSError:
                pass
    out = []
    for name, arr in photos.items():
        im = Image.fromarray(arr[..., :3])
        im.thumbnail((640, 640))
        path = folder / f"{name}.png"
        im.save(path)
        out.append(path)
    if out:
        with Image.open(out[0]) as im:
            path = folder / f"{out[0].stem}-sketch.png"
            Image.fromarray(pencil_sketch(np.asarray(im.convert("RGB")))).save(path)
            out.append(path)
    return out
