"""The front door's access log: one line per request, naming the client by its token's name, never the token.

    2026-12-08T10:04:11.532 http  alice POST /v2/models/dcgan/infer 200 127.0.0.1
    2026-12-08T10:04:11.907 grpc  - ModelInfer UNAUTHENTICATED ipv4:127.0.0.1:50412
    2026-12-08T10:04:12.011 http  mallory POST /v2/models/dcgan/infer 429 127.0.0.1 (+3312 like it)

A line-buffered file written from the front door's event-loop thread: one short write per request,
microseconds, where the logging module's handlers cost several times that. Health probes are not logged
(a load balancer asks every few seconds and carries no name). Refusals (no token, over the rate) are
written at most once a second per client and kind, with the count of those left out since: a flood is
refused at the door thousands of times a second, and must not fill the disk.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

ANONYMOUS = "-"
COALESCED = {401, 429, "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}  # refusals: one line a second per client
COALESCE_S = 1.0


class AccessLog:
    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.clock = clock
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._refused: dict[tuple, list] = {}  # (protocol, name, status) -> [when last written, left out since]

    def write(self, protocol: str, name: str | None, request: str, status: int | str, peer: str | None) -> None:
        more = ""
        if status in COALESCED:
            key = (protocol, name, status)
            now = self.clock()
            seen = self._refused.get(key)
            if seen is not None and now - seen[0] < COALESCE_S:
                seen[1] += 1
                return
            if seen is not None and seen[1]:
                more = f" (+{seen[1]} like it)"
            self._refused[key] = [now, 0]
        stamp = datetime.now().isoformat(timespec="milliseconds")
        self._file.write(f"{stamp} {protocol:<5} {name or ANONYMOUS} {request} {status} {peer or ANONYMOUS}{more}\n")

    def close(self) -> None:
        self._file.close()
