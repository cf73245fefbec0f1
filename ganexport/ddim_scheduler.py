"""diffusers' DDIMScheduler in numpy: the walk and the step that its DDIMPipeline takes, for an imported pipeline.

An imported diffusers pipeline is served with the sampling loop of ganexport.diffusion around its exported
UNet, so the loop must take the very steps diffusers takes, or the same noise would not give the same
image. This module reproduces diffusers 0.42.1's ``DDIMScheduler`` for a config (what
``DDIMScheduler.from_config`` makes of the folder's scheduler config, a DDPMScheduler's included), in
float32 wherever diffusers computes in float32 torch tensors:

- betas: ``linear`` and ``scaled_linear`` as ``torch.linspace`` computes them in float32 (a step
  ``(end - start) / (n - 1)``, the first half counted up from the start and the second half down from the
  end, each value rounded once, as the fused multiply-add of its CPU kernel does), ``squaredcos_cap_v2`` in
  Python floats then float32, or the ``trained_betas`` as given; ``alphas_cumprod`` is ``torch.cumprod``'s,
  which accumulates in double and rounds each product to float32;
- timesteps for N steps out of T: ``leading`` (``arange(N) * (T // N) + steps_offset``, reversed),
  ``trailing`` (``round(arange(T, 0, -T / N)) - 1``) and ``linspace`` (``round(linspace(0, T - 1, N))``,
  reversed), with numpy's own expressions, as diffusers computes them;
- the step: its previous timestep is always ``t - T // N``, whatever the spacing (a quirk copied, not
  corrected), and below 0 it takes ``final_alpha_cumprod`` (1 with ``set_alpha_to_one``, else
  ``alphas_cumprod[0]``); x0 and the noise from the model output by ``prediction_type``; x0 clipped to
  +-``clip_sample_range`` when ``clip_sample``, while the noise estimate stays the model's own (the pipeline
  leaves ``use_clipped_model_output`` off); ``eta`` scales the DDIM noise, 0 deterministic to 1 DDPM-like;
- the image: ``(x / 2 + 0.5).clamp(0, 1)``, then ``* 255`` rounded to uint8.

What it does not reproduce (thresholding, zero-terminal-SNR rescaling, other spacings and schedules) is
refused when the pipeline is imported, so a served model never walks differently from diffusers. numpy only:
Triton's Python-backend stub imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np

SPACINGS = ("leading", "trailing", "linspace")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # or trained_betas, which overrides them
PREDICTIONS = ("epsilon", "v_prediction", "sample")
# The config keys the walk depends on: what an import record keeps and a served signature carries.
KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "clip_sample",
        "clip_sample_range", "set_alpha_to_one", "steps_offset", "prediction_type", "timestep_spacing")
COSINE_MAX_BETA = 0.999
F32 = np.float32


def linspace32(start: float, end: float, n: int) -> np.ndarray:
    """``torch.linspace(start, end, n, dtype=torch.float32)`` on CPU, value for value."""
    a, b = F32(start), F32(end)
    if n == 1:
        return np.array([a], F32)
    step = (b - a) / F32(n - 1)
    i = np.arange(n)
    # a + step * i with one rounding: the product of a float32 and an integer below 2^24 is exact in float64
    up = np.float64(a) + np.float64(step) * i
    down = np.float64(b) - np.float64(step) * (n - 1 - i)
    return np.where(i < n // 2, up, down).astype(F32)


def cosine_betas(n: int) -> np.ndarray:
    """``betas_for_alpha_bar(n)`` (squaredcos_cap_v2): min(1 - abar((i+1)/n) / abar(i/n), 0.999) in Python floats."""
    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - abar((i + 1) / n) / abar(i / n), COSINE_MAX_BETA) for i in range(n)], F32)


@dataclass(frozen=True)
class DDIM:
    """The scheduler of one config (its KEYS; diffusers' defaults for those left out)."""

    config: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.config.get(key, DEFAULTS[key])

    @property
    def timesteps(self) -> int:
        return int(self["num_train_timesteps"])

    @cached_property
    def betas(self) -> np.ndarray:
        if self["trained_betas"] is not None:
            return np.asarray(self["trained_betas"], dtype=F32)
        schedule, n = self["beta_schedule"], self.timesteps
        if schedule == "linear":
            return linspace32(self["beta_start"], self["beta_end"], n)
        if schedule == "scaled_linear":
            root = linspace32(self["beta_start"] ** 0.5, self["beta_end"] ** 0.5, n)
            return root * root
        if schedule == "squaredcos_cap_v2":
            return cosine_betas(n)
        raise ValueError(f"beta_schedule {schedule!r}: this loop reproduces {', '.join(BETA_SCHEDULES)} "
                         f"and trained_betas")

    @cached_property
    def alphas_cumprod(self) -> np.ndarray:
        alphas = F32(1.0) - self.betas
        return np.cumprod(alphas.astype(np.float64)).astype(F32)

    @cached_property
    def final_alpha_cumprod(self) -> np.float32:
        return F32(1.0) if self["set_alpha_to_one"] else self.alphas_cumprod[0]

    def walk(self, steps: int) -> np.ndarray:
        """The timesteps of an N-step walk, as ``set_timesteps(N)`` makes them (int64, noisiest first)."""
        n, t = int(steps), self.timesteps
        if not 1 <= n <= t:
            raise ValueError(f"steps must be in 1..{t}, got {n}")
        spacing = self["timestep_spacing"]
        if spacing == "linspace":
            return np.linspace(0, t - 1, n).round()[::-1].copy().astype(np.int64)
        if spacing == "leading":
            return (np.arange(0, n) * (t // n)).round()[::-1].copy().astype(np.int64) + int(self["steps_offset"])
        if spacing == "trailing":
            return np.round(np.arange(t, 0, -t / n)).astype(np.int64) - 1
        raise ValueError(f"timestep_spacing {spacing!r}: this loop reproduces {', '.join(SPACINGS)}")

    def max_steps(self) -> int:
        """The most steps N such that every walk of 1..N steps stays inside 0..T-1: ``leading`` with a
        ``steps_offset`` steps past the last timestep at some N (at N = T for an offset of 1; for larger offsets
        also where T // N is small), which diffusers cannot index either."""
        for n in range(1, self.timesteps + 1):
            if int(self.walk(n).max()) >= self.timesteps:
                return n - 1
        return self.timesteps

    def step(self, x: np.ndarray, out: np.ndarray, walk: np.ndarray, i: int, eta: float) -> tuple[np.ndarray, F32]:
        """``DDIMScheduler.step`` from timestep ``walk[i]`` without its noise: x_prev and the noise's scale
        ``std_dev_t``, which the loop multiplies with its own standard-normal draw and adds (only when > 0)."""
        t = int(walk[i])
        prev = t - self.timesteps // len(walk)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        b_t = F32(1.0) - a_t
        x, out = x.astype(F32, copy=False), out.astype(F32, copy=False)
        kind = self["prediction_type"]
        if kind == "epsilon":
            x0, eps = (x - np.sqrt(b_t) * out) / np.sqrt(a_t), out
        elif kind == "sample":
            x0 = out
            eps = (x - np.sqrt(a_t) * x0) / np.sqrt(b_t)
        elif kind == "v_prediction":
            x0 = np.sqrt(a_t) * x - np.sqrt(b_t) * out
            eps = np.sqrt(a_t) * out + np.sqrt(b_t) * x
        else:
            raise ValueError(f"prediction_type {kind!r}: this loop reproduces {', '.join(PREDICTIONS)}")
        if self["clip_sample"]:
            limit = F32(self["clip_sample_range"])
            x0 = np.clip(x0, -limit, limit)
        variance = ((F32(1.0) - a_prev) / b_t) * (F32(1.0) - a_t / a_prev)
        std = F32(eta) * np.sqrt(variance)
        direction = np.sqrt(max(F32(1.0) - a_prev - std * std, F32(0.0))) * eps
        return (np.sqrt(a_prev) * x0 + direction).astype(F32, copy=False), F32(std)

    @staticmethod
    def to_uint8(x: np.ndarray) -> np.ndarray:
        """The pipeline's image: ``(x / 2 + 0.5).clamp(0, 1)``, ``* 255`` rounded (half to even, as numpy)."""
        unit = np.clip(x.astype(F32) / F32(2) + F32(0.5), F32(0), F32(1))
        return np.round(unit * F32(255)).astype(np.uint8)


# DDIMScheduler's own defaults (diffusers 0.42.1), for a config that leaves a key out.
DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True,
    "steps_offset": 0, "prediction_type": "epsilon", "timestep_spacing": "leading",
}
