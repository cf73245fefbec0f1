"""Who answers the demo's requests: Triton, or in-process ONNX Runtime while Triton is unreachable.

Gradio-free, so the handlers and the tab plan can be tested without a page.

    >>> from ganexport.demo.backend import FallbackBackend                  # doctest: +SKIP
    >>> fb = FallbackBackend(lambda: connect("triton-grpc"), lambda: connect("onnxruntime"), "triton-grpc")
    >>> fb.call("sample", "dcgan", z).line()                                # doctest: +SKIP
    'Served by **triton-grpc at 127.0.0.1:8001** in 0.7 ms.'

Any Backend method goes through ``call`` by name (sample, translate, diffuse, metadata), with the same
fallback; ``sample_batched`` and ``diffuse_batched`` split a request by the model's max batch size.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ganexport import catalog
from ganexport.serving.backends import Backend, BackendError, InvalidInput


class DemoError(Exception):
    """A one-line message for the person using the page."""


def one_line(e: BaseException) -> str:
    """The first line of an error, at most 300 characters: the page never shows a stack."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


@dataclass
class Served:
    """What a call returned, who served it and how long the backend took."""

    images: Any  # uint8 NHWC images; a Signature for metadata calls
    backend: str
    ms: float
    note: str = ""
    trajectory: Any = None  # a diffusion model's snapshots, uint8 [N, frames, H, W, C], when asked for

    def line(self) -> str:
        text = f"Served by **{self.backend}** in {self.ms:.1f} ms."
        return text + (f" {self.note}" if self.note else "")


class FallbackBackend:
    """The primary backend (Triton), or in-process ONNX Runtime while the primary is unreachable.

    Every request tries the primary first (a fresh client after a failure), so
    the demo switches back as soon as Triton returns. ``InvalidInput`` is the
    caller's fault and is never retried.
    """

    def __init__(self, primary: Callable[[], Backend], fallback: Callable[[], Backend] | None,
                 primary_label: str = "triton"):
        self._make_primary, self._make_fallback = primary, fallback
        self.primary_label = primary_label
        self._primary: Backend | None = None
        self._fallback: Backend | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None  # why the primary failed last time, None while it works

    def _get_primary(self) -> Backend:
        with self._lock:
            if self._primary is None:
                self._primary = self._make_primary()
            return self._primary

    def _drop_primary(self) -> None:
        with self._lock:
            old, self._primary = self._primary, None
        if old is not None:
            try:
                old.close()
            except Exception:  # a dead connection may not close cleanly; it is gone either way
                pass

    def _get_fallback(self) -> Backend:
        with self._lock:
            if self._fallback is None:
                self._fallback = self._make_fallback()
            return self._fallback

    def call(self, method: str, model: str, *args: Any, **kw: Any) -> Served:
        """``backend.<method>(model, ...)`` on the primary, else on the fallback; timed."""
        try:
            backend = self._get_primary()
            t0 = time.perf_counter()
            out = getattr(backend, method)(model, *args, **kw)
            ms = (time.perf_counter() - t0) * 1000
            note = "" if self.last_error is None else f"{self.primary_label} is back."
            self.last_error = None
            return Served(out, backend.name + _where(backend), ms, note)
        except InvalidInput:
            raise
        except (BackendError, OSError) as e:
            self._drop_primary()
            self.last_error = one_line(e)
            if self._make_fallback is None:
                raise DemoError(f"{self.primary_label} failed: {self.last_error}") from None
        try:
            backend = self._get_fallback()
            t0 = time.perf_counter()
            out = getattr(backend, method)(model, *args, **kw)
            ms = (time.perf_counter() - t0) * 1000
        except BackendError as e:
            raise DemoError(f"{self.primary_label} failed ({self.last_error}) and the fallback "
                            f"failed too: {one_line(e)}") from None
        return Served(out, f"{backend.name} (in-process fallback)", ms,
                      f"⚠ {self.primary_label} is unreachable, so this demo fell back to in-process "
                      f"ONNX Runtime; it tries {self.primary_label} again on every request. "
                      f"({self.last_error})")

    def metadata(self, model: str) -> catalog.Signature:
        return self.call("metadata", model).images  # a Signature, not images; same path, same fallback

    def signatures(self, models: Iterable[str]) -> tuple[dict[str, catalog.Signature], dict[str, str]]:
        """(signature by model, why by model not served) for ``models``, asked once at start-up.

        A model the primary does not know is not published there; that says nothing about the
        primary being down, so it is neither taken from the fallback (requests for it would go to
        the primary and fail) nor reported as an outage. Only a primary that answers for none of
        them counts as unreachable; then the fallback's repository decides.
        """
        models = list(models)
        found, missing = self._ask(self._get_primary, models)
        if found or self._make_fallback is None:
            return found, missing
        self._drop_primary()
        self.last_error = next(iter(missing.values()), None) if models else None
        return self._ask(self._get_fallback, models)

    @staticmethod
    def _ask(get: Callable[[], Backend], models: list[str]):
        found: dict[str, catalog.Signature] = {}
        missing: dict[str, str] = {}
        try:
            backend = get()
        except (BackendError, OSError) as e:
            return found, {m: one_line(e) for m in models}
        for model in models:
            try:
                found[model] = backend.metadata(model)
            except (BackendError, InvalidInput, OSError) as e:
                missing[model] = one_line(e)
        return found, missing

    def banner(self) -> str:
        if self.last_error is None:
            return f"Backend: **{self.primary_label}**."
        return (f"⚠ **{self.primary_label} is unreachable**; results come from in-process ONNX Runtime "
                f"until it returns. Last error: {self.last_error}")

    def close(self) -> None:
        self._drop_primary()
        if self._fallback is not None:
            self._fallback.close()


def _where(backend: Backend) -> str:
    url = getattr(backend, "url", None)
    return f" at {url}" if url else ""


def sample_batched(backend: FallbackBackend, model: str, sig: catalog.Signature, z: np.ndarray,
                   label: np.ndarray | None = None) -> Served:
    """One sample request split by the model's max batch size; the time is the sum, the backend the last."""
    parts, total_ms, last = [], 0.0, None
    step = max(1, sig.max_batch_size)
    for i in range(0, len(z), step):
        kw = {} if label is None else {"label": label[i:i + step]}
        last = backend.call("sample", model, z[i:i + step], **kw)
        parts.append(last.images)
        total_ms += last.ms
    return Served(np.concatenate(parts), last.backend, total_ms, last.note)


def diffuse_batched(backend: FallbackBackend, model: str, sig: catalog.Signature, noise: np.ndarray,
                    label: np.ndarray | None, steps: int, guidance: float, eta: float,
                    trajectory: bool = False) -> Served:
    """``backend.diffuse`` split by the model's max batch size: every chunk runs the same steps, guidance and eta.
    The images (and, with ``trajectory``, the snapshots) are concatenated; the time is the sum."""
    images, frames, total_ms, last = [], [], 0.0, None
    step = max(1, sig.max_batch_size)
    for i in range(0, len(noise), step):
        chunk = None if label is None else label[i:i + step]
        last = backend.call("diffuse", model, noise[i:i + step], chunk, steps, guidance=guidance, eta=eta,
                            trajectory=trajectory)
        out = last.images
        images.append(out[0] if trajectory else out)
        if trajectory:
            frames.append(out[1])
        total_ms += last.ms
    return Served(np.concatenate(images), last.backend, total_ms, last.note,
                  np.concatenate(frames) if trajectory else None)
