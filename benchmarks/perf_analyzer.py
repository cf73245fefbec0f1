"""NVIDIA's perf_analyzer against the same Triton server, to check our Triton rows.

perf_analyzer ships only in the tritonclient wheels 2.41-2.60 (not in the
2.73 client the venv uses), so ``locate()`` fetches the 2.51.0 wheel (the
bundled server's version) with ``pip download --no-deps``, extracts the one
binary into a cache dir and never installs the wheel. The binary needs
libb64.so.0d and libcudart.so.12 even on CPU; both sit in nvidia-pytriton's
``nvidia_pytriton.libs/`` under hashed names, so they are symlinked beside it::

    ganexport bench --model dcgan --backends triton-grpc --batch 1 --concurrency 1 --perf-analyzer

or by hand, against ``ganexport serve``::

    python -m ganexport.benchmarks.perf_analyzer -m dcgan -i grpc -u 127.0.0.1:8001 -b 1 \\
        --concurrency-range 1:1 --input-data zero
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ganexport import catalog

VERSION = "2.51.0"  # the Triton release bundled in nvidia-pytriton 0.7
LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer could not be fetched or failed; one line."""


def cache_dir() -> Path:
    return Path(os.environ.get("GANEXPORT_CACHE", Path.home() / ".cache" / "ganexport")) / f"perf_analyzer-{VERSION}"


def locate(log=print) -> Path:
    """The perf_analyzer binary, fetched once into the cache; its libraries linked into ``lib/`` beside it."""
    root = cache_dir()
    binary = root / "perf_analyzer"
    if not binary.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            log(f"fetching perf_analyzer from the tritonclient {VERSION} wheel (not installed, binary only)")
            pip = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                                  f"tritonclient=={VERSION}"], capture_output=True, text=True)
            wheels = list(Path(tmp).glob("tritonclient-*.whl"))
            if pip.returncode or not wheels:
                raise PerfAnalyzerError(f"pip download tritonclient=={VERSION} failed: {pip.stderr.strip()[-300:]}")
            with zipfile.ZipFile(wheels[0]) as whl:
                member = next((n for n in whl.namelist() if n.endswith("/bin/perf_analyzer")), None)
                if member is None:
                    raise PerfAnalyzerError(f"tritonclient {VERSION} wheel holds no bin/perf_analyzer")
                tmp_binary = binary.with_suffix(".tmp")
                tmp_binary.write_bytes(whl.read(member))
        tmp_binary.chmod(0o755)
        tmp_binary.replace(binary)
    _link_libs(root / "lib")
    return binary


def _link_libs(lib: Path) -> None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise PerfAnalyzerError("perf_analyzer needs libraries from nvidia-pytriton, which is not installed")
    libs = Path(list(spec.submodule_search_locations)[0]).parent / "nvidia_pytriton.libs"
    lib.mkdir(exist_ok=True)
    for name, pattern in LIBS.items():
        found = sorted(libs.glob(pattern))
        if not found:
            raise PerfAnalyzerError(f"no {pattern} in {libs}")
        link = lib / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(found[0])


def env(binary: Path) -> dict[str, str]:
    lib = str(binary.parent / "lib")
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [lib, os.environ.get("LD_LIBRARY_PATH")]))}


def command(binary: Path, model: str, sig: catalog.Signature, *, protocol: str, url: str, batch: int,
            concurrency: int, size: int | None, window_ms: int, csv_path: Path) -> list[str]:
    """Three windows of ``window_ms`` (stability 100% accepts nearly any three; up to six on a very noisy machine).

    zero input data: valid for every signature (label 0, a black image) and costs the same to compute.
    """
    cmd = [str(binary), "-m", model, "-i", protocol, "-u", url, "-b", str(batch),
           "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", "zero",
           "--measurement-interval", str(window_ms), "--stability-percentage", "100", "--max-trials", "6",
           "-f", str(csv_path)]
    for t in sig.inputs:
        if -1 in t.shape:
            dims = [size if d == -1 else d for d in t.shape]
            cmd += ["--shape", f"{t.name}:{','.join(map(str, dims))}"]
    return cmd


def run(binary: Path, model: str, sig: catalog.Signature, *, protocol: str, url: str, batch: int,
        concurrency: int, size: int | None = None, window_ms: int = 1000) -> dict:
    """One perf_analyzer measurement, in the bench's row format (latencies in ms, images/s)."""
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "pa.csv"
        cmd = command(binary, model, sig, protocol=protocol, url=url, batch=batch, concurrency=concurrency,
                      size=size, window_ms=window_ms, csv_path=csv_path)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env(binary), timeout=600)
        if proc.returncode or not csv_path.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise PerfAnalyzerError(f"perf_analyzer {model} failed ({proc.returncode}): {' | '.join(tail)}")
        row = next(csv.DictReader(csv_path.open()))
    ms = lambda us: round(float(us) / 1000.0, 3)  # noqa: E731 - perf_analyzer reports microseconds
    found = lambda pattern: re.findall(pattern, proc.stdout)  # noqa: E731 - the last one is the final window
    mean, requests, inferences, executions = (found(p) for p in (
        r"Avg latency: (\d+) usec", r"Request count: (\d+)", r"Inference count: (\d+)", r"Execution count: (\d+)"))
    return {"p50_ms": ms(row["p50 latency"]), "p90_ms": ms(row["p90 latency"]), "p99_ms": ms(row["p99 latency"]),
            "mean_ms": ms(mean[-1]) if mean else None, "requests": int(requests[-1]) if requests else 0,
            "images_per_s": round(float(row["Inferences/Second"]), 2),
            # images per model execution: how much the dynamic batcher merged
            "server_batch": round(int(inferences[-1]) / int(executions[-1]), 2) if executions else None,
            "command": " ".join(cmd[1:]).replace(str(csv_path), "pa.csv")}


class Target:
    """A bench row: perf_analyzer against the same endpoint as a Triton row, run in the same
    interleaved rounds (one perf_analyzer process of three windows per round)."""

    kind = "perf_analyzer"
    shared = True

    def __init__(self, triton_row, binary: Path):
        self.protocol = triton_row.kind.removeprefix("triton-")
        self.variant, self.url, self.binary = triton_row.variant, triton_row.url, binary
        self.label = f"perf_analyzer-{self.protocol}" + (f"[{self.variant.label}]" if self.variant else "")

    def round(self, sig: catalog.Signature, sc, seconds: float) -> dict:
        return run(self.binary, sc.model, sig, protocol=self.protocol, url=self.url, batch=sc.batch,
                   concurrency=sc.concurrency, size=sc.size, window_ms=max(100, int(seconds * 1000 / 3)))

    def close(self) -> None:
        pass


def main(argv: list[str]) -> None:
    """``python -m ganexport.benchmarks.perf_analyzer ARGS``: perf_analyzer ARGS, with its libraries found."""
    binary = locate(log=lambda msg: print(msg, file=sys.stderr))
    os.execve(binary, [str(binary), *argv], env(binary))


if __name__ == "__main__":
    main(sys.argv[1:])
