"""How many Triton replicas a CycleGAN translation rate needs, from one replica's throughput.

    python -m ganexport.benchmarks.capacity     # the table of docs/benchmarks.md, "How serving cost grows with traffic"

Measured: a CPU replica's throughput (2 cores, Triton gRPC, batch 1, one client: efficiency.json; a second
client adds about a tenth at 512x512, instances.json, so the figure is on the safe side). Assumed: a GPU
replica's throughput (nothing
was measured on a GPU), replicas adding up linearly behind the balancer, and each one planned at
``UTILISATION`` busy, so a burst or a lost replica does not queue requests without end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-amd-epyc-avx512-2c"
RATES = (100, 1_000, 10_000)  # translations per second
UTILISATION = 0.7  # assumed headroom: replicas planned 70% busy
CPU_CORES_PER_REPLICA = 2  # the measured machine
# Assumed, not measured: the H100 target for cyclegan_a2b (docs/benchmarks.md, "GPU knobs: not measured
# here") at the bench's default 256x256; a 512x512 image is 4x the pixels and the work.
GPU_256_IMAGES_PER_S = 2000.0


def cpu_images_per_s(side: int) -> float:
    """cyclegan_a2b through Triton gRPC, batch 1, one client, at ``side`` pixels: efficiency.json."""
    rows = json.loads((RESULTS / "efficiency.json").read_text())["results"]
    return next(r["images_per_s"] for r in rows if r["model"] == "cyclegan_a2b" and r["backend"] == "triton-grpc"
                and r["size"] == side and r["batch"] == 1 and r["concurrency"] == 1 and not r.get("variant"))


def cpu_512_images_per_s() -> float:
    return cpu_images_per_s(512)


def replicas(rate: float, images_per_s: float) -> int:
    return math.ceil(rate / (images_per_s * UTILISATION))


def table() -> str:
    per_replica = {("CPU", 256): cpu_images_per_s(256), ("CPU", 512): cpu_images_per_s(512),
                   ("GPU", 256): GPU_256_IMAGES_PER_S, ("GPU", 512): GPU_256_IMAGES_PER_S / 4}
    lines = ["| replica | image | one replica, images/s | " + " | ".join(f"{r:,}/s" for r in RATES) + " |",
             "|---|---|---|" + "---|" * len(RATES)]
    for (kind, side), rate in per_replica.items():
        cells = []
        for target in RATES:
            n = replicas(target, rate)
            cells.append(f"{n} ({n * CPU_CORES_PER_REPLICA} cores)" if kind == "CPU" else f"{n} GPU{'s' * (n > 1)}")
        source = "measured" if kind == "CPU" else "assumed"
        shown = f"{rate:.1f}" if rate < 100 else f"{rate:,.0f}"
        lines.append(f"| {kind} | {side}x{side} | {shown} ({source}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
