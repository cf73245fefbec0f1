"""``ganexport import``: a generator trained with another project's code, as a model of the catalog.

ganexport/cli.py lists it and imports this module only when it runs or shows its help. The formats and
their options come from the registry (importers/formats.py, click only); the converters, and torch, are
imported inside the command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ganexport.cli_common import UserError
from ganexport.export.importers import formats


class _ImportCommand(click.Command):
    def format_epilog(self, ctx, formatter):
        with formatter.section("Formats (each takes only its own options)"):
            formatter.write_dl([(f.name, f.summary) for f in formats.FORMATS.values()])


@click.command("import", cls=_ImportCommand)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "-n", required=True,
              help="The model's name: what build, serve and infer call it, and its Triton model.")
@click.option("--format", "fmt", required=True, metavar="|".join(formats.FORMATS),
              help="Which project's files SOURCE is (listed below).")
@click.option("--description", default=None, callback=lambda ctx, param, value: " ".join(value.split()) or None
              if value is not None else None,
              help="One line for `ganexport models` and the demo (line breaks become spaces) [default: what the "
                   "weights show, e.g. 'resnet_9blocks generator, ngf 64']")
@click.option("--replace", is_flag=True, help="Import over an imported model of the same name.")
def import_cmd(source, name, fmt, description, replace, **options):
    """Import a generator trained elsewhere into the models folder; then build, serve and infer it by --name.

    \b
    Examples:
      ganexport import latest_net_G_A.pth --name horse2zebra --format pytorch-cyclegan --netG resnet_9blocks
      ganexport import latest_net_G.pth --name facades --format pytorch-cyclegan --netG unet_256 --norm batch
      ganexport import checkpoint.pth --name faces --format dcgan-tutorial --key netG_state_dict
      ganexport import netG_A2B.pth --name monet --format module --module models:Generator \\
          --kwargs '{"input_nc": 3, "output_nc": 3}' --kind translate
      ganexport import ddpm-butterflies-32 --name butterflies --format diffusers
      ganexport build --model horse2zebra
    The entry (the import record and the weights converted to safetensors) goes into ./models, or the
    folder $GANEXPORT_MODELS names. Weights are read with torch.load(weights_only=True) or safetensors:
    a file that needs code unpickled is refused. A refusal writes nothing.
    """
    from ganexport import models_folder
    from ganexport.export.importers import entry
    from ganexport.export.importers.source import ImportRefused

    command = shlex.join(["ganexport", "import", *sys.argv[2:]]) if sys.argv[1:2] == ["import"] else None
    try:
        dest = entry.import_model(source, name, fmt, options, description=description, replace=replace,
                                  command=command, log=click.echo)
    except (ImportRefused, models_folder.EntryError) as e:
        raise UserError(f"import refused, nothing written: {e}") from None
    spec = models_folder.read(dest)
    sig = spec.signatures()[0]
    ins = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.inputs)
    outs = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.outputs)
    click.echo(f"imported {name} into {dest}: {ins} -> {outs}")
    if replace:  # what is published still holds the weights imported before
        click.echo(f"next: ganexport build --model {name} (until then, what is published as {name} serves the "
                   f"previous weights; build every runtime you serve)")
    else:
        click.echo(f"next: ganexport build --model {name}")


# Every format's options, each once; the chosen format's converter gets its own, and another's is refused.
import_cmd.params.extend(formats.options())
