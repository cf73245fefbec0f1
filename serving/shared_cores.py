"""A model's Triton instances sharing the cores: a request runs on every core while it runs alone, on its
share of them (one of two cores here) while another instance of the model is running too.

Why: on 2 cores a 512x512 translation through Triton takes 172 ms on 2 threads and 270 ms on 1, but two
1-thread runs side by side deliver more images per second (67% of the machine's peak) than one 2-thread
run after another (59%) or two 2-thread runs fighting over the cores (61%; docs/benchmarks.md,
"Instances and threads"). Sharing got 66% with a lone request still at 173 ms. A run's serial
parts (normalisation, padding, layout changes) leave its second core idle, which a second run fills.
ONNX Runtime fixes a session's threads when it is built, so each instance holds two sessions of the
same file, ``wide`` (every core) and ``narrow`` (its share of the cores: one of two here; built at the first
request that needs it), and picks one per run by asking whether another instance of the model is running.

Which instances are running is shared across the stub processes through ``BusyFlags``: each instance
holds an exclusive ``flock`` on a file of its own while it runs, and tries the others' without
waiting. A lock dies with its process, so a crashed stub never leaves its model marked busy.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FLAG_SUFFIX = ".running"
SETTLED_NS = 1_000_000_000  # how long after the flags' folder last changed its listing is trusted to stay


def narrow_threads(intra_op_threads: str | int | None, instances: int) -> int:
    """The threads of a run beside other instances: an instance's share of its own threads (``intra_op_threads``,
    or one per core the process may use when unset), so two instances of 8 threads on 8 cores run 4 each."""
    threads = int(intra_op_threads or 0) or len(os.sched_getaffinity(0))
    return max(1, threads // max(1, instances))


class BusyFlags:
    """One instance's flag among its model's: ``running()`` holds it, ``others_running()`` reads the rest.

    ``directory`` is shared by the model's instances in one server (``for_instance`` names it from the
    Triton server's process id and the model's name).
    """

    def __init__(self, directory: Path, instance: str):
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The process id keeps a reloaded instance's new stub, which starts while the old one still runs under
        # the same instance name, from sharing the old one's file, which the old one removes when it goes.
        self.path = self.directory / f"{instance}.{os.getpid()}{FLAG_SUFFIX}"
        self._mine = open(self.path, "a")
        self._others: list = []  # the other instances' flag files, open, as of the folder's _stamp
        self._stamp: int | None = None

    @classmethod
    def for_instance(cls, model: str, instance: str) -> BusyFlags:
        """The flags of ``model`` in the Triton server that started this stub (its parent process)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        return cls(Path(tempfile.gettempdir()) / f"ganexport-cores-{os.getuid()}-{os.getppid()}-{safe}",
                   re.sub(r"[^A-Za-z0-9_.-]", "_", instance))

    @contextlib.contextmanager
    def running(self):
        fcntl.flock(self._mine, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._mine, fcntl.LOCK_UN)

    def others_running(self) -> bool:
        for handle in self._other_flags():
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def _other_flags(self) -> list:
        """The other instances' flag files, opened again whenever the folder has changed (an instance came
        or went, or came back as a new file under its old name) and while the change is under a second old:
        a folder's time stamp moves in clock ticks, so two changes within one tick (stubs starting together)
        leave the same stamp. A run asks on every call; listing the folder each time cost it 30 us."""
        stamp = os.stat(self.directory).st_mtime_ns
        if stamp != self._stamp or time.time_ns() - stamp < SETTLED_NS:
            self._close_others()
            for path in sorted(self.directory.glob(f"*{FLAG_SUFFIX}")):
                if path != self.path:
                    with contextlib.suppress(OSError):  # an instance that went away with its file
                        self._others.append(open(path, "rb"))
            self._stamp = stamp
        return self._others

    def _close_others(self) -> None:
        for handle in self._others:
            handle.close()
        self._others = []

    def close(self) -> None:
        self._close_others()
        self._mine.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self.directory.rmdir()  # the last instance out removes the folder


class CoreSharingSession:
    """``wide``'s runs, on ``narrow()`` (built once, when first needed) while another instance runs."""

    def __init__(self, wide, narrow: Callable[[], object], flags: BusyFlags):
        self.wide, self._make_narrow, self.flags = wide, narrow, flags
        self.narrow = None
        self.narrow_runs = 0

    def get_providers(self) -> list[str]:
        return self.wide.get_providers()

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.flags.running():
            if not self.flags.others_running():
                return self.wide.run(output_names, feeds)
            if self.narrow is None:
                self.narrow = self._make_narrow()
            self.narrow_runs += 1
            return self.narrow.run(output_names, feeds)

    def close(self) -> None:
        for session in (self.wide, self.narrow):
            if session is not None:
                session.close()
        self.flags.close()
