"""Keep a Triton server answering: restart it when it dies, and when a model's stub stops answering.

Some failures are defects of the Triton build this project ships, which it cannot patch: a JSON body
nested tens of thousands of levels deep crashes the whole server, and a request whose declared shape
overflows kills one model's Python stub, after which every request to that model fails ("Stub process
... is not healthy") while /v2/health/ready still says 200. A service survives them by watching: the
process every second, and every model through a one-image request every ``probe_every`` seconds, or
at once when the front door (front_door.py) sees a stub's death in an answer. Most such requests no
longer reach Triton at all: the front door refuses them. Either failure restarts the server on the
same repository, models and ports (model control stays closed to clients), with the cause printed
and counted. Restarts back off, and after ``max_restarts`` within ``window`` seconds the supervisor
gives up with one line instead of looping.

    >>> from ganexport.serving.supervisor import Supervisor              # doctest: +SKIP
    >>> Supervisor(server, log=print).run()                               # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ganexport.repository import RepositoryError
from ganexport.serving.backends import BackendError, InvalidInput, connect
from ganexport.serving.triton_log import ServerError, exit_text
from ganexport.serving.triton_server import TritonServer


class GaveUp(ServerError):
    """The server kept failing: restarted ``max_restarts`` times within ``window`` seconds."""


@dataclass
class Events:
    """What the supervisor saw, by kind: what a metrics page or a log summary reports."""

    counts: dict[str, int] = field(default_factory=dict)
    restarts: list[float] = field(default_factory=list)  # monotonic times

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


def probe_inputs(sig) -> tuple[str, tuple]:
    """The smallest valid request of a signature: (Backend method, its arguments after the model name)."""
    if sig.kind == "translate":
        side = max(sig.min_image_side or 1, 8)
        channels = sig.inputs[0].shape[-1]
        return "translate", (np.full((1, side, side, channels), 128, np.uint8),)
    if sig.kind == "diffuse":  # one step, "no class": a diffusion model's least work
        return "diffuse", (np.zeros((1, *sig.inputs[0].shape), np.float32), None, 1)
    z = np.zeros((1, *sig.inputs[0].shape), np.float32)
    label = np.zeros((1,), np.int64) if len(sig.inputs) > 1 else None
    return "sample", (z, label)


class Supervisor:
    """Watch ``server`` (already started) until ``stop()`` or a signal; restart it on a crash or a dead model."""

    def __init__(self, server: TritonServer, *, log: Callable[[str], None] = print, probe_every: float = 5.0,
                 max_restarts: int = 5, window: float = 300.0, start_timeout: float = 120.0):
        self.server, self.log = server, log
        self.probe_every, self.max_restarts, self.window = probe_every, max_restarts, window
        self.start_timeout = start_timeout
        self.events = Events()
        self._running = True

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        """Block, watching; returns after ``stop()``; raises GaveUp after too many restarts."""
        next_probe = time.monotonic() + self.probe_every
        while self._running:
            code = self.server.wait(1.0)
            if not self._running:
                return
            if code is not None:
                self._restart("server", f"tritonserver {exit_text(code)}")
                next_probe = time.monotonic() + self.probe_every
            elif time.monotonic() >= next_probe or self._suspects():
                broken = self.unanswered()
                if broken:
                    self._restart("model", f"{', '.join(broken)} stopped answering")
                elif self.server.front_door is not None:  # a false alarm: the model answers its probe
                    self.server.front_door.gate.restarted()
                next_probe = time.monotonic() + self.probe_every

    def _suspects(self) -> bool:
        """The front door saw a model's stub die in an answer: probe now rather than at the next interval."""
        door = self.server.front_door
        return door is not None and bool(door.gate.suspects)

    def unanswered(self) -> list[str]:
        """The served models that fail their one-image probe (a dead stub), with the reason logged."""
        broken = []
        try:
            backend = connect("triton-http", url=self.server.triton_http_url)
        except BackendError as e:
            self.log(f"supervisor: cannot reach Triton to probe it: {e}")
            return ["(server)"]
        with backend:
            for name in self.server.model_names():
                try:
                    method, args = probe_inputs(backend.metadata(name))
                    getattr(backend, method)(name, *args)
                except InvalidInput as e:  # our own probe is wrong: say so, do not restart for it
                    self.log(f"supervisor: the probe of {name} is refused ({e}); not probing it")
                except (BackendError, OSError) as e:
                    self.log(f"supervisor: {name} does not answer: {str(e).splitlines()[0][:200]}")
                    broken.append(name)
        return broken

    def _restart(self, kind: str, cause: str) -> None:
        """Restart the server, backing off; a restart that fails (a model that does not load on a loaded
        machine, say) is one more failure and is tried again, until ``max_restarts`` within ``window``."""
        self.events.count(kind)
        if self.server.front_door is not None:  # not ready from now until Triton is back, back-off included
            self.server.front_door.gate.restarting()
        while True:
            now = time.monotonic()
            recent = [t for t in self.events.restarts if now - t < self.window]
            if len(recent) >= self.max_restarts:
                raise GaveUp(f"gave up: {len(recent)} restarts within {self.window:.0f} s, the last after: {cause}")
            delay = min(30.0, 2.0 ** len(recent) - 1)  # 0, 1, 3, 7, 15 s ...
            self.log(f"supervisor: {cause}; restarting Triton"
                     + (f" in {delay:.0f} s" if delay else "")
                     + f" (restart {len(recent) + 1} of at most {self.max_restarts} per {self.window:.0f} s)")
            time.sleep(delay)
            self.events.restarts.append(time.monotonic())
            t0 = time.monotonic()
            try:
                self.server.restart(timeout=self.start_timeout)
                break
            except (ServerError, RepositoryError) as e:
                self.events.count("failed restart")
                cause = f"the restart failed ({str(e).splitlines()[0][:300]})"
        self.log(f"supervisor: Triton is back in {time.monotonic() - t0:.1f} s "
                 f"({sum(self.events.counts.values())} restarts so far: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(self.events.counts.items())) + ")")
