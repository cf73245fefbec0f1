"""Conditional GAN: DCGAN's losses, with the class label embedded in both nets.

The generator concatenates z with a learned label embedding; the
discriminator sees the label as an extra image plane, so it rejects a
well-drawn sandal labelled "bag". The health log adds how often the judge
classifier agrees with the class that was asked for.

    ganexport train --model cgan --profile quick
"""

from __future__ import annotations

import torch

from ganexport.training import dcgan


class Recipe(dcgan.Recipe):
    def real_condition(self, batch):
        return batch["y"]

    def fake_condition(self, n, gen=None):
        return torch.randint(0, self.hp["num_classes"], (n,), generator=gen).to(self.device)

    def grid(self):
        """One row per class, the same 8 latent vectors in every row."""
        k = self.hp["num_classes"]
        z = self.fixed["z"][:8].repeat(k, 1)
        labels = torch.arange(k, device=self.device).repeat_interleave(8)
        return self.nets["generator"](z, labels), 8

    def samples(self, n, gen):
        labels = self.fake_condition(n, gen)
        return self.nets["generator"](self.z(n, gen), labels), labels


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "cgan", *__import__("sys").argv[1:]])
