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


# --------------------------------------------------------------------------- scoring a sketch against the filter

# A pixel is a pencil stroke when it is darker than this share of white.
STROKE_LEVEL = 0.8


def stroke_mask(sketch: np.ndarray) -> np.ndarray:
    """Boolean HxW: the stroke pixels of a uint8 sketch (HxW, or HxWxC read from its first channel)."""
    gray = sketch if sketch.ndim == 2 else sketch[..., 0]
    return gray < STROKE_LEVEL * 255


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by a (2 radius + 1)^2 square: every pixel within ``radius`` of a True one."""
    if radius == 0:
        return mask
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def stroke_f1(sketch: np.ndarray, truth: np.ndarray, tolerance: int = 1) -> dict[str, float]:
    """Precision, recall and F1 of ``sketch``'s strokes against ``truth``'s, within ``tolerance`` pixels.

    A drawn stroke pixel counts as right when the true sketch has a stroke
    within ``tolerance`` pixels of it (precision); a true stroke pixel counts
    as found when the drawn sketch has one that close (recall). A blank page
    scores 0; two blank pages agree (1).
    """
    pred, true = stroke_mask(sketch), stroke_mask(truth)
    if pred.shape != true.shape:
        raise ValueError(f"sketch is {pred.shape}, truth is {true.shape}: they must be the same size")
    n_pred, n_true = int(pred.sum()), int(true.sum())
    if n_pred == 0 or n_true == 0:
        f1 = 1.0 if n_pred == n_true else 0.0
        return {"precision": f1 if n_pred == 0 else 0.0, "recall": f1 if n_true == 0 else 0.0, "f1": f1}
    precision = float((pred & _grow(true, tolerance)).sum() / n_pred)
    recall = float((true & _grow(pred, tolerance)).sum() / n_true)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


# Gain of the Sobel baseline: dark where the luminance gradient is steep. Chosen as the best of
# 1, 2, 3, 4, 6 on the training photos (stroke F1), so the baseline is as strong as a one-liner gets.
SOBEL_GAIN = 2.0


def sobel_sketch(rgb: np.ndarray, gain: float = SOBEL_GAIN) -> np.ndarray:
    """A crude edge sketch: 255 - gain * |Sobel gradient of the luminance| / 4, as uint8 HxWx3.

    The baseline a learned photo -> sketch model has to beat: no learning,
    one 3x3 filter pair, edges drawn dark on white.
    """
    g = np.pad(luminance(rgb).astype(np.float64), 1, mode="edge")
    gx = (g[:-2, 2:] + 2 * g[1:-1, 2:] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[1:-1, :-2] + g[2:, :-2])
    gy = (g[2:, :-2] + 2 * g[2:, 1:-1] + g[2:, 2:]) - (g[:-2, :-2] + 2 * g[:-2, 1:-1] + g[:-2, 2:])
    edges = np.clip(np.rint(255.0 - gain * np.hypot(gx, gy) / 4.0), 0, 255).astype(np.uint8)
    return np.repeat(edges[:, :, None], 3, axis=2)
