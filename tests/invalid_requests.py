"""One table of invalid requests, derived from each model's Signature, used at every serving layer.

``validate()`` (tests/test_validation.py), the in-process backends (tests/test_serving_local.py) and the
real Triton over HTTP and gRPC (tests/test_triton_clients.py) all refuse the same cases; each case says
which words the one-line refusal must contain. Nothing here names a tensor or a size: they come from the
catalog, so a model added to it is probed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ganexport import catalog

SIGNATURES = {name: sig for name, (_, sig) in catalog.triton_models().items()}


@dataclass(frozen=True)
class Case:
    """An invalid request for ``model``: how to spoil a valid one, and words the refusal must hold."""

    model: str
    name: str
    spoil: Callable[[catalog.Signature, dict[str, np.ndarray]], dict[str, np.ndarray]]
    words: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.model}-{self.name}"

    def inputs(self, sig: catalog.Signature | None = None) -> dict[str, np.ndarray]:
        """The spoilt request for ``sig``: the signature the model was published with (a tiny test net's
        latent is narrower than the catalog's default), or the catalog's."""
        sig = sig or SIGNATURES[self.model]
        return self.spoil(sig, valid_inputs(sig))


# Integer inputs take values from the bottom of their range, at most this many: a class label's whole
# range, but a diffusion model's first few steps (of 1..1000), so its valid requests answer quickly.
SMALL_RANGE = 16


def valid_inputs(sig: catalog.Signature, batch: int = 2, side: int = 16) -> dict[str, np.ndarray]:
    """A request with in-range values and dynamic sides at ``side`` (valid for the default side)."""
    rng = np.random.default_rng(0)
    out = {}
    for t in sig.inputs:
        shape = (batch,) + tuple(side if d == -1 else d for d in t.shape)
        if t.dtype == "FP32" and t.low is not None:  # a setting with a range (guidance, eta)
            out[t.name] = rng.uniform(t.low, t.high, shape).astype(np.float32)
        elif t.dtype == "FP32":
            out[t.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            lo = int(t.low) if t.low is not None else 0
            hi = min(int(t.high) if t.high is not None else 255, lo + SMALL_RANGE - 1)
            out[t.name] = rng.integers(lo, hi + 1, shape).astype(t.numpy_dtype)
    return out


def _with(name: str, make: Callable[[np.ndarray], np.ndarray]):
    def spoil(sig, inputs):
        return {**inputs, name: make(inputs[name].copy())}
    return spoil


def _set(index, value):
    def make(arr):
        arr[index] = value
        return arr
    return make


# An integer input sent as the other integer width: a client's easiest mistake (numpy's default is int64).
INTEGER_TWINS = {"INT64": "INT32", "INT32": "INT64"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _cases_for(model: str, sig: catalog.Signature) -> list[Case]:
    cases = []
    first = sig.inputs[0]
    batch_words = ("batch",)
    cases.append(Case(model, "empty_batch", lambda s, i: {k: v[:0] for k, v in i.items()}, batch_words))
    cases.append(Case(model, "batch_above_max", lambda s, i: {
        k: np.repeat(v[:1], s.max_batch_size + 1, axis=0) for k, v in i.items()}, (str(sig.max_batch_size),)))
    cases.append(Case(model, "missing_input", lambda s, i: {k: v for k, v in i.items() if k != first.name},
                      (first.name,)))
    for t in sig.inputs:
        if t.dtype == "FP32":
            cases.append(Case(model, f"{t.name}_nan", _with(t.name, _set((0, 0), np.nan)), (t.name, "finite")))
            cases.append(Case(model, f"{t.name}_inf", _with(t.name, _set((-1, -1), np.inf)), (t.name, "finite")))
            if -1 not in t.shape:
                cases.append(Case(model, f"{t.name}_wrong_size",
                                  _with(t.name, lambda a: np.concatenate([a, a[:, :1]], axis=1)), (t.name,)))
        if t.dtype in INTEGER_TWINS and t.low is not None:
            cases.append(Case(model, f"{t.name}_above_range", _with(t.name, _set((0, 0), int(t.high) + 1)),
                              (t.name, str(int(t.high)))))
            cases.append(Case(model, f"{t.name}_below_range", _with(t.name, _set((0, 0), int(t.low) - 1)),
                              (t.name,)))
            twin = INTEGER_TWINS[t.dtype]
            cases.append(Case(model, f"{t.name}_{twin.lower()}", _with(t.name, lambda a, d=twin: a.astype(d.lower())),
                              (t.name, t.dtype)))
        if t.dtype == "FP32" and t.high is not None:
            cases.append(Case(model, f"{t.name}_above_range", _with(t.name, _set((0, 0), t.high + 1)),
                              (t.name, _num(t.high))))
        if -1 in t.shape and sig.min_image_side:
            small = sig.min_image_side - 1
            cases.append(Case(model, f"{t.name}_below_min_side",
                              _with(t.name, lambda a, n=small: a[:, :n, :n]), (str(sig.min_image_side),)))
        if -1 in t.shape and sig.max_image_side:
            big = sig.max_image_side + 1
            cases.append(Case(model, f"{t.name}_above_max_side",
                              _with(t.name, lambda a, n=big: np.zeros((a.shape[0], n, 16, a.shape[-1]), a.dtype)),
                              (str(sig.max_image_side),)))
        if t.shape and t.shape[-1] in (1, 3) and -1 in t.shape:
            cases.append(Case(model, f"{t.name}_wrong_channels",
                              _with(t.name, lambda a: np.concatenate([a, a[..., :1]], axis=-1)), (t.name,)))
    return cases


def through_api(backend, model: str, inputs: dict[str, np.ndarray]):
    """The request through the Backend API (sample / translate / diffuse / encode / edit), as ``infer`` and the
    demo send it."""
    sig = backend.metadata(model)
    if sig.kind == "translate":
        return backend.translate(model, inputs.get(sig.inputs[0].name))
    if sig.kind == "diffuse":
        return backend.diffuse(model, *(inputs.get(t.name) for t in sig.inputs))
    if sig.kind == "encode":
        return backend.encode(model, inputs.get(sig.inputs[0].name))
    if sig.kind == "edit":
        return backend.edit(model, *(inputs.get(t.name) for t in sig.inputs))
    label = inputs.get(sig.inputs[1].name) if len(sig.inputs) > 1 else None
    return backend.sample(model, inputs.get(sig.inputs[0].name), label)


def cases(models: tuple[str, ...] | None = None) -> list[Case]:
    """Every invalid case of every served model (or of ``models``)."""
    return [c for m, sig in SIGNATURES.items() if models is None or m in models for c in _cases_for(m, sig)]


def base_models() -> tuple[str, ...]:
    """The served models without their _torchscript twins (same signature, same refusals)."""
    twins = tuple(s for s in catalog.RUNTIME_SUFFIX.values() if s)
    return tuple(m for m in SIGNATURES if not m.endswith(twins))
