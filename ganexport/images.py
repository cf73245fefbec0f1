"""Image files in and out, numpy + Pillow only (serving and the demo use it without torch).

People upload what their cameras and editors write: EXIF-rotated JPEGs,
RGBA and palette PNGs, grayscale, 16-bit PNGs. ``read_image`` turns all of
them into the uint8 HxWxC array a model's signature asks for, or raises
``ImageError`` with a one-line reason (not an image, truncated, too small,
too large).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs up front rather than running out of memory.
MAX_PIXELS = 64_000_000
# What is decoded: what cameras, phones and editors write (a phone's MPO opens as JPEG). Never a format whose
# decoder runs another program (EPS runs Ghostscript) or that nobody uploads as a photo.
READ_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line."""


def to_array(im: Image.Image, channels: int = 3) -> np.ndarray:
    """A PIL image in any mode -> uint8 HxWxC (C = 1 or 3), EXIF orientation applied."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit integer or float grayscale: scale, don't clip
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        peak = float(arr.max(initial=0.0))
        top = next((t for t in ((1.0,) if im.mode == "F" else ()) + (255.0, 65535.0) if peak <= t), peak)
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent areas become white
        im = Image.alpha_composite(background, rgba)
    im = im.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
ANIMATED_FORMATS = ("GIF", "PNG", "WEBP")


def read_image(source: str | Path | bytes, channels: int = 3, min_side: int | None = None,
               max_side: int | None = None, *, name: str | None = None, notes: list[str] | None = None) -> np.ndarray:
    """Decode a file or bytes into uint8 HxWxC, refusing what is outside the size limits a model accepts.

    The sides are checked from the header, before any pixel is decoded, so a
    small file that claims 30000x30000 pixels costs nothing; EXIF rotation
    only swaps the sides, so the shorter and longer side are known up front.
    ``notes``, where given, gets what a user should be told (only the first frame of an animation is read).
    """
    arr, said = _read(source, channels, min_side, max_side, fit=False, name=name)
    if notes is not None:
        notes.extend(said)
    return arr


def read_image_to_fit(source: str | Path | bytes, channels: int = 3, min_side: int | None = None,
                      max_side: int | None = None, *, name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Like ``read_image``, but a photo above ``max_side`` is scaled down to fit (aspect ratio kept) instead of
    refused, as a page that takes phone photos should; returns (image, notes saying what was done: scaled,
    first frame of an animation). A JPEG much larger than the limit is decoded at a reduced scale."""
    return _read(source, channels, min_side, max_side, fit=True, name=name)


def read_image_at(source: str | Path | bytes, shape: tuple[int, int, int], *,
                  name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """An image at exactly ``shape`` (H, W, C), what an encoder of fixed size takes: the largest centred crop of
    the target's aspect ratio, resized (antialiased); returns (image, notes saying what was done). An image
    whose shorter side is under a quarter of the target's is refused: blown up that far it shows nothing."""
    h, w, c = shape
    arr, notes = read_image_to_fit(source, c, max(1, min(h, w) // 4), 4 * max(h, w), name=name)
    if arr.shape[:2] == (h, w):
        return arr, notes
    ih, iw = arr.shape[:2]
    scale = min(ih / h, iw / w)
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    im = Image.fromarray(arr[top:top + ch, left:left + cw, 0] if c == 1 else arr[top:top + ch, left:left + cw])
    out = np.asarray(im.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8).reshape(h, w, c)
    return out, [*notes, f"{iw}x{ih} cropped to {cw}x{ch} and resized to {w}x{h}."]


def fit_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) scaled down, aspect ratio kept, so the longer side is at most ``max_side``; unchanged if it fits."""
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _read(source, channels: int, min_side: int | None, max_side: int | None, *, fit: bool,
          name: str | None) -> tuple[np.ndarray, list[str]]:
    name = name or ("upload" if isinstance(source, bytes) else str(source))
    notes: list[str] = []
    try:
        with _opened(source) as im:
            stored_w, stored_h = im.size
            _check_sides(name, stored_w, stored_h, min_side, None if fit else max_side)  # before reading more
            w, h = stored_w, stored_h
            if fit and max_side and max(w, h) > max_side:  # scaled: the sides people see, EXIF-rotated
                if im.getexif().get(EXIF_ORIENTATION, 1) in QUARTER_TURNS:
                    w, h = stored_h, stored_w
            fit_w, fit_h = fit_size(w, h, max_side) if fit else (w, h)
            scaled = (fit_w, fit_h) != (w, h)
            if min_side and min(fit_w, fit_h) < min_side:
                raise ImageError(f"{name}: {w}x{h} is too narrow; scaled to fit the {max_side}-pixel limit it would "
                                 f"be {fit_w}x{fit_h}, and both sides must be at least {min_side} pixels")
            if getattr(im, "is_animated", False) and im.format != "MPO":  # a phone's MPO: first = photo
                what = "is animated" if im.format in ANIMATED_FORMATS else "holds several images"
                notes.append(f"{name} {what} ({getattr(im, 'n_frames', 2)} frames); only its first frame is used.")
            if scaled:
                scale = fit_w / w
                im.draft(None, (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))  # JPEG only
            im.load()
            arr = to_array(im, channels)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file of a format read here ({', '.join(READ_FORMATS)})") from None
    except Image.DecompressionBombError as e:  # Pillow refuses it in open(), before we see the size
        limit = f"; the limit is {max_side} pixels per side" if max_side and not fit else ""
        raise ImageError(f"{name}: too large to decode ({_first_line(e)}){limit}") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{name}: unreadable or truncated image ({_first_line(e)})") from None
    if scaled:
        picture = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        arr = np.asarray(picture.resize((fit_w, fit_h), Image.LANCZOS), np.uint8).reshape(fit_h, fit_w, -1)
        notes.append(f"{name}: scaled down from {w}x{h} to {fit_w}x{fit_h} to fit the {max_side}-pixel limit.")
    return np.ascontiguousarray(arr), notes


@contextlib.contextmanager
def _opened(source: str | Path | bytes):
    """Pillow's image of ``source``, in one of READ_FORMATS, without Pillow's bomb warning (which names its own
    source file): MAX_PIXELS refuses large images in one line, and Pillow's error stays for the largest."""
    Image.init()  # registers every plugin (WebP, TIFF): ``formats`` names only registered ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=READ_FORMATS) as im:
            yield im


def _check_sides(name: str, w: int, h: int, min_side: int | None, max_side: int | None) -> None:
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: {w}x{h} is above the {MAX_PIXELS:,}-pixel limit")
    if min_side and min(h, w) < min_side:
        raise ImageError(f"{name}: {w}x{h} is too small; both sides must be at least {min_side} pixels")
    if max_side and max(h, w) > max_side:
        raise ImageError(f"{name}: {w}x{h} is too large; the limit is {max_side} pixels per side "
                         f"(resize it, e.g. to {max_side} on the longer side)")


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return lines[0] if lines else type(e).__name__


def check_output(path: str | Path) -> None:
    """Refuse, before any work, an output path whose extension names no format Pillow writes."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{Path(path).name}: name the image format with the extension (.png, lossless; or .jpg, "
                         f".webp ...)")
    blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # mkdir would say "File exists", which is the wrong way round
        raise ImageError(f"{path}: cannot write it ({blocker} is a file, not a folder)")


def save_image(arr: np.ndarray, path: str | Path) -> Path:
    """uint8 HxWxC (C = 1 or 3) -> an image file, its format by the extension (PNG: lossless, exact pixels)."""
    return save_picture(Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr), path)


def save_picture(picture: Image.Image, path: str | Path) -> Path:
    """Write ``picture`` (its folder made if missing); ImageError says in one line why it could not be."""
    path = Path(path)
    check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
    except OSError as e:
        raise ImageError(f"{path}: cannot write it ({e.strerror or _first_line(e)})") from None
    return path


def grid_image(images: np.ndarray, nrow: int, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile uint8 NHWC images into one picture, ``nrow`` per row, on a dark background."""
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 32, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y:y + h, x:x + w] = img
    picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def upscale_for_viewing(side: int, target: int = 96) -> int:
    """Integer zoom so small images (28x28) are big enough to look at."""
    return max(1, target // side)
