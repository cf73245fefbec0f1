"""ONNX export with the torch.export-based exporter, checked before it is trusted.

One self-contained file (no external data), opset 18 or newer, a dynamic
batch axis and, for translators, dynamic height and width. Input and output
names and the dynamic axes come from the catalog's Signature.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ganexport import catalog
from ganexport.export import wrappers

DEFAULT_OPSET = 18

# The exporter logs one warning per torchvision operator it could register ("torchvision is not
# installed. Skipping torchvision::nms", eight per export); our nets use none of them.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
# A module torch.export cannot follow (data-dependent control flow) makes it warn about each unbacked symbol
# before it raises; the build says what went wrong in one line (``reason``).
logging.getLogger("torch.fx.experimental.symbolic_shapes").setLevel(logging.ERROR)


class ExportError(Exception):
    """Export failed or produced a model that does not check; the message names the model."""


def dynamic_shapes(sig: catalog.Signature) -> tuple[dict[int, torch.export.Dim], ...]:
    """torch.export Dims for every input, from the signature's -1 dims (batch always dynamic)."""
    batch = torch.export.Dim("batch", min=1, max=sig.max_batch_size)
    shapes = []
    for t in sig.inputs:
        dims = {0: batch}
        for axis in t.dynamic_axes[1:]:
            side = "height" if axis == 1 else "width"
            dims[axis] = torch.export.Dim(side, min=sig.min_image_side or 1, max=sig.max_image_side or 4096)
        shapes.append(dims)
    return tuple(shapes)


def reason(e: BaseException) -> str:
    """The first line of the innermost cause: the exporter wraps what went wrong ("Could not guard on
    data-dependent expression ...", a missing operator) in a page of generic advice."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def export_onnx(module: nn.Module, sig: catalog.Signature, example: tuple[torch.Tensor, ...], path: Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module`` (a serving wrapper) and check the result.

    A file whose output is a uint8 image keeps the float it rounds inside it, under the name
    ``wrappers.FLOAT_OUTPUT``: the export takes it as a second output (``wrappers.WithFloat``), which is then
    dropped from the outputs, its type kept in the graph's value_info, so parity reads it from the published
    file itself (``exposing_float``) without a second export (one export is most of a build's time).
    """
    path = Path(path)
    rounded = wrappers.rounds_to_uint8(sig)
    # torch.export prints the partial graph of a module it cannot follow to stderr before raising: a page
    # the one-line reason (``reason``) says better
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                (wrappers.WithFloat(module) if rounded else module).eval(), example, dynamo=True,
                opset_version=opset, external_data=False, input_names=[t.name for t in sig.inputs],
                output_names=[t.name for t in sig.outputs] + ([wrappers.FLOAT_OUTPUT] if rounded else []),
                dynamic_shapes=dynamic_shapes(sig), verbose=False, report=False,
            )
        except Exception as e:  # the exporter raises many types; the user needs the model name and the reason
            raise ExportError(f"{sig.name}: ONNX export failed: {reason(e)}") from e
    model = program.model_proto  # what program.save writes, edited before it is written once
    if rounded:
        kept = [o for o in model.graph.output if o.name != wrappers.FLOAT_OUTPUT]
        model.graph.value_info.extend(o for o in model.graph.output if o.name == wrappers.FLOAT_OUTPUT)
        del model.graph.output[:]
        model.graph.output.extend(kept)
    onnx.save(model, str(path))
    check(path, sig, opset)
    return path


def exposing_float(path: Path) -> bytes:
    """The ONNX file at ``path`` (``export_onnx``'s, with a uint8 output) with the float it rounds as a second
    output, serialized for ``onnxruntime.InferenceSession``: the published graph and weights, one output more."""
    model = onnx.load(str(path))
    found = [v for v in model.graph.value_info if v.name == wrappers.FLOAT_OUTPUT]
    if not found:
        raise ExportError(f"{Path(path).name} has no value named {wrappers.FLOAT_OUTPUT!r} (not exported by "
                          "this version of ganexport?)")
    model.graph.output.append(found[0])
    return model.SerializeToString()


def holds_float(path: Path) -> bool:
    """Whether the ONNX file at ``path`` holds the float its uint8 output rounds, as ``export_onnx`` leaves it
    (files from earlier ganexport versions lack it; an encoder's output is its float and has none)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return any(v.name == wrappers.FLOAT_OUTPUT for v in graph.value_info)


def check(path: Path, sig: catalog.Signature, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """onnx.checker with full_check, the opset we asked for, and the signature's names."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{sig.name}: {path.name} fails onnx.checker: {str(e).splitlines()[0]}") from None
    got = {o.domain: o.version for o in model.opset_import}.get("", None)
    if got != opset:
        raise ExportError(f"{sig.name}: asked for opset {opset}, the exporter produced opset {got}")
    names = [i.name for i in model.graph.input]
    if names != [t.name for t in sig.inputs]:
        raise ExportError(f"{sig.name}: ONNX inputs {names} differ from the signature's")
    return model
