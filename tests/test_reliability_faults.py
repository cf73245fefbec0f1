"""Faults: Triton killed under load, and a corrupt published model file.

Real processes only: the bundled tritonserver on free ports, the real Gradio
app, `ganexport verify / serve / demo` as commands. Client calls carry
timeouts, so a hang fails a bounded join instead of stalling the suite;
durations are printed (run with -s), never asserted.

Proven elsewhere (docs/reliability.md lists them): a SIGKILLed `ganexport build`
leaves the repository byte-identical
(test_export.py::test_killed_build_leaves_the_repository_unchanged), a
publish failing halfway leaves no trace (test_repository.py), a model file
Triton cannot load stops the server with its name
(test_triton_server.py::test_corrupt_newest_version_names_the_model).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ganexport.repository import MODEL_FILES, default_models, latest
from ganexport.serving.backends import BackendError, connect
from ganexport.serving.triton_server import TritonServer, free_port

pytestmark = pytest.mark.integration
CLIENT_TIMEOUT = 5.0  # seconds each client call may take; the joins below allow many of them
MODEL = "dcgan"


# --------------------------------------------------------------------------- SIGKILL under load


class Load:
    """Client threads calling MODEL in a loop, each through its own Backend; every call is recorded."""

    def __init__(self, url_of: dict[str, str], per_kind: int = 2):
        self.killed_at: float | None = None
        self.calls: list[tuple[str, float, float, BaseException | None]] = []  # kind, start, end, error
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(kind, url), daemon=True)
                        for kind, url in url_of.items() for _ in range(per_kind)]

    def _run(self, kind: str, url: str) -> None:
        failures_after_kill = 0
        with connect(kind, url=url, timeout=CLIENT_TIMEOUT) as backend:
            z = np.zeros((1, *backend.metadata(MODEL).inputs[0].shape), np.float32)
            while not self._stop.is_set() and failures_after_kill < 3:
                start, error = time.monotonic(), None
                try:
                    backend.sample(MODEL, z)
                except Exception as e:  # recorded and asserted on by the test
                    error = e
                    failures_after_kill += self.killed_at is not None and start >= self.killed_at
                with self._lock:
                    self.calls.append((kind, start, time.monotonic(), error))

    def successes(self) -> int:
        with self._lock:
            return sum(1 for *_, e in self.calls if e is None)

    def after_kill(self) -> list[tuple[str, float, float, BaseException | None]]:
        with self._lock:
            return [c for c in self.calls if c[1] >= self.killed_at]


def _launch_demo(url: str, repository: Path):
    from ganexport.demo.app import launch

    port = free_port()
    app = launch(backend_kind="triton-grpc", triton_url=url, repository=repository, port=port,
                 prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def test_sigkill_under_load_fails_clients_fast_and_the_demo_falls_back_then_returns(published, capsys):
    from gradio_client import Client

    served = dict(models=default_models(published[0]), http_port=free_port(), grpc_port=free_port(), metrics_port=0)
    first = TritonServer(published[0], **served).start(timeout=180)
    second, app = None, None
    try:
        app, url = _launch_demo(first.grpc_url, published[0])
        page = Client(url, verbose=False)
        _, status, _ = page.predict(MODEL, 0, 4, api_name="/sample")
        assert "triton-grpc" in status and "fallback" not in status, status

        load = Load({"triton-http": first.http_url, "triton-grpc": first.grpc_url})
        [t.start() for t in load.threads]
        deadline = time.monotonic() + 120
        while load.successes() < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert load.successes() >= 40, "the load never got going"
        os.kill(first.pid, signal.SIGKILL)  # Triton dies mid-load, with every connection it held
        first.process.wait(timeout=30)
        load.killed_at = time.monotonic()  # calls from here on meet a dead server
        [t.join(timeout=60) for t in load.threads]
        assert not any(t.is_alive() for t in load.threads), "a client hung on the dead server"

        after = load.after_kill()
        assert after and all(e is not None for *_, e in after), "a call succeeded on a dead server"
        for kind, _start, _end, error in after:
            message = str(error)
            assert isinstance(error, BackendError), (kind, repr(error))
            assert "\n" not in message and "Triton at 127.0.0.1:" in message, message
        assert {kind for kind, *_ in after} == {"triton-http", "triton-grpc"}
        first_error = {k: min(end for kind, _, end, _ in after if kind == k) - load.killed_at
                       for k in ("triton-http", "triton-grpc")}
        slowest = max(end - start for _, start, end, _ in after)
        with capsys.disabled():
            print(f"\n[faults] SIGKILL after {load.successes()} answered calls; first error after its death "
                  f"{', '.join(f'{k} {v * 1000:.0f} ms' for k, v in first_error.items())}; slowest failing "
                  f"call {slowest * 1000:.0f} ms (timeout {CLIENT_TIMEOUT:.0f} s); e.g. {after[-1][3]}")

        first.stop()  # reaps the orphaned stubs and their /dev/shm regions
        image, status, banner = page.predict(MODEL, 0, 4, api_name="/sample")
        assert image and Path(image).is_file(), status
        assert "onnxruntime (in-process fallback)" in status and "unreachable" in status, status
        assert "unreachable" in banner, banner

        second = TritonServer(published[0], **served).start(timeout=180)  # Triton comes back on the same ports
        image, status, banner = page.predict(MODEL, 0, 4, api_name="/sample")
        assert image and "triton-grpc" in status and "is back" in status, status
        assert "unreachable" not in banner, banner
    finally:
        if app is not None:
            app.close()
            app.demo_backend.close()
        for server in (first, second):
            if server is not None:
                server.stop()


# --------------------------------------------------------------------------- a corrupt published model file


def flip_a_weight(path: Path) -> None:
    """Flip the exponent bit of one float32 in the largest weight: the file still loads, the images are wrong."""
    import onnx

    weight = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(path.read_bytes())
    offset = data.find(weight.raw_data) + len(weight.raw_data) // 2
    data[offset - offset % 4 + 3] ^= 0x40
    path.write_bytes(bytes(data))


def _command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real `ganexport` process; the timeout turns a server that starts anyway into a failure, not a hang."""
    return subprocess.run([sys.executable, "-m", "ganexport.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_corrupt_model_file_is_named_by_verify_and_refused_by_serve_and_demo(published, tiny_checkpoints, tmp_path):
    from click.testing import CliRunner

    from ganexport.cli import cli

    repo = tmp_path / "repo"
    shutil.copytree(published[0], repo)
    version = latest(repo, MODEL)
    flip_a_weight(version / MODEL_FILES["onnxruntime"])

    verified = CliRunner().invoke(cli, ["verify", "--model", MODEL, "--checkpoint", str(tiny_checkpoints[MODEL]),
                                        "--repository", str(repo)])
    assert verified.exit_code == 2, verified.output
    assert f"{MODEL}: " in verified.stderr and "model.onnx changed since it was published" in verified.stderr
    assert f"{MODEL}_torchscript" not in verified.stderr  # the twin is intact and not blamed

    expected = f"model '{MODEL}' version {version.name}: model.onnx changed since it was published"
    served = _command("serve", "--repository", str(repo), "--http-port", str(free_port()),
                      "--grpc-port", str(free_port()), "--metrics-port", "0")
    assert served.returncode == 2, served.stdout + served.stderr
    assert expected in served.stderr and f"ganexport verify --model {MODEL}" in served.stderr, served.stderr
    assert len(served.stderr.strip().splitlines()) == 1 and "starting Triton" not in served.stdout

    shown = _command("demo", "--repository", str(repo), "--port", str(free_port()), "--triton-http-port",
                     str(free_port()), "--triton-grpc-port", str(free_port()))
    assert shown.returncode == 1 and expected in shown.stderr, shown.stdout + shown.stderr
    assert "Demo at" not in shown.stdout


# --------------------------------------------------------------------------- the starter dies


def test_triton_stops_when_the_process_that_started_it_is_sigkilled(published, tmp_path):
    """A SIGKILLed `serve` / `demo` cannot run its cleanup; Triton must not live on holding the ports and /dev/shm."""
    script = ("import sys, time\nfrom ganexport.serving.triton_server import TritonServer, free_port\n"
              f"s = TritonServer({str(published[0])!r}, models=[{MODEL!r}], http_port=free_port(), "
              "grpc_port=free_port(), metrics_port=0)\n"
              "s.start(timeout=180)\nprint(s.process.pid, flush=True)\ntime.sleep(600)\n")
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        triton_pid = int(starter.stdout.readline())
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(timeout=30)
        deadline = time.monotonic() + 60  # a hang guard: Triton exits within its --exit-timeout-secs
        while Path(f"/proc/{triton_pid}").exists() and "Z" not in _state(triton_pid):
            assert time.monotonic() < deadline, f"tritonserver {triton_pid} outlived the process that started it"
            time.sleep(0.2)
    finally:
        starter.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
