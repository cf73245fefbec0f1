"""The CPU this process runs on, in words: checkpoints and benchmark results both record it.

Torch-free and tiny so that training (checkpoint metadata) and the benchmarks
(result folders) describe a machine the same way without depending on each other.

    >>> isinstance(cpu_model(), str)
    True
"""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The widest vector extension first: the one ONNX Runtime's CPU kernels pick, and the one that decides how fast
# they run (a 2-core AMD EPYC runs a 512x512 translation in 160 ms with AVX-512 and 360 ms with AVX2 only).
VECTOR_EXTENSIONS = (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("asimd", "neon"))


def cpu_vector_extension() -> str | None:
    """``avx512``, ``avx2``, ``avx`` or ``neon`` from /proc/cpuinfo's flags; None where it cannot tell.
    Two machines of the same ``model name`` (a cloud VM's "AMD EPYC") may differ in it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                return next((name for flag, name in VECTOR_EXTENSIONS if flag in flags), None)
    except OSError:
        pass
    return None
