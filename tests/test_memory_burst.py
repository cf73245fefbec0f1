"""A burst of the largest images through Triton: the translator's stub gives the memory back afterwards.

ONNX Runtime's CPU arena keeps whatever a burst made it grow to unless a run asks it to shrink;
serving/ort_session.OrtSession asks once the model has been idle for ARENA_RELEASE_S. The stub is
compared with itself idle before the burst. The Python backend's shared-memory region, which
carries each batch's images between server and stub, never shrinks, and its resident pages grow
with the batch: so the burst here is one batch of four, which the batcher is told to wait for;
benchmarks/memory_burst.py measures the full 64-request burst on the released weights.
"""

from __future__ import annotations

import pytest

from ganexport.benchmarks.memory_burst import MiB, measure, target
from ganexport.repository import latest, read_signature
from ganexport.serving.ort_session import ARENA_RELEASE_S

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "cyclegan_a2b"
CLIENTS = 4  # a preferred batch size: the batcher sends them as one batch as soon as all four are queued
PATIENT = "max_queue_delay_us=1000000"  # ... and waits up to 1 s for them to arrive
# The claim is that the memory comes back under RATIO x; how soon is a figure (printed, and recorded in
# docs/reliability.md by benchmarks/memory_burst.py), not a test. Watching fails only at this ceiling.
RATIO, SETTLE_CEILING_S = 1.5, 120.0


def test_the_stub_gives_back_what_a_burst_of_the_largest_images_took(published):
    repo = published[0]
    side = read_signature(latest(repo, MODEL)).max_image_side  # 1024: as large as a request may be
    with target(str(repo), MODEL, knobs=[PATIENT]) as (watched, translate):
        result = measure(watched, translate, side=side, requests=CLIENTS, threads=CLIENTS, warm=1,
                         rest=ARENA_RELEASE_S + 1, settle=SETTLE_CEILING_S, ratio=RATIO, stop_when_back=True)
    figures = (f"stub RSS {result.before / MiB:.0f} MiB before, {result.peak / MiB:.0f} at peak, "
               f"{result.after / MiB:.0f} after {result.settled_s:.0f} s "
               f"({', '.join(f'{k} {v / MiB:.0f}' for k, v in result.after_parts.items())})")
    print(figures)
    assert not result.errors and result.answered == CLIENTS, result.errors
    assert result.peak > 2 * result.before, f"the burst took too little memory to tell anything: {figures}"
    assert result.back_after_s is not None, f"not back under {RATIO}x within {SETTLE_CEILING_S:.0f} s: {figures}"


def test_under_the_supervisor_a_stub_left_swollen_at_rest_is_replaced(published):
    """The stub idle and its arena already given back before the burst (what an idle server looks like):
    what stays after the burst is the Python backend's shared-memory region, mapped once per size it grew
    through. Under the supervisor, as `ganexport serve` runs Triton, the stub is replaced by a fresh one
    once the model is at rest, and every request of the burst is answered."""
    from ganexport.serving.supervisor import RECYCLE_IDLE_S

    repo = published[0]
    side = read_signature(latest(repo, MODEL)).max_image_side
    with target(str(repo), MODEL, knobs=[PATIENT], supervised=True) as (watched, translate):
        stubs_before = watched.pids()
        result = measure(watched, translate, side=side, requests=4 * CLIENTS, threads=CLIENTS,
                         rest=RECYCLE_IDLE_S + 2, settle=RECYCLE_IDLE_S + SETTLE_CEILING_S, ratio=RATIO,
                         stop_when_back=True)
        stubs_after = watched.pids()
    figures = (f"stub RSS {result.before / MiB:.0f} MiB before, {result.peak / MiB:.0f} at peak, "
               f"{result.after / MiB:.0f} after {result.settled_s:.0f} s; stubs {stubs_before} -> {stubs_after}")
    print(figures)
    assert not result.errors and result.answered == 4 * CLIENTS, result.errors
    assert result.peak > 2 * result.before, f"the burst took too little memory to tell anything: {figures}"
    assert result.back_after_s is not None, f"not back under {RATIO}x: {figures}"
