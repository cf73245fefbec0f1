"""Fraction of peak in `ganexport bench`: the work a graph does per image, the GEMM peak, and the row figures.

The work is counted on small ONNX graphs built here, whose multiply-accumulates are worked out by hand
in each test (grouped and strided convolutions, a transposed convolution, batched MatMul, Gemm with a
transposed input), and on a graph whose spatial dims only exist once it runs (a Pad whose pads are
computed from the input's shape, as the translators' wrappers do). No time is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ganexport.benchmarks import report  # noqa: E402
from ganexport.benchmarks.peak import Peak, Peaks, matmul_model  # noqa: E402
from ganexport.benchmarks.work import graph_macs, node_macs, scenario_macs, uncounted_ops  # noqa: E402


def _weights(name: str, shape: tuple[int, ...]):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _save(tmp_path, nodes, inputs, outputs, initializers, name="g.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def test_macs_of_each_counted_op_match_the_hand_count(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 3, 5])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [6, 7])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "up", "qk", "g")]
    nodes = [
        # 4 -> 6 channels in 2 groups, 3x3, stride 2, pad 1: 8x8 -> 4x4; MACs = 1*6*4*4 * (4/2)*3*3
        helper.make_node("Conv", ["x", "w"], ["y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        # 6 -> 5 channels, 2x2 stride 2: every input element feeds 5*2*2 outputs; MACs = 1*6*4*4 * 5*2*2
        helper.make_node("ConvTranspose", ["y", "wt"], ["up"], strides=[2, 2]),
        # [2, 3, 5] @ [5, 4] -> [2, 3, 4]; MACs = 2*3*4 * 5
        helper.make_node("MatMul", ["q", "k"], ["qk"]),
        # transA: v is [K=6, M=7] -> [7, 9]; MACs = 7*9 * 6
        helper.make_node("Gemm", ["v", "b"], ["g"], transA=1),
    ]
    inits = [_weights("w", (6, 2, 3, 3)), _weights("wt", (6, 5, 2, 2)), _weights("k", (5, 4)), _weights("b", (6, 9))]
    path = _save(tmp_path, nodes, [x, q, v], outs, inits)
    want = 6 * 4 * 4 * 2 * 9 + 6 * 4 * 4 * 5 * 4 + 2 * 3 * 4 * 5 + 7 * 9 * 6
    assert graph_macs(path) == want
    assert node_macs("Gemm", {}, (7, 6), (6, 9), (7, 9)) == 7 * 9 * 6


def test_an_einsum_counts_every_index_and_other_heavy_ops_are_named_as_left_out(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 6])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("mixed", "zm", "t", "abc")]
    nodes = [
        # a 1x1 convolution written as an einsum: 3 -> 7 channels over 2x4x5; MACs = 2*7*4*5 * 3
        helper.make_node("Einsum", ["x", "m"], ["mixed"], equation="bchw,dc->bdhw"),
        # an ellipsis and a contraction: [2, 6] x [6, 8]; MACs = 2*8 * 6
        helper.make_node("Einsum", ["z", "n"], ["zm"], equation="...i,ij->...j"),
        helper.make_node("Einsum", ["x"], ["t"], equation="bchw->bhwc"),  # a transpose: no multiplication
        helper.make_node("Einsum", ["z", "n", "p"], ["abc"], equation="bi,ij,jk->bk"),  # three operands: left out
    ]
    inits = [_weights("m", (7, 3)), _weights("n", (6, 8)), _weights("p", (8, 2))]
    path = _save(tmp_path, nodes, [x, z], outs, inits, "einsum.onnx")
    assert graph_macs(path) == 2 * 7 * 4 * 5 * 3 + 2 * 8 * 6
    assert uncounted_ops(path) == ["Einsum"]  # the three-operand one
    plain = _save(tmp_path, nodes[:3], [x, z], outs[:3], inits[:2], "plain.onnx")
    assert uncounted_ops(plain) == []


def test_spatial_dims_known_only_at_run_time_are_counted_at_the_given_side(tmp_path):
    """Pad to a multiple of 4 with pads computed from the input's shape: shape inference loses H and W."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    c = lambda name, value: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(  # noqa: E731
        np.array(value, np.int64), name))
    nodes = [
        c("four", [4]), c("zeros", [0, 0, 0, 0, 0, 0]), c("hw_idx", [2, 3]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "hw_idx"], ["hw"]),
        helper.make_node("Mod", ["hw", "four"], ["rem"]),
        helper.make_node("Sub", ["four", "rem"], ["short"]),
        helper.make_node("Mod", ["short", "four"], ["extra"]),  # 0 when already a multiple
        helper.make_node("Concat", ["zeros", "extra"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["padded"]),
        helper.make_node("Conv", ["padded", "w"], ["y"], pads=[1, 1, 1, 1]),  # 3 -> 8 channels, 3x3, same size
    ]
    path = _save(tmp_path, nodes, [x], [y], [_weights("w", (8, 3, 3, 3))], "pad.onnx")
    assert onnx.shape_inference.infer_shapes(onnx.load(path)).graph.value_info  # inference runs, but:
    for side, padded in ((8, 8), (10, 12), (13, 16)):
        assert graph_macs(path, side) == 8 * padded * padded * 3 * 9, side


def test_a_diffusion_request_costs_its_steps_and_the_guided_twins(diffusion_published):
    from ganexport.repository import MODEL_FILES, latest, read_signature

    repo, _ = diffusion_published
    version = latest(repo, "ddpm")
    sig, path = read_signature(version), version / MODEL_FILES["onnxruntime"]
    one = graph_macs(str(path))
    assert one > 0
    assert scenario_macs(sig, path, steps=10, guidance=1.0) == 10 * one
    assert scenario_macs(sig, path, steps=10, guidance=2.0) == 20 * one  # the unconditional twin of every row


def test_the_peak_gemm_computes_a_matmul_and_reports_gflops():
    import onnxruntime as ort

    a, b = (np.random.default_rng(i).standard_normal((64, 64)).astype(np.float32) for i in range(2))
    session = ort.InferenceSession(matmul_model(64), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"A": a, "B": b})[0], a @ b, rtol=1e-4, atol=1e-4)
    peak = Peak(side=256, threads=1)
    assert peak.gflops(reps=1) > 0 and "256x256 fp32 (CPU, 1 threads)" in peak.label
    assert set(Peaks().measure()) == {"fp32"}  # a CPU machine: no fp16 peak to divide by


def test_rows_get_gflops_and_their_fraction_of_the_peak_of_their_precision():
    key = ("m", 256, None, 1, 2)

    def row(backend, ips, precision=None):
        return {"model": "m", "size": 256, "steps": None, "batch": 1, "concurrency": 2, "backend": backend,
                "images_per_s": ips, "peak_gflops": {"fp32": 100.0, "fp16": 400.0}, "precision": precision,
                "p50_ms": 1.0, "kind": backend}

    rows = report.add_efficiency([row("onnxruntime", 2.0), row("triton-grpc", 3.0, "fp16"), row("x", None)],
                                 {key: 10 * 10**9})
    assert [r["gflop_per_image"] for r in rows] == [20.0, 20.0, 20.0]
    assert [r["gflops"] for r in rows] == [40.0, 60.0, None]
    assert [r["pct_of_peak"] for r in rows] == [40.0, 15.0, None]  # fp16 rows against the fp16 peak
    assert report.add_efficiency([row("a", 1.0)], {})[0]["gflops"] is None  # work unknown: no figure
    line = report.efficiency_lines(rows[:2])[0]
    assert "20 GFLOP/image" in line and "onnxruntime 40 GFLOP/s (40%)" in line
