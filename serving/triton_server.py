"""One tritonserver process on a model repository: start, watch, introspect, stop.

    with TritonServer("model_repository", models=("dcgan", "cgan"), http_port=8000, grpc_port=8001) as server:
        print(server.http_url, [m.name for m in server.models()])

The server owns its staging: it runs Triton on a temporary view of the chosen
models (ganexport.repository.make_view) and removes it on stop, so `ganexport
serve`, the demo, the benchmarks and the tests start Triton the same way and
never write into a published repository. Everything a user can get wrong
(taken port, empty repository, unknown model, missing binary, a model that
fails to load) surfaces as a one-line ``ServerError`` naming the user's
repository, never the view. The server log goes to a file (``log_path``), never
to the terminal. Readiness and introspection use plain urllib: no torch, no tritonclient.

Given ``tokens`` (serving/auth.py), the front door wants a token on every request but the health
probes and writes an access log beside the server log (``access_log_path``); ``limiter`` caps each
token's rate; ``tls`` (serving/tls.py) puts the public ports on TLS. With tokens, Triton's metrics
port, which nothing authenticates, listens on loopback whatever ``host`` is.

``planned=True`` (what ``serve``, the demo and the bench pass) serves each CPU ONNX Runtime model with
the instance count and ONNX Runtime threads instances.py plans for its kind and the cores Triton gets;
``instances`` / ``threads`` override the plan for every model. Without them, the published configs.

``ServerError`` (triton_log.py) and ``free_port`` (addresses.py) are re-exported
for callers that only start a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

from ganexport.repository import RepositoryError, latest, make_view, read_signature, select_models
from ganexport.serving.addresses import DEFAULT_HOST, check_port, exposure_warning, free_port, hostport
from ganexport.serving.auth import RateLimiter, TokenBook
from ganexport.serving.process_group import group_pids, send_signal, shm_mapped, suppress_gone, wait_group_gone
from ganexport.serving.triton_binary import find_tritonserver, make_backend_dir, server_env, server_root
from ganexport.serving.tls import TlsFiles
from ganexport.serving.triton_log import ServerError, exit_text, failure_reason, log_tail

__all__ = ["DEFAULT_HOST", "DEFAULT_PORTS", "RESTRICTED_HEADER", "ModelInfo", "ServerError", "TensorInfo",
           "TritonServer", "free_port"]

DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
GRPC_DOORS = ("auto", "compiled", "python")  # which program takes the public gRPC port (TritonServer._grpc_lane)
RESTRICTED_HEADER = "ganexport-restricted"  # header that would unlock the restricted APIs (see command())
RESTRICTED_APIS = "shared-memory,model-repository,logging,trace"
STUB_TIMEOUT_S = 120  # how long Triton waits for a Python stub to start and to answer its messages


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output as the server reports it; ``shape`` starts with -1 for the batch dim."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} {self.datatype} {list(self.shape)}"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A loaded model: what a client needs to call it."""

    name: str
    version: str
    max_batch_size: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started Triton dies, even by SIGKILL.

    Without it a killed `ganexport serve` / `demo` leaves an orphan tritonserver holding the ports and /dev/shm.
    Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    """One tritonserver process serving a model repository; a context manager (start / stop).

    ``http_url`` and ``grpc_url`` are ``host:port`` without a scheme, which is
    what tritonclient.http and tritonclient.grpc take; ``base_url`` has the
    ``http://`` for urllib and browsers.
    """

    def __init__(self, repository: str | os.PathLike = "model_repository", *, models: Iterable[str] | None = None,
                 configs: Mapping[str, str] | None = None, host: str = DEFAULT_HOST,
                 http_port: int = DEFAULT_PORTS["http"], grpc_port: int = DEFAULT_PORTS["grpc"],
                 metrics_port: int = DEFAULT_PORTS["metrics"], triton_bin: str | os.PathLike | None = None,
                 log_dir: str | os.PathLike | None = None, log_verbose: int = 0, exit_timeout: int = 5,
                 extra_args: tuple[str, ...] = (), front_door: bool = True, tokens: TokenBook | None = None,
                 limiter: RateLimiter | None = None, tls: TlsFiles | None = None, planned: bool = False,
                 instances: int | None = None, threads: int | None = None, grpc_door: str = "auto"):
        if (tokens is not None or limiter is not None or tls is not None) and not front_door:
            raise ValueError("tokens, a rate limit and TLS live in the front door: they need front_door=True")
        if limiter is not None and tokens is None:
            raise ValueError("a rate limit is per token: it needs tokens")
        self.repository = Path(repository)
        self.chosen = tuple(models) if models is not None else None  # None: every model of the repository
        self.configs = dict(configs or {})  # model -> config.pbtxt text served instead of the published one
        self.planned = planned or instances is not None or threads is not None
        self.instances, self.threads = instances, threads
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.triton_bin = triton_bin
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir()) / "ganexport-triton"
        self.log_verbose = log_verbose
        self.exit_timeout = exit_timeout  # Triton's grace for in-flight requests and unloading stubs
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None
        self._log_path: Path | None = None
        self._backend_dir: Path | None = None
        self._view: Path | None = None  # make_view(repository, models): what Triton actually loads
        self._shm: set[Path] = set()
        self._stopped = False
        self._warned = False
        self._restricted_key = secrets.token_hex(16)
        # Clients reach the front door on http_port / grpc_port; Triton listens on private loopback ports.
        self.front_door_enabled = front_door
        self.front_door = None  # serving.front_door.FrontDoor while started
        self.tokens, self.limiter, self.tls = tokens, limiter, tls
        self._access_log_path: Path | None = None
        self._upstream: dict[str, int] | None = None  # Triton's own ports behind the front door
        self.grpc_lane = self._grpc_lane(grpc_door)  # the compiled gRPC lane's binary, or None

    def _grpc_lane(self, choice: str) -> Path | None:
        """Which gRPC door takes the public port: "compiled" (grpc_door.cc, in front of the Python door),
        "python", or "auto": the compiled one where it is built and neither tokens nor TLS are asked for
        (those live in the Python door alone)."""
        from ganexport.serving.front_door_grpc_compiled import door_binary

        if choice not in GRPC_DOORS:
            raise ValueError(f"grpc_door must be one of {', '.join(GRPC_DOORS)}, not {choice!r}")
        if choice == "python" or not self.front_door_enabled:
            return None
        binary = door_binary()
        if choice == "auto":
            return binary if binary is not None and self.tokens is None and self.tls is None else None
        if self.tokens is not None or self.tls is not None:
            raise ServerError("the compiled gRPC door takes no tokens or TLS: those need --grpc-door python")
        if binary is None:
            raise ServerError("the compiled gRPC door is not built: run `make setup`, or "
                              "`python -m ganexport.serving.grpc_door_build` (needs g++ and libgrpc++-dev)")
        return binary

    @property
    def grpc_door(self) -> str:
        """Which door clients' gRPC requests reach: "compiled", "python" or "none" (no front door)."""
        return "none" if not self.front_door_enabled else "compiled" if self.grpc_lane is not None else "python"

    # ---------------------------------------------------------------- addresses

    @property
    def http_url(self) -> str:
        return hostport(self.host, self.http_port)

    @property
    def grpc_url(self) -> str:
        return hostport(self.host, self.grpc_port)

    @property
    def scheme(self) -> str:
        """How clients reach the HTTP port: https when the front door has a certificate."""
        return "https" if self.tls is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.http_url}"

    @property
    def _triton_host(self) -> str:
        return "127.0.0.1" if self.front_door_enabled else self.host

    def _triton_port(self, protocol: str) -> int:
        if not self.front_door_enabled:
            return self.http_port if protocol == "http" else self.grpc_port
        if self._upstream is None:  # chosen once, so a restarted Triton is where the front door looks
            self._upstream = {"http": free_port("127.0.0.1"), "grpc": free_port("127.0.0.1")}
        return self._upstream[protocol]

    @property
    def triton_http_url(self) -> str:
        """Triton itself, behind the front door: for readiness, introspection and the supervisor's probes."""
        return hostport(self._triton_host, self._triton_port("http"))

    @property
    def triton_grpc_url(self) -> str:
        """Triton's own gRPC port, behind the front door (what benchmarks/door_cost.py compares it with)."""
        return hostport(self._triton_host, self._triton_port("grpc"))

    @property
    def _triton_base_url(self) -> str:
        return f"http://{self.triton_http_url}"

    @property
    def metrics_host(self) -> str:
        """Triton's metrics have no authentication: with tokens they stay on loopback."""
        return DEFAULT_HOST if self.tokens is not None else self.host

    @property
    def metrics_url(self) -> str | None:
        return f"http://{hostport(self.metrics_host, self.metrics_port)}/metrics" if self.metrics_port else None

    @property
    def access_log_path(self) -> Path | None:
        """The front door's access log (with tokens only): one line per request, by token name."""
        return self._access_log_path

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def view(self) -> Path | None:
        """The temporary repository Triton runs on while started (None before start and after stop)."""
        return self._view

    def model_names(self) -> list[str]:
        """The models this server loads (checked against the repository): ``models``, or all of them."""
        try:
            return select_models(self.repository, self.chosen)
        except RepositoryError as e:
            raise ServerError(str(e)) from None

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def command(self, binary: Path, backend_dir: Path) -> list[str]:
        """The tritonserver command line; every flag was checked against the 2.51 binary's --help."""
        cmd = [str(binary), "--model-repository", str(self._view),
               "--backend-directory", str(backend_dir),
               "--http-address", self._triton_host, "--grpc-address", self._triton_host,
               "--http-port", str(self._triton_port("http")), "--grpc-port", str(self._triton_port("grpc")),
               # Every model loads at start, as in mode "none"; explicit mode lets the supervisor alone
               # replace one model's stub (reload) behind the restricted API below: the front door
               # refuses load / unload from clients, and Triton wants the key it never hands out.
               "--model-control-mode", "explicit", "--load-model", "*", "--strict-readiness", "true",
               "--disable-auto-complete-config", "--pinned-memory-pool-byte-size", "0",
               "--allow-gpu-metrics", "false", "--exit-timeout-secs", str(self.exit_timeout),
               # A stub gets 30 s to start and answer by default; fifteen stubs starting at once on a
               # loaded 2-core machine can miss that, and a model that misses it fails to load.
               "--backend-config", f"python,stub-timeout-seconds={STUB_TIMEOUT_S}",
               "--log-verbose", str(self.log_verbose),
               # Shared-memory registration lets any client map a /dev/shm segment by name, the Python
               # stubs' own regions included, and have the server read or write it; model load would run
               # a model.py the request carries; the logging and trace settings would let a client turn
               # error logging off, or read and move the server's log and trace files. Our clients use none
               # of them: all are restricted to a random header value that only this object (the
               # supervisor's reloads, introspection) sends.
               "--http-restricted-api", f"{RESTRICTED_APIS}:{RESTRICTED_HEADER}={self._restricted_key}",
               "--grpc-restricted-protocol", f"{RESTRICTED_APIS}:{RESTRICTED_HEADER}={self._restricted_key}"]
        caches = server_root(binary) / "caches"
        if caches.is_dir():
            cmd += ["--cache-directory", str(caches)]
        if self.metrics_port:
            cmd += ["--metrics-address", self.metrics_host, "--metrics-port", str(self.metrics_port)]
        else:
            cmd += ["--allow-metrics", "false"]
        return cmd + list(self.extra_args)

    def check(self) -> Path:
        """Every check that can fail before a process exists (repository and models, ports, binary);
        returns the binary. A non-loopback ``host`` is warned about first, once, before anything can fail.
        """
        warning = exposure_warning(self.host) if self.tokens is None else None
        if warning and not self._warned:
            print(warning, file=sys.stderr)
            self._warned = True
        self.model_names()
        ports = {"HTTP": self.http_port, "gRPC": self.grpc_port}
        if self.metrics_port:
            ports["metrics"] = self.metrics_port
        if len(set(ports.values())) < len(ports):
            raise ServerError(f"ports must differ: {', '.join(f'{k} {v}' for k, v in ports.items())}")
        for what, port in ports.items():
            if self.front_door is None or what == "metrics":  # an open front door holds HTTP and gRPC itself
                check_port(self.metrics_host if what == "metrics" else self.host, port, what)
        return find_tritonserver(self.triton_bin)

    def start(self, timeout: float = 60.0) -> "TritonServer":
        """Start the server and return once /v2/health/ready says 200 (every model loaded).

        Fails fast with a one-line ServerError when the process exits, naming the
        model that failed to load when that is why; anything left is cleaned up.
        """
        if self.process is not None:
            raise ServerError("this TritonServer is already started")
        binary = self.check()
        t0 = time.monotonic()
        try:
            self._backend_dir = make_backend_dir(server_root(binary))
            configs = self.configs
            if self.planned:  # instances and threads for these cores; configs given explicitly win
                from ganexport.serving.instances import tuned_configs

                configs = {**tuned_configs(self.repository, self.model_names(), instances=self.instances,
                                           threads=self.threads), **configs}
            try:
                self._view = make_view(self.repository, self.model_names(), configs=configs)
            except RepositoryError as e:  # the repository changed since check()
                raise ServerError(str(e)) from None
            self._spawn(binary)
            self._wait_ready(timeout)
            if self.front_door_enabled and self.front_door is None:
                self._open_front_door()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        self._remember_shm()
        return self

    def _open_front_door(self) -> None:
        from ganexport.serving.front_door import FrontDoor

        signatures = {name: read_signature(latest(self._view, name)) for name in self.model_names()}
        door = FrontDoor(signatures, upstream_http=hostport("127.0.0.1", self._triton_port("http")),
                         upstream_grpc=hostport("127.0.0.1", self._triton_port("grpc")),
                         restricted={RESTRICTED_HEADER: self._restricted_key}, tokens=self.tokens,
                         limiter=self.limiter, access_log=self._open_access_log(), tls=self.tls,
                         grpc_lane=self.grpc_lane)
        try:
            door.start(self.host, self.http_port, self.grpc_port)
        except RuntimeError as e:
            door.stop()
            raise ServerError(str(e)) from None
        self.front_door = door

    def _open_access_log(self):
        """With tokens, a new access log beside the server's log (who called, not with what token)."""
        if self.tokens is None:
            return None
        from ganexport.serving.access_log import AccessLog

        fd, name = tempfile.mkstemp(prefix=f"front-door-{self.http_port}-", suffix=".log", dir=self.log_dir)
        os.close(fd)
        self._access_log_path = Path(name)
        return AccessLog(self._access_log_path)

    def restart(self, timeout: float = 60.0) -> "TritonServer":
        """Stop what is left (the process group, stubs, /dev/shm, the view) and start again on the same
        repository, models and ports: what a supervisor does after a crash or a dead stub. The front
        door stays open meanwhile and answers not-ready (503 / UNAVAILABLE) until Triton is back."""
        gate = self.front_door.gate if self.front_door is not None else None
        if gate is not None:
            gate.restarting()
            self.front_door.close_idle()  # an idle keep-alive connection would hold Triton's shutdown
        self._stop_triton()
        self.process, self._stopped = None, False
        self.start(timeout)
        if gate is not None:
            gate.restarted()
        return self

    def _spawn(self, binary: Path) -> None:
        """Own session, so Ctrl-C in a terminal reaches us (we forward it) and killpg reaches the stubs."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"tritonserver-{self.http_port}-", suffix=".log", dir=self.log_dir)
        self._log_path = Path(name)
        with os.fdopen(fd, "w") as log:
            self.process = subprocess.Popen(self.command(binary, self._backend_dir), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=server_env(),
                                            start_new_session=True, preexec_fn=_die_with_parent)

    def _wait_ready(self, timeout: float) -> None:
        """Poll readiness; meanwhile note the stubs' /dev/shm regions, in case we must kill them mid-load."""
        deadline = time.monotonic() + timeout
        next_look = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_look:
                self._remember_shm()
                next_look = time.monotonic() + 0.5
            if self.process.poll() is not None:
                raise self.failure(f"tritonserver {exit_text(self.process.returncode)}")
            if self._http_status("/v2/health/ready", self._triton_base_url) == 200:
                return
            time.sleep(0.1)
        raise self.failure(f"tritonserver was not ready after {timeout:.0f} s", plain=False)

    def failure(self, what: str, plain: bool = True) -> ServerError:
        """A ServerError saying ``what`` and why, from the log; the log tail rides along when unclear."""
        reason, clear = failure_reason(self._log_path)
        tail = [] if (clear and plain) else log_tail(self._log_path)
        return ServerError(f"{what}: {self._shown(reason)} (log: {self._log_path})", [self._shown(t) for t in tail])

    def _shown(self, text: str) -> str:
        """Triton names the view it runs on; the user knows only the repository."""
        return text.replace(str(self._view), str(self.repository)) if self._view is not None else text

    def wait(self, timeout: float | None = None) -> int | None:
        """The server's exit code once it exits, None if it still runs after ``timeout``."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait, SIGKILL the whole process group; remove the view, the backend dir and stale /dev/shm.

        ``timeout`` defaults to Triton's own exit timeout + 10 s. Returns the
        server's exit code (None if it never started). Idempotent.
        Close tritonclient HTTP clients first: an idle keep-alive connection
        holds Triton's shutdown for the whole --exit-timeout-secs.
        """
        if self.front_door is not None:
            self.front_door.stop()
            self.front_door = None
        return self._stop_triton(timeout)

    def _stop_triton(self, timeout: float | None = None) -> int | None:
        code = self.process.returncode if self.process is not None else None
        if self.process is not None and not self._stopped:
            code = self._terminate(self.exit_timeout + 10.0 if timeout is None else timeout)
            self._stopped = True
        for temp in (self._backend_dir, self._view):
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
        self._backend_dir = self._view = None
        for path in self._shm:  # regions of stubs that died before Triton could unlink them
            with suppress_gone():
                path.unlink()
        self._shm = set()
        return code

    def _terminate(self, timeout: float) -> int:
        """SIGTERM the server; SIGKILL its whole group after ``timeout``, and any stub it left.

        A SIGTERM that arrives while models load (before Triton installs its
        handler) kills the server at once and orphans the stubs; they keep the
        server's process group, so killpg still reaches them.
        """
        proc = self.process
        self._remember_shm()
        if proc.poll() is None:
            send_signal(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                self._remember_shm()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.5)
            if proc.poll() is None:
                send_signal(proc.pid, signal.SIGKILL, group=True)
                proc.wait()
        self._remember_shm()
        send_signal(proc.pid, signal.SIGKILL, group=True)
        wait_group_gone(proc.pid, timeout=5.0)
        return proc.returncode

    # ---------------------------------------------------------------- introspection

    def pids(self) -> list[int]:
        """The server (first) and its Python backend stubs: every live process of its process group."""
        if self.process is None:
            return []
        return sorted(group_pids(self.process.pid), key=lambda p: p != self.process.pid)

    def stub_pids(self) -> dict[str, list[int]]:
        """Each served model's Python-backend stubs (one per instance), from their command lines, which
        name the instance (``cyclegan_a2b_0_0``); models are matched longest name first."""
        names = sorted(self.model_names(), key=len, reverse=True)
        stubs: dict[str, list[int]] = {name: [] for name in names}
        for pid in self.pids()[1:]:
            with suppress_gone():
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[1:]
                model = next((n for n in names for a in args if re.fullmatch(rf"{re.escape(n)}(_\d+)+", a)), None)
                if model is not None:
                    stubs[model].append(pid)
        return stubs

    def reload(self, name: str, timeout: float = 120.0) -> float:
        """Replace model ``name``'s stubs with fresh ones, without a gap: Triton loads the new instance
        and swaps it in once ready, and the old one finishes its requests. Returns the seconds it took.

        Triton skips the load of a model whose files did not change, so the request carries the
        model's own config with a ``ganexport_generation`` parameter changed (the model ignores it);
        nothing is written to the repository or the view. A dead stub comes back this way too.
        """
        t0 = time.monotonic()
        config = self._json(f"/v2/models/{name}/config")
        config.setdefault("parameters", {})["ganexport_generation"] = {"string_value": str(time.time_ns())}
        self._json(f"/v2/repository/models/{name}/load", {"parameters": {"config": json.dumps(config)}},
                   timeout=timeout)
        self._remember_shm()
        return time.monotonic() - t0

    def _remember_shm(self) -> None:
        """Note the /dev/shm regions the server's processes map, to unlink any a kill leaves behind."""
        if self.process is not None:
            self._shm |= shm_mapped(group_pids(self.process.pid))

    def _http_status(self, path: str, base_url: str | None = None) -> int | None:
        try:
            with urllib.request.urlopen((base_url or self.base_url) + path, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ValueError):
            return None

    def _json(self, path: str, body: dict | None = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._triton_base_url + path, data=data, method="POST" if data else "GET",
                                         headers={RESTRICTED_HEADER: self._restricted_key})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise ServerError(f"{path}: HTTP {e.code}: {e.read().decode(errors='replace')[:200]}") from None
        except OSError as e:
            raise ServerError(f"{path}: {e}") from None

    def server_metadata(self) -> dict:
        """GET /v2: name, version, extensions."""
        return self._json("/v2")

    def repository_index(self) -> list[dict]:
        """POST /v2/repository/index: every model with its version and state (READY, UNAVAILABLE...)."""
        return self._json("/v2/repository/index", {})

    def models(self) -> list[ModelInfo]:
        """The loaded (READY) models with their inputs and outputs, sorted by name."""
        ready = [m for m in self.repository_index() if m.get("state") == "READY"]
        return sorted((self._model_info(m["name"], m.get("version", "")) for m in ready), key=lambda m: m.name)

    def _model_info(self, name: str, version: str) -> ModelInfo:
        meta = self._json(f"/v2/models/{name}")
        config = self._json(f"/v2/models/{name}/config")

        def tensors(key: str) -> tuple[TensorInfo, ...]:
            return tuple(TensorInfo(t["name"], t["datatype"], tuple(int(d) for d in t["shape"]))
                         for t in meta.get(key, []))

        return ModelInfo(name, version or ",".join(meta.get("versions", [])),
                         int(config.get("max_batch_size", 0)), tensors("inputs"), tensors("outputs"))
