"""An exponential moving average of the served nets' weights (``ema_decay`` in a profile).

A GAN's generator never settles: its losses keep oscillating, and two
checkpoints a few hundred steps apart can draw visibly different images. The
average of the last ~1/(1 - decay) steps' weights is smoother than any one of
them (Karras et al. use it for every StyleGAN; Yazici et al., "The unusual
effectiveness of averaging in GAN training", 2019). The loop trains the raw
weights and writes the average into checkpoint.safetensors, so what is
sampled, evaluated, exported and served is the average; the raw weights go to
train_state.pt for --resume.

    >>> avg = WeightAverage(recipe.nets, ["g_ab"], decay=0.999)  # doctest: +SKIP
    >>> avg.update(recipe.nets, step)                             # after each training step
    >>> with avg.in_place(recipe.nets): save(recipe.nets)          # the average, for sampling and saving
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch


class WeightAverage:
    def __init__(self, nets: dict[str, torch.nn.Module], roles: Iterable[str], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay {decay}: expected a number between 0 and 1 (0 turns the average off)")
        self.decay = decay
        self.average = {role: copy.deepcopy(nets[role]).requires_grad_(False) for role in roles}

    @torch.no_grad()
    def update(self, nets: dict[str, torch.nn.Module], step: int) -> None:
        """Move the average towards the current weights; early steps use a shorter memory, so the
        random initial weights fade out within the first ~10 + step steps rather than 1/(1 - decay)."""
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for role, avg in self.average.items():
            for a, p in zip(avg.parameters(), nets[role].parameters()):
                a.lerp_(p.detach(), 1.0 - decay)
            for a, b in zip(avg.buffers(), nets[role].buffers()):  # norm statistics are copied, not averaged
                a.copy_(b)

    @contextmanager
    def in_place(self, nets: dict[str, torch.nn.Module]) -> Iterator[dict[str, torch.nn.Module]]:
        """``nets`` with the averaged nets in their roles for the duration (sampling, saving)."""
        raw = {role: nets[role] for role in self.average}
        for role, avg in self.average.items():
            avg.train(raw[role].training)
            nets[role] = avg
        try:
            yield nets
        finally:
            nets.update(raw)

    def raw_state(self, nets: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
        """The trained (not averaged) weights, for train_state.pt."""
        return {role: {k: v.detach().cpu() for k, v in nets[role].state_dict().items()} for role in self.average}
