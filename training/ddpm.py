"""DDPM: learn to remove noise, then generate by removing it step by step.

Training draws a timestep t and noise eps for each image, mixes them,
``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``, and asks the UNet for the noise back (or
for v, a mix of noise and image that stays well scaled near pure noise: ``prediction``):
a plain mean squared error, with no discriminator to fight. So none of a GAN's failure modes has
a cause here (the health log shows the same class histogram and variety as the GANs',
to compare). The label is replaced by "no class" for ``label_dropout`` of the images,
so the one net learns both the conditional and the unconditional estimate that
classifier-free guidance combines when sampling (ganexport.diffusion).

    ganexport train --model ddpm --profile quick
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganexport import diffusion
from ganexport.training import judge
from ganexport.training.loop import Family
from ganexport.training.unet import numpy_eps_fn


class Recipe(Family):
    generator_role = "denoiser"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule = diffusion.Schedule(self.hp["timesteps"])
        self.sqrt_abar = torch.from_numpy(np.sqrt(self.schedule.alpha_bar())).to(self.device, torch.get_default_dtype())
        self.null_label = self.hp["num_classes"]

    def make_optimizers(self):
        return {"denoiser": self.adam("denoiser")}

    def make_fixed(self, gen):
        """The same 8 initial noises in every class row of the grid."""
        h, w, c = self.image_shape
        return {"noise": torch.randn(8, h, w, c, generator=gen)}

    def train_step(self, draw):
        net = self.nets["denoiser"]
        batch = draw()
        x, y = batch["x"], batch["y"]
        n = len(x)
        drop = self.random.rand(n) < self.hp["label_dropout"]
        label = torch.where(drop, torch.full_like(y, self.null_label), y)
        t = self.random.randint(self.hp["timesteps"], n)
        eps = self.random.randn_like(x)
        a = self.sqrt_abar[t][:, None, None, None]
        x_t = a * x + (1 - a * a).sqrt() * eps
        loss = F.mse_loss(net(x_t, t.to(x.dtype), label), net.target(x, eps, t))
        grad = self.backward_step(loss, self.optimizers["denoiser"], net)
        return {"loss_mse": loss.item(), "grad_denoiser": grad}

    def sample(self, noise: np.ndarray, labels: np.ndarray, steps: int) -> torch.Tensor:
        """DDIM (eta 0) at the profile's guidance, through the served sampler's own loop; NCHW in [-1, 1]."""
        out = diffusion.sample(numpy_eps_fn(self.nets["denoiser"]), self.schedule, noise, labels,
                               self.null_label, steps=steps, guidance=self.hp["guidance"])
        return judge.to_tensor(out.images)

    def grid(self):
        """One row per class, the same 8 initial noises in every row."""
        k = self.hp["num_classes"]
        noise = self.fixed["noise"].repeat(k, 1, 1, 1).numpy()
        labels = np.repeat(np.arange(k), 8)
        return self.sample(noise, labels, self.hp["grid_steps"]), 8

    def samples(self, n, gen):
        """Uniform labels, the first half repeated (as cgan's): what the class health check judges."""
        h, w, c = self.image_shape
        half = torch.randint(0, self.hp["num_classes"], ((n + 1) // 2,), generator=gen)
        labels = torch.cat([half, half])[:n]
        noise = torch.randn(n, h, w, c, generator=gen).numpy()
        return self.sample(noise, labels.numpy(), self.hp["health_steps"]).to(self.device), labels.to(self.device)


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "ddpm", *__import__("sys").argv[1:]])
