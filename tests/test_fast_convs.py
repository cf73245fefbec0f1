"""The layers rewritten before ONNX export compute what the original layers compute.

torch's own convolution is the oracle: each rewritten layer is compared with the ``nn.Conv2d`` it
replaces, on random weights and odd sizes, with and without bias and padding. The published tiny
generator is checked for the layer the rewrite removes (a wide kernel with few outputs).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganexport.export.fast_convs import FEW_OUTPUTS, TapSplitConv2d, for_onnx_cpu


@pytest.mark.parametrize("kernel,padding,bias",
                         [(7, 0, True), (3, 1, False), ((3, 5), (2, 1), True), ((1, 2), 0, True)])
def test_tap_split_conv_equals_the_convolution_it_replaces(kernel, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 3, kernel, padding=padding, bias=bias)
    x = torch.randn(2, 6, 19, 23)
    with torch.no_grad():
        got, want = TapSplitConv2d(conv)(x), conv(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-5


def test_only_wide_kernels_with_few_outputs_are_rewritten():
    assert TapSplitConv2d.applies(nn.Conv2d(32, 3, 7))
    assert TapSplitConv2d.applies(nn.Conv2d(32, FEW_OUTPUTS - 1, 3, padding=1))
    for layer in (nn.Conv2d(32, FEW_OUTPUTS, 7), nn.Conv2d(32, 3, (3, 1)), nn.Conv2d(32, 3, 3, stride=2),
                  nn.Conv2d(32, 3, 3, dilation=2), nn.Conv2d(32, 4, 3, groups=2), nn.Conv2d(32, 3, 3, padding="same"),
                  nn.Conv2d(32, 3, 3, padding=1, padding_mode="reflect"), nn.ConvTranspose2d(32, 3, 3)):
        assert not TapSplitConv2d.applies(layer), layer


def test_the_rewrite_copies_and_leaves_the_parity_reference_alone():
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.ReflectionPad2d(3), nn.Conv2d(16, 3, 7))
    fast = for_onnx_cpu(net)
    assert isinstance(fast[3], TapSplitConv2d) and type(net[3]) is nn.Conv2d and fast[0] is not net[0]
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        assert (fast(x) - net(x)).abs().max().item() < 1e-5
    plain = nn.Sequential(nn.Conv2d(3, 16, 3))
    assert for_onnx_cpu(plain) is plain


def test_the_published_translator_has_no_convolution_wasting_a_channel_block(published):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(published[0] / "cyclegan_a2b" / "1" / "model.onnx"))
    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    shapes = [weights[node.input[1]] for node in model.graph.node
              if node.op_type == "Conv" and node.input[1] in weights]
    assert shapes, "no convolution weights found in the graph"
    wasteful = [s for s in shapes if s[0] < FEW_OUTPUTS and s[-1] > 1]
    assert not wasteful, f"convolutions with few outputs and a wide kernel left: {wasteful}"
    assert any(s[0] % 3 == 0 and s[0] > 3 and s[-1] == 1 for s in shapes)  # the 3-channel output, one group per column
