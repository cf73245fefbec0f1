"""Which checkpoint build, export, verify and eval take, and that each says so.

The rule: --checkpoint (a file or a run folder), else the released weights, else the newest run;
--latest-run puts the newest run first. verify defaults to the checkpoint the repository was built
from, so a repository built from the user's own run is not compared with the released weights.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from click.testing import CliRunner

from ganexport.cli import cli
from ganexport.export import build as pipeline
from ganexport.training import checkpoint


def _place(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return dest


def test_choose_follows_the_rule(tmp_path, tiny_checkpoints):
    weights, runs = tmp_path / "weights", tmp_path / "runs"
    assert checkpoint.choose("dcgan", runs=runs, weights=weights) is None
    old = _place(tiny_checkpoints["dcgan"], runs / "dcgan" / "a" / "checkpoint.safetensors")
    new = _place(tiny_checkpoints["dcgan"], runs / "dcgan" / "b" / "checkpoint.safetensors")
    os.utime(old, (time.time() - 100, time.time() - 100))
    os.utime(new)  # copy2 kept the session fixture's mtime, which is older than that once the session has run a while
    assert checkpoint.choose("dcgan", runs=runs, weights=weights).path == new
    released = _place(tiny_checkpoints["dcgan"], weights / "dcgan.safetensors")
    choice = checkpoint.choose("dcgan", runs=runs, weights=weights)
    assert choice.path == released and "released" in choice.why and "--latest-run" in choice.why
    assert checkpoint.choose("dcgan", latest_run=True, runs=runs, weights=weights).path == new
    given = checkpoint.choose("dcgan", old.parent, latest_run=True, runs=runs, weights=weights)
    assert given.path == old and "--checkpoint" in given.why
    assert checkpoint.choose("cgan", runs=runs, weights=weights) is None


@pytest.mark.slow  # a whole build: export and parity
def test_build_says_which_checkpoint_and_why(tmp_path, tiny_checkpoints, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _place(tiny_checkpoints["dcgan"], tmp_path / "runs" / "dcgan" / "mine" / "checkpoint.safetensors")
    result = CliRunner().invoke(cli, ["build", "-m", "dcgan", "--latest-run", "--repository", "repo"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "runs/dcgan/mine/checkpoint.safetensors" in first and "newest run (--latest-run)" in first
    assert str(tmp_path) not in first  # the path as the user would type it
    assert pipeline.built_from("dcgan", tmp_path / "repo").path.resolve() == run.resolve()


def _broken_copies(source, folder) -> dict[str, object]:
    """Copies of ``source`` broken as files are in the wild: a tensor of another size, a missing one, weights of
    a run that diverged, metadata cut short."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = next(k for k, v in tensors.items() if k.startswith("generator.") and v.dim() >= 2)  # what is served
    cases = {"another size": ({**tensors, first: torch.zeros(2, 2)}, meta),
             "a missing tensor": ({k: v for k, v in tensors.items() if k != first}, meta),
             "NaN weights": ({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                              for k, v in tensors.items()}, meta),
             "damaged metadata": (tensors, {**meta, checkpoint.META_KEY: "{garbage"})}
    paths = {}
    for i, (why, (state, metadata)) in enumerate(cases.items()):
        paths[why] = folder / f"broken{i}.safetensors"
        save_file(state, str(paths[why]), metadata=metadata)
    assert json.loads(meta[checkpoint.META_KEY])["model"] == "dcgan"
    return paths


@pytest.mark.parametrize("command", ["build", "export", "verify"])
def test_a_broken_checkpoint_is_refused_in_one_line(tmp_path, tiny_checkpoints, command):
    repo = tmp_path / "repo"
    if command == "verify":
        pipeline.build("dcgan", checkpoint_path=tiny_checkpoints["dcgan"], repo=repo, log=lambda m: None)
    where = {"build": ["--repository", str(repo)], "export": ["--out", str(tmp_path / "out")],
             "verify": ["--repository", str(repo)]}[command]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "broken" not in p.name)
    words = {"another size": "does not fit its generator net: size mismatch for",
             "a missing tensor": "does not fit its generator net: Missing key(s)",
             "NaN weights": "holds NaN or infinite values", "damaged metadata": "its ganexport metadata is damaged"}
    for why, path in _broken_copies(tiny_checkpoints["dcgan"], tmp_path).items():
        result = CliRunner().invoke(cli, [command, "--model", "dcgan", "--checkpoint", str(path), *where])
        assert result.exit_code == 2 and "Traceback" not in result.output, (why, result.output)
        error = result.output.strip().splitlines()[-1]
        assert error.startswith("error:") and words[why] in error, (why, result.output)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "broken" not in p.name) == before


def test_build_help_states_the_rule():
    out = CliRunner().invoke(cli, ["build", "--help"]).output
    assert "--latest-run" in out and "released weights" in out and "newest" in out


@pytest.mark.slow  # a whole build: export and parity
def test_verify_defaults_to_the_checkpoint_the_repository_was_built_from(tmp_path, tiny_checkpoints, monkeypatch):
    """The project ships weights/dcgan.safetensors; a repository built from a run must be checked against
    the run, not reported as corrupt against the released weights."""
    assert checkpoint.choose("dcgan", runs=tmp_path / "none").why.startswith("the released weights")
    monkeypatch.chdir(tmp_path)
    run = _place(tiny_checkpoints["dcgan"], tmp_path / "runs" / "dcgan" / "mine" / "checkpoint.safetensors")
    repo = tmp_path / "repo"
    pipeline.build("dcgan", checkpoint_path=run.parent, repo=repo, log=lambda m: None)
    # the run folder moved: found again by its SHA-256 among the runs
    moved = tmp_path / "runs" / "dcgan" / "renamed"
    run.parent.rename(moved)
    lines = []
    assert pipeline.verify("dcgan", repo=repo, log=lines.append) == ["dcgan", "dcgan_torchscript"]
    assert "the one this repository was built from" in lines[0] and "renamed" in lines[0]
    # a --resume rewrote the checkpoint: verify says so instead of blaming the published files
    with open(moved / "checkpoint.safetensors", "ab") as f:
        f.write(b" ")
    result = CliRunner().invoke(cli, ["verify", "-m", "dcgan", "--repository", str(repo)])
    assert result.exit_code == 2
    assert "is gone or has changed" in result.output and "--checkpoint" in result.output
    assert "differs from PyTorch" not in result.output
    # asked explicitly, it compares with what it was given
    result = CliRunner().invoke(cli, ["verify", "-m", "dcgan", "--repository", str(repo),
                                      "--checkpoint", str(tiny_checkpoints["dcgan"])])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A smoke CycleGAN trained on a user's DIR/trainA + trainB (+ testA/testB), from a working directory
    the later commands do not share."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("user")
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB", "testA", "testB"):
        (root / "data" / split).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((40 + 8 * i, 48, 3)) * 255).astype(np.uint8)).save(
                root / "data" / split / f"{i}.png")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, ["train", "-m", "cyclegan", "--profile", "smoke", "--data", "data",
                                          "--image-size", "32", "--quiet"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return root, next((root / "runs" / "cyclegan").iterdir())


def test_a_run_records_its_data_folder_as_an_absolute_path(folder_run):
    root, run = folder_run
    assert checkpoint.read_meta(run)["data_dir"] == str((root / "data").resolve())


def test_eval_measures_a_folder_run_on_its_recorded_folder(folder_run, tmp_path, monkeypatch):
    root, run = folder_run
    monkeypatch.chdir(tmp_path)  # elsewhere: the recorded path must be absolute
    result = CliRunner().invoke(cli, ["eval", "-m", "cyclegan", "--checkpoint", str(run)])
    assert result.exit_code == 0, result.output
    assert "cycle_l1: A-B-A" in result.output


def test_eval_takes_another_folder_with_data(folder_run, tmp_path):
    root, run = folder_run
    (tmp_path / "other" / "testA").mkdir(parents=True)
    shutil.copy(next((root / "data" / "testA").iterdir()), tmp_path / "other" / "testA")
    result = CliRunner().invoke(cli, ["eval", "-m", "cyclegan", "--checkpoint", str(run),
                                      "--data", str(tmp_path / "other")])
    assert result.exit_code == 2
    assert result.output.startswith("cyclegan: checkpoint")
    assert "testB is missing" in result.output and "Traceback" not in result.output
