"""The front door's HTTP side: cap, parse and check a request, then pass it to Triton unchanged.

Triton's HTTP/REST protocol (KServe v2) sends an inference request as a JSON header, optionally
followed by raw tensors whose sizes the header gives (``parameters.binary_data_size``); the
``Inference-Header-Content-Length`` header says where the JSON ends. Compressed bodies (gzip,
deflate) are inflated under the same cap, so a small compressed bomb is refused too.

With tokens, every path but ``/v2/health/*`` (what load balancers and KServe probes ask) wants the
Authorization header, checked before the body is read; with a certificate, the port speaks HTTPS only.

A pass-through should cost a request next to nothing, so the wire work is lean (http_wire.py: httptools'
parser, no per-request framework objects) and requests go to Triton on kept-alive connections
(upstream_http.py). What needs no body is decided once the headers are in (``admit``: who calls, the
caps, readiness, closed model control); the body is then read once into one buffer, only its JSON header
is parsed (a view, not a copy), and a large answer streams back in pieces instead of being held whole.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson

from ganexport.serving.auth import AUTH_HEADER, SCHEME, retry_after_header
from ganexport.serving.front_door import CLOSED_MODEL_CONTROL, Gatekeeper, Refused, json_data_values
from ganexport.serving.http_wire import HttpServer, Reply, Request, json_reply
from ganexport.serving.tls import TlsFiles
from ganexport.serving.upstream_http import CHUNK, Upstream, UpstreamError
from ganexport.serving.validation import Declared, InvalidInput

INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
MODEL_READY = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/ready$")
MODEL_CONTROL = re.compile(r"^/v2/repository/models/[^/]+/(load|unload)$")
REPOSITORY_INDEX = "/v2/repository/index"
OPEN_PREFIX = "/v2/health/"  # liveness and readiness: answered without a token
HEADER_LENGTH = "Inference-Header-Content-Length"
# Not passed on: they describe one hop's connection, or a body the front door re-frames (an inflated gzip
# body goes on plain); and Triton has no use for the client's token: it stays here.
NOT_PASSED_ON = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
                           "proxy-connection", "te", "trailer", "content-encoding", "expect", AUTH_HEADER})
BIG_BODY = 4 * 1024 * 1024  # parsed on a worker thread, a few at a time, so the loop keeps answering


class HttpDoor:
    def __init__(self, gate: Gatekeeper, upstream: str):
        self.gate = gate
        host, _, port = upstream.rpartition(":")
        # Only what the client sent is passed on: no Accept-Encoding of the door's own (Triton would then
        # gzip every answer: +30 ms for a 512x512 image); and no idle keep-alive connection is held while
        # Triton stops (close_idle, which TritonServer calls first), since one holds Triton's shutdown.
        self.upstream = Upstream(host, int(port))
        self.server = HttpServer(self.admit, self.handle, refused=self._count_refusal)
        self._parsing = asyncio.Semaphore(2)

    async def start(self, host: str, port: int, tls: TlsFiles | None = None) -> None:
        await self.server.start(host, port, tls.server_context() if tls is not None else None)

    async def stop(self) -> None:
        await self.server.stop()
        self.upstream.close_idle()

    def _count_refusal(self) -> None:
        self.gate.refused += 1

    def close_idle(self) -> None:
        """Drop the idle connections to Triton: an idle keep-alive connection holds Triton's shutdown."""
        self.upstream.close_idle()

    # -- before the body ------------------------------------------------------------------------

    def admit(self, request: Request) -> Reply | None:
        """Who calls (a token's name, or refused before anything else is read), then every rule that needs
        no body: readiness, closed model control, the body's cap (``request.limit``)."""
        path = request.path
        logged = self.gate.tokens is not None and not path.startswith(OPEN_PREFIX)
        name = None
        try:
            if logged:
                name = request.notes["name"] = self.gate.authenticate(request.headers.get(AUTH_HEADER))
                self.gate.throttle(name)
            infer, ready = INFER.match(path), MODEL_READY.match(path)
            model = (infer or ready).group(1) if (infer or ready) else None
            request.notes["model"] = model if infer else None
            if path == "/v2/health/ready" and not self.gate.ready():
                raise Refused("not ready: Triton is restarting", status=503)
            if ready and not self.gate.ready(model):
                raise Refused(f"{model} is not ready: it is being restarted", status=503)
            if MODEL_CONTROL.match(path):
                raise Refused(CLOSED_MODEL_CONTROL, status=403)
            request.limit = self.gate.body_limit(model if infer else None, HEADER_LENGTH.lower() in request.headers)
            if request.content_length is not None and request.content_length > request.limit:
                raise Refused(f"request body of {request.content_length} bytes is above this endpoint's "
                              f"limit of {request.limit} bytes", status=413)
        except Refused as e:
            self.gate.refused += 1
            reply = _error(str(e), e.status, e.retry_after)
            if e.retry_after is not None:
                wait = e.retry_after  # ``e`` is gone once the except block ends
                reply.hold = lambda: self.gate.hold(name, wait)
            return self._logged(request, reply) if logged else reply
        request.notes["logged"] = logged
        return None

    def _logged(self, request: Request, reply: Reply) -> Reply:
        """The reply, written to the access log under the caller's token name once it is out."""
        line = f"{request.method} {request.path[:200]}"
        reply.on_written = lambda status: self.gate.log("http", request.notes.get("name"), line, status, request.peer)
        return reply

    # -- with the body --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        model = request.notes.get("model")
        try:
            if request.body:
                await self._check(request, model)
        except (Refused, InvalidInput) as e:
            self.gate.refused += 1
            reply = _error(str(e), getattr(e, "status", 400))
        else:
            reply = await self._forward(request, model)
        return self._logged(request, reply) if request.notes.get("logged") else reply

    async def _check(self, request: Request, model: str | None) -> None:
        body = request.body
        header_length = request.headers.get(HEADER_LENGTH.lower())
        try:
            split = int(header_length) if header_length is not None else len(body)
        except ValueError:
            raise Refused(f"{HEADER_LENGTH} {header_length!r} is not a number") from None
        if not 0 <= split <= len(body):
            raise Refused(f"{HEADER_LENGTH} {split} is outside the body of {len(body)} bytes")
        header = memoryview(body)[:split]  # a view: the body is not copied
        if len(body) > BIG_BODY:
            async with self._parsing:
                await asyncio.get_running_loop().run_in_executor(None, self._check_header, header, len(body) - split,
                                                                 model)
        else:
            self._check_header(header, len(body) - split, model)

    def _check_header(self, header, binary_length: int, model: str | None) -> None:
        """The JSON header, followed by ``binary_length`` bytes of tensors, against the model's signature."""
        try:
            parsed = orjson.loads(header)
        except orjson.JSONDecodeError as e:
            raise Refused(f"malformed JSON: {e}") from None
        if model is not None:
            declared, values = infer_declaration(parsed, binary_length)
            self.gate.check_infer(model, declared, values)

    async def _forward(self, request: Request, model: str | None) -> Reply:
        """Triton's answer: whole when small, else in pieces as they come."""
        headers = [(k, v) for k, v in request.raw_headers if k.lower() not in NOT_PASSED_ON]
        if request.path == REPOSITORY_INDEX:  # read-only, but Triton restricts it with load and unload
            headers += self.gate.restricted.items()
        with self.gate.serving(model):
            try:
                answer = await self.upstream.request(request.method, request.target, headers, request.body)
                if request.method == "HEAD" or answer.status in (204, 304):
                    answer.length = 0
                payload = await answer.read() if answer.length is not None and answer.length <= CHUNK else None
            except UpstreamError as e:
                return _error(f"Triton is not answering (it may be restarting; retry in a few seconds): {e}", 503)
        if payload is not None:
            if answer.status >= 500 and model is not None:
                self.gate.saw_failure(model, payload[:2000].decode(errors="replace"))
            return Reply(answer.status, answer.headers, payload)
        return Reply(answer.status, answer.headers, stream=self._streamed(answer, model), length=answer.length,
                     abandon=answer.discard)

    async def _streamed(self, answer, model: str | None):
        with self.gate.serving(model):  # the model is busy until its answer is out
            async for piece in answer.pieces():
                yield piece


def infer_declaration(header: Any, binary_length: int) -> tuple[dict[str, Declared], dict[str, Any]]:
    """What an inference request's JSON header declares per input, and the JSON values it carries."""
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("malformed inference request: expected a JSON object with an \"inputs\" list")
    declared, values, binary_total = {}, {}, 0
    for item in header["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("malformed inference request: every input needs a \"name\"")
        name, shape, datatype = item["name"], item.get("shape"), item.get("datatype")
        if name in declared:
            raise InvalidInput(f"input {name!r} appears twice")
        if not isinstance(shape, list) or not isinstance(datatype, str):
            raise InvalidInput(f"input {name!r}: needs a \"shape\" list and a \"datatype\"")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"input {name!r}: \"parameters\" must be an object")
        if "shared_memory_region" in params:
            raise InvalidInput(f"input {name!r}: shared-memory inputs are not accepted by this server")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
            binary_total += size
            declared[name] = Declared(datatype, tuple(shape), nbytes=size)
        elif "data" in item:
            arr = json_data_values(name, item["data"])
            values[name] = arr
            declared[name] = Declared(datatype, tuple(shape), count=int(arr.size))
        else:
            declared[name] = Declared(datatype, tuple(shape))
    if binary_total != binary_length:
        raise InvalidInput(f"the inputs' binary_data_size add up to {binary_total} bytes, "
                           f"the body carries {binary_length} after the JSON header")
    return declared, values


def _error(message: str, status: int, retry_after: float | None = None) -> Reply:
    """Triton's own error form, which tritonclient turns into its exception's message; a 401 says which
    scheme to use (RFC 6750), a 429 when to come back."""
    headers = [("WWW-Authenticate", SCHEME)] if status == 401 else []
    if retry_after is not None:
        headers.append(("Retry-After", retry_after_header(retry_after)))
    return json_reply(status, orjson.dumps({"error": message}), headers)
