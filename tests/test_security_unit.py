"""Security checks that need no server: loopback defaults, what counts as exposed, no unpickling.

The checks against running processes (Triton, the demo page) are in tests/test_security.py.
"""

from __future__ import annotations

import inspect
import pickle
import shutil
from pathlib import Path

import pytest

from ganexport.repository import MODEL_FILES, latest
from ganexport.serving.addresses import exposure_warning

MODEL = "dcgan"


def test_every_service_defaults_to_loopback():
    from ganexport.demo.app import launch
    from ganexport.demo.demo_cli import demo
    from ganexport.serving.serve_cli import serve
    from ganexport.serving.triton_server import TritonServer

    defaults = {
        "ganexport serve --host": next(p.default for p in serve.params if p.name == "host"),
        "ganexport demo --host": next(p.default for p in demo.params if p.name == "host"),
        "TritonServer(host=)": inspect.signature(TritonServer).parameters["host"].default,
        "demo.app.launch(host=)": inspect.signature(launch).parameters["host"].default,
    }
    assert set(defaults.values()) == {"127.0.0.1"}, defaults


@pytest.mark.parametrize("host,exposed", [("127.0.0.1", False), ("localhost", False), ("127.0.0.2", False),
                                          ("::1", False), ("0.0.0.0", True), ("::", True),
                                          ("192.168.1.20", True), ("demo.example.com", True)])
def test_which_hosts_count_as_exposed(host, exposed):
    warning = exposure_warning(host)
    assert bool(warning) == exposed
    if warning:
        assert host in warning and "no authentication" in warning and "\n" not in warning


# --------------------------------------------------------------------------- nothing is unpickled


class Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture()
def planted(tmp_path, tiny_checkpoints, published):
    """Pickle payloads under every name ganexport might load, and the marker they would create."""
    import torch

    marker = tmp_path / "PWNED"
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists(), "the payload must be live, or the test proves nothing"
    control.unlink()

    files = {"pt": tmp_path / "evil.pt", "safetensors": tmp_path / "evil.safetensors"}
    torch.save({"weights": Payload(marker)}, files["pt"])
    files["safetensors"].write_bytes(pickle.dumps(Payload(marker)))
    run = tmp_path / "run"  # a genuine run directory whose train_state.pt was swapped
    shutil.copytree(tiny_checkpoints[MODEL].parent, run)
    torch.save({"optimizers": Payload(marker)}, run / "train_state.pt")
    files["run"] = run
    run_bad_ckpt = tmp_path / "run_bad_checkpoint"
    run_bad_ckpt.mkdir()
    shutil.copy(files["safetensors"], run_bad_ckpt / "checkpoint.safetensors")
    files["run_bad_checkpoint"] = run_bad_ckpt
    repo = tmp_path / "repo"  # a repository whose model files were swapped for pickles
    for name in (MODEL, f"{MODEL}_torchscript"):
        shutil.copytree(published[0] / name, repo / name)
    torch.save(Payload(marker), latest(repo, f"{MODEL}_torchscript") / MODEL_FILES["torchscript"])
    (latest(repo, MODEL) / MODEL_FILES["onnxruntime"]).write_bytes(pickle.dumps(Payload(marker)))
    files["repo"] = repo
    return marker, files


PICKLE_CASES = {  # command line (FILES[...] filled in) -> words of the refusal
    "build --checkpoint x.pt": (["build", "--model", MODEL, "--checkpoint", "{pt}", "--repository", "{repo}"],
                                "pickled checkpoints are refused"),
    "build --checkpoint x.safetensors": (["build", "--model", MODEL, "--checkpoint", "{safetensors}",
                                          "--repository", "{repo}"], "not a readable safetensors file"),
    "verify --checkpoint x.pt": (["verify", "--model", MODEL, "--checkpoint", "{pt}", "--repository", "{repo}"],
                                 "pickled checkpoints are refused"),
    "export --checkpoint x.safetensors": (["export", "--model", MODEL, "--checkpoint", "{safetensors}", "--out",
                                           "{tmp}"], "not a readable safetensors file"),
    "eval --checkpoint x.pt": (["eval", "--model", MODEL, "--checkpoint", "{pt}"], "pickled checkpoints are refused"),
    "release run-with-pickled-checkpoint": (["release", "{run_bad_checkpoint}", "--weights", "{tmp}"],
                                            "not a readable safetensors file"),
    "train --resume x.pt": (["train", "--model", MODEL, "--resume", "{pt}"], "pickled checkpoints are refused"),
    "train --resume run-with-pickled-train_state": (["train", "--model", MODEL, "--resume", "{run}", "--quiet"],
                                                    "never unpickles"),
    "train --resume run-with-pickled-checkpoint": (["train", "--model", MODEL, "--resume", "{run_bad_checkpoint}"],
                                                   "not a readable safetensors file"),
    "infer --backend torchscript on a pickled model.pt": (["infer", "--model", MODEL, "--backend", "torchscript",
                                                           "--repository", "{repo}", "-o", "{tmp}/o.png"],
                                                          "does not load"),
    "infer --backend onnxruntime on a pickled model.onnx": (["infer", "--model", MODEL, "--repository", "{repo}",
                                                             "-o", "{tmp}/o.png"], "does not load"),
}


@pytest.mark.parametrize("case", list(PICKLE_CASES))
def test_pickle_payloads_are_refused_and_never_run(planted, tmp_path, case):
    from click.testing import CliRunner

    from ganexport.cli import cli

    marker, files = planted
    args, words = PICKLE_CASES[case]
    args = [a.format(tmp=tmp_path, **files) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "Traceback" not in result.output, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker.exists(), "the pickle payload ran"
