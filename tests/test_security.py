"""Security: loopback by default, no model control, no pickles, a fenced demo, clean artifacts.

Every check runs against the real thing: the bundled Triton, the Gradio app
in this process, `ganexport` commands, and the files a build publishes.
"""

from __future__ import annotations

import base64
import getpass
import http.client
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ganexport.repository import CONFIG_FILE, MODEL_FILES, PARITY_FILE, PYTHON_MODEL_FILE, SIGNATURE_FILE
from ganexport.serving.addresses import free_port
from ganexport.serving.triton_server import RESTRICTED_HEADER

pytestmark = pytest.mark.integration
httpclient = pytest.importorskip("tritonclient.http")
import tritonclient.grpc as grpcclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "dcgan"
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- who listens where


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds, from /proc."""
    inodes = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.is_dir() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((_address(address, width), int(port, 16)))
    return found


def _address(hex_address: str, width: int) -> str:
    """/proc/net/tcp{,6} hex -> '127.0.0.1'; IPv4-mapped IPv6 (gRPC binds those) reads as the IPv4 address."""
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(ip.ipv4_mapped or ip)


def test_triton_and_its_stubs_listen_on_loopback_only(onnx_triton):
    """Triton (its private ports and metrics) and the front door (the public HTTP and gRPC ports, in the
    process that started the server, or the gRPC port in its compiled lane, a child, with the Python gRPC
    door behind it on a private port) listen on 127.0.0.1 and nowhere else."""
    sockets = listening(onnx_triton.pids())
    assert onnx_triton.metrics_port in {port for _, port in sockets}, sockets
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    ports = {onnx_triton.http_port, onnx_triton.grpc_port}
    pids = [os.getpid()]
    lane = onnx_triton.front_door.lane
    if lane is not None:
        pids.append(lane.pid)
        ports.add(int(lane.fallback.rsplit(":", 1)[1]))
    door = {(address, port) for address, port in listening(pids) if port in ports}
    assert door == {("127.0.0.1", port) for port in ports}, door


def test_the_demo_page_listens_on_loopback_only(published):
    from ganexport.demo.app import launch

    port = free_port()
    app = launch(backend_kind="onnxruntime", repository=published[0], port=port, prevent_thread_lock=True,
                 quiet=True)
    try:
        mine = {(address, p) for address, p in listening([os.getpid()]) if p == port}
        assert mine == {("127.0.0.1", port)}, mine
    finally:
        app.close()


def test_serve_and_demo_warn_before_binding_anything_else(published, tmp_path):
    """With --insecure (without it, and without a token or login file, they refuse: tests/test_auth_unit.py),
    an impossible port and a missing repository stop both commands before any socket is bound, yet the
    warning about --host 0.0.0.0 has already been printed."""
    from click.testing import CliRunner

    from ganexport.demo.demo_cli import demo
    from ganexport.serving.serve_cli import serve

    served = CliRunner().invoke(serve, ["--repository", str(published[0]), "--host", "0.0.0.0", "--insecure",
                                        "--http-port", "70000", "--grpc-port", str(free_port())])
    assert served.exit_code == 2 and "not a valid port number" in served.stderr, served.output
    assert served.stderr.startswith("warning: Triton will listen on 0.0.0.0"), served.stderr
    shown = CliRunner().invoke(demo, ["--repository", str(tmp_path / "missing"), "--host", "0.0.0.0", "--insecure"])
    assert shown.exit_code == 1 and "does not exist" in shown.stderr, shown.output
    assert shown.stderr.startswith("warning: the demo will listen on 0.0.0.0"), shown.stderr


# --------------------------------------------------------------------------- Triton's admin APIs


def _http(server, method: str, path: str, body: dict | None = None, headers: dict | None = None,
          base_url: str | None = None):
    """(status, JSON reply) of a raw request: no client library between the test and the server."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request((base_url or server.base_url) + path, data=data, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _assert_still_serving(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_model_ready(MODEL)
        shape = client.get_model_metadata(MODEL, as_json=True)["inputs"][0]["shape"]
        z = grpcclient.InferInput("z", [1, int(shape[-1])], "FP32")
        z.set_data_from_numpy(np.zeros((1, int(shape[-1])), np.float32))
        assert client.infer(MODEL, [z], client_timeout=30).as_numpy("image").shape[0] == 1
    finally:
        client.close()


def test_model_load_and_unload_are_refused_over_http(onnx_triton, tmp_path):
    """Including the load that carries its own model.py: that is remote code. The front door refuses them;
    Triton's own private port (which a local process could reach) wants a key it never handed out."""
    marker = tmp_path / "loaded-remote-code"
    payload = f"open({str(marker)!r}, 'w').close()\nclass TritonPythonModel:\n    pass\n".encode()
    attempts = {
        "unload": ("POST", f"/v2/repository/models/{MODEL}/unload", {}),
        "load": ("POST", f"/v2/repository/models/{MODEL}/load", {}),
        "load_new_model_with_files": ("POST", "/v2/repository/models/planted/load", {"parameters": {
            "config": json.dumps({"backend": "python", "max_batch_size": 0}),
            "file:1/model.py": base64.b64encode(payload).decode()}}),
    }
    for what, (method, path, body) in attempts.items():
        status, reply = _http(onnx_triton, method, path, body)
        assert status == 403 and "closed to clients" in reply["error"], (what, reply)
        for headers in ({}, {RESTRICTED_HEADER: "a guess"}):
            status, reply = _http(onnx_triton, method, path, body, headers, f"http://{onnx_triton.triton_http_url}")
            assert status == 403 and "restricted" in reply["error"], (what, headers, reply)
    assert not marker.exists()
    status, index = _http(onnx_triton, "POST", "/v2/repository/index", {})
    assert status == 200 and "planted" not in {m["name"] for m in index}
    _assert_still_serving(onnx_triton)


def test_model_load_and_unload_are_refused_over_grpc(onnx_triton):
    client = grpcclient.InferenceServerClient(onnx_triton.grpc_url)
    try:
        for call in (client.unload_model, client.load_model):
            with pytest.raises(InferenceServerException, match="closed to clients"):
                call(MODEL)
        assert MODEL in {m.name for m in client.get_model_repository_index().models}  # reading it stays open
    finally:
        client.close()
    _assert_still_serving(onnx_triton)


def test_shared_memory_registration_is_refused(onnx_triton):
    """A registered region is any /dev/shm segment the server then reads or writes for the client,
    the Python stubs' own included."""
    region = {"key": "/triton_python_backend_shm_region_guess", "offset": 0, "byte_size": 4096}
    status, reply = _http(onnx_triton, "POST", "/v2/systemsharedmemory/region/probe/register", region)
    assert status == 403 and "restricted" in reply["error"], reply
    status, reply = _http(onnx_triton, "POST", "/v2/systemsharedmemory/region/probe/register", region,
                          {RESTRICTED_HEADER: "a guess"})
    assert status == 403, reply
    client = grpcclient.InferenceServerClient(onnx_triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.register_system_shared_memory("probe", region["key"], region["byte_size"])
    finally:
        client.close()
    _assert_still_serving(onnx_triton)


def test_log_and_trace_settings_are_closed_to_clients(onnx_triton):
    """Otherwise any client could switch Triton's error log off, or read and move its log and trace files."""
    for method, path, body in (("POST", "/v2/logging", {"log_error": False, "log_verbose_level": 3}),
                               ("GET", "/v2/logging", None), ("GET", "/v2/trace/setting", None),
                               ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]}),
                               ("POST", f"/v2/models/{MODEL}/trace/setting", {"trace_rate": "1"})):
        status, reply = _http(onnx_triton, method, path, body)
        assert status == 403 and "restricted" in reply["error"], (method, path, reply)
    client = grpcclient.InferenceServerClient(onnx_triton.grpc_url)
    try:
        for call in (lambda: client.update_log_settings({"log_error": False}), client.get_log_settings,
                     client.get_trace_settings, lambda: client.update_trace_settings(settings={"trace_rate": "1"})):
            with pytest.raises(InferenceServerException, match="restricted") as e:
                call()
            assert e.value.status() == "StatusCode.PERMISSION_DENIED", e.value.status()  # not "retry later"
    finally:
        client.close()
    _assert_still_serving(onnx_triton)


# --------------------------------------------------------------------------- the demo's file routes


@pytest.fixture(scope="module")
def demo_url(published):
    """The demo on in-process ONNX Runtime (no Triton needed to test its HTTP surface)."""
    from ganexport.demo.app import launch

    port = free_port()
    app = launch(backend_kind="onnxruntime", repository=published[0], port=port, prevent_thread_lock=True,
                 quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def _get_raw(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` byte for byte: http.client sends '../' and '%2e' as given (httpx and browsers normalise)."""
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_demo_serves_no_file_outside_its_own_folders(demo_url, published, tmp_path):
    secret = tmp_path / "secret.txt"
    token = secrets.token_hex(16)
    secret.write_text(token)
    gradio_temp = Path(os.environ["GRADIO_TEMP_DIR"])
    served = sorted((gradio_temp / "examples").glob("*.png"))
    assert served, "the demo wrote no example photos"
    status, body = _get_raw(demo_url, f"/gradio_api/file={served[0]}")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n", "the file route itself must work"

    attempts = [
        "/gradio_api/file=/etc/passwd", "/file=/etc/passwd", "/gradio_api/file=//etc/passwd",
        "/gradio_api/file=../../../../../../etc/passwd", "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file=..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/gradio_api/file=%2Fetc%2Fpasswd",
        f"/gradio_api/file={gradio_temp}/../../../etc/passwd",
        f"/gradio_api/file={gradio_temp}/examples/../../../etc/passwd",
        "/gradio_api/file=/proc/self/environ", f"/gradio_api/file={secret}", f"/gradio_api/file={ROOT}/pyproject.toml",
        f"/gradio_api/file={published[0]}/{MODEL}/{CONFIG_FILE}", "/static/../../../../../etc/passwd",
        "/assets/../../../../../etc/passwd", "/gradio_api/file=~/.bashrc",
    ]
    for path in attempts:
        status, body = _get_raw(demo_url, path)
        assert status in (400, 403, 404), (path, status, body[:200])
        assert b"root:" not in body and token.encode() not in body and b"[tool.pytest" not in body, path


def test_the_demo_refuses_an_upload_above_its_cap(demo_url):
    """Raw multipart, not gradio_client (which checks the cap itself before sending): the SERVER refuses."""
    import httpx

    from ganexport.demo.app import MAX_UPLOAD_BYTES

    body = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_BYTES)
    r = httpx.post(f"{demo_url}gradio_api/upload", files={"files": ("big.png", body, "image/png")}, timeout=60)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    ok = httpx.post(f"{demo_url}gradio_api/upload", files={"files": ("small.png", body[:1000], "image/png")},
                    timeout=60)
    assert ok.status_code == 200, ok.text[:200]  # the cap, not a broken route


# --------------------------------------------------------------------------- published artifacts


def _needles(tmp_path_factory) -> dict[str, str]:
    """Strings that must never appear in a published file: this machine's paths, and secrets in the env."""
    found = {
        "home": str(Path.home()), "temp dir": tempfile.gettempdir(), "pytest temp": str(tmp_path_factory.getbasetemp()),
        "checkout": str(ROOT), "cwd": os.getcwd(), "python prefix": sys.prefix,
        "site-packages": sysconfig.get_paths()["purelib"], "cache": os.environ.get("GANEXPORT_CACHE", ""),
        "hostname": socket.gethostname(), "user": getpass.getuser(), "/tmp": "/tmp/", "/work": "/work/",
    }
    for key, value in os.environ.items():
        if re.search(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", key, re.I) and len(value) >= 8:
            found[f"${key}"] = value
    return {k: v for k, v in found.items() if len(v) >= 4}  # shorter strings occur by chance


def _text_of(path: Path) -> bytes:
    """The file's bytes minus its weights (random bytes match anything by chance), zip members unpacked."""
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        for tensor in model.graph.initializer:
            tensor.ClearField("raw_data")
        return model.SerializeToString()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return b"\n".join(n.encode() + b"\n" + z.read(n) for n in z.namelist() if "/data/" not in n)
    return path.read_bytes()


def test_published_artifacts_hold_no_local_path_or_secret(published, tmp_path_factory):
    repo = published[0]
    needles = _needles(tmp_path_factory)
    files = [p for p in sorted(repo.rglob("*")) if p.is_file()]
    kinds = {p.name for p in files}
    assert {CONFIG_FILE, *MODEL_FILES.values(), PYTHON_MODEL_FILE, SIGNATURE_FILE, PARITY_FILE} <= kinds, kinds
    assert not [p for p in repo.rglob("__pycache__")], "serving wrote bytecode into the repository"
    leaks = [f"{p.relative_to(repo)}: {what}" for p in files for what, needle in needles.items()
             if needle.encode() in _text_of(p)]
    assert not leaks, leaks
