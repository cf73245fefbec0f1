"""Check a request against its model's Signature before any kernel sees it.

Runtimes fail badly on bad input: ONNX Runtime silently maps a cGAN label of
-1 to class 9, refuses int32 labels with a long stack trace, and CycleGAN's
reflection padding crashes on images below 8x8. Every serving path (the Triton
Python-backend model, in-process backends, clients) calls ``validate`` first so
the caller gets one clear line instead, and Triton can answer with a 4xx.

Pure numpy: this module is imported inside Triton's Python-backend stub, where
neither torch nor tritonclient is wanted. Shapes here include the batch dim
first; the Signature's shapes exclude it (Triton's max_batch_size convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ganexport.catalog import Signature, TensorSpec


class InvalidInput(ValueError):
    """A request that does not match the model's signature; the message is one line."""


def validate(sig: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Raise ``InvalidInput`` unless ``inputs`` is exactly what ``sig`` accepts.

    Cheap checks (names, dtypes, shapes, sizes) run before the ones that scan
    values, so an oversized request is refused without being read.
    """
    _check_names(sig, inputs)
    for spec in sig.inputs:
        if not isinstance(inputs[spec.name], np.ndarray):
            raise InvalidInput(f"{sig.name}: input {spec.name!r} must be a numpy array, "
                               f"got {type(inputs[spec.name]).__name__}")
        _check_layout(sig, spec, inputs[spec.name])
    _check_same_batch(sig, inputs)
    for spec in sig.inputs:
        _check_image_sides(sig, spec, inputs[spec.name])
    for spec in sig.inputs:
        _check_values(sig, spec, inputs[spec.name])


@dataclass(frozen=True)
class Declared:
    """What a request says about one input before any of its data is read: Triton datatype and shape
    (batch dim first), and how much data it carries: ``nbytes`` for raw bytes, ``count`` for values."""

    datatype: str
    shape: tuple[int, ...]
    nbytes: int | None = None
    count: int | None = None


class _Layout:
    """A declared tensor with the dtype/shape/ndim an array would have, so the array checks apply to it."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]):
        self.dtype, self.shape, self.ndim = dtype, shape, len(shape)


def validate_declared(sig: Signature, declared: Mapping[str, Declared]) -> None:
    """Raise ``InvalidInput`` unless the declared names, datatypes and shapes are what ``sig`` accepts and
    the data carried is exactly what the shape needs.

    For a front door that sees a request before the server allocates anything for it: a declared shape
    of [100000, 256, 256, 3] in a 120-byte body, a dim of 2^62 whose byte size wraps to 0, or a negative
    dim is refused here, by arithmetic on the declaration, so it never reaches the server.
    """
    _check_names(sig, declared)
    for spec in sig.inputs:
        d = declared[spec.name]
        if d.datatype != spec.dtype:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} has datatype {d.datatype}, expected {spec.dtype}")
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in d.shape):
            raise InvalidInput(f"{sig.name}: input {spec.name!r} has shape {list(d.shape)}: "
                               "dims must be non-negative integers")
        layout = _Layout(np.dtype(spec.numpy_dtype), tuple(d.shape))
        _check_layout(sig, spec, layout)
        _check_image_sides(sig, spec, layout)
    _check_same_batch(sig, {name: _Layout(None, tuple(d.shape)) for name, d in declared.items()})
    for spec in sig.inputs:
        d = declared[spec.name]
        count = math.prod(d.shape)  # exact (Python ints); numpy takes ~40x longer for a short tuple
        need = count * np.dtype(spec.numpy_dtype).itemsize
        if d.nbytes is None and d.count is None:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} carries no data")
        if d.nbytes is not None and d.nbytes != need:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} of shape {list(d.shape)} needs {need} bytes, "
                               f"the request carries {d.nbytes}")
        if d.count is not None and d.count != count:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} of shape {list(d.shape)} needs {count} values, "
                               f"the request carries {d.count}")


def check_json_values(sig: Signature, name: str, values: np.ndarray) -> None:
    """Values sent as JSON numbers must fit the input's dtype: 300 for a UINT8 input is refused, where a
    server that converts first would wrap it to 44; and integer inputs take only integers."""
    spec = sig.input(name)
    want = np.dtype(spec.numpy_dtype)
    if values.size == 0 or not np.issubdtype(want, np.integer):
        return
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        raise InvalidInput(f"{sig.name}: input {name!r} is {spec.dtype}: its JSON data must be integers")
    info = np.iinfo(want)
    lo, hi = values.min(), values.max()
    if lo < info.min or hi > info.max:
        raise InvalidInput(f"{sig.name}: input {name!r} is {spec.dtype}: JSON values must lie in "
                           f"[{info.min}, {info.max}] (min {lo}, max {hi})")


def diffusion_request(sig: Signature, noise: np.ndarray, label, steps, guidance, eta) -> dict[str, np.ndarray]:
    """The inputs of a "diffuse" request from what a caller hands ``Backend.diffuse``, not yet validated.

    Arrays pass as they are (``validate`` then holds them to the signature's dtypes, as it holds
    ``sample``'s), but a label or setting of shape [N] becomes [N, 1]. A scalar setting (steps 25,
    guidance 2.0) is the same for every row; a scalar label too, and None is the "no class" label (the only
    label of a model that takes none; refused for a class-conditional model without a "no class" label).
    A scalar is range-checked before it takes the input's dtype, so 2**40 steps is refused, not wrapped.
    """
    noise = np.asarray(noise)
    n = noise.shape[0] if noise.ndim else 1
    specs = sig.diffusion_inputs()  # noise, label (None: the model takes no class), steps, guidance, eta
    if specs[1] is None:
        if label is not None:
            raise InvalidInput(f"{sig.name}: takes no label (an unconditional model)")
    elif label is None:
        label = sig.diffusion["null_label"]
        if label is None:
            raise InvalidInput(f"{sig.name}: needs a label ({specs[1].doc}); it has no 'no class' label")
    given = zip(specs, (noise, label, steps, guidance, eta))
    return {spec.name: value if spec is specs[0] else _column(sig, spec, value, n) for spec, value in given
            if spec is not None}


def _column(sig: Signature, spec: TensorSpec, value, n: int) -> np.ndarray:
    """One [N, 1] input from a scalar (broadcast, range-checked, cast) or an array ([N] -> [N, 1])."""
    arr = np.asarray(value)
    if arr.ndim == 1 and spec.shape == (1,):
        return arr[:, None]
    if arr.ndim:
        return arr
    want = np.dtype(spec.numpy_dtype)
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{sig.name}: input {spec.name!r} must be a number, got {value!r}")
    if np.issubdtype(want, np.integer) and not (np.issubdtype(arr.dtype, np.integer) or float(arr).is_integer()):
        raise InvalidInput(f"{sig.name}: input {spec.name!r} must be an integer, got {value!r}")
    column = np.full((n, *spec.shape), arr, np.float64 if np.issubdtype(arr.dtype, np.floating) else np.int64)
    if column.size:  # an empty batch is validate()'s to refuse
        _check_values(sig, spec, column)
    return column.astype(want)


def max_values(sig: Signature, spec: TensorSpec) -> int:
    """How many values the largest valid request carries for one input: the batch at
    ``sig.max_batch_size``, dynamic dims at ``sig.max_image_side`` (or 1 when the signature sets none)."""
    n = sig.max_batch_size
    for d in spec.shape:
        n *= d if d != -1 else (sig.max_image_side or 1)
    return n


def request_bytes_limit(sig: Signature) -> int:
    """Largest valid request in bytes (``max_values`` of each input): a bound for HTTP/gRPC message sizes."""
    return sum(max_values(sig, spec) * np.dtype(spec.numpy_dtype).itemsize for spec in sig.inputs)


# --------------------------------------------------------------------------- checks


def _expected(spec: TensorSpec) -> str:
    """Shape as a reader writes it: ``[batch, H, W, 3]`` style, -1 shown as '?'."""
    return "[" + ", ".join(["batch"] + [str(d) if d != -1 else "?" for d in spec.shape]) + "]"


def _check_names(sig: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    expected = [t.name for t in sig.inputs]
    for name in expected:
        if name not in inputs:
            raise InvalidInput(f"{sig.name}: missing input {name!r} (expected inputs: {', '.join(expected)})")
    for name in inputs:
        if name not in expected:
            raise InvalidInput(f"{sig.name}: unknown input {name!r} (expected inputs: {', '.join(expected)})")


def _check_layout(sig: Signature, spec: TensorSpec, arr: np.ndarray) -> None:
    """dtype, rank, fixed dims and batch size of one tensor."""
    want = np.dtype(spec.numpy_dtype)
    if arr.dtype != want:
        raise InvalidInput(f"{sig.name}: input {spec.name!r} has dtype {arr.dtype}, expected {want} ({spec.dtype})")
    if arr.ndim != len(spec.shape) + 1:
        raise InvalidInput(f"{sig.name}: input {spec.name!r} has shape {tuple(arr.shape)} (rank {arr.ndim}), "
                           f"expected rank {len(spec.shape) + 1}: {_expected(spec)}")
    for axis, (got, dim) in enumerate(zip(arr.shape[1:], spec.shape), start=1):
        if dim != -1 and got != dim:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} has shape {tuple(arr.shape)}, "
                               f"dim {axis} must be {dim} (expected {_expected(spec)})")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{sig.name}: input {spec.name!r} is an empty batch (batch size 0)")
    if arr.shape[0] > sig.max_batch_size:
        raise InvalidInput(f"{sig.name}: input {spec.name!r} has batch size {arr.shape[0]}, "
                           f"above max_batch_size {sig.max_batch_size}")


def _check_same_batch(sig: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    sizes = {spec.name: inputs[spec.name].shape[0] for spec in sig.inputs}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{name} has {n}" for name, n in sizes.items())
        raise InvalidInput(f"{sig.name}: inputs disagree on batch size: {detail}")


def _side_names(spec: TensorSpec) -> list[tuple[int, str]]:
    """(axis incl. batch, label) of each dynamic dim: height/width for HWC images."""
    axes = [i + 1 for i, d in enumerate(spec.shape) if d == -1]
    labels = ["height", "width"] if len(axes) == 2 else [f"dim {a}" for a in axes]
    return list(zip(axes, labels))


def _check_image_sides(sig: Signature, spec: TensorSpec, arr: np.ndarray) -> None:
    """Dynamic dims are image sides; keep them where the exported graph works."""
    for axis, label in _side_names(spec):
        side = arr.shape[axis]
        if sig.min_image_side is not None and side < sig.min_image_side:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} image {label} {side} is below "
                               f"the minimum side {sig.min_image_side}")
        if sig.max_image_side is not None and side > sig.max_image_side:
            raise InvalidInput(f"{sig.name}: input {spec.name!r} image {label} {side} is above "
                               f"the maximum side {sig.max_image_side}")


def _check_values(sig: Signature, spec: TensorSpec, arr: np.ndarray) -> None:
    """Finite floats, and values inside the declared [low, high] range (labels)."""
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InvalidInput(f"{sig.name}: input {spec.name!r} contains NaN or infinite values")
    if spec.low is None and spec.high is None:
        return
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        if (spec.low is None or spec.low <= info.min) and (spec.high is None or spec.high >= info.max):
            return  # the dtype itself enforces the range (uint8 images)
    lo, hi = arr.min(), arr.max()
    if (spec.low is not None and lo < spec.low) or (spec.high is not None and hi > spec.high):
        why = f": {spec.doc}" if spec.low == spec.high else ""  # a fixed value (guidance 1 alone) says why
        raise InvalidInput(f"{sig.name}: input {spec.name!r} has values outside [{_num(spec.low)}, {_num(spec.high)}] "
                           f"(min {lo}, max {hi}){why}")


def _num(x: float | None) -> str:
    """9.0 -> '9' so label ranges read as integers."""
    if x is None:
        return "any"
    return str(int(x)) if float(x).is_integer() else str(x)
