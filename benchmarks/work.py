"""Work per image: the multiply-accumulates (MACs) of a published ONNX graph's convolutions and matrix
products, at the size a scenario sends, so a throughput reads as GFLOP/s and as a fraction of the peak.

Only Conv, ConvTranspose, MatMul, Gemm and two-operand Einsum are counted: they are where the time of
every net here goes (normalisation, activations, padding and the uint8 conversion are memory-bound and a
few percent of the arithmetic). A graph holding other arithmetic-heavy ops (quantised convolutions and
matrix products, attention, an Einsum of three operands) gets a note saying they are left out
(``uncounted_ops``). One MAC is two floating-point operations.

The shapes come from the graph itself, run once. ONNX shape inference alone cannot give them: the
translators pad their input to the net's multiple with pads computed from the input's shape, and both
onnx's inference and ONNX Runtime's symbolic one lose every spatial dim after that Pad. So a copy of the
graph gets a ``Shape`` node on each input and output of every counted node, and ONNX Runtime runs it
once on zeros at batch 1 and the scenario's image side: the shapes are then exact for that size, with
the memory of one ordinary run. The count per node:

- Conv: output elements x (input channels per group x kernel area), from the weight [Cout, Cin/g, k...];
- ConvTranspose: input elements x (output channels per group x kernel area), from the weight [Cin, Cout/g, k...];
- MatMul: output elements x the shared dimension; Gemm: M x N x K;
- Einsum of two operands: the product of the sizes of every index of its equation (each output element
  sums over the indices the output lacks).

A diffusion model's file is its denoiser: one image costs ``steps`` denoiser runs, twice the rows when
classifier-free guidance runs the unconditional twin (``scenario_macs``). Needs the ``onnx`` package
(the train extra); where it is missing, bench rows carry no GFLOP/s.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum")
# Ops that do a net's arithmetic but are not counted: where a graph has them, its GFLOP/s says so.
UNCOUNTED = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "MatMulNBits", "Attention",
             "MultiHeadAttention", "GroupQueryAttention", "FusedConv", "FusedMatMul", "FusedGemm")
ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


class WorkError(RuntimeError):
    """The graph's work cannot be counted (no onnx package, an input without a size); one line."""


@lru_cache(maxsize=64)
def graph_macs(path: str, side: int | None = None) -> int:
    """MACs of one run of the ONNX file at ``path`` at batch 1; ``side`` fills every other dynamic dim
    (a translator's height and width). Cached: a bench asks once per model and size."""
    try:
        import onnx
    except ImportError:
        raise WorkError("counting work needs the onnx package (pip install onnx)") from None
    import onnxruntime as ort

    model = onnx.load(path)
    graph = model.graph
    probes = []  # (op, attributes, [probe output names: inputs..., output])
    for k, node in enumerate(list(graph.node)):
        if node.op_type not in COUNTED or node.domain not in ("", "ai.onnx") or not _two_operands(node):
            continue
        names = []
        for j, tensor in enumerate([*node.input[:2], node.output[0]]):
            probe = f"__work_shape_{k}_{j}"
            graph.node.append(onnx.helper.make_node("Shape", [tensor], [probe]))
            graph.output.append(onnx.helper.make_tensor_value_info(probe, onnx.TensorProto.INT64, [None]))
            names.append(probe)
        probes.append((node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}, names))
    if not probes:
        return 0
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros(_concrete(i, side), ORT_DTYPES[i.type]) for i in session.get_inputs()}
    wanted = [name for _, _, names in probes for name in names]
    shapes = dict(zip(wanted, (tuple(int(d) for d in s) for s in session.run(wanted, feeds))))
    return sum(node_macs(op, attrs, *(shapes[n] for n in names)) for op, attrs, names in probes)


def _two_operands(node) -> bool:
    """Every counted op reads its first two inputs; an Einsum of one operand (a transpose, a trace) does no
    multiplication, and one of three or more is not counted (``uncounted_ops`` names it)."""
    return node.op_type != "Einsum" or len(node.input) == 2


def uncounted_ops(path: str) -> list[str]:
    """The arithmetic-heavy op types of the ONNX file at ``path`` that ``graph_macs`` leaves out."""
    import onnx

    found = {node.op_type for node in onnx.load(path, load_external_data=False).graph.node
             if node.op_type in UNCOUNTED or (node.op_type == "Einsum" and len(node.input) > 2)}
    return sorted(found)


def einsum_macs(equation: str, a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """MACs of a two-operand ``equation`` ("bi,ij->bj", "...c,dc->...d"): the product of every index's size,
    the dims an ellipsis covers included (broadcast: the larger size)."""
    terms = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, (a, b)):
        letters = term.replace("...", "")
        covered = len(shape) - len(letters)
        named = [f"...{covered - k}" for k in range(covered)]  # right-aligned, as broadcasting aligns them
        at = term.find("...")
        labels = list(letters) if at < 0 else [*term[:at], *named, *term[at + 3:]]
        for label, size in zip(labels, shape):
            sizes[label] = max(sizes.get(label, 1), int(size))
    return math.prod(sizes.values())


def _concrete(graph_input, side: int | None) -> tuple[int, ...]:
    """A graph input's shape at batch 1 and image side ``side``."""
    dims = []
    for k, d in enumerate(graph_input.shape):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif k == 0:
            dims.append(1)
        elif side is None:
            raise WorkError(f"input {graph_input.name!r} has a dynamic dim {d!r}: give the image side")
        else:
            dims.append(side)
    return tuple(dims)


def node_macs(op: str, attrs: dict, a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> int:
    """MACs of one counted node from its first two inputs' shapes and its output's."""
    if op == "Conv":
        return math.prod(out) * math.prod(b[1:])
    if op == "ConvTranspose":
        return math.prod(a) * math.prod(b[1:])
    if op == "MatMul":
        return math.prod(out) * a[-1]
    if op == "Gemm":
        return math.prod(out) * (a[0] if attrs.get("transA") else a[-1])
    if op == "Einsum":
        equation = attrs["equation"]
        return einsum_macs(equation.decode() if isinstance(equation, bytes) else equation, a, b)
    raise ValueError(f"{op} is not a counted op")


def scenario_macs(sig, onnx_path: str | Path, side: int | None = None, steps: int | None = None,
                  guidance: float = 1.0) -> int:
    """MACs per image of one request as the bench sends it: one run of the file, or for a diffusion model
    ``steps`` runs of its denoiser, on twice the rows when guidance runs the unconditional twin."""
    macs = graph_macs(str(onnx_path), side if sig.kind == "translate" else None)
    if sig.kind != "diffuse":
        return macs
    label = sig.diffusion_inputs()[1]
    twins = 2 if label is not None and guidance != 1.0 else 1
    return macs * int(steps or 1) * twins


def plan_macs(repository: Path, signatures: dict, plan: list) -> tuple[dict[tuple, int], list[str]]:
    """MACs per image of every scenario of a bench plan (keyed like report.scenario_key), from each model's
    published model.onnx; and a note for each model whose work could not be counted."""
    from ganexport.benchmarks.report import scenario_key
    from ganexport.benchmarks.runner import guidance_sent
    from ganexport.repository import MODEL_FILES, latest

    found, notes, failed, looked = {}, [], set(), set()  # failed: not tried again; looked: its ops listed once
    for sc in plan:
        sig = signatures[sc.model]
        key = scenario_key(vars(sc))
        if key in found or sc.model in failed:
            continue
        version = latest(Path(repository), sc.model)
        if version is None:
            notes.append(f"{sc.model}: no GFLOP/s (not published in {repository})")
            failed.add(sc.model)
            continue
        path = version / MODEL_FILES["onnxruntime"]
        try:
            found[key] = scenario_macs(sig, path, sc.size, sc.steps,
                                       guidance_sent(sig) if sig.kind == "diffuse" else 1.0)
            left_out = [] if sc.model in looked else uncounted_ops(str(path))  # one read of the file per model
        except (WorkError, OSError) as e:
            notes.append(f"{sc.model}: no GFLOP/s ({e})")
            failed.add(sc.model)
            continue
        looked.add(sc.model)
        if left_out:
            notes.append(f"{sc.model}: GFLOP/s leaves out its {', '.join(left_out)} (only Conv, ConvTranspose, "
                         "MatMul, Gemm and two-operand Einsum are counted): a low figure")
    return found, notes
