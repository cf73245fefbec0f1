"""``ganexport bench --soak``: N clients for minutes against Triton or the Gradio demo.

What it answers: does the server stay up and correct under steady
load (errors must be zero), how bad is the tail (p99), and does memory grow
once warm? Memory is the summed VmRSS of every process serving the requests
(tritonserver and its Python-backend stubs; for ``--target demo`` also the
demo process), sampled every second from /proc. The baseline is taken after
the warm-up, when every request shape has been seen and allocators have their
arenas, so growth after it is what a leak would look like.

Requests cycle through every model and several shapes (samplers, encoders, editors and diffusion
models at batch 1 and 4, translators at 32..128 pixels), so dynamic batching, shape changes and
every request kind stay exercised. A demo request that the page answers
with an error line, or from its in-process fallback, counts as an error.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

TRANSLATE_SIDES = (32, 64, 96, 128)
SAMPLE_BATCHES = (1, 4)
DIFFUSE_STEPS = 10  # sampler steps of a diffusion request: a few times a translation's work, as in the demo


class SoakError(RuntimeError):
    pass


# --------------------------------------------------------------------------- request mixes


def triton_requests(backend, models: list[str], seed: int) -> list:
    """Calls cycling through every model and shape, for one client thread."""
    rng = np.random.default_rng(seed)
    calls = []
    for model in models:
        sig = backend.metadata(model)
        if sig.kind == "translate":
            for side in TRANSLATE_SIDES:
                img = rng.integers(0, 256, (1, side, side, sig.inputs[0].shape[-1]), dtype=np.uint8)
                calls.append(lambda m=model, x=img: backend.translate(m, x))
        elif sig.kind in ("encode", "edit"):
            for n in SAMPLE_BATCHES:
                img = rng.integers(0, 256, (n, *sig.inputs[0].shape), dtype=np.uint8)
                if sig.kind == "encode":
                    calls.append(lambda m=model, x=img: backend.encode(m, x))
                else:
                    s = rng.uniform(-1, 1, (n, *sig.inputs[1].shape)).astype(np.float32)
                    calls.append(lambda m=model, x=img, s=s: backend.edit(m, x, s))
        elif sig.kind == "diffuse":
            for n in SAMPLE_BATCHES:
                noise = rng.standard_normal((n, *sig.inputs[0].shape)).astype(np.float32)
                label = np.arange(n, dtype=np.int64) % (int(sig.diffusion["null_label"]) + 1)  # the last: no class
                calls.append(lambda m=model, x=noise, label=label: backend.diffuse(m, x, label, DIFFUSE_STEPS))
        else:
            for n in SAMPLE_BATCHES:
                z = rng.standard_normal((n, *sig.inputs[0].shape)).astype(np.float32)
                label = np.arange(n, dtype=np.int64) % (int(sig.inputs[1].high) + 1) if len(sig.inputs) > 1 else None
                calls.append(lambda m=model, z=z, label=label: backend.sample(m, z, label))
    rng.shuffle(calls)
    return calls


def demo_requests(client, models: list[str], workdir: Path, seed: int) -> list:
    """The demo's own endpoints through gradio_client; a status line with ❌ or a fallback is an error."""
    from gradio_client import handle_file
    from PIL import Image

    from ganexport import catalog
    from ganexport.demo.tabs import NO_CLASS, catalog_endpoints, tabs_for

    SAMPLE_MODELS, TRANSLATORS = catalog_endpoints()
    diffusion = {name for name, (_, sig) in catalog.triton_models().items() if "diffusion" in tabs_for(sig)}

    rng = np.random.default_rng(seed)
    calls = []

    def check(result):
        status = " ".join(str(x) for x in result[1:])
        if "❌" in status or "fallback" in status or "unreachable" in status:
            raise SoakError(status.strip().splitlines()[0][:200])

    for model in models:
        if model in SAMPLE_MODELS:
            calls.append(lambda m=model: check(client.predict(m, int(rng.integers(1000)), 8, api_name="/sample")))
        elif model in diffusion:  # class, steps, guidance, seed, count, model, ancestral
            calls.append(lambda m=model: check(client.predict(NO_CLASS, DIFFUSE_STEPS, 1.0, int(rng.integers(1000)), 4,
                                                              m, False, api_name="/diffusion")))
        elif model == "cgan":
            calls.append(lambda: check(client.predict("T-shirt/top", int(rng.integers(1000)), 8,
                                                      api_name="/conditional")))
    for direction, model in TRANSLATORS.items():
        if model in models:
            for side in (64, 96):
                path = workdir / f"soak-{seed}-{side}.png"
                Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
                calls.append(lambda p=path, d=direction: check(client.predict(handle_file(str(p)), d,
                                                                              api_name="/translate")))
    return calls


# --------------------------------------------------------------------------- processes and memory


def rss_mb(pids: list[int]) -> float:
    from ganexport.benchmarks.procfs import rss_bytes

    return rss_bytes(pids) / 2**20


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SoakError(f"the demo exited ({proc.returncode}): {log_path.read_text()[-500:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SoakError(f"the demo was not up after {timeout:.0f} s (log: {log_path})") from None
            time.sleep(0.5)


class DemoProcess:
    """`ganexport demo` on free ports (it starts its own Triton), stopped with Ctrl-C as a user would."""

    def __init__(self, repository: Path, workdir: Path):
        from ganexport.serving.triton_server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = workdir / "demo.log"
        cmd = [sys.executable, "-m", "ganexport.demo.demo_cli", "--repository", str(repository),
               "--port", str(self.port), "--triton-http-port", str(free_port()),
               "--triton-grpc-port", str(free_port())]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_http(self.url, self.proc, 300, self.log_path)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        from ganexport.benchmarks.procfs import descendants

        return [self.proc.pid, *descendants(self.proc.pid)] if self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- the soak


def run(repository: Path, models: list[str], *, target: str = "triton-grpc", duration: float = 300.0,
        concurrency: int = 8, warmup: float | None = None, triton_url: str | None = None,
        triton_grpc_url: str | None = None, demo_url: str | None = None, log=print) -> dict:
    """Soak ``target`` and return the result document (see write())."""
    from ganexport.serving import backends
    from ganexport.serving.triton_server import TritonServer, free_port

    warmup = duration / 5 if warmup is None else min(warmup, duration)
    workdir = Path(tempfile.mkdtemp(prefix="ganexport-soak-"))
    server = demo = None
    pids = lambda: []  # noqa: E731 - where the serving processes are not ours to watch
    hw_extra = {}
    try:
        if target == "demo":
            if demo_url is None:
                demo = DemoProcess(repository, workdir)
                demo_url, pids = demo.url, demo.pids
                log(f"demo (with its own Triton) at {demo_url}")

            def client(seed):
                from gradio_client import Client

                c = Client(demo_url, verbose=False)
                return c, demo_requests(c, models, workdir, seed)
        else:
            if triton_url is None:
                server = TritonServer(repository, models=models, http_port=free_port(), grpc_port=free_port(),
                                      metrics_port=0, planned=True).start(timeout=300)
                pids = server.pids
                hw_extra["triton_server"] = server.server_metadata().get("version")
                triton_url, triton_grpc_url = server.http_url, server.grpc_url
            url = triton_url if target == "triton-http" else triton_grpc_url or triton_url

            def client(seed):
                c = backends.connect(target, url=url, timeout=120.0)
                return c, triton_requests(c, models, seed)
        log(f"soak: {concurrency} clients x {duration:.0f} s against {target} "
            f"({', '.join(models)}), memory baseline after {warmup:.0f} s")
        result = _load(client, concurrency, duration, warmup, pids)
    finally:
        if server is not None:
            server.stop()
        if demo is not None:
            demo.stop()
    return {"title": f"ganexport soak: {target}", "target": target, "models": models,
            "started": result.pop("started"), "settings": {"duration": duration, "concurrency": concurrency,
                                                            "warmup": warmup},
            "hardware": hw_extra, **result}


def _load(make_client, concurrency: int, duration: float, warmup: float, pids) -> dict:
    """``concurrency`` threads, each with its own client (made in the thread: gevent HTTP clients are
    bound to theirs), cycling through its calls until ``duration``; memory sampled every second."""
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    records: list[list] = [[] for _ in range(concurrency)]  # per thread: (t, seconds, error or None)
    memory: list[tuple[float, float]] = []
    clock: dict[str, float] = {}
    # The clock starts once every client is connected (a gradio_client takes seconds to start).
    start_line = threading.Barrier(concurrency + 1, action=lambda: clock.setdefault("t0", time.perf_counter()))
    stop = threading.Event()

    def client(seed: int, out: list) -> None:
        try:
            backend, calls = make_client(seed)
        except Exception as e:  # noqa: BLE001 - a client that cannot even start is an error too
            out.append((0.0, 0.0, f"client setup: {type(e).__name__}: {str(e)[:200]}"))
            start_line.wait()
            return
        start_line.wait()
        t0 = clock["t0"]
        try:
            for call in itertools.cycle(calls):
                t = time.perf_counter()
                if t - t0 >= duration:
                    return
                try:
                    call()
                    out.append((t - t0, time.perf_counter() - t, None))
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    msg = str(e).splitlines()[0][:200] if str(e) else ""
                    out.append((t - t0, time.perf_counter() - t, f"{type(e).__name__}: {msg}"))
        finally:
            if hasattr(backend, "close"):
                backend.close()

    def sampler() -> None:
        t0 = clock["t0"]
        while not stop.is_set():
            memory.append((round(time.perf_counter() - t0, 2), round(rss_mb(pids()), 1)))
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(i, r), daemon=True) for i, r in enumerate(records)]
    for t in threads:
        t.start()
    start_line.wait()
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - clock["t0"]
    stop.set()
    watcher.join()
    flat = [r for rs in records for r in rs]
    errors = [e for _, _, e in flat if e]
    warm = np.array([s for t, s, e in flat if e is None and t >= warmup]) * 1000.0
    pct = (lambda q: round(float(np.percentile(warm, q)), 2)) if len(warm) else (lambda q: None)
    mem = _memory(memory, warmup)
    return {"started": started, "seconds": round(elapsed, 1), "requests": len(flat), "errors": len(errors),
            "error_examples": sorted(set(errors))[:5],
            "requests_per_s": round(len(flat) / elapsed, 2), "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "max_ms": round(float(warm.max()), 2) if len(warm) else None,
            "memory": mem, "verdict": _verdict(len(flat), len(errors), pct(99), mem)}


def _memory(samples: list[tuple[float, float]], warmup: float) -> dict:
    """Baseline: the first sample after warm-up; final: the median of the last five (one GC blip is noise)."""
    watched = [s for s in samples if s[1] > 0]
    after = [s for s in watched if s[0] >= warmup] or watched[-1:]
    if not after:
        return {"watched": False, "note": "the serving processes are not local; memory was not measured"}
    baseline, final = after[0][1], float(np.median([mb for _, mb in after[-5:]]))
    peak = max(mb for _, mb in after)
    step = max(1, len(samples) // 300)
    return {"watched": True, "baseline_mb": baseline, "final_mb": round(final, 1), "peak_mb": peak,
            "growth_pct": round((final - baseline) / baseline * 100, 2),
            "peak_growth_pct": round((peak - baseline) / baseline * 100, 2), "samples": samples[::step]}


def _verdict(requests: int, errors: int, p99, mem: dict) -> str:
    growth = f", memory {mem['growth_pct']:+.1f}% after warm-up" if mem.get("watched") else ""
    return f"{'PASS' if errors == 0 else 'FAIL'}: {requests} requests, {errors} errors, p99 {p99} ms{growth}"


def write(out_dir: Path, name: str, doc: dict) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n")
    from ganexport.benchmarks.report import hardware_line

    m = doc["memory"]
    lines = [f"# {doc['title']}", "", f"- hardware: {hardware_line(doc['hardware'])}",
             f"- command: `{doc.get('command', '')}`", f"- models: {', '.join(doc['models'])}",
             f"- {doc['settings']['concurrency']} clients for {doc['seconds']} s; latency and memory baseline "
             f"after {doc['settings']['warmup']:.0f} s warm-up; {doc['started']}", "",
             f"**{doc['verdict']}**", "", "| requests | errors | requests/s | p50 ms | p90 ms | p99 ms | max ms "
             "| memory after warm-up MiB | memory at end MiB | growth | peak growth |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    mem_cells = (f"{m['baseline_mb']} | {m['final_mb']} | {m['growth_pct']:+.2f}% | {m['peak_growth_pct']:+.2f}%"
                 if m.get("watched") else "- | - | - | -")
    lines.append(f"| {doc['requests']} | {doc['errors']} | {doc['requests_per_s']} | {doc['p50_ms']} | "
                 f"{doc['p90_ms']} | {doc['p99_ms']} | {doc['max_ms']} | {mem_cells} |")
    if doc["error_examples"]:
        lines += ["", "Errors seen:"] + [f"- {e}" for e in doc["error_examples"]]
    if not m.get("watched"):
        lines += ["", m["note"]]
    paths[1].write_text("\n".join(lines) + "\n")
    return paths
