"""config.pbtxt for one Triton model, derived entirely from its catalog Signature.

Two flavours are written from the same Signature:

- ``embedded`` (default): ``backend: "python"``; the generic model.py loads
  ``model.onnx`` through ONNX Runtime or ``model.pt`` through torch, chosen by
  the config's ``runtime`` and ``model_file`` parameters. This is what the
  tritonserver bundled in nvidia-pytriton can run (it has no native backends).
- ``native``: ``platform: "onnxruntime_onnx"`` (optionally with the TensorRT
  accelerator) or ``platform: "pytorch_libtorch"`` for NVIDIA's Triton
  containers. libtorch names tensors ``<name>__<index>``; ``libtorch_names``
  gives clients the mapping.

The build writes these configs through ganexport.repository_writer.publish, and
``ganexport bench --variant`` rewrites them with other serving knobs. File names
come from ganexport.repository. Only the catalog and the standard library are imported.
"""

from __future__ import annotations

import json
from typing import Mapping

from ganexport.catalog import Signature, TensorSpec
from ganexport.repository import MODEL_FILES, RUNTIMES

FLAVORS = ("embedded", "native")
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


# --------------------------------------------------------------------------- config.pbtxt


def config_pbtxt(sig: Signature, *, flavor: str = "embedded", runtime: str = "onnxruntime",
                 gpu: bool = False, instances: int = 1, tensorrt: bool = False,
                 max_queue_delay_us: int = 0, dynamic_batching: bool = True,
                 ort_options: Mapping[str, object] | None = None) -> str:
    """The config.pbtxt text of one Triton model, derived entirely from ``sig``.

    The serving knobs default to what BENCHMARKS.md measured best on CPU: one
    instance (two gained nothing), dynamic batching with no queue delay (a busy
    instance still collects the requests that queue meanwhile, and a lone request
    is not held back: 1 ms of delay doubled dcgan's p50 at one client). ``ganexport
    bench --variant`` rewrites them to compare alternatives.
    ``ort_options`` (``serving.backends.ORT_OPTIONS`` knobs) become
    ``ort_<knob>`` parameters that the embedded model.py reads.

    Raises ValueError for combinations Triton would reject or silently ignore:
    TensorRT exists only for native ONNX models on GPU instances.
    """
    _check_choice("flavor", flavor, FLAVORS)
    _check_choice("runtime", runtime, RUNTIMES)
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
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
        parts.append(_dynamic_batching(sig, max_queue_delay_us))
    parts.append(f"instance_group [\n  {{ count: {instances} kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }}\n]")
    params = {"signature": json.dumps(sig.for_runtime(runtime).to_dict(), separators=(",", ":"))}
    if flavor == "embedded":
        params.update(runtime=runtime, model_file=MODEL_FILES[runtime])
        params.update({f"ort_{k}": str(v) for k, v in ort_options.items()})
    # The full signature (value ranges, size limits) rides along, so any Triton client can
    # validate a request before sending it: GET /v2/models/<name>/config.
    parts.append(_parameters(params))
    if tensorrt:
        parts.append(_tensorrt_block())
    warmup = _warmup(sig, rename)
    if warmup:
        parts.append(warmup)
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


def _dynamic_batching(sig: Signature, max_queue_delay_us: int) -> str:
    sizes = ", ".join(str(n) for n in preferred_batch_sizes(sig.max_batch_size))
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")


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


def _warmup(sig: Signature, rename: Mapping[str, str]) -> str:
    """One zero-filled batch-1 request so the first real request does not pay for loading.

    zero_data, not random_data: random INT64 labels fall outside the label range
    and fail validation, which fails the model load. Where zero itself is out of
    an input's range there is no warm-up at all.
    """
    if any((t.low is not None and t.low > 0) or (t.high is not None and t.high < 0) for t in sig.inputs):
        return ""
    inputs = "\n".join(
        f'    inputs {{ key: "{rename.get(t.name, t.name)}" value: {{ data_type: TYPE_{t.dtype} '
        f"dims: {_dims(warmup_shape(sig, t))} zero_data: true }} }}"
        for t in sig.inputs
    )
    return f'model_warmup [\n  {{\n    name: "zeros_batch1"\n    batch_size: 1\n{inputs}\n  }}\n]'
