"""Conditional GAN: DCGAN's losses, with the class label in both nets.

The generator concatenates z with a learned label embedding; the
discriminator projects its image features onto a learned class vector
(``d_conditioning="projection"``; ``"plane"`` feeds the label as an extra
image channel instead), so it rejects a well-drawn sandal labelled "bag".
A mode-seeking term (``mode_seeking``, its weight) makes two latents of one
class draw two different garments: without it the generator learns to ignore
z. The health log adds how often the judge classifier agrees with the class
that was asked for.

    ganexport train --model cgan --profile quick
"""

from __future__ import annotations

import torch

from ganexport.training import dcgan


class Recipe(dcgan.Recipe):
    def real_condition(self, batch):
        return batch["y"]

    def fake_condition(self, n, gen=None):
        """Uniform labels, drawn for the first half and repeated: sample i and i + n//2 share a class (in a
        data-parallel run, within each process's rows)."""
        k, h = self.hp["num_classes"], (n + 1) // 2
        half = self.random.randint(k, h) if gen is None else torch.randint(0, k, (h,), generator=gen)
        return torch.cat([half, half])[:n].to(self.device)

    def generator_regulariser(self, z, fake):
        """Mode seeking (Mao et al., 2019): two latents of the same class must give two different images.

        The discriminator sees a batch of mixed classes, so one image per class fools it as well as a
        variety does, and the generator learns to ignore z. The term is weight / (image gap / latent
        gap) over the same-class pairs that ``fake_condition`` makes.
        """
        weight, h = self.hp["mode_seeking"], len(z) // 2
        if not weight or h == 0:
            return {}
        gap = (fake[:h] - fake[h:2 * h]).abs().mean() / (z[:h] - z[h:2 * h]).abs().mean()
        return {"loss_mode_seeking": weight / (gap + 1e-5)}

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
