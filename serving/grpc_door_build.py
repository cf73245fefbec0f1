"""Build the front door's compiled gRPC lane (grpc_door.cc) beside this Python, where `serve` finds it.

    python -m ganexport.serving.grpc_door_build            # -> <venv>/bin/ganexport-grpc-door
    python -m ganexport.serving.grpc_door_build --check    # exit 0 when it could be built here

It needs a C++ compiler and grpc++ with its pkg-config file (Debian: g++, pkg-config, libgrpc++-dev).
Without them it says what is missing in one line and exits 1; serve then keeps the Python gRPC door.
The source ships in the package, so an installed wheel builds it the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from ganexport.serving.front_door_grpc_compiled import BINARY

SOURCE = Path(__file__).with_name("grpc_door.cc")
FLAGS = ["-O2", "-std=c++17", "-Wall", "-Wextra"]


def compile_command(out: Path) -> list[str]:
    """The compiler's command line, or click.ClickException naming what is missing."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise click.ClickException("no C++ compiler (install g++)")
    if shutil.which("pkg-config") is None:
        raise click.ClickException("no pkg-config (install pkg-config)")
    found = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++"], capture_output=True, text=True)
    if found.returncode != 0:
        raise click.ClickException("grpc++ is not installed (Debian: apt-get install libgrpc++-dev)")
    return [compiler, *FLAGS, str(SOURCE), "-o", str(out), *found.stdout.split()]


@click.command(context_settings=dict(show_default=True, help_option_names=["-h", "--help"]))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=Path(sys.executable).parent / BINARY,
              help="Where the binary goes: beside this Python, serve finds it there.")
@click.option("--check", is_flag=True, help="Only say whether it can be built here.")
def main(out: Path, check: bool):
    """Compile the compiled gRPC lane of the front door (serving/grpc_door.cc)."""
    if check:
        click.echo(f"can build: {compile_command(out)[0]} with grpc++")
        return
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # replaced whole, never half-written
        built = Path(tmp) / BINARY
        command = compile_command(built)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise click.ClickException("compiling grpc_door.cc failed: "
                                       + (done.stderr.strip().splitlines() or ["no output"])[-1])
        os.replace(built, out)
    click.echo(f"built {out}")


if __name__ == "__main__":
    main()
