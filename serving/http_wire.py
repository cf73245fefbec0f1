"""The front door's HTTP/1.1 server: an asyncio protocol around httptools' parser (llhttp, in C).

Why not aiohttp's web server, which the front door used first: per request it builds a Request, a
Response, header multidicts, a task and a router match, and that machinery cost several times what the
front door's own checks do. A pass-through needs much less: the request line, the headers, the body, and
the answer written back in one piece. This module does that and only that, with the limits a public port
needs; front_door_http.py holds the rules.

A request goes through two calls of the door's:

- ``admit(request)`` once its headers are in, before any byte of its body is read: None to go on, or a
  ``Reply`` to answer instead (a missing token, a body declared above the limit). The body of a refused
  request is never kept: it is skipped as it arrives, or the connection is closed after the answer when
  that body is large (``SKIP_AT_MOST``);
- ``handle(request)`` once its body is in (a gzip or deflate body inflated under ``request.limit``, the
  cap ``admit`` sets): a ``Reply``, whose body may be bytes or pieces (``stream``) with its length.

Answers go out in request order on a kept-alive connection; a connection idle for ``IDLE_S`` is closed.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import AsyncIterator, Awaitable, Callable

import httptools

MAX_HEAD = 64 * 1024  # request line and headers together
SKIP_AT_MOST = 1024 * 1024  # a refused request's body up to this is read and dropped (the connection stays)
IDLE_S = 75.0  # aiohttp's keep-alive timeout
QUEUED_AT_MOST = 4  # pipelined requests waiting for their turn before the connection stops reading
INFLATE_STEP = 1 << 20  # bytes a compressed body inflates by per step
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}


class TooLarge(Exception):
    """A body that passed ``Request.limit`` while it arrived (inflated, or chunked with no length)."""


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    path: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its values joined by ", "
    raw_headers: list[tuple[str, str]]  # as sent, in order: what is passed on
    peer: str | None
    content_length: int | None = None
    limit: int = 0  # the most body bytes this request may carry (inflated); admit() sets it
    body: bytes | bytearray = b""
    notes: dict = field(default_factory=dict)  # what admit() found out, for handle() (a token's name...)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None  # the body in pieces, ``length`` bytes in all (None: chunked)
    length: int | None = None
    close: bool = False  # close the connection once this answer is written
    hold: Callable[[], Awaitable] | None = None  # awaited before the answer is written (a client over its rate)
    on_written: Callable[[int], None] | None = None  # told the status once the answer is out (the access log)
    abandon: Callable[[], None] | None = None  # called when ``stream`` will not be read to its end


def json_reply(status: int, body: bytes, headers: list[tuple[str, str]] | None = None, close: bool = False) -> Reply:
    return Reply(status, [("Content-Type", "application/json"), *(headers or [])], body, close=close)


class HttpServer:
    """Listens with ``admit`` and ``handle``; ``start`` binds, ``stop`` closes every connection. ``refused``
    is told of every request this module refuses itself (malformed, a body above its cap, an unknown encoding)."""

    def __init__(self, admit: Callable[[Request], Reply | None], handle: Callable[[Request], Awaitable[Reply]],
                 refused: Callable[[], None] = lambda: None):
        self.admit, self.handle, self.refused = admit, handle, refused
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self, host: str, port: int, ssl=None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host, port, ssl=ssl, reuse_address=True)
        self._sweeper = loop.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_S / 5)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.idle_since is not None and now - conn.idle_since > IDLE_S:
                    conn.close()


class Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.queue: list[tuple[Request, Reply | None]] = []
        self.worker: asyncio.Task | None = None
        self.idle_since: float | None = time.monotonic()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._request: Request | None = None
        self._refusal: Reply | None = None
        self._body: bytearray | None = None
        self._size = 0
        self._inflate = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self._closing = True
        self.server.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()  # a request still with Triton: its connection there is dropped, not reused
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not offered here")
        except httptools.HttpParserError as e:
            if not self._closing:
                self._fail(400, f"malformed HTTP request: {e}")

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self._grow_head(len(name) + len(value))

    def _grow_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > MAX_HEAD:
            raise httptools.HttpParserError(f"request line and headers above {MAX_HEAD} bytes")

    def on_headers_complete(self) -> None:
        target = self._url.decode("latin-1")
        headers: dict[str, str] = {}
        for name, value in self._headers:
            low = name.lower()
            headers[low] = f"{headers[low]}, {value}" if low in headers else value
        length = headers.get("content-length")
        request = Request(self.parser.get_method().decode("latin-1"), target, target.partition("?")[0], headers,
                          self._headers, self.peer, int(length) if length and length.isdigit() else None)
        self._request = request
        refusal = self.server.admit(request)
        if refusal is not None:
            big = request.content_length is None or request.content_length > SKIP_AT_MOST
            if big and (request.content_length or "transfer-encoding" in headers):
                refusal.close = True  # its body is not read: nothing else can follow on this connection
                self._enqueue(request, refusal)
                self.transport.pause_reading()
                self._closing = True
                return
            self._refusal = refusal  # the body is skipped as it comes; answered at its end
            return
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("identity", *ENCODINGS):
            self._refusal = json_reply(415, b'{"error":%s}' % _json_string(f"unsupported Content-Encoding {encoding}"))
            self.server.refused()
            return
        if encoding != "identity":
            self._inflate = zlib.decompressobj(ENCODINGS[encoding])
        elif request.content_length is not None:
            self._body = bytearray(request.content_length)
        if self._body is None:
            self._body = bytearray()
        if headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes) -> None:
        if self._refusal is not None or self._closing:
            return
        try:
            if self._inflate is None:
                self._append(data)
            while self._inflate is not None and data:  # inflated a step at a time: never the whole body twice
                self._append(self._inflate.decompress(data, INFLATE_STEP))
                data = self._inflate.unconsumed_tail
        except TooLarge:
            self._fail(413, f"request body is above this endpoint's limit of {self._request.limit} bytes")
        except zlib.error as e:
            self._fail(400, f"the compressed body cannot be inflated: {e}")

    def _append(self, data: bytes) -> None:
        end = self._size + len(data)
        if end > self._request.limit:
            raise TooLarge
        if end <= len(self._body):
            self._body[self._size:end] = data
        else:
            self._body += data
        self._size = end

    def on_message_complete(self) -> None:
        if self._closing:
            return
        request = self._request
        if self._refusal is None:
            if self._inflate is not None:
                self._inflate = None
            if self._size != len(self._body):  # a shorter body than its Content-Length cannot complete; defensive
                del self._body[self._size:]
            request.body = self._body
        reply = self._refusal
        if not self.parser.should_keep_alive():
            request.headers["connection"] = "close"
        self._enqueue(request, reply)

    # -- answering -----------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        """Answer ``status`` after what is queued, then close: the rest of this connection cannot be trusted."""
        self.server.refused()
        body = b'{"error":%s}' % _json_string(message)
        self._enqueue(self._request, json_reply(status, body, close=True))
        self.transport.pause_reading()
        self._closing = True

    def _enqueue(self, request: Request | None, reply: Reply | None) -> None:
        self.queue.append((request, reply))
        if len(self.queue) >= QUEUED_AT_MOST and not self._closing:
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        try:
            while self.queue:
                request, reply = self.queue[0]
                if reply is None:
                    try:
                        reply = await self.server.handle(request)
                    except Exception as e:  # noqa: BLE001 - a bug must not leave the client waiting forever
                        reply = json_reply(500, b'{"error":%s}' % _json_string(f"front door: {type(e).__name__}"),
                                           close=True)
                if reply.hold is not None:
                    await reply.hold()
                close = reply.close or (request is not None and request.headers.get("connection", "").lower()
                                        == "close")
                try:
                    if self.transport.is_closing():
                        raise asyncio.CancelledError
                    await self._write(request, reply, close)
                except BaseException:
                    if reply.abandon is not None:
                        reply.abandon()
                    raise
                if reply.on_written is not None:
                    reply.on_written(reply.status)
                self.queue.pop(0)
                if close:
                    self.close()
                    return
                if len(self.queue) < QUEUED_AT_MOST and not self._closing:
                    self.transport.resume_reading()
        except asyncio.CancelledError:
            return
        finally:
            self.worker = None
            if not self.queue:
                self.idle_since = time.monotonic()

    async def _write(self, request: Request | None, reply: Reply, close: bool) -> None:
        head = [b"HTTP/1.1 %d %s\r\n" % (reply.status, _reason(reply.status))]
        head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in reply.headers]
        no_body = (request is not None and request.method == "HEAD") or reply.status in (204, 304)
        if reply.stream is None:
            head.append(b"Content-Length: %d\r\n" % len(reply.body))
        elif reply.length is not None:
            head.append(b"Content-Length: %d\r\n" % reply.length)
        else:
            head.append(b"Transfer-Encoding: chunked\r\n")
        if close:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        if reply.stream is None:
            self.transport.write(b"".join(head) + (b"" if no_body else reply.body))
            return
        self.transport.write(b"".join(head))
        chunked = reply.length is None
        async for piece in reply.stream:
            if self._closing and self.transport.is_closing():
                raise asyncio.CancelledError
            self.transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if not self._writable.is_set():
                await self._writable.wait()
        if chunked:
            self.transport.write(b"0\r\n\r\n")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def _json_string(text: str) -> bytes:
    return json.dumps(text).encode()
