"""Does a serving process give memory back after a burst of large translations?

    python -m ganexport.benchmarks.memory_burst                       # published cyclegan_a2b on Triton
    python -m ganexport.benchmarks.memory_burst --knob arena_release_s=0  # the arena kept, as ONNX Runtime does
    python -m ganexport.benchmarks.memory_burst --in-process          # in-process ONNX Runtime, this process
    python -m ganexport.benchmarks.memory_burst --supervised --rest 12  # as `ganexport serve` runs it

``measure`` reads one process's resident memory (VmRSS) before the burst,
its peak (a thread polls /proc every ``poll`` seconds while the burst runs)
and ``settle`` seconds after the last answer, and notes when it first fell
back under ``ratio`` times the memory before. On Triton the processes watched are
the model's Python-backend stubs, where ONNX Runtime runs (asked afresh at every reading:
under the supervisor a swollen stub is replaced by a fresh one); the burst is many
batch-1 requests from a few client threads, so the dynamic batcher forms
batches up to the model's maximum. ``main`` prints one markdown row, or with
``--latency-against`` compares lone-request latency of two settings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ganexport.benchmarks.procfs import rss_bytes

MiB = 2**20


@dataclasses.dataclass(frozen=True)
class BurstMemory:
    """Resident memory of one process around one burst, in bytes; ``back_after_s`` is None if it never fell back."""

    before: int
    peak: int
    after: int
    settled_s: float
    back_after_s: float | None
    answered: int
    errors: tuple[str, ...]
    after_parts: dict = dataclasses.field(default_factory=dict)  # RssAnon, RssFile, RssShmem after, bytes

    def row(self, label: str) -> str:
        back = "never" if self.back_after_s is None else f"{self.back_after_s:.1f} s"
        return (f"| {label} | {self.before / MiB:.0f} | {self.peak / MiB:.0f} | {self.after / MiB:.0f} "
                f"({self.settled_s:.0f} s) | {self.after / self.before:.2f} | {back} | {self.answered} |")


HEADER = ("| setting | before MiB | peak MiB | after MiB (when) | after / before | back under ratio | answered |\n"
          "|---|---|---|---|---|---|---|")


@dataclasses.dataclass(frozen=True)
class Watched:
    """The processes a burst is measured on, asked afresh at each reading: one process, or one Triton
    model's stubs, which the supervisor may replace by fresh ones during the measurement."""

    pids: Callable[[], list[int]]

    def rss(self) -> int:
        return rss_bytes(self.pids())

    def parts(self) -> dict[str, int]:
        """VmRSS split as /proc/PID/status splits it: anonymous, file-backed and shared-memory pages, bytes."""
        parts: dict[str, int] = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                        key = line.split(":")[0]
                        parts[key] = parts.get(key, 0) + int(line.split()[1]) * 1024
        return parts


def measure(watched: Watched, translate: Callable[[np.ndarray], np.ndarray], *, side: int = 1024, requests: int = 64,
            threads: int = 16, warm: int = 0, rest: float = 0.0, settle: float = 30.0, ratio: float = 1.5,
            stop_when_back: bool = False, poll: float = 0.2, seed: int = 0) -> BurstMemory:
    """``requests`` batch-1 ``side`` x ``side`` RGB translations from ``threads`` threads, watching ``watched``.

    ``warm`` lone requests of the same size go first, so "before" is a process that has already
    answered this size once (as a server that meets a burst usually has), not one fresh from start-up;
    ``rest`` seconds of quiet after them make it an idle one.

    After the burst, RSS is polled for up to ``settle`` seconds; with ``stop_when_back`` the
    wait ends as soon as it is under ``ratio`` x the RSS before (what a test wants), otherwise
    ``after`` is the RSS at ``settle`` seconds (what a benchmark row reports).
    """
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8) for _ in range(threads)]
    for _ in range(warm):
        translate(images[0])
    time.sleep(rest)
    before = watched.rss()
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.wait(poll):
            peak[0] = max(peak[0], watched.rss())

    answered, errors, lock = [0], [], threading.Lock()

    def client(k: int):
        for _ in range(k, requests, threads):
            try:
                out = translate(images[k])
                why = None if out.shape == images[k].shape else f"answer of shape {out.shape}"
            except Exception as e:  # counted and reported, never raised from a thread
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            with lock:
                if why is None:
                    answered[0] += 1
                else:
                    errors.append(why)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    done.set()
    watcher.join()
    peak[0] = max(peak[0], watched.rss())
    t0 = time.monotonic()
    back_after = None
    while True:
        now, elapsed = watched.rss(), time.monotonic() - t0
        peak[0] = max(peak[0], now)
        if back_after is None and now < ratio * before:
            back_after = elapsed
            if stop_when_back:
                break
        if elapsed >= settle:
            break
        time.sleep(poll)
    return BurstMemory(before, peak[0], now, elapsed, back_after, answered[0], tuple(errors), watched.parts())


def latency(translates: dict[str, Callable[[np.ndarray], np.ndarray]], *, side: int = 512, requests: int = 30,
            seed: int = 0) -> dict[str, list[float]]:
    """Seconds per lone ``side`` x ``side`` request for each target, taking turns so that both see the same noise."""
    image = np.random.default_rng(seed).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {label: [] for label in translates}
    for translate in translates.values():  # first calls plan this size; not counted
        translate(image)
    for _ in range(requests):
        for label, translate in translates.items():
            t0 = time.perf_counter()
            translate(image)
            times[label].append(time.perf_counter() - t0)
    return times


@contextlib.contextmanager
def target(repository: str, model: str, *, in_process: bool = False, knobs: list[str] | tuple[str, ...] = (),
           triton_args: tuple[str, ...] = (), timeout: float = 600.0, supervised: bool = False):
    """(Watched, translate function): a Triton server on ``model`` alone and its stubs, or in-process ONNX Runtime.

    ``supervised``: the server runs under a Supervisor, as `ganexport serve` runs it, which replaces a
    stub that a burst left swollen once it is at rest; its lines are printed.

    ``knobs`` are ``KNOB=VALUE`` as ``ganexport bench --variant`` takes them, over the published configuration:
    on Triton a rewritten config.pbtxt (ONNX Runtime knobs become ``ort_*`` parameters), in-process the
    session options.
    """
    from ganexport.benchmarks.targets import Variant

    variant = Variant.parse("burst:" + ",".join(knobs))
    if in_process:
        from ganexport.serving.backends import LocalBackend

        if set(variant.knobs) - set(variant.ort_options):
            raise ValueError(f"in-process ONNX Runtime takes session options only, not {', '.join(variant.knobs)}")
        with LocalBackend(repository, ort_options=variant.ort_options) as local:
            local.translate(model, np.zeros((1, 64, 64, 3), np.uint8))  # loaded and warm, as Triton's warm-up
            yield Watched(lambda: [os.getpid()]), lambda x: local.translate(model, x)
        return
    from ganexport.benchmarks.targets import variant_configs
    from ganexport.serving.backends import connect
    from ganexport.serving.triton_server import TritonServer, free_port

    configs = variant_configs(Path(repository), [model], variant) if variant.knobs else {}
    http_port = free_port()
    grpc_port = next(p for p in iter(free_port, None) if p != http_port)
    with TritonServer(repository, models=[model], configs=configs, http_port=http_port, grpc_port=grpc_port,
                      metrics_port=0, extra_args=tuple(triton_args)) as server:
        local = threading.local()
        clients = []

        def translate(x):
            if not hasattr(local, "client"):
                local.client = connect("triton-grpc", url=server.grpc_url, timeout=timeout)
                clients.append(local.client)
            return local.client.translate(model, x)

        supervisor = watcher = None
        if supervised:
            from ganexport.serving.supervisor import Supervisor

            supervisor = Supervisor(server, log=lambda line: print(line, file=sys.stderr))
            watcher = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
            watcher.start()
        try:
            yield Watched(lambda: server.stub_pids()[model]), translate
        finally:
            if supervisor is not None:
                supervisor.stop()
                watcher.join(timeout=30)
            for client in clients:
                client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ganexport.benchmarks.memory_burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default="model_repository")
    parser.add_argument("--model", default="cyclegan_a2b")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--warm", type=int, default=0, help="lone requests of the same size before 'before'")
    parser.add_argument("--rest", type=float, default=0.0, help="seconds of quiet between them and 'before'")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to watch after the burst")
    parser.add_argument("--ratio", type=float, default=1.5)
    parser.add_argument("--knob", action="append", default=[], metavar="KNOB=VALUE",
                        help="serving knob over the published config, as `ganexport bench --variant` names them "
                             "(e.g. arena_release_s=0, max_queue_delay_us=300000)")
    parser.add_argument("--triton-arg", action="append", default=[], metavar="ARG",
                        help="extra tritonserver argument, e.g. --triton-arg=--backend-config=python,...")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one request may wait for its answer")
    parser.add_argument("--in-process", action="store_true", help="in-process ONNX Runtime in this process")
    parser.add_argument("--latency-against", action="append", default=None, metavar="KNOB=VALUE",
                        help="instead of a burst: lone --side requests taking turns between the --knob setting "
                             "and this one ('' for the published config), --requests of each")
    parser.add_argument("--supervised", action="store_true",
                        help="run Triton under the supervisor, as `ganexport serve` does (it replaces a stub "
                             "left swollen at rest)")
    parser.add_argument("--label", default=None)
    args = parser.parse_args(argv)
    label = args.label or " ".join(["in-process" if args.in_process else "triton", *args.knob, *args.triton_arg,
                                    *(["supervised"] if args.supervised else [])])
    command = [sys.executable, "-m", "ganexport.benchmarks.memory_burst", *(sys.argv[1:] if argv is None else argv)]
    print(f"<!-- {shlex.join(command)} -->")
    serve = dict(in_process=args.in_process, triton_args=tuple(args.triton_arg), timeout=args.timeout)

    if args.latency_against is not None:
        other = [k for k in args.latency_against if k]
        other_label = " ".join(["in-process" if args.in_process else "triton", *other, *args.triton_arg])
        with target(args.repository, args.model, knobs=args.knob, **serve) as (_, first), \
                target(args.repository, args.model, knobs=other, **serve) as (_, second):
            times = latency({label: first, other_label: second}, side=args.side, requests=args.requests)
        print(f"| setting | {args.side}x{args.side} median ms | mean ms | min ms | requests |\n|---|---|---|---|---|")
        for name, ts in times.items():
            print(f"| {name} | {1e3 * float(np.median(ts)):.0f} | {1e3 * float(np.mean(ts)):.0f} "
                  f"| {1e3 * min(ts):.0f} | {len(ts)} |")
        return 0

    burst = dict(side=args.side, requests=args.requests, threads=args.threads, warm=args.warm, rest=args.rest,
                 settle=args.settle, ratio=args.ratio)
    with target(args.repository, args.model, knobs=args.knob, supervised=args.supervised, **serve) as (watched,
                                                                                                       translate):
        result = measure(watched, translate, **burst)
    print(HEADER)
    print(result.row(label))
    print("after: " + ", ".join(f"{k} {v / MiB:.0f} MiB" for k, v in result.after_parts.items()), file=sys.stderr)
    for e in sorted(set(result.errors)):
        print(f"error ({result.errors.count(e)}x): {e}", file=sys.stderr)
    return 0 if not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
