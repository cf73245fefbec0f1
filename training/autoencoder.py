"""Autoencoder with a 2-D latent space (the seed material's first model).

The encoder squeezes an image into two numbers and the decoder draws it back;
trained on reconstruction error alone, its latent space has holes, so random
points decode to blurry or odd images. The VAE (vae.py) fixes that. The
decoder is what gets served.

    ganexport train --model autoencoder --profile quick
"""

from __future__ import annotations

import torch

from ganexport.training import losses
from ganexport.training.loop import Family


class Recipe(Family):
    generator_role = "decoder"

    def make_optimizers(self):
        return {"ae": self.adam("encoder", "decoder")}

    def make_fixed(self, gen):
        fixed = super().make_fixed(gen)
        x = self.batches.tensors["x"]
        fixed["x"] = x[torch.randint(0, len(x), (8,), generator=gen).to(x.device)]
        self.latent_mean = torch.zeros(self.hp["latent_dim"], device=self.device)
        self.latent_std = torch.ones(self.hp["latent_dim"], device=self.device)
        return fixed

    def encode(self, x):
        """x -> (z, extra losses); the VAE samples z and adds the KL term."""
        return self.nets["encoder"](x), {}

    def train_step(self, draw):
        x = draw()["x"]
        z, extra = self.encode(x)
        recon = losses.reconstruction(self.nets["decoder"](z), x)
        total = recon + sum(extra.values())
        grad = self.backward_step(total, self.optimizers["ae"], self.nets["encoder"], self.nets["decoder"])
        return {"loss_recon": recon.item(), **{k: v.item() for k, v in extra.items()},
                **({"loss_total": total.item()} if extra else {}), "grad_ae": grad}

    def update_latent_stats(self):
        """Where the data sits in latent space: random decodes are drawn from there."""
        x = self.batches.tensors["x"][:2000]
        mu = self.encoder_mean(x)
        self.latent_mean, self.latent_std = mu.mean(0), mu.std(0)

    def encoder_mean(self, x):
        return self.nets["encoder"](x)

    def prior(self, z):
        return z * self.latent_std + self.latent_mean

    def grid(self):
        """Row 1: real images; row 2: their reconstructions; then 48 random decodes."""
        self.update_latent_stats()
        real = self.fixed["x"]
        recon = self.nets["decoder"](self.encoder_mean(real))
        samples = self.nets["decoder"](self.prior(self.fixed["z"][:48]))
        return torch.cat([real, recon, samples]), 8

    def samples(self, n, gen):
        z = torch.randn(n, self.hp["latent_dim"], generator=gen).to(self.device)
        return self.nets["decoder"](self.prior(z)), None

    def extra_meta(self):
        return {"latent_mean": self.latent_mean.tolist(), "latent_std": self.latent_std.tolist()}


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "autoencoder", *__import__("sys").argv[1:]])
