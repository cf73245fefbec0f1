"""`ganexport gpu-check` on a machine without a GPU, and the fp16 copies it benches on one.

Without a CUDA device the command says so in one line and exits 0 (the real command, in a process of its
own). The fp16 copies (export/half.py) run on ONNX Runtime's CPU provider too, so their conversion, their
parity record in uint8 levels and their publication are checked here on the tiny nets.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ganexport.benchmarks.hardware import gpu_names


@pytest.mark.skipif(bool(gpu_names()), reason="this machine has a GPU: gpu-check would run in earnest")
def test_gpu_check_says_in_one_line_that_there_is_no_gpu_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ganexport", "gpu-check", "--work", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "gpu-check: no CUDA device on this machine (nvidia-smi lists none): nothing to check"]
    assert not (tmp_path / "w").exists()  # nothing built, nothing installed


def test_fp16_copies_are_published_with_their_parity_in_uint8_levels(published, tmp_path):
    pytest.importorskip("onnx")
    from ganexport.benchmarks.bench_cli import model_precisions
    from ganexport.export.half import MAX_LEVELS, publish_fp16
    from ganexport.repository import check_integrity, latest, read_parity
    from ganexport.serving.backends import LocalBackend

    names = ["dcgan", "cyclegan_a2b"]
    records = publish_fp16(published[0], tmp_path / "fp16", names, ["CPUExecutionProvider"], log=lambda m: None)
    for name in names:
        version = latest(tmp_path / "fp16", name)
        report = read_parity(version)
        assert report == json.loads(json.dumps(records[name]))
        assert report["precision"] == "fp16" and report["passed"] and report["max_uint8_levels"] <= MAX_LEVELS
        assert len(report["inputs_tried"]) >= 3
        assert (version / "model.onnx").read_bytes() != (latest(published[0], name) / "model.onnx").read_bytes()
    check_integrity(tmp_path / "fp16", names)  # SHA256SUMS written as for any build
    assert model_precisions(tmp_path / "fp16", names) == {"dcgan": "fp16", "cyclegan_a2b": "fp16"}
    assert model_precisions(published[0], names) == {"dcgan": "fp32", "cyclegan_a2b": "fp32"}
    with LocalBackend(tmp_path / "fp16") as backend:  # clients send and get what they did before
        image = backend.translate("cyclegan_a2b", np.full((1, 20, 24, 3), 90, np.uint8))
    assert image.dtype == np.uint8 and image.shape == (1, 20, 24, 3)
