"""The released weights as an installed package: found from any directory, listed with their checksums,
and no command trains because they were not found.

The wheel itself (built, installed into fresh venvs, used from an empty directory) is checked by
tests/install_check.sh, which `make test` runs after pytest; these tests are the fast part of it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganexport import __version__, catalog, released
from ganexport.cli import cli

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ganexport(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != released.ENV}
    return subprocess.run([sys.executable, "-m", "ganexport", *args], cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=300)


def test_the_resolver_finds_the_weights_and_the_judge_from_another_directory(tmp_path):
    probe = ("from ganexport import released\n"
             "from ganexport.training import judge\n"
             "print(released.weights_dir())\n"
             "print(judge.load_judge('fashion-mnist', train_if_missing=False) is not None)\n")
    env = {k: v for k, v in os.environ.items() if k != released.ENV}
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**env, "HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    where, judged = r.stdout.split()
    assert Path(where).resolve() == WEIGHTS.resolve() and judged == "True"
    assert not (tmp_path / ".cache").exists()  # found, not trained into the user cache


def test_every_weights_file_is_package_data():
    """What the wheel carries is what pyproject's package-data names: a file in weights/ that no pattern
    matches would be missing from every install, and the command that needs it would stop (or train)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["ganexport.weights"] == "weights" and "ganexport.weights" in config["packages"]
    patterns = config["package-data"]["ganexport.weights"]
    tracked = subprocess.run(["git", "ls-files", "weights"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    files = [Path(f).name for f in tracked] or [p.name for p in WEIGHTS.iterdir() if p.is_file()]
    unshipped = [f for f in files if f != "__init__.py" and not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not unshipped, f"weights/ files no package-data pattern ships: {unshipped}"
    assert (WEIGHTS / "__init__.py").is_file()


def test_weights_lists_every_release_with_its_sha256(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(released.ENV, raising=False)
    result = CliRunner().invoke(cli, ["weights"])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert str(WEIGHTS) in header and "ganexport.weights" in header
    expected = {m: WEIGHTS / f"{m}.safetensors" for m in catalog.MODELS}
    expected.update({f"judge_{d}": WEIGHTS / f"judge_{d}.safetensors" for d in released.JUDGE_DATASETS})
    for name, path in expected.items():
        (row,) = [r for r in rows if r.split()[0] == name]
        assert row.split()[1] == path.name and _sha256(path) in row.split() and row.split()[-1] == f"{name}.md"
    doc = json.loads(CliRunner().invoke(cli, ["weights", "--json"]).output)
    assert {w["name"]: w["sha256"] for w in doc["weights"]} == {n: _sha256(p) for n, p in expected.items()}
    assert all(Path(w["card"]).is_file() and w["size"] == Path(w["path"]).stat().st_size for w in doc["weights"])
    assert doc["missing"] == []


def test_weights_follows_the_environment_and_says_when_there_are_none(tmp_path, monkeypatch):
    monkeypatch.setenv(released.ENV, str(tmp_path))
    result = CliRunner().invoke(cli, ["weights"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and str(tmp_path) in result.output and f"${released.ENV}" in result.output
    (tmp_path / "dcgan.safetensors").write_bytes((WEIGHTS / "dcgan.safetensors").read_bytes())
    result = CliRunner().invoke(cli, ["weights"])
    assert result.exit_code == 0 and _sha256(WEIGHTS / "dcgan.safetensors") in result.output
    assert f"no released weights for: {', '.join(m for m in catalog.MODELS if m != 'dcgan')}" in result.output


@pytest.mark.parametrize("model", ["cgan", "all"])
def test_build_without_weights_stops_in_one_line_naming_the_flag(tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(released.ENV, str(tmp_path / "none"))
    result = CliRunner().invoke(cli, ["build", "--model", model])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert "--train-if-missing" in result.output and "ganexport train --model" in result.output
    assert str(tmp_path / "none") in result.output and "runs/" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no runs/, no model_repository/


def test_build_takes_the_released_weights_and_says_so(tmp_path, monkeypatch):
    from ganexport.training import checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(released.ENV, raising=False)
    choice = checkpoint.choose("cgan")
    assert choice.path == released.weights_dir() / "cgan.safetensors"
    assert choice.why.startswith("the released weights, the checkout's weights/")


def test_a_shipped_judge_that_is_missing_is_an_error_not_a_training_run(tmp_path, monkeypatch):
    from ganexport.training import checkpoint, judge

    monkeypatch.setenv(released.ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("GANEXPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(released, "packaged_dir", lambda: tmp_path / "weights")
    with pytest.raises(checkpoint.CheckpointError, match="ganexport train-judge --dataset fashion-mnist"):
        judge.load_judge("fashion-mnist")
    assert not (tmp_path / "cache").exists()


def test_python_m_ganexport_prints_the_version(tmp_path):
    r = _ganexport(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ganexport, version {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_serve_and_infer_take_their_ports_from_the_environment(monkeypatch):
    """How a script (the install check) moves serve's ports once, for serve and infer, without other commands."""
    from ganexport.serving import infer_cli, serve_cli

    monkeypatch.setenv("GANEXPORT_HTTP_PORT", "18000")
    monkeypatch.setenv("GANEXPORT_GRPC_PORT", "18001")
    ctx = serve_cli.serve.make_context("serve", ["--metrics-port", "0"])
    assert (ctx.params["http_port"], ctx.params["grpc_port"], ctx.params["metrics_port"]) == (18000, 18001, 0)
    seen = {}

    class Refused(Exception):
        pass

    def connect(kind, **kwargs):
        seen[kind] = kwargs["url"]
        raise Refused

    monkeypatch.setattr("ganexport.serving.backends.connect", connect)
    for backend in ("triton-http", "triton-grpc"):
        with pytest.raises(Refused):
            infer_cli.infer.main(["--model", "dcgan", "--backend", backend], standalone_mode=False)
    assert seen == {"triton-http": "127.0.0.1:18000", "triton-grpc": "127.0.0.1:18001"}


def test_the_readme_installs_the_wheel_this_version_builds():
    text = (ROOT / "docs" / "getting-started.md").read_text()
    blocks = re.findall(r"<!-- install-check: ([\w-]+) -->\n```sh\n(.*?)```", text, re.S)
    assert [name for name, _ in blocks] == ["train-and-serve", "serve-only"]
    commands = blocks[0][1]
    assert f"dist/ganexport-{__version__}-py3-none-any.whl" in commands
    assert "pip install torch==2.13.0" in commands and "ganexport build --model cgan\n" in commands
    assert "import torch" not in blocks[1][1] and '"$WHEEL[serve]"' in blocks[1][1]
