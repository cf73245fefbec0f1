"""A diffusers UNet2DModel as the denoiser of an imported pipeline: the net build exports, and its factory.

The exported file computes one call of the UNet, as DDIMPipeline makes it: ``unet(x, t)`` with the timestep
as an integer tensor (and ``class_labels`` where the UNet embeds classes), returning what the UNet predicts
(noise, v or x0, as the scheduler config's ``prediction_type`` says; the served loop turns it into a step,
ganexport/ddim_scheduler.py). The UNet is rebuilt from the config kept in the import record and loaded with
the converted weights, so diffusers is needed at import and build time, never to serve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ganexport.training.checkpoint import CheckpointError

FACTORY = f"{__name__}:denoiser"


def library():
    """diffusers itself, or a one-line error saying how to install it (the ``diffusers`` extra)."""
    try:
        import diffusers
    except ImportError:
        raise CheckpointError("diffusers is not installed: importing and building a diffusers pipeline need it "
                              "(pip install 'ganexport[diffusers]'); serving it does not") from None
    return diffusers


class DiffusersDenoiser(nn.Module):
    """x NCHW float, t [N] (timestep indices), label [N] int64 or None -> the UNet's output, NCHW."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        # the pipeline hands the UNet int64 timesteps: its embedding takes them as they are (a learned one
        # indexes with them), so the float t of the served signature is cast, exactly, as it carries integers
        return self.unet(x, t.reshape(-1).long(), class_labels=None if label is None else label.reshape(-1),
                         return_dict=False)[0]

    def eps(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """What the denoiser file returns (training.unet.NHWCDenoiser calls this): the UNet's own prediction."""
        return self(x, t, label)

    def reference_sampler(self) -> "DiffusersSampler":
        """diffusers' own sampler around this UNet: what parity holds the served loop to, and the eager row of
        ``ganexport bench``."""
        return DiffusersSampler(self.unet)


class DiffusersSampler:
    """``sampler(sig, request) -> images``: diffusers' own walk for a request of the served signature
    (diffusers_reference.py)."""

    def __init__(self, unet: nn.Module):
        self.unet = unet
        self.about = (f"diffusers {library().__version__}: DDIMScheduler and UNet2DModel in PyTorch "
                      "(DDIMPipeline's loop)")

    def __call__(self, sig, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from ganexport.export.importers import diffusers_reference

        return diffusers_reference.run_signature(self.unet, sig, inputs)


def unet(config: dict[str, Any]) -> nn.Module:
    """diffusers' UNet2DModel of a config (diffusers is imported here: build and import time only)."""
    return library().UNet2DModel.from_config(config).eval()


def denoiser(image_shape, hp: dict[str, Any]) -> nn.Module:
    """The net an entry's hyper-parameters describe (the catalog's factory signature): the UNet of ``hp["unet"]``."""
    return DiffusersDenoiser(unet(hp["unet"])).eval()
