"""The front door: what clients reach instead of tritonserver itself, so hostile requests stop here.

The Triton build this project ships has defects one small request can trigger: a JSON body nested
~60,000 levels deep crashes the server, a declared dim of 2^62 (its byte size wraps to 0) or a
negative dim kills a model's stub, a 120-byte JSON request declaring [100000, 256, 256, 3] makes the
server allocate ~19 GB, and JSON UINT8 values above 255 wrap silently. It has no request-size flag.
So Triton listens on private loopback ports, and the front door listens on the public ones: HTTP
(front_door_http.py) and gRPC (front_door_grpc.py), one asyncio loop in a thread of the process that
started the server. Every request passes through unchanged unless it breaks a rule here:

- bodies are capped per model at the largest valid request (the signature's max batch and image
  side; JSON at the longest decimal form of each value), before they are read to the end;
- JSON is parsed with a depth limit of 1024 levels (orjson's; this Triton is safe at 30,000);
- an inference request's declared shapes, datatypes and data sizes are checked against the model's
  signature (validation.validate_declared), and JSON values against the input's dtype;
- shared-memory inputs are refused (registration is closed anyway), as is streaming inference;
- model load and unload are refused (403 / PERMISSION_DENIED): only the supervisor reloads a model.

Given tokens (auth.py), it checks every request but the health probes first, before reading a body:
a missing or wrong token gets 401 / UNAUTHENTICATED, a client over its rate 429 / RESOURCE_EXHAUSTED
with a Retry-After, held back first for as long as its next request would have to wait (``hold``), so a
client that retries at once is slowed to its rate instead of keeping the door busy. The Authorization
header is not passed on to Triton, and each request is written to the access log under its token's name.
Given a certificate (tls.py), both public ports speak TLS.

It also keeps readiness honest: while the supervisor restarts Triton, or after a model's stub was
seen dying (Triton answers "Stub process ... is not healthy" but still says ready, or the supervisor
sees the stub's process gone), the health and model-ready endpoints answer not-ready and that model's
requests get a one-line "retry" error.

The loop is uvloop's where it is installed (the serve extra): every microsecond of the loop's own is on
every request's path.

    >>> door = FrontDoor(signatures, upstream_http="127.0.0.1:41000", upstream_grpc="127.0.0.1:41001")
    >>> door.start("127.0.0.1", http_port=8000, grpc_port=8001)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ganexport.catalog import Signature
from ganexport.serving.access_log import AccessLog
from ganexport.serving.addresses import hostport
from ganexport.serving.auth import UNAUTHENTICATED, RateLimiter, TokenBook, rate_limited
from ganexport.serving.tls import TlsFiles
from ganexport.serving.validation import (
    Declared, InvalidInput, check_json_values, max_values, request_bytes_limit, validate_declared,
)

JSON_DEPTH_LIMIT = 1024  # orjson's own limit, far below the ~60,000 levels that crash this Triton
HEADER_ALLOWANCE = 64 * 1024  # an inference request's JSON header: names, shapes, parameters
OTHER_BODY_LIMIT = 1024 * 1024  # every other POST (repository index, settings ...)
# The longest JSON text of one value, with the ", " that separates it: 255 -> "255, "; a float's repr,
# "-1.2345678901234567e-05, "; what tritonclient's json.dumps writes.
JSON_CHARS_PER_VALUE = {1: 5, 2: 8, 4: 26, 8: 26}
HOLD_MAX_S = 1.0  # the longest a request over its rate waits for its 429
STUB_DIED = "is not healthy"  # Triton's words when a model's stub process is gone
CLOSED_MODEL_CONTROL = "model load / unload is closed to clients: this server's models are fixed when it starts"


class Refused(Exception):
    """A request the front door does not pass on; ``status`` is the HTTP status, the message one line."""

    def __init__(self, message: str, status: int = 400, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, for a client over its rate (429)


class Gatekeeper:
    """The rules (who may call, caps, declared-request checks) and the health state the two doors share."""

    def __init__(self, signatures: Mapping[str, Signature], on_suspect: Callable[[str], None] | None = None,
                 restricted: Mapping[str, str] | None = None, tokens: TokenBook | None = None,
                 limiter: RateLimiter | None = None, access_log: AccessLog | None = None):
        self.signatures = dict(signatures)
        self.on_suspect = on_suspect
        self.restricted = dict(restricted or {})  # the header that unlocks Triton's repository index
        self.tokens, self.limiter, self.access_log = tokens, limiter, access_log
        self._held: dict[str, int] = {}  # name -> its requests over the rate waiting for their 429
        self.suspects: set[str] = set()  # models whose stub was seen dead, until the supervisor restarts them
        self.down = False  # the supervisor is restarting Triton
        self.refused = 0  # requests refused here, for the supervisor's summary
        self.last_request: dict[str, float] = {}  # model -> when its latest request came in or was answered
        self.in_flight: dict[str, int] = {}  # model -> requests passed on to Triton and not yet answered
        self._limits: dict[tuple[str | None, bool], int] = {}  # body_limit's answers: asked on every request
        self._lock = threading.Lock()
        # Other ways to Triton that keep their own counts and follow this health state: the compiled gRPC
        # lane (front_door_grpc_compiled.py): sync() after every change, in_flight() and last_request().
        self.lanes: list = []

    # -- who may call ------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str | None:
        """The caller's token name (None when this server takes no tokens); Refused 401 for any other
        header, missing, malformed, unknown or revoked alike, in the same words."""
        if self.tokens is None:
            return None
        name = self.tokens.name_of(authorization)
        if name is None:
            raise Refused(UNAUTHENTICATED, status=401)
        return name

    def throttle(self, name: str | None) -> None:
        """Refused 429 with the seconds to wait when ``name`` is over its rate; its bucket alone is spent."""
        if self.limiter is None or name is None:
            return
        wait = self.limiter.retry_after(name)
        if wait:
            raise Refused(rate_limited(name, self.limiter.rate, self.limiter.burst, wait), status=429,
                          retry_after=wait)

    async def hold(self, name: str | None, retry_after: float) -> None:
        """Before a 429: wait as long as the client would have to anyway, longer for each of its refused
        requests already waiting (at most HOLD_MAX_S). A client that floods over many connections at once
        then costs the door about one refusal per connection a second, and the others keep their share."""
        held = self._held.get(name, 0)
        self._held[name] = held + 1
        try:
            await asyncio.sleep(min(HOLD_MAX_S, retry_after * (held + 1)))
        finally:
            self._held[name] -= 1

    def log(self, protocol: str, name: str | None, request: str, status: int | str, peer: str | None) -> None:
        if self.access_log is not None:
            self.access_log.write(protocol, name, request, status, peer)

    # -- limits ------------------------------------------------------------------------------

    def body_limit(self, model: str | None, binary: bool) -> int:
        """The most bytes a request body may have: an inference request for ``model`` at the largest valid
        size (``binary``: header + raw tensors, else all JSON), every other body ``OTHER_BODY_LIMIT``."""
        limit = self._limits.get((model, binary))
        if limit is None:
            limit = self._limits[(model, binary)] = self._body_limit(model, binary)
        return limit

    def _body_limit(self, model: str | None, binary: bool) -> int:
        sig = self.signatures.get(model or "")
        if sig is None:
            return OTHER_BODY_LIMIT
        if binary:
            return HEADER_ALLOWANCE + request_bytes_limit(sig)
        return HEADER_ALLOWANCE + sum(max_values(sig, spec) * JSON_CHARS_PER_VALUE[np.dtype(spec.numpy_dtype).itemsize]
                                      for spec in sig.inputs)

    def message_limit(self) -> int:
        """The largest gRPC message any served model accepts (binary tensors)."""
        return max([self.body_limit(name, binary=True) for name in self.signatures] + [OTHER_BODY_LIMIT])

    # -- inference requests ------------------------------------------------------------------

    def check_infer(self, model: str, declared: Mapping[str, Declared], json_values: Mapping[str, Any]) -> None:
        """Refuse (InvalidInput) a request to a served model that does not match its signature, and
        refuse (503) one to a model being restarted. Unknown models pass: Triton answers 404 itself."""
        if self.down:
            raise Refused("Triton is restarting; retry in a few seconds", status=503)
        if model in self.suspects:
            raise Refused(f"{model} is being restarted after its process died; retry in a few seconds", 503)
        sig = self.signatures.get(model)
        if sig is None:
            return
        validate_declared(sig, declared)
        for name, values in json_values.items():
            check_json_values(sig, name, values)

    # -- health --------------------------------------------------------------------------------

    def ready(self, model: str | None = None) -> bool:
        """False while restarting, and for a model (or the server, when any model) seen with a dead stub."""
        if self.down:
            return False
        return not self.suspects if model is None else model not in self.suspects

    @contextlib.contextmanager
    def serving(self, model: str | None):
        """Around one inference request passed on to Triton: what tells the supervisor a model is at rest."""
        if model is None:
            yield
            return
        with self._lock:
            self.in_flight[model] = self.in_flight.get(model, 0) + 1
            self.last_request[model] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.in_flight[model] -= 1
                self.last_request[model] = time.monotonic()

    def idle_for(self, model: str, since: float) -> float:
        """Seconds ``model`` has had no request in flight, counted from ``since`` at the earliest; 0 while busy."""
        if self.in_flight.get(model) or any(lane.in_flight(model) for lane in self.lanes):
            return 0.0
        latest = [self.last_request.get(model, since)] + [lane.last_request(model) or since for lane in self.lanes]
        return time.monotonic() - max(since, *latest)

    def saw_failure(self, model: str | None, text: str) -> None:
        """An answer from Triton: a dead stub's error marks its model not ready and wakes the supervisor."""
        if model in self.signatures and STUB_DIED in text:
            self.suspect(model)

    def suspect(self, model: str) -> None:
        """``model`` cannot answer (its stub died): not ready, its requests refused, until ``recovered``."""
        with self._lock:
            new = model not in self.suspects
            self.suspects.add(model)
        self._changed()
        if new and self.on_suspect is not None:
            self.on_suspect(model)

    def recovered(self, model: str) -> None:
        with self._lock:
            self.suspects.discard(model)
        self._changed()

    def restarting(self) -> None:
        self.down = True
        self._changed()

    def restarted(self) -> None:
        with self._lock:
            self.suspects.clear()
        self.down = False
        self._changed()

    def _changed(self) -> None:
        for lane in list(self.lanes):
            lane.sync()


def json_data_values(name: str, data: Any) -> np.ndarray:
    """The values of one input's JSON ``data`` as an array (flat or nested lists of numbers)."""
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {name!r}: its JSON data is not a regular array of numbers") from None
    if values.dtype == object or not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise InvalidInput(f"input {name!r}: its JSON data must be numbers")
    return values


class FrontDoor:
    """The HTTP and gRPC doors in one asyncio loop on a background thread; ``start`` returns once both listen."""

    def __init__(self, signatures: Mapping[str, Signature], *, upstream_http: str, upstream_grpc: str,
                 on_suspect: Callable[[str], None] | None = None, restricted: Mapping[str, str] | None = None,
                 tokens: TokenBook | None = None, limiter: RateLimiter | None = None,
                 access_log: AccessLog | None = None, tls: TlsFiles | None = None,
                 grpc_lane: Path | None = None):
        self.gate = Gatekeeper(signatures, on_suspect, restricted, tokens, limiter, access_log)
        self.upstream_http, self.upstream_grpc = upstream_http, upstream_grpc
        self.tls = tls
        self.grpc_lane = grpc_lane  # the compiled gRPC lane's binary: it takes the public gRPC port
        self.lane = None  # front_door_grpc_compiled.CompiledGrpcLane while it runs
        self._thread: threading.Thread | None = None
        self._http = None  # the HTTP door while the loop runs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, host: str, http_port: int, grpc_port: int, timeout: float = 30.0) -> "FrontDoor":
        self._thread = threading.Thread(target=self._serve, args=(host, http_port, grpc_port),
                                        name="ganexport-front-door", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the front door did not start within {timeout:.0f} s")
        if self._error is not None:
            raise RuntimeError(f"the front door could not listen on {host}:{http_port}/{grpc_port}: {self._error}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self._thread = None
        if self.gate.access_log is not None:
            self.gate.access_log.close()

    def close_idle(self, timeout: float = 10.0) -> None:
        """Close the idle connections to Triton's HTTP port, from any thread: before Triton is stopped,
        since an idle keep-alive connection holds its shutdown for the whole exit timeout."""
        if self._loop is not None and self._http is not None and self._thread and self._thread.is_alive():
            done = threading.Event()
            self._loop.call_soon_threadsafe(lambda: (self._http.close_idle(), done.set()))
            done.wait(timeout)

    def _serve(self, host: str, http_port: int, grpc_port: int) -> None:
        try:
            _run(self._main(host, http_port, grpc_port))
        except BaseException as e:  # reported to start(); after start, the doors log their own errors
            self._error = e
            self._started.set()

    async def _main(self, host: str, http_port: int, grpc_port: int) -> None:
        from ganexport.serving.front_door_grpc import GrpcDoor
        from ganexport.serving.front_door_http import HttpDoor

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        http = self._http = HttpDoor(self.gate, self.upstream_http)
        grpc_door = GrpcDoor(self.gate, self.upstream_grpc)
        try:
            await http.start(host, http_port, self.tls)
            if self.grpc_lane is None:
                await grpc_door.start(host, grpc_port, self.tls)
            else:  # the Python door answers what the lane does not pass, on a private port
                from ganexport.serving.front_door_grpc_compiled import CompiledGrpcLane

                private = await grpc_door.start("127.0.0.1", 0)
                self.lane = CompiledGrpcLane(self.gate, self.grpc_lane, self.upstream_grpc,
                                             hostport("127.0.0.1", private)).start(hostport(host, grpc_port))
            self._started.set()
            await self._stop.wait()
        finally:
            if self.lane is not None:
                self.lane.stop()
            await grpc_door.stop()
            await http.stop()


def _run(main) -> None:
    """asyncio.run on uvloop's loop where uvloop is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
