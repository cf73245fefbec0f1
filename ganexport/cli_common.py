"""What every layer's commands share: the user error, the context settings, the checkpoint rule's words.

The commands themselves live in their layers (training/train_cli.py, export/export_cli.py,
serving/serve_cli.py, serving/infer_cli.py, demo/demo_cli.py, benchmarks/bench_cli.py);
ganexport/cli.py assembles them into one group and imports each only when it is needed.
This module imports click and the catalog only.
"""

from __future__ import annotations

import click

from ganexport import catalog

CONTEXT = dict(help_option_names=["-h", "--help"], show_default=True, max_content_width=100)


class UserError(click.ClickException):
    """A one-line error for the user (bad data, bad checkpoint): exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def checkpoint_rule() -> str:
    # what training.checkpoint.choose does, stated here so that --help does not import torch
    return ("A checkpoint file or a run folder (runs/<model>/<run-id>). Default: the released weights "
            "(<model>.safetensors; `ganexport weights` lists them), else the newest runs/<model>/<run-id>.")


LATEST_RUN_HELP = "Take the newest runs/<model>/<run-id> even when released weights exist."


class ModelChoice(click.Choice):
    """A choice of model names read when the command runs, not when it is defined: the catalog's models and
    those ``ganexport import`` wrote into the models folder (the folder is read again when it changed)."""

    def __init__(self, names, case_sensitive: bool = True):
        self._names = names
        super().__init__((), case_sensitive)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it; the names come from ``names``
        pass


# Training and evaluation take the models ganexport trains; build, verify and export also the imported ones.
MODEL_OR_ALL = click.Choice([*catalog.MODELS, "all"])
ANY_MODEL_OR_ALL = ModelChoice(lambda: [*catalog.models(), "all"])


def model_names(model: str) -> list[str]:
    """``--model all`` -> every training model in catalog order; a name -> itself."""
    return list(catalog.MODELS) if model == "all" else [model]


def any_model_names(model: str) -> list[str]:
    """``--model all`` -> every model in catalog order, the imported ones last; a name -> itself."""
    return list(catalog.models()) if model == "all" else [model]


def split_names(ctx, param, value: tuple[str, ...] | None) -> tuple[str, ...]:
    """A click callback: ``--models a,b --models c`` -> ('a', 'b', 'c'), each once, in order."""
    if not value:
        return ()
    return tuple(dict.fromkeys(n.strip() for v in value for n in v.split(",") if n.strip()))
