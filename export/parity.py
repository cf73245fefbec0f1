"""Parity: prove that the exported files compute what the PyTorch model computes.

For every Triton model, seeded inputs at batch 1, 4 and the maximum (and, for
translators, odd, non-multiple-of-4 and non-square sizes) go through the
eager wrapper, ONNX Runtime and the reloaded TorchScript module. Three gates:

- float output, eager vs ONNX Runtime: |a - b| <= atol + rtol * |b| with atol 1e-4, rtol 1e-3
  (FINDINGS: honest CPU errors are 1e-6 to 1e-5);
- float output, eager vs TorchScript: atol 1e-6;
- uint8 images, all three: at most 1 level apart (rounding at a .5 boundary).

A "diffuse" model's file is its denoiser, so parity checks it twice (``check_diffusion_parity``):

- the denoiser alone, at timesteps 0, 1, the middle and the last, at batch 1, 4 and its maximum,
  under the same float gates (its output, the noise estimate, is the float itself);
- the whole sampler (``ganexport.diffusion.run_signature``, the loop every serving path runs) on
  seeded noise at 10 and 50 DDIM steps, eta 0, guidance 2, labels including "no class", with the
  PyTorch denoiser against each exported file. A float error of 1e-6 per step is re-fed to the
  denoiser at every step, so the report records the image difference in uint8 levels at each
  step count (how the error grows) and gates it: at most ``SAMPLER_MAX_LEVELS`` levels anywhere,
  and at most ``SAMPLER_MAX_DIFFERING`` of the pixels differing at all. (It runs once the denoiser
  passes: a denoiser beyond its float gate refuses the build already.)

The report is written as parity.json beside the published model.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ganexport import catalog, diffusion

GATES = {
    "onnxruntime": {"atol": 1e-4, "rtol": 1e-3},
    "torchscript": {"atol": 1e-6, "rtol": 0.0},
}
MAX_LEVELS = 1  # uint8 outputs may differ by one level where the float value sits on a rounding edge
TRANSLATOR_SIZES = ((8, 8), (37, 53), (64, 64), (100, 75), (131, 257))
# The sampler check of a diffusion model. Measured on CPU (ONNX Runtime vs eager, the quick-profile 28x28
# fashion-mnist UNet after 1000 training steps, guidance 2, eta 0): denoiser max abs 5.7e-6; images at most
# 1 level apart at 10, 50, 100 and 250 steps alike, on 0.02-0.07% of the values (rounding edges); TorchScript
# bit-exact. DDIM's clipped x0 keeps the per-step error from compounding, so the gate leaves one level of
# room above what was seen, and a fraction 15x above it; a defect moves most values by many levels.
SAMPLER_STEPS = (10, 50)
SAMPLER_GUIDANCE = 2.0
SAMPLER_ROWS = 8  # rows at the longest walk; the shortest runs the served max batch
SAMPLER_MAX_LEVELS = 2
SAMPLER_MAX_DIFFERING = 0.01  # fraction of image values that may differ at all


class ParityError(Exception):
    """A backend disagrees with PyTorch beyond its gate; the message names model, backend and error."""


def parity_inputs(sig: catalog.Signature, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded inputs covering the batch sizes and, for translators, awkward image sizes."""
    rng = np.random.default_rng(seed)
    batches = sorted({1, 4, sig.max_batch_size})
    cases = []
    if sig.kind == "translate":
        c = sig.inputs[0].shape[-1]
        for n in batches:
            cases.append({sig.inputs[0].name: rng.integers(0, 256, (n, 64, 64, c), dtype=np.uint8)})
        for h, w in TRANSLATOR_SIZES:
            cases.append({sig.inputs[0].name: rng.integers(0, 256, (1, h, w, c), dtype=np.uint8)})
        return cases
    for n in batches:
        case = {}
        for t in sig.inputs:
            if t.dtype == "FP32":
                case[t.name] = rng.standard_normal((n, *t.shape)).astype(np.float32)
            else:  # labels: cover both ends of the range, then random
                labels = rng.integers(int(t.low), int(t.high) + 1, (n, *t.shape))
                labels.flat[0] = int(t.low)
                labels.flat[-1] = int(t.high)
                case[t.name] = labels.astype(t.numpy_dtype)
        cases.append(case)
    return cases


@dataclass
class Comparison:
    backend: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_levels: int = 0
    worst_excess: float = -np.inf  # max of |a-b| - (atol + rtol*|b|): > 0 means the gate failed
    failures: list[str] = field(default_factory=list)

    def add(self, ref_float: np.ndarray, got_float: np.ndarray, ref_u8: np.ndarray, got_u8: np.ndarray,
            shape: str) -> None:
        self.add_float(ref_float, got_float, shape)
        self.add_uint8(ref_u8, got_u8, shape)

    def add_float(self, ref_float: np.ndarray, got_float: np.ndarray, shape: str) -> None:
        """The float gate: |ref - got| <= atol + rtol * |got| everywhere."""
        if ref_float.shape != got_float.shape:
            self.failures.append(f"{shape}: output shape {got_float.shape} != {ref_float.shape}")
            return
        gate = GATES[self.backend]
        diff = np.abs(ref_float.astype(np.float64) - got_float.astype(np.float64))
        excess = diff - (gate["atol"] + gate["rtol"] * np.abs(got_float))
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.max_rel = max(self.max_rel, float((diff / np.maximum(np.abs(ref_float), 1e-6)).max()))
        self.worst_excess = max(self.worst_excess, float(excess.max()))
        if excess.max() > 0:
            self.failures.append(f"{shape}: float max abs error {diff.max():.2e} exceeds atol {gate['atol']:g}"
                                 f" + rtol {gate['rtol']:g}")

    def add_uint8(self, ref_u8: np.ndarray, got_u8: np.ndarray, shape: str, max_levels: int = MAX_LEVELS) -> int:
        """The image gate: uint8 outputs at most ``max_levels`` apart; returns the largest difference."""
        if ref_u8.shape != got_u8.shape:
            self.failures.append(f"{shape}: output shape {got_u8.shape} != {ref_u8.shape}")
            return 255
        levels = int(np.abs(ref_u8.astype(np.int16) - got_u8.astype(np.int16)).max())
        self.max_levels = max(self.max_levels, levels)
        if levels > max_levels:
            self.failures.append(f"{shape}: uint8 outputs differ by {levels} levels")
        return levels

    def report(self) -> dict[str, Any]:
        return {"max_abs_error": self.max_abs, "max_rel_error": self.max_rel, "max_uint8_levels": self.max_levels,
                **GATES[self.backend], "passed": not self.failures, "failures": self.failures[:10]}


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(sig: catalog.Signature, wrapper: torch.nn.Module, onnx_path: Path, onnx_float_path: Path,
                 torchscript_module, seed: int = 0) -> dict[str, Any]:
    """Compare eager, ONNX Runtime and TorchScript; returns the parity report (``passed`` says it all).
    A diffusion model's files hold its denoiser: see ``check_diffusion_parity`` (no float twin is needed)."""
    if sig.diffusion is not None:
        return check_diffusion_parity(sig, wrapper, onnx_path, torchscript_module, seed)
    sess, sess_float = ort_session(onnx_path), ort_session(onnx_float_path)
    out_name = sig.outputs[0].name
    comparisons = {b: Comparison(b) for b in GATES}
    tried = []
    for case in parity_inputs(sig, seed):
        args = [torch.from_numpy(case[t.name]) for t in sig.inputs]
        shape = "x".join(str(d) for d in args[0].shape)
        tried.append({t.name: list(case[t.name].shape) for t in sig.inputs})
        with torch.no_grad():
            ref_float = wrapper.float_forward(*args).numpy()
            ref_u8 = wrapper(*args).numpy()
            ts_float = torchscript_module.float_forward(*args).numpy()
            ts_u8 = torchscript_module(*args).numpy()
        (ort_u8,) = sess.run([out_name], case)
        (ort_float,) = sess_float.run(None, case)
        comparisons["onnxruntime"].add(ref_float, ort_float, ref_u8, ort_u8, shape)
        comparisons["torchscript"].add(ref_float, ts_float, ref_u8, ts_u8, shape)
    return _report(sig, {b: c.report() for b, c in comparisons.items()}, tried, seed)


def _report(sig: catalog.Signature, backends: dict[str, dict], tried: list, seed: int, **extra) -> dict[str, Any]:
    return {
        "model": sig.name,
        "passed": all(r["passed"] for r in backends.values()),
        "backends": backends,
        "inputs_tried": tried,
        "seed": seed,
        **extra,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "python": platform.python_version()},
    }


# --------------------------------------------------------------------------- diffusion models


def denoiser_timesteps(sig: catalog.Signature) -> tuple[int, ...]:
    """Where the denoiser is checked: both ends of the walk (t = 0 sees a clean image, the last t pure
    noise), the step after the first, and the middle."""
    last = sig.diffusion["timesteps"] - 1
    return tuple(sorted({0, 1, last // 2, last}))


def denoiser_inputs(sig: catalog.Signature, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded denoiser feeds (names from ``sig.denoiser()``) at each checked timestep and batch 1, 4 and
    the denoiser's maximum, labels covering both ends of their range (the last is "no class")."""
    den = sig.denoiser()
    x, t, label = den.inputs
    rng = np.random.default_rng(seed)
    cases = []
    for step in denoiser_timesteps(sig):
        for n in sorted({1, 4, den.max_batch_size}):
            labels = rng.integers(int(label.low), int(label.high) + 1, (n, *label.shape))
            labels.flat[0], labels.flat[-1] = int(label.low), int(label.high)
            cases.append({x.name: rng.standard_normal((n, *x.shape)).astype(np.float32),
                          t.name: np.full((n, *t.shape), step, np.float32),
                          label.name: labels.astype(label.numpy_dtype)})
    return cases


def sampler_inputs(sig: catalog.Signature, steps: int, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded request of the served signature: DDIM (eta 0) at SAMPLER_GUIDANCE, the labels in turn from
    0, the last row "no class". The same seed gives the same first noises whatever ``rows`` is, so two
    step counts compare the error on the same images."""
    noise, label, n_steps, guidance, eta = sig.inputs
    z = np.random.default_rng(seed).standard_normal((sig.max_batch_size, *noise.shape)).astype(np.float32)[:rows]
    column = lambda value, spec: np.full((rows, *spec.shape), value, spec.numpy_dtype)  # noqa: E731
    labels = (np.arange(rows) % (int(label.high) + 1)).reshape(rows, *label.shape)
    labels[-1] = int(label.high)
    return {noise.name: z, label.name: labels.astype(label.numpy_dtype), n_steps.name: column(steps, n_steps),
            guidance.name: column(SAMPLER_GUIDANCE, guidance), eta.name: column(0.0, eta)}


Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # a denoiser file: feeds -> [eps]


def torch_run(module, den: catalog.Signature) -> Run:
    """``module(x, t, label)`` (eager or TorchScript) as ``run(feeds) -> [eps]``, the form
    ``diffusion.denoiser_eps_fn`` takes and every runtime of the denoiser is called through."""
    def run(feeds):
        with torch.no_grad():
            return [module(*(torch.from_numpy(feeds[t.name]) for t in den.inputs)).numpy()]
    return run


def onnx_run(path: Path, den: catalog.Signature) -> Run:
    sess = ort_session(path)
    return lambda feeds: sess.run([den.outputs[0].name], feeds)


def check_diffusion_parity(sig: catalog.Signature, denoiser: torch.nn.Module, onnx_path: Path, torchscript_module,
                           seed: int = 0) -> dict[str, Any]:
    """The denoiser under the float gates, then the sampler loop under the level gates (module docstring)."""
    den = sig.denoiser()
    runs = {"onnxruntime": onnx_run(onnx_path, den), "torchscript": torch_run(torchscript_module, den)}
    comparisons, sampler, tried = compare_diffusion(sig, denoiser, runs, seed)
    backends = {b: {**c.report(), "sampler": sampler[b]} for b, c in comparisons.items()}
    gate = {"steps": list(SAMPLER_STEPS), "guidance": SAMPLER_GUIDANCE, "eta": 0.0,
            "max_uint8_levels": SAMPLER_MAX_LEVELS, "max_differing_fraction": SAMPLER_MAX_DIFFERING}
    return _report(sig, backends, tried, seed, sampler_gate=gate)


def sampler_walks(sig: catalog.Signature) -> tuple[tuple[int, int], ...]:
    """(steps, rows) of each sampler check: every SAMPLER_STEPS, the shortest walk at the served max batch
    (whose guided half fills the denoiser's), the others on SAMPLER_ROWS rows."""
    return tuple((steps, sig.max_batch_size if steps == min(SAMPLER_STEPS) else min(SAMPLER_ROWS, sig.max_batch_size))
                 for steps in SAMPLER_STEPS)


def compare_diffusion(sig: catalog.Signature, denoiser: torch.nn.Module, runs: dict[str, Run], seed: int = 0,
                      walks: tuple[tuple[int, int], ...] | None = None
                      ) -> tuple[dict[str, Comparison], dict[str, dict[str, Any]], list[dict[str, list[int]]]]:
    """The PyTorch ``denoiser`` against each of ``runs`` (backend -> its file's run): the denoiser at every
    ``denoiser_inputs`` case, then ``run_signature`` for each (steps, rows) of ``walks`` (default
    ``sampler_walks``), once every denoiser has passed (one that fails refuses the build already, and the
    walks are most of the work). Returns the comparisons, each backend's sampler figures by step count
    (none when a denoiser failed), and the shapes tried."""
    den = sig.denoiser()
    eager = torch_run(denoiser, den)
    comparisons = {b: Comparison(b) for b in runs}
    tried = []
    for case in denoiser_inputs(sig, seed):
        what = f"denoiser t={int(case[den.inputs[1].name][0, 0])} batch {len(case[den.inputs[0].name])}"
        tried.append({name: list(v.shape) for name, v in case.items()})
        (ref,) = eager(case)
        for backend, run in runs.items():
            comparisons[backend].add_float(ref, run(case)[0], what)
    sampler: dict[str, dict[str, Any]] = {b: {} for b in runs}
    if any(c.failures for c in comparisons.values()):
        return comparisons, sampler, tried
    for steps, rows in walks or sampler_walks(sig):
        request = sampler_inputs(sig, steps, rows, seed)
        tried.append({name: list(v.shape) for name, v in request.items()})
        ref = diffusion.run_signature(sig, diffusion.denoiser_eps_fn(sig, eager), request)[0]
        for backend, run in runs.items():
            got = diffusion.run_signature(sig, diffusion.denoiser_eps_fn(sig, run), request)[0]
            sampler[backend][str(steps)] = _sampler_gate(comparisons[backend], ref, got, f"sampler {steps} steps")
    return comparisons, sampler, tried


def _sampler_gate(comparison: Comparison, ref: np.ndarray, got: np.ndarray, what: str) -> dict[str, Any]:
    """One step count's images, eager vs a backend: record, and add a failure beyond either sampler gate."""
    levels = comparison.add_uint8(ref, got, what, max_levels=SAMPLER_MAX_LEVELS)
    differing = float(np.mean(ref != got)) if ref.shape == got.shape else 1.0
    if differing > SAMPLER_MAX_DIFFERING:
        comparison.failures.append(f"{what}: {differing:.2%} of the image values differ "
                                   f"(gate {SAMPLER_MAX_DIFFERING:.0%})")
    return {"max_uint8_levels": levels, "differing_fraction": differing, "rows": int(len(ref))}


def raise_on_failure(report: dict[str, Any]) -> None:
    """ParityError naming the model, the backend and the size of the error."""
    for backend, r in report["backends"].items():
        if not r["passed"]:
            raise ParityError(
                f"{report['model']}: {backend} disagrees with PyTorch: max abs error {r['max_abs_error']:.3g}"
                f" (gate atol {r['atol']:g}, rtol {r['rtol']:g}), uint8 levels {r['max_uint8_levels']};"
                f" first: {r['failures'][0]}")
