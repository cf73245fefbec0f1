"""Tiny diffusers pipelines, one per option the served loop reproduces, saved as diffusers saves them, and
diffusers' own output for them, for the diffusers importer tests.

The oracles here are diffusers' objects only (``DDIMPipeline`` itself where it can take the case,
``DDIMScheduler.from_config`` of the folder's scheduler config and the UNet loaded by ``from_pretrained``
otherwise), never ganexport's importer or loop. A random UNet can make a chaotic walk, where the float
noise between two runtimes moves pixels by many levels (FINDINGS.md), so every case is checked for its
conditioning (``sensitivity``: the walk again with the UNet's output off by one part in a million) before
a tolerance is trusted on it, and for mattering (``flipped``: the same walk with the option changed must
move the image far beyond that tolerance, so a loop that ignored the option would fail).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROWS = 3  # images a walk compares: enough values (8x8x3x3) for the 1% share to mean something


@dataclass(frozen=True)
class Case:
    """One option: the UNet and scheduler a folder holds, the pipeline class that saved it, and the option
    changed (a scheduler key and another value) to show that it matters."""

    name: str
    scheduler: dict = field(default_factory=dict)
    flip: tuple = ()
    pipeline: str = "DDIMPipeline"
    scheduler_class: str = "DDIMScheduler"
    channels: int = 3
    size: tuple = (8, 8)
    classes: int | None = None
    null_class: int | None = None
    guidance: float = 1.0
    eta: float = 0.0
    seed: int = 2  # a well-conditioned walk for most cases (``sensitivity``); a case may need another
    widths: tuple = (8, 16)  # the UNet's block_out_channels
    train_steps: int = 0  # steps of diffusers' training objective before it is saved (``trained``)


# Each option of the issue once (a case changes one thing from the first where it can), on 8x8 images.
CASES = (
    Case("linear-epsilon-leading (a DDPMPipeline folder)", {}, ("timestep_spacing", "trailing"),
         pipeline="DDPMPipeline", scheduler_class="DDPMScheduler"),
    Case("scaled_linear", {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
         ("beta_schedule", "linear")),
    Case("squaredcos_cap_v2", {"beta_schedule": "squaredcos_cap_v2"}, ("beta_schedule", "linear")),
    Case("trained_betas", {"trained_betas": np.geomspace(1e-4, 0.05, 1000).tolist()}, ("trained_betas", None)),
    Case("v_prediction, 8x12", {"prediction_type": "v_prediction"}, ("prediction_type", "epsilon"), size=(8, 12)),
    Case("sample prediction", {"prediction_type": "sample"}, ("prediction_type", "epsilon")),
    Case("trailing", {"timestep_spacing": "trailing"}, ("timestep_spacing", "linspace")),
    Case("linspace", {"timestep_spacing": "linspace"}, ("timestep_spacing", "leading")),
    Case("steps_offset 1", {"steps_offset": 1}, ("steps_offset", 0)),
    Case("set_alpha_to_one off, trailing, beta_start 0.003",  # alphas_cumprod[0] far enough from 1 to show
         {"set_alpha_to_one": False, "timestep_spacing": "trailing", "beta_start": 0.003}, ("set_alpha_to_one", True)),
    Case("clip_sample_range 0.5", {"clip_sample_range": 0.5}, ("clip_sample_range", 1.0), seed=1),
    Case("clip_sample off, v_prediction", {"clip_sample": False, "prediction_type": "v_prediction"},
         ("clip_sample", True)),
    Case("eta 1", {}, ("timestep_spacing", "trailing"), eta=1.0),
    Case("eta 0.5, trailing", {"timestep_spacing": "trailing"}, ("timestep_spacing", "linspace"), eta=0.5),
    Case("class-conditional, 1 channel, guidance 3 (null class 2)", {}, ("timestep_spacing", "trailing"),
         channels=1, classes=3, null_class=2, guidance=3.0, seed=0),
)


def unet(case: Case):
    """A tiny seeded UNet2DModel of the case's shape (two levels, attention in the lower one)."""
    from diffusers import UNet2DModel

    torch.manual_seed(case.seed)
    size = case.size[0] if case.size[0] == case.size[1] else list(case.size)
    return UNet2DModel(sample_size=size, in_channels=case.channels, out_channels=case.channels,
                       block_out_channels=case.widths, layers_per_block=1, norm_num_groups=4, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=case.classes).eval()


def trained(case: Case, scheduler):
    """The case's UNet after ``case.train_steps`` steps of diffusers' own training objective (noise added by the
    scheduler, the target its prediction type asks for) on smooth colour fields. A random UNet's 50-step walk
    at 32x32 is chaotic; a few dozen steps make it well conditioned (``sensitivity``)."""
    net = unet(case)
    if not case.train_steps:
        return net
    g = torch.Generator().manual_seed(case.seed)
    coarse = torch.randn(64, case.channels, 4, 4, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=case.size, mode="bicubic", align_corners=False).clamp(-1, 1)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(case.train_steps):
        x0 = images[torch.randint(0, len(images), (8,), generator=g)]
        eps = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (8,), generator=g)
        target = {"epsilon": eps, "sample": x0}.get(scheduler.config.prediction_type)
        target = scheduler.get_velocity(x0, eps, t) if target is None else target
        label = None if case.classes is None else torch.randint(0, case.classes, (8,), generator=g)
        loss = torch.nn.functional.mse_loss(net(scheduler.add_noise(x0, eps, t), t, class_labels=label).sample, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval()


def save(case: Case, folder: Path) -> Path:
    """The case as diffusers' ``save_pretrained`` writes its pipeline."""
    import diffusers

    scheduler = getattr(diffusers, case.scheduler_class)(**case.scheduler)
    getattr(diffusers, case.pipeline)(unet=trained(case, scheduler), scheduler=scheduler).save_pretrained(folder)
    return folder


def load(folder: Path):
    """(UNet, scheduler config) as diffusers reads the folder back."""
    from diffusers import UNet2DModel

    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return UNet2DModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False).eval(), config


class Scaled(torch.nn.Module):
    """A UNet whose output is off by a relative ``error``: what the float noise of another runtime does."""

    def __init__(self, inner, error: float):
        super().__init__()
        self.inner, self.error = inner, error

    def forward(self, x, t, class_labels=None):
        out = self.inner(x, t, class_labels=class_labels)
        out.sample = out.sample * (1 + self.error)
        return out


def noise(case: Case, seed: int = 0, rows: int = ROWS) -> np.ndarray:
    """Initial noise, NHWC float32, as the served model takes it."""
    return np.random.default_rng(seed).standard_normal((rows, *case.size, case.channels)).astype(np.float32)


def labels(case: Case, rows: int = ROWS) -> np.ndarray | None:
    """The classes in turn, the last row "no class" where the case names one."""
    if case.classes is None:
        return None
    found = np.arange(rows) % case.classes
    if case.null_class is not None:
        found[-1] = case.null_class
    return found.astype(np.int64)


def walk(unet, config: dict, case: Case, x: np.ndarray, steps: int, eta: float | None = None) -> np.ndarray:
    """diffusers' walk from ``x``: DDIMScheduler.from_config of the folder's config, ``unet(x, t)``, guidance
    as classifier-free guidance does it, ``scheduler.step(..., eta)`` with its noise drawn from the served
    loop's per-row streams, and the pipeline's image rule (uint8 NHWC)."""
    from diffusers import DDIMScheduler

    from ganexport.diffusion import row_rng

    eta = case.eta if eta is None else eta
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    sample = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    rngs = [row_rng(row) for row in x]
    label = None if case.classes is None else torch.from_numpy(labels(case, len(x)))
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(sample, t, class_labels=label).sample
            if case.null_class is not None and case.guidance != 1:
                guided = label != case.null_class
                empty = unet(sample[guided], t, class_labels=torch.full((int(guided.sum()),), case.null_class)).sample
                out[guided] = empty + case.guidance * (out[guided] - empty)
            variance = None
            if eta > 0:
                prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
                drawn = bool(eta * scheduler._get_variance(t, prev) ** 0.5 > 0)
                variance = torch.from_numpy(np.stack([r.standard_normal(x.shape[1:], dtype=np.float32) if drawn
                                                      else np.zeros(x.shape[1:], np.float32) for r in rngs]))
                variance = variance.permute(0, 3, 1, 2)
            sample = scheduler.step(out, t, sample, eta=eta, variance_noise=variance).prev_sample
    image = (sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return (image * 255).round().astype(np.uint8)


def pipeline_images(folder: Path, steps: int, seed: int, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(initial noise NHWC, images) of DDIMPipeline itself on the folder, unconditional, eta 0: the noise is
    the pipeline's own draw (``randn_tensor`` with a seeded generator), which the served model is then given."""
    from diffusers import DDIMPipeline
    from diffusers.utils.torch_utils import randn_tensor

    pipe = DDIMPipeline.from_pretrained(folder, low_cpu_mem_usage=False)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    size = unet.config.sample_size
    shape = (rows, unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
    x = randn_tensor(shape, generator=torch.Generator().manual_seed(seed), dtype=unet.dtype)
    images = pipe(batch_size=rows, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                  eta=0.0, output_type="np").images
    return x.permute(0, 2, 3, 1).numpy(), (images * 255).round().astype(np.uint8)


def levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(largest uint8 difference, share of values more than one level apart)."""
    gap = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(gap.max()), float(np.mean(gap > 1))
