"""``ganexport gpu-check`` (``make gpu-check``): the GPU path in one command, on a machine with a CUDA device.

What the CPU machines this project is built on cannot show, in order:

1. ONNX Runtime with CUDA: onnxruntime-gpu is installed in place of onnxruntime (the two must never be
   installed together: FINDINGS), unless it is there already, and its CUDA execution provider is checked;
2. the ``gpu``-marked tests (tests/test_gpu.py);
3. dcgan and cyclegan built for GPU instances (``build --gpu``), and an fp16 copy of each with its own parity
   record in uint8 levels (export/half.py);
4. ``ganexport bench --record`` on both, in-process (CUDA EP) and through Triton: fp32 and fp16 rows, each
   with GFLOP/s and its fraction of the GPU's GEMM peak at its precision, measured in the same process.

Results go to ``benchmarks/results/gpu-<name>/gpu-fp32.*`` and ``gpu-fp16.*`` (``--no-record``:
``bench-results/``). Each step runs in a fresh process, so the onnxruntime-gpu just installed is the one
used. On a machine without a GPU it says so in one line and exits 0: nothing there to check.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import click

MODELS = {"dcgan": ["dcgan"], "cyclegan": ["cyclegan_a2b"]}  # training model -> the Triton models benched
CUDA_CHECK = ("import onnxruntime as ort; getattr(ort, 'preload_dlls', lambda: None)(); "
              "import sys; sys.exit('CUDAExecutionProvider' not in ort.get_available_providers())")


def installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _run(args: list[str], what: str) -> int:
    click.echo(f"gpu-check: {what}: {' '.join(args)}")
    return subprocess.run(args).returncode


@click.command("gpu-check", context_settings=dict(show_default=True, help_option_names=["-h", "--help"],
                                                  max_content_width=100))
@click.option("--work", default=Path("gpu-check"), type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the GPU builds (fp32/ and fp16/ model repositories).")
@click.option("--onnxruntime-gpu", "ort_gpu", default="onnxruntime-gpu", metavar="REQUIREMENT",
              help="What pip installs in place of onnxruntime, when onnxruntime-gpu is not installed yet.")
@click.option("--record/--no-record", default=True,
              help="Write the bench results into benchmarks/results/<gpu>/ (what docs/benchmarks.md cites).")
@click.option("--duration", default=3.0, type=click.FloatRange(min=0, min_open=True),
              help="Seconds measured per backend and scenario.")
@click.option("--tests/--no-tests", "run_tests", default=True, help="Run the gpu-marked tests first.")
def gpu_check(work: Path, ort_gpu: str, record: bool, duration: float, run_tests: bool):
    """Install onnxruntime-gpu, run the GPU tests, build fp32 and fp16 GPU models, bench and record them.

    \b
    Examples:
      make gpu-check
      ganexport gpu-check --no-record --duration 1
    Prints one line and exits 0 where no CUDA device exists.
    """
    from ganexport.benchmarks.hardware import gpu_names

    gpus = gpu_names()
    if not gpus:
        click.echo("gpu-check: no CUDA device on this machine (nvidia-smi lists none): nothing to check")
        return
    click.echo(f"gpu-check: {gpus[0]}" + (f" (and {len(gpus) - 1} more)" if len(gpus) > 1 else ""))
    python = sys.executable
    if not installed("onnxruntime-gpu"):
        if installed("onnxruntime") and _run([python, "-m", "pip", "uninstall", "-y", "onnxruntime"],
                                             "onnxruntime and onnxruntime-gpu must never be installed together"):
            raise click.ClickException("pip could not uninstall onnxruntime")
        if _run([python, "-m", "pip", "install", ort_gpu], "installing ONNX Runtime for CUDA"):
            raise click.ClickException(f"pip could not install {ort_gpu}")
    if subprocess.run([python, "-c", CUDA_CHECK]).returncode:
        raise click.ClickException("ONNX Runtime has no usable CUDA execution provider here (check the CUDA and "
                                   "cuDNN libraries onnxruntime-gpu was built for: FINDINGS.md, GPU)")
    failed = []
    if run_tests and _run([python, "-m", "pytest", "-m", "gpu", "-q", "tests"], "the gpu-marked tests"):
        failed.append("gpu tests")
    fp32, fp16 = work / "fp32", work / "fp16"
    ganexport = [python, "-m", "ganexport"]
    for model in MODELS:
        if _run([*ganexport, "build", "--model", model, "--gpu", "--runtimes", "onnxruntime", "--repository",
                 str(fp32)], f"building {model} for GPU instances"):
            raise click.ClickException(f"the GPU build of {model} failed")
    names = [n for group in MODELS.values() for n in group]
    half = ("from pathlib import Path; from ganexport.export.half import publish_fp16; "
            f"publish_fp16(Path({str(fp32)!r}), Path({str(fp16)!r}), {names!r}, "
            "['CUDAExecutionProvider', 'CPUExecutionProvider'])")
    if _run([python, "-c", half], "fp16 copies, each with its parity record"):
        raise click.ClickException("the fp16 copies failed (see above)")
    bench = [*ganexport, "bench", "--model", ",".join(names), "--backends", "onnxruntime,triton-grpc",
             "--batch", "1,8,64", "--concurrency", "1,8", "--size", "256,512", "--duration", str(duration),
             *(["--record"] if record else [])]
    for repository, name in ((fp32, "gpu-fp32"), (fp16, "gpu-fp16")):
        if _run([*bench, "--repository", str(repository), "--name", name], f"bench {name}"):
            failed.append(f"bench {name}")
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)}")
    click.echo("gpu-check: done" + (" (results in benchmarks/results/)" if record else " (results in bench-results/)"))
