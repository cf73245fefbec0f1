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
