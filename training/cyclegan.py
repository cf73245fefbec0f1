"""CycleGAN: unpaired translation between two domains (photo <-> pencil sketch by default).

Two ResNet generators (G_ab, G_ba) and two PatchGAN discriminators, with
least-squares GAN losses, cycle consistency (A -> B -> A returns A; L1,
lambda 10), an identity loss (G_ab leaves a B image alone; 0.5 * lambda), and
a history pool of 50 generated images that the discriminators also see, which
damps oscillation. Both generators are served (cyclegan_a2b, cyclegan_b2a).

``aba_weight_scale`` scales the A -> B -> A term alone. When B cannot carry all
of A (a pencil sketch has no colour), a full-weight A cycle pays G_ab to hide
the colours in faint tints of its sketch; a lower weight lets it draw the
sketch instead, while B -> A -> B (which teaches G_ab to map photo-like
images to exactly the sketch they came from) keeps its full weight.
``aba_detail_weight`` adds a second A -> B -> A term on the luminance detail
alone (``losses.structure_l1``): the part of a photo a sketch can carry, at
full cycle weight, where the whole-image term stays low.
``cycle_noise`` adds Gaussian noise to a fake before it goes round the cycle
(Chu et al., "CycleGAN, a master of steganography", 2017): without it the
generators pass the cycle by hiding information in faint, invisible tints,
and G_ab learns to decode G_ba's hidden cues instead of drawing visible
strokes. ``tone_weight`` adds a loss on the histogram of G_ab's grey levels
against a batch of real B images (``losses.tone_matching``): the PatchGAN with
instance norm cannot see a page that is a few levels grey all over, and this
term can. ``lr_decay_start`` (the loop's) decays the learning rate linearly
to zero over the last part of the run, as the paper does.

    ganexport train --model cyclegan --profile quick
    ganexport train --model cyclegan --data DIR   # DIR/trainA, DIR/trainB
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganexport.training import losses
from ganexport.training.loop import Family


class ImagePool:
    """Shrivastava et al.'s history buffer: half the time, show D an older fake instead."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images:
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(0, self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out)


class Recipe(Family):
    generator_role = "g_ab"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.pool_a, self.pool_b = ImagePool(self.hp["pool_size"]), ImagePool(self.hp["pool_size"])

    def make_optimizers(self):
        return {"g": self.adam("g_ab", "g_ba"), "d": self.adam("d_a", "d_b")}

    def make_fixed(self, gen):
        a, b = self.batches.tensors["a"], self.batches.tensors["b"]
        pick = lambda t: t[torch.randint(0, len(t), (4,), generator=gen).to(t.device)]  # noqa: E731
        return {"a": pick(a), "b": pick(b)}

    def train_step(self, draw):
        G_ab, G_ba, D_a, D_b = (self.nets[r] for r in ("g_ab", "g_ba", "d_a", "d_b"))
        batch = draw()
        real_a, real_b = batch["a"], batch["b"]
        lam, lam_idt = self.hp["cycle_weight"], self.hp["cycle_weight"] * self.hp["identity_weight"]
        lam_aba = lam * self.hp["aba_weight_scale"]

        fake_b, fake_a = G_ab(real_a), G_ba(real_b)
        loss_gan = losses.lsgan(D_b(fake_b), True) + losses.lsgan(D_a(fake_a), True)
        rec_a = G_ba(self.jitter(fake_b))
        loss_cycle = lam_aba * F.l1_loss(rec_a, real_a) + lam * F.l1_loss(G_ab(self.jitter(fake_a)), real_b)
        if self.hp["aba_detail_weight"]:
            loss_cycle = loss_cycle + lam * self.hp["aba_detail_weight"] * losses.structure_l1(rec_a, real_a)
        loss_idt = lam_idt * (F.l1_loss(G_ab(real_b), real_b) + F.l1_loss(G_ba(real_a), real_a))
        loss_tone = (self.hp["tone_weight"] * losses.tone_matching(fake_b, real_b) if self.hp["tone_weight"]
                     else torch.zeros(()))
        grad_g = self.backward_step(loss_gan + loss_cycle + loss_idt + loss_tone, self.optimizers["g"], G_ab, G_ba)

        # the pools hold the global batch's fakes, so every process keeps the one history a single process would
        pa, pb = (self.world.shard(pool.query(self.world.gather(fake.detach())))
                  for pool, fake in ((self.pool_a, fake_a), (self.pool_b, fake_b)))
        d_real_b = D_b(real_b)
        loss_d = 0.5 * (losses.lsgan(D_a(real_a), True) + losses.lsgan(D_a(pa), False)
                        + losses.lsgan(d_real_b, True) + losses.lsgan(D_b(pb), False))
        grad_d = self.backward_step(loss_d, self.optimizers["d"], D_a, D_b)
        return {"loss_gan": loss_gan.item(), "loss_cycle": loss_cycle.item(), "loss_identity": loss_idt.item(),
                "loss_tone": loss_tone.item(),
                "loss_d": loss_d.item(), "d_b_on_real": d_real_b.mean().item(), "grad_g": grad_g, "grad_d": grad_d}

    def jitter(self, fake: torch.Tensor) -> torch.Tensor:
        """``fake`` plus ``cycle_noise`` Gaussian noise; untouched (no random draw) when the noise is off, so
        runs without it keep the random stream, and the results, of runs made before the knob existed."""
        sigma = self.hp["cycle_noise"]
        return fake + sigma * self.random.randn_like(fake) if sigma else fake

    def grid(self):
        """Each row: A, G_ab(A), G_ba(G_ab(A)) | B, G_ba(B), G_ab(G_ba(B))."""
        G_ab, G_ba = self.nets["g_ab"], self.nets["g_ba"]
        a, b = self.fixed["a"], self.fixed["b"]
        ab, ba = G_ab(a), G_ba(b)
        cols = [a, ab, G_ba(ab), b, ba, G_ab(ba)]
        return torch.stack(cols, dim=1).flatten(0, 1), 6

    def samples(self, n, gen):
        return None


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "cyclegan", *__import__("sys").argv[1:]])
