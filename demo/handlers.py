"""The demo's event handlers: plain methods of a backend and the tab plan, testable without a page.

Numbers, names and file paths in; PIL images and one Markdown status line out
(saying which backend served it and how long the model call took). A failure
raises ``DemoError``, ``ImageError``, ``InvalidInput`` or ``BackendError`` with a
one-line message; the layout (app.py) turns it into the page's error. Each
parameter's name is what the page's API calls it.

    >>> h = Handlers(FallbackBackend(lambda: connect("onnxruntime"), None, "onnxruntime"), plan)  # doctest: +SKIP
    >>> grid, status = h.sample("dcgan", seed=0, count=4)                                           # doctest: +SKIP
    >>> grid, frames, status = h.diffusion("Sneaker", 25, 2.0, seed=0, count=8, model="ddpm")          # doctest: +SKIP

A seed means the same thing in every tab: the standard-normal draw of ``np.random.default_rng(seed)`` in
the shape of the model's first input (a GAN's latent, a diffusion model's initial noise), so a result is
reproducible across backends and runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ganexport import catalog
from ganexport.demo.arithmetic import LatentArithmetic
from ganexport.demo.backend import DemoError, FallbackBackend, Served, diffuse_batched, sample_batched
from ganexport.demo.tabs import NO_CLASS, DemoModel, DemoPlan, latent_input, noise_input
from ganexport.demo.uploads import Upload, display_name, read_upload
from ganexport.images import ImageError, grid_image, upscale_for_viewing
from ganexport.sketch import pencil_sketch

MAX_COUNT = 64  # images per grid
MAX_FRAMES = 32
MAX_ROWS = 6
MAX_GRID = 20
# Diffusion: every image costs one denoiser run per step (two with guidance), so the demo asks for fewer
# images and steps than the signature allows (1000 steps): a grid stays a few seconds on a CPU.
MAX_DIFFUSION_COUNT = 16
MAX_STEPS = 200
DEFAULT_STEPS = 25
MAX_GUIDANCE = 10.0
ANCESTRAL_ETA = 1.0  # eta 1: fresh noise every step, DDPM's own sampler; eta 0 is deterministic DDIM
# The Conditional tab's "beside it" choice that shows nothing beside the first model.
NOTHING_BESIDE = "none"


def seeded(shape: tuple[int, ...], seeds: list[int]) -> np.ndarray:
    """One standard-normal array of ``shape`` per seed, float32."""
    return np.stack([np.random.default_rng(int(s)).standard_normal(shape) for s in seeds]).astype(np.float32)


def latents(sig: catalog.Signature, seeds: list[int]) -> np.ndarray:
    """One latent per seed for a sampler."""
    return seeded(latent_input(sig).shape, seeds)


def noise(sig: catalog.Signature, seeds: list[int]) -> np.ndarray:
    """One initial noise image per seed for a diffusion model."""
    return seeded(noise_input(sig).shape, seeds)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: intermediate Gaussian latents keep a typical norm."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
    omega = math.acos(float(np.clip(cos, -1.0, 1.0)))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def to_display(arr: np.ndarray, scale: int = 1) -> Image.Image:
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def _grid(images: np.ndarray, nrow: int) -> Image.Image:
    return grid_image(images, nrow=max(1, nrow), scale=upscale_for_viewing(images.shape[1]))


def _finite(value, what: str) -> float:
    """A number from the page or an API client; NaN and infinities are refused by name."""
    number = float(value)
    if not math.isfinite(number):
        raise DemoError(f"{what} must be a finite number, got {value}")
    return number


def _clamp(value, low: int, high: int) -> int:
    return int(max(low, min(high, int(value))))


def sampler_limits(served: DemoModel) -> tuple[int, int, float, float]:
    """(fewest steps, most steps, least guidance, most guidance) the demo offers for a diffusion model: its
    signature's ranges, capped at MAX_STEPS and MAX_GUIDANCE."""
    steps, guidance = served.setting("steps"), served.setting("guidance")
    return (int(steps.low), int(min(MAX_STEPS, steps.high)), float(guidance.low),
            float(min(MAX_GUIDANCE, guidance.high)))


def class_defaults(served: DemoModel) -> tuple[int, float]:
    """(steps, guidance) a diffusion model draws a class with where the page asks for no settings (the
    Conditional tab): DEFAULT_STEPS and its own guidance, within what the demo offers."""
    low_steps, high_steps, low_g, high_g = sampler_limits(served)
    return _clamp(DEFAULT_STEPS, low_steps, high_steps), float(min(high_g, max(low_g, served.default_guidance)))


def _eta_words(eta: float) -> str:
    return "ancestral DDPM (eta 1)" if eta > 0 else "DDIM (eta 0)"


class Handlers(LatentArithmetic):
    """Every endpoint of the page (the Latent arithmetic tab's in ``LatentArithmetic``). ``discard(path)`` is
    called once an upload has been read, so the layout can delete it from the server (the handlers keep its
    bytes for a second direction)."""

    def __init__(self, backend: FallbackBackend, plan: DemoPlan, discard: Callable[[str], None] | None = None):
        self.backend, self.plan = backend, plan
        self.discard = discard or (lambda path: None)

    # -- Sample --------------------------------------------------------------

    def sample(self, model: str, seed: float, count: float) -> tuple[Image.Image, str]:
        """A grid of ``count`` samples from seeds ``seed``, ``seed`` + 1, ..."""
        sig = self.plan.get(model, "sample").signature
        seed, count = int(seed), _clamp(count, 1, MAX_COUNT)
        out = sample_batched(self.backend, model, sig, latents(sig, [seed + i for i in range(count)]))
        status = f"{count} samples, seeds {seed}..{seed + count - 1}. {out.line()}"
        return _grid(out.images, math.ceil(math.sqrt(count))), status

    def latent_walk(self, model: str, from_seed: float, to_seed: float, frames: float) -> tuple[Image.Image, str]:
        """One row of ``frames`` images along the great circle between two seeds' latents."""
        sig = self.plan.get(model, "sample").signature
        frames = _clamp(frames, 2, MAX_FRAMES)
        a, b = latents(sig, [int(from_seed), int(to_seed)])
        z = np.stack([slerp(a, b, t) for t in np.linspace(0, 1, frames)]).astype(np.float32)
        out = sample_batched(self.backend, model, sig, z)
        return (_grid(out.images, frames),
                f"{frames} frames from seed {int(from_seed)} to seed {int(to_seed)}. {out.line()}")

    # -- Conditional ---------------------------------------------------------

    def _class_index(self, served: DemoModel, class_name: str) -> int:
        """The label value of a class name (its index, where the "no class" label does not sit among them)."""
        names = served.class_names
        if class_name not in names:
            raise DemoError(f"{served.name} has no class {class_name!r}; choose one of {', '.join(names)}")
        return served.class_indices[names.index(class_name)]

    def _draw(self, served: DemoModel, seeds: list[int], labels: np.ndarray) -> tuple[Served, str]:
        """(images of ``labels``, one seed each; how they were drawn) from a conditional sampler or a diffusion
        model alike: the Conditional tab shows both kinds for one class."""
        sig = served.signature
        if sig.kind != "diffuse":
            return sample_batched(self.backend, served.name, sig, latents(sig, seeds), labels), ""
        steps, guidance = class_defaults(served)
        out = diffuse_batched(self.backend, served.name, sig, noise(sig, seeds), labels, steps, guidance, 0.0)
        return out, f" {steps} {_eta_words(0.0)} steps, guidance {guidance:g}."

    def conditional(self, class_name: str, seed: float, count: float, model: str) -> tuple[Image.Image, str]:
        """``count`` images of one class, one seed each."""
        served = self.plan.get(model, "conditional")
        label = self._class_index(served, class_name)
        seed, count = int(seed), _clamp(count, 1, MAX_COUNT)
        out, how = self._draw(served, [seed + i for i in range(count)], np.full(count, label, np.int64))
        return _grid(out.images, min(count, 8)), f"{count} x {class_name}.{how} {out.line()}"

    def beside(self, class_name: str, seed: float, count: float, beside: str) -> tuple[Image.Image | None, str]:
        """What a second conditional model (a diffusion model beside a GAN, say) makes of the same class and
        seeds; nothing for NOTHING_BESIDE."""
        if beside == NOTHING_BESIDE:
            return None, ""
        grid, status = self.conditional(class_name, seed, count, beside)
        return grid, f"**{beside}**, same class and seeds: {status}"

    def all_classes(self, seed: float, rows: float, model: str) -> tuple[Image.Image, str]:
        """Every class side by side, one latent (or initial noise) per row."""
        served = self.plan.get(model, "conditional")
        names = served.class_names
        seed, rows = int(seed), _clamp(rows, 1, MAX_ROWS)
        seeds = [seed + r for r in range(rows) for _ in names]
        out, how = self._draw(served, seeds, np.tile(np.array(served.class_indices, dtype=np.int64), rows))
        return (_grid(out.images, len(names)),
                f"Columns: {' | '.join(names)}; one seed per row (seeds {seed}..{seed + rows - 1}).{how} "
                f"{out.line()}")

    # -- Diffusion -----------------------------------------------------------

    def _diffusion_label(self, served: DemoModel, class_name: str) -> int | None:
        """The label input's value for ``class_name``: its index, or the null label for NO_CLASS; None for a
        model that takes no label."""
        if served.diffusion_classes == [NO_CLASS]:
            if class_name != NO_CLASS:
                raise DemoError(f"{served.name} takes no class; choose {NO_CLASS!r}")
            return None
        if class_name == NO_CLASS and served.null_label is None:
            raise DemoError(f"{served.name} has no 'no class' label; choose one of {', '.join(served.class_names)}")
        return served.null_label if class_name == NO_CLASS else self._class_index(served, class_name)

    def diffusion(self, class_name: str, steps: float, guidance: float, seed: float, count: float, model: str,
                  ancestral: bool = False) -> tuple[Image.Image, Image.Image, str]:
        """A grid of ``count`` samples of one class (or none) from seeds ``seed``, ``seed`` + 1, ..., and the
        first one's denoising trajectory as one row of snapshots, noise on the left, the result on the right."""
        served = self.plan.get(model, "diffusion")
        label = self._diffusion_label(served, class_name)
        low_steps, high_steps, low_g, high_g = sampler_limits(served)
        steps = _clamp(_finite(steps, "steps"), low_steps, high_steps)
        guidance = float(min(high_g, max(low_g, _finite(guidance, "guidance"))))
        eta = ANCESTRAL_ETA if ancestral else 0.0
        seed, count = int(seed), _clamp(count, 1, MAX_DIFFUSION_COUNT)
        labels = None if label is None else np.full(count, label, np.int64)
        sig = served.signature
        out = diffuse_batched(self.backend, model, sig, noise(sig, [seed + i for i in range(count)]), labels,
                              steps, guidance, eta, trajectory=True)
        frames = out.trajectory[0]
        unguided = " (no effect without a class)" if label is None or label == served.null_label else ""
        status = (f"{count} x {class_name}, seeds {seed}..{seed + count - 1}: {steps} {_eta_words(eta)} steps, "
                  f"guidance {guidance:g}{unguided}. Below: seed {seed} after {len(frames)} evenly spaced steps. "
                  f"{out.line()}")
        return _grid(out.images, min(count, 8)), _grid(frames, len(frames)), status

    # -- Latent space --------------------------------------------------------

    def decode_point(self, model: str, x: float, y: float) -> tuple[Image.Image, str]:
        """The decoder's image of the point (x, y) of its 2-D latent space."""
        self.plan.get(model, "latent")
        out = self.backend.call("sample", model, np.array([[x, y]], np.float32))
        img = out.images[0]
        return to_display(img, upscale_for_viewing(img.shape[0], 224)), f"z = ({x:.2f}, {y:.2f}). {out.line()}"

    def manifold(self, model: str, grid_size: float, extent: float) -> tuple[Image.Image, str]:
        """A ``grid_size`` x ``grid_size`` grid of decodings over [-extent, extent]^2, y up as on a plot."""
        sig = self.plan.get(model, "latent").signature
        n, extent = _clamp(grid_size, 2, MAX_GRID), float(extent)
        axis = np.linspace(-extent, extent, n)
        z = np.array([[x, y] for y in axis[::-1] for x in axis], np.float32)
        out = sample_batched(self.backend, model, sig, z)
        grid = grid_image(out.images, nrow=n, pad=0, scale=max(1, 448 // (n * out.images.shape[1])))
        return grid, f"{n}x{n} decodings of z in [-{extent:g}, {extent:g}]^2 (x right, y up). {out.line()}"

    # -- Translate -----------------------------------------------------------

    def _upload(self, path: str, last: Upload | None) -> Upload:
        """The upload's bytes; read once, then the file is discarded, so a second translator (the other
        direction) uses the bytes kept from the first call."""
        name = display_name(path)
        if last is not None and last.path == path and not Path(path).is_file():
            return last
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise DemoError(f"{name}: the upload is no longer on the server; upload it again") from None
        except OSError:
            raise ImageError(f"{name}: unreadable upload") from None
        self.discard(path)
        return Upload(path, name, data)

    def translate(self, image: str | None, model: str, last_upload: Upload | None = None) -> tuple:
        """The uploaded photo through one translator; a photo above its largest side is scaled down to fit.

        Returns (input as translated, output, the exact filter target or None, status, the upload kept for
        the next call)."""
        served = self.plan.get(model, "translate")
        if not image:
            raise DemoError("upload a photo first (or pick an example)")
        upload = self._upload(str(image), last_upload)
        sig = served.signature
        arr, notes = read_upload(upload.data, upload.name, sig.inputs[0].shape[-1], sig.min_image_side,
                                 sig.max_image_side)
        out = self.backend.call("translate", model, arr[None])
        truth = None
        if served.shows_filter_target:
            truth = to_display(pencil_sketch(arr if arr.shape[-1] == 3 else np.repeat(arr, 3, -1)))
        status = " ".join([f"{arr.shape[1]}x{arr.shape[0]}, {served.direction}.", *notes, out.line()])
        if truth is not None:
            status += " The right-hand image is the true pencil-sketch filter output (the training target)."
        return to_display(arr), to_display(out.images[0]), truth, status, upload
