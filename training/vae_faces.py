"""The study notes' ``vae_faces``: a convolutional VAE on faces, and attribute vectors in its latent space.

Two points of the notes, made measurable: a bigger latent lets the encoder keep more of each face (the
card compares 16, 64 and 200 dimensions), and faces change by vector arithmetic in the latent space. An
attribute's vector is the mean latent (the encoder's mean) of held-out faces with it minus the mean of
those without it; adding it to a face's latent adds the attribute. The vectors are recomputed at every
checkpoint and stored in its metadata, so the released weights carry them and the exported edit graph
(encoder, the weighted sum of vectors, decoder) bakes them in.

    ganexport train --model vae_faces --profile quick
"""

from __future__ import annotations

import numpy as np
import torch

from ganexport import catalog
from ganexport.training import data, judge, vae

GRID_FACES = 8


def attribute_vectors(latents: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, list[list[int]]]:
    """A x D: per attribute, mean latent of the faces with it minus the mean of those without it (zeros where
    either group is empty), and the two group sizes."""
    labels_t = torch.from_numpy(np.asarray(labels, bool)).to(latents.device)
    vectors, counts = [], []
    for a in range(labels_t.shape[1]):
        has = labels_t[:, a]
        n_with, n_without = int(has.sum()), int((~has).sum())
        counts.append([n_with, n_without])
        vectors.append(latents[has].mean(0) - latents[~has].mean(0) if n_with and n_without
                       else torch.zeros(latents.shape[1], device=latents.device))
    return torch.stack(vectors), counts


class Recipe(vae.Recipe):
    def make_fixed(self, gen):
        fixed = super().make_fixed(gen)
        info = catalog.DATASETS[self.spec.dataset]
        held = data.load_images(self.spec.dataset, split="test", limit=self.hp["vector_faces"])
        self.names = info.attribute_names
        self.held_out = judge.to_tensor(held.images, self.device)
        self.held_labels = held.attributes
        fixed["x"] = self.held_out[:GRID_FACES]
        self.vectors = torch.zeros(len(self.names), self.hp["latent_dim"], device=self.device)
        self.counts: list[list[int]] = []
        return fixed

    def update_attribute_vectors(self):
        mu = torch.cat([self.encoder_mean(self.held_out[i:i + 500]) for i in range(0, len(self.held_out), 500)])
        self.vectors, self.counts = attribute_vectors(mu, self.held_labels)

    def grid(self):
        """Row 1: held-out faces; row 2: their reconstructions; then each attribute toggled (added where a face
        lacks it, taken away where it has it, strength 1); then 16 random decodes."""
        self.update_attribute_vectors()
        real = self.fixed["x"]
        mu = self.encoder_mean(real)
        decoder = self.nets["decoder"]
        rows = [real, decoder(mu)]
        has = torch.from_numpy(np.asarray(self.held_labels[:len(real)], np.float32)).to(self.device)
        for a in range(len(self.names)):
            sign = (1 - 2 * has[:, a]).unsqueeze(1)
            rows.append(decoder(mu + sign * self.vectors[a]))
        rows.append(decoder(self.prior(self.fixed["z"][:2 * len(real)])))
        return torch.cat(rows), len(real)

    def extra_meta(self):
        return {"attribute_names": list(self.names), "attribute_vectors": self.vectors.cpu().tolist(),
                "attribute_faces": self.counts}


if __name__ == "__main__":
    from ganexport.cli import main

    main(["train", "--model", "vae_faces", *__import__("sys").argv[1:]])
