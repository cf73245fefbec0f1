"""The formats ``ganexport import`` reads: a registry, each with its own options and converter.

Imports click only, so ``ganexport import --help`` lists every format and option without torch. A format's
options keep the names, values and meanings its source project gives them (``--netG``, ``--no_dropout``), so
a user copies them from the command they trained with. Two formats may declare the same option (``--key``):
the command takes it once and hands it to whichever format is chosen. Adding a format is one more
``Format`` here and its converter module; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import click

FROM_WEIGHTS = "read from the weights"


@dataclass(frozen=True)
class Format:
    """One source format: its name for --format, a line for --help, its converter ("module:function",
    called as ``convert(source, options, log)``) and its options (each defaults to None: not given)."""

    name: str
    summary: str
    converter: str
    options: tuple[click.Option, ...] = ()

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)


def _option(*decls: str, shown: str | None = None, **attrs) -> click.Option:
    """An option that defaults to None (or False), so a converter can tell what was given; ``shown`` is the
    default it then takes, as --help states it."""
    attrs.setdefault("default", False if attrs.get("is_flag") else None)
    return click.Option(list(decls), show_default=shown or False, **attrs)


KEY = _option("--key", metavar="KEY",
              shown="the file itself, or its one entry that fits",
              help="The entry of a checkpoint dict that holds the state dict (dots go deeper: a.b).")
NETG_CHOICES = ("resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128")

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format(
        "pytorch-cyclegan",
        "a generator state dict of pytorch-CycleGAN-and-pix2pix (latest_net_G_A.pth, latest_net_G.pth), "
        "CycleGAN or pix2pix",
        "ganexport.export.importers.pytorch_cyclegan:convert",
        (
            _option("--netG", "netG", metavar="|".join(NETG_CHOICES), shown=FROM_WEIGHTS, help="Its --netG."),
            _option("--ngf", type=click.IntRange(min=1), shown=FROM_WEIGHTS,
                    help="Its --ngf (generator filters in the last conv layer)."),
            _option("--norm", metavar="instance|batch|none", shown=FROM_WEIGHTS, help="Its --norm."),
            _option("--no_dropout", "no_dropout", is_flag=True,
                    help="Its --no_dropout. A ResNet's weights show where a dropout sits (a flag that "
                         "contradicts them is refused); a U-Net's do not, and dropout is off when served."),
            KEY,
        ),
    ),
    Format(
        "dcgan-tutorial",
        "the generator of PyTorch's DCGAN tutorial and example (a `main` Sequential of ConvTranspose2d, "
        "BatchNorm2d, ReLU, Tanh), as a state dict or inside a checkpoint dict; served as a sampler z -> image",
        "ganexport.export.importers.dcgan_tutorial:convert",
        (KEY,),
    ),
    Format(
        "module",
        "any torch module, built by your factory and loaded with your weights (.pth, .pt or .safetensors)",
        "ganexport.export.importers.module:convert",
        (
            _option("--module", "module", metavar="PKG.MOD:FACTORY",
                    help="What builds the module; it must be importable whenever the model is built."),
            _option("--kwargs", metavar="JSON", shown="{}", help="Keyword arguments of the factory, a JSON object."),
            KEY,
            _option("--kind", metavar="translate|sample", help="translate: image -> image of the same size; "
                    "sample: latent z -> image."),
            _option("--input-range", "input_range", metavar="-1,1|0,1", shown="-1,1",
                    help="Translators: the pixel range the module takes."),
            _option("--output-range", "output_range", metavar="-1,1|0,1", shown="-1,1, as after a tanh",
                    help="The pixel range the module returns."),
            _option("--channels", type=click.Choice(["1", "3"]), shown="3",
                    help="Translators: image channels (grey or RGB)."),
            _option("--multiple", type=click.IntRange(1, 1024), shown="4",
                    help="Translators: the sides are reflect-padded to a multiple of this, and cropped back."),
            _option("--latent", type=click.IntRange(min=1), help="Samplers: the size of z (required)."),
            _option("--sample-shape", "sample_shape", metavar="D,...", shown="a vector of --latent values",
                    help="Samplers: the shape each z takes before the module, e.g. 100,1,1."),
        ),
    ),
    Format(
        "diffusers",
        "a folder saved by diffusers' save_pretrained: a DDPMPipeline or DDIMPipeline (model_index.json, unet/, "
        "scheduler/), or a UNet2DModel folder with scheduler/ beside it; served as a diffusion model whose "
        "sampling loop, on the server, takes the steps of diffusers' DDIMScheduler",
        "ganexport.export.importers.diffusers_folder:convert",
        (
            _option("--null-class", "null_class", type=click.IntRange(min=0), metavar="K",
                    shown="none: guidance stays 1",
                    help="A class-conditional UNet's class index that it was trained to read as 'no class'; "
                         "then requests may ask for classifier-free guidance other than 1."),
        ),
    ),
)}


def options() -> list[click.Option]:
    """Every format's options, each once (a shared option is one object), in registry order."""
    found: dict[str, click.Option] = {}
    for f in FORMATS.values():
        for o in f.options:
            found.setdefault(o.name, o)
    return list(found.values())


def owners(option_name: str) -> list[str]:
    """The formats that take an option."""
    return [f.name for f in FORMATS.values() if option_name in f.option_names]
