"""The diffusion sampler: a noise schedule and one DDIM loop, in numpy, around any denoiser.

A DDPM denoiser predicts the noise ``eps`` in ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``.
Sampling walks from pure noise ``x_T`` down a sub-sequence of the training timesteps; at
each step the denoiser's guess of ``x_0`` and of the noise give the next, less noisy ``x``.
``eta`` picks the walk (Song et al., DDIM): 0 is deterministic (the same noise always
gives the same image, so exports can be checked against PyTorch), 1 adds fresh noise
each step as ancestral DDPM sampling does (at 1000 steps it *is* DDPM's sampler).

Classifier-free guidance (Ho & Salimans): the denoiser was trained with the label
dropped to a "no class" index some of the time, so it predicts both ``eps(x, label)``
and ``eps(x, none)``; the sampler follows ``eps_none + w (eps_label - eps_none)``.
``w = 1`` is the plain conditional model, ``w = 0`` the unconditional one, larger ``w``
trades variety for images that look more like their class.

The loop is the same everywhere: served through Triton or ONNX Runtime (the denoiser is
an ONNX or TorchScript file), and in training and parity checks (the denoiser is the
PyTorch net). Only the denoiser differs, so a parity gap measures the export alone.
Each step's arithmetic is the scheduler's: ``Schedule`` for the models ganexport trains,
``ddim_scheduler.DDIM`` (diffusers' DDIMScheduler, reproduced) for an imported diffusers
pipeline, whose denoiser returns what its UNet predicts (noise, v or x0, as its config says).
This module needs numpy only: Triton's Python-backend stub imports it.

    >>> import numpy as np
    >>> from ganexport.diffusion import Schedule, sample
    >>> schedule = Schedule(timesteps=1000)
    >>> eps_zero = lambda x, t, label: np.zeros_like(x)   # a denoiser that sees no noise
    >>> out = sample(eps_zero, schedule, np.random.randn(2, 28, 28, 1).astype("float32"),
    ...              labels=np.array([3, 10]), null_label=10, steps=10)
    >>> out.images.shape, out.images.dtype
    ((2, 28, 28, 1), dtype('uint8'))
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from ganexport.ddim_scheduler import DDIM

# eps_fn(x [N, H, W, C] float32, t [N] float32 timestep indices, label [N] int64 or None) -> eps [N, H, W, C]
EpsFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


class Scheduler(Protocol):
    """What the loop asks of a scheduler: the timesteps of a walk, one step without its fresh noise (x, and
    the scale of the standard-normal noise to add, 0 for none), and the rule that makes an image of x."""

    def walk(self, steps: int) -> np.ndarray: ...

    def step(self, x: np.ndarray, out: np.ndarray, walk: np.ndarray, i: int, eta: float) -> tuple[np.ndarray, float]:
        ...

    def to_uint8(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Schedule:
    """The forward process: ``abar_t`` for t = 0..timesteps-1, cosine schedule (Nichol & Dhariwal).

    The cosine schedule destroys a 28x28 image more evenly over t than DDPM's linear betas,
    which spend the last few hundred steps on what is already pure noise; that matters
    when a sampler skips to 10 or 25 of the 1000 steps.
    """

    timesteps: int = 1000
    offset: float = 0.008

    def alpha_bar(self) -> np.ndarray:
        """Cumulative signal fraction abar_t, float64, length ``timesteps``, decreasing from ~1 to ~0."""
        steps = np.arange(self.timesteps + 1, dtype=np.float64) / self.timesteps
        f = np.cos((steps + self.offset) / (1 + self.offset) * math.pi / 2) ** 2
        betas = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
        return np.cumprod(1 - betas)

    def walk(self, steps: int) -> np.ndarray:
        """The ``steps`` timesteps a sampler visits, from the noisiest (timesteps - 1) down, evenly spaced
        ("trailing" spacing: the walk always starts where the training noise is complete)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be in 1..{self.timesteps}, got {steps}")
        return np.round(self.timesteps - np.arange(steps) * (self.timesteps / steps)).astype(np.int64) - 1

    def step(self, x: np.ndarray, eps: np.ndarray, walk: np.ndarray, i: int, eta: float) -> tuple[np.ndarray, float]:
        """One DDIM step from ``walk[i]``: x0 clipped to [-1, 1], and the noise re-derived from it, so a wild
        estimate at the noisiest steps cannot push x outside what the clipped x0 implies."""
        abar = self._abar
        ab_t = abar[walk[i]]
        ab_prev = abar[walk[i + 1]] if i + 1 < len(walk) else 1.0
        x0 = np.clip((x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t), -1.0, 1.0)
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # the noise that the clipped x0 implies
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        return math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma ** 2)) * eps, sigma

    @cached_property
    def _abar(self) -> np.ndarray:
        return self.alpha_bar()

    @staticmethod
    def to_uint8(x: np.ndarray) -> np.ndarray:
        return to_uint8(x)


def scheduler_for(diffusion: Mapping[str, Any]) -> Scheduler:
    """The scheduler a served signature's ``diffusion`` names: diffusers' DDIM for the config an imported
    pipeline carries under ``ddim``, else ganexport's own schedule of ``timesteps``."""
    if diffusion.get("ddim") is not None:
        return DDIM(diffusion["ddim"])
    return Schedule(diffusion["timesteps"])


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8, the same rounding rule as the exported graphs (training.nets.to_uint8)."""
    return np.clip(np.round((x.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def row_rng(noise_row: np.ndarray) -> np.random.Generator:
    """The random stream of one image's ancestral noise, seeded by its initial noise: the same request
    gives the same image at any eta, whatever else was batched with it."""
    digest = hashlib.blake2b(np.ascontiguousarray(noise_row, dtype=np.float32).tobytes(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass
class Samples:
    images: np.ndarray  # uint8 [N, H, W, C]
    trajectory: np.ndarray | None  # uint8 [N, frames, H, W, C]: x after evenly spaced steps, the last = images


def guided_eps(eps_fn: EpsFn, x: np.ndarray, t: float, labels: np.ndarray | None, null_label: int | None,
               guidance: float) -> np.ndarray:
    """Classifier-free guided noise estimate, in ONE denoiser call: conditional rows, then the "no class"
    twins of the rows that need them (a real label and guidance != 1). A model without labels, or without a
    "no class" label, is never guided (its signature allows guidance 1 alone)."""
    n = len(x)
    if labels is None or null_label is None:
        return eps_fn(x, np.full(n, t, np.float32), labels).astype(np.float32)
    twins = np.flatnonzero((labels != null_label) & (guidance != 1.0))
    xs = np.concatenate([x, x[twins]]) if len(twins) else x
    ls = np.concatenate([labels, np.full(len(twins), null_label, labels.dtype)]) if len(twins) else labels
    eps = eps_fn(xs, np.full(len(xs), t, np.float32), ls).astype(np.float32)
    out = eps[:n].copy()
    if len(twins):
        uncond = eps[n:]
        out[twins] = uncond + np.float32(guidance) * (eps[twins] - uncond)
    return out


def sample(eps_fn: EpsFn, schedule: Scheduler, noise: np.ndarray, labels: np.ndarray | None, null_label: int | None,
           steps: int, guidance: float = 1.0, eta: float = 0.0, frames: int = 0) -> Samples:
    """DDIM from ``noise`` (x_T, [N, H, W, C]) over ``steps`` timesteps; ``frames`` > 0 also keeps a
    trajectory of that many snapshots. Every row shares steps, guidance and eta (``sample_rows`` groups).
    ``labels`` is None for a model that takes none."""
    walk = schedule.walk(int(steps))
    x = noise.astype(np.float32).copy()
    labels = None if labels is None else np.asarray(labels, np.int64).reshape(-1)
    rngs = [row_rng(row) for row in noise] if eta > 0 else []
    # snapshot after evenly spaced steps; with more frames than steps a snapshot repeats, so the
    # trajectory's shape never depends on the number of steps
    keep = np.round(np.linspace(0, len(walk) - 1, frames)).astype(int) if frames else np.zeros(0, int)
    snaps: dict[int, np.ndarray] = {}
    for i, t in enumerate(walk):
        out = guided_eps(eps_fn, x, float(t), labels, null_label, guidance)
        x, sigma = schedule.step(x, out, walk, i, eta)
        if sigma > 0:
            x = x + sigma * np.stack([rng.standard_normal(x.shape[1:], dtype=np.float32) for rng in rngs])
        x = x.astype(np.float32)
        if i in keep:
            snaps[i] = schedule.to_uint8(x)
    trajectory = np.stack([snaps[i] for i in keep], axis=1) if frames else None
    return Samples(schedule.to_uint8(x), trajectory)


def sample_rows(eps_fn: EpsFn, schedule: Scheduler, noise: np.ndarray, labels: np.ndarray | None, steps: np.ndarray,
                guidance: np.ndarray, eta: np.ndarray, null_label: int | None, frames: int = 0) -> Samples:
    """``sample`` for a batch whose rows may ask for different steps, guidance or eta (Triton's dynamic
    batching merges requests): rows that share all three run together, results go back in row order."""
    keys = np.stack([np.asarray(a, np.float64).reshape(-1) for a in (steps, guidance, eta)], axis=1)
    images = np.zeros(noise.shape, np.uint8)
    trajectory = np.zeros((len(noise), frames, *noise.shape[1:]), np.uint8) if frames else None
    for key in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys == key).all(axis=1))
        row_labels = None if labels is None else np.asarray(labels).reshape(-1)[rows]
        out = sample(eps_fn, schedule, noise[rows], row_labels, null_label,
                     steps=int(key[0]), guidance=float(key[1]), eta=float(key[2]), frames=frames)
        images[rows] = out.images
        if frames:
            trajectory[rows] = out.trajectory
    return Samples(images, trajectory)


# --------------------------------------------------------------------------- a served "diffuse" signature


def denoiser_eps_fn(sig, run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> EpsFn:
    """A runtime's denoiser (``run(feeds) -> [eps]``, feeds named by ``sig.denoiser()``: x, t, and the label
    where the model takes one) as an ``eps_fn``, in chunks of the denoiser's max batch."""
    den = sig.denoiser()
    x_name, t_name, *label_name = (t.name for t in den.inputs)

    def eps(x, t, label):
        outs = []
        for i in range(0, len(x), den.max_batch_size):
            feeds = {x_name: np.ascontiguousarray(x[i:i + den.max_batch_size], np.float32),
                     t_name: np.asarray(t[i:i + den.max_batch_size], np.float32).reshape(-1, 1)}
            if label_name:
                feeds[label_name[0]] = np.asarray(label[i:i + den.max_batch_size], np.int64).reshape(-1, 1)
            outs.append(run(feeds)[0])
        return np.concatenate(outs)

    return eps


def run_signature(sig, eps_fn: EpsFn, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A validated request of a "diffuse" signature -> its outputs in ``sig.outputs`` order
    (the image, then the trajectory). Inputs are named by the signature: noise, label (where the model
    takes one), steps, guidance, eta."""
    noise, label, steps, guidance, eta = (None if t is None else inputs[t.name] for t in sig.diffusion_inputs())
    d = sig.diffusion
    out = sample_rows(eps_fn, scheduler_for(d), noise, label, steps, guidance, eta,
                      null_label=d["null_label"], frames=d["frames"])
    return [out.images, out.trajectory]
