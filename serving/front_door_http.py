"""The front door's HTTP side (aiohttp): cap, parse and check a request, then pass it to Triton unchanged.

Triton's HTTP/REST protocol (KServe v2) sends an inference request as a JSON header, optionally
followed by raw tensors whose sizes the header gives (``parameters.binary_data_size``); the
``Inference-Header-Content-Length`` header says where the JSON ends. Compressed bodies (gzip,
deflate) are inflated under the same cap, so a small compressed bomb is refused too.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import ClientConnectionError, ClientSession, ClientTimeout, TCPConnector, web

from ganexport.serving.front_door import CLOSED_MODEL_CONTROL, Gatekeeper, Refused, json_data_values
from ganexport.serving.validation import Declared, InvalidInput

INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
MODEL_READY = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/ready$")
MODEL_CONTROL = re.compile(r"^/v2/repository/models/[^/]+/(load|unload)$")
REPOSITORY_INDEX = "/v2/repository/index"
HEADER_LENGTH = "Inference-Header-Content-Length"
# Not passed on: they describe one hop's connection, or a body the front door re-frames.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
              "proxy-connection", "te", "trailer", "content-encoding"}
BIG_BODY = 4 * 1024 * 1024  # parsed on a worker thread, a few at a time, so the loop keeps answering


class HttpDoor:
    def __init__(self, gate: Gatekeeper, upstream: str):
        self.gate, self.upstream = gate, f"http://{upstream}"
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._parsing = asyncio.Semaphore(2)

    async def start(self, host: str, port: int) -> None:
        # force_close: no idle keep-alive connection to Triton, which would hold its shutdown (and so every
        # supervised restart) for its whole --exit-timeout-secs; a loopback connect costs far less.
        # skip_auto_headers: aiohttp would add "Accept-Encoding: gzip, deflate" to every request, and Triton
        # would then gzip every response (+30 ms for a 512x512 image); only a client that asks gets it.
        self._session = ClientSession(connector=TCPConnector(limit=128, force_close=True), auto_decompress=False,
                                      skip_auto_headers=("Accept-Encoding", "User-Agent"),
                                      timeout=ClientTimeout(total=None, sock_connect=5, sock_read=600))
        app = web.Application(client_max_size=self.gate.message_limit())
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        infer, ready = INFER.match(path), MODEL_READY.match(path)
        model = (infer or ready).group(1) if (infer or ready) else None
        try:
            if path == "/v2/health/ready" and not self.gate.ready():
                raise Refused("not ready: Triton is restarting", status=503)
            if ready and not self.gate.ready(model):
                raise Refused(f"{model} is not ready: it is being restarted", status=503)
            if MODEL_CONTROL.match(path):
                raise Refused(CLOSED_MODEL_CONTROL, status=403)
            body = b""
            if request.method == "POST" or request.can_read_body:
                binary = HEADER_LENGTH.lower() in {k.lower() for k in request.headers}
                body = await self._read(request, self.gate.body_limit(model if infer else None, binary))
                if body:
                    await self._check(request, body, model if infer else None)
        except Refused as e:
            self.gate.refused += 1
            return _error(str(e), e.status)
        except InvalidInput as e:
            self.gate.refused += 1
            return _error(str(e), 400)
        with self.gate.serving(model if infer else None):
            return await self._forward(request, body, model)

    async def _read(self, request: web.Request, limit: int) -> bytes:
        """The whole body, refused (413) as soon as it passes ``limit``. aiohttp inflates a gzip or deflate
        body chunk by chunk as it arrives, so the count is of inflated bytes and a small bomb stops early."""
        if request.content_length is not None and request.content_length > limit:
            raise Refused(f"request body of {request.content_length} bytes is above this endpoint's "
                          f"limit of {limit} bytes", status=413)
        if request.content_length is not None and "Content-Encoding" not in request.headers:
            try:
                return await request.content.readexactly(request.content_length)
            except asyncio.IncompleteReadError:
                raise Refused("the request body is shorter than its Content-Length") from None
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise Refused(f"request body is above this endpoint's limit of {limit} bytes", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _check(self, request: web.Request, body: bytes, model: str | None) -> None:
        header_length = request.headers.get(HEADER_LENGTH)
        try:
            split = int(header_length) if header_length is not None else len(body)
        except ValueError:
            raise Refused(f"{HEADER_LENGTH} {header_length!r} is not a number") from None
        if not 0 <= split <= len(body):
            raise Refused(f"{HEADER_LENGTH} {split} is outside the body of {len(body)} bytes")
        if len(body) > BIG_BODY:
            async with self._parsing:
                await asyncio.get_running_loop().run_in_executor(None, self._check_sync, body, split, model)
        else:
            self._check_sync(body, split, model)

    def _check_sync(self, body: bytes, split: int, model: str | None) -> None:
        try:
            header = orjson.loads(body[:split])
        except orjson.JSONDecodeError as e:
            raise Refused(f"malformed JSON: {e}") from None
        if model is not None:
            declared, values = infer_declaration(header, len(body) - split)
            self.gate.check_infer(model, declared, values)

    async def _forward(self, request: web.Request, body: bytes, model: str | None) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.path == REPOSITORY_INDEX:  # read-only, but Triton restricts it with load and unload
            headers.update(self.gate.restricted)
        url = self.upstream + request.rel_url.raw_path_qs
        try:
            async with self._session.request(request.method, url, data=body or None, headers=headers) as up:
                payload = await up.read()
                out = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP - {"content-encoding"}}
                status = up.status
        except (ClientConnectionError, asyncio.TimeoutError) as e:
            return _error(f"Triton is not answering (it may be restarting; retry in a few seconds): "
                          f"{type(e).__name__}", 503)
        if status >= 500 and model is not None:
            self.gate.saw_failure(model, payload[:2000].decode(errors="replace"))
        return web.Response(status=status, body=payload, headers=out)


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


def _error(message: str, status: int) -> web.Response:
    """Triton's own error form, which tritonclient turns into its exception's message."""
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type="application/json")
