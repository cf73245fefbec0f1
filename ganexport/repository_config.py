"""config.pbtxt for one Triton model, derived entirely from its catalog Signature.

Two flavours are written from the same Signature:

- ``embedded`` (default): ``backend: "python"``; the generic model.py loads
  ``model.onnx`` through ONNX Runtime or ``model.pt`` through torch, chosen by
  the config's ``runtime`` and ``model_file`` parameters. This is what the
  tritonserver bundled in nvidia-pytriton can run (it has no native backends).
- ``native``: ``platform: "onnxruntime_onnx"`` (optionally with the TensorRT
  accelerator) or ``platform: "pytorch_libtorch"`` for NVIDIA's Triton
  containers. libtorch names tensors ``<name>__<index>``; ``libtorch_names``
  gives clients the mapping. A "diffuse" model has no native form: see ``flavor_refusal``.

The build writes these configs through ganexport.repository_writer.publish, and
``ganexport bench --variant`` rewrites them with other serving knobs. File names
come from ganexport.repository. Only the catalog and the standard library are imported.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Mapping

from ganexport.catalog import Signature, TensorSpec
from ganexport.repository import MODEL_FILES, RUNTIMES

FLAVORS = ("embedded", "native")
STRUCT_CODES = {"FP32": "f", "INT32": "i", "INT64": "q", "UINT8": "B"}  # warm-up files: little-endian raw data
NATIVE_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}

# Warm-up images use this side, clamped into the signature's [min, max] side.
WARMUP_SIDE = 64


# --------------------------------------------------------------------------- names


def model_name(sig: Signature, runtime: str = "onnxruntime") -> str:
    """Triton model name: ``<name>`` runs ONNX, ``<name>_torchscript`` runs TorchScript."""
    _check_choice("runtime", runtime, RUNTIMES)
    return sig.for_runtime(runtime).name


def libtorch_names(sig: Signature) -> dict[str, str]:
    """Signature tensor name -> the name a native ``pytorch_libtorch`` model uses.

    libtorch has no tensor names; Triton maps ``<name>__<index>`` to the
    forward() argument (inputs) or the returned tuple element (outputs) at that index.
    """
    names = {t.name: f"{t.name}__{i}" for i, t in enumerate(sig.inputs)}
    for i, t in enumerate(sig.outputs):
        if t.name in names:
            raise ValueError(f"{sig.name}: tensor {t.name!r} is both an input and an output; "
                             "libtorch names would be ambiguous")
        names[t.name] = f"{t.name}__{i}"
    return names


def flavor_refusal(sig: Signature, flavor: str) -> str | None:
    """Why ``sig`` cannot be published in ``flavor`` (one line), or None when it can.

    A "diffuse" model's file is its denoiser, one step of the sampler; the loop of 10 to 1000 steps
    around it (ganexport.diffusion) runs in the Python backend's model.py. A native
    ``onnxruntime_onnx`` or ``pytorch_libtorch`` model could only serve that one step, so a client
    would get noise estimates where the signature promises images. Refusing is the honest option:
    publishing the bare denoiser natively would need a loop on every client (or a BLS model in
    the Python backend, which is the embedded flavour anyway).
    """
    if flavor == "native" and sig.diffusion is not None:
        return (f"{sig.name}: a diffusion model has no native flavour: its sampling loop runs in the Python "
                f"backend around the exported denoiser; publish it with --flavor embedded")
    return None


# --------------------------------------------------------------------------- config.pbtxt


def config_pbtxt(sig: Signature, *, flavor: str = "embedded", runtime: str = "onnxruntime",
                 gpu: bool = False, instances: int = 1, tensorrt: bool = False,
                 max_queue_delay_us: int = 0, dynamic_batching: bool = True, max_queue_size: int = 0,
                 ort_options: Mapping[str, object] | None = None) -> str:
    """The config.pbtxt text of one Triton model, derived entirely from ``sig``.

    The serving knobs default to what docs/benchmarks.md measured best on CPU: one
    instance (two gained nothing), dynamic batching with no queue delay (a busy
    instance still collects the requests that queue meanwhile, and a lone request
    is not held back: 1 ms of delay doubled dcgan's p50 at one client). ``ganexport
    bench --variant`` rewrites them to compare alternatives.
    ``ort_options`` (``serving.backends.ORT_OPTIONS`` knobs) become
    ``ort_<knob>`` parameters that the embedded model.py reads.
    ``max_queue_size`` > 0 bounds each model's queue (Triton's default is unbounded): behind a load
    balancer, a replica that is full answers UNAVAILABLE at once instead of letting latency grow
    without limit (``ganexport deploy --max-queue-size``).

    Raises ValueError for combinations Triton would reject or silently ignore:
    TensorRT exists only for native ONNX models on GPU instances; a diffusion model
    exists only in the embedded flavour (``flavor_refusal``).
    """
    _check_choice("flavor", flavor, FLAVORS)
    _check_choice("runtime", runtime, RUNTIMES)
    refusal = flavor_refusal(sig, flavor)
    if refusal:
        raise ValueError(refusal)
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    if max_queue_delay_us < 0 or max_queue_size < 0:
        raise ValueError(f"max_queue_delay_us and max_queue_size must be >= 0, got {max_queue_delay_us} "
                         f"and {max_queue_size}")
    if max_queue_size and not dynamic_batching:
        raise ValueError("max_queue_size bounds the dynamic batcher's queue: it needs dynamic_batching=True")
    ort_options = {k: v for k, v in (ort_options or {}).items() if v is not None}
    if ort_options and (flavor, runtime) != ("embedded", "onnxruntime"):
        raise ValueError("ort_options apply only to flavor='embedded', runtime='onnxruntime'")
    if tensorrt and (flavor, runtime) != ("native", "onnxruntime"):
        raise ValueError("tensorrt applies only to flavor='native', runtime='onnxruntime'")
    if tensorrt and not gpu:
        raise ValueError("tensorrt needs gpu=True (TensorRT runs on GPU instances only)")
    rename = libtorch_names(sig) if (flavor, runtime) == ("native", "torchscript") else {}
    parts = [f'name: "{model_name(sig, runtime)}"']
    if flavor == "embedded":
        parts.append('backend: "python"')
    else:
        parts.append(f'platform: "{NATIVE_PLATFORMS[runtime]}"')
    parts.append(f"max_batch_size: {sig.max_batch_size}")
    parts.append("version_policy: { latest: { num_versions: 1 } }")
    parts.append(_tensors("input", sig.inputs, rename))
    parts.append(_tensors("output", sig.outputs, rename))
    if dynamic_batching:
        parts.append(_dynamic_batching(sig, max_queue_delay_us, max_queue_size))
    parts.append(f"instance_group [\n  {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }}\n]")
    params = {"signature": json.dumps(sig.for_runtime(runtime).to_dict(), separators=(",", ":"))}
    if sig.attributes:  # an edit model's strength order, readable without parsing the signature
        params["attributes"] = ",".join(sig.attributes)
    if flavor == "embedded":
        params.update(runtime=runtime, model_file=MODEL_FILES[runtime])
        params.update({f"ort_{k}": str(v) for k, v in ort_options.items()})
    # The full signature (value ranges, size limits) rides along, so any Triton client can
    # validate a request before sending it: GET /v2/models/<name>/config.
    parts.append(_parameters(params))
    if tensorrt:
        parts.append(_tensorrt_block())
    parts.append(_warmup(sig, rename))
    return "\n".join(parts) + "\n"


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _dims(shape: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _tensors(kind: str, specs: tuple[TensorSpec, ...], rename: Mapping[str, str]) -> str:
    """``input [ ... ]`` / ``output [ ... ]``; dims exclude the batch dim (max_batch_size > 0)."""
    items = [
        f'  {{\n    name: "{rename.get(t.name, t.name)}"\n    data_type: TYPE_{t.dtype}\n'
        f"    dims: {_dims(t.shape)}\n  }}"
        for t in specs
    ]
    return f"{kind} [\n" + ",\n".join(items) + "\n]"


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 4 up to the maximum, and the maximum: sizes the runtimes like."""
    sizes = [n for n in (2 ** k for k in range(2, 16)) if n < max_batch_size]
    return sizes + [max_batch_size]


def _dynamic_batching(sig: Signature, max_queue_delay_us: int, max_queue_size: int = 0) -> str:
    sizes = ", ".join(str(n) for n in preferred_batch_sizes(sig.max_batch_size))
    queue = f"  default_queue_policy {{ max_queue_size: {max_queue_size} }}\n" if max_queue_size else ""
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {max_queue_delay_us}\n{queue}}}")


def _parameters(params: Mapping[str, str]) -> str:
    """parameters entries; values are quoted and escaped as JSON strings, which text format also reads."""
    return "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
                     for k, v in params.items())


def _tensorrt_block() -> str:
    return ("optimization { execution_accelerators {\n"
            '  gpu_execution_accelerator : [ {\n    name : "tensorrt"\n'
            '    parameters { key: "precision_mode" value: "FP16" }\n  } ]\n} }')


def warmup_shape(sig: Signature, spec: TensorSpec) -> tuple[int, ...]:
    """Concrete dims for a warm-up request: dynamic sides become WARMUP_SIDE within the limits."""
    side = WARMUP_SIDE
    if sig.min_image_side is not None:
        side = max(side, sig.min_image_side)
    if sig.max_image_side is not None:
        side = min(side, sig.max_image_side)
    return tuple(side if d == -1 else d for d in spec.shape)


def warmup_value(spec: TensorSpec) -> float:
    """What a warm-up request sends for an input: 0, or the in-range value nearest it (diffusion steps: 1)."""
    if spec.low is not None and spec.low > 0:
        return spec.low
    if spec.high is not None and spec.high < 0:
        return spec.high
    return 0


def warmup_file(spec: TensorSpec) -> str:
    """The file, under the model's ``repository.WARMUP_DIR``, that holds an input's non-zero warm-up data."""
    return f"{spec.name}.raw"


def warmup_files(sig: Signature) -> dict[str, bytes]:
    """The raw warm-up data (row-major, batch 1) of every input whose range leaves out zero, by file name:
    what the model directory's ``repository.WARMUP_DIR`` must hold for the config's ``input_data_file`` entries."""
    files = {}
    for t in sig.inputs:
        value = warmup_value(t)
        if value != 0:
            count, code = math.prod(warmup_shape(sig, t)), STRUCT_CODES[t.dtype]
            files[warmup_file(t)] = struct.pack(f"<{count}{code}", *[value if code == "f" else int(value)] * count)
    return files


def _warmup(sig: Signature, rename: Mapping[str, str]) -> str:
    """One batch-1 request of the least work, so the first real request does not pay for loading.

    Zeros where zero is valid (zero_data, not random_data: random INT64 labels fall outside the label
    range and fail validation, which fails the model load); an input whose range leaves out zero (a
    diffusion model's steps, 1..1000) reads its nearest valid value from a file that
    ganexport.repository_writer writes under the model's ``repository.WARMUP_DIR`` (Triton's rule for input_data_file).
    """
    files = warmup_files(sig)
    inputs = "\n".join(
        f'    inputs {{ key: "{rename.get(t.name, t.name)}" value: {{ data_type: TYPE_{t.dtype} '
        f"dims: {_dims(warmup_shape(sig, t))} "
        + (f'input_data_file: "{warmup_file(t)}"' if warmup_file(t) in files else "zero_data: true") + " } }"
        for t in sig.inputs
    )
    name = "least_batch1" if files else "zeros_batch1"
    return f'model_warmup [\n  {{\n    name: "{name}"\n    batch_size: 1\n{inputs}\n  }}\n]'
