"""The command line is assembled from each layer's commands, and a command's module is imported only when needed.

Each case runs in a fresh interpreter through ``python -m ganexport.cli`` (runpy, as the tests' subprocesses
and users call it) and reads ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from ganexport.cli import COMMANDS, UserError, cli

HEAVY = ("torch", "gradio", "onnxruntime", "tritonclient")
LAYERS = ("training", "export", "serving", "demo", "benchmarks")

PROBE = """
import json, runpy, sys
sys.argv = ["ganexport", *json.loads(sys.argv[1])]
try:
    runpy.run_module("ganexport.cli", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> tuple[int, list[str], str]:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout.strip().splitlines()[-1])
    return found["code"], found["modules"], r.stdout


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["train", "--help"], ["serve", "--help"],
                                  ["infer", "--help"], ["weights", "--help"]], ids=" ".join)
def test_help_imports_no_heavy_runtime(args):
    code, modules, out = _modules_after(*args)
    assert code == 0 and "Usage: ganexport" in out
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_listing_the_released_weights_imports_no_heavy_runtime():
    """`ganexport weights` answers in a serving-only install, which has no torch."""
    code, modules, out = _modules_after("weights")
    assert code == 0 and "cgan.safetensors" in out
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


@pytest.mark.parametrize("command, layer", [("build", "export"), ("train", "training"), ("serve", "serving"),
                                            ("infer", "serving"), ("models", None), ("weights", None)])
def test_a_command_imports_only_its_own_layer(command, layer):
    _, modules, _ = _modules_after(command, "--help")
    layers = {m.split(".")[1] for m in modules if m.startswith("ganexport.") and m.split(".")[1] in LAYERS}
    assert layers == ({layer} if layer else set())


# What a user can type after `ganexport` (the docs, --help), written out here rather than read from the registry.
USER_COMMANDS = ("bench", "build", "demo", "deploy", "eval", "export", "gallery", "gpu-check", "import", "infer",
                 "models", "photos", "release", "serve", "train", "train-judge", "verify", "weights")


def test_every_listed_command_resolves_to_the_command_of_that_name():
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(USER_COMMANDS)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(ctx, "no-such-command") is None


def test_the_group_help_lists_every_command_with_its_summary():
    from click.testing import CliRunner

    out = CliRunner().invoke(cli, ["--help"], prog_name="ganexport").output
    for name in COMMANDS:
        summary = cli.get_command(click.Context(cli), name).get_short_help_str(limit=40)
        assert f"  {name} " in out and summary.split()[0] in out


def test_user_error_is_the_hubs():
    from ganexport import cli_common

    assert UserError is cli_common.UserError and UserError("x").exit_code == 2
