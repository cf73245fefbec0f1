"""Metrics of an autoencoder on attribute-labelled faces, read by the attribute judge (attribute_judge.py).

- ``attr_edit``: the study notes' latent arithmetic, measured. For each attribute, the held-out faces
  without it are edited at strength 1 (its vector added to their latent, as the served edit model does);
  the share the judge then sees with the attribute, and the share of the other attributes it sees as
  before. The reverse (faces with it, strength -1) is recorded too.
- ``recon_faces2k``: the 2k held-out faces through encoder (its mean) and decoder: pixel L1, the share of
  attributes the judge sees alike in a face and its reconstruction, and the sharpness of reconstructions.
- ``fid_faces2k``: Frechet distance between judge features of random decodes and of the held-out faces.

``--n`` takes that many held-out faces (and draws that many decodes) instead of all 2k.

Faces are scored as served: decoder output rounded to uint8 by the exported graph's rule (``to_uint8``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ganexport import catalog
from ganexport.training import attribute_judge, judge
from ganexport.training.nets import to_uint8

BATCH = 500
STRENGTH = 1.0  # the edit the targets are stated at


def _names(ctx) -> tuple[str, ...]:
    return catalog.DATASETS[ctx.dataset].attribute_names


def _judge(ctx):
    return ctx.once("attribute_judge", lambda: attribute_judge.load_attribute_judge(ctx.dataset, device=ctx.device))


def sees(ctx, images: np.ndarray) -> np.ndarray:
    """N x A: the attributes the judge sees in uint8 faces."""
    return attribute_judge.predict(_judge(ctx), judge.to_tensor(images, ctx.device))


@torch.no_grad()
def codes(ctx, images: np.ndarray) -> torch.Tensor:
    """The encoder's means of uint8 faces (what the served encoder and edit model use)."""
    encoder = ctx.net(ctx.spec.encoder)
    return torch.cat([encoder(judge.to_tensor(images[i:i + BATCH], ctx.device))[0]
                      for i in range(0, len(images), BATCH)])


@torch.no_grad()
def decode(ctx, z: torch.Tensor) -> np.ndarray:
    decoder = ctx.net(ctx.spec.signatures(ctx.ckpt.image_shape, ctx.ckpt.hp)[0].net)
    return np.concatenate([to_uint8(decoder(z[i:i + BATCH])).cpu().numpy() for i in range(0, len(z), BATCH)])


def _held_out(ctx) -> tuple[np.ndarray, np.ndarray]:
    """The held-out faces and labels: all of them, or ``--n`` of them chosen by ``--seed`` (drawn, not loaded)."""
    from ganexport.training import data

    test = ctx.real("test") if not ctx.n else ctx.once(
        "faces:n", lambda: data.load_images(ctx.dataset, split="test", limit=ctx.n, seed=ctx.seed))
    return test.images, test.attributes.astype(bool)


def attr_edit(ctx) -> dict[str, Any]:
    images, labels = _held_out(ctx)
    names = _names(ctx)
    vectors = ctx.ckpt.attribute_vectors(names).to(ctx.device)
    mu, before = codes(ctx, images), sees(ctx, images)
    per = {}
    for a, name in enumerate(names):
        others = [b for b in range(len(names)) if b != a]
        result = {}
        for direction, rows, sign in (("added", ~labels[:, a], STRENGTH), ("removed", labels[:, a], -STRENGTH)):
            idx = np.flatnonzero(rows)
            result[f"n_{direction}"] = int(len(idx))
            if not len(idx):  # no held-out face to edit this way
                result[direction] = result[f"others_kept_{direction}"] = float("nan")
                continue
            after = sees(ctx, decode(ctx, mu[torch.from_numpy(idx).to(ctx.device)] + sign * vectors[a]))
            hit = after[:, a] if sign > 0 else ~after[:, a]
            result[direction] = float(hit.mean())
            result[f"others_kept_{direction}"] = float((after[:, others] == before[idx][:, others]).mean())
        per[name] = result
    return {"per_attribute": per, "strength": STRENGTH, "n": int(len(images)),
            "worst_others_kept": float(np.nanmin([r["others_kept_added"] for r in per.values()])),
            "judge_agreement_with_labels": attribute_judge.agreement(before, labels, names)}


def recon_faces2k(ctx) -> dict[str, Any]:
    from ganexport.training.eval import laplacian_variance, mean_l1

    images, labels = _held_out(ctx)
    names = _names(ctx)
    recon = decode(ctx, codes(ctx, images))
    before, after = sees(ctx, images), sees(ctx, recon)
    per = {name: float((before[:, a] == after[:, a]).mean()) for a, name in enumerate(names)}
    sharp, real = laplacian_variance(recon), laplacian_variance(images)
    return {"l1": mean_l1(recon, images), "attribute_agreement": float((before == after).mean()),
            "per_attribute": per, "sharpness": sharp, "sharpness_real": real, "sharpness_ratio": sharp / real,
            "latent_dim": int(ctx.ckpt.hp["latent_dim"]), "n": int(len(images))}


def fid_faces2k(ctx) -> dict[str, Any]:
    from ganexport.training import data
    from ganexport.training.eval import frechet_distance

    test, _ = _held_out(ctx)
    n = len(test)
    f_test = _features(ctx, test)
    train = ctx.real("train").images[:n] if not ctx.n else data.load_images(ctx.dataset, limit=n, seed=ctx.seed).images
    floor = frechet_distance(_features(ctx, train), f_test)
    return {"fid": frechet_distance(_features(ctx, ctx.sample(n)), f_test), "floor_train_vs_test": floor,
            "n_generated": n, "n_test": int(len(test))}


@torch.no_grad()
def _features(ctx, images: np.ndarray) -> np.ndarray:
    x = judge.to_tensor(images, ctx.device)
    net = _judge(ctx)
    return torch.cat([net.features(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]).double().cpu().numpy()


def headline(name: str, r: dict[str, Any]) -> str:
    if name == "attr_edit":
        per = r["per_attribute"]
        added = ", ".join(f"{k} {v['added']:.2f}" for k, v in per.items())
        return f"added: {added}; other attributes kept >= {r['worst_others_kept']:.2f}"
    if name == "recon_faces2k":
        return (f"L1 {r['l1']:.4f}, attributes kept {r['attribute_agreement']:.3f}, sharpness "
                f"{r['sharpness_ratio']:.2f} of real ({r['latent_dim']}-D)")
    return f"{r['fid']:.2f} (floor {r['floor_train_vs_test']:.2f}, n={r['n_generated']})"
