"""The contestants: one ``Target`` per table row, all behind the serving ``Backend`` protocol.

    eager         the PyTorch module the published version was built from (checkpoint + wrapper); for a
                  model imported with its project's own sampler, that sampler (diffusers' pipeline loop)
    torchscript   model.pt in-process          onnxruntime   model.onnx in-process
    triton-http   Triton over HTTP             triton-grpc   Triton over gRPC

Triton rows talk to a server started here on free ports (or to ``--triton-url``).
A ``--variant LABEL:knob=value,...`` adds rows that run the same files with other
serving knobs: Triton variants get their own server, which serves a config.pbtxt
rewritten by ``ganexport.repository_config.config_pbtxt`` in place of the published
one (TritonServer(configs=...)), ONNX Runtime variants their own session. Every
variant runs in the same interleaved rounds as the baseline, so a tuning gain is
measured against a baseline that saw the same noise.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ganexport import catalog, diffusion
from ganexport.benchmarks.hardware import repo_relative
from ganexport.repository import CONFIG_FILE, PYTHON_MODEL_FILE, latest, read_parity, read_signature, sha256
from ganexport.repository_config import config_pbtxt
from ganexport.serving import backends, ort_session
from ganexport.serving.backends import Backend, BackendError

KINDS = ("eager", "torchscript", "onnxruntime", "triton-http", "triton-grpc")
_BOOL = lambda v: v.lower() in ("1", "true", "on", "yes")  # noqa: E731
TRITON_KNOBS = {"dynamic_batching": _BOOL, "max_queue_delay_us": int, "instances": int}
ORT_KNOBS = {"intra_op_threads": int, "inter_op_threads": int, "graph_optimization": str, "execution_mode": str,
             "allow_spinning": _BOOL, "arena_release_s": float, "share_cores": _BOOL}


class BenchError(RuntimeError):
    """Setup failed (no checkpoint for eager, server did not start...); one line for the user."""


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """Serving knobs to compare against the published configuration; ``label`` names the row."""

    label: str
    knobs: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``nobatch:dynamic_batching=false`` or ``t1:intra_op_threads=1,graph_optimization=basic``."""
        label, colon, spec = text.partition(":")
        if not colon or not label or not label.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"variant {text!r}: start with a label, e.g. nobatch:dynamic_batching=false")
        knobs = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, eq, value = item.partition("=")
            convert = {**TRITON_KNOBS, **ORT_KNOBS}.get(key)
            if not eq or convert is None:
                raise ValueError(f"variant {label}: {item!r} is not KNOB=VALUE with KNOB one of "
                                 f"{', '.join([*TRITON_KNOBS, *ORT_KNOBS])}")
            knobs[key] = convert(value)
        for key, table in (("graph_optimization", ort_session.GRAPH_OPTIMIZATION),
                           ("execution_mode", ort_session.EXECUTION_MODE)):
            if key in knobs and knobs[key] not in table:
                raise ValueError(f"variant {label}: {key} must be one of {', '.join(table)}")
        return cls(label, knobs)

    def applies_to(self, kind: str) -> bool:
        """Triton takes every knob; in-process ONNX Runtime only session options."""
        if kind.startswith("triton"):
            return True
        return kind == "onnxruntime" and bool(self.knobs) and set(self.knobs) <= set(ORT_KNOBS)

    @property
    def ort_options(self) -> dict:
        return {k: v for k, v in self.knobs.items() if k in ORT_KNOBS}


def variant_configs(repository: Path, models: list[str], variant: Variant) -> dict[str, str]:
    """Model -> its config.pbtxt written with the variant's knobs, for TritonServer(configs=...).

    Knobs the variant leaves out take config_pbtxt's defaults (today's build), so
    ``--variant defaults:`` measures what a rebuild would publish.
    """
    configs = {}
    for name in models:
        vdir = latest(repository, name)
        if vdir is None:
            raise BenchError(f"{name}: not published in {repository} (run ganexport build)")
        sig = read_signature(vdir)
        runtime = "torchscript" if name.endswith(catalog.RUNTIME_SUFFIX["torchscript"]) else "onnxruntime"
        model_py = vdir / PYTHON_MODEL_FILE
        if variant.ort_options and model_py.is_file() and "ort_options" not in model_py.read_text():
            raise BenchError(f"{name}: its published {PYTHON_MODEL_FILE} predates ONNX Runtime session options; "
                             "rebuild it (ganexport build) to compare them")
        if "arena_release_s" in variant.ort_options and model_py.is_file() and "OrtSession" not in model_py.read_text():
            raise BenchError(f"{name}: its published {PYTHON_MODEL_FILE} predates the idle arena release; "
                             "rebuild it (ganexport build) to compare arena_release_s")
        gpu = "KIND_GPU" in (repository / name / CONFIG_FILE).read_text()
        triton = {k: v for k, v in variant.knobs.items() if k in TRITON_KNOBS}
        configs[name] = config_pbtxt(sig, runtime=runtime, gpu=gpu, ort_options=variant.ort_options, **triton)
    return configs


# --------------------------------------------------------------------------- eager


class EagerBackend(backends._Base):
    """The PyTorch module a published model was exported from: checkpoint -> net -> uint8 wrapper.

    The checkpoint is ``checkpoints[training model]`` or the one ``ganexport build``
    would take; its sha256 is compared with the one the published parity.json
    records, so a row labelled eager is known to be the same weights (a mismatch
    is reported in ``sources``, a different architecture refused).
    """

    name = "eager"

    def __init__(self, repository: Path, checkpoints: dict[str, Path] | None = None, log=print):
        import torch  # lazily: only this row needs the training stack

        self.torch, self.repository, self.checkpoints, self.log = torch, Path(repository), checkpoints or {}, log
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._modules: dict[str, tuple[catalog.Signature, object]] = {}
        self.sources: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _load(self, model: str):
        with self._lock:
            if model not in self._modules:
                self._modules[model] = self._build(model)
        return self._modules[model]

    def _build(self, model: str):
        from ganexport.export import build as pipeline
        from ganexport.export import wrappers
        from ganexport.training.checkpoint import CheckpointError

        vdir = latest(self.repository, model)
        if vdir is None:
            raise BackendError(f"eager: {model} is not published in {self.repository}")
        sig = read_signature(vdir)
        training = catalog.triton_models()[model][0].name
        try:
            path, ckpt = pipeline.load_checkpoint(training, self.checkpoints.get(training),
                                                  built_into=self.repository)
        except CheckpointError as e:
            raise BenchError(f"eager {model}: {e} (give --checkpoint {training}=PATH)") from None
        own = {s.name: s for s in ckpt.spec.signatures(ckpt.image_shape, ckpt.hp)}.get(sig.name)
        if own != sig:
            raise BenchError(f"eager {model}: {path} builds a different net than the published one "
                             f"(give the checkpoint it was built from: --checkpoint {training}=PATH)")
        published = read_parity(vdir).get("source", {})
        same = published.get("checkpoint_sha256") == sha256(path)
        if not same:
            self.log(f"warning: eager {model}: {path} is not the checkpoint {vdir} was built from "
                     "(same architecture, other weights)")
        self.sources[model] = {"checkpoint": repo_relative(str(path)), "same_as_published": same,
                               "step": ckpt.meta.get("step")}
        module = wrappers.for_checkpoint(ckpt, sig).to(self.device).eval()
        return sig, module

    def metadata(self, model: str) -> catalog.Signature:
        return self._load(model)[0]

    def _run(self, model, sig, inputs):
        torch = self.torch
        module = self._load(model)[1]
        if sig.diffusion is not None:  # the module is the denoiser: the served sampler loop runs around it,
            from ganexport.export.wrappers import reference_sampler  # or, for a model imported with its own
            from ganexport.training.unet import numpy_eps_fn  # project's sampler (diffusers'), that sampler

            reference = reference_sampler(module)
            with torch.inference_mode():
                if reference is not None:
                    return reference(sig, inputs)
                return diffusion.run_signature(sig, numpy_eps_fn(module), inputs)[0]
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])).to(self.device) for t in sig.inputs]
            return module(*args).cpu().numpy()


# --------------------------------------------------------------------------- rows


@dataclass
class Slot:
    """One client thread that lives for the whole run, with the backend it calls.

    tritonclient.http (gevent) binds a client to the thread that created it, so
    each Triton client is created, used and closed in its own slot's thread.
    """

    executor: ThreadPoolExecutor
    backend: Backend


@dataclass
class Target:
    """One table row. In-process backends are shared by every client thread (their sessions are
    thread-safe); Triton rows get one client per thread, as real clients would."""

    label: str
    kind: str
    make: Callable[[], Backend]
    shared: bool
    variant: Variant | None = None
    server: object | None = None  # the TritonServer behind a Triton row, when started here
    url: str | None = None  # Triton rows: the endpoint
    _slots: list = field(default_factory=list)

    def slots(self, n: int) -> list[Slot]:
        """The first ``n`` client threads of this row, started on first use."""
        while len(self._slots) < n:
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"bench-{self.label}")
            backend = self.make() if self.shared else executor.submit(self.make).result()
            self._slots.append(Slot(executor, backend))
        return self._slots[:n]

    def close(self) -> None:
        for slot in self._slots:
            if not self.shared:
                with contextlib.suppress(Exception):
                    slot.executor.submit(slot.backend.close).result(timeout=30)
            slot.executor.shutdown(wait=False)
        self._slots.clear()


class Fleet(contextlib.ExitStack):
    """Every row of one bench run; a context manager that stops the servers it started.

    ``triton_url`` is ``HOST:HTTP_PORT`` of a running server (gRPC on ``triton_grpc_url``,
    by default the HTTP port + 1, as `ganexport serve` lays them out).
    """

    def __init__(self, repository: Path, models: list[str], kinds: list[str], variants: list[Variant] = (),
                 checkpoints: dict[str, Path] | None = None, triton_url: str | None = None,
                 triton_grpc_url: str | None = None, perf_analyzer: bool = False, log=print):
        super().__init__()
        self.perf_analyzer = perf_analyzer
        self.repository, self.models, self.kinds, self.variants = Path(repository), models, kinds, list(variants)
        self.checkpoints, self.log = checkpoints, log
        if triton_url and ":" not in triton_url.removeprefix("http://"):
            triton_url += ":8000"
        self.urls = {"triton-http": triton_url, "triton-grpc": triton_grpc_url or _grpc_beside(triton_url)}
        self.targets: list[Target] = []
        self.servers: list = []
        self.eager: EagerBackend | None = None

    def __enter__(self) -> "Fleet":
        super().__enter__()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _setup(self) -> None:
        self.callback(self._shutdown)
        for kind in self.kinds:
            if kind == "eager":
                self.eager = EagerBackend(self.repository, self.checkpoints, self.log)
                self.targets.append(Target("eager", kind, lambda: self.eager, shared=True))
            elif kind in ("onnxruntime", "torchscript"):
                self.targets.append(Target(kind, kind, self._local(kind), shared=True))
        triton = [k for k in self.kinds if k.startswith("triton")]
        if triton:
            urls = dict(self.urls)
            if not urls["triton-http"]:
                server = self._start("")
                urls = {"triton-http": server.http_url, "triton-grpc": server.grpc_url}
            else:
                server = None
            for kind in triton:
                self.targets.append(Target(kind, kind, self._remote(kind, urls[kind]), False, None, server,
                                           urls[kind]))
        for variant in self.variants:
            kinds = [k for k in self.kinds if variant.applies_to(k)]
            if not kinds:
                self.log(f"note: variant {variant.label} applies to none of {', '.join(self.kinds)}")
            server = None
            if any(k.startswith("triton") for k in kinds):
                server = self._start(variant.label, variant_configs(self.repository, self.models, variant))
            for kind in kinds:
                label = f"{kind}[{variant.label}]"
                if kind == "onnxruntime":
                    self.targets.append(Target(label, kind, self._local(kind, variant.ort_options), True, variant))
                else:
                    url = server.http_url if kind == "triton-http" else server.grpc_url
                    self.targets.append(Target(label, kind, self._remote(kind, url), False, variant, server, url))
        if self.perf_analyzer:
            from ganexport.benchmarks import perf_analyzer as pa

            binary = pa.locate(log=self.log)
            self.targets += [pa.Target(t, binary) for t in list(self.targets) if t.kind.startswith("triton")]

    def _local(self, kind: str, ort_options: dict | None = None):
        backend = backends.connect(kind, repository=self.repository, ort_options=ort_options)
        return lambda: backend

    @staticmethod
    def _remote(kind: str, url: str):
        return lambda: backends.connect(kind, url=url, timeout=600.0)

    def _start(self, label: str, configs: dict[str, str] | None = None):
        """A Triton server on free ports serving the fleet's models (with ``configs`` instead of the
        published ones); stopped, and its view of the repository removed, when the fleet closes."""
        from ganexport.serving.triton_server import ServerError, TritonServer, free_port

        server = TritonServer(self.repository, models=self.models, configs=configs, http_port=free_port(),
                              grpc_port=free_port(), metrics_port=0, planned=configs is None)  # as serve runs it
        try:
            server.start(timeout=300)
        except ServerError as e:
            raise BenchError(f"Triton{f' ({label})' if label else ''} did not start: {e}") from None
        self.servers.append(server)
        self.log(f"Triton{f' [{label}]' if label else ''} ready in {server.ready_seconds:.1f} s "
                 f"at {server.http_url} (gRPC {server.grpc_url})")
        return server

    def _shutdown(self) -> None:
        """Clients first (an idle HTTP keep-alive holds Triton's shutdown), then every server at once."""
        for t in self.targets:
            t.close()
        stoppers = [threading.Thread(target=server.stop) for server in self.servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()


def _grpc_beside(http_url: str | None) -> str | None:
    """`ganexport serve` and Triton put gRPC on the HTTP port + 1."""
    if not http_url:
        return None
    host, _, port = http_url.removeprefix("http://").rpartition(":")
    return f"{host}:{int(port) + 1}"
