"""What the figures were measured on: CPU or GPU, versions, and a short slug for the results folder.

Benchmark numbers mean nothing without the machine, so every result file
carries ``describe()`` and lives under ``benchmarks/results/<slug()>/``.
Nothing here imports torch: package versions come from installed metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ganexport.machine import cpu_model, cpu_vector_extension

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "tritonclient", "nvidia-pytriton", "gradio")


def gpu_names() -> list[str]:
    """NVIDIA GPUs as nvidia-smi names them; empty on a CPU machine."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def usable_cores() -> int:
    """Cores this process may run on (a container's cpuset), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        return round(kb / 2**20, 1)
    except (OSError, AttributeError):
        return None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def git_commit() -> str | None:
    """The commit the benchmark code ran from (with '+dirty' when files were modified)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def repo_relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it: results are committed, machine paths are not."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).absolute().relative_to(root))
    except ValueError:
        return path


def describe() -> dict:
    gpus = gpu_names()
    return {"kind": "gpu" if gpus else "cpu", "gpu": gpus[0] if gpus else None, "gpus": len(gpus),
            "cpu": cpu_model(), "simd": cpu_vector_extension(), "cores": usable_cores(), "memory_gib": memory_gib(),
            "os": platform.platform(), "python_executable": repo_relative(sys.executable), "versions": versions(),
            "commit": git_commit()}


def slug(info: dict | None = None) -> str:
    """e.g. ``cpu-amd-epyc-avx512-2c`` or ``gpu-nvidia-h100-80gb-hbm3``: the results folder name. A CPU's
    vector extension is part of it: a VM's CPU model can read "AMD EPYC" with AVX-512 or with AVX2 only."""
    info = info or describe()
    simd = f" {info['simd']}" if info.get("simd") else ""
    name = info["gpu"] if info["kind"] == "gpu" else f"{info['cpu']}{simd} {info['cores']}c"
    name = re.sub(r"\((r|tm)\)|\bcpu\b|processor|\d+-core", "", name, flags=re.IGNORECASE)
    return f"{info['kind']}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
