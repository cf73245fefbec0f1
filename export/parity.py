"""Parity: prove that the exported files compute what the PyTorch model computes.

For every Triton model, seeded inputs at batch 1, 4 and the maximum (and, for
translators, odd, non-multiple-of-4 and non-square sizes) go through the
eager wrapper, ONNX Runtime and the reloaded TorchScript module. Three gates:

- float output, eager vs ONNX Runtime: |a - b| <= atol + rtol * |b| with atol 1e-4, rtol 1e-3
  (FINDINGS: honest CPU errors are 1e-6 to 1e-5);
- float output, eager vs TorchScript: atol 1e-6;
- uint8 images, all three: at most 1 level apart (rounding at a .5 boundary).

The report is written as parity.json beside the published model.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ganexport import catalog

GATES = {
    "onnxruntime": {"atol": 1e-4, "rtol": 1e-3},
    "torchscript": {"atol": 1e-6, "rtol": 0.0},
}
MAX_LEVELS = 1  # uint8 outputs may differ by one level where the float value sits on a rounding edge
TRANSLATOR_SIZES = ((8, 8), (37, 53), (64, 64), (100, 75), (131, 257))


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
        gate = GATES[self.backend]
        diff = np.abs(ref_float.astype(np.float64) - got_float.astype(np.float64))
        excess = diff - (gate["atol"] + gate["rtol"] * np.abs(got_float))
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.max_rel = max(self.max_rel, float((diff / np.maximum(np.abs(ref_float), 1e-6)).max()))
        self.worst_excess = max(self.worst_excess, float(excess.max()))
        levels = int(np.abs(ref_u8.astype(np.int16) - got_u8.astype(np.int16)).max())
        self.max_levels = max(self.max_levels, levels)
        if ref_u8.shape != got_u8.shape:
            self.failures.append(f"{shape}: output shape {got_u8.shape} != {ref_u8.shape}")
        if excess.max() > 0:
            self.failures.append(f"{shape}: float max abs error {diff.max():.2e} exceeds atol {gate['atol']:g}"
                                 f" + rtol {gate['rtol']:g}")
        if levels > MAX_LEVELS:
            self.failures.append(f"{shape}: uint8 outputs differ by {levels} levels")

    def report(self) -> dict[str, Any]:
        return {"max_abs_error": self.max_abs, "max_rel_error": self.max_rel, "max_uint8_levels": self.max_levels,
                **GATES[self.backend], "passed": not self.failures, "failures": self.failures[:10]}


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(sig: catalog.Signature, wrapper: torch.nn.Module, onnx_path: Path, onnx_float_path: Path,
                 torchscript_module, seed: int = 0) -> dict[str, Any]:
    """Compare eager, ONNX Runtime and TorchScript; returns the parity report (``passed`` says it all)."""
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
    backends = {b: c.report() for b, c in comparisons.items()}
    return {
        "model": sig.name,
        "passed": all(r["passed"] for r in backends.values()),
        "backends": backends,
        "inputs_tried": tried,
        "seed": seed,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "python": platform.python_version()},
    }


def raise_on_failure(report: dict[str, Any]) -> None:
    """ParityError naming the model, the backend and the size of the error."""
    for backend, r in report["backends"].items():
        if not r["passed"]:
            raise ParityError(
                f"{report['model']}: {backend} disagrees with PyTorch: max abs error {r['max_abs_error']:.3g}"
                f" (gate atol {r['atol']:g}, rtol {r['rtol']:g}), uint8 levels {r['max_uint8_levels']};"
                f" first: {r['failures'][0]}")
