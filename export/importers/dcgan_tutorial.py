"""The generator of PyTorch's DCGAN tutorial (and of pytorch/examples' dcgan): its net and its reader.

It is one ``main`` Sequential: a ConvTranspose2d(nz, ngf*8, 4, 1, 0) from the 1x1 latent to 4x4, then
BatchNorm2d + ReLU and a ConvTranspose2d(4, 2, 1) that doubles the side, again and again, and a Tanh after
the last, which makes the nc image channels (64x64 after five). Everything the net needs shows in the
weight shapes: nz, every width, nc, and the output size from the number of layers. Its checkpoints come as
the state dict itself or inside a dict (``{"netG_state_dict": ..., "netD_state_dict": ..., ...}``); the
generator is the one entry that reads as one. Served as a sampler: z (nz values) -> uint8 image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ganexport.export.importers import source
from ganexport.export.importers.entry import Converted
from ganexport.export.importers.source import ImportRefused

FACTORY = f"{__name__}:generator"
KERNEL = 4
STEP = 3  # a block is ConvTranspose2d, BatchNorm2d, ReLU: the next transposed conv is three indices on


class DcganGenerator(nn.Module):
    """z [N, nz] -> image [N, nc, S, S] in [-1, 1], S = 4 * 2^(layers - 1)."""

    def __init__(self, channels: list[int], bias: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            first = i == 0
            layers.append(nn.ConvTranspose2d(cin, cout, KERNEL, 1 if first else 2, 0 if first else 1, bias=bias))
            if i < len(channels) - 2:
                layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


def generator(image_shape, hp: dict[str, Any]) -> nn.Module:
    """The net an entry's hyper-parameters describe (the catalog's factory signature)."""
    return DcganGenerator(hp["channels"], hp["bias"])


def read_channels(state: source.State) -> list[int]:
    """[nz, widths..., nc] from the transposed convs' weights (in, out, 4, 4); ImportRefused if it is no such
    generator."""
    convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"main\.(\d+)\.weight", k))
                   and state[k].dim() == 4)
    expected = list(range(0, STEP * len(convs), STEP))
    if len(convs) < 2 or convs != expected:
        raise ImportRefused(f"transposed convs at main.{{0,3,6,...}}.weight, found {len(convs)} at {convs[:6]}")
    shapes = [list(state[f"main.{i}.weight"].shape) for i in convs]
    channels = [shapes[0][0]]
    for i, s in zip(convs, shapes):
        if s[0] != channels[-1] or s[2:] != [KERNEL, KERNEL]:
            raise ImportRefused(f"main.{i}.weight is {s}: not a {KERNEL}x{KERNEL} transposed conv from "
                                f"{channels[-1]} channels")
        channels.append(s[1])
    for i, c in zip(convs[:-1], channels[1:-1]):
        if list(state.get(f"main.{i + 1}.weight", torch.empty(0)).shape) != [c]:
            raise ImportRefused(f"no batch norm of {c} channels at main.{i + 1}")
    if channels[-1] not in (1, 3):
        raise ImportRefused(f"{channels[-1]} output channels (an image has 1 or 3)")
    return channels


def _is_generator(state: source.State) -> bool:
    try:
        read_channels(state)
    except ImportRefused:
        return False
    return True


def convert(path: Path, options: dict[str, Any], log: Callable[[str], None] = print) -> Converted:
    """The generator in a DCGAN-tutorial state dict or checkpoint dict, its sizes read from the weights."""
    path = Path(path)
    state = source.state_dict(path, source.load(path), options.get("key"), _is_generator,
                              what="a DCGAN-tutorial generator")
    source.check_finite(path, state)
    try:
        channels = read_channels(state)
    except ImportRefused as e:
        raise ImportRefused(f"{path.name}: not a DCGAN-tutorial generator: {e}") from None
    bias = "main.0.bias" in state
    net = source.load_into(DcganGenerator(channels, bias), state, path)
    side, nz, nc = KERNEL * 2 ** (len(channels) - 2), channels[0], channels[-1]
    log(f"{path.name}: nz {nz}, ngf {channels[-2]}, {nc} channel{'s' if nc != 1 else ''}, {side}x{side} images "
        "(read from the weights)")
    return Converted(kind="sample", factory=FACTORY, hparams={"latent_dim": nz, "channels": channels, "bias": bias},
                     image_shape=(side, side, nc), net=net,
                     description=f"DCGAN-tutorial generator, nz {nz}, ngf {channels[-2]}, {side}x{side}x{nc}")
