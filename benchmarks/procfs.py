"""Process trees and resident memory from /proc: what the benchmarks measure about serving processes.

The soak sums the memory of everything serving the requests (tritonserver, its
Python-backend stubs, the demo process); the tests use ``descendants`` to find
the servers a command started. Serving itself only needs its own process group
(serving/process_group.py).
"""

from __future__ import annotations

from pathlib import Path

from ganexport.serving.process_group import proc_stat, suppress_gone


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first), read from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress_gone():
                children.setdefault(int(proc_stat(entry.name)[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_bytes(pids: list[int]) -> int:
    """Sum of resident memory (VmRSS) of ``pids``; processes that vanished count zero."""
    total = 0
    for pid in pids:
        with suppress_gone():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total
