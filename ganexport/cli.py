"""The ``ganexport`` command line: one group, assembled from each layer's commands.

    ganexport models                                    # what the catalog holds
    ganexport train --model dcgan --profile quick       # train one model (runs/dcgan/<run-id>/)
    ganexport train --model cyclegan --data DIR         # your own DIR/trainA + DIR/trainB
    ganexport train --model cgan --resume runs/cgan/<run-id>

Each command lives in its layer (``COMMANDS`` says where) and its module is imported only
when that command runs or shows its help, as in click's "lazily loading subcommands"
pattern: ``ganexport build ...`` loads neither the serving stack nor the demo, and heavy
imports (torch, onnxruntime, gradio) happen inside the commands, so ``--help`` is quick.
"""

from __future__ import annotations

import importlib

import click

from ganexport import __version__, catalog
from ganexport.cli_common import CONTEXT, UserError

__all__ = ["COMMANDS", "LazyGroup", "UserError", "cli", "main"]

# command name -> "module:attribute" of its click command, in the layer that owns it
COMMANDS = {
    "train": "ganexport.training.train_cli:train",
    "train-judge": "ganexport.training.train_cli:train_judge",
    "photos": "ganexport.training.train_cli:photos",
    "eval": "ganexport.training.train_cli:evaluate",
    "release": "ganexport.training.train_cli:release_cmd",
    "gallery": "ganexport.training.train_cli:gallery_cmd",
    "import": "ganexport.export.import_cli:import_cmd",
    "build": "ganexport.export.export_cli:build",
    "verify": "ganexport.export.export_cli:verify",
    "export": "ganexport.export.export_cli:export_cmd",
    "infer": "ganexport.serving.infer_cli:infer",
    "serve": "ganexport.serving.serve_cli:serve",
    "deploy": "ganexport.serving.deploy_cli:deploy",
    "demo": "ganexport.demo.demo_cli:demo",
    "bench": "ganexport.benchmarks.bench_cli:bench",
    "gpu-check": "ganexport.benchmarks.gpu_check:gpu_check",
    "weights": "ganexport.released_cli:weights",
}


class LazyGroup(click.Group):
    """A group whose commands named in ``lazy_commands`` ("module:attribute") are imported on first use.

    Listing them (``ganexport --help``) imports every command module, which is cheap: each imports
    click and the catalog at module level and the rest inside its commands.
    """

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        module_name, attribute = self.lazy_commands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name]} is a {type(command).__name__}, not a click command")
        return command


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="ganexport")
def cli():
    """Train compact generative models, export them to ONNX and TorchScript, verify parity,
    and serve them through Triton and ONNX Runtime.

    Start with `ganexport models` to see the catalog and `ganexport weights` to see the released
    weights, then `ganexport build --model NAME`.
    """


@cli.command()
@click.option("--hparams", is_flag=True, help="Also list each profile's hyper-parameters (what `train --hp` sets).")
def models(hparams):
    """List the catalog: training models and the Triton models each publishes, with signatures; then the
    models `ganexport import` wrote into the models folder, with their source and format."""
    from ganexport import models_folder

    for spec in catalog.MODELS.values():
        click.echo(f"{spec.name}  ({spec.family}, default data: {spec.dataset})")
        click.echo(f"    {spec.description}")
        if hparams:
            for profile in catalog.PROFILES:
                click.echo(f"    {profile}: " + " ".join(f"{k}={v}" for k, v in spec.hp(profile).items()))
        _signatures(spec)
    found = models_folder.entries()
    click.echo(f"\nImported models ({models_folder.where()})"
               + (":" if found else ": none; add one with `ganexport import`"))
    for entry in found:
        if entry.spec is None:
            click.echo(f"{entry.name}  (cannot be read: {entry.problem})")
            continue
        spec, origin = entry.spec, entry.spec.origin
        click.echo(f"{spec.name}  (imported, format {origin.format}, from {origin.source}, "
                   f"sha256 {origin.sha256[:12]})")
        click.echo(f"    {spec.description}")
        if hparams:
            click.echo("    " + " ".join(f"{k}={v}" for k, v in spec.hp("full").items()))
        _signatures(spec)


def _signatures(spec: catalog.ModelSpec) -> None:
    for sig in spec.signatures():
        ins = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.inputs)
        outs = ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in sig.outputs)
        click.echo(f"    -> {sig.name}: {ins} -> {outs}  (max batch {sig.max_batch_size})")


def main(argv=None):
    cli.main(args=argv, prog_name="ganexport")


if __name__ == "__main__":
    main()
