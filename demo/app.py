"""The Gradio demo (issue #5): sample, ask for a class, walk a 2-D latent space, translate a photo.

Every image comes through the one Backend API (``ganexport.serving.backends``):
by default Triton over gRPC, with in-process ONNX Runtime as the fallback when
Triton cannot be reached (said on the page; Triton is tried again on the next
request). Nothing here imports torch.

    >>> from ganexport.demo.app import build_app                          # doctest: +SKIP
    >>> build_app(backend_kind="onnxruntime", repository="model_repository").launch()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Before gradio is imported: no analytics calls, temp files under the system temp dir.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(tempfile.gettempdir()) / "ganexport-gradio"))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ganexport import catalog  # noqa: E402
from ganexport.images import ImageError, grid_image, read_image, upscale_for_viewing  # noqa: E402
from ganexport.serving.backends import Backend, BackendError, InvalidInput, connect  # noqa: E402
from ganexport.sketch import pencil_sketch  # noqa: E402

SAMPLE_MODELS = ("dcgan", "wgan_gp", "vae_decoder", "autoencoder_decoder")
LATENT_MODELS = ("vae_decoder", "autoencoder_decoder")
CONDITIONAL_MODEL = "cgan"
TRANSLATORS = {"photo -> sketch": "cyclegan_a2b", "sketch -> photo": "cyclegan_b2a"}
MAX_COUNT = 64  # images per grid
MATE_NATURE_DIR = Path("/usr/share/backgrounds/mate/nature")
# Uploads above this are refused by Gradio before they reach disk. The largest image the translators
# take (1024x1024) is at most 8 MB even as an uncompressed 16-bit RGBA TIFF.
MAX_UPLOAD_BYTES = 16 * 2**20


class DemoError(Exception):
    """A one-line message for the person using the page."""


# --------------------------------------------------------------------------- backend with fallback


@dataclass
class Served:
    """What a call returned, who served it and how long the backend took."""

    images: np.ndarray
    backend: str
    ms: float
    note: str = ""

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
            self.last_error = _one_line(e)
            if self._make_fallback is None:
                raise DemoError(f"{self.primary_label} failed: {self.last_error}") from None
        try:
            backend = self._get_fallback()
            t0 = time.perf_counter()
            out = getattr(backend, method)(model, *args, **kw)
            ms = (time.perf_counter() - t0) * 1000
        except BackendError as e:
            raise DemoError(f"{self.primary_label} failed ({self.last_error}) and the fallback "
                            f"failed too: {_one_line(e)}") from None
        return Served(out, f"{backend.name} (in-process fallback)", ms,
                      f"⚠ {self.primary_label} is unreachable, so this demo fell back to in-process "
                      f"ONNX Runtime; it tries {self.primary_label} again on every request. "
                      f"({self.last_error})")

    def metadata(self, model: str) -> catalog.Signature:
        return self.call("metadata", model).images  # a Signature, not images; same path, same fallback

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


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# --------------------------------------------------------------------------- labels


def model_label(model: str, sig: catalog.Signature | None = None) -> str:
    """What a served model is and what it was trained on (from the catalog, checked against the
    image size the published model really makes)."""
    base = next((m for m in catalog.MODELS.values() if model.startswith(m.name) and
                 model[len(m.name):] in m.serves), None)
    if base is None:
        return model
    data = catalog.DATASETS[base.dataset]
    shape = tuple(sig.outputs[0].shape) if sig is not None else data.image_shape
    if base.family != "cyclegan" and shape != data.image_shape:
        other = [d for d in catalog.DATASETS.values() if d.image_shape == shape and not d.paired]
        what = other[0].description if len(other) == 1 else f"{shape[1]}x{shape[0]} images"
        return (f"**{model}**: {base.description}; this build makes {shape[1]}x{shape[0]} images, so it was "
                f"trained on {what}, not on the released recipe's {base.dataset}.")
    trained = f"trained on {data.description}."
    return f"**{model}**: {base.description}; {trained}"


# --------------------------------------------------------------------------- image helpers


def _latents(sig: catalog.Signature, seeds: list[int]) -> np.ndarray:
    dim = sig.inputs[0].shape[0]
    return np.stack([np.random.default_rng(int(s)).standard_normal(dim) for s in seeds]).astype(np.float32)


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: intermediate Gaussian latents keep a typical norm."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
    omega = math.acos(float(np.clip(cos, -1.0, 1.0)))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def _to_display(arr: np.ndarray, scale: int = 1) -> Image.Image:
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def _grid(images: np.ndarray, nrow: int) -> Image.Image:
    return grid_image(images, nrow=max(1, nrow), scale=upscale_for_viewing(images.shape[1]))


def bundled_examples(folder: Path) -> list[Path]:
    """A few photos for the Translate tab, written at runtime (never downloaded).

    scikit-image / scikit-learn sample photos when installed, else the MATE
    nature backgrounds (scaled down); plus one pencil sketch for sketch->photo.
    """
    folder.mkdir(parents=True, exist_ok=True)
    photos: dict[str, np.ndarray] = {}
    try:
        import skimage.data

        photos["chelsea"] = skimage.data.chelsea()
        photos["coffee"] = skimage.data.coffee()
    except Exception:  # optional: the base install has no scikit-image
        pass
    try:
        from sklearn.datasets import load_sample_image

        photos["china"] = load_sample_image("china.jpg")
    except Exception:  # optional
        pass
    if MATE_NATURE_DIR.is_dir():
        for path in sorted(MATE_NATURE_DIR.glob("*.jpg"))[:2]:
            try:
                with Image.open(path) as im:
                    im.thumbnail((640, 640))
                    photos[path.stem.lower()] = np.asarray(im.convert("RGB"))
            except OSError:
                pass
    out = []
    for name, arr in photos.items():
        im = Image.fromarray(arr[..., :3])
        im.thumbnail((640, 640))
        path = folder / f"{name}.png"
        im.save(path)
        out.append(path)
    if out:
        with Image.open(out[0]) as im:
            path = folder / f"{out[0].stem}-sketch.png"
            Image.fromarray(pencil_sketch(np.asarray(im.convert("RGB")))).save(path)
            out.append(path)
    return out


def _lenient_image_preprocess(component: gr.Image) -> None:
    """Hand the raw uploaded path to our code when Gradio cannot open it, so a non-image or corrupt
    upload gets our one-line message instead of Gradio's generic error."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:
            return getattr(payload, "path", None)

    component.preprocess = preprocess


# --------------------------------------------------------------------------- the app


def build_app(backend_factory: Callable[[], Backend] | None = None, *, backend_kind: str = "triton-grpc",
              triton_url: str | None = None, repository: str | os.PathLike = "model_repository",
              fallback_factory: Callable[[], Backend] | None = None, examples_dir: str | None = None) -> gr.Blocks:
    """The demo's Blocks. ``backend_factory`` makes the primary backend (default: ``connect(backend_kind, ...)``);
    Triton kinds fall back to in-process ONNX Runtime on ``repository`` (or ``fallback_factory``)."""
    repository = Path(repository)
    if backend_factory is None:
        backend_factory = lambda: connect(backend_kind, repository=repository, url=triton_url)  # noqa: E731
    if fallback_factory is None and backend_kind.startswith("triton"):
        fallback_factory = lambda: connect("onnxruntime", repository=repository)  # noqa: E731
    label = backend_kind + (f" at {triton_url}" if triton_url else "")
    backend = FallbackBackend(backend_factory, fallback_factory, primary_label=label)

    signatures: dict[str, catalog.Signature] = {}
    startup_errors: list[str] = []
    for model in (*SAMPLE_MODELS, CONDITIONAL_MODEL, *TRANSLATORS.values()):
        try:
            signatures[model] = backend.metadata(model)
        except (DemoError, BackendError, InvalidInput) as e:
            startup_errors.append(f"{model}: {_one_line(e)}")

    def sig(model: str) -> catalog.Signature:
        if model not in signatures:
            try:
                signatures[model] = backend.metadata(model)
            except (DemoError, BackendError) as e:
                raise DemoError(f"{model} is not available: {_one_line(e)}") from None
        return signatures[model]

    def sample_batched(model: str, z: np.ndarray, label: np.ndarray | None = None) -> Served:
        """Split a request by the model's max batch size; time and backend of the whole."""
        s = sig(model)
        parts, total_ms, last = [], 0.0, None
        for i in range(0, len(z), max(1, s.max_batch_size)):
            chunk = slice(i, i + s.max_batch_size)
            kw = {} if label is None else {"label": label[chunk]}
            last = backend.call("sample", model, z[chunk], **kw)
            parts.append(last.images)
            total_ms += last.ms
        return Served(np.concatenate(parts), last.backend, total_ms, last.note)

    def guarded(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        """Any expected failure -> empty outputs, a warning toast and the message in the status box."""
        def run(*args):
            try:
                *outs, status = fn(*args)
                return (*outs, status, backend.banner())
            except Exception as e:  # noqa: BLE001 - the page gets one line, never a stack trace
                expected = isinstance(e, (DemoError, ImageError, InvalidInput, BackendError))
                msg = _one_line(e) if expected else f"internal error ({type(e).__name__}: {_one_line(e)})"
                if not expected:
                    traceback.print_exc()
                gr.Warning(msg)
                n_out = run.n_images
                return (*([None] * n_out), f"❌ {msg}", backend.banner())
        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    # -- handlers --------------------------------------------------------

    def sample_grid(model, seed, count):
        count = int(max(1, min(MAX_COUNT, int(count))))
        s = sig(model)
        z = _latents(s, [int(seed) + i for i in range(count)])
        out = sample_batched(model, z)
        status = f"{count} samples, seeds {int(seed)}..{int(seed) + count - 1}. {out.line()}"
        return _grid(out.images, math.ceil(math.sqrt(count))), status

    def latent_walk(model, seed_a, seed_b, frames):
        frames = int(max(2, min(32, int(frames))))
        s = sig(model)
        a, b = _latents(s, [int(seed_a), int(seed_b)])
        z = np.stack([_slerp(a, b, t) for t in np.linspace(0, 1, frames)]).astype(np.float32)
        out = sample_batched(model, z)
        return _grid(out.images, frames), f"{frames} frames from seed {int(seed_a)} to seed {int(seed_b)}. {out.line()}"

    def class_names() -> list[str]:
        s = signatures.get(CONDITIONAL_MODEL)
        n = int(s.inputs[-1].high) + 1 if s else 10  # the conditional input: the class index
        names = catalog.DATASETS[catalog.get("cgan").dataset].class_names
        return list(names) if len(names) == n else [str(i) for i in range(n)]

    def conditional_class(class_name, seed, count):
        names = class_names()
        if class_name not in names:
            raise DemoError(f"unknown class {class_name!r}; choose one of {', '.join(names)}")
        count = int(max(1, min(MAX_COUNT, int(count))))
        s = sig(CONDITIONAL_MODEL)
        z = _latents(s, [int(seed) + i for i in range(count)])
        out = sample_batched(CONDITIONAL_MODEL, z, np.full(count, names.index(class_name), np.int64))
        return _grid(out.images, min(count, 8)), f"{count} x {class_name}. {out.line()}"

    def conditional_all(seed, rows):
        names = class_names()
        rows = int(max(1, min(6, int(rows))))
        s = sig(CONDITIONAL_MODEL)
        z = np.repeat(_latents(s, [int(seed) + r for r in range(rows)]), len(names), axis=0)  # one z per row
        labels = np.tile(np.arange(len(names), dtype=np.int64), rows)
        out = sample_batched(CONDITIONAL_MODEL, z, labels)
        return (_grid(out.images, len(names)),
                f"Columns: {' | '.join(names)}; one latent per row (seeds {int(seed)}..{int(seed) + rows - 1}). "
                f"{out.line()}")

    def check_2d(model):
        s = sig(model)
        if s.inputs[0].shape != (2,):
            raise DemoError(f"{model} has a {s.inputs[0].shape[0]}-D latent; this tab needs a 2-D one")

    def decode_point(model, x, y):
        check_2d(model)
        out = backend.call("sample", model, np.array([[x, y]], np.float32))
        img = out.images[0]
        return _to_display(img, upscale_for_viewing(img.shape[0], 224)), f"z = ({x:.2f}, {y:.2f}). {out.line()}"

    def manifold(model, n, extent):
        check_2d(model)
        n, extent = int(max(2, min(20, int(n)))), float(extent)
        axis = np.linspace(-extent, extent, n)
        z = np.array([[x, y] for y in axis[::-1] for x in axis], np.float32)  # y up, as on a plot
        out = sample_batched(model, z)
        grid = grid_image(out.images, nrow=n, pad=0, scale=max(1, 448 // (n * out.images.shape[1])))
        return grid, f"{n}x{n} decodings of z in [-{extent:g}, {extent:g}]^2 (x right, y up). {out.line()}"

    def translate(path, direction):
        if direction not in TRANSLATORS:
            raise DemoError(f"choose a direction: {', '.join(TRANSLATORS)}")
        if not path:
            raise DemoError("upload a photo first (or pick an example)")
        model = TRANSLATORS[direction]
        s = sig(model)
        channels = s.inputs[0].shape[-1]
        arr = read_image(str(path), channels=channels, min_side=s.min_image_side, max_side=s.max_image_side)
        arr = np.ascontiguousarray(arr)
        out = backend.call("translate", model, arr[None])
        result = out.images[0]
        truth = pencil_sketch(arr if channels == 3 else np.repeat(arr, 3, -1)) if model.endswith("a2b") else None
        status = f"{arr.shape[1]}x{arr.shape[0]} {direction}. {out.line()}"
        if truth is not None:
            status += " The right-hand image is the true pencil-sketch filter output (the training target)."
        return (_to_display(arr), _to_display(result), None if truth is None else _to_display(truth),
                status)

    # -- layout ----------------------------------------------------------

    sample_models = [m for m in SAMPLE_MODELS if m in signatures]
    latent_models = [m for m in LATENT_MODELS if m in signatures and signatures[m].inputs[0].shape == (2,)]
    limit = max((signatures[m].max_image_side or 0 for m in TRANSLATORS.values() if m in signatures),
                default=catalog.MAX_IMAGE_SIDE)
    min_side = min((signatures[m].min_image_side or 0 for m in TRANSLATORS.values() if m in signatures),
                   default=catalog.MIN_IMAGE_SIDE)
    examples = bundled_examples(Path(examples_dir or Path(os.environ["GRADIO_TEMP_DIR"]) / "examples"))

    def labels_md(models) -> str:
        return "\n".join(f"- {model_label(m, signatures.get(m))}" for m in models)

    with gr.Blocks(title="ganexport demo", analytics_enabled=False) as app:
        gr.Markdown("# ganexport demo\nGenerative models exported to ONNX/TorchScript and served by Triton. "
                    "Every result says which backend served it and how long the model call took.")
        banner = gr.Markdown(backend.banner(), elem_id="backend-banner")
        if startup_errors:
            gr.Markdown("Not available: " + "; ".join(startup_errors), elem_id="startup-errors")

        def wire(button, fn, inputs, outputs, api_name, n_images):
            handler = guarded(fn)
            handler.n_images = n_images
            button.click(handler, inputs=inputs, outputs=[*outputs, banner], api_name=api_name)

        with gr.Tabs():
            with gr.Tab("Sample", id="sample", elem_id="tab-sample"):
                gr.Markdown(labels_md(sample_models) or "No unconditional model is published.")
                with gr.Row():
                    s_model = gr.Dropdown(sample_models, value=sample_models[0] if sample_models else None,
                                          label="model")
                    s_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                    s_count = gr.Slider(1, MAX_COUNT, value=16, step=1, label="count")
                s_btn = gr.Button("Sample", variant="primary", elem_id="sample-btn")
                s_img = gr.Image(format="png", label="samples", type="pil", elem_id="sample-output")
                s_status = gr.Markdown(elem_id="sample-status")
                wire(s_btn, sample_grid, [s_model, s_seed, s_count], [s_img, s_status], "sample", 1)
                gr.Markdown("### Latent walk between two seeds")
                with gr.Row():
                    w_a = gr.Number(0, precision=0, minimum=0, label="from seed")
                    w_b = gr.Number(1, precision=0, minimum=0, label="to seed")
                    w_n = gr.Slider(2, 32, value=10, step=1, label="frames")
                w_btn = gr.Button("Walk", elem_id="walk-btn")
                w_img = gr.Image(format="png", label="latent walk", type="pil", elem_id="walk-output")
                w_status = gr.Markdown(elem_id="walk-status")
                wire(w_btn, latent_walk, [s_model, w_a, w_b, w_n], [w_img, w_status], "latent_walk", 1)

            with gr.Tab("Conditional", id="conditional", elem_id="tab-conditional"):
                gr.Markdown(labels_md([CONDITIONAL_MODEL] if CONDITIONAL_MODEL in signatures else [])
                            or "cgan is not published.")
                names = class_names()
                with gr.Row():
                    c_class = gr.Dropdown(names, value=names[0], label="class")
                    c_seed = gr.Number(0, precision=0, minimum=0, label="seed")
                    c_count = gr.Slider(1, 32, value=8, step=1, label="seeds")
                c_btn = gr.Button("Generate this class", variant="primary", elem_id="class-btn")
                c_img = gr.Image(format="png", label="one class, several seeds", type="pil",
                                 elem_id="class-output")
                c_status = gr.Markdown(elem_id="class-status")
                wire(c_btn, conditional_class, [c_class, c_seed, c_count], [c_img, c_status], "conditional", 1)
                with gr.Row():
                    a_rows = gr.Slider(1, 6, value=3, step=1, label="rows (one latent each)")
                a_btn = gr.Button("Every class side by side", elem_id="all-btn")
                a_img = gr.Image(format="png", label="every class", type="pil", elem_id="all-output")
                a_status = gr.Markdown(elem_id="all-status")
                wire(a_btn, conditional_all, [c_seed, a_rows], [a_img, a_status], "all_classes", 1)

            with gr.Tab("Latent space", id="latent", elem_id="tab-latent"):
                gr.Markdown((labels_md(latent_models) + "\n\nMove the sliders to pick a point of the 2-D "
                             "latent space (standard units: 0 is the centre of the training codes, 1 one "
                             "standard deviation); the decoder draws it.") if latent_models
                            else "No 2-D latent model (autoencoder_decoder, vae_decoder) is published.")
                l_model = gr.Dropdown(latent_models, value=latent_models[0] if latent_models else None,
                                      label="decoder")
                with gr.Row():
                    l_x = gr.Slider(-4, 4, value=0, step=0.05, label="z[0] (x)")
                    l_y = gr.Slider(-4, 4, value=0, step=0.05, label="z[1] (y)")
                with gr.Row():
                    l_img = gr.Image(format="png", label="decoded point", type="pil", elem_id="point-output")
                    m_img = gr.Image(format="png", label="manifold", type="pil", elem_id="manifold-output")
                l_status = gr.Markdown(elem_id="point-status")
                point_handler = guarded(decode_point)
                point_handler.n_images = 1
                for ev in (l_x.release, l_y.release, l_model.change):
                    ev(point_handler, [l_model, l_x, l_y], [l_img, l_status, banner], api_name=False)
                l_btn = gr.Button("Decode point", elem_id="point-btn")
                wire(l_btn, decode_point, [l_model, l_x, l_y], [l_img, l_status], "decode_point", 1)
                with gr.Row():
                    m_n = gr.Slider(2, 20, value=12, step=1, label="grid size")
                    m_ext = gr.Slider(0.5, 4, value=2, step=0.5, label="extent (|z| up to)")
                m_btn = gr.Button("Draw manifold", elem_id="manifold-btn")
                m_status = gr.Markdown(elem_id="manifold-status")
                wire(m_btn, manifold, [l_model, m_n, m_ext], [m_img, m_status], "manifold", 1)

            with gr.Tab("Translate", id="translate", elem_id="tab-translate"):
                gr.Markdown(labels_md([m for m in TRANSLATORS.values() if m in signatures])
                            or "cyclegan is not published.")
                gr.Markdown(f"**Size limit:** the output keeps the input's size; both sides must be between "
                            f"{min_side} and {limit} pixels (a limit for CPU latency). Larger photos are "
                            f"refused with a message: resize them first.")
                t_dir = gr.Radio(list(TRANSLATORS), value="photo -> sketch", label="direction")
                with gr.Row():
                    # image_mode=None: Gradio hands over the file untouched; read_image converts RGBA (onto
                    # white), palette and 16-bit images properly, where Gradio's RGB conversion would not.
                    t_in = gr.Image(type="filepath", image_mode=None, label="your photo (upload)",
                                    sources=["upload"], elem_id="translate-input")
                    _lenient_image_preprocess(t_in)
                    t_btn = gr.Button("Translate", variant="primary", elem_id="translate-btn")
                with gr.Row():
                    t_shown = gr.Image(format="png", label="input", type="pil", elem_id="translate-shown")
                    t_out = gr.Image(format="png", label="model output", type="pil", elem_id="translate-output")
                    t_truth = gr.Image(format="png", label="true pencil_sketch filter (photo -> sketch only)",
                                       type="pil", elem_id="translate-truth")
                t_status = gr.Markdown(elem_id="translate-status")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[t_in], label="bundled examples "
                                "(the '-sketch' one is made by the filter; try it with sketch -> photo)")
                wire(t_btn, translate, [t_in, t_dir], [t_shown, t_out, t_truth, t_status], "translate", 3)
        app.demo_backend = backend  # for tests and for launch() to close
    return app


def launch(backend_kind: str = "triton-grpc", triton_url: str | None = None,
           repository: str | os.PathLike = "model_repository", host: str = "127.0.0.1", port: int = 7860,
           **launch_kw: Any) -> gr.Blocks:
    """Build the demo and serve it on ``host:port``: never a public share link, uploads capped at
    ``MAX_UPLOAD_BYTES`` unless ``max_file_size`` says otherwise, files served from Gradio's temp folder only."""
    app = build_app(backend_kind=backend_kind, triton_url=triton_url, repository=repository)
    launch_kw.pop("share", None)
    launch_kw.setdefault("max_file_size", MAX_UPLOAD_BYTES)
    app.queue().launch(server_name=host, server_port=port, share=False, show_error=False, **launch_kw)
    return app


if __name__ == "__main__":
    launch()
