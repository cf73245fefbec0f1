"""Variational autoencoder: reparameterisation, reconstruction + KL.

The encoder maps an image to a normal distribution (mu, sigma) rather than a
point; the KL term pulls those distributions towards N(0, 1), so the latent
space has no holes and neighbouring points decode to similar images. Its
samples are still blurry: the reconstruction loss averages (the point the
seed material makes before introducing GANs). Its latent is 16-D by default:
in two dimensions the blur merges coats into pullovers (`--hp latent_dim=2`
trains that one, which the demo's Latent tab can show).

    ganexport train --model vae --profile quick
"""

from __future__ import annotations


from ganexport.training import autoencoder, losses


class Recipe(autoencoder.Recipe):
    def encode(self, x):
        mu, logvar = self.nets["encoder"](x)
        z = mu + self.random.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation trick
        return z, {"loss_kl": self.hp["kl_weight"] * losses.kl_standard_normal(mu, logvar)}

    def encoder_mean(self, x):
        return self.nets["encoder"](x)[0]

    def prior(self, z):
        return z  # the KL term makes N(0, 1) the prior: sample it directly

    def extra_meta(self):
        return {}


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "vae", *__import__("sys").argv[1:]])
