"""Results on disk: one JSON (everything), a markdown table and a PNG plot per run.

    benchmarks/results/<hardware-slug>/<name>.json   hardware, versions, command, every row
    benchmarks/results/<hardware-slug>/<name>.md     the table, with each backend's ratio against eager
    benchmarks/results/<hardware-slug>/<name>.png    throughput and p50 latency per scenario

Ratios are taken within a scenario (same model, batch, concurrency, size, and
the same interleaved rounds): throughput / eager's throughput, and eager's
p50 / this p50. Above 1 means faster than eager. A ``--variant`` row is also set against the row of its
kind without one, round by round, with an interval (``add_paired``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

SCENARIO_KEYS = ("model", "size", "steps", "batch", "concurrency")


def scenario_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in SCENARIO_KEYS)


def add_ratios(rows: list[dict], baseline: str = "eager") -> list[dict]:
    """``throughput_vs_eager`` and ``p50_speedup_vs_eager`` on every row whose scenario has an eager row."""
    base = {scenario_key(r): r for r in rows if r["backend"] == baseline}
    for r in rows:
        b = base.get(scenario_key(r))
        ok = b and b["images_per_s"] and r["images_per_s"] and b["p50_ms"] and r["p50_ms"]
        r["throughput_vs_eager"] = round(r["images_per_s"] / b["images_per_s"], 3) if ok else None
        r["p50_speedup_vs_eager"] = round(b["p50_ms"] / r["p50_ms"], 3) if ok else None
    return rows


def paired_ratio(these: list[float], those: list[float], confidence: float = 0.95) -> dict | None:
    """The geometric mean of these[i] / those[i] over rounds run side by side, with its ``confidence`` interval
    (Student's t on the logs); None under 3 pairs. Pairing by round cancels the drift the rounds share: the
    machine's speed moved 10% within an hour here, more than many of the differences a variant is run to find."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(these or [], those or []) if a and b]
    if len(pairs) < 3:
        return None
    logs = np.log([a / b for a, b in pairs])
    half = stats.t.ppf(0.5 + confidence / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    low, high = logs.mean() - half, logs.mean() + half
    return {"ratio": round(float(np.exp(logs.mean())), 3), "low": round(float(np.exp(low)), 3),
            "high": round(float(np.exp(high)), 3), "rounds": len(logs), "confidence": confidence,
            "verdict": "faster" if low > 0 else "slower" if high < 0 else "not told apart"}


def add_paired(rows: list[dict]) -> list[dict]:
    """``vs_plain`` on every variant row: its images/s against the row of the same kind without a variant (what
    serve runs), round by round (``paired_ratio``); None where either has no rounds of its own."""
    plain = {(scenario_key(r), r["kind"]): r for r in rows if r["backend"] == r["kind"]}  # a variant's says [label]
    for r in rows:
        if r["backend"] != r["kind"]:
            base = plain.get((scenario_key(r), r["kind"]))
            r["vs_plain"] = paired_ratio(r.get("round_images_per_s"), base and base.get("round_images_per_s"))
    return rows


def paired_lines(rows: list[dict]) -> list[str]:
    """One line per variant row with a paired ratio: what it says, in words a reader can check."""
    lines = []
    for r in rows:
        p = r.get("vs_plain")
        if p:
            size = f" {r['size']}x{r['size']}" if r["size"] else ""
            steps = f" {r['steps']} steps" if r.get("steps") else ""
            lines.append(f"{r['model']}{size}{steps} batch {r['batch']} x{r['concurrency']}: {r['backend']} / "
                         f"{r['kind']} images/s = {p['ratio']:.3f} ({100 * p['confidence']:.0f}% interval "
                         f"{p['low']:.3f}-{p['high']:.3f} over {p['rounds']} paired rounds): {p['verdict']}")
    return lines


def add_efficiency(rows: list[dict], macs: dict[tuple, int | None]) -> list[dict]:
    """``gflop_per_image``, ``gflops`` and ``pct_of_peak`` on every row whose scenario's work is known
    (``macs``: scenario_key -> multiply-accumulates per image, benchmarks/work.py). The peak is the one
    measured in the same rounds (``peak_gflops``), at the row's precision (fp32 unless it says fp16)."""
    for r in rows:
        work = macs.get(scenario_key(r))
        r["gflop_per_image"] = round(2 * work / 1e9, 6) if work else None
        r["gflops"] = round(r["gflop_per_image"] * r["images_per_s"], 2) if work and r["images_per_s"] else None
        peak = (r.get("peak_gflops") or {}).get(r.get("precision") or "fp32")
        r["pct_of_peak"] = round(100 * r["gflops"] / peak, 1) if r["gflops"] and peak else None
    return rows


def efficiency_lines(rows: list[dict]) -> list[str]:
    """One line per scenario: each row's GFLOP/s and % of the peak measured beside it."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("gflops"):
            by[scenario_key(r)].append(r)
    lines = []
    for members in by.values():
        r = members[0]
        size = f" {r['size']}x{r['size']}" if r["size"] else ""
        steps = f" {r['steps']} steps" if r.get("steps") else ""
        peak = "/".join(f"{v:g}" for v in (r.get("peak_gflops") or {}).values())
        lines.append(f"{r['model']}{size}{steps} batch {r['batch']} x{r['concurrency']} clients, "
                     f"{r['gflop_per_image']:.3g} GFLOP/image, peak {peak} GFLOP/s: "
                     + ", ".join(f"{m['backend']} {_n(m['gflops'])} GFLOP/s ({_n(m['pct_of_peak'])}%)"
                                 for m in members))
    return lines


BATCHING_KNOBS = ("dynamic_batching", "max_queue_delay_us")


def _without_batching(knobs: dict | None) -> dict:
    return {k: v for k, v in (knobs or {}).items() if k not in BATCHING_KNOBS}


def figures(rows: list[dict]) -> list[dict]:
    """The issue's CPU targets, checked where this run measured what they need (never asserted in tests)."""
    by = {(scenario_key(r), r["backend"]): r for r in rows}
    out = []

    def get(model, size, batch, conc, backend, steps=None):
        return by.get(((model, size, steps, batch, conc), backend))

    grpc, ort = get("cyclegan_a2b", 256, 1, 1, "triton-grpc"), get("cyclegan_a2b", 256, 1, 1, "onnxruntime")
    if grpc and ort and grpc["p50_ms"] and ort["p50_ms"]:
        ratio = grpc["p50_ms"] / ort["p50_ms"]
        out.append({"figure": "cyclegan_a2b 256x256 batch 1: Triton gRPC p50 / in-process ONNX Runtime p50",
                    "target": "<= 1.15", "value": round(ratio, 3), "met": ratio <= 1.15})
    for r in rows:  # a diffusion model's 25-step sample of 64 images through Triton against the in-process sampler
        ort = by.get((scenario_key(r), "onnxruntime"))
        if (r.get("steps") == 25 and r["batch"] == 64 and r["concurrency"] == 1 and r["kind"].startswith("triton")
                and not r["variant"] and ort and ort["p50_ms"] and r["p50_ms"]):
            ratio = r["p50_ms"] / ort["p50_ms"]
            out.append({"figure": f"{r['model']} 25 steps batch 64: {r['backend']} p50 / in-process ONNX Runtime p50",
                        "target": "<= 1.2", "value": round(ratio, 3), "met": ratio <= 1.2})
    for r in rows:  # a diffusion model's 50-step sample of 16 images through Triton against eager (for an imported
        # diffusers pipeline, diffusers' own pipeline in PyTorch)
        if (r.get("steps") == 50 and r["batch"] == 16 and r["concurrency"] == 1 and r["kind"].startswith("triton")
                and not r["variant"] and r["throughput_vs_eager"] is not None):
            out.append({"figure": f"{r['model']} 50 steps batch 16: {r['backend']} throughput / eager",
                        "target": ">= 1", "value": r["throughput_vs_eager"], "met": r["throughput_vs_eager"] >= 1})
    for r in rows:  # every dcgan row at 8 clients with batching off, against each batching-on row that
        # differs from it only in the batching knobs (the published queue delay, or a variant's)
        if r["model"] != "dcgan" or r["concurrency"] != 8 or (r["variant"] or {}).get("dynamic_batching") is not False:
            continue
        for on in rows:
            if (scenario_key(on) != scenario_key(r) or on["kind"] != r["kind"]
                    or (on["variant"] or {}).get("dynamic_batching") is False
                    or _without_batching(on["variant"]) != _without_batching(r["variant"])):
                continue
            if on["images_per_s"] and r["images_per_s"]:
                gain = on["images_per_s"] / r["images_per_s"]
                out.append({"figure": f"dcgan batch {r['batch']} x8 clients: {on['backend']} / {r['backend']} "
                                      "throughput (dynamic batching on / off)",
                            "target": ">= 2", "value": round(gain, 3), "met": gain >= 2})
    worst = defaultdict(lambda: None)
    for r in rows:
        if r["backend"] == "onnxruntime" and r["throughput_vs_eager"] is not None:
            key = r["model"]
            if worst[key] is None or r["throughput_vs_eager"] < worst[key]["throughput_vs_eager"]:
                worst[key] = r
    for model, r in worst.items():
        size = f" {r['size']}x{r['size']}" if r["size"] else ""
        out.append({"figure": f"{model}: ONNX Runtime throughput / eager, worst scenario "
                              f"(batch {r['batch']} x{r['concurrency']} clients{size})",
                    "target": ">= 1", "value": r["throughput_vs_eager"], "met": r["throughput_vs_eager"] >= 1})
    return out


# --------------------------------------------------------------------------- files


def portable(doc, repository: Path):
    """``doc`` with an absolute repository path (a temporary folder of the machine it ran on) written as REPO, so a
    recorded result names no folder of that machine; a relative one (``model_repository``) is kept."""
    if not Path(repository).is_absolute():
        return doc
    if isinstance(doc, str):
        return doc.replace(str(repository), "REPO")
    if isinstance(doc, dict):
        return {k: portable(v, repository) for k, v in doc.items()}
    if isinstance(doc, list):
        return [portable(v, repository) for v in doc]
    return doc


def write(out_dir: Path, name: str, doc: dict, plot: bool = True) -> list[Path]:
    """``name``.json, .md and (unless ``plot`` is False) .png in ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n")
    paths[1].write_text(markdown(doc, f"{name}.png" if plot and doc["results"] else None))
    if plot and doc["results"]:
        paths.append(out_dir / f"{name}.png")
        plot_png(doc, paths[-1])
    return paths


def _n(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def hardware_line(hw: dict) -> str:
    simd = f" ({hw['simd'].upper().replace('AVX512', 'AVX-512')})" if hw.get("simd") else ""
    what = hw["gpu"] if hw["kind"] == "gpu" else f"{hw['cpu']}{simd}, {hw['cores']} cores"
    v = hw["versions"]
    versions = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "onnxruntime-gpu", "torch", "tritonclient",
                                                 "nvidia-pytriton") if k in v)
    triton = f", Triton server {hw['triton_server']}" if hw.get("triton_server") else ""
    return f"{what}; {versions}{triton}; commit {hw.get('commit')}"


def markdown(doc: dict, png: str | None) -> str:
    rows = doc["results"]
    lines = [f"# {doc['title']}", "", f"- hardware: {hardware_line(doc['hardware'])}",
             f"- command: `{doc['command']}`",
             f"- {doc['settings']['duration']} s measured per backend and scenario in {doc['settings']['rounds']} "
             f"interleaved rounds, after {doc['settings']['warmup']} s warm-up; {doc['started']}"]
    if doc.get("peak"):
        lines.append(f"- peak: {'; '.join(doc['peak'].values())}, measured at the start of every round; "
                     "each row's % of peak is against the best of its scenario's rounds")
    for note in doc.get("notes", []):
        lines.append(f"- {note}")
    if png:
        lines += ["", f"![throughput and latency]({png})"]
    if doc.get("figures"):
        lines += ["", "| figure | target | measured | met |", "|---|---|---|---|"]
        lines += [f"| {f['figure']} | {f['target']} | {_n(f['value'])} | {'yes' if f['met'] else '**no**'} |"
                  for f in doc["figures"]]
    lines += ["", "| model | size | steps | batch | clients | backend | p50 ms | p90 ms | p99 ms | images/s "
                  "| throughput vs eager | GFLOP/s | % of peak | requests | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size'] or '-'} | {r.get('steps') or '-'} | {r['batch']} "
                     f"| {r['concurrency']} | {r['backend']} "
                     f"| {_n(r['p50_ms'])} | {_n(r['p90_ms'])} | {_n(r['p99_ms'])} | {_n(r['images_per_s'])} "
                     f"| {_n(r.get('throughput_vs_eager'))} | {_n(r.get('gflops'))} | {_n(r.get('pct_of_peak'))} "
                     f"| {r['requests']} | {r['errors'] or ''} |")
    paired = paired_lines(rows)
    if paired:
        lines += ["", "Each variant against the rows without one, round by round (the interval is the spread of "
                  "the rounds' ratios; an interval across 1 means these rounds cannot tell the two apart):", ""]
        lines += [f"- {line}" for line in paired]
    errors = [r for r in rows if r["errors"]]
    if errors:
        lines += ["", "Errors:"] + [f"- {r['model']} {r['backend']}: {r['first_error']}" for r in errors]
    return "\n".join(lines) + "\n"


def plot_png(doc: dict, path: Path) -> None:
    """One row of two panels per model (and image size): throughput and p50 latency, one bar per backend,
    one group per batch, clients and (diffusion models) sampler steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["results"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["size"])].append(r)
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 2.6 * len(groups) + 0.8), squeeze=False)
    width = 0.8 / len(backends)
    for (model, size), ax_row in zip(groups, axes):
        members = groups[(model, size)]
        cases = list(dict.fromkeys((r["batch"], r["concurrency"], r.get("steps")) for r in members))
        for ax, key, unit in ((ax_row[0], "images_per_s", "images/s"), (ax_row[1], "p50_ms", "p50 ms")):
            for i, b in enumerate(backends):
                vals = [next((r[key] for r in members
                              if r["backend"] == b and (r["batch"], r["concurrency"], r.get("steps")) == c),
                             None) or 0 for c in cases]
                ax.bar([x + i * width for x in range(len(cases))], vals, width, label=b, color=colors[b])
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(cases))])
            ax.set_xticklabels([f"b{b} x{c}" + (f" {n} steps" if n else "") for b, c, n in cases], fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel(unit)
            ax.set_title(f"{model}{f' {size}x{size}' if size else ''}: {unit}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{doc['title']} - {hardware_line(doc['hardware'])}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))  # leave the suptitle its own strip
    fig.savefig(path, dpi=80)
    plt.close(fig)
