"""diffusers' own walk, in PyTorch: the reference an imported pipeline's served loop is held to.

This is DDIMPipeline's loop, written with diffusers' objects only: ``DDIMScheduler.from_config`` of the
config the import kept, ``set_timesteps``, ``unet(x, t)`` with the scheduler's int64 timesteps, and
``scheduler.step(..., eta, use_clipped_model_output=False)``, then the pipeline's image rule. DDIMPipeline
draws its initial noise itself and takes no labels, so the loop is written out here to start from the
request's noise, pass ``class_labels`` to a class-conditional UNet, and guide as the served loop does
(``uncond + w (cond - uncond)``, only where the import named a "no class" label). At eta > 0 the scheduler
gets its noise as ``variance_noise``, drawn from the same per-row streams as the served loop
(ganexport.diffusion.row_rng), so a stochastic walk is compared too. tests/test_diffusers_import.py checks
that this equals ``DDIMPipeline(...)`` itself on the pipeline's own noise.
"""

from __future__ import annotations

import numpy as np
import torch

from ganexport import diffusion


def sample(unet: torch.nn.Module, config: dict, noise: np.ndarray, labels: np.ndarray | None, steps: int,
           guidance: float = 1.0, eta: float = 0.0, null_label: int | None = None) -> np.ndarray:
    """uint8 NHWC images of ``steps`` DDIM steps from ``noise`` (NHWC float32), as diffusers walks them."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(int(steps))
    x = torch.from_numpy(np.ascontiguousarray(noise, np.float32)).permute(0, 3, 1, 2).contiguous()
    rngs = [diffusion.row_rng(row) for row in noise] if eta > 0 else []
    label = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64).reshape(-1))
    twins = (torch.zeros(0, dtype=torch.long) if label is None or null_label is None or guidance == 1.0
             else torch.nonzero(label != null_label).reshape(-1))
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(x, t, class_labels=label).sample
            if len(twins):
                uncond = unet(x[twins], t, class_labels=torch.full((len(twins),), null_label)).sample
                out[twins] = uncond + guidance * (out[twins] - uncond)
            noise_t = None
            if eta > 0:
                prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
                std = eta * scheduler._get_variance(t, prev) ** 0.5
                draws = (np.stack([rng.standard_normal(noise.shape[1:], dtype=np.float32) for rng in rngs])
                         if std > 0 else np.zeros(noise.shape, np.float32))
                noise_t = torch.from_numpy(draws).permute(0, 3, 1, 2)
            x = scheduler.step(out, t, x, eta=eta, use_clipped_model_output=False, variance_noise=noise_t).prev_sample
    image = (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
    return (image * 255).round().astype("uint8")  # DiffusionPipeline.numpy_to_pil


def run_signature(unet: torch.nn.Module, sig, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The images of a request of the served signature (rows grouped by their settings, as the served loop
    groups them), each walked by ``sample``."""
    noise_spec, label_spec, steps_spec, guidance_spec, eta_spec = sig.diffusion_inputs()
    noise = inputs[noise_spec.name]
    labels = None if label_spec is None else inputs[label_spec.name].reshape(-1)
    keys = np.stack([inputs[s.name].astype(np.float64).reshape(-1) for s in (steps_spec, guidance_spec, eta_spec)], 1)
    images = np.zeros(noise.shape, np.uint8)
    for key in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys == key).all(axis=1))
        images[rows] = sample(unet, dict(sig.diffusion["ddim"]), noise[rows], None if labels is None else labels[rows],
                              int(key[0]), float(key[1]), float(key[2]), sig.diffusion["null_label"])
    return images
