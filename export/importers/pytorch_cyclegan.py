"""pytorch-CycleGAN-and-pix2pix generators: the nets, rebuilt with the same state-dict layout, and their reader.

That project saves ``torch.save(net.state_dict())`` as ``<epoch>_net_G_A.pth`` (CycleGAN) or
``<epoch>_net_G.pth`` (pix2pix). Its ResNet generator is one ``model`` Sequential (7x7 conv, two stride-2
convs, residual blocks, two stride-2 transposed convs, 7x7 conv, tanh); its U-Net nests skip blocks of
4x4 stride-2 convs, each a ``model`` Sequential holding the next. Its options shape the weights:

- ``--norm instance``: InstanceNorm2d without parameters and convs with biases; ``batch``: BatchNorm2d
  with parameters and convs without; ``none``: neither (an Identity at each norm's place);
- ``--no_dropout`` off: a Dropout inside each residual block, which moves its second conv from index 5
  to 6 (a U-Net's dropout comes last in its blocks and moves nothing);
- ``--netG``: the number of residual blocks, or how deep the U-Net goes; ``--ngf``: the first conv's width.

So the reader takes them from the weights, and a flag the user gives is a check against them. Files of
older releases hold ``running_mean`` / ``running_var`` of their instance norms, which that project's own
loader drops; so does this one. The nets here are served in eval mode (a pix2pix generator's batch norm
uses its running statistics and its dropout is off) and compile with TorchScript.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ganexport.export.importers import source
from ganexport.export.importers.adapters import reflect_pad_to
from ganexport.export.importers.entry import Converted
from ganexport.export.importers.formats import NETG_CHOICES
from ganexport.export.importers.source import ImportRefused

FACTORY = f"{__name__}:generator"
NORMS = ("instance", "batch", "none")
STALE = ("running_mean", "running_var", "num_batches_tracked")  # what an older release's instance norms carry
RESNET_DOWNSAMPLINGS = 2  # its ResNet halves the image twice: sides must be multiples of 4


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


# --------------------------------------------------------------------------- ResNet


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Sides must be multiples of 4: the serving wrapper reflect-pads to that and crops back."""

    input_multiple = 2 ** RESNET_DOWNSAMPLINGS

    def __init__(self, input_nc: int, output_nc: int, ngf: int, n_blocks: int, norm: str, dropout: bool):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
        for i in range(RESNET_DOWNSAMPLINGS):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), _norm(norm, 2 * c), nn.ReLU(True)]
        c = ngf * 2 ** RESNET_DOWNSAMPLINGS
        layers += [ResnetBlock(c, norm, dropout, bias) for _ in range(n_blocks)]
        for i in range(RESNET_DOWNSAMPLINGS):
            c = ngf * 2 ** (RESNET_DOWNSAMPLINGS - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       _norm(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------- U-Net


class UnetBlock(nn.Module):
    """One level: down (conv), the levels below, up (transposed conv), and the input concatenated back."""

    def __init__(self, outer: int, inner: int, input_nc: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        input_nc = outer if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1),
                      nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias), _norm(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, _norm(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias), _norm(norm, outer)]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Sides must be multiples of 2^num_downs: it reflect-pads itself (by any amount) and crops back."""

    input_multiple = 1

    def __init__(self, input_nc: int, output_nc: int, ngf: int, num_downs: int, norm: str, dropout: bool):
        super().__init__()
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, sub=block, norm=norm)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, sub=block, outermost=True, norm=norm)
        self.multiple = 2 ** num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        return self.model(reflect_pad_to(x, self.multiple))[:, :, :h, :w]


def generator(image_shape, hp: dict[str, Any]) -> nn.Module:
    """The net an entry's hyper-parameters describe (the catalog's factory signature)."""
    common = dict(input_nc=hp["input_nc"], output_nc=hp["output_nc"], ngf=hp["ngf"], norm=hp["norm"],
                  dropout=hp["dropout"])
    if "n_blocks" in hp:
        return ResnetGenerator(n_blocks=hp["n_blocks"], **common)
    return UnetGenerator(num_downs=hp["num_downs"], **common)


# --------------------------------------------------------------------------- reading the weights


def _shape(state: source.State, key: str) -> list[int]:
    return list(state[key].shape)


def _resnet(state: source.State) -> dict[str, Any]:
    blocks = sorted({int(m[1]) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    first, n = _shape(state, "model.1.weight"), len(blocks)
    last = f"model.{10 + n + 7}.weight"  # pads, convs, norms and ReLUs before it: the layout above
    if last not in state:
        raise ImportRefused(f"no {last} after {n} residual blocks")
    norm = "batch" if "model.2.weight" in state else "instance" if "model.1.bias" in state else "none"
    # behind a dropout the block's second conv (4-D weight) sits at index 6, else 5 (and 6 is its norm)
    second = state.get(f"model.{blocks[0]}.conv_block.6.weight") if blocks else None
    dropout = second is not None and second.dim() == 4
    return dict(netG=f"resnet_{n}blocks", n_blocks=n, ngf=first[0], input_nc=first[1],
                output_nc=_shape(state, last)[0], norm=norm, dropout=dropout)


def _unet(state: source.State) -> dict[str, Any]:
    first = _shape(state, "model.model.0.weight")
    prefix, depth = "model.model.1.model", 1
    while f"{prefix}.3.model.1.weight" in state:  # a middle block holds the next level at index 3
        prefix, depth = f"{prefix}.3.model", depth + 1
    depth += 1  # the innermost level
    norm = ("batch" if "model.model.1.model.2.weight" in state else
            "instance" if "model.model.0.bias" in state else "none")
    return dict(netG=f"unet_{2 ** depth}", num_downs=depth, ngf=first[0], input_nc=first[1],
                output_nc=_shape(state, "model.model.3.weight")[1], norm=norm, dropout=False)


LAYOUTS: dict[str, Callable[[source.State], dict[str, Any]]] = {"model.1.weight": _resnet,
                                                                 "model.model.0.weight": _unet}


def read_layout(state: source.State, name: str) -> dict[str, Any]:
    """netG, ngf, blocks or depth, channels, norm and dropout, as the weights show them."""
    for key, read in LAYOUTS.items():
        if key in state:
            try:
                return read(state)
            except (ImportRefused, KeyError, IndexError) as e:
                raise ImportRefused(f"{name}: not a pytorch-CycleGAN-and-pix2pix generator: "
                                    f"{e.args[0] if isinstance(e, ImportRefused) else f'no {e}'}") from None
    raise ImportRefused(f"{name}: not a pytorch-CycleGAN-and-pix2pix generator: neither "
                        f"{' nor '.join(LAYOUTS)} among its keys ({source.some(state)})")


def _check_flags(found: dict[str, Any], options: dict[str, Any], name: str) -> None:
    """ImportRefused when a flag the user gave contradicts what the weights show."""
    netg, ngf, norm = options.get("netG"), options.get("ngf"), options.get("norm")
    if netg is not None and netg not in NETG_CHOICES:
        raise ImportRefused(f"--netG {netg}: unknown; pytorch-CycleGAN-and-pix2pix has {', '.join(NETG_CHOICES)}")
    if norm is not None and norm not in NORMS:
        raise ImportRefused(f"--norm {norm}: unknown; pytorch-CycleGAN-and-pix2pix has {', '.join(NORMS)}")
    said = {"--netG": (netg, found["netG"]), "--ngf": (ngf, found["ngf"]), "--norm": (norm, found["norm"])}
    wrong = [f"{flag} {given}" for flag, (given, seen) in said.items() if given is not None and given != seen]
    if "n_blocks" in found and options.get("no_dropout") and found["dropout"]:
        wrong.append("--no_dropout")
    if wrong:
        raise ImportRefused(f"{wrong[0]} contradicts the weights: {name} holds a {_describe(found)}")


def _describe(found: dict[str, Any]) -> str:
    dropout = (", dropout" if found["dropout"] else ", no dropout") if "n_blocks" in found else ""
    return f"{found['netG']} generator, ngf {found['ngf']}, {found['norm']} norm{dropout}"


def convert(path: Path, options: dict[str, Any], log: Callable[[str], None] = print) -> Converted:
    """The generator in a pytorch-CycleGAN-and-pix2pix state dict, its layout read from the weights."""
    path = Path(path)
    state = source.state_dict(path, source.load(path), options.get("key"), lambda s: any(k in s for k in LAYOUTS),
                              what="a pytorch-CycleGAN-and-pix2pix generator")
    source.check_finite(path, state)
    found = read_layout(state, path.name)
    _check_flags(found, options, path.name)
    if "num_downs" in found:  # a U-Net's dropout does not show in its weights; it is off when served anyway
        found["dropout"] = not options.get("no_dropout")
    if found["input_nc"] != found["output_nc"]:
        raise ImportRefused(f"{path.name}: {found['input_nc']} input channels but {found['output_nc']} output "
                            f"channels; a translator serves images of one kind (RGB or grey) both ways")
    hp = {k: v for k, v in found.items() if k != "netG"}
    net = generator(None, hp)
    own = net.state_dict()
    stale = [k for k in state if k not in own and k.rsplit(".", 1)[-1] in STALE
             and isinstance(dict(net.named_modules()).get(k.rsplit(".", 1)[0]), nn.InstanceNorm2d)]
    if stale:
        log(f"{path.name}: dropped {len(stale)} instance-norm running statistics of an older release "
            f"(as that project's own loader does)")
    source.load_into(net, {k: v for k, v in state.items() if k not in stale}, path)
    channels = f"{found['input_nc']} channel{'s' if found['input_nc'] != 1 else ''}"
    log(f"{path.name}: {_describe(found)}, {channels} (read from the weights)")
    return Converted(kind="translate", factory=FACTORY, hparams={**hp, "netG": found["netG"]},
                     image_shape=(-1, -1, found["input_nc"]), net=net,
                     description=f"pytorch-CycleGAN-and-pix2pix {_describe(found)}")
