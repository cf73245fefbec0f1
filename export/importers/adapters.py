"""What an imported net needs around it to fit the serving wrappers: padding by any amount, and pixel ranges.

The wrappers (export/wrappers.py) hand a translator's net a float NCHW image in [-1, 1] and take its output
in [-1, 1], and reflect-pad the sides to the net's ``input_multiple`` first. A U-Net must see sides that are
multiples of 2^depth (256 for unet_256), which an 8-pixel side cannot be reflect-padded to in one step: such a
net pads itself (``reflect_pad_to``) and declares ``input_multiple = 1``. A module whose pixels are 0..1 gets
its range mapped here, inside the graph, so the served model still takes and returns uint8 images.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

RANGES = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0)}


def _bounce(n: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Indices 0..n-1 extended to the next multiple of ``multiple`` by reflection about the edges, as often
    as the length needs: 0 1 2 3 2 1 0 1 2 ..."""
    total = (n + multiple - 1) // multiple * multiple
    # a tensor, not an int: the ONNX exporter has no remainder of a tensor by a symbolic int
    period = torch.full((1,), max(2 * (n - 1), 1), dtype=torch.long, device=device)
    i = torch.remainder(torch.arange(total, device=device), period)
    return torch.where(i < n, i, period - i)


def reflect_pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """NCHW ``x`` reflect-padded at the bottom and right to sides that are multiples of ``multiple``.

    Where F.pad's reflect mode can pad (a pad smaller than the side), the result is the same; beyond
    that, the rows and columns keep bouncing between the edges instead of failing."""
    rows = _bounce(x.shape[2], multiple, x.device)
    cols = _bounce(x.shape[3], multiple, x.device)
    return x.index_select(2, rows).index_select(3, cols)


def _scale(x: torch.Tensor, low: float, high: float, to_low: float, to_high: float) -> torch.Tensor:
    return (x - low) * ((to_high - to_low) / (high - low)) + to_low


class TranslatorAdapter(nn.Module):
    """A module that maps an image to an image of the same size, between the wrapper's [-1, 1] and its own
    pixel ranges, with its sides reflect-padded to its multiple and the output cropped back."""

    input_multiple = 1  # it pads itself, by any amount

    def __init__(self, inner: nn.Module, multiple: int, input_range: str, output_range: str):
        super().__init__()
        self.inner = inner
        self.multiple = int(multiple)
        self.in_low, self.in_high = RANGES[input_range]
        self.out_low, self.out_high = RANGES[output_range]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        x = _scale(reflect_pad_to(x, self.multiple), -1.0, 1.0, self.in_low, self.in_high)
        y = self.inner(x)
        return _scale(y, self.out_low, self.out_high, -1.0, 1.0)[:, :, :h, :w]


class SamplerAdapter(nn.Module):
    """A module that draws an image from a latent: z [N, latent] takes the module's sample shape (e.g.
    [N, 100, 1, 1]), and its output range is mapped to the wrapper's [-1, 1]."""

    def __init__(self, inner: nn.Module, sample_shape: List[int], output_range: str):
        super().__init__()
        self.inner = inner
        self.sample_shape = [int(d) for d in sample_shape]
        self.out_low, self.out_high = RANGES[output_range]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.inner(z.reshape([z.shape[0]] + self.sample_shape))
        return _scale(y, self.out_low, self.out_high, -1.0, 1.0)
