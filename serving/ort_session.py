"""ONNX Runtime sessions as this package runs them, in-process and inside Triton's Python stubs.

The session knobs (ORT_OPTIONS: what `ganexport bench --variant` and a Triton config's ``ort_*``
parameters name), their defaults, and ``OrtSession``, which gives its CPU arena back once idle.
Pure numpy + onnxruntime, so the stub imports nothing else.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from ganexport import catalog

# ONNX Runtime session knobs, as `ganexport bench --variant` and the Triton config's `ort_*`
# parameters name them. Unset knobs keep ONNX Runtime's defaults (docs/benchmarks.md: what each bought),
# but for DEFAULT_ORT_OPTIONS and arena_release_s (ARENA_RELEASE_S).
GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
EXECUTION_MODE = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
ORT_OPTIONS = ("intra_op_threads", "inter_op_threads", "graph_optimization", "execution_mode", "allow_spinning",
               "arena_release_s", "share_cores")
TRUE = ("1", "true", "on", "yes")
# Idle pool threads that busy-wait steal the cores other models, the Triton server and its clients need:
# without spinning, ONNX Runtime ran 1.4-3x faster on the shared 2-core machine (docs/benchmarks.md, tuning-ort).
DEFAULT_ORT_OPTIONS = {"allow_spinning": False}
# ONNX Runtime's CPU arena keeps every block it has grown to (in powers of two) until a run asks it to
# shrink: 64 concurrent 1024x1024 translations leave a cyclegan_a2b stub at 4.4 GB, up from 0.48.
# Shrinking at the end of every run makes the next one fault its memory in again (1.4x the time of a
# 512x512 translation), and so does running without the arena (1.8x at 1024x1024), so a session
# gives its arena back only once it has been idle this long (OrtSession); 0 keeps it for good.
ARENA_RELEASE_S = 5.0


def session_options(intra_op_threads: int | str | None = None, inter_op_threads: int | str | None = None,
                    graph_optimization: str | None = None, execution_mode: str | None = None,
                    allow_spinning: bool | str | None = None):
    """An ``ort.SessionOptions`` from plain values (strings too: they come from config.pbtxt).

    0 or None threads means ONNX Runtime's default (one per physical core).
    ``allow_spinning`` false stops idle pool threads from busy-waiting, which
    matters when the cores are shared (other stubs, other processes).
    Errors are quiet (severity 3): a CPU machine has nothing to warn about.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if intra_op_threads and int(intra_op_threads) > 0:
        options.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads and int(inter_op_threads) > 0:
        options.inter_op_num_threads = int(inter_op_threads)
    if graph_optimization:
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   _choice(GRAPH_OPTIMIZATION, graph_optimization))
    if execution_mode:
        options.execution_mode = getattr(ort.ExecutionMode, _choice(EXECUTION_MODE, execution_mode))
    if allow_spinning is not None:
        spin = "1" if str(allow_spinning).lower() in TRUE else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


def _choice(table: dict[str, str], value: str) -> str:
    if value not in table:
        raise ValueError(f"unknown value {value!r}; choose one of {', '.join(table)}")
    return table[value]


class OrtSession:
    """An ``ort.InferenceSession`` built from ORT_OPTIONS knobs that gives its CPU arena back when idle.

    ``options`` go over DEFAULT_ORT_OPTIONS; ``arena_release_s`` (default ARENA_RELEASE_S, 0: never) is
    how long the session must go without a run before it releases the arena: ONNX Runtime frees the
    arena's unused memory only at the end of a run that asks for it, so a helper thread then runs the
    model once on the smallest input ``sig`` allows, asking. Busy sessions keep their arena, so
    back-to-back requests never pay for it; the first request after a release grows it again.
    Both the Triton Python-backend model and the in-process backend run ONNX models through this.
    """

    def __init__(self, path: str | Path, sig: catalog.Signature, options: dict | None = None,
                 providers: list | None = None):
        import onnxruntime as ort

        knobs = {**DEFAULT_ORT_OPTIONS, **(options or {})}
        knobs.pop("share_cores", None)  # between Triton instances (serving/shared_cores.py); one session has none
        release_s = float(knobs.pop("arena_release_s", ARENA_RELEASE_S) or 0)
        opts = session_options(**knobs)
        self.session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        self.release_s = release_s if opts.enable_cpu_mem_arena else 0.0
        self._release = _ArenaRelease(self.session, smallest_inputs(sig), self.release_s) if self.release_s else None
        if self._release is not None:
            weakref.finalize(self, self._release.stop)  # a session dropped without close() ends its thread too

    def get_providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(output_names, feeds)
        finally:
            if self._release is not None:
                self._release.ran()

    @property
    def releases(self) -> int:
        """How many times the arena has been given back."""
        return self._release.releases if self._release is not None else 0

    def close(self) -> None:
        if self._release is not None:
            self._release.stop()


def smallest_inputs(sig: catalog.Signature) -> dict[str, np.ndarray]:
    """One valid request of the least work: batch 1, the smallest image side, the lowest value of each input."""
    side = sig.min_image_side or 1
    return {t.name: np.full((1, *(side if d == -1 else d for d in t.shape)), t.low or 0, dtype=t.numpy_dtype)
            for t in sig.inputs}


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim); elsewhere nothing to do.

    The arena's smaller regions (under glibc's mmap threshold, which rises to 32 MiB once a larger
    block has been freed) live in malloc's heaps, which keep freed memory until trimmed.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] == "glibc":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


class _ArenaRelease:
    """OrtSession's helper thread, started by the first run; it holds the InferenceSession, not the OrtSession."""

    def __init__(self, session, feeds: dict[str, np.ndarray], idle_s: float):
        import onnxruntime as ort

        self.session, self.feeds, self.idle_s = session, feeds, idle_s
        self.options = ort.RunOptions()
        self.options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.releases = 0
        self._cond = threading.Condition()
        self._last: float | None = None  # when the latest run not yet followed by a release ended
        self._stopped = False
        self._thread: threading.Thread | None = None

    def ran(self) -> None:
        with self._cond:
            idle, self._last = self._last is None, time.monotonic()
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._loop, name="ort-arena-release", daemon=True)
                self._thread.start()
            elif idle:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._last is None and not self._stopped:
                    self._cond.wait()
                while not self._stopped and (left := self._last + self.idle_s - time.monotonic()) > 0:
                    self._cond.wait(left)  # a run meanwhile moves _last on
                if self._stopped:
                    return
                self._last = None
            with contextlib.suppress(Exception):  # only memory is at stake; a broken model fails its own requests
                self.session.run(None, self.feeds, self.options)
                trim_heap()
                self.releases += 1

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
