"""fp16 copies of published ONNX models, for GPUs, each with its own parity record in uint8 levels.

A GPU's tensor cores run fp16 several times faster than fp32 (on CPU, ONNX Runtime's fp16 is not faster:
FINDINGS), so `ganexport gpu-check` benches both. The copy is ONNX Runtime's own float16 converter
(``onnxruntime.transformers.float16``) with the graph's inputs and outputs kept as they are: clients send
the same uint8 images and fp32 latents and get the same uint8 images back. What fp16 costs in accuracy
is measured, not assumed: the fp32 and fp16 files run on the same seeded inputs (parity.parity_inputs:
every batch size and the awkward translator sizes) on the same execution providers, and the difference
of their images in uint8 levels is recorded (``parity.json``: ``precision`` "fp16", ``max_uint8_levels``,
``mean_uint8_levels``) and gated at ``MAX_LEVELS``. A diffusion model's file is a float denoiser, re-fed
to itself every step; it is not converted here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ganexport import repository_writer
from ganexport.repository import CONFIG_FILE, MODEL_FILES, PARITY_FILE, latest, read_signature, sha256

MAX_LEVELS = 4  # fp16 keeps 11 bits of mantissa: a few levels at the rounding edges, never a visible shift
MAX_MEAN_LEVELS = 0.5


class HalfError(RuntimeError):
    """A model that cannot be converted, or whose fp16 copy misses the gate; one line."""


def to_fp16(onnx_path: Path, out_path: Path) -> Path:
    """Write the fp16 copy of the ONNX file at ``onnx_path`` (inputs and outputs keep their types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx.save(model, str(out_path))
    return out_path


def compare(sig, fp32_path: Path, fp16_path: Path, providers: list[str]) -> dict:
    """Both files on the same seeded inputs: the parity record of the fp16 copy."""
    import onnxruntime as ort

    from ganexport.export.parity import parity_inputs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(str(p), options, providers=providers) for p in (fp32_path, fp16_path)]
    worst, total, count, tried = 0, 0.0, 0, []
    for feeds in parity_inputs(sig, seed=1):
        a, b = (s.run(None, feeds)[0] for s in sessions)
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        worst, total, count = max(worst, int(diff.max())), total + float(diff.sum()), count + diff.size
        tried.append({k: list(v.shape) for k, v in feeds.items()})
    mean = total / count
    return {"model": sig.name, "precision": "fp16", "reference": "the fp32 ONNX file, same inputs and providers",
            "providers": sessions[1].get_providers(), "max_uint8_levels": worst, "mean_uint8_levels": round(mean, 4),
            "gate": {"max_uint8_levels": MAX_LEVELS, "mean_uint8_levels": MAX_MEAN_LEVELS},
            "passed": worst <= MAX_LEVELS and mean <= MAX_MEAN_LEVELS, "inputs_tried": tried,
            "files": {MODEL_FILES["onnxruntime"]: sha256(fp16_path)}, "fp32_sha256": sha256(fp32_path)}


def publish_fp16(source: Path, target: Path, models: list[str], providers: list[str], log=print) -> dict[str, dict]:
    """Publish into ``target`` an fp16 copy of each of ``models`` from ``source`` (same name and config),
    each with its parity record; returns the records. A copy that misses the gate is not published."""
    records = {}
    for name in models:
        version = latest(Path(source), name)
        if version is None:
            raise HalfError(f"{name}: not published in {source}")
        sig = read_signature(version)
        if sig.diffusion is not None:
            raise HalfError(f"{name}: a diffusion model's denoiser is not converted to fp16")
        with tempfile.TemporaryDirectory(prefix="ganexport-fp16-") as tmp:
            fp32 = version / MODEL_FILES["onnxruntime"]
            fp16 = to_fp16(fp32, Path(tmp) / MODEL_FILES["onnxruntime"])
            record = compare(sig, fp32, fp16, providers)
            log(f"{name}: fp16 against fp32: at most {record['max_uint8_levels']} uint8 levels apart, "
                f"{record['mean_uint8_levels']:.3f} on average -> {'pass' if record['passed'] else 'FAIL'}")
            if not record["passed"]:
                raise HalfError(f"{name}: the fp16 copy differs from fp32 by {record['max_uint8_levels']} levels "
                                f"(mean {record['mean_uint8_levels']:.3f}); gate {MAX_LEVELS} / {MAX_MEAN_LEVELS}")
            report = Path(tmp) / PARITY_FILE
            report.write_text(json.dumps(record, indent=2))
            config = (Path(source) / name / CONFIG_FILE).read_text()
            repository_writer.publish(Path(target), sig, {MODEL_FILES["onnxruntime"]: fp16, PARITY_FILE: report},
                                      config=config)
        records[name] = record
    return records

