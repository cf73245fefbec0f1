"""The front door's compiled gRPC lane: grpc_door.cc on the public gRPC port, the Python door behind it.

A Python gRPC server and channel on a request's path cost about 0.55 ms however little the door checks
(docs/benchmarks.md, "The front door's cost"). So where the compiled lane is built (``make setup``, or
``python -m ganexport.serving.grpc_door_build``), a grpc++ program takes the public port. An inference
request whose declared names, datatypes, shapes and raw sizes it finds valid for its model goes straight
to Triton; everything else goes to the Python door on a private port (front_door_grpc.py), which holds
every rule and says every refusal. Tokens, rate limits and TLS are the Python door's alone: with any of
them, the Python door takes the public port itself, as it does where the lane is not built.

The two share:

- the rules, a tab-separated file written here from the gate: each model's inputs, batch and image sides;
  the largest message; the streaming methods and their refusal; the words for an unreachable Triton;
- a state file both map: "Triton is down" and each model's "not ready" (the gate writes them on every
  change, through ``sync``), each model's requests in flight and the time of the latest (``gate.idle_for``
  reads them) and the answers that said its stub died (a watcher hands them to ``gate.saw_failure``).
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from ganexport.serving.front_door import STUB_DIED, Gatekeeper

BINARY = "ganexport-grpc-door"
BINARY_ENV = "GANEXPORT_GRPC_DOOR"  # a binary elsewhere than beside this Python
FLAG = struct.Struct("=i")  # "Triton is down" at offset 0, and each record's first field, "not ready"
HEADER = 8
RECORD = struct.Struct("=iiqqq")  # blocked, in_flight, last_ns, died, passed: ModelState in grpc_door.cc
WATCH_S = 0.05  # how often answers saying a stub died are looked for


def door_binary() -> Path | None:
    """The compiled lane: $GANEXPORT_GRPC_DOOR, else built beside this Python (.venv/bin), else on PATH."""
    named = os.environ.get(BINARY_ENV)
    if named:
        return Path(named) if os.access(named, os.X_OK) else None
    beside = Path(sys.executable).parent / BINARY
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(BINARY)
    return Path(found) if found else None


def rules_text(gate: Gatekeeper, streaming: dict[str, str], unreachable: tuple[str, ...],
               unreachable_message: str) -> str:
    """What grpc_door.cc checks a request by, one tab-separated line each (see ReadRules there)."""
    lines = [f"message_limit\t{gate.message_limit()}", f"stub_died\t{STUB_DIED}",
             f"unreachable_message\t{unreachable_message}"]
    lines += [f"stream\t{path}\t{text}" for path, text in streaming.items()]
    lines += [f"unreachable_word\t{word}" for word in unreachable]
    for slot, (name, sig) in enumerate(gate.signatures.items()):
        sides = ["-1" if v is None else str(v) for v in (sig.min_image_side, sig.max_image_side)]
        lines.append("\t".join(["model", name, str(slot), str(sig.max_batch_size), *sides]))
        for spec in sig.inputs:
            itemsize = np.dtype(spec.numpy_dtype).itemsize
            lines.append("\t".join(["input", spec.name, spec.dtype, str(itemsize), *map(str, spec.shape)]))
    return "\n".join(lines) + "\n"


class CompiledGrpcLane:
    """grpc_door.cc as a child process, and the state it shares with ``gate``."""

    def __init__(self, gate: Gatekeeper, binary: Path, triton: str, fallback: str):
        self.gate, self.binary, self.triton, self.fallback = gate, binary, triton, fallback
        self.slots = {name: slot for slot, name in enumerate(gate.signatures)}
        self._dir = Path(tempfile.mkdtemp(prefix="ganexport-grpc-door-"))  # 0700: the state is this user's
        self._state: mmap.mmap | None = None
        self._proc: subprocess.Popen | None = None
        self._died = {name: 0 for name in self.slots}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._command: list[str] = []
        self.restarts = 0  # times the program exited on its own and was started again

    def start(self, listen: str, timeout: float = 10.0) -> "CompiledGrpcLane":
        from ganexport.serving.front_door_grpc import SERVICE, UNREACHABLE, UNREACHABLE_MESSAGE, streaming_refusal

        streaming = {f"/{SERVICE.full_name}/{m.name}": streaming_refusal(m.name) for m in SERVICE.methods
                     if m.client_streaming or m.server_streaming}
        rules, state = self._dir / "rules.tsv", self._dir / "state.bin"
        rules.write_text(rules_text(self.gate, streaming, UNREACHABLE, UNREACHABLE_MESSAGE))
        state.write_bytes(bytes(HEADER + RECORD.size * len(self.slots)))
        with open(state, "r+b") as f:
            self._state = mmap.mmap(f.fileno(), 0)
        self.sync()
        self._command = [str(self.binary), "--listen", listen, "--triton", self.triton, "--fallback", self.fallback,
                         "--rules", str(rules), "--state", str(state)]
        try:
            self._spawn(timeout)
        except OSError:
            self.stop()
            raise
        self.gate.lanes.append(self)
        self._watcher = threading.Thread(target=self._watch, name="ganexport-grpc-door-watch", daemon=True)
        self._watcher.start()
        return self

    def _spawn(self, timeout: float) -> None:
        """Start the program and wait for its "listening" line; OSError with its last word if it exits."""
        errors = self._dir / "stderr.log"
        with open(errors, "wb") as err:
            self._proc = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=err, text=True, env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
        ready = threading.Event()
        threading.Thread(target=lambda: (self._proc.stdout.readline(), ready.set()), daemon=True).start()
        if not ready.wait(timeout) or self._proc.poll() is not None:
            self._proc.poll()
            last = errors.read_text(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            raise OSError(f"the compiled gRPC door could not listen on {self._command[2]}: {last[0]}")

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(15)
        if self in self.gate.lanes:
            self.gate.lanes.remove(self)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._state is not None:
            self._state.close()
            self._state = None
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- the shared state --------------------------------------------------------------------

    def sync(self) -> None:
        """The gate's health, for the lane: while Triton is down or a model is suspect, it asks Python."""
        FLAG.pack_into(self._state, 0, int(self.gate.down))
        for name, slot in self.slots.items():
            FLAG.pack_into(self._state, HEADER + RECORD.size * slot, int(name in self.gate.suspects))

    def _record(self, model: str) -> tuple[int, int, int, int, int] | None:
        slot = self.slots.get(model)
        if slot is None or self._state is None:
            return None
        return RECORD.unpack_from(self._state, HEADER + RECORD.size * slot)

    def in_flight(self, model: str) -> int:
        record = self._record(model)
        return 0 if record is None else record[1]

    def last_request(self, model: str) -> float | None:
        """time.monotonic() of the model's latest request in or answer out through the lane (the same clock)."""
        record = self._record(model)
        return None if record is None or record[2] == 0 else record[2] / 1e9

    def passed(self, model: str) -> int:
        """Requests the lane sent straight to Triton."""
        record = self._record(model)
        return 0 if record is None else record[4]

    def _watch(self) -> None:
        """Hand answers that said a stub died to the gate; start the program again if it exits on its own
        (the public gRPC port must not stay closed), a second apart at most."""
        while not self._stop.wait(WATCH_S):
            if self._proc.poll() is not None and not self._stop.is_set():
                print(f"the compiled gRPC door exited ({self._proc.returncode}); starting it again", file=sys.stderr)
                self.restarts += 1
                try:
                    self._spawn(timeout=10.0)
                except OSError as e:
                    print(e, file=sys.stderr)
                    self._stop.wait(1.0)
                continue
            for name in self.slots:
                died = self._record(name)[3]
                if died != self._died[name]:
                    self._died[name] = died
                    self.gate.saw_failure(name, STUB_DIED)
