"""The DDPM denoiser: a small UNet that predicts the noise in a noisy image, given the timestep and class.

Two resolutions below the input (28 -> 14 -> 7 for Fashion-MNIST), one residual block per
level on each side, skip connections across, self-attention at the lowest resolution
(``attention``), where a 7x7 map is cheap to attend over. The timestep enters as a
sinusoidal embedding, the class as a learned embedding with one extra row, the "no class"
index that classifier-free guidance trains with; both are added into every block.

    >>> import torch
    >>> net = ddpm_unet((28, 28, 1), {"width": 8, "num_classes": 10, "attention": True})
    >>> net(torch.randn(2, 1, 28, 28), torch.tensor([0.0, 999.0]), torch.tensor([3, 10])).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganexport import diffusion


def _groups(ch: int) -> int:
    return math.gcd(8, ch)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of float timesteps [N] -> [N, dim] (the Transformer's position code)."""
    half = dim // 2
    dtype = torch.get_default_dtype()  # float32 in export; a run's precision in training
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=dtype, device=t.device) / half)
    angles = t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added in between, a 1x1 skip when channels change."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a small map, written out (exports to plain MatMuls)."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv, self.out = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # [n, hw, hw]
        return x + self.out((v @ weights.transpose(1, 2)).reshape(n, c, h, w))


class UNet(nn.Module):
    """out = net(x_t [N, C, H, W], t [N] float, label [N] int64); H and W multiples of 4.

    ``prediction`` says what ``out`` is: "eps", the noise (DDPM's parametrisation), or "v" =
    sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho). Near pure noise (abar ~ 0) an eps
    net must get the noise right to many digits for the image estimate (x_t - sqrt(1 - abar)
    eps) / sqrt(abar) to mean anything; a v net predicts a quantity that stays well scaled at
    every t. ``eps()`` turns either into the noise estimate the sampler takes.
    """

    def __init__(self, channels: int, width: int, num_classes: int, attention: bool = True,
                 prediction: str = "eps", timesteps: int = 1000):
        super().__init__()
        if prediction not in ("eps", "v"):
            raise ValueError(f"UNet prediction must be 'eps' or 'v', got {prediction!r}")
        self.prediction = prediction
        abar = torch.from_numpy(diffusion.Schedule(timesteps).alpha_bar()).to(torch.get_default_dtype())
        self.register_buffer("sqrt_abar", abar.sqrt(), persistent=False)  # rebuilt from the schedule, not stored
        self.register_buffer("sqrt_one_minus_abar", (1 - abar).sqrt(), persistent=False)
        w, emb = width, width * 4
        self.width = w
        self.time = nn.Sequential(nn.Linear(w, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(num_classes + 1, emb)  # the last row is "no class"
        self.stem = nn.Conv2d(channels, w, 3, padding=1)
        self.down0, self.pool0 = ResBlock(w, w, emb), nn.Conv2d(w, 2 * w, 3, 2, 1)
        self.down1, self.pool1 = ResBlock(2 * w, 2 * w, emb), nn.Conv2d(2 * w, 2 * w, 3, 2, 1)
        self.mid1, self.mid2 = ResBlock(2 * w, 2 * w, emb), ResBlock(2 * w, 2 * w, emb)
        self.attn = SelfAttention(2 * w) if attention else nn.Identity()
        self.lift1, self.up1 = nn.Conv2d(2 * w, 2 * w, 3, padding=1), ResBlock(4 * w, 2 * w, emb)
        self.lift0, self.up0 = nn.Conv2d(2 * w, w, 3, padding=1), ResBlock(2 * w, w, emb)
        self.head = nn.Sequential(nn.GroupNorm(_groups(w), w), nn.SiLU(), nn.Conv2d(w, channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # start by predicting no noise: a calm first few hundred steps
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x, t, label):
        e = self.time(timestep_embedding(t, self.width)) + self.label(label)
        s0 = self.down0(self.stem(x), e)
        s1 = self.down1(self.pool0(s0), e)
        h = self.mid2(self.attn(self.mid1(self.pool1(s1), e)), e)
        h = self.up1(torch.cat([self.lift1(F.interpolate(h, scale_factor=2.0, mode="nearest")), s1], 1), e)
        h = self.up0(torch.cat([self.lift0(F.interpolate(h, scale_factor=2.0, mode="nearest")), s0], 1), e)
        return self.head(h)

    def target(self, x0, eps, t):
        """What the net is trained to output for clean images ``x0`` noised by ``eps`` at integer ``t``."""
        if self.prediction == "eps":
            return eps
        return self.sqrt_abar[t][:, None, None, None] * eps - self.sqrt_one_minus_abar[t][:, None, None, None] * x0

    def eps(self, x, t, label):
        """The noise estimate, whatever the net predicts: for v, eps = sqrt(1 - abar) x_t + sqrt(abar) v."""
        out = self(x, t, label)
        if self.prediction == "eps":
            return out
        i = t.long()
        return self.sqrt_one_minus_abar[i][:, None, None, None] * x + self.sqrt_abar[i][:, None, None, None] * out


def ddpm_unet(image_shape, hp):
    return UNet(image_shape[2], hp["width"], hp["num_classes"], hp.get("attention", True),
                hp.get("prediction", "eps"), hp["timesteps"])


class NHWCDenoiser(nn.Module):
    """The denoiser as the sampler calls it: x NHWC float [N, H, W, C], t [N, 1], label [N, 1] -> eps NHWC.

    The exported file computes exactly this (export/wrappers.py wraps it), and training's
    grids, evaluation and parity call it too, so every path runs one sampler over one interface.
    A net that takes no class (an imported unconditional UNet) is called without a label.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, t, label: torch.Tensor | None = None):
        eps = self.net.eps(x.permute(0, 3, 1, 2), t.reshape(-1), None if label is None else label.reshape(-1))
        return eps.permute(0, 2, 3, 1)


def numpy_eps_fn(denoiser: nn.Module, batch_size: int = 256):
    """A PyTorch denoiser (a UNet, or its NHWC wrapper) as ganexport.diffusion's ``eps_fn``, in chunks."""
    module = denoiser if isinstance(denoiser, NHWCDenoiser) else NHWCDenoiser(denoiser)
    first = next(module.parameters())
    device, dtype = first.device, first.dtype

    @torch.no_grad()
    def eps(x, t, label):
        outs = []
        for i in range(0, len(x), batch_size):
            args = (torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device, dtype),
                    torch.from_numpy(np.asarray(t[i:i + batch_size], np.float32)).to(device, dtype)[:, None])
            if label is not None:
                args += (torch.from_numpy(np.asarray(label[i:i + batch_size], np.int64)).to(device)[:, None],)
            outs.append(module(*args).float().cpu().numpy())
        return np.concatenate(outs)

    return eps
