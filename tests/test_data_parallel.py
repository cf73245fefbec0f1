"""Data-parallel training on 2 CPU processes (gloo), launched as a user launches it: `ganexport train --nproc 2`.

The claim under test: N processes of batch_size / N rows compute what one
process of batch_size rows computes (same weights, batch-norm statistics,
gradient norms and losses, to float rounding), so a run can also move between
process counts with --resume. A single process trained on one process's rows
alone is the control that shows the comparison can tell them apart.

The runs compared train in float64 (`--precision float64`). In float32 a
convolution over 2 rows and one over 4 sum in another order, the order depends
on the CPU's kernels (oneDNN's AVX-512 ones differ from its AVX2 ones), and Adam
turns the rounding of a near-zero gradient into a step of +-lr: one process and
two ended 1e-2 apart on an Intel Xeon while 1e-6 apart on an AMD EPYC. float64's
rounding is about 1e9 times smaller, so what is left is the sharding itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganexport.training import checkpoint
from ganexport.training.loop import TrainConfig, train
from ganexport.training.parallel import SINGLE, World

pytestmark = pytest.mark.slow

TOLERANCE = 1e-6  # float64 rounding of sums taken in another order, over a few steps, is far below this
PRECISE = ("--precision", "float64")


def two_process_run(out: Path, *args: str) -> Path:
    """`ganexport train --nproc 2 ...` in a subprocess; returns the run folder it reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "ganexport", "train", "--nproc", "2", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(out.glob("*/*/checkpoint.safetensors"))
    assert len(runs) == 1, f"rank 0 alone writes one run, found {runs}"
    return runs[0].parent


def one_process_run(out: Path, model: str, steps: int, batch_size: int, **kw) -> Path:
    return train(TrainConfig(model=model, profile="smoke", out=str(out), steps=steps, progress=False,
                             hp={"batch_size": batch_size}, precision=PRECISE[1], **kw))


def probe(role: str, ckpt: checkpoint.Checkpoint) -> tuple:
    """A fixed input for one net of a run: latents for a generator of noise, else images."""
    gen = torch.Generator().manual_seed(0)
    if role == "generator":
        return (torch.randn(8, ckpt.hp["latent_dim"], generator=gen),)
    h, w, c = ckpt.image_shape
    return (torch.rand(8, c, h, w, generator=gen) * 2 - 1,)


def inert(net: torch.nn.Module, inputs: tuple) -> set[str]:
    """Parameters the net's output does not depend on, e.g. a convolution's bias right before an instance
    norm, which subtracts it again. Their gradient is rounding noise, which Adam turns into steps of +-lr
    whatever its size, so they cannot agree weight by weight; the nets' outputs show they do not matter."""
    net.zero_grad()
    net(*inputs).square().sum().backward()
    grads = {k: p.grad.abs().max().item() for k, p in net.named_parameters() if p.grad is not None}
    top = max(grads.values())
    return {k for k, p in net.named_parameters() if p.grad is None or grads[k] < 1e-6 * top}


def largest_gap(run_a: Path, run_b: Path) -> tuple[float, str]:
    """The largest absolute difference of two runs: over each net's output on a fixed input, and over every
    weight and batch-norm buffer except inert ones; and where it is. Nets and inputs in float64."""
    a, b = checkpoint.load(run_a), checkpoint.load(run_b)
    assert a.state.keys() == b.state.keys()
    worst, where = 0.0, ""
    for role in a.state:
        net_a, net_b = a.build(role).double().eval(), b.build(role).double().eval()
        inputs = tuple(x.double() for x in probe(role, a))
        with torch.no_grad():
            gap = (net_a(*inputs).double() - net_b(*inputs).double()).abs().max().item()
        if gap > worst:
            worst, where = gap, f"{role}'s output"
        skip = inert(net_a, inputs)
        for key, t in a.state[role].items():
            if key in skip or not t.numel():
                continue
            gap = (t.double() - b.state[role][key].double()).abs().max().item()
            if gap > worst:
                worst, where = gap, f"{role}.{key}"
    return worst, where


def control_gap(alone: Path, two: Path) -> float:
    gap, where = largest_gap(alone, two)
    print(f"one process on one rank's rows alone vs two: {gap:.1e} ({where})")
    return gap


def health(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "health.jsonl").read_text().splitlines()]


def assert_same_training(one: Path, two: Path) -> None:
    gap, where = largest_gap(one, two)
    print(f"one process vs two: largest gap {gap:.1e} ({where})")
    assert gap < TOLERANCE, f"{where} differs by {gap:.2e}"
    logged_one, logged_two = health(one), health(two)
    assert [r["step"] for r in logged_one] == [r["step"] for r in logged_two]
    for r1, r2 in zip(logged_one, logged_two):
        for key in (k for k in r1 if k.startswith(("loss", "grad"))):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), f"step {r1['step']} {key}"


def photo_folder(root: Path, n: int = 10) -> Path:
    """DIR/trainA (colour images) + DIR/trainB (grey ones): a two-domain folder that trains in seconds."""
    rng = np.random.default_rng(0)
    for domain, grey in (("trainA", False), ("trainB", True)):
        (root / domain).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (24, 24, 1 if grey else 3), dtype=np.uint8)
            Image.fromarray(np.repeat(img, 3, -1) if grey else img).save(root / domain / f"{i}.png")
    return root


def test_two_processes_of_batch_b_train_what_one_process_of_batch_2b_does_dcgan(tmp_path):
    """DCGAN has batch norm in both nets: its statistics must be over the global batch for this to hold."""
    args = ["--model", "dcgan", "--profile", "smoke", "--dataset", "digits", "--limit", "64", "--steps", "3"]
    two = two_process_run(tmp_path / "two", *args, *PRECISE, "--batch-size", "16")
    one = one_process_run(tmp_path / "one", "dcgan", 3, 16, dataset="digits", limit=64)
    assert_same_training(one, two)
    assert checkpoint.read_meta(two / "checkpoint.safetensors")["processes"] == 2
    # the control: a process that trains on rank 0's 8 rows alone ends elsewhere, far beyond the tolerance
    alone = one_process_run(tmp_path / "alone", "dcgan", 3, 8, dataset="digits", limit=64)
    assert control_gap(alone, two) > 20 * TOLERANCE


def test_two_processes_of_batch_b_train_what_one_process_of_batch_2b_does_cyclegan(tmp_path):
    """CycleGAN also keeps a history pool of fakes: every process must hold the one a single process would."""
    data = photo_folder(tmp_path / "data")
    args = ["--model", "cyclegan", "--profile", "smoke", "--data", str(data), "--image-size", "16", "--steps", "4"]
    two = two_process_run(tmp_path / "two", *args, *PRECISE, "--batch-size", "4")
    one = one_process_run(tmp_path / "one", "cyclegan", 4, 4, data_dir=str(data), image_size=16)
    assert_same_training(one, two)
    alone = one_process_run(tmp_path / "alone", "cyclegan", 4, 2, data_dir=str(data), image_size=16)
    assert control_gap(alone, two) > 20 * TOLERANCE


def test_a_run_resumed_on_another_process_count_continues_the_same_training(tmp_path):
    """2 steps on 2 processes, then 2 more on 1: the very run 4 steps on 1 process makes."""
    args = ["--model", "dcgan", "--profile", "smoke", "--dataset", "digits", "--limit", "64", "--steps", "2"]
    first = two_process_run(tmp_path / "two", *args, *PRECISE, "--batch-size", "16")
    resumed = train(TrainConfig(model="dcgan", resume=str(first), steps=4, progress=False))
    straight = one_process_run(tmp_path / "one", "dcgan", 4, 16, dataset="digits", limit=64)
    assert resumed == first
    assert_same_training(straight, resumed)


def test_the_readme_command_trains_on_two_processes_and_writes_one_run(tmp_path):
    """`ganexport train --model dcgan --nproc 2 --profile smoke` on the default data, as on a clean clone."""
    run = two_process_run(tmp_path, "--model", "dcgan", "--profile", "smoke")
    for name in ("checkpoint.safetensors", "train_state.pt", "samples.png", "loss_curve.png", "config.json"):
        assert (run / name).is_file(), name
    steps = [r["step"] for r in health(run)]
    assert steps == sorted(set(steps)), "each step is logged once, by rank 0"
    assert "2 processes" in checkpoint.read_meta(run / "checkpoint.safetensors")["hardware"]


def test_a_batch_that_does_not_split_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ganexport", "train", "--model", "dcgan", "--profile", "smoke",
                           "--nproc", "2", "--batch-size", "5", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: batch_size 5 does not split over 2 processes: use a multiple of 2 (--batch-size)"]
    assert not any(tmp_path.iterdir()), "nothing is written"


def test_world_rows_cover_the_global_batch_once():
    ranks = [World(rank=r, size=4) for r in range(4)]
    rows = torch.cat([w.shard(torch.arange(16)) for w in ranks])
    assert rows.tolist() == list(range(16))
    assert SINGLE.shard(torch.arange(5)).tolist() == list(range(5))
    with pytest.raises(ValueError, match="does not split over 4 processes"):
        ranks[0].check_batch(6)


def test_an_error_inside_the_processes_is_one_line_and_its_exit_code(tmp_path):
    """Found by the processes themselves, not before the launch: torchrun's own report is left out."""
    done = subprocess.run([sys.executable, "-m", "ganexport", "train", "--model", "cyclegan", "--profile", "smoke",
                           "--nproc", "2", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
