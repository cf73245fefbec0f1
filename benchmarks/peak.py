"""The machine's practical peak, measured in the bench's own process: a large GEMM in ONNX Runtime.

A fraction of peak needs a peak that saw the same machine as the rows. On a shared machine the
available CPU drifts by tens of percent within a minute, so the bench measures the peak again in every
round of every scenario, beside the rows (runner.measure), and divides each row by the best its
scenario's rounds saw. It is a practical peak, not an upper bound: a convolution whose tiles stay in
cache can run a little faster than a 2048^2 GEMM, so a row can show slightly above 100%.

Why ONNX Runtime's MatMul: it is the kernel library (MLAS on CPU, cuBLAS through the CUDA execution
provider on GPU) that every ONNX row and every Triton row runs on, and it is installed wherever serving
is. On the 2-core AMD EPYC of docs/benchmarks.md it was also the fastest GEMM at hand: a 2048^2 fp32 matmul
ran 1.6x numpy's (OpenBLAS) and 1.8x torch's, interleaved. CPU: fp32 on as many threads as the process
may use (what a row's instances x threads add up to), spinning off as every session here. GPU: fp32 and
fp16, inputs and output bound on the device, so no copy is timed.
"""

from __future__ import annotations

import time

import numpy as np

from ganexport.benchmarks.hardware import usable_cores

CPU_SIDE = 2048  # 17.2 GFLOP a run: long enough to reach the kernels' speed, short enough to repeat each round
GPU_SIDE = 8192  # 1.1 TFLOP a run
ONNX_TYPES = {"fp32": 1, "fp16": 10}  # TensorProto.FLOAT, FLOAT16


def matmul_model(side: int, precision: str = "fp32") -> bytes:
    """An ONNX graph of one MatMul, C = A @ B, all three ``side`` x ``side``."""
    from onnx import helper

    elem = ONNX_TYPES[precision]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info(n, elem, [side, side]) for n in ("A", "B")],
                              [helper.make_tensor_value_info("C", elem, [side, side])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what every ONNX Runtime since 1.10 reads
    return model.SerializeToString()


class Peak:
    """GEMM runs of one precision on one device; ``gflops()`` is the best of ``reps`` runs."""

    def __init__(self, precision: str = "fp32", gpu: bool = False, threads: int | None = None,
                 side: int | None = None):
        import onnxruntime as ort

        from ganexport.serving.ort_session import session_options

        self.precision, self.gpu = precision, gpu
        self.side = side or (GPU_SIDE if gpu else CPU_SIDE)
        self.threads = None if gpu else (threads or usable_cores())
        options = session_options(intra_op_threads=self.threads, allow_spinning=False)
        providers = ["CUDAExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(matmul_model(self.side, precision), options, providers=providers)
        dtype = np.float16 if precision == "fp16" else np.float32
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((self.side, self.side)).astype(dtype) for _ in range(2))
        if gpu:
            self._binding = self.session.io_binding()
            for name, value in (("A", a), ("B", b)):
                self._binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
            self._binding.bind_output("C", "cuda", 0)
        else:
            self._feeds = {"A": a, "B": b}
        self._run()  # the first run allocates and picks kernels: never timed

    @property
    def label(self) -> str:
        where = "GPU" if self.gpu else f"CPU, {self.threads} threads"
        return f"ONNX Runtime MatMul {self.side}x{self.side} {self.precision} ({where})"

    def _run(self) -> None:
        if self.gpu:
            self.session.run_with_iobinding(self._binding)
            self._binding.synchronize_outputs()
        else:
            self.session.run(None, self._feeds)

    def gflops(self, reps: int = 2) -> float:
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            self._run()
            best = min(best, time.perf_counter() - t0)
        return 2.0 * self.side ** 3 / best / 1e9


class Peaks:
    """The peaks a bench run divides by: fp32 on CPU; fp32 and fp16 on a GPU. ``measure()`` once per round."""

    def __init__(self, gpu: bool = False, threads: int | None = None):
        self.gpu = gpu
        self.engines = {p: Peak(p, gpu, threads) for p in (("fp32", "fp16") if gpu else ("fp32",))}

    def measure(self) -> dict[str, float]:
        """One GEMM per precision: the bench calls this every round and keeps the best round."""
        return {p: round(engine.gflops(reps=1), 1) for p, engine in self.engines.items()}

    def describe(self) -> dict[str, str]:
        return {p: engine.label for p, engine in self.engines.items()}
