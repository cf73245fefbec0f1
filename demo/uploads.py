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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ganexport.images import read_image_to_fit
from ganexport.sketch import pencil_sketch

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


def read_upload(data: bytes, name: str = "upload", channels: int = 3, min_side: int | None = None,
                max_side: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file into uint8 HxWxC that fits the side limits; (image, notes for the page).

    The one image reader (``ganexport.images``), in its scale-to-fit form; ``ImageError`` (one line,
    naming ``name``) for what is not a usable image.
    """
    return read_image_to_fit(data, channels, min_side, max_side, name=name)


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
