"""The real tritonserver bundled in nvidia-pytriton, on the tiny-net repository of every catalog model.

No fakes: each test starts the binary on free ports. Names and shapes come from
the catalog and the published signature.json, never typed here. Timings and
memory are printed (run with -s to see them), never asserted.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ganexport import catalog
from ganexport.benchmarks.procfs import descendants, rss_bytes
from ganexport.repository import MODEL_FILES, VIEW_PREFIX, check_repository, latest, read_signature
from ganexport.serving.triton_server import ServerError, TritonServer, free_port

pytestmark = pytest.mark.integration
from needs_triton import httpclient  # noqa: E402 (skips this module without Triton)
from tritonclient.utils import InferenceServerException  # noqa: E402

SAMPLER = catalog.get("dcgan").signatures()[0].name  # a latent -> image model
SERVE_MODELS = (SAMPLER, catalog.get("cgan").signatures()[0].name)


def _signature(repo: Path, name: str) -> catalog.Signature:
    """What the build published for ``name``: tiny-net shapes differ from the catalog defaults."""
    return read_signature(latest(repo, name))


def _ports() -> dict:
    return dict(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())


def _process_id(pid: int) -> tuple[str, str] | None:
    """(name, start time) of a live process, None when gone or a zombie: pid reuse cannot fool it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
    return None if rest[0] in "ZX" else (name, rest[19])


def _shm_mapped_by(pids: list[int]) -> set[str]:
    """/dev/shm files the processes map: the Python backend's per-stub regions."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        found |= {line.split(maxsplit=5)[5].removesuffix(" (deleted)").rsplit("/", 1)[1]
                  for line in maps.splitlines() if "/dev/shm/" in line}
    return found


def _shm() -> set[str]:
    return set(p.name for p in Path("/dev/shm").iterdir())


def _assert_nothing_left(processes: dict[int, tuple[str, str] | None], mapped: set[str], shm_before: set[str]):
    """No process of that server alive any more, and none of its /dev/shm regions left."""
    alive = [f"{pid} {ident[0]}" for pid, ident in processes.items() if ident and _process_id(pid) == ident]
    assert not alive, f"left running: {alive}"
    left = mapped & _shm()
    assert not left, f"left in /dev/shm: {sorted(left)}"
    print(f"/dev/shm entries new since start and still there (any process): {sorted(_shm() - shm_before)}")


# --------------------------------------------------------------------------- one server, every model


@pytest.fixture(scope="module")
def server(published):
    """The whole published repository (ONNX and TorchScript variants) on one server."""
    repo, _ = published
    shm_before = _shm()
    srv = TritonServer(repo, **_ports())
    srv.start(timeout=180)
    srv.shm_before = shm_before
    yield srv
    srv.stop()


def test_ready_lists_every_model_as_ready(server, published, capsys):
    repo, versions = published
    index = {m["name"]: m for m in server.repository_index()}  # POST /v2/repository/index
    expected = {name for pairs in versions.values() for name, _ in pairs}
    assert expected == set(check_repository(repo))
    assert set(index) == expected
    assert {name: m["state"] for name, m in index.items()} == {name: "READY" for name in expected}
    for name, version in (p for pairs in versions.values() for p in pairs):
        assert index[name]["version"] == str(latest(repo, name).name) == str(version)
    pids = server.pids()
    with capsys.disabled():
        print(f"\n[triton] {len(expected)} models ready in {server.ready_seconds:.2f} s; "
              f"RSS server + {len(pids) - 1} stubs = {rss_bytes(pids) / 2**20:.0f} MiB")


def test_models_report_the_published_signatures(server, published):
    repo, _ = published
    for model in server.models():
        sig = _signature(repo, model.name)
        assert model.max_batch_size == sig.max_batch_size
        for got, want in ((model.inputs, sig.inputs), (model.outputs, sig.outputs)):
            assert [(t.name, t.datatype, t.shape) for t in got] == [(t.name, t.dtype, (-1, *t.shape)) for t in want]


def test_http_sample_request_has_the_signature_shape(server, published):
    repo, _ = published
    sig = _signature(repo, SAMPLER)
    n = 3
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
    try:
        inputs = []
        for spec in sig.inputs:
            data = np.random.default_rng(0).standard_normal((n, *spec.shape)).astype(spec.numpy_dtype)
            inputs.append(httpclient.InferInput(spec.name, data.shape, spec.dtype))
            inputs[-1].set_data_from_numpy(data)
        result = client.infer(SAMPLER, inputs)
    finally:
        client.close()  # an idle keep-alive connection would hold the server's shutdown
    for spec in sig.outputs:
        out = result.as_numpy(spec.name)
        assert out.shape == (n, *spec.shape)
        assert out.dtype == np.dtype(spec.numpy_dtype)


def test_model_control_is_off(server):
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
    try:
        with pytest.raises(InferenceServerException):
            client.unload_model(SAMPLER)
        with pytest.raises(InferenceServerException):
            client.load_model(SAMPLER)
        assert client.is_model_ready(SAMPLER)
    finally:
        client.close()


STUB_EXIT_CEILING_S = 60  # a replaced stub that has not exited by then is a leak, however loaded the machine


def test_a_reload_swaps_in_a_fresh_stub_without_a_failed_request(server):
    """What the supervisor does to a dead or swollen stub: the model keeps answering throughout."""
    from ganexport.serving.backends import connect

    stubs = server.stub_pids()[SAMPLER]
    errors, answered, stop = [], [0], threading.Event()

    def stream():
        with connect("triton-http", url=server.http_url, timeout=60) as backend:
            z = np.zeros((1, *backend.metadata(SAMPLER).inputs[0].shape), np.float32)
            while not stop.is_set():
                try:
                    backend.sample(SAMPLER, z)
                    answered[0] += 1
                except Exception as e:  # noqa: BLE001 - counted, the assertion says which
                    errors.append(str(e)[:200])

    sender = threading.Thread(target=stream)
    sender.start()
    try:
        for _ in range(2):
            time.sleep(0.5)
            server.reload(SAMPLER)
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join(timeout=60)
    # Triton unloads the replaced instances once their last request is done: the old stub exits a moment later.
    deadline = time.monotonic() + STUB_EXIT_CEILING_S
    while set(fresh := server.stub_pids()[SAMPLER]) & set(stubs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fresh and not set(fresh) & set(stubs), (stubs, fresh)
    assert not errors and answered[0] > 0, (errors[:3], answered)


def test_stop_leaves_no_process_and_no_shm(server):
    """Last test of the module: stop the shared server and look for leftovers."""
    pids = server.pids()
    processes = {pid: _process_id(pid) for pid in pids}
    mapped = _shm_mapped_by(pids)
    assert mapped, "the Python backend stubs should map /dev/shm regions"
    t0 = time.monotonic()
    code = server.stop()
    print(f"[triton] stop took {time.monotonic() - t0:.1f} s, tritonserver exit code {code}")
    _assert_nothing_left(processes, mapped, server.shm_before)


# --------------------------------------------------------------------------- refusals before any process


def test_taken_port_is_named_before_starting(published):
    repo, _ = published
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = TritonServer(repo, http_port=free_port(), grpc_port=port, metrics_port=0)
        with pytest.raises(ServerError, match=rf"gRPC port {port} on 127\.0\.0\.1 is already in use"):
            srv.start()
    assert srv.process is None


@pytest.mark.parametrize("make", ["missing", "empty", "stray"])
def test_unusable_repository_is_one_line(tmp_path, make):
    repo = tmp_path / "repo"
    if make != "missing":
        repo.mkdir()
    if make == "stray":
        (repo / "notes").mkdir()
    srv = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=0)
    with pytest.raises(ServerError) as err:
        srv.start()
    assert "\n" not in str(err.value) and str(repo) in str(err.value)
    assert srv.process is None


def test_cli_errors_exit_2_in_one_line(tmp_path, published):
    from click.testing import CliRunner

    from ganexport.serving.serve_cli import serve

    runner = CliRunner()
    result = runner.invoke(serve, ["--repository", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "holds no model" in result.output
    result = runner.invoke(serve, ["--repository", str(published[0]), "--models", "no_such_model"])
    assert result.exit_code == 2 and "no_such_model" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(serve, ["--repository", str(published[0]), "--http-port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and f"HTTP port {port}" in result.output


def test_unknown_model_is_refused_naming_the_repository(published):
    repo, _ = published
    srv = TritonServer(repo, models=(SAMPLER, "no_such_model"), http_port=free_port(), grpc_port=free_port(),
                       metrics_port=0)
    with pytest.raises(ServerError, match=rf"no model no_such_model in {repo}; available: "):
        srv.start()
    assert srv.process is None and srv.view is None


# --------------------------------------------------------------------------- the server stages its models


def test_server_serves_only_the_chosen_models_from_a_view_it_removes_on_stop(published):
    repo, _ = published
    with TritonServer(repo, models=(SAMPLER,), **_ports()) as srv:
        view = srv.view
        assert view is not None and view.name.startswith(VIEW_PREFIX) and repo.resolve() not in view.parents
        assert [p.name for p in view.iterdir()] == [SAMPLER]
        assert {m["name"] for m in srv.repository_index()} == {SAMPLER}
        assert list(view.rglob("__pycache__")), "the stub compiled model.py beside it, in the view"
    assert srv.view is None and not view.exists()
    assert not list(repo.rglob("__pycache__")), "serving wrote into the published repository"


# --------------------------------------------------------------------------- a model that fails to load


def test_corrupt_newest_version_names_the_model(published, tmp_path):
    """The old version is fine, the newest has a broken model.onnx: Triton serves the newest, so start fails."""
    repo, _ = published
    bad = tmp_path / "repo"
    bad.mkdir()
    for name in SERVE_MODELS:
        shutil.copytree(repo / name, bad / name, symlinks=True)
    newest = latest(bad, SAMPLER)
    broken = newest.parent / str(int(newest.name) + 1)
    shutil.copytree(newest, broken)
    (broken / MODEL_FILES["onnxruntime"]).write_bytes(b"not an onnx file")
    srv = TritonServer(bad, **_ports())
    with pytest.raises(ServerError) as err:
        srv.start(timeout=120)
    message = str(err.value)
    assert "\n" not in message
    assert f"model '{SAMPLER}' version {broken.name} failed to load" in message, message
    assert VIEW_PREFIX not in message + "".join(err.value.log_tail)  # the user's repository, never the view
    assert srv.process.poll() is not None and not descendants(srv.process.pid)
    assert srv.log_path.is_file() and srv.view is None


# --------------------------------------------------------------------------- `ganexport serve`


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """stdout until a line contains ``marker``; a reader thread keeps the deadline honest."""
    lines: list[str] = []
    done = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    return "".join(lines)


def test_serve_cli_prints_endpoints_and_stops_on_sigint(published):
    repo, _ = published
    ports = _ports()
    shm_before = _shm()
    cmd = [sys.executable, "-c", "from ganexport.serving.serve_cli import serve; serve()",
           "--repository", str(repo), "--models", ",".join(SERVE_MODELS),
           "--http-port", str(ports["http_port"]), "--grpc-port", str(ports["grpc_port"]),
           "--metrics-port", str(ports["metrics_port"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _read_until(proc, "Ctrl+C", timeout=120)
        assert "Ctrl+C" in out, out + proc.stderr.read() if proc.poll() is not None else out
        pids = descendants(proc.pid)
        processes = {pid: _process_id(pid) for pid in pids}
        names = {ident[0] for ident in processes.values() if ident}
        assert "tritonserver" in names and any(n.startswith("triton_python") for n in names), names
        mapped = _shm_mapped_by(pids)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{ports['http_port']}" in out
    assert f"127.0.0.1:{ports['grpc_port']}" in out
    assert f"http://127.0.0.1:{ports['metrics_port']}/metrics" in out
    for name in SERVE_MODELS:
        sig = _signature(repo, name)
        assert name in out
        for t in (*sig.inputs, *sig.outputs):
            assert f"{t.name}" in out and t.dtype in out and str([-1, *t.shape]) in out
    assert f"{SAMPLER}_torchscript" not in out  # --models served only what was asked
    assert "stopped" in rest
    _assert_nothing_left(processes, mapped, shm_before)
