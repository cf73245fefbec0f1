"""The fixed pencil-sketch filter that *defines* domain B of ``photo2sketch``.

The CycleGAN demo data set pairs real photos (domain A) with pencil sketches
(domain B), but no offline collection of real sketches exists, so domain B is
made by this deterministic colour-dodge filter. That has two consequences
which is why it lives here, in numpy + PIL only:

* the Gradio demo imports it (without the training stack) to show the true
  filter output next to G_A->B(photo) as ground truth, and to say plainly
  that domain B is produced by a filter;
* evaluation can measure how close the generator gets to the exact target.

The blur radius is fixed in pixels rather than scaled with the image: the
generator is fully convolutional and never learns the image size, so a
size-dependent target would be unlearnable.

    >>> import numpy as np
    >>> out = pencil_sketch(np.zeros((8, 8, 3), np.uint8))
    >>> out.shape, out.dtype
    ((8, 8, 3), dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Gaussian blur radius (pixels) of the inverted gray image; sets the stroke width.
BLUR_RADIUS = 3.0
# ITU-R BT.601 luma weights, the usual "luminance" of an sRGB image.
LUMA = np.array([0.299, 0.587, 0.114])


def _to_rgb(rgb: np.ndarray) -> np.ndarray:
    """Accept HxWx3 (also HxW gray and HxWx4 with alpha dropped); reject anything else."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"pencil_sketch expects uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None].repeat(3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"pencil_sketch expects an HxWx3 image, got shape {arr.shape}")
    return arr[:, :, :3]


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luminance, rounded to uint8 HxW."""
    return np.clip(np.rint(_to_rgb(rgb).astype(np.float64) @ LUMA), 0, 255).astype(np.uint8)


def pencil_sketch(rgb: np.ndarray) -> np.ndarray:
    """Colour-dodge pencil sketch of a uint8 HxWx3 image, as uint8 HxWx3 (gray in 3 channels).

    gray = luminance; blur = GaussianBlur(255 - gray, BLUR_RADIUS);
    sketch = min(255, gray * 255 / (255 - blur)). Flat regions dodge to white
    and edges stay dark, which looks like pencil strokes. Output has three
    equal channels so domain B has the same shape as domain A.
    """
    gray = luminance(rgb)
    inverted = Image.fromarray(np.ascontiguousarray(255 - gray))  # 2-D uint8 -> mode "L"
    blur = np.asarray(inverted.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), dtype=np.float64)
    denom = 255.0 - blur
    with np.errstate(divide="ignore", invalid="ignore"):
        dodge = np.where(denom > 0, gray.astype(np.float64) * 255.0 / denom, 255.0)
    sketch = np.clip(np.rint(dodge), 0, 255).astype(np.uint8)
    return np.repeat(sketch[:, :, None], 3, axis=2)
