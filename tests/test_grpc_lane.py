"""The compiled gRPC lane (serving/grpc_door.cc) answers every request exactly as the Python door does, and
sends straight to Triton only requests the Python door would pass.

Each request goes both ways on one real server: to the public gRPC port (the lane) and to the Python door's
private port behind it. The two answers must be equal, status and text, and the lane's own count of
requests it sent to Triton says which way it took. Where the lane is not built the module skips, except
under CI, where `make setup` builds it (tests/test_grpc_door_build.py fails there instead).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from needs_triton import httpclient  # noqa: F401 (skips this module without Triton)
from ganexport.repository import latest, read_signature
from ganexport.serving.front_door_grpc_compiled import door_binary

grpc = pytest.importorskip("grpc")
from tritonclient.grpc import service_pb2  # noqa: E402

pytestmark = pytest.mark.integration
if door_binary() is None:
    pytest.skip("the compiled gRPC door is not built (python -m ganexport.serving.grpc_door_build)",
                allow_module_level=True)

SAMPLER, LABELLED, TRANSLATOR = "dcgan", "cgan", "cyclegan_a2b"
SERVICE = "/inference.GRPCInferenceService/"
TIMEOUT = 60


@pytest.fixture(scope="module")
def server(published):
    from ganexport.serving.triton_server import TritonServer, free_port

    server = TritonServer(published[0], models=(SAMPLER, LABELLED, TRANSLATOR), http_port=free_port(),
                          grpc_port=free_port(), metrics_port=0, grpc_door="compiled")
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sigs(published):
    return {name: read_signature(latest(published[0], name)) for name in (SAMPLER, LABELLED, TRANSLATOR)}


@pytest.fixture(scope="module")
def both(server):
    """{"lane": channel to the public port, "python": channel to the Python door behind it}."""
    channels = {"lane": grpc.insecure_channel(server.grpc_url),
                "python": grpc.insecure_channel(server.front_door.lane.fallback)}
    yield channels
    for channel in channels.values():
        channel.close()


def ask(channel, message: bytes, method: str = "ModelInfer") -> tuple[str, object]:
    call = channel.unary_unary(SERVICE + method)
    try:
        return "OK", call(message, timeout=TIMEOUT)
    except grpc.RpcError as e:
        return e.code().name, e.details()


def request(model: str, tensors: list[tuple[str, str, list[int], bytes | None]], **fields):
    """tensors: (name, datatype, shape, raw bytes or None for no raw tensor)."""
    req = service_pb2.ModelInferRequest(model_name=model, **fields)
    for name, datatype, shape, raw in tensors:
        req.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw is not None:
            req.raw_input_contents.append(raw)
    return req


def z(sig, n=1, name=None, datatype="FP32", shape=None, nbytes=None):
    spec = sig.inputs[0]
    shape = shape or [n, *spec.shape]
    size = nbytes if nbytes is not None else int(np.prod(shape)) * 4
    return (name or spec.name, datatype, shape, np.full(size // 4, 0.25, np.float32).tobytes()[:size])


def label(sig, n=1, value=3):
    spec = sig.inputs[1]
    return (spec.name, spec.dtype, [n, *spec.shape], np.full((n, *spec.shape), value, spec.numpy_dtype).tobytes())


def image(h, w, n=1, nbytes=None):
    size = nbytes if nbytes is not None else n * h * w * 3
    return ("image", "UINT8", [n, h, w, 3], bytes(range(256)) * (size // 256) + bytes(size % 256))


def _cases(S):
    """name -> (ModelInferRequest bytes, whether the lane sends it straight to Triton)."""
    sampler, labelled, translator = S[SAMPLER], S[LABELLED], S[TRANSLATOR]
    side = translator.min_image_side or 8
    b = lambda r: r.SerializeToString()  # noqa: E731
    typed = request(SAMPLER, [z(sampler)[:3] + (None,)])
    typed.inputs[0].contents.fp32_contents.extend([0.25] * int(np.prod(z(sampler)[2])))
    shm = request(SAMPLER, [z(sampler)])
    shm.inputs[0].parameters["shared_memory_region"].string_param = "region"
    other_param = request(SAMPLER, [z(sampler)])
    other_param.inputs[0].parameters["binary_data_size"].int64_param = 256
    priority = request(SAMPLER, [z(sampler)])
    priority.parameters["priority"].uint64_param = 1
    outputs = request(SAMPLER, [z(sampler)])
    outputs.outputs.add(name=sampler.outputs[0].name)
    unpacked_shape = bytearray()  # name, datatype, then the shape as unpacked varints (field 3, wire type 0)
    for field, text in ((1, sampler.inputs[0].name), (2, "FP32")):
        unpacked_shape += bytes([field << 3 | 2, len(text)]) + text.encode()
    for dim in (1, *sampler.inputs[0].shape):
        unpacked_shape += bytes([3 << 3, dim])
    raw = z(sampler)[3]
    hand_made = (bytes([1 << 3 | 2, len(SAMPLER)]) + SAMPLER.encode() + bytes([5 << 3 | 2, len(unpacked_shape)])
                 + bytes(unpacked_shape) + bytes([7 << 3 | 2]) + _varint(len(raw)) + raw)
    return {
        "valid, batch 1": (b(request(SAMPLER, [z(sampler)])), True),
        "valid, the largest batch": (b(request(SAMPLER, [z(sampler, n=sampler.max_batch_size)])), True),
        "valid, two inputs": (b(request(LABELLED, [z(labelled, n=2), label(labelled, n=2)])), True),
        "valid, two inputs in the other order": (b(request(LABELLED, [label(labelled), z(labelled)])), True),
        "valid, an image of unequal sides": (b(request(TRANSLATOR, [image(side, 3 * side)])), True),
        "valid, with a version and an id": (b(request(SAMPLER, [z(sampler)], model_version="1", id="r-1")), True),
        "a version that is not published": (b(request(SAMPLER, [z(sampler)], model_version="7")), True),
        "request parameters (priority)": (b(priority), True),
        "requested outputs": (b(outputs), True),
        "batch above the largest": (b(request(SAMPLER, [z(sampler, n=sampler.max_batch_size + 1)])), False),
        "batch 0": (b(request(SAMPLER, [z(sampler, n=0)])), False),
        "wrong datatype": (b(request(SAMPLER, [z(sampler, datatype="FP64", nbytes=8 * 64)])), False),
        "wrong rank": (b(request(SAMPLER, [z(sampler, shape=[1, 2, 2, 2, 2])])), False),
        "a fixed dim off by one": (b(request(SAMPLER, [z(sampler, shape=[1, sampler.inputs[0].shape[0] + 1])])),
                                   False),
        "an image side below the minimum": (b(request(TRANSLATOR, [image(side - 1, side)])), False),
        "an image side above the maximum": (b(request(TRANSLATOR, [image(1, translator.max_image_side + 1,
                                                                         nbytes=0)])), False),
        "a negative dim": (b(request(TRANSLATOR, [image(-8, -8, nbytes=192)])), False),
        "a dim of 2^62 with no bytes": (b(request(TRANSLATOR, [image(2**62, 16, nbytes=0)])), False),
        "raw tensor one byte short": (b(request(SAMPLER, [z(sampler, nbytes=int(np.prod(z(sampler)[2])) * 4 - 1)])),
                                      False),
        "two raw tensors for one input": (_two_raws(request(SAMPLER, [z(sampler)])), False),
        "the same input twice": (b(request(SAMPLER, [z(sampler), z(sampler)])), False),
        "an unknown input": (b(request(SAMPLER, [z(sampler, name="not_z")])), False),
        "an input missing": (b(request(LABELLED, [z(labelled)])), False),
        "batch sizes that disagree": (b(request(LABELLED, [z(labelled, n=2), label(labelled, n=1)])), False),
        "typed contents": (b(typed), False),
        "shared-memory input": (b(shm), False),
        "another input parameter": (b(other_param), False),
        "an unknown model": (b(request("no_such_model", [z(sampler)])), False),
        "the model named twice": (b(request(TRANSLATOR, [z(sampler)])) + b(request(SAMPLER, [])), False),
        "an unknown field": (b(request(SAMPLER, [z(sampler)])) + _varint(99 << 3) + b"\0", False),
        "the shape unpacked": (hand_made, False),
        "an id that is not UTF-8": (b(request(SAMPLER, [z(sampler)])) + bytes([3 << 3 | 2, 2, 0xC3, 0x28]), False),
        "not protobuf at all": (b"\xff" * 40, False),
        "an empty message": (b"", False),
    }


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _two_raws(req) -> bytes:
    req.raw_input_contents.append(req.raw_input_contents[0])
    return req.SerializeToString()


def test_every_request_gets_the_python_doors_answer_and_only_valid_ones_skip_it(server, sigs, both):
    lane = server.front_door.lane
    passed = lambda: sum(lane.passed(m) for m in sigs)  # noqa: E731
    took = {}
    for name, (message, straight) in _cases(sigs).items():
        before = passed()
        through_lane = ask(both["lane"], message)
        took[name] = passed() - before
        assert through_lane == ask(both["python"], message), name
        assert took[name] == int(straight), f"{name}: {'sent straight to Triton' if took[name] else 'not'}"
    refused = [name for name, (message, _) in _cases(sigs).items() if ask(both["lane"], message)[0] != "OK"]
    assert "a version that is not published" in refused and "valid, batch 1" not in refused
    assert len(refused) >= 20, refused


def test_the_other_methods_are_the_python_doors_and_streaming_is_refused_the_same_way(server, both):
    for method, message in (("ServerLive", service_pb2.ServerLiveRequest()),
                            ("ServerReady", service_pb2.ServerReadyRequest()),
                            ("ModelReady", service_pb2.ModelReadyRequest(name=TRANSLATOR)),
                            ("ModelMetadata", service_pb2.ModelMetadataRequest(name=SAMPLER)),
                            ("RepositoryModelLoad", service_pb2.RepositoryModelLoadRequest(model_name=SAMPLER))):
        answers = [ask(both[way], message.SerializeToString(), method) for way in ("lane", "python")]
        assert answers[0] == answers[1], method
    assert answers[0][0] == "PERMISSION_DENIED"
    streams = []
    for way in ("lane", "python"):
        call = both[way].stream_stream(SERVICE + "ModelStreamInfer")
        with pytest.raises(grpc.RpcError) as err:
            list(call(iter([b""]), timeout=TIMEOUT))
        streams.append((err.value.code(), err.value.details()))
    assert streams[0] == streams[1] and streams[0][0] == grpc.StatusCode.UNIMPLEMENTED


def test_a_message_above_the_largest_request_is_refused_from_its_length(server, sigs, both):
    limit = server.front_door.gate.message_limit()
    message = request(TRANSLATOR, [image(1, 1, nbytes=limit + 1)]).SerializeToString()
    assert ask(both["lane"], message)[0] == ask(both["python"], message)[0] == "RESOURCE_EXHAUSTED"


def test_the_lanes_requests_count_as_the_models_activity(server, sigs, both):
    """The supervisor recycles a stub only once its model has been idle: requests through the lane count."""
    gate = server.front_door.gate
    time.sleep(1.0)
    sent = time.monotonic()
    assert ask(both["lane"], request(SAMPLER, [z(sigs[SAMPLER])]).SerializeToString())[0] == "OK"
    assert gate.last_request.get(SAMPLER, 0.0) < sent  # the Python door never saw it
    assert gate.idle_for(SAMPLER, since=0.0) < time.monotonic() - sent


def test_the_lane_comes_back_when_its_process_dies(server, sigs, both):
    lane = server.front_door.lane
    os.kill(lane.pid, signal.SIGKILL)
    message = request(SAMPLER, [z(sigs[SAMPLER])]).SerializeToString()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with grpc.insecure_channel(server.grpc_url) as channel:
            if ask(channel, message)[0] == "OK":
                break
        time.sleep(0.2)
    assert lane.restarts == 1
    with grpc.insecure_channel(server.grpc_url) as channel:
        assert ask(channel, message)[0] == "OK"


def test_a_stub_seen_dead_through_the_lane_makes_its_model_not_ready_until_restarted(server, sigs):
    """Last in this module: it restarts the server."""
    from pathlib import Path

    lane = server.front_door.lane
    stubs = [p for p in server.pids()[1:] if TRANSLATOR in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert len(stubs) == 1, stubs
    os.kill(stubs[0], signal.SIGKILL)
    time.sleep(0.5)
    message = request(TRANSLATOR, [image(16, 16)]).SerializeToString()
    with grpc.insecure_channel(server.grpc_url) as channel:
        before = lane.passed(TRANSLATOR)
        code, details = ask(channel, message)
        assert code != "OK" and "not healthy" in details, (code, details)
        assert lane.passed(TRANSLATOR) == before + 1  # it went straight to Triton, which said the stub is gone
        deadline = time.monotonic() + 5
        while TRANSLATOR not in server.front_door.gate.suspects and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = ask(channel, service_pb2.ModelReadyRequest(name=TRANSLATOR).SerializeToString(), "ModelReady")
        assert ready[0] == "OK" and not service_pb2.ModelReadyResponse.FromString(ready[1]).ready
        code, details = ask(channel, message)
        assert code == "UNAVAILABLE" and "retry" in details, (code, details)
        assert lane.passed(TRANSLATOR) == before + 1  # refused by the Python door, not sent to Triton
    server.restart(timeout=180)
    with grpc.insecure_channel(server.grpc_url) as channel:
        assert ask(channel, message)[0] == "OK"
    assert server.front_door.lane.passed(TRANSLATOR) == before + 2
