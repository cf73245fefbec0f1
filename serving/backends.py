"""One Backend protocol, four implementations: the demo, `ganexport infer` and the benchmarks
use only this, so the same call gets the same images in-process or through Triton.

    >>> from ganexport.serving.backends import connect
    >>> backend = connect("triton-grpc", url="127.0.0.1:8001")        # doctest: +SKIP
    >>> backend = connect("triton-http", url="gpu-box:8000", token=os.environ["GANEXPORT_TOKEN"],
    ...                   tls_ca="ca.pem")                              # doctest: +SKIP
    >>> images = backend.sample("cgan", z, label=labels)               # doctest: +SKIP
    >>> sketch = backend.translate("cyclegan_a2b", photo[None])[0]     # doctest: +SKIP
    >>> images = backend.diffuse("ddpm", noise, label=7, steps=25, guidance=2.0)  # doctest: +SKIP
    >>> latents = backend.encode("vae_faces_encoder", faces)            # doctest: +SKIP
    >>> smiling = backend.edit("vae_faces_edit", faces, {"smiling": 1.0})  # doctest: +SKIP

| kind          | runs                                      | model names               |
|---------------|-------------------------------------------|---------------------------|
| onnxruntime   | model.onnx in-process (CUDA EP if usable) | as published              |
| torchscript   | model.pt in-process (torch imported lazily)| the `_torchscript` twin   |
| triton-http   | the Triton endpoint over HTTP             | as served                 |
| triton-grpc   | the Triton endpoint over gRPC             | as served                 |

Every implementation validates a request against the model's signature
before it runs (the server does too), so bad input fails the same way,
with a one-line ``InvalidInput``.

A "diffuse" model's file is its denoiser: in-process, the sampler loop
(ganexport.diffusion.run_signature) runs here around it; through Triton, the
server's model.py runs the same loop, so one request returns finished images.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ganexport import catalog, diffusion
from ganexport.repository import MODEL_FILES, latest, read_signature
from ganexport.serving.auth import RATE_LIMITED, bearer
from ganexport.serving.ort_session import (  # noqa: F401  (re-exported: older published model.py copies)
    DEFAULT_ORT_OPTIONS, ORT_OPTIONS, OrtSession, session_options,
)
from ganexport.serving.validation import InvalidInput, diffusion_request, validate

BACKENDS = ("onnxruntime", "torchscript", "triton-http", "triton-grpc")
DEFAULT_URLS = {"triton-http": "127.0.0.1:8000", "triton-grpc": "127.0.0.1:8001"}


class BackendError(RuntimeError):
    """The backend could not answer (server down, model missing, runtime failure); one line."""


class Backend(Protocol):
    name: str

    def metadata(self, model: str) -> catalog.Signature: ...

    def sample(self, model: str, z: np.ndarray, label: np.ndarray | None = None) -> np.ndarray: ...

    def translate(self, model: str, images: np.ndarray) -> np.ndarray: ...

    def diffuse(self, model: str, noise: np.ndarray, label, steps, guidance=1.0, eta=0.0,
                trajectory: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def encode(self, model: str, images: np.ndarray) -> np.ndarray: ...

    def edit(self, model: str, images: np.ndarray, strength) -> np.ndarray: ...

    def close(self) -> None: ...


# The Backend method that serves each kind of model, for the error that names the right one.
METHODS = {"sample": "sample()", "translate": "translate()", "diffuse": "diffuse()", "encode": "encode()",
           "edit": "edit()"}


class _Base:
    """Shared request building: signature lookup, validation, input dict, output extraction."""

    name = "base"

    def metadata(self, model: str) -> catalog.Signature:
        raise NotImplementedError

    def _run(self, model: str, sig: catalog.Signature, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _run_outputs(self, model: str, sig: catalog.Signature, inputs: dict[str, np.ndarray],
                     outputs: list[str]) -> list[np.ndarray]:
        """The named outputs of one validated request; a backend that returns only the first output
        (``_run``) serves nothing more."""
        if outputs != [sig.outputs[0].name]:
            raise BackendError(f"{model}: the {self.name} backend returns only {sig.outputs[0].name!r}")
        return [self._run(model, sig, inputs)]

    def _signature_of_kind(self, model: str, kind: str) -> catalog.Signature:
        sig = self.metadata(model)
        if sig.kind != kind:
            raise InvalidInput(f"{model}: a {sig.kind} model; use {METHODS.get(sig.kind, sig.kind)}")
        return sig

    def sample(self, model: str, z: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
        """Latents (and labels, for conditional models) -> uint8 images N x H x W x C."""
        sig = self._signature_of_kind(model, "sample")
        inputs = {sig.inputs[0].name: np.asarray(z)}
        if len(sig.inputs) > 1:
            if label is None:
                raise InvalidInput(f"{model}: needs a label ({sig.inputs[1].doc})")
            label = np.asarray(label)
            inputs[sig.inputs[1].name] = label[:, None] if label.ndim == 1 else label  # [N] -> [N, 1]
        elif label is not None:
            raise InvalidInput(f"{model}: takes no label")
        return self._checked_run(model, sig, inputs)

    def translate(self, model: str, images: np.ndarray) -> np.ndarray:
        """uint8 images N x H x W x C -> uint8 images of the same shape."""
        sig = self._signature_of_kind(model, "translate")
        return self._checked_run(model, sig, {sig.inputs[0].name: np.asarray(images)})

    def diffuse(self, model: str, noise: np.ndarray, label, steps, guidance=1.0, eta=0.0,
                trajectory: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Initial noise float32 N x H x W x C -> uint8 images N x H x W x C, by the model's sampler.

        ``label`` is [N] or [N, 1] int64 (or one int for every row; None is "no class"); ``steps``,
        ``guidance`` and ``eta`` are one value for every row, or [N] / [N, 1] arrays (int32, float32)
        for a value per row. eta 0 is deterministic: the same noise gives the same images on every
        backend. ``trajectory`` also returns the snapshots uint8 N x frames x H x W x C (the last is the
        image); only then is it asked of the server, since it is ``frames`` times the images' size.
        """
        sig = self._signature_of_kind(model, "diffuse")
        inputs = diffusion_request(sig, noise, label, steps, guidance, eta)
        validate(sig, inputs)
        names = [t.name for t in sig.outputs][:2 if trajectory else 1]
        outs = self._run_outputs(model, sig, inputs, names)
        return (outs[0], outs[1]) if trajectory else outs[0]

    def encode(self, model: str, images: np.ndarray) -> np.ndarray:
        """uint8 images N x H x W x C (the model's size) -> latents float32 N x D, what its decoder takes."""
        sig = self._signature_of_kind(model, "encode")
        return self._checked_run(model, sig, {sig.inputs[0].name: np.asarray(images)})

    def edit(self, model: str, images: np.ndarray, strength) -> np.ndarray:
        """uint8 images N x H x W x C -> the edited images, in one request.

        ``strength`` is a mapping {attribute: strength} (the others 0; names from the signature's
        ``attributes``), one vector of A strengths for every row, or an N x A array."""
        sig = self._signature_of_kind(model, "edit")
        images = np.asarray(images)
        rows = images.shape[0] if images.ndim else 1
        return self._checked_run(model, sig, {sig.inputs[0].name: images,
                                              sig.inputs[1].name: edit_strengths(sig, strength, rows)})

    def _checked_run(self, model: str, sig: catalog.Signature, inputs: dict[str, np.ndarray]) -> np.ndarray:
        validate(sig, inputs)
        return self._run(model, sig, inputs)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def edit_strengths(sig: catalog.Signature, strength, rows: int) -> np.ndarray:
    """An edit request's strength tensor, rows x A float32, from a {name: value} mapping, one A-vector or
    rows x A; an unknown attribute name is an InvalidInput that lists the known ones."""
    if strength is None:
        raise InvalidInput(f"{sig.name}: missing input {sig.inputs[1].name!r} ({sig.inputs[1].doc})")
    if isinstance(strength, dict):
        unknown = [k for k in strength if k not in sig.attributes]
        if unknown:
            raise InvalidInput(f"{sig.name}: unknown attribute(s) {', '.join(map(str, unknown))}; "
                               f"known: {', '.join(sig.attributes)}")
        strength = [float(strength.get(name, 0.0)) for name in sig.attributes]
    values = np.asarray(strength, np.float32)
    return np.repeat(values[None], rows, axis=0) if values.ndim == 1 else values


# --------------------------------------------------------------------------- in-process


def cuda_usable() -> bool:
    """A CUDA device is present and ONNX Runtime was built for it; only then ask for the CUDA EP
    (asking on a CPU machine prints a wall of errors)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and os.path.exists("/dev/nvidiactl")


class LocalBackend(_Base):
    """The newest published version of each model, run in this process."""

    def __init__(self, repository: str | Path = "model_repository", runtime: str = "onnxruntime",
                 threads: int | None = None, ort_options: dict | None = None):
        self.repository, self.runtime = Path(repository), runtime
        self.ort_options = {**DEFAULT_ORT_OPTIONS, **(ort_options or {}),
                            **({"intra_op_threads": threads} if threads else {})}
        self.name = runtime
        self._loaded: dict[str, tuple[catalog.Signature, object]] = {}
        self._sessions: list[OrtSession] = []

    def _version_dir(self, model: str) -> Path:
        for other, suffix in catalog.RUNTIME_SUFFIX.items():  # another runtime's file: say which backend runs it
            if suffix and other != self.runtime and model.endswith(suffix):
                base = model.removesuffix(suffix)
                raise BackendError(f"{model} is {base}'s {other} file: run it with --backend {other}, or ask this "
                                   f"backend ({self.runtime}) for {base}{catalog.RUNTIME_SUFFIX[self.runtime]}")
        name = catalog.RUNTIME_SUFFIX[self.runtime]
        name = model if model.endswith(name) and name else model + name
        version = latest(self.repository, name)
        if version is None:
            raise BackendError(f"{name}: not published in {self.repository} (run ganexport build)")
        return version

    def _load(self, model: str):
        """(signature, run): ``run(inputs) -> every output, in the signature's order``. A diffusion model's
        file is its denoiser, so its run is the sampler loop around the file."""
        if model not in self._loaded:
            vdir = self._version_dir(model)
            sig = read_signature(vdir)
            file_sig = sig.denoiser() if sig.diffusion is not None else sig
            try:
                model_file = vdir / MODEL_FILES[self.runtime]
                load = self._onnx if self.runtime == "onnxruntime" else self._ts
                run = load(model_file, file_sig)
            except Exception as e:  # a corrupt file fails in many ways; say which file
                raise BackendError(f"{vdir}: model file does not load: {str(e).splitlines()[0][:200]}") from None
            if sig.diffusion is not None:
                run = _sampler(sig, run)
            self._loaded[model] = (sig, run)
        return self._loaded[model]

    def _onnx(self, path: Path, sig: catalog.Signature):
        providers = (["CUDAExecutionProvider"] if cuda_usable() else []) + ["CPUExecutionProvider"]
        session = OrtSession(path, sig, self.ort_options, providers)
        self._sessions.append(session)
        self.providers = session.get_providers()
        return lambda inputs: session.run(None, inputs)

    def _ts(self, path: Path, sig: catalog.Signature):
        import torch  # lazily: serving must not need torch unless TorchScript is asked for

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        module = torch.jit.load(str(path), map_location=device).eval()

        def run(inputs):
            with torch.inference_mode():
                args = [torch.from_numpy(_writable(inputs[t.name])).to(device) for t in sig.inputs]
                out = module(*args)
            return [o.cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

        return run

    def metadata(self, model: str) -> catalog.Signature:
        return self._load(model)[0]

    def _run(self, model, sig, inputs):
        return self._load(model)[1](inputs)[0]

    def _run_outputs(self, model, sig, inputs, outputs):
        everything = dict(zip((t.name for t in sig.outputs), self._load(model)[1](inputs)))
        return [everything[name] for name in outputs]

    def close(self) -> None:
        for session in self._sessions:
            session.close()


def _sampler(sig: catalog.Signature, denoiser_run):
    """A diffusion model's run: its sampler loop around the denoiser file's ``run(feeds) -> [eps]``."""
    eps = diffusion.denoiser_eps_fn(sig, denoiser_run)
    return lambda inputs: diffusion.run_signature(sig, eps, inputs)


# --------------------------------------------------------------------------- Triton


class TritonBackend(_Base):
    """A Triton endpoint through tritonclient, over HTTP or gRPC.

    The model's signature comes from its config (the ``signature`` parameter
    the repository writer adds), so requests are validated before they are
    sent. Connections are closed by ``close()``: an idle HTTP keep-alive
    connection would otherwise hold the server's shutdown.

    ``token`` goes with every request as ``Authorization: Bearer <token>`` (what a front door started
    with ``--token-file`` wants); ``tls_ca`` (a PEM file), or an ``https://`` url, speaks TLS and
    trusts that CA (the system's CAs for a bare ``https://``), checking the server's name.
    """

    def __init__(self, protocol: str = "grpc", url: str | None = None, timeout: float = 30.0,
                 token: str | None = None, tls_ca: str | os.PathLike | None = None):
        self.protocol = protocol
        self.name = f"triton-{protocol}"
        url = url or DEFAULT_URLS[self.name]
        self.tls = tls = tls_ca is not None or url.startswith("https://")
        self.url = url.removeprefix("http://").removeprefix("https://").removeprefix("grpc://")
        self.timeout = timeout
        self._token = token
        ca = str(tls_ca) if tls_ca is not None else None
        if protocol == "http":
            import tritonclient.http as client

            self._client = client.InferenceServerClient(self.url, connection_timeout=timeout, network_timeout=timeout,
                                                        ssl=tls, ssl_options={"ca_certs": ca} if ca else None)
        elif protocol == "grpc":
            # gRPC's core would print an INFO line of its own before our one-line error (a failed TLS handshake)
            os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
            import tritonclient.grpc as client

            self._client = client.InferenceServerClient(self.url, ssl=tls, root_certificates=ca)
        else:
            raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
        self._module = client
        self._signatures: dict[str, catalog.Signature] = {}

    @property
    def _headers(self) -> dict[str, str] | None:
        """A fresh dict per call: tritonclient.http adds its own headers to the one it is given."""
        return bearer(self._token) if self._token else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Retry only here, while a just-started server is not ready yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._client.is_server_ready(headers=self._headers):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise BackendError(f"Triton at {self.url} is not ready after {timeout:.0f} s")
            time.sleep(0.2)

    def _call(self, what: str, fn, *args, **kw):
        """``fn``'s answer; a refusal for the token's rate limit is retried after the wait it names (for up to
        RATE_LIMITED_FOR_S: a demo's many users share one token), every other failure raised in one line."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + min(self.timeout, RATE_LIMITED_FOR_S)
        while True:
            try:
                return fn(*args, **kw)
            except InferenceServerException as e:
                status = str(e.status() or "")
                msg = (e.message() or str(e)).splitlines()[0]
                wait = _rate_limit_wait(status, msg)
                if wait is not None and time.monotonic() + wait < deadline:
                    time.sleep(wait)
                    continue
                if status in ("400", "StatusCode.INVALID_ARGUMENT"):
                    raise InvalidInput(msg) from None
                raise BackendError(f"{what}: Triton at {self.url} ({self.protocol}): {msg}{self._tls_hint(msg)}"
                                   ) from None
            except Exception as e:  # connection refused, timeouts: the server is not there
                text = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                raise BackendError(f"{what}: Triton at {self.url} ({self.protocol}) unreachable: {text}"
                                   f"{self._tls_hint(text)}") from None

    def _tls_hint(self, failure: str) -> str:
        """A server that hangs up on plain text at once is most likely a TLS port (serve --tls-cert)."""
        hung_up = any(w in failure for w in ("connection closed", "Connection reset", "Socket closed"))
        return "; if the server speaks TLS, give --tls-ca (or an https:// url)" if hung_up and not self.tls else ""

    def metadata(self, model: str) -> catalog.Signature:
        if model not in self._signatures:
            if self.protocol == "grpc":
                config = self._call(model, self._client.get_model_config, model, as_json=True,
                                    client_timeout=self.timeout, headers=self._headers)["config"]
            else:
                config = self._call(model, self._client.get_model_config, model, headers=self._headers)
            raw = config.get("parameters", {}).get("signature", {}).get("string_value")
            if not raw:
                raise BackendError(f"{model}: its config carries no signature parameter (not built by ganexport?)")
            self._signatures[model] = catalog.Signature.from_dict(json.loads(raw))
        return self._signatures[model]

    def _run(self, model, sig, inputs):
        return self._run_outputs(model, sig, inputs, [sig.outputs[0].name])[0]

    def _run_outputs(self, model, sig, inputs, outputs):
        """One request asking for ``outputs`` only: Triton sends back just those."""
        from tritonclient.utils import np_to_triton_dtype

        request = []
        for t in sig.inputs:
            value = np.ascontiguousarray(inputs[t.name])
            tensor = self._module.InferInput(t.name, list(value.shape), np_to_triton_dtype(value.dtype))
            tensor.set_data_from_numpy(value)
            request.append(tensor)
        kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        result = self._call(model, self._client.infer, model, request, headers=self._headers,
                            outputs=[self._module.InferRequestedOutput(name) for name in outputs], **kw)
        return [result.as_numpy(name) for name in outputs]

    def close(self) -> None:
        self._client.close()


def _writable(value: np.ndarray) -> np.ndarray:
    """``value`` as torch.from_numpy takes it without a warning: contiguous and writable (a decoded image's
    array is read-only), copied only when it is not."""
    value = np.ascontiguousarray(value)
    return value if value.flags.writeable else value.copy()


RATE_LIMITED_FOR_S = 10.0  # how long a call refused for the token's rate limit keeps being retried


def _rate_limit_wait(status: str, message: str) -> float | None:
    """The seconds a rate-limit refusal (429 / RESOURCE_EXHAUSTED) says to wait; None for any other failure."""
    found = RATE_LIMITED.search(message) if status in ("429", "StatusCode.RESOURCE_EXHAUSTED") else None
    return max(0.01, float(found.group(1))) if found else None


def connect(kind: str, *, repository: str | Path = "model_repository", url: str | None = None,
            timeout: float = 30.0, ort_options: dict | None = None, token: str | None = None,
            tls_ca: str | os.PathLike | None = None) -> Backend:
    """A backend by name: onnxruntime | torchscript (in-process) | triton-http | triton-grpc.

    ``ort_options`` (ORT_OPTIONS knobs) tune the in-process ONNX Runtime session; ``token`` and
    ``tls_ca`` reach a Triton front door that wants them (TritonBackend), and mean nothing in-process."""
    if kind in ("onnxruntime", "torchscript"):
        return LocalBackend(repository, runtime=kind, ort_options=ort_options)
    if kind in ("triton-http", "triton-grpc"):
        return TritonBackend(kind.removeprefix("triton-"), url, timeout, token=token, tls_ca=tls_ca)
    raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
