"""Keep a Triton server answering: restart it when it dies, replace a model's stub when it dies or swells.

Some failures are defects of the Triton build this project ships, which it cannot patch: a JSON body
nested tens of thousands of levels deep crashes the whole server, and a request whose declared shape
overflows kills one model's Python stub, after which every request to that model fails ("Stub process
... is not healthy") while /v2/health/ready still says 200. Most such requests no longer reach Triton
at all (the front door, front_door.py, refuses them); the supervisor is there for the rest:

- the server process, every ``watch_every`` seconds: a crash restarts the server on the same
  repository, models and ports;
- every stub process, as often: a stub that exits makes its model not ready at once, and the model is
  reloaded (a fresh stub in well under a second; the other models never notice). A reload that fails
  restarts the server;
- every model, through a one-image request every ``probe_every`` seconds, or at once when the front
  door sees a stub's death in an answer: a model that does not answer is reloaded the same way, unless
  its stubs kept working while the probe waited (every instance busy with long requests, such as 64
  diffusion samples of 1000 steps, is no failure; a hung stub uses no CPU);
- every stub's resident memory, once its model has had no client request for ``recycle_idle_s``: a
  stub above ``recycle_ratio`` times the least it was seen holding at rest is replaced by a fresh one
  (Triton swaps it in once loaded, so no request fails). A burst of large images leaves the Python
  backend's shared-memory region mapped once per size it grew through (130 MiB and more after 64
  images of 1024x1024), which no setting shrinks; ONNX Runtime's arena the stub gives back itself
  (ort_session.py).

Each event is printed with its cause and counted. Restarts and dead-stub reloads back off, and after
``max_restarts`` within ``window`` seconds the supervisor gives up with one line instead of looping.
Model control stays closed to clients: only this object's server holds the key for a reload.

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
from ganexport.serving.process_group import alive, cpu_seconds, rss_bytes
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
    if sig.kind in ("encode", "edit"):  # a grey image (and no edit)
        image = np.full((1, *sig.inputs[0].shape), 128, np.uint8)
        return sig.kind, (image,) + ((np.zeros((1, *sig.inputs[1].shape), np.float32),) if sig.kind == "edit" else ())
    z = np.zeros((1, *sig.inputs[0].shape), np.float32)
    label = np.zeros((1,), np.int64) if len(sig.inputs) > 1 else None
    return "sample", (z, label)


BUSY_CPU_SHARE = 0.25  # a probe that waited while the model's stubs used this share of a core: busy, not hung
BUSY_MIN_WAIT_S = 1.0  # and it waited at least this long (an answer with an error comes at once)
RECYCLE_RATIO = 1.5  # a resting stub above this times its least resting memory is replaced
RECYCLE_IDLE_S = 10.0  # "resting": no client request this long (the arena gives itself back after 5 s)
RECYCLE_MIN_BYTES = 32 * 2**20  # and only when that frees at least this much


class Supervisor:
    """Watch ``server`` (already started) until ``stop()`` or a signal; restart it on a crash, reload a
    model whose stub died or stopped answering, and replace a stub that a burst left swollen."""

    def __init__(self, server: TritonServer, *, log: Callable[[str], None] = print, probe_every: float = 15.0,
                 probe_timeout: float = 30.0, watch_every: float = 0.25, max_restarts: int = 5, window: float = 300.0,
                 start_timeout: float = 120.0, recycle_ratio: float = RECYCLE_RATIO,
                 recycle_idle_s: float = RECYCLE_IDLE_S):
        self.server, self.log = server, log
        self.probe_every, self.probe_timeout, self.watch_every = probe_every, probe_timeout, watch_every
        self.max_restarts, self.window = max_restarts, window
        self.start_timeout = start_timeout
        self.recycle_ratio, self.recycle_idle_s = recycle_ratio, recycle_idle_s
        self.events = Events()
        self.stubs: dict[str, list[int]] = {}  # model -> the stub pids being watched
        self.resting: dict[str, int] = {}  # model -> least RSS (bytes) its stubs were seen holding at rest
        self._born: dict[str, float] = {}  # model -> when its current stubs started (monotonic)
        self._retired: set[int] = set()  # stubs replaced on purpose: their exit is no failure
        self._busy: set[str] = set()  # models whose last probe found every instance at work
        self._running = True

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        """Block, watching; returns after ``stop()``; raises GaveUp after too many restarts."""
        self._look()
        next_probe = time.monotonic() + self.probe_every
        next_memory = time.monotonic() + 1.0
        while self._running:
            code = self.server.wait(self.watch_every)
            if not self._running:
                return
            if code is not None:
                self._restart("server", f"tritonserver {exit_text(code)}")
                next_probe = time.monotonic() + self.probe_every
                continue
            dead = self.dead_stubs()
            if dead:
                self._recover(dead, "its stub process exited")
            elif time.monotonic() >= next_probe or self._suspects():
                broken = self.unanswered()
                if broken:
                    self._recover(broken, "stopped answering")
                elif self.server.front_door is not None:  # a false alarm: the model answers its probe
                    self.server.front_door.gate.restarted()
                next_probe = time.monotonic() + self.probe_every
            elif time.monotonic() >= next_memory:
                self._recycle_swollen()
                next_memory = time.monotonic() + 1.0

    def _look(self, models: list[str] | None = None) -> None:
        """(Re)read which stub runs which model, after a start, restart or reload."""
        found = self.server.stub_pids()
        self._retired = {p for p in self._retired if alive(p)}  # a pid may be reused once its process is gone
        for name in models or list(found):
            self.stubs[name] = [p for p in found.get(name, []) if p not in self._retired]
            self._born[name] = time.monotonic()

    def dead_stubs(self) -> list[str]:
        """The models one of whose stubs is no longer running (exited, or a zombie Triton has not reaped)."""
        return [name for name, pids in self.stubs.items() if any(not alive(p) for p in pids)]

    def _suspects(self) -> bool:
        """The front door saw a model's stub die in an answer: probe now rather than at the next interval."""
        door = self.server.front_door
        return door is not None and bool(door.gate.suspects)

    def unanswered(self) -> list[str]:
        """The served models that fail their one-image probe (a dead stub), with the reason logged; a model
        whose probe timed out while its stubs worked is busy (``_busy``), not failing."""
        broken = []
        try:
            backend = connect("triton-http", url=self.server.triton_http_url, timeout=self.probe_timeout)
        except BackendError as e:
            self.log(f"supervisor: cannot reach Triton to probe it: {e}")
            return list(self.stubs) or self.server.model_names()
        with backend:
            for name in self.server.model_names():
                stubs = self.stubs.get(name, [])
                started, worked = time.monotonic(), cpu_seconds(stubs)
                try:
                    method, args = probe_inputs(backend.metadata(name))
                    getattr(backend, method)(name, *args)
                except InvalidInput as e:  # our own probe is wrong: say so, do not restart for it
                    self.log(f"supervisor: the probe of {name} is refused ({e}); not probing it")
                except (BackendError, OSError) as e:
                    waited, used = time.monotonic() - started, cpu_seconds(stubs) - worked
                    if waited >= BUSY_MIN_WAIT_S and used >= BUSY_CPU_SHARE * waited:
                        if name not in self._busy:
                            self.log(f"supervisor: {name} is busy: its probe waited {waited:.0f} s while its stubs "
                                     f"worked {used:.0f} CPU-s; not reloading it")
                        self._busy.add(name)
                        continue
                    self.log(f"supervisor: {name} does not answer: {str(e).splitlines()[0][:200]}")
                    broken.append(name)
                else:
                    if name in self._busy:
                        self.log(f"supervisor: {name} answers its probe again")
                    self._busy.discard(name)
        return broken

    def _recover(self, models: list[str], cause: str) -> None:
        """Not ready from now; reload each model (a fresh stub), or restart the server if that fails."""
        door = self.server.front_door
        for name in models:
            if door is not None:
                door.gate.suspect(name)
        self.events.count("stub")
        self._back_off(f"{', '.join(models)}: {cause}", "reloading " + ", ".join(models))
        try:
            for name in models:
                took = self._replace(name)
                if door is not None:
                    door.gate.recovered(name)
                self.log(f"supervisor: {name} is back in {took:.1f} s (a fresh stub; {self._summary()})")
        except (ServerError, OSError) as e:
            self._restart("model", f"the reload failed ({str(e).splitlines()[0][:300]})", counted=True)

    def _replace(self, name: str) -> float:
        """Reload model ``name``; its old stubs' exit is expected from now on."""
        self._retired.update(self.stubs.get(name, []))
        took = self.server.reload(name, timeout=self.start_timeout)
        self._look([name])
        return took

    def _recycle_swollen(self) -> None:
        """Replace the stubs of models at rest that hold far more memory than they did at rest before."""
        door = self.server.front_door
        if door is None:  # no record of client requests: no way to tell rest from work
            return
        for name, pids in self.stubs.items():
            if not pids or door.gate.idle_for(name, self._born[name]) < self.recycle_idle_s:
                continue
            held = rss_bytes(pids)
            least = self.resting.setdefault(name, held)
            if held < least:
                self.resting[name] = held
            elif held > self.recycle_ratio * least and held - least >= RECYCLE_MIN_BYTES:
                try:
                    took = self._replace(name)
                except (ServerError, OSError) as e:  # only memory is at stake: say so and keep serving
                    self.log(f"supervisor: could not replace {name}'s stub: {str(e).splitlines()[0][:300]}")
                    continue
                self.events.count("recycled")
                self.log(f"supervisor: {name}'s stub held {held / 2**20:.0f} MiB at rest, {held / least:.1f}x "
                         f"its least ({least / 2**20:.0f} MiB); replaced by a fresh one in {took:.1f} s, "
                         "no request lost")

    def _summary(self) -> str:
        return (f"{sum(self.events.counts.values())} events so far: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.events.counts.items())))

    def _back_off(self, cause: str, action: str) -> None:
        """Wait the back-off before the next restart or reload; GaveUp after too many within the window."""
        now = time.monotonic()
        recent = [t for t in self.events.restarts if now - t < self.window]
        if len(recent) >= self.max_restarts:
            raise GaveUp(f"gave up: {len(recent)} restarts within {self.window:.0f} s, the last after: {cause}")
        delay = min(30.0, 2.0 ** len(recent) - 1)  # 0, 1, 3, 7, 15 s ...
        self.log(f"supervisor: {cause}; {action}"
                 + (f" in {delay:.0f} s" if delay else "")
                 + f" (restart {len(recent) + 1} of at most {self.max_restarts} per {self.window:.0f} s)")
        time.sleep(delay)
        self.events.restarts.append(time.monotonic())

    def _restart(self, kind: str, cause: str, counted: bool = False) -> None:
        """Restart the server, backing off; a restart that fails (a model that does not load on a loaded
        machine, say) is one more failure and is tried again, until ``max_restarts`` within ``window``.
        ``counted``: the event that led here was counted already (a failed reload)."""
        if not counted:
            self.events.count(kind)
        if self.server.front_door is not None:  # not ready from now until Triton is back, back-off included
            self.server.front_door.gate.restarting()
        while True:
            self._back_off(cause, "restarting Triton")
            t0 = time.monotonic()
            try:
                self.server.restart(timeout=self.start_timeout)
                break
            except (ServerError, RepositoryError) as e:
                self.events.count("failed restart")
                cause = f"the restart failed ({str(e).splitlines()[0][:300]})"
        self._retired.clear()
        self._look()
        self.log(f"supervisor: Triton is back in {time.monotonic() - t0:.1f} s ({self._summary()})")
