"""The front door's HTTP server on its own (a real socket, no Triton): what a compressed body costs it."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc

from ganexport.serving.http_wire import HttpServer, json_reply
from ganexport.serving.triton_server import free_port

LIMIT = 16 * 2**20  # the cap admit() puts on the body, inflated


def _post_gzip(port: int, inflated: int) -> tuple[int, int]:
    """(status, peak bytes the server allocated) for a gzip body that inflates to ``inflated`` bytes of zeros."""
    body = gzip.compress(b"\0" * inflated, compresslevel=9)
    got = []

    def admit(request):
        request.limit = LIMIT

    async def handle(request):
        got.append(len(request.body))
        return json_reply(200, b"{}")

    async def run() -> int:
        server = HttpServer(admit, handle)
        await server.start("127.0.0.1", port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            writer.close()
            return status
        finally:
            await server.stop()

    tracemalloc.start()
    try:
        status = asyncio.run(run())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return status, peak, got


def test_a_gzip_body_is_inflated_under_its_cap_and_held_once():
    """A body that inflates to just under the cap is taken whole; a bomb is refused at the cap. Either way the
    server holds the inflated body once (a bytearray grown in steps), never the body and a copy of it."""
    status, peak, got = _post_gzip(free_port(), LIMIT - 1000)
    assert status == 200 and got == [LIMIT - 1000]
    assert peak < 1.25 * LIMIT, peak / LIMIT
    status, peak, got = _post_gzip(free_port(), 4 * LIMIT)
    assert status == 413 and got == []
    assert peak < 1.25 * LIMIT, peak / LIMIT
