"""Interleaved measurement: every backend of a scenario runs in short alternating rounds.

On a shared 2-core machine the available CPU drifts by tens of percent within
a minute, so measuring backend A for ten seconds and then B for ten seconds
compares two different machines. Here each scenario is warmed up on every
backend, then measured in ``rounds`` rounds; each round gives every backend
``duration / rounds`` seconds, in a rotating order, so drift hits them all
alike and their ratios hold even when the absolute numbers move.

A round never cuts a request short: each client thread sends at least one
request and the round ends when every thread has seen its deadline pass.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ganexport import catalog
from ganexport.serving.backends import Backend

from ganexport.benchmarks.targets import Slot


@dataclass(frozen=True)
class Scenario:
    """One line group of the table: a model at a batch size, concurrency, (translators) image side and
    (diffusion models) sampler steps."""

    model: str
    kind: str  # "sample" | "translate" | "diffuse" | "encode" | "edit"
    batch: int
    concurrency: int
    size: int | None = None  # translators only; samplers have a fixed output shape
    steps: int | None = None  # diffusion models only: DDIM steps per request

    @property
    def label(self) -> str:
        size = f" {self.size}x{self.size}" if self.size else ""
        steps = f" {self.steps} steps" if self.steps else ""
        return f"{self.model}{size}{steps} batch {self.batch} x{self.concurrency} clients"


# Diffusion requests are benched with guidance on (every step runs the denoiser on twice the batch), as the
# demo and the model card sample them.
BENCH_GUIDANCE = 2.0


def scenarios(signatures: dict[str, catalog.Signature], batches: list[int], concurrencies: list[int],
              sizes: list[int], steps: list[int] | None = None) -> tuple[list[Scenario], list[str]]:
    """Every combination the signatures allow, and a note for each one skipped (batch > max, side > max)."""
    found, skipped = [], []
    for model, sig in signatures.items():
        model_sizes = sizes if sig.kind == "translate" else [None]
        model_steps = (steps or [25]) if sig.kind == "diffuse" else [None]
        for size, n_steps in ((a, b) for a in model_sizes for b in model_steps):
            if size is not None and not (sig.min_image_side or 0) <= size <= (sig.max_image_side or size):
                skipped.append(f"{model} {size}x{size}: outside {sig.min_image_side}..{sig.max_image_side}")
                continue
            for batch in batches:
                if batch > sig.max_batch_size:
                    skipped.append(f"{model}{f' {size}x{size}' if size else ''} batch {batch}: "
                                   f"above its max batch {sig.max_batch_size}")
                    continue
                found += [Scenario(model, sig.kind, batch, c, size, n_steps) for c in concurrencies]
    return found, skipped


def guidance_sent(sig: catalog.Signature) -> float:
    """The guidance a diffusion request of the bench asks for: BENCH_GUIDANCE, or the nearest the model takes."""
    guidance_spec = sig.diffusion_inputs()[3]
    return min(max(BENCH_GUIDANCE, guidance_spec.low), guidance_spec.high)


def request(sig: catalog.Signature, sc: Scenario, seed: int) -> Callable[[Backend], np.ndarray]:
    """A fixed, valid request for one client thread: the same arrays go to every backend."""
    rng = np.random.default_rng(seed)
    if sc.kind == "translate":
        channels = sig.inputs[0].shape[-1]
        images = rng.integers(0, 256, (sc.batch, sc.size, sc.size, channels), dtype=np.uint8)
        return lambda b: b.translate(sc.model, images)
    if sc.kind == "diffuse":
        noise_spec, label_spec, _, guidance_spec, _ = sig.diffusion_inputs()
        noise = rng.standard_normal((sc.batch, *noise_spec.shape)).astype(np.float32)
        label = None  # a model that takes no class; else its classes in turn, never "no class"
        if label_spec is not None:
            null = sig.diffusion["null_label"]
            classes = [i for i in range(int(label_spec.low), int(label_spec.high) + 1) if i != null]
            label = np.array(classes, np.int64)[np.arange(sc.batch) % len(classes)]
        guidance = guidance_sent(sig)
        return lambda b: b.diffuse(sc.model, noise, label, sc.steps, guidance=guidance)
    if sc.kind in ("encode", "edit"):  # random faces-sized images; an edit moves every attribute at once
        images = rng.integers(0, 256, (sc.batch, *sig.inputs[0].shape), dtype=np.uint8)
        if sc.kind == "encode":
            return lambda b: b.encode(sc.model, images)
        strength = rng.uniform(-1, 1, (sc.batch, *sig.inputs[1].shape)).astype(np.float32)
        return lambda b: b.edit(sc.model, images, strength)
    z = rng.standard_normal((sc.batch, *sig.inputs[0].shape)).astype(np.float32)
    label = None
    if len(sig.inputs) > 1:
        label = (np.arange(sc.batch) % (int(sig.inputs[1].high) + 1)).astype(np.int64)
    return lambda b: b.sample(sc.model, z, label)


@dataclass
class Tally:
    """What one backend did in one scenario, summed over rounds."""

    latencies: list
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    first_error: str | None = None

    def add(self, other: "Tally") -> None:
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.requests += other.requests
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error


def run_round(calls: list[tuple[Slot, Callable[[Backend], object]]], seconds: float) -> Tally:
    """Each slot's thread repeats its call until ``seconds`` have passed (at least once); all start together."""
    start_line = threading.Barrier(len(calls) + 1)
    clock: dict[str, float] = {}

    def client(backend: Backend, call) -> Tally:
        tally = Tally([])
        start_line.wait()
        deadline = clock["start"] + seconds
        while True:
            t0 = time.perf_counter()
            try:
                call(backend)
                tally.latencies.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted and reported, never hidden
                tally.errors += 1
                tally.first_error = tally.first_error or f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            tally.requests += 1
            if time.perf_counter() >= deadline:
                return tally

    futures = [slot.executor.submit(client, slot.backend, call) for slot, call in calls]
    clock["start"] = time.perf_counter()
    start_line.wait()
    parts = [f.result() for f in futures]
    total = Tally([], seconds=time.perf_counter() - clock["start"])
    for part in parts:
        total.add(part)
    return total


def summary(tally: Tally, batch: int) -> dict:
    """Latency percentiles (ms) over successful requests and throughput in images/s."""
    lat = np.array(tally.latencies) * 1000.0
    pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if len(lat) else (lambda q: None)
    ok = tally.requests - tally.errors
    return {"requests": tally.requests, "errors": tally.errors, "first_error": tally.first_error,
            "seconds": round(tally.seconds, 3), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "mean_ms": round(float(lat.mean()), 3) if len(lat) else None,
            "images_per_s": round(ok * batch / tally.seconds, 2) if tally.seconds else None}


def measure(targets: list, signatures: dict[str, catalog.Signature], plan: list[Scenario], *,
            duration: float, rounds: int, warmup: float, log=print,
            peak: Callable[[], dict[str, float]] | None = None) -> list[dict]:
    """Warm up, then interleave: one result dict per (scenario, target).

    perf_analyzer rows (targets with a ``round`` method) run one perf_analyzer
    process per round; their percentiles are the median over rounds. ``peak`` (benchmarks/peak.py)
    runs at the start of every round, so each scenario's rows carry the machine's GEMM GFLOP/s as
    it was while they ran (``peak_gflops``: the best over the scenario's rounds, per precision: a
    round whose GEMM met a burst of other work says less about the machine than the best one).
    """
    results = []
    for sc in plan:
        sig = signatures[sc.model]
        reqs = [request(sig, sc, seed) for seed in range(sc.concurrency)]
        own = [t for t in targets if not hasattr(t, "round")]
        calls = {t.label: list(zip(t.slots(sc.concurrency), reqs)) for t in own}
        for t in own:  # warm-up: first calls at a new shape allocate, compile, batch differently
            run_round(calls[t.label], warmup)
        tallies = {t.label: Tally([]) if t in own else [] for t in targets}
        per_round = {t.label: [] for t in own}  # images/s of each round: report.add_paired compares them
        peaks = []
        for r in range(rounds):
            if peak is not None:
                peaks.append(peak())
            for t in targets[r % len(targets):] + targets[:r % len(targets)]:
                if t in own:
                    part = run_round(calls[t.label], duration / rounds)
                    tallies[t.label].add(part)
                    per_round[t.label].append(summary(part, sc.batch)["images_per_s"])
                else:
                    tallies[t.label].append(_external_round(t, sig, sc, duration / rounds))
        for t in targets:
            tally = tallies[t.label]
            row = summary(tally, sc.batch) if t in own else _external_summary(tally)
            results.append({**asdict(sc), "backend": t.label, "kind": t.kind,
                            "variant": t.variant.knobs if t.variant else None, **row,
                            "round_images_per_s": per_round.get(t.label),
                            "peak_gflops": {p: max(x[p] for x in peaks) for p in peaks[0]} if peaks else None})
        log(sc.label + ": " + ", ".join(f"{r['backend']} {_fmt(r['p50_ms'])} ms {_fmt(r['images_per_s'])} img/s"
                                        + (f" ({r['errors']} errors)" if r["errors"] else "")
                                        for r in results[-len(targets):]))
    return results


def _external_round(target, sig, sc: Scenario, seconds: float) -> dict:
    try:
        return target.round(sig, sc, seconds)
    except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still count
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def _external_summary(parts: list[dict]) -> dict:
    ok = [p for p in parts if "error" not in p]
    med = lambda key: round(float(np.median([p[key] for p in ok])), 3) if ok else None  # noqa: E731
    errors = [p["error"] for p in parts if "error" in p]
    return {"requests": sum(p["requests"] for p in ok), "errors": len(errors),
            "first_error": errors[0] if errors else None, "seconds": None, "p50_ms": med("p50_ms"),
            "p90_ms": med("p90_ms"), "p99_ms": med("p99_ms"), "mean_ms": med("mean_ms"),
            "images_per_s": med("images_per_s"), "server_batch": med("server_batch") if ok and all(
                p["server_batch"] for p in ok) else None, "command": ok[0]["command"] if ok else None}


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}" if x < 100 else f"{x:.0f}"
