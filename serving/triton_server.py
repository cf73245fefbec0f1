"""Start, watch and stop the tritonserver binary that ships inside nvidia-pytriton.

The wheel bundles Triton 2.51 with the Python backend only (no native ONNX
Runtime or libtorch backends), so every published model runs the generic
serving/triton_model.py. pytriton's own launcher wraps Python callables; we want
a plain ``--model-repository``, so this module runs the binary directly with the
recipe measured in shared/FINDINGS.md::

    with TritonServer("model_repository", http_port=8000, grpc_port=8001) as server:
        print(server.http_url, [m.name for m in server.models()])

Everything a user can get wrong (taken port, empty repository, missing binary,
a model that fails to load) surfaces as one-line ``ServerError``. The server
log goes to a file (``log_path``), never to the terminal. This module imports
neither torch nor tritonclient: readiness and model listing use plain urllib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request

from ganexport.export.repository import integrity_problems  # torch-free, as serving must be
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
INSTALL_HINT = "install the serve extra: pip install 'ganexport[serve]'"
CONFIG_FILE = "config.pbtxt"
RESTRICTED_HEADER = "ganexport-restricted"  # header that would unlock the restricted APIs (see command())

# Lines Triton prints on every CPU-only start (no CUDA driver, NVML, DCGM): not worth showing.
_NOISE = re.compile(r"cuda|nvml|dcgm|gpu metrics|pinned memory|collecting metrics|^\s*\+-{3,}|^\s*\|",
                    re.IGNORECASE | re.MULTILINE)


class ServerError(RuntimeError):
    """The server could not start or stopped unexpectedly; the message is one line for the user.

    ``log_tail`` holds the last relevant server log lines when the message alone
    may not explain the failure (a crash, a timeout); it is empty otherwise.
    """

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.log_tail = list(log_tail or [])


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


# --------------------------------------------------------------------------- locating the bundled server


def _pytriton_root() -> Path | None:
    """``pytriton/tritonserver`` inside the installed wheel, found without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def find_tritonserver(triton_bin: str | os.PathLike | None = None) -> Path:
    """The tritonserver binary: ``triton_bin`` when given, else the one bundled in nvidia-pytriton."""
    if triton_bin is not None:
        path = Path(triton_bin).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServerError(f"no executable tritonserver at {path}")
        return path.resolve()
    root = _pytriton_root()
    path = root / "bin" / "tritonserver" if root else None
    if path is None or not path.is_file():
        raise ServerError(f"the tritonserver bundled in nvidia-pytriton was not found; {INSTALL_HINT}")
    return path


def _server_root(binary: Path) -> Path:
    """The dir holding ``backends/`` and ``python_backend_stubs/``: beside the binary, else pytriton's."""
    for root in (binary.parent.parent, _pytriton_root()):
        if root is not None and (root / "backends" / "python" / "libtriton_python.so").is_file():
            return root
    raise ServerError(f"no Triton Python backend next to {binary} or in nvidia-pytriton; {INSTALL_HINT}")


def make_backend_dir(root: Path) -> Path:
    """A temp ``B/python/`` of symlinks: the backend, its utils, and the stub for THIS Python version.

    The wheel keeps one stub per Python version in a separate tree; Triton looks
    for the stub beside libtriton_python.so, so the three files are gathered here.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the bundled Triton has no Python backend stub for Python {version}")
    backend_dir = Path(tempfile.mkdtemp(prefix="ganexport-triton-backends-"))
    python_dir = backend_dir / "python"
    python_dir.mkdir()
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        (python_dir / src.name).symlink_to(src)
    return backend_dir


def repository_view(repo: Path) -> Path:
    """A temp copy of the repository's directory tree whose files are symlinks to the published ones.

    Triton runs this instead of ``repo`` because each Python stub compiles
    model.py and writes ``__pycache__/`` beside it (the stub's interpreter is
    isolated, so PYTHONDONTWRITEBYTECODE is ignored): in the view that cache,
    with this machine's paths inside, lands in the temp dir, and serving
    never changes a published repository.
    """
    view = Path(tempfile.mkdtemp(prefix="ganexport-triton-repository-"))
    for top, dirs, files in os.walk(repo, followlinks=True):  # `serve --models` hands us symlinked model dirs
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        here = view / Path(top).relative_to(repo)
        here.mkdir(exist_ok=True)
        for name in files:
            (here / name).symlink_to((Path(top) / name).resolve())
    return view


def server_env() -> dict[str, str]:
    """The environment the stubs need to run model.py with this interpreter's packages.

    The stub runs the first ``python3`` on PATH, so the venv's bin goes first;
    LD_LIBRARY_PATH points at this Python's libpython, or the stub would load the
    system libpython beside our stdlib.
    """
    env = dict(os.environ)
    bin_dir = Path(sys.prefix) / "bin" if sys.prefix != sys.base_prefix else Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")]).rstrip(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return env


# --------------------------------------------------------------------------- up-front checks


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS says is free right now on ``host`` (for tests: another process may still take it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port(host: str, port: int, what: str = "") -> None:
    """Raise ServerError naming the port when something already listens on it.

    SO_REUSEADDR as Triton sets it: a port in TIME_WAIT after a previous server
    is fine, a listening socket is not.
    """
    label = f"{what} port" if what else "port"
    if not 0 < port < 65536:
        raise ServerError(f"{label} {port} is not a valid port number")
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise ServerError(f"{label} {port} on {host} {why}") from None


def check_repository(repo: Path) -> list[str]:
    """The model names Triton will load from ``repo``; ServerError when there is nothing to serve.

    Triton treats every subdirectory as a model (hidden ones included) and,
    with auto-complete off, fails on one without config.pbtxt or without a
    numeric version dir: say so before starting rather than after.
    """
    repo = Path(repo)
    if not repo.exists():
        raise ServerError(f"model repository {repo} does not exist; run `ganexport build` first")
    if not repo.is_dir():
        raise ServerError(f"model repository {repo} is not a directory")
    dirs = sorted(p for p in repo.iterdir() if p.is_dir())
    models = [p for p in dirs if (p / CONFIG_FILE).is_file()]
    if not models:
        raise ServerError(f"model repository {repo} holds no model (no <name>/{CONFIG_FILE}); "
                          "run `ganexport build` first")
    stray = [p.name for p in dirs if p not in models]
    if stray:
        raise ServerError(f"model repository {repo}: {', '.join(stray)} has no {CONFIG_FILE} "
                          "(Triton loads every subdirectory as a model)")
    empty = [p.name for p in models if not any(v.is_dir() and v.name.isdigit() for v in p.iterdir())]
    if empty:
        raise ServerError(f"model repository {repo}: {', '.join(empty)} has no numeric version directory")
    return [p.name for p in models]


def check_integrity(repo: Path, names: list[str] | tuple[str, ...] | None = None) -> None:
    """ServerError when a file Triton would serve differs from the sha256 recorded when it was published.

    Triton loads a model.onnx with a flipped weight byte without a word and
    serves wrong images, so the newest version of each model (the one served:
    the configs keep ``latest 1``) is checked against its SHA256SUMS first
    (``integrity_problems``: the model file, model.py, signature.json, parity.json).
    """
    repo = Path(repo)
    problems: list[tuple[str, str]] = []  # (what is wrong, training model to rebuild)
    for name in names or check_repository(repo):
        numbered = [v for v in (repo / name).iterdir() if v.is_dir() and v.name.isdigit()]
        if not numbered:
            continue
        version_dir = max(numbered, key=lambda v: int(v.name))
        try:
            source = json.loads((version_dir / "parity.json").read_text()).get("source", {}).get("model") or name
        except (OSError, ValueError):
            source = name
        problems += [(f"model '{name}' version {version_dir.name}: {p}", source)
                     for p in integrity_problems(version_dir)]
    if problems:
        (what, model), more = problems[0], f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ServerError(f"refusing to serve a corrupt model: {what}{more}; `ganexport verify --model {model}` "
                          f"shows the damage, `ganexport build --model {model}` publishes a good version")


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


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1; hostnames other than localhost count as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, what: str = "Triton") -> str | None:
    """The warning for a service bound beyond loopback (None on loopback): nothing here authenticates."""
    if is_loopback(host):
        return None
    return (f"warning: {what} will listen on {host}, reachable from other machines; it has no "
            "authentication (the default, 127.0.0.1, is reachable from this machine only)")


def _hostport(host: str, port: int) -> str:
    """``host:port`` a client can connect to: wildcard binds are reached over loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- the log


def log_tail(path: Path | None, lines: int = 20) -> list[str]:
    """The last ``lines`` log lines that say something: CUDA/NVML noise and empty table rows are dropped."""
    try:
        text = Path(path).read_text(errors="replace")
    except (OSError, TypeError):
        return []
    kept = [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not _NOISE.search(ln) and not re.fullmatch(r"[IWE]\d{4} [^\]]*\]\s*", ln)]
    return [ln if len(ln) <= 400 else ln[:397] + "..." for ln in kept[-lines:]]


def failure_reason(path: Path | None) -> tuple[str, bool]:
    """(one line saying why the server died, whether the log said so plainly).

    A model that failed to load (or whose directory Triton could not read) is
    named with the first line of its error; else the last error line. ``False``
    means the reason is a guess and the caller should show the log tail.
    """
    try:
        text = Path(path).read_text(errors="replace")
    except (OSError, TypeError):
        return "no log was written", False
    for pattern, label in ((r"failed to load '([^']+)' version (\d+): (.*)", "model '{0}' version {1} failed to load"),
                           (r"Poll failed for model directory '([^']+)': (.*)", "model '{0}' is invalid")):
        found = re.findall(pattern, text)
        if found:
            others = sorted({f[0] for f in found} - {found[0][0]})
            more = f" (also: {', '.join(others)})" if others else ""
            return f"{label.format(*found[0])}: {_first_line(found[0][-1])}{more}", True
    for pattern in (r"failed to start \w+ service: .*", r"^E\d{4} [^\]]*\] (.*)$", r"error: creating server: .*"):
        found = [m for m in re.findall(pattern, text, re.MULTILINE) if not _NOISE.search(m)]
        if found:
            return _first_line(found[-1]), pattern.startswith("failed")
    return "the log names no error", False


def exit_text(code: int) -> str:
    """'exited with code 1' or 'was killed by SIGKILL': Popen reports signals as negative codes."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _first_line(text: str, limit: int = 300) -> str:
    """Triton quotes messages and escapes newlines as a literal backslash-n: keep the first line."""
    text = text.strip().strip('"').replace("\\n", "\n").split("\n")[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- the server


class TritonServer:
    """One tritonserver process serving a model repository; a context manager (start / stop).

    ``http_url`` and ``grpc_url`` are ``host:port`` without a scheme, which is
    what tritonclient.http and tritonclient.grpc take; ``base_url`` has the
    ``http://`` for urllib and browsers.
    """

    def __init__(self, repository: str | os.PathLike = "model_repository", *, host: str = DEFAULT_HOST,
                 http_port: int = DEFAULT_PORTS["http"], grpc_port: int = DEFAULT_PORTS["grpc"],
                 metrics_port: int = DEFAULT_PORTS["metrics"], triton_bin: str | os.PathLike | None = None,
                 log_dir: str | os.PathLike | None = None, log_verbose: int = 0, exit_timeout: int = 5,
                 extra_args: tuple[str, ...] = ()):
        self.repository = Path(repository)
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
        self._view: Path | None = None  # repository_view(repository), what Triton actually loads
        self._shm: set[Path] = set()
        self._stopped = False
        self._warned = False
        self._restricted_key = secrets.token_hex(16)

    # ---------------------------------------------------------------- addresses

    @property
    def http_url(self) -> str:
        return _hostport(self.host, self.http_port)

    @property
    def grpc_url(self) -> str:
        return _hostport(self.host, self.grpc_port)

    @property
    def base_url(self) -> str:
        return f"http://{self.http_url}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://{_hostport(self.host, self.metrics_port)}/metrics" if self.metrics_port else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def command(self, binary: Path, backend_dir: Path) -> list[str]:
        """The tritonserver command line; every flag was checked against the 2.51 binary's --help."""
        cmd = [str(binary), "--model-repository", str(self._view or self.repository.resolve()),
               "--backend-directory", str(backend_dir),
               "--http-address", self.host, "--grpc-address", self.host,
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
               "--model-control-mode", "none", "--strict-readiness", "true",
               "--disable-auto-complete-config", "--pinned-memory-pool-byte-size", "0",
               "--allow-gpu-metrics", "false", "--exit-timeout-secs", str(self.exit_timeout),
               "--log-verbose", str(self.log_verbose),
               # Shared-memory registration lets any client map a /dev/shm segment by name, the Python
               # stubs' own regions included, and have the server read or write it. Our clients never
               # use it: restrict it to a random header value that is never handed out.
               "--http-restricted-api", f"shared-memory:{RESTRICTED_HEADER}={self._restricted_key}",
               "--grpc-restricted-protocol", f"shared-memory:{RESTRICTED_HEADER}={self._restricted_key}"]
        caches = _server_root(binary) / "caches"
        if caches.is_dir():
            cmd += ["--cache-directory", str(caches)]
        if self.metrics_port:
            cmd += ["--metrics-address", self.host, "--metrics-port", str(self.metrics_port)]
        else:
            cmd += ["--allow-metrics", "false"]
        return cmd + list(self.extra_args)

    def check(self) -> Path:
        """Every check that can fail before a process exists (repository, ports, binary); returns the binary.

        A non-loopback ``host`` is warned about first, once, before anything can fail.
        """
        warning = exposure_warning(self.host)
        if warning and not self._warned:
            print(warning, file=sys.stderr)
            self._warned = True
        check_repository(self.repository)
        ports = {"HTTP": self.http_port, "gRPC": self.grpc_port}
        if self.metrics_port:
            ports["metrics"] = self.metrics_port
        if len(set(ports.values())) < len(ports):
            raise ServerError(f"ports must differ: {', '.join(f'{k} {v}' for k, v in ports.items())}")
        for what, port in ports.items():
            check_port(self.host, port, what)
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
            self._backend_dir = make_backend_dir(_server_root(binary))
            self._view = repository_view(self.repository)
            self._spawn(binary)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        self._remember_shm()
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
            if self._http_status("/v2/health/ready") == 200:
                return
            time.sleep(0.1)
        raise self.failure(f"tritonserver was not ready after {timeout:.0f} s", plain=False)

    def failure(self, what: str, plain: bool = True) -> ServerError:
        """A ServerError saying ``what`` and why, from the log; the log tail rides along when unclear."""
        reason, clear = failure_reason(self._log_path)
        tail = [] if (clear and plain) else log_tail(self._log_path)
        return ServerError(f"{what}: {reason} (log: {self._log_path})", tail)

    def wait(self, timeout: float | None = None) -> int | None:
        """The server's exit code once it exits, None if it still runs after ``timeout``."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait, SIGKILL the whole process group; remove the backend dir and stale /dev/shm.

        ``timeout`` defaults to Triton's own exit timeout + 10 s. Returns the
        server's exit code (None if it never started). Idempotent.
        Close tritonclient HTTP clients first: an idle keep-alive connection
        holds Triton's shutdown for the whole --exit-timeout-secs.
        """
        code = self.process.returncode if self.process is not None else None
        if self.process is not None and not self._stopped:
            code = self._terminate(self.exit_timeout + 10.0 if timeout is None else timeout)
            self._stopped = True
        for temp in (self._backend_dir, self._view):
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
        self._backend_dir = self._view = None
        for path in self._shm:  # regions of stubs that died before Triton could unlink them
            with _suppress_os_error():
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
            _signal(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                self._remember_shm()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.5)
            if proc.poll() is None:
                _signal(proc.pid, signal.SIGKILL, group=True)
                proc.wait()
        self._remember_shm()
        _signal(proc.pid, signal.SIGKILL, group=True)
        _wait_group_gone(proc.pid, timeout=5.0)
        return proc.returncode

    # ---------------------------------------------------------------- introspection

    def pids(self) -> list[int]:
        """The server (first) and its Python backend stubs: every live process of its process group."""
        if self.process is None:
            return []
        return sorted(group_pids(self.process.pid), key=lambda p: p != self.process.pid)

    def _remember_shm(self) -> None:
        """Note the /dev/shm regions the server's processes map, to unlink any a kill leaves behind."""
        if self.process is not None:
            self._shm |= shm_mapped(group_pids(self.process.pid))

    def _http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ValueError):
            return None

    def _json(self, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
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


# --------------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first), read from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with _suppress_os_error():
                children.setdefault(int(_proc_stat(entry.name)[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _proc_stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with _suppress_os_error():
                fields = _proc_stat(entry.name)
                if int(fields[2]) == pgid and fields[0] not in "ZX":
                    found.append(int(entry.name))
    return found


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def shm_mapped(pids: list[int]) -> set[Path]:
    """/dev/shm files mapped by ``pids``: the Python backend's per-stub regions."""
    found: set[Path] = set()
    for pid in pids:
        with _suppress_os_error():
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                    found.add(Path(parts[5].removesuffix(" (deleted)")))
    return found


def rss_bytes(pids: list[int]) -> int:
    """Sum of resident memory (VmRSS) of ``pids``; processes that vanished count zero."""
    total = 0
    for pid in pids:
        with _suppress_os_error():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _signal(pid: int, sig: int, group: bool = False) -> None:
    """Signal the server, or its whole process group (it leads its own session); gone is fine."""
    with _suppress_os_error():
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _suppress_os_error() -> contextlib.suppress:
    """What reading /proc of a process that just exited can raise."""
    return contextlib.suppress(OSError, ValueError, IndexError)
