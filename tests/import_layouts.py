"""Tiny checkpoints in other projects' own layouts, and forward passes written from those layouts, for the
importer tests.

Written here from the key layouts in FINDINGS.md ("Formats of other projects"), independently of
export/importers: the state dicts are built key by key (no net of the importer makes them), and the
reference forwards are plain ``torch.nn.functional`` calls on those tensors, so an importer that rebuilds
a net wrongly (a missing bias, a norm in eval mode where it should not be, a padding off by one) shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5  # torch's norm layers' default, which both projects keep


class Weights:
    """Seeded random tensors of a state dict, small enough that activations stay in tanh's useful range."""

    def __init__(self, seed: int = 0, norm: str = "instance", stale: bool = False):
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}
        self.norm, self.stale = norm, stale

    def randn(self, *shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g) * scale

    def conv(self, key: str, cout: int, cin: int, k: int, bias: bool | None = None, transpose: bool = False):
        bias = self.norm == "instance" if bias is None else bias
        self.state[f"{key}.weight"] = self.randn(*((cin, cout) if transpose else (cout, cin)), k, k)
        if bias:
            self.state[f"{key}.bias"] = self.randn(cout, scale=0.05)

    def norm_layer(self, key: str, c: int):
        """BatchNorm2d's parameters and running statistics; an instance norm has none, except in the files
        of older releases (``stale``), which carry running statistics it never used."""
        if self.norm == "batch":
            self.state.update({f"{key}.weight": 1 + self.randn(c, scale=0.1), f"{key}.bias": self.randn(c, scale=0.1),
                               f"{key}.running_mean": self.randn(c, scale=0.1),
                               f"{key}.running_var": 0.5 + torch.rand(c, generator=self.g),
                               f"{key}.num_batches_tracked": torch.tensor(12)})
        elif self.norm == "instance" and self.stale:
            self.state.update({f"{key}.running_mean": torch.zeros(c), f"{key}.running_var": torch.ones(c),
                               f"{key}.num_batches_tracked": torch.tensor(0)})


def _norm(w: dict[str, torch.Tensor], norm: str, key: str, x: torch.Tensor) -> torch.Tensor:
    if norm == "batch":
        return F.batch_norm(x, w[f"{key}.running_mean"], w[f"{key}.running_var"], w[f"{key}.weight"],
                            w[f"{key}.bias"], False, 0.0, EPS)
    if norm == "instance":
        return F.instance_norm(x, eps=EPS)
    return x


# --------------------------------------------------------------------------- pytorch-CycleGAN-and-pix2pix ResNet


def resnet_state(ngf: int = 2, n_blocks: int = 6, norm: str = "instance", dropout: bool = False, nc: int = 3,
                 stale: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """ResnetGenerator's state dict: model.1 (7x7), model.4 / .7 (stride 2), blocks from model.10 with
    conv_block.1 and .5 (.6 behind a dropout), transposed convs, model.{17+n} (7x7, always biased)."""
    w = Weights(seed, norm, stale)
    w.conv("model.1", ngf, nc, 7)
    w.norm_layer("model.2", ngf)
    for i, c in ((4, ngf), (7, 2 * ngf)):
        w.conv(f"model.{i}", 2 * c, c, 3)
        w.norm_layer(f"model.{i + 1}", 2 * c)
    second = 6 if dropout else 5
    for b in range(n_blocks):
        p = f"model.{10 + b}.conv_block"
        for i in (1, second):
            w.conv(f"{p}.{i}", 4 * ngf, 4 * ngf, 3)
            w.norm_layer(f"{p}.{i + 1}", 4 * ngf)
    for i, c in ((10 + n_blocks, 4 * ngf), (13 + n_blocks, 2 * ngf)):
        w.conv(f"model.{i}", c // 2, c, 3, transpose=True)
        w.norm_layer(f"model.{i + 1}", c // 2)
    w.conv(f"model.{17 + n_blocks}", nc, ngf, 7, bias=True)
    return w.state


def resnet_forward(w: dict[str, torch.Tensor], x: torch.Tensor, n_blocks: int, norm: str,
                   dropout: bool = False) -> torch.Tensor:
    """The ResNet generator in eval mode, from its state dict; x NCHW in [-1, 1], sides multiples of 4."""
    def conv(key, h, **kw):
        return F.conv2d(h, w[f"{key}.weight"], w.get(f"{key}.bias"), **kw)

    def pad(h, p):
        return F.pad(h, [p] * 4, mode="reflect")

    h = F.relu(_norm(w, norm, "model.2", conv("model.1", pad(x, 3))))
    for i in (4, 7):
        h = F.relu(_norm(w, norm, f"model.{i + 1}", conv(f"model.{i}", h, stride=2, padding=1)))
    second = 6 if dropout else 5
    for b in range(n_blocks):
        p = f"model.{10 + b}.conv_block"
        r = F.relu(_norm(w, norm, f"{p}.2", conv(f"{p}.1", pad(h, 1))))
        h = h + _norm(w, norm, f"{p}.{second + 1}", conv(f"{p}.{second}", pad(r, 1)))
    for i in (10 + n_blocks, 13 + n_blocks):
        h = F.conv_transpose2d(h, w[f"model.{i}.weight"], w.get(f"model.{i}.bias"), stride=2, padding=1,
                               output_padding=1)
        h = F.relu(_norm(w, norm, f"model.{i + 1}", h))
    return torch.tanh(conv(f"model.{17 + n_blocks}", pad(h, 3)))


# --------------------------------------------------------------------------- pytorch-CycleGAN-and-pix2pix U-Net


def _unet_levels(ngf: int, num_downs: int, nc: int) -> list[tuple[str, int, int]]:
    """(key prefix, outer channels, inner channels) from the outermost level in."""
    channels = [(nc, ngf), (ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)]
    channels += [(8 * ngf, 8 * ngf)] * (num_downs - 4)
    prefixes = ["model.model"]
    for k in range(1, num_downs):
        prefixes.append(prefixes[-1] + (".1.model" if k == 1 else ".3.model"))
    return [(p, o, i) for p, (o, i) in zip(prefixes, channels)]


def unet_state(ngf: int = 1, num_downs: int = 8, norm: str = "batch", nc: int = 3,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """UnetGenerator's nested state dict: the outermost block's Sequential is model.model, each block's
    next level sits at index 1 (outermost) or 3 (middle blocks) of its Sequential."""
    w = Weights(seed, norm)
    levels = _unet_levels(ngf, num_downs, nc)
    for k, (p, outer, inner) in enumerate(levels):
        if k == 0:
            w.conv(f"{p}.0", inner, outer, 4)
            w.conv(f"{p}.3", outer, 2 * inner, 4, bias=True, transpose=True)
        elif k == num_downs - 1:
            w.conv(f"{p}.1", inner, outer, 4)
            w.conv(f"{p}.3", outer, inner, 4, transpose=True)
            w.norm_layer(f"{p}.4", outer)
        else:
            w.conv(f"{p}.1", inner, outer, 4)
            w.norm_layer(f"{p}.2", inner)
            w.conv(f"{p}.5", outer, 2 * inner, 4, transpose=True)
            w.norm_layer(f"{p}.6", outer)
    return w.state


def unet_forward(w: dict[str, torch.Tensor], x: torch.Tensor, ngf: int, num_downs: int, norm: str) -> torch.Tensor:
    """The U-Net in eval mode (dropout off), from its state dict; sides multiples of 2^num_downs."""
    levels = _unet_levels(ngf, num_downs, x.shape[1])

    def down(key, h):
        return F.conv2d(h, w[f"{key}.weight"], w.get(f"{key}.bias"), stride=2, padding=1)

    def up(key, h):
        return F.conv_transpose2d(h, w[f"{key}.weight"], w.get(f"{key}.bias"), stride=2, padding=1)

    def level(k: int, h: torch.Tensor) -> torch.Tensor:
        p = levels[k][0]
        if k == 0:
            return torch.tanh(up(f"{p}.3", F.relu(level(1, down(f"{p}.0", h)))))
        y = down(f"{p}.1", F.leaky_relu(h, 0.2))
        if k == num_downs - 1:
            y = _norm(w, norm, f"{p}.4", up(f"{p}.3", F.relu(y)))
        else:
            y = level(k + 1, _norm(w, norm, f"{p}.2", y))
            y = _norm(w, norm, f"{p}.6", up(f"{p}.5", F.relu(y)))
        return torch.cat([h, y], 1)

    return level(0, x)


# --------------------------------------------------------------------------- the DCGAN tutorial


def dcgan_tutorial_generator(nz: int = 8, ngf: int = 2, nc: int = 3, seed: int = 0) -> nn.Module:
    """The tutorial's generator: `main` = (ConvTranspose2d, BatchNorm2d, ReLU) x 4, ConvTranspose2d, Tanh;
    its batch norms given running statistics by a few training-mode passes, then in eval mode."""
    torch.manual_seed(seed)
    g = nn.Module()
    widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.ConvTranspose2d(cin, cout, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(True)]
    g.main = nn.Sequential(*layers, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    with torch.no_grad():
        for _ in range(3):
            g.main(torch.randn(16, nz, 1, 1))
    return g.eval()


def dcgan_tutorial_discriminator(nc: int = 3, ndf: int = 2) -> nn.Module:
    d = nn.Module()
    d.main = nn.Sequential(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                           nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
                           nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    return d


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW -> uint8 NHWC, rounding to nearest (the tests allow one level for the rule's edge)."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
