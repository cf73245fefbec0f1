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

A model imported from another project whose net brings that project's own sampler (an imported diffusers
pipeline: ``reference``, diffusers' DDIMScheduler and UNet in PyTorch) is held to that sampler instead of
the eager denoiser under ganexport's loop: the served loop around each exported file against the other
project's own output on the same noise, at 10 and 50 steps (and a stochastic walk at eta 1 with the same
noise draws), gated at ``SAMPLER_MAX_LEVELS`` levels with at most ``REFERENCE_MAX_BEYOND_ONE`` of the values
more than one level apart (the loop's float32 arithmetic and the runtimes' rounding, not a different walk).

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
from ganexport.export import onnx_export, wrappers

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
REFERENCE_MAX_BEYOND_ONE = 0.01  # against another project's own sampler: fraction more than one level apart
REFERENCE_ETA_WALK = (min(SAMPLER_STEPS), SAMPLER_ROWS, 1.0)  # the stochastic walk checked against it

# A sampler that the exported files' loop is compared with: a request of the served signature -> its images.
Reference = Callable[[catalog.Signature, dict[str, np.ndarray]], np.ndarray]


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
            if t.dtype == "FP32":  # inside the documented range where there is one (edit strengths)
                values = rng.standard_normal((n, *t.shape))
                if t.low is not None:
                    values = np.clip(values, t.low, t.high)
                case[t.name] = values.astype(np.float32)
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

    def add(self, ref_float: np.ndarray, got_float: np.ndarray | None, ref_u8: np.ndarray, got_u8: np.ndarray,
            shape: str) -> None:
        """Both gates; the image gate alone where the file's float cannot be read (``got_float`` None)."""
        if got_float is not None:
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


def ort_session(model: Path | bytes) -> ort.InferenceSession:
    """A quiet CPU session of an ONNX file, or of a serialized model."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def check_parity(sig: catalog.Signature, wrapper: torch.nn.Module, onnx_path: Path | None, torchscript_module,
                 seed: int = 0, reference: Reference | None = None, onnx_float: bool = True) -> dict[str, Any]:
    """Compare eager, ONNX Runtime and TorchScript; returns the parity report (``passed`` says it all).
    A runtime not exported (its path or module None: a build asked for the other alone) is not in the report.
    The ONNX file's float gate reads the float it rounds from inside the file (``onnx_export.exposing_float``);
    ``onnx_float=False`` skips that gate, for a file that does not hold its float (``onnx_export.holds_float``).
    A diffusion model's files hold its denoiser: see ``check_diffusion_parity`` (its output is the float)."""
    if sig.diffusion is not None:
        return check_diffusion_parity(sig, wrapper, onnx_path, torchscript_module, seed, reference)
    rounded = wrappers.rounds_to_uint8(sig)
    sess = ort_session(onnx_path) if onnx_path is not None else None
    sess_float = (ort_session(onnx_export.exposing_float(onnx_path)) if sess is not None and rounded and onnx_float
                  else None)
    out_name = sig.outputs[0].name
    comparisons = {b: Comparison(b) for b, there in (("onnxruntime", sess), ("torchscript", torchscript_module))
                   if there is not None}
    tried = []
    for case in parity_inputs(sig, seed):
        args = [torch.from_numpy(case[t.name]) for t in sig.inputs]
        shape = "x".join(str(d) for d in args[0].shape)
        tried.append({t.name: list(case[t.name].shape) for t in sig.inputs})
        got = {}  # backend -> (float output, served output)
        with torch.no_grad():
            ref_float = wrapper.float_forward(*args).numpy()
            ref_u8 = wrapper(*args).numpy()
            if torchscript_module is not None:
                ts = torchscript_module
                got["torchscript"] = (ts.float_forward(*args).numpy(), ts(*args).numpy())
        if sess is not None:
            got_float = sess_float.run([wrappers.FLOAT_OUTPUT], case)[0] if sess_float is not None else None
            got["onnxruntime"] = (got_float, sess.run([out_name], case)[0])
        for backend, (got_float, got_u8) in got.items():
            if rounded:
                comparisons[backend].add(ref_float, got_float, ref_u8, got_u8, shape)
            else:  # an encoder's output is the float itself (its uint8 twin would be the same tensor)
                comparisons[backend].add_float(ref_float, got_u8, shape)
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
    the denoiser's maximum, labels (where it takes them) covering both ends of their range."""
    den = sig.denoiser()
    x, t, *label = den.inputs
    rng = np.random.default_rng(seed)
    cases = []
    for step in denoiser_timesteps(sig):
        for n in sorted({1, 4, den.max_batch_size}):
            case = {x.name: rng.standard_normal((n, *x.shape)).astype(np.float32),
                    t.name: np.full((n, *t.shape), step, np.float32)}
            for spec in label:
                labels = rng.integers(int(spec.low), int(spec.high) + 1, (n, *spec.shape))
                labels.flat[0], labels.flat[-1] = int(spec.low), int(spec.high)
                case[spec.name] = labels.astype(spec.numpy_dtype)
            cases.append(case)
    return cases


def sampler_inputs(sig: catalog.Signature, steps: int, rows: int, seed: int = 0, eta: float = 0.0
                   ) -> dict[str, np.ndarray]:
    """A seeded request of the served signature: DDIM (eta 0 unless given) at SAMPLER_GUIDANCE (or the one
    guidance the model takes), the labels in turn from 0, the last row the top of their range ("no class"
    for ganexport's own models). The same seed gives the same first noises whatever ``rows`` is, so two step
    counts compare the error on the same images."""
    noise, label, n_steps, guidance, eta_spec = sig.diffusion_inputs()
    z = np.random.default_rng(seed).standard_normal((sig.max_batch_size, *noise.shape)).astype(np.float32)[:rows]
    column = lambda value, spec: np.full((rows, *spec.shape), value, spec.numpy_dtype)  # noqa: E731
    request = {noise.name: z, n_steps.name: column(steps, n_steps),
               guidance.name: column(min(max(SAMPLER_GUIDANCE, guidance.low), guidance.high), guidance),
               eta_spec.name: column(eta, eta_spec)}
    if label is not None:
        labels = (np.arange(rows) % (int(label.high) + 1)).reshape(rows, *label.shape)
        labels[-1] = int(label.high)
        request[label.name] = labels.astype(label.numpy_dtype)
    return {t.name: request[t.name] for t in sig.inputs}


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
                           seed: int = 0, reference: Reference | None = None) -> dict[str, Any]:
    """The denoiser under the float gates, then the sampler loop under the level gates (module docstring),
    against ``reference`` where the model brings its own project's sampler."""
    den = sig.denoiser()
    runs = {**({"onnxruntime": onnx_run(onnx_path, den)} if onnx_path is not None else {}),
            **({"torchscript": torch_run(torchscript_module, den)} if torchscript_module is not None else {})}
    comparisons, sampler, tried = compare_diffusion(sig, denoiser, runs, seed, reference=reference)
    backends = {b: {**c.report(), "sampler": sampler[b]} for b, c in comparisons.items()}
    guidance = sig.diffusion_inputs()[3]
    gate = {"steps": list(SAMPLER_STEPS), "guidance": min(max(SAMPLER_GUIDANCE, guidance.low), guidance.high),
            "eta": 0.0, "max_uint8_levels": SAMPLER_MAX_LEVELS}
    if reference is None:
        gate["max_differing_fraction"] = SAMPLER_MAX_DIFFERING
    else:
        gate.update(reference=getattr(reference, "about", type(reference).__name__),
                    max_beyond_one_level_fraction=REFERENCE_MAX_BEYOND_ONE,
                    eta_walk={"steps": REFERENCE_ETA_WALK[0], "eta": REFERENCE_ETA_WALK[2]})
    return _report(sig, backends, tried, seed, sampler_gate=gate)


def sampler_walks(sig: catalog.Signature, reference: bool = False) -> tuple[tuple[int, int, float], ...]:
    """(steps, rows, eta) of each sampler check: every SAMPLER_STEPS at eta 0, the shortest walk at the served
    max batch (whose guided half fills the denoiser's), the others on SAMPLER_ROWS rows; against a
    ``reference`` sampler also REFERENCE_ETA_WALK."""
    walks = tuple((steps, sig.max_batch_size if steps == min(SAMPLER_STEPS) else min(SAMPLER_ROWS, sig.max_batch_size),
                   0.0) for steps in SAMPLER_STEPS)
    return walks + ((REFERENCE_ETA_WALK[0], min(REFERENCE_ETA_WALK[1], sig.max_batch_size), REFERENCE_ETA_WALK[2]),
                    ) if reference else walks


def walk_name(steps: int, eta: float) -> str:
    """How a walk's figures are keyed in the report: '10', or '10 eta 1' for a stochastic one."""
    return str(steps) + (f" eta {eta:g}" if eta else "")


def compare_diffusion(sig: catalog.Signature, denoiser: torch.nn.Module, runs: dict[str, Run], seed: int = 0,
                      walks: tuple[tuple[int, int, float], ...] | None = None, reference: Reference | None = None
                      ) -> tuple[dict[str, Comparison], dict[str, dict[str, Any]], list[dict[str, list[int]]]]:
    """The PyTorch ``denoiser`` against each of ``runs`` (backend -> its file's run): the denoiser at every
    ``denoiser_inputs`` case, then ``run_signature`` for each (steps, rows, eta) of ``walks`` (default
    ``sampler_walks``) against the same loop around the PyTorch denoiser, or against ``reference``, once
    every denoiser has passed (one that fails refuses the build already, and the walks are most of the
    work). Returns the comparisons, each backend's sampler figures by walk (none when a denoiser failed),
    and the shapes tried."""
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
    for steps, rows, eta in walks or sampler_walks(sig, reference is not None):
        request = sampler_inputs(sig, steps, rows, seed, eta)
        tried.append({name: list(v.shape) for name, v in request.items()})
        ref = (reference(sig, request) if reference is not None
               else diffusion.run_signature(sig, diffusion.denoiser_eps_fn(sig, eager), request)[0])
        for backend, run in runs.items():
            got = diffusion.run_signature(sig, diffusion.denoiser_eps_fn(sig, run), request)[0]
            what = f"sampler {steps} steps" + (f" eta {eta:g}" if eta else "")
            sampler[backend][walk_name(steps, eta)] = _sampler_gate(comparisons[backend], ref, got, what,
                                                                    reference is not None)
    return comparisons, sampler, tried


def _sampler_gate(comparison: Comparison, ref: np.ndarray, got: np.ndarray, what: str,
                  against_reference: bool = False) -> dict[str, Any]:
    """One walk's images, the reference vs a backend: record, and add a failure beyond the sampler gates
    (against another project's sampler, the share of values more than one level apart; else any difference)."""
    levels = comparison.add_uint8(ref, got, what, max_levels=SAMPLER_MAX_LEVELS)
    same = ref.shape == got.shape
    gap = np.abs(ref.astype(np.int16) - got.astype(np.int16)) if same else None
    differing = float(np.mean(gap > 0)) if same else 1.0
    beyond = float(np.mean(gap > 1)) if same else 1.0
    share, gate, words = ((beyond, REFERENCE_MAX_BEYOND_ONE, "differ by more than one level") if against_reference
                          else (differing, SAMPLER_MAX_DIFFERING, "differ"))
    if share > gate:
        comparison.failures.append(f"{what}: {share:.2%} of the image values {words} (gate {gate:.0%})")
    return {"max_uint8_levels": levels, "differing_fraction": differing, "beyond_one_level_fraction": beyond,
            "rows": int(len(ref))}


def raise_on_failure(report: dict[str, Any]) -> None:
    """ParityError naming the model, the backend and the size of the error."""
    for backend, r in report["backends"].items():
        if not r["passed"]:
            raise ParityError(
                f"{report['model']}: {backend} disagrees with PyTorch: max abs error {r['max_abs_error']:.3g}"
                f" (gate atol {r['atol']:g}, rtol {r['rtol']:g}), uint8 levels {r['max_uint8_levels']};"
                f" first: {r['failures'][0]}")
