"""The export layer's commands: ``build``, ``verify``, ``export``.

ganexport/cli.py lists them and imports this module only when one of them runs or shows its help;
the exporter and torch are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from ganexport.cli_common import ANY_MODEL_OR_ALL, LATEST_RUN_HELP, UserError, any_model_names, checkpoint_rule
from ganexport.repository import RUNTIMES


def _runtimes(ctx, param, value: str) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [r for r in found if r not in RUNTIMES]
    if unknown or not found:
        raise click.BadParameter(f"{', '.join(unknown) or repr(value)}: choose from {', '.join(RUNTIMES)}")
    return found


@click.command()
@click.option("--model", "-m", required=True, type=ANY_MODEL_OR_ALL,
              help="Model to build (a training model, or one `ganexport import` wrote), or all.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=True), default=None,
              help=checkpoint_rule() + " With neither, build stops (exit 2) unless --train-if-missing.")
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--train-if-missing", is_flag=True,
              help="When a model has neither released weights nor a run, train its quick profile into runs/ "
                   "first (minutes on CPU) instead of stopping.")
@click.option("--flavor", default="embedded", type=click.Choice(["embedded", "native"]),
              help="embedded: Python backend (the bundled server); native: onnxruntime_onnx / pytorch_libtorch.")
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False),
              help="Triton model repository to publish into.")
@click.option("--gpu/--cpu", default=False, help="Instance groups on GPU (KIND_GPU) or CPU.")
@click.option("--tensorrt", is_flag=True,
              help="Native flavour on GPU: let Triton's onnxruntime backend run the ONNX models through TensorRT.")
@click.option("--keep", default=3, type=click.IntRange(min=1), help="How many versions of each model to keep.")
@click.option("--runtimes", default=",".join(RUNTIMES), callback=_runtimes, metavar="RUNTIME,...",
              help="Which runtimes to export, check and publish: a model one of them cannot take (the build "
                   "names it and why) is published for the others only when they are asked for alone.")
def build(model, checkpoint, latest_run, train_if_missing, flavor, repo, gpu, tensorrt, keep, runtimes):
    """Export to ONNX and TorchScript, prove parity with PyTorch, publish into the Triton repository.

    \b
    Examples:
      ganexport build --model cyclegan
      ganexport build --model all --flavor native --repository /models
      ganexport build --model cyclegan --flavor native --gpu --tensorrt --repository /models
      ganexport build --model dcgan --train-if-missing --repository my_repository
      ganexport build --model my_imported_model --runtimes onnxruntime
    Nothing is published unless every exported model passes parity; a failed build
    exits non-zero, names the model, backend and error, and leaves the repository as it was.
    """
    from ganexport.export import build as pipeline
    from ganexport.export import onnx_export, parity
    from ganexport.released import ReleasedError
    from ganexport.repository_writer import PublishError
    from ganexport.training import checkpoint as ckpt_mod

    if checkpoint and model == "all":
        raise click.UsageError("--checkpoint goes with one --model, not all")
    if tensorrt and (flavor, gpu) != ("native", True):
        raise click.UsageError("--tensorrt needs --flavor native --gpu (TensorRT runs in NVIDIA's Triton "
                               "containers, on GPU instances; the bundled server has no onnxruntime backend)")
    names = []
    for name in any_model_names(model):  # `--model all` builds what the flavour can publish, says what it skips
        refusal = _flavor_refusal(name, flavor)
        if refusal and model != "all":
            raise UserError(f"build of {name} refused, nothing published: {refusal}")
        if refusal:
            click.echo(f"skipped: {refusal}")
        else:
            names.append(name)
    if not (checkpoint or train_if_missing):  # say it before building anything, for every model that has none
        try:
            missing = [n for n in names if pipeline.choose(n, latest_run=latest_run) is None]
        except (ckpt_mod.CheckpointError, ReleasedError) as e:
            raise UserError(str(e)) from None
        if missing:
            raise UserError(pipeline.no_checkpoint_message(missing))
    for name in names:
        try:
            pipeline.build(name, checkpoint_path=checkpoint, latest_run=latest_run, repo=Path(repo), flavor=flavor,
                           gpu=gpu, tensorrt=tensorrt, keep=keep, train_if_missing=train_if_missing,
                           runtimes=runtimes, log=click.echo)
        except pipeline.NoCheckpoint as e:
            raise UserError(str(e)) from None
        except (parity.ParityError, onnx_export.ExportError, ckpt_mod.CheckpointError, PublishError) as e:
            raise UserError(f"build of {name} refused, nothing published: {e}") from None
        except OSError as e:  # the export's own temporary files: a full /tmp
            raise UserError(f"build of {name} failed, nothing published: {e.strerror or e}"
                            + (f" ({e.filename})" if e.filename else "")) from None


def _flavor_refusal(model: str, flavor: str) -> str | None:
    from ganexport import catalog, repository_config

    return next(filter(None, (repository_config.flavor_refusal(sig, flavor)
                              for sig in catalog.get(model).signatures())), None)


@click.command()
@click.option("--model", "-m", required=True, type=ANY_MODEL_OR_ALL)
@click.option("--checkpoint", type=click.Path(exists=True), default=None,
              help="A checkpoint file or a run folder. Default: the checkpoint the repository was built from "
                   "(found by the SHA-256 in its parity.json).")
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--repository", "repo", default="model_repository", type=click.Path(file_okay=False))
def verify(model, checkpoint, latest_run, repo):
    """Re-check what is published against the checkpoint: file hashes, then outputs vs PyTorch.

    \b
    Examples:
      ganexport verify --model cyclegan
      ganexport verify --model all --repository /models
    """
    from ganexport.export import build as pipeline
    from ganexport.training import checkpoint as ckpt_mod

    for name in any_model_names(model):
        try:
            pipeline.verify(name, checkpoint_path=checkpoint, latest_run=latest_run, repo=Path(repo), log=click.echo)
        except (pipeline.VerifyError, ckpt_mod.CheckpointError) as e:
            raise UserError(str(e)) from None


@click.command("export")
@click.option("--model", "-m", required=True, type=ANY_MODEL_OR_ALL)
@click.option("--checkpoint", type=click.Path(exists=True), default=None, help=checkpoint_rule())
@click.option("--latest-run", is_flag=True, help=LATEST_RUN_HELP)
@click.option("--out", default="exported", type=click.Path(file_okay=False),
              help="Writes OUT/<triton-name>/model.onnx, model.pt, parity.json.")
@click.option("--runtimes", default=",".join(RUNTIMES), callback=_runtimes, metavar="RUNTIME,...",
              help="Which runtimes' files to export and check.")
def export_cmd(model, checkpoint, latest_run, out, runtimes):
    """Export ONNX and TorchScript files with their parity report, without publishing."""
    from ganexport.export import build as pipeline
    from ganexport.export import onnx_export, parity
    from ganexport.training import checkpoint as ckpt_mod

    for name in any_model_names(model):
        try:
            for d in pipeline.export_files(name, Path(out), checkpoint_path=checkpoint, latest_run=latest_run,
                                           runtimes=runtimes, log=click.echo):
                click.echo(f"wrote {d}")
        except (parity.ParityError, onnx_export.ExportError, ckpt_mod.CheckpointError) as e:
            raise UserError(str(e)) from None
