"""DCGAN: a convolutional generator against a discriminator, binary cross-entropy.

Discriminator: -log D(x) - log(1 - D(G(z))). Generator: the non-saturating
-log D(G(z)). The health log records mean D(x), mean D(G(z)) and both
gradient norms: when D wins outright (D(x) -> 1, D(G(z)) -> 0) the generator's
gradients vanish, and a class histogram with empty bins means mode collapse.

    ganexport train --model dcgan --profile quick
"""

from __future__ import annotations

import torch

from ganexport.training import losses
from ganexport.training.loop import Family


class Recipe(Family):
    critic_role = "discriminator"

    def make_optimizers(self):
        return {"g": self.adam(self.generator_role), "d": self.adam(self.critic_role)}

    # cgan.py overrides these two to feed class labels to both nets.
    def real_condition(self, batch):
        return None

    def fake_condition(self, n, gen=None):
        return None

    def z(self, n, gen=None):
        """``n`` latents: from ``gen`` (grids, health samples), else a training step's rows of the global batch."""
        if gen is None:
            return self.random.randn(n, self.hp["latent_dim"])
        return torch.randn(n, self.hp["latent_dim"], generator=gen).to(self.device)

    def generator_regulariser(self, z, fake) -> dict[str, torch.Tensor]:
        """Extra generator loss terms by name (cgan.py adds mode seeking); none for DCGAN."""
        return {}

    def train_step(self, draw):
        G, D = self.nets[self.generator_role], self.nets[self.critic_role]
        batch = draw()
        real, n = batch["x"], len(batch["x"])
        real_label, fake_label = self.real_condition(batch), self.fake_condition(n)
        z = self.z(n)
        fake = G(z, fake_label)

        real_logits, fake_logits = D(real, real_label), D(fake.detach(), fake_label)
        loss_d = losses.bce_discriminator(real_logits, fake_logits)
        grad_d = self.backward_step(loss_d, self.optimizers["d"], D)

        extra = self.generator_regulariser(z, fake)
        loss_g = losses.bce_generator_nonsaturating(D(fake, fake_label)) + sum(extra.values())
        grad_g = self.backward_step(loss_g, self.optimizers["g"], G)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), **{k: v.item() for k, v in extra.items()},
                "d_real": torch.sigmoid(real_logits).mean().item(),
                "d_fake": torch.sigmoid(fake_logits).mean().item(),
                "grad_d": grad_d, "grad_g": grad_g}

    def grid(self):
        return self.nets[self.generator_role](self.fixed["z"]), 8

    def samples(self, n, gen):
        return self.nets[self.generator_role](self.z(n, gen)), None


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "dcgan", *__import__("sys").argv[1:]])
