"""Layers rewritten, before ONNX export, into equivalent ones that ONNX Runtime's CPU kernels run faster.

ONNX Runtime runs a CPU convolution in blocks of 16 output channels (8 without AVX-512; its "NCHWc"
layout), so a convolution with fewer outputs pays for a whole block: the last layer of a CycleGAN
generator (32 channels -> 3, 7x7, at full resolution) spent 52 of 184 ms of a 512x512 translation
computing 13 channels it threw away (2 threads, AMD EPYC; docs/benchmarks.md, "How far from the
machine's limit"). ``TapSplitConv2d`` moves the kernel's columns into output channels instead: a
(kh x 1) convolution with ``out * kw`` outputs (21 of 32 used, not 3 of 16), then the kw column
groups added back, each shifted by its column. Same arithmetic, same result up to float rounding
(the parity gate compares the exported file with the original module, as always); that layer went
from 52 to 13 ms and the whole translation from 187 to 159 ms.

The rewritten layer computes kw - 1 columns too many (a (kh x 1) kernel has no horizontal border), so
the work a bench counts from the graph grows by (kw - 1) / output width of that layer: 1.2% of it at
512 pixels, under 0.1% of the generator.

Measured and not rewritten: a strided ConvTranspose as a sub-pixel convolution plus DepthToSpace
ran its convolution 2x faster, but ONNX Runtime's DepthToSpace (a strided copy on one thread) took
back more than that (the translation 170 ms against 159).

Only ONNX export gets the rewrite (``for_onnx_cpu``): TorchScript runs on PyTorch's own kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# Fewer output channels than ONNX Runtime's narrowest channel block (8, AVX2): a layer that wastes
# at least half of every block on any x86 CPU
FEW_OUTPUTS = 8


class TapSplitConv2d(nn.Module):
    """``conv`` (stride 1, no dilation, one group, zero padding) as a (kh x 1) convolution with
    ``out_channels * kw`` outputs, one group of ``out_channels`` per kernel column, summed back with
    each group shifted left by its column."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        out_channels, in_channels, kh, kw = conv.weight.shape
        self.out_channels, self.kw = out_channels, kw
        self.padding = conv.padding
        self.columns = nn.Conv2d(in_channels, out_channels * kw, (kh, 1), bias=False)
        with torch.no_grad():
            # weight[o, i, y, x] -> columns.weight[x * out + o, i, y, 0]
            self.columns.weight.copy_(conv.weight.permute(3, 0, 1, 2).reshape(kw * out_channels, in_channels, kh, 1))
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        if ph or pw:
            x = nn.functional.pad(x, (pw, pw, ph, ph))
        z = self.columns(x)
        width = x.shape[-1] - self.kw + 1
        c = self.out_channels
        y = z[:, :c, :, :width]
        for col in range(1, self.kw):
            y = y + z[:, col * c:(col + 1) * c, :, col:col + width]
        return y if self.bias is None else y + self.bias

    @staticmethod
    def applies(layer: nn.Module) -> bool:
        return (type(layer) is nn.Conv2d and layer.out_channels < FEW_OUTPUTS and layer.kernel_size[1] > 1
                and layer.stride == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
                and layer.padding_mode == "zeros" and not isinstance(layer.padding, str))


def for_onnx_cpu(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every layer ``TapSplitConv2d`` applies to rewritten; ``module`` itself
    is untouched (it stays the parity reference). A module without such a layer comes back as is."""
    if not any(TapSplitConv2d.applies(m) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if TapSplitConv2d.applies(child):
                setattr(parent, name, TapSplitConv2d(child))
    return module
