"""Building the front door's compiled gRPC lane, and choosing between it and the Python gRPC door."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from ganexport.serving.front_door_grpc_compiled import BINARY_ENV, door_binary
from ganexport.serving.grpc_door_build import main as build
from ganexport.serving.triton_log import ServerError
from ganexport.serving.triton_server import TritonServer


def test_where_the_lane_can_be_built_make_setup_built_it():
    """So the lane's tests (test_grpc_lane.py) run wherever they could: in CI, apt brings g++ and grpc++."""
    if CliRunner().invoke(build, ["--check"]).exit_code != 0:
        pytest.skip("no g++ or grpc++ here: serve keeps the Python gRPC door")
    assert door_binary() is not None, "run `make setup` (or python -m ganexport.serving.grpc_door_build)"


def test_without_a_compiler_the_build_says_what_is_missing_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, no pkg-config
    monkeypatch.delenv("CXX", raising=False)
    result = CliRunner().invoke(build, ["--out", str(tmp_path / "door"), "--check"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: no C++ compiler (install g++)"]
    assert not (tmp_path / "door").exists()


@pytest.mark.slow
def test_the_build_writes_a_program_that_explains_its_usage(tmp_path):
    if CliRunner().invoke(build, ["--check"]).exit_code != 0:
        pytest.skip("no g++ or grpc++ here")
    out = tmp_path / "door"
    result = CliRunner().invoke(build, ["--out", str(out)])
    assert result.exit_code == 0, result.output
    done = subprocess.run([str(out)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage: ganexport-grpc-door --listen" in done.stderr
    done = subprocess.run([str(out), "--listen", "127.0.0.1:0", "--triton", "x", "--fallback", "y",
                           "--rules", str(tmp_path / "missing"), "--state", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "cannot read the rules file" in done.stderr


def test_the_binary_is_found_from_the_environment_first(tmp_path, monkeypatch):
    program = tmp_path / "door"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(program))
    assert door_binary() == program
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "absent"))
    assert door_binary() is None  # named but absent: not silently another one


def test_tokens_and_tls_keep_the_python_door_and_the_compiled_one_says_why(tmp_path, monkeypatch):
    from ganexport.serving.auth import TokenBook

    program = tmp_path / "door"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(program))
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("alice:" + "a" * 32 + "\n")
    tokens = TokenBook.from_file(tokens_file)
    assert TritonServer(tmp_path, grpc_door="auto").grpc_door == "compiled"
    assert TritonServer(tmp_path, grpc_door="python").grpc_door == "python"
    assert TritonServer(tmp_path, grpc_door="auto", tokens=tokens).grpc_door == "python"
    assert TritonServer(tmp_path, grpc_door="auto", front_door=False).grpc_door == "none"
    with pytest.raises(ServerError, match="takes no tokens or TLS"):
        TritonServer(tmp_path, grpc_door="compiled", tokens=tokens)
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "absent"))
    assert TritonServer(tmp_path, grpc_door="auto").grpc_door == "python"
    with pytest.raises(ServerError, match="not built: run `make setup`"):
        TritonServer(tmp_path, grpc_door="compiled")
    with pytest.raises(ValueError, match="one of auto, compiled, python"):
        TritonServer(tmp_path, grpc_door="fast")


def test_serve_help_names_the_grpc_doors():
    done = subprocess.run([sys.executable, "-m", "ganexport", "serve", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert "--grpc-door [auto|compiled|python]" in done.stdout
