"""Process trees and resident memory from /proc: what the benchmarks measure about serving processes.

The soak sums the memory of everything serving the requests (tritonserver, its
Python-backend stubs, the demo process); the tests use ``descendants`` to find
the servers a command started. Serving itself only needs its own process group
(serving/process_group.py).
"""

from __future__ import annotations

from pathlib import Path

from ganexport.serving.process_group import proc_stat, rss_bytes, suppress_gone

__all__ = ["descendants", "rss_bytes"]


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
