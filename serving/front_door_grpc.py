"""The front door's gRPC side (grpc.aio): every method of Triton's GRPCInferenceService passed on as
bytes, with ModelInfer parsed and checked first and readiness answered from the gate's state.

Messages above the largest valid request are refused by gRPC itself from their length prefix
(``grpc.max_receive_message_length``), before they are read. Streaming inference (ModelStreamInfer)
is refused: no model served here is decoupled, and a bidirectional proxy is more surface than use.

With tokens, every method but ServerLive and ServerReady (the health probes) wants the ``authorization``
metadata entry, checked before the message is parsed; with a certificate, the port speaks TLS only.
"""

from __future__ import annotations

import os

# The process that runs the front door also forks tritonserver (and restarts it); gRPC's fork handlers
# are for children that keep using gRPC, which an exec'd server never does, and they log a line per fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
# gRPC's core logs every failed TLS handshake (a client that does not trust the certificate, plain gRPC on
# the TLS port) as an INFO line on stderr: one per attempt, so any client could fill serve's output.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from tritonclient.grpc import service_pb2  # noqa: E402

from ganexport.serving.auth import AUTH_HEADER, retry_after_header  # noqa: E402
from ganexport.serving.front_door import CLOSED_MODEL_CONTROL, STUB_DIED, Gatekeeper, Refused  # noqa: E402
from ganexport.serving.grpc_wire import MalformedMessage, infer_header  # noqa: E402
from ganexport.serving.tls import TlsFiles  # noqa: E402
from ganexport.serving.validation import Declared, InvalidInput  # noqa: E402

GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"  # Triton's gRPC side wants the restricted header under this
SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# Which typed field of InferTensorContents carries each datatype's values when they are not raw bytes.
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                  "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                  "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                  "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
          415: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
          503: grpc.StatusCode.UNAVAILABLE}
OPEN_METHODS = {"ServerLive", "ServerReady"}  # the health probes: answered without a token
RETRY_AFTER = "retry-after"  # trailing metadata of a request over its rate: whole seconds, as HTTP's header


class GrpcDoor:
    def __init__(self, gate: Gatekeeper, upstream: str):
        self.gate, self.upstream = gate, upstream
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self, host: str, port: int, tls: TlsFiles | None = None) -> int:
        """Listen on host:port (port 0: any free one); returns the port."""
        limit = self.gate.message_limit()
        self._channel = grpc.aio.insecure_channel(self.upstream, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self._server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0)])
        handlers = {m.name: self._handler(m) for m in SERVICE.methods}
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)])
        address = f"{host}:{port}"
        bound = (self._server.add_secure_port(address, tls.grpc_credentials()) if tls is not None
                 else self._server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await self._server.start()
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if self._channel is not None:
            await self._channel.close()

    def _handler(self, method):
        path = f"/{SERVICE.full_name}/{method.name}"
        guarded = method.name not in OPEN_METHODS
        if method.client_streaming or method.server_streaming:
            async def refuse(requests, context):
                if guarded:
                    await self._admit(context, method.name)
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, streaming_refusal(method.name))
            return grpc.stream_stream_rpc_method_handler(refuse)
        upstream = self._channel.unary_unary(path)  # bytes in, bytes out: the same method on Triton
        pre = getattr(self, f"_before_{method.name}", None)

        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            name = await self._admit(context, method.name) if guarded else None
            model = None
            if pre is not None:
                try:
                    answer, model = pre(request)
                except Refused as e:
                    self.gate.refused += 1
                    await self._abort(context, name, method.name, STATUS.get(e.status,
                                      grpc.StatusCode.INVALID_ARGUMENT), str(e))
                except InvalidInput as e:
                    self.gate.refused += 1
                    await self._abort(context, name, method.name, grpc.StatusCode.INVALID_ARGUMENT, str(e))
                if answer is not None:
                    self._log(context, name, method.name, grpc.StatusCode.OK)
                    return answer
            metadata = [(k, v) for k, v in context.invocation_metadata() or ()
                        if not k.startswith(":") and k != AUTH_HEADER]
            if method.name == "RepositoryIndex":  # read-only, but Triton restricts it with load and unload
                metadata += [(GRPC_RESTRICTED_PREFIX + k, v) for k, v in self.gate.restricted.items()]
            target = f"{method.name} {model}" if model else method.name
            try:
                with self.gate.serving(model if method.name == "ModelInfer" else None):
                    answer = await upstream(request, metadata=metadata, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as e:
                if _unreachable(e):  # Triton is gone: say so without its private port
                    await self._abort(context, name, target, e.code(), UNREACHABLE_MESSAGE)
                if model is not None and STUB_DIED in (e.details() or ""):
                    self.gate.saw_failure(model, e.details())
                code = e.code()
                if code == grpc.StatusCode.UNAVAILABLE and RESTRICTED_WORDS in (e.details() or ""):
                    code = grpc.StatusCode.PERMISSION_DENIED  # a refusal for good, not "retry later" as Triton says
                await self._abort(context, name, target, code, e.details() or "")
            self._log(context, name, target, grpc.StatusCode.OK)
            return answer
        return grpc.unary_unary_rpc_method_handler(call)

    async def _admit(self, context: grpc.aio.ServicerContext, method: str) -> str | None:
        """The caller's token name, or the call ended with UNAUTHENTICATED / RESOURCE_EXHAUSTED (and a
        retry-after) before its message is parsed."""
        if self.gate.tokens is None:
            return None
        name = None
        try:
            header = next((v for k, v in context.invocation_metadata() or () if k == AUTH_HEADER), None)
            name = self.gate.authenticate(header)
            self.gate.throttle(name)
            return name
        except Refused as e:
            self.gate.refused += 1
            trailing = ()
            if e.retry_after is not None:
                await self.gate.hold(name, e.retry_after)
                trailing = ((RETRY_AFTER, retry_after_header(e.retry_after)),)
            await self._abort(context, name, method, STATUS[e.status], str(e), trailing)

    async def _abort(self, context, name: str | None, target: str, code: grpc.StatusCode, details: str,
                     trailing: tuple = ()) -> None:
        self._log(context, name, target, code)
        await context.abort(code, details, trailing_metadata=trailing)

    def _log(self, context, name: str | None, target: str, code: grpc.StatusCode) -> None:
        if self.gate.access_log is not None:
            self.gate.log("grpc", name, target, code.name, context.peer())

    # Each _before_<Method> returns (an answer to send instead of asking Triton, or None; the model name).

    def _before_ServerReady(self, request: bytes):
        return (None if self.gate.ready() else service_pb2.ServerReadyResponse(ready=False).SerializeToString()), None

    def _before_ModelReady(self, request: bytes):
        name = service_pb2.ModelReadyRequest.FromString(request).name
        answer = None if self.gate.ready(name) else service_pb2.ModelReadyResponse(ready=False).SerializeToString()
        return answer, name

    def _before_RepositoryModelLoad(self, request: bytes):
        raise Refused(CLOSED_MODEL_CONTROL, status=403)

    _before_RepositoryModelUnload = _before_RepositoryModelLoad

    def _before_ModelInfer(self, request: bytes):
        try:
            req, raw_sizes = infer_header(request)  # a large request's tensors are measured, not copied
        except MalformedMessage as e:
            raise InvalidInput(f"malformed ModelInferRequest: {e}") from None
        declared, values = infer_declaration(req, raw_sizes)
        self.gate.check_infer(req.model_name, declared, values)
        return None, req.model_name


# gRPC's own words when the connection to Triton fails; Triton answers UNAVAILABLE itself too (model
# control and shared memory refused), and those answers pass on as they are.
UNREACHABLE = ("failed to connect", "Socket closed", "Connection reset", "Broken pipe", "Connection refused")
UNREACHABLE_MESSAGE = "Triton is not answering (it may be restarting; retry in a few seconds)"  # no private port


# Triton's answer to a restricted call without the supervisor's key (HTTP: "This API ...", gRPC: "This protocol ...")
RESTRICTED_WORDS = "is restricted, expecting header"


def streaming_refusal(method: str) -> str:
    return f"{method} is not offered by this server; use ModelInfer"


def _unreachable(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.UNAVAILABLE and any(w in (error.details() or "") for w in UNREACHABLE)


def infer_declaration(req, raw_sizes: list[int] | None = None) -> tuple[dict[str, Declared], dict[str, np.ndarray]]:
    """What a ModelInferRequest declares per input: raw bytes (``raw_input_contents``, one per input, in
    order; or their sizes, ``raw_sizes``, when the request was read without them) or typed ``contents``;
    and the typed values, whose range the gate checks."""
    raw = [len(r) for r in req.raw_input_contents] if raw_sizes is None else raw_sizes
    if raw and len(raw) != len(req.inputs):
        raise InvalidInput(f"{len(req.inputs)} inputs but {len(raw)} raw_input_contents")
    declared, values = {}, {}
    for i, tensor in enumerate(req.inputs):
        if tensor.name in declared:
            raise InvalidInput(f"input {tensor.name!r} appears twice")
        if "shared_memory_region" in tensor.parameters:
            raise InvalidInput(f"input {tensor.name!r}: shared-memory inputs are not accepted by this server")
        shape = tuple(int(d) for d in tensor.shape)
        if raw:
            declared[tensor.name] = Declared(tensor.datatype, shape, nbytes=raw[i])
            continue
        field = CONTENTS_FIELD.get(tensor.datatype)
        if field is None or not tensor.HasField("contents"):
            declared[tensor.name] = Declared(tensor.datatype, shape)
            continue
        typed = getattr(tensor.contents, field)
        if field != "bytes_contents":
            values[tensor.name] = np.asarray(typed)
        declared[tensor.name] = Declared(tensor.datatype, shape, count=len(typed))
    return declared, values
