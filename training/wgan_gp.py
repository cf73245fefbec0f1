"""WGAN-GP: a critic without sigmoid, Wasserstein loss and a gradient penalty.

The critic scores real images above fakes with unbounded scores; a penalty
(lambda 10) keeps its gradient norm near 1 at points between real and fake
images (the soft Lipschitz constraint), and it takes ``n_critic`` steps per
generator step. Unlike BCE, the critic's loss tracks sample quality, so
``w_distance`` (the Wasserstein estimate) should fall as training goes on.

    ganexport train --model wgan_gp --profile quick
"""

from __future__ import annotations

from ganexport.training import dcgan, losses


class Recipe(dcgan.Recipe):
    critic_role = "critic"

    def make_optimizers(self):
        betas = (self.hp["beta1"], self.hp["beta2"])
        return {"g": self.adam("generator", betas=betas), "d": self.adam("critic", betas=betas)}

    def train_step(self, draw):
        G, C = self.nets["generator"], self.nets["critic"]
        for _ in range(self.hp["n_critic"]):
            real = draw()["x"]
            fake = G(self.z(len(real))).detach()
            loss_c = losses.wasserstein_critic(C(real), C(fake))
            gp = losses.gradient_penalty(C, real, fake, alpha=self.random.rand(len(real), 1, 1, 1))
            grad_d = self.backward_step(loss_c + self.hp["gp_weight"] * gp, self.optimizers["d"], C)
        loss_g = losses.wasserstein_generator(C(G(self.z(len(real)))))
        grad_g = self.backward_step(loss_g, self.optimizers["g"], G)
        return {"loss_critic": loss_c.item(), "loss_gp": gp.item(), "loss_g": loss_g.item(),
                "w_distance": -loss_c.item(), "grad_d": grad_d, "grad_g": grad_g}


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "wgan_gp", *__import__("sys").argv[1:]])
