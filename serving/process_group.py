"""The tritonserver process group as /proc shows it: who is in it, which /dev/shm it maps, how to end it.

Triton starts one Python-backend stub per model instance in its own process
group. A stub killed mid-load leaves its /dev/shm region behind, and a SIGTERM
that arrives before Triton installs its handler orphans the stubs, so stopping
the server cleanly needs the group's pids and the regions they map (Linux /proc).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def proc_stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress_gone():
                fields = proc_stat(entry.name)
                if int(fields[2]) == pgid and _live(fields):
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """``pid`` runs: it exists and is not a zombie its parent has yet to reap."""
    with suppress_gone():
        return _live(proc_stat(pid))
    return False


def _live(stat_fields: list[str]) -> bool:
    return stat_fields[0] not in "ZX"


def rss_bytes(pids: list[int]) -> int:
    """Sum of resident memory (VmRSS) of ``pids``; processes that vanished count zero."""
    total = 0
    for pid in pids:
        with suppress_gone():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) ``pids`` have used so far; processes that vanished count zero."""
    total = 0
    for pid in pids:
        with suppress_gone():
            fields = proc_stat(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of /proc/PID/stat
    return total / os.sysconf("SC_CLK_TCK")


def wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def shm_mapped(pids: list[int]) -> set[Path]:
    """/dev/shm files mapped by ``pids``: the Python backend's per-stub regions."""
    found: set[Path] = set()
    for pid in pids:
        with suppress_gone():
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                    found.add(Path(parts[5].removesuffix(" (deleted)")))
    return found


def send_signal(pid: int, sig: int, group: bool = False) -> None:
    """Signal the server, or its whole process group (it leads its own session); gone is fine."""
    with suppress_gone():
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def suppress_gone() -> contextlib.suppress:
    """What reading /proc of a process that just exited can raise."""
    return contextlib.suppress(OSError, ValueError, IndexError)
