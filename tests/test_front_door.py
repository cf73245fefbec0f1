"""The front door refuses what would crash or exhaust this Triton build, and keeps readiness honest.

The hostile corpus is what took the bundled tritonserver 2.51 down when it faced clients itself: a JSON
body nested 60,000 levels deep (SIGSEGV of the server), declared dims of 2^62 whose byte size wraps to 0
and negative dims over gRPC (each killed a model's stub for good), a 120-byte JSON request declaring
[100000, 256, 256, 3] (19 GB of server RSS), UINT8 JSON values above 255 (wrapped silently), plus a
compressed body that inflates to 200 MB. Each is sent raw (no client-side checks) to the real server;
after each the same tritonserver process still runs, a good request is answered, and the server's peak
RSS (VmHWM) stays under twice its peak at the largest legal request.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ganexport.catalog import MAX_IMAGE_SIDE
from ganexport.repository import latest, read_signature
from ganexport.serving.front_door import HEADER_ALLOWANCE, Gatekeeper, Refused
from ganexport.serving.front_door_http import infer_declaration
from ganexport.serving.validation import Declared, InvalidInput, check_json_values, validate_declared

SAMPLER, TRANSLATOR = "dcgan", "cyclegan_a2b"
TIMEOUT = 60


@pytest.fixture(scope="module")
def sigs(published):
    repo = published[0]
    return {name: read_signature(latest(repo, name)) for name in (SAMPLER, TRANSLATOR)}


# --------------------------------------------------------------------------- the rules, without a server


def test_declared_shapes_are_refused_by_arithmetic_before_any_data(sigs):
    sig = sigs[TRANSLATOR]
    name = sig.inputs[0].name
    refused = {
        "dim of 2^62 with 0 bytes": Declared("UINT8", (1, 2**62, 16, 3), nbytes=0),
        "negative dims": Declared("UINT8", (1, -8, -8, 3), nbytes=192),
        "batch of 100000": Declared("UINT8", (100000, 256, 256, 3), count=3),
        "bytes that do not fill the shape": Declared("UINT8", (1, 16, 16, 3), nbytes=100),
        "values that do not fill the shape": Declared("UINT8", (1, 16, 16, 3), count=3),
        "no data at all": Declared("UINT8", (1, 16, 16, 3)),
        "a float dim": Declared("UINT8", (1, 16.5, 16, 3), nbytes=768),
    }
    for why, declared in refused.items():
        with pytest.raises(InvalidInput):
            validate_declared(sig, {name: declared})
            pytest.fail(f"accepted: {why}")
    validate_declared(sig, {name: Declared("UINT8", (8, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3),
                                           nbytes=8 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE * 3)})  # the legal maximum


def test_json_values_must_fit_the_dtype(sigs):
    sig = sigs[TRANSLATOR]
    name = sig.inputs[0].name
    for bad in ([300], [511, 0], [-1], [1.5]):
        with pytest.raises(InvalidInput):
            check_json_values(sig, name, np.asarray(bad))
    check_json_values(sig, name, np.asarray([0, 255, 17]))


def _largest_request(sig) -> dict[str, np.ndarray]:
    """Every input of ``sig`` at the largest valid size (max batch, max side), holding the value with the longest
    text in JSON: 255 for images, a float like -1.2345678e-05, the top of a label's range."""
    shape = lambda spec: (sig.max_batch_size, *(sig.max_image_side if d == -1 else d for d in spec.shape))  # noqa: E731
    fill = {"UINT8": 255, "FP32": -1.2345678e-05}
    return {spec.name: np.full(shape(spec), fill.get(spec.dtype, spec.high), spec.numpy_dtype) for spec in sig.inputs}


def _body(sig, inputs: dict[str, np.ndarray], binary: bool) -> tuple[int, int]:
    """(the whole body, its tensor data) in bytes, of the request tritonclient writes for ``inputs``."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        tensor = httpclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value, binary_data=binary)
        tensors.append(tensor)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(tensors)
    if binary:
        return len(body), len(body) - json_size
    empty = {name: value[:0] for name, value in inputs.items()}  # the same JSON without the values
    bare = httpclient.InferenceServerClient.generate_request_body(
        [httpclient.InferInput(n, list(v.shape), np_to_triton_dtype(v.dtype)) for n, v in empty.items()])[0]
    return len(body), len(body) - len(bare)


def test_body_limits_fit_the_largest_valid_request_as_tritonclient_writes_it(sigs):
    """Measured on what tritonclient sends, not recomputed: the largest valid request fits under each cap, and the
    cap is no looser than that request (binary: its tensor bytes exactly; JSON: within the longest value's text).
    The translator's JSON is measured at sides of 16 (a 1024-side JSON body is 100 MB of text); the cap scales
    with the values either way."""
    from dataclasses import replace

    for sig in (sigs[SAMPLER], sigs[TRANSLATOR], replace(sigs[TRANSLATOR], max_image_side=16)):
        gate, largest = Gatekeeper({sig.name: sig}), _largest_request(sig)
        for binary in (True, sig.max_image_side == 16 or sig.kind != "translate"):
            whole, data = _body(sig, largest, binary)
            cap = gate.body_limit(sig.name, binary=binary)
            assert whole <= cap, (sig.name, binary, whole, cap)
            if binary:
                assert cap - HEADER_ALLOWANCE == sum(v.nbytes for v in largest.values()) == data
            else:
                assert data <= cap - HEADER_ALLOWANCE <= 1.25 * data, (sig.name, data, cap - HEADER_ALLOWANCE)
    assert sigs[TRANSLATOR].max_image_side == MAX_IMAGE_SIDE


def test_an_http_declaration_must_add_up(sigs):
    header = {"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                          "parameters": {"binary_data_size": 192}}]}
    declared, _ = infer_declaration(header, 192)
    assert declared["image"].nbytes == 192
    with pytest.raises(InvalidInput, match="add up to 192 bytes"):
        infer_declaration(header, 0)
    shm = {"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                       "parameters": {"shared_memory_region": "x", "shared_memory_byte_size": 192}}]}
    with pytest.raises(InvalidInput, match="shared-memory"):
        infer_declaration(shm, 0)
    with pytest.raises(InvalidInput, match="not a regular array"):
        infer_declaration({"inputs": [{"name": "image", "shape": [2, 2], "datatype": "UINT8",
                                       "data": [[1, 2], [3]]}]}, 0)


def test_a_large_grpc_request_is_read_without_its_tensors_and_declares_what_protobuf_reads():
    from tritonclient.grpc import service_pb2

    from ganexport.serving.front_door_grpc import infer_declaration as grpc_declaration
    from ganexport.serving.grpc_wire import WALK_ABOVE, MalformedMessage, infer_header

    request = service_pb2.ModelInferRequest(model_name=TRANSLATOR, model_version="1", id="big")
    request.parameters["priority"].int64_param = 3
    for name, side in (("image", 640), ("mask", 9)):  # two raw tensors, one above the walk threshold
        request.inputs.add(name=name, datatype="UINT8", shape=[1, side, side, 3])
        request.raw_input_contents.append(bytes(range(256)) * (side * side * 3 // 256) + b"x" * (side * side * 3 % 256))
    request.outputs.add(name="translated")
    message = request.SerializeToString()
    assert len(message) > WALK_ABOVE
    header, sizes = infer_header(message)
    assert sizes == [640 * 640 * 3, 9 * 9 * 3] and not header.raw_input_contents
    whole = service_pb2.ModelInferRequest.FromString(message)
    del whole.raw_input_contents[:]
    assert header == whole  # every other field, as protobuf reads it
    assert grpc_declaration(header, sizes) == grpc_declaration(service_pb2.ModelInferRequest.FromString(message))
    for broken in (message[:-5], message[:WALK_ABOVE], b"\x0f" + message):  # cut short; wire type 7
        with pytest.raises(MalformedMessage):
            infer_header(broken)


def test_readiness_follows_the_supervisor_and_dead_stubs(sigs):
    woken = []
    gate = Gatekeeper(sigs, on_suspect=woken.append)
    assert gate.ready() and gate.ready(TRANSLATOR)
    gate.saw_failure(TRANSLATOR, "Failed to process the request(s) for model 'x', message: Stub process "
                                 "'x_0_0' is not healthy.")
    assert woken == [TRANSLATOR] and not gate.ready() and not gate.ready(TRANSLATOR) and gate.ready(SAMPLER)
    with pytest.raises(Refused) as refused:
        gate.check_infer(TRANSLATOR, {}, {})
    assert refused.value.status == 503
    gate.restarting()
    assert not gate.ready(SAMPLER)
    gate.restarted()
    assert gate.ready() and gate.ready(TRANSLATOR)


# --------------------------------------------------------------------------- the real server


def _post(server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(server.base_url + path, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            return r.status, r.read(300).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}").get("error", "")


def _binary_request(name: str, shape: list[int], data: bytes) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "UINT8",
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def _vm_hwm(pid: int) -> int:
    """Peak resident set of a process in bytes (the kernel's high-water mark, so no polling)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _reset_own_peak() -> int:
    """Resets this process's VmHWM to its current resident set (Linux clear_refs 5); returns that in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _vm_hwm(os.getpid())


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip body inflating to ``size`` zero bytes, compressed a MiB at a time (never ``size`` bytes in memory)."""
    import zlib

    packer, chunk = zlib.compressobj(1, zlib.DEFLATED, 31), bytes(2**20)  # wbits 31: the gzip container
    return b"".join(packer.compress(chunk) for _ in range(size // len(chunk))) + packer.flush()


def _answers(server, sigs) -> None:
    from ganexport.serving.backends import connect

    for protocol, url in (("triton-http", server.http_url), ("triton-grpc", server.grpc_url)):
        with connect(protocol, url=url) as backend:
            out = backend.translate(TRANSLATOR, np.full((1, 16, 16, 3), 90, np.uint8))
            assert out.shape == (1, 16, 16, 3)


def _grpc_infer(server, shape, raw: bytes | None = None, uint_values=None):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name=TRANSLATOR)
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    if uint_values is not None:
        tensor.contents.uint_contents.extend(uint_values)
    with grpc.insecure_channel(server.grpc_url) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=TIMEOUT)
        except grpc.RpcError as e:
            return e.code().name, e.details()
    return "OK", ""


@pytest.mark.integration
def test_the_hostile_corpus_is_refused_and_the_server_neither_dies_nor_grows(onnx_triton, sigs):
    """The front door runs in this process (a thread of TritonServer), so its memory is this process's: its peak
    is reset (/proc/self/clear_refs) before the largest legal request and again before the corpus, every body
    being built beforehand, and what the corpus adds must stay under what one legal request may take."""
    server = onnx_triton
    pid = server.process.pid
    infer = f"/v2/models/{TRANSLATOR}/infer"
    largest = np.zeros((8, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3), np.uint8)  # the largest legal request
    body, headers = _binary_request("image", list(largest.shape), largest.tobytes())
    deep = (b'{"inputs":[{"name":"image","shape":[1,8,8,3],"datatype":"UINT8","data":'
            + b"[" * 60000 + b"]" * 60000 + b"}]}")
    huge = json.dumps({"inputs": [{"name": "image", "shape": [100000, 256, 256, 3], "datatype": "UINT8",
                                   "data": [1, 2, 3]}]}).encode()
    wraps = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                                    "data": [300] * 96 + [511] * 96}]}).encode()
    bomb = _gzip_of_zeros(200 * 1024 * 1024)

    door_before = _reset_own_peak()
    status, _ = _post(server, infer, body, headers)
    assert status == 200
    legal_peak, door_legal = _vm_hwm(pid), _vm_hwm(os.getpid()) - door_before
    door_before = _reset_own_peak()
    http_cases = {
        "JSON nested 60,000 levels": (deep, {}, 400, "depth limit"),
        "JSON declaring [100000, 256, 256, 3]": (huge, {}, 400, "above max_batch_size"),
        "UINT8 JSON values 300 and 511": (wraps, {}, 400, "must lie in [0, 255]"),
        "binary dim 2^62 with 0 bytes": (*_binary_request("image", [1, 2**62, 16, 3], b""), 400, "maximum side"),
        "binary negative dims": (*_binary_request("image", [1, -8, -8, 3], b"\0" * 192), 400, "non-negative"),
        "gzip body inflating to 200 MB": (bomb, {"Content-Encoding": "gzip"}, 413, "limit of"),
    }
    for why, (body, headers, want, fragment) in http_cases.items():
        status, message = _post(server, infer, body, headers)
        assert (status, fragment in message) == (want, True), f"{why}: {status} {message}"
        assert server.process.poll() is None and server.process.pid == pid, f"{why}: tritonserver died"
        _answers(server, sigs)

    grpc_cases = {
        "dim 2^62 with 0 bytes": (dict(shape=[1, 2**62, 16, 3], raw=b""), "maximum side"),
        "negative dims": (dict(shape=[1, -8, -8, 3], raw=b"\0" * 192), "non-negative"),
        "declared [100000, 256, 256, 3]": (dict(shape=[100000, 256, 256, 3], raw=b"\0" * 192), "max_batch_size"),
        "typed UINT8 values of 300": (dict(shape=[1, 8, 8, 3], uint_values=[300] * 192), "must lie in [0, 255]"),
    }
    for why, (kw, fragment) in grpc_cases.items():
        code, details = _grpc_infer(server, **kw)
        assert (code, fragment in details) == ("INVALID_ARGUMENT", True), f"gRPC {why}: {code} {details}"
        assert server.process.poll() is None and server.process.pid == pid, f"gRPC {why}: tritonserver died"
        _answers(server, sigs)

    peak, door_hostile = _vm_hwm(pid), _vm_hwm(os.getpid()) - door_before
    print(f"\n[front door] tritonserver peak RSS {legal_peak / 2**20:.0f} MiB after the largest legal request, "
          f"{peak / 2**20:.0f} MiB after {len(http_cases) + len(grpc_cases)} hostile requests; the front door's "
          f"process grew {door_legal / 2**20:.0f} MiB at its peak for the legal request, "
          f"{door_hostile / 2**20:.0f} MiB for the hostile ones")
    assert peak <= 2 * legal_peak
    # A JSON body may legally be this large, and the door must hold one to check it; the gzip bomb inflates up to
    # it and is refused there. The process's peak also carries the allocator's slack (a growing buffer may be
    # copied once below glibc's mmap threshold): 1.26x was measured, and that the body is held once, never twice,
    # is pinned without the allocator in tests/test_http_wire.py.
    json_limit = Gatekeeper({TRANSLATOR: sigs[TRANSLATOR]}).body_limit(TRANSLATOR, binary=False)
    assert door_hostile <= max(door_legal, 1.5 * json_limit)
    assert server.front_door.gate.refused >= len(http_cases) + len(grpc_cases)


@pytest.mark.integration
def test_a_dead_stub_makes_its_model_not_ready_until_the_server_is_restarted(published, sigs):
    """Triton keeps answering ready for a model whose stub is gone; the front door does not."""
    from ganexport.serving.triton_server import TritonServer, free_port

    server = TritonServer(published[0], models=(SAMPLER, TRANSLATOR), http_port=free_port(),
                          grpc_port=free_port(), metrics_port=0)
    server.start(timeout=180)
    try:
        stubs = [p for p in server.pids()[1:] if TRANSLATOR in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        assert len(stubs) == 1, stubs
        os.kill(stubs[0], signal.SIGKILL)
        time.sleep(0.5)
        probe = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                                        "data": [1] * 192}]}).encode()
        status, message = _post(server, f"/v2/models/{TRANSLATOR}/infer", probe)
        assert status >= 500 and "not healthy" in message, (status, message)
        ready = lambda path: _status(server.base_url + path)  # noqa: E731
        assert ready("/v2/health/ready") == 503 and ready(f"/v2/models/{TRANSLATOR}/ready") == 503
        assert ready(f"/v2/models/{SAMPLER}/ready") == 200
        assert _status(f"http://{server.triton_http_url}/v2/health/ready") == 200  # what Triton itself claims
        status, message = _post(server, f"/v2/models/{TRANSLATOR}/infer", probe)
        assert status == 503 and "retry" in message, (status, message)
        server.restart(timeout=180)
        assert ready("/v2/health/ready") == 200 and ready(f"/v2/models/{TRANSLATOR}/ready") == 200
        _answers(server, sigs)
    finally:
        server.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.integration
def test_responses_are_compressed_only_for_clients_that_ask(onnx_triton):
    """The front door adds no Accept-Encoding of its own: Triton would gzip every image it returns."""
    body, binary = _binary_request("image", [1, 64, 64, 3], bytes(64 * 64 * 3))
    header = json.loads(body[:int(binary["Inference-Header-Content-Length"])])
    header["outputs"] = [{"name": "translated", "parameters": {"binary_data": True}}]
    head = json.dumps(header).encode()
    body = head + bytes(64 * 64 * 3)
    for asked, expected in ((None, None), ("gzip", "gzip")):
        # http.client, not urllib: urllib always sends "Accept-Encoding: identity", tritonclient sends none
        connection = http.client.HTTPConnection(onnx_triton.http_url, timeout=TIMEOUT)
        connection.putrequest("POST", f"/v2/models/{TRANSLATOR}/infer", skip_accept_encoding=True)
        for key, value in {"Inference-Header-Content-Length": str(len(head)), "Content-Length": str(len(body)),
                           **({"Accept-Encoding": asked} if asked else {})}.items():
            connection.putheader(key, value)
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200 and response.getheader("Content-Encoding") == expected, (asked, response.headers)
