"""The front door's HTTP client for Triton's private loopback port: kept-alive connections, one write each way.

Why not aiohttp's ClientSession: per request it builds a ClientRequest, a ClientResponse, timers and
header multidicts, which cost the front door more CPU than the whole check of the request did. Triton's
HTTP side is one well-behaved peer on loopback, so a request here is its head and body written on a
kept connection, and the answer is read back by its Content-Length (or chunks): whole when small, else in
pieces of ``CHUNK`` bytes that the front door passes on as they come, so a large answer is never held whole.

Idle connections are kept for ``IDLE_S`` and closed by ``close_idle`` before Triton is stopped: an idle
keep-alive connection holds Triton's shutdown for its whole exit timeout. A request on a kept connection
that Triton closed meanwhile is sent once more on a fresh one, and only when no byte of an answer came back.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

IDLE_S = 15.0  # an idle connection older than this is closed rather than reused
CHUNK = 1 << 18  # request bodies and answers above this pass through in pieces of this size
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0  # no byte from Triton for this long: the connection is given up
MAX_CONNECTIONS = 128
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
                        "proxy-connection", "te", "trailer"})


class UpstreamError(ConnectionError):
    """Triton did not answer (refused, reset, closed mid-answer, silent too long): the front door says 503."""


class Answer:
    """Triton's answer: status, headers (hop-by-hop ones left out), and a body read with ``read`` (whole) or
    ``pieces`` (in CHUNK-sized parts); once the body is read the connection goes back to the pool."""

    def __init__(self, pool: "Upstream", conn: tuple, status: int, headers: list[tuple[str, str]],
                 length: int | None, chunked: bool, keep: bool):
        self._pool, self._conn = pool, conn
        self.status, self.headers, self.length = status, headers, length
        self._chunked, self._keep = chunked, keep

    async def read(self) -> bytes:
        if self.length is not None and not self._chunked:  # the usual case: one read, no list
            return b"".join([piece async for piece in self.pieces()]) if self.length > CHUNK else \
                await self._exactly(self.length)
        return b"".join([piece async for piece in self.pieces()])

    async def _exactly(self, n: int) -> bytes:
        try:
            data = await self._conn[0].readexactly(n) if n else b""
        except (OSError, asyncio.IncompleteReadError) as e:
            self.discard()
            raise UpstreamError(f"Triton closed the connection mid-answer ({type(e).__name__})") from None
        self.release()
        return data

    async def pieces(self) -> AsyncIterator[bytes]:
        reader = self._conn[0]
        try:
            if self._chunked:
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    async for piece in _pieces(reader, size):
                        yield piece
                    await reader.readexactly(2)
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any, end with an empty line
                    pass
            elif self.length is not None:
                async for piece in _pieces(reader, self.length):
                    yield piece
            else:  # no length and not chunked: the body ends with the connection
                self._keep = False
                while piece := await reader.read(CHUNK):
                    yield piece
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            self.discard()
            raise UpstreamError(f"Triton closed the connection mid-answer ({type(e).__name__})") from None
        except BaseException:  # the client went away while we relayed: this connection is mid-answer
            self.discard()
            raise
        self.release()

    def release(self) -> None:
        """The body was read whole: the connection may carry the next request."""
        if self._conn is not None:
            self._pool._give_back(self._conn, self._keep)
            self._conn = None

    def discard(self) -> None:
        """The body was not read (or not whole): the connection cannot be reused."""
        if self._conn is not None:
            self._pool._give_back(self._conn, False)
            self._conn = None


async def _pieces(reader: asyncio.StreamReader, n: int) -> AsyncIterator[bytes]:
    while n:
        piece = await reader.read(min(n, CHUNK))
        if not piece:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(piece)
        yield piece


class Upstream:
    """Kept-alive HTTP/1.1 connections to ``host:port``, at most MAX_CONNECTIONS at once."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._host = f"Host: {host}:{port}\r\n".encode()
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def request(self, method: str, target: str, headers: list[tuple[str, str]], body=b"") -> Answer:
        """Send one request (``body``: bytes or a bytearray) and read the head of its answer."""
        length = len(body)
        head = b"".join([f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host,
                         b"Content-Length: %d\r\n" % length if length or method in ("POST", "PUT") else b"",
                         "".join([f"{k}: {v}\r\n" for k, v in headers]).encode("latin-1"), b"\r\n"])
        async with self._slots:
            for attempt in (0, 1):
                conn, reused = await self._connection()
                reader, writer = conn
                timer = asyncio.get_running_loop().call_later(READ_TIMEOUT_S, writer.transport.abort)
                try:
                    writer.write(head + body if len(body) <= CHUNK else head)  # small: one send
                    if len(body) > CHUNK:
                        writer.write(body)
                    status_and_headers = await reader.readuntil(b"\r\n\r\n")
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                    writer.close()
                    if reused and attempt == 0 and not getattr(e, "partial", b""):
                        continue  # a kept connection that Triton had closed: once more, on a fresh one
                    raise UpstreamError(f"Triton closed the connection ({type(e).__name__})") from None
                except BaseException:  # cancelled (the client went away) before the answer: drop the connection
                    writer.close()
                    raise
                finally:
                    timer.cancel()
                return self._answer(conn, status_and_headers)
        raise AssertionError("unreachable")

    async def _connection(self):
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < IDLE_S and not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.close()
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=CHUNK),
                                          CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as e:
            raise UpstreamError(f"cannot connect ({type(e).__name__})") from None
        return conn, False

    def _answer(self, conn: tuple, head: bytes) -> Answer:
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            conn[1].close()
            raise UpstreamError(f"not an HTTP answer: {lines[0][:80]!r}") from None
        headers, length, chunked, keep = [], None, False, True
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            low = key.lower()
            if low == "content-length":
                length = int(value)
            elif low == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif low == "connection":
                keep = "close" not in value.lower()
            if low not in HOP_BY_HOP:
                headers.append((key, value))
        return Answer(self, conn, status, headers, length, chunked, keep)

    def _give_back(self, conn: tuple, keep: bool) -> None:
        if keep and not conn[1].is_closing():
            self._idle.append((*conn, time.monotonic()))
        else:
            conn[1].close()

    def close_idle(self) -> None:
        """Close every idle connection: before Triton stops, since an idle one holds its shutdown."""
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()
