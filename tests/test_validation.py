"""serving/validation.py: every request is checked against the catalog signature.

Inputs are built from each Signature (names, dtypes, shapes, ranges); no tensor
name or shape is typed here.
"""

from __future__ import annotations

import numpy as np
import pytest

import invalid_requests
from ganexport import catalog
from ganexport.serving.validation import InvalidInput, request_bytes_limit, validate

SIGS = {name: sig for name, (_, sig) in catalog.triton_models().items()}


def _of(pred) -> catalog.Signature:
    """The first catalog signature with some property, so tests follow the catalog."""
    found = [s for s in SIGS.values() if pred(s)]
    assert found, "the catalog has no signature with this property"
    return found[0]


def _ranged_int(sig):
    """(spec) of an integer input with a declared range narrower than its dtype: a class label."""
    return next((t for t in sig.inputs if t.dtype == "INT64" and t.low is not None), None)


def _float(sig):
    return next((t for t in sig.inputs if t.dtype == "FP32"), None)


def _dynamic(sig):
    return next((t for t in sig.inputs if -1 in t.shape), None)


LABELLED = _of(lambda s: _ranged_int(s) is not None)
FLOAT = _of(lambda s: _float(s) is not None)
TRANSLATOR = _of(lambda s: _dynamic(s) is not None and s.min_image_side and s.max_image_side)
MULTI = _of(lambda s: len(s.inputs) > 1)


make_inputs = invalid_requests.valid_inputs  # a valid request: in-range values, dynamic sides at 16


def refused(sig, inputs, *fragments: str) -> str:
    """validate() must raise one line mentioning every fragment."""
    with pytest.raises(InvalidInput) as info:
        validate(sig, inputs)
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- the shared table


@pytest.mark.parametrize("case", invalid_requests.cases(), ids=lambda c: c.id)
def test_every_invalid_request_of_the_shared_table_is_refused_in_one_line(case):
    refused(SIGS[case.model], case.inputs(), *case.words)


# --------------------------------------------------------------------------- valid requests


@pytest.mark.parametrize("name", sorted(SIGS))
def test_valid_inputs_pass(name):
    sig = SIGS[name]
    validate(sig, make_inputs(sig, batch=1))
    validate(sig, make_inputs(sig, batch=sig.max_batch_size))


def test_translator_accepts_odd_non_square_sizes_within_limits():
    sig = TRANSLATOR
    spec = _dynamic(sig)
    for h, w in [(sig.min_image_side, sig.min_image_side), (333, 250), (sig.max_image_side, 9)]:
        img = np.zeros((1,) + tuple({0: h, 1: w}.get(i, d) for i, d in enumerate(spec.shape)), np.uint8)
        validate(sig, {spec.name: img})


def test_invalid_input_is_a_value_error():
    assert issubclass(InvalidInput, ValueError)


# --------------------------------------------------------------------------- names


def test_missing_input():
    sig = MULTI
    inputs = make_inputs(sig)
    gone = sig.inputs[-1].name
    del inputs[gone]
    refused(sig, inputs, "missing", repr(gone))


def test_unknown_input():
    sig = FLOAT
    inputs = make_inputs(sig)
    inputs["not_" + sig.inputs[0].name] = inputs[sig.inputs[0].name]
    refused(sig, inputs, "unknown", "not_" + sig.inputs[0].name)


# --------------------------------------------------------------------------- dtype, rank, dims


def test_wrong_dtype_says_expected_and_got():
    sig = FLOAT
    spec = _float(sig)
    inputs = make_inputs(sig)
    inputs[spec.name] = inputs[spec.name].astype(np.float64)
    refused(sig, inputs, spec.name, "float64", "expected float32")


def test_int32_labels_are_refused():
    sig = LABELLED
    spec = _ranged_int(sig)
    inputs = make_inputs(sig)
    inputs[spec.name] = inputs[spec.name].astype(np.int32)
    refused(sig, inputs, spec.name, "int32", "expected int64")


def test_not_an_array():
    sig = FLOAT
    inputs = make_inputs(sig)
    inputs[sig.inputs[0].name] = inputs[sig.inputs[0].name].tolist()
    refused(sig, inputs, "numpy array", "list")


def test_wrong_rank_missing_batch_dim():
    sig = FLOAT
    spec = _float(sig)
    inputs = make_inputs(sig, batch=1)
    inputs[spec.name] = inputs[spec.name][0]
    refused(sig, inputs, spec.name, f"expected rank {len(spec.shape) + 1}")


def test_fixed_dim_mismatch():
    sig = FLOAT
    spec = _float(sig)
    fixed_axis = next(i for i, d in enumerate(spec.shape) if d != -1)
    inputs = make_inputs(sig)
    arr = inputs[spec.name]
    inputs[spec.name] = np.concatenate([arr, arr[..., :1]], axis=fixed_axis + 1)
    refused(sig, inputs, spec.name, f"dim {fixed_axis + 1} must be {spec.shape[fixed_axis]}")


def test_translator_channel_mismatch():
    sig = TRANSLATOR
    spec = _dynamic(sig)
    channels = spec.shape[-1]
    inputs = {spec.name: np.zeros((1, 16, 16, channels + 1), np.uint8)}
    refused(sig, inputs, f"must be {channels}")


# --------------------------------------------------------------------------- batch


@pytest.mark.parametrize("name", sorted(SIGS))
def test_empty_batch(name):
    sig = SIGS[name]
    refused(sig, make_inputs(sig, batch=0), "empty batch")


@pytest.mark.parametrize("name", sorted(SIGS))
def test_batch_above_max(name):
    sig = SIGS[name]
    refused(sig, make_inputs(sig, batch=sig.max_batch_size + 1), "max_batch_size", str(sig.max_batch_size))


def test_batch_sizes_disagree():
    sig = MULTI
    inputs = make_inputs(sig, batch=3)
    last = sig.inputs[-1].name
    inputs[last] = inputs[last][:2]
    refused(sig, inputs, "disagree", "3", "2")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("delta", [-1, +1])
def test_label_out_of_range(delta):
    sig = LABELLED
    spec = _ranged_int(sig)
    inputs = make_inputs(sig)
    bad = int(spec.low) - 1 if delta < 0 else int(spec.high) + 1
    inputs[spec.name][0] = bad
    refused(sig, inputs, spec.name, f"[{int(spec.low)}, {int(spec.high)}]", str(bad))


def test_label_range_bounds_are_inclusive():
    sig = LABELLED
    spec = _ranged_int(sig)
    inputs = make_inputs(sig, batch=2)
    inputs[spec.name][0], inputs[spec.name][1] = int(spec.low), int(spec.high)
    validate(sig, inputs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats(bad):
    sig = FLOAT
    spec = _float(sig)
    inputs = make_inputs(sig)
    inputs[spec.name].flat[3] = bad
    refused(sig, inputs, spec.name, "NaN or infinite")


def test_image_side_below_minimum_names_the_limit():
    sig = TRANSLATOR
    inputs = make_inputs(sig, batch=1, side=sig.min_image_side - 1)
    refused(sig, inputs, "below", str(sig.min_image_side))


def test_image_side_above_maximum_names_the_limit():
    sig = TRANSLATOR
    spec = _dynamic(sig)
    img = np.zeros((1, 16, sig.max_image_side + 1, spec.shape[-1]), np.uint8)
    refused(sig, {spec.name: img}, "width", "above", str(sig.max_image_side))


# --------------------------------------------------------------------------- size bound


@pytest.mark.parametrize("name", sorted(SIGS))
def test_request_bytes_limit_covers_the_largest_valid_request(name):
    sig = SIGS[name]
    largest = make_inputs(sig, batch=sig.max_batch_size, side=sig.max_image_side or 1)
    validate(sig, largest)
    assert request_bytes_limit(sig) == sum(a.nbytes for a in largest.values())
