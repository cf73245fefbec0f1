"""The paired ceiling for photo2sketch: how low can ``sketch_l1`` go for this generator at all?

The CycleGAN learns photo -> sketch without pairs. This script gives the same
generator (the catalog's ``g_ab`` for a profile) what the CycleGAN never sees,
the true filter output of each training photo, and trains it on plain L1 to
that target (pix2pix without its discriminator), with the CycleGAN's optimiser,
batch size and learning rate. Every ``--every`` steps it scores the held-out
crops exactly as ``ganexport eval --metrics sketch_l1`` does (uint8 output,
the same 200 crops, ratio to the blank page) and scores whole held-out photos
exactly as ``--metrics sketch_f1_512`` does (stroke F1 and L1 ratio at 512
px). An unpaired run of the same
steps sees strictly less, so it should not expect to do better: the numbers
say whether a target is within reach of this generator and step budget.

    python -m ganexport.training.sketch_bound --steps 4000
    python -m ganexport.training.sketch_bound --profile full --steps 2000 --lr 1e-3
"""

from __future__ import annotations

import json
import time

import click
import numpy as np
import torch
import torch.nn.functional as F

from ganexport import catalog
from ganexport.sketch import pencil_sketch
from ganexport.training import data, photos
from ganexport.training.eval import mean_l1, score_sketches
from ganexport.training.judge import to_tensor
from ganexport.training.nets import to_uint8, translate_photo


@torch.no_grad()
def held_out_l1(net: torch.nn.Module, crops: np.ndarray, truth: np.ndarray) -> float:
    out = np.concatenate([to_uint8(net(to_tensor(crops[i:i + 50]))).numpy() for i in range(0, len(crops), 50)])
    return mean_l1(out, truth)


def held_out_photos_score(net: torch.nn.Module) -> dict:
    """``sketch_f1_512`` of ``net``: whole held-out photos at the served size, against the filter."""
    return score_sketches(lambda photo: translate_photo(net, photo), photos.held_out())


@click.command()
@click.option("--profile", type=click.Choice(["smoke", "quick", "full"]), default="quick", show_default=True,
              help="Catalog profile of the cyclegan whose g_ab is trained (width, blocks, batch, lr).")
@click.option("--steps", type=click.IntRange(1), default=4000, show_default=True)
@click.option("--every", type=click.IntRange(1), default=500, show_default=True,
              help="Score the held-out crops every this many steps.")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the profile's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Append one JSON line per score here.")
def main(profile: str, steps: int, every: int, lr: float | None, seed: int, out: str | None) -> None:
    torch.manual_seed(seed)
    spec = catalog.get("cyclegan")
    hp = spec.hp(profile)
    train, test = data.load_domains("photo2sketch", split="train"), data.load_domains("photo2sketch", split="test")
    inputs = to_tensor(train.a)
    targets = to_tensor(np.stack([pencil_sketch(p) for p in train.a]))  # the pairs the CycleGAN never gets
    blank = mean_l1(np.full_like(test.b, 255), test.b)
    net = spec.build("g_ab", train.a.shape[1:], hp)
    opt = torch.optim.Adam(net.parameters(), lr or hp["lr"], betas=(hp["beta1"], 0.999))
    click.echo(f"g_ab of cyclegan/{profile} (width {hp['width']}, {hp['n_blocks']} blocks), batch {hp['batch_size']}, "
               f"lr {lr or hp['lr']}, {len(inputs)} paired training crops; {test.source}; blank page {blank:.4f}")
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(inputs), (hp["batch_size"],))
        loss = F.l1_loss(net(inputs[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            net.eval()
            l1, whole = held_out_l1(net, test.a, test.b), held_out_photos_score(net)
            net.train()
            record = {"profile": profile, "step": step, "lr": lr or hp["lr"], "sketch_l1": round(l1, 5),
                      "ratio_to_blank_page": round(l1 / blank, 3), "sketch_f1_512": round(whole["f1"], 4),
                      "l1_ratio_512": round(whole["l1_ratio"], 3), "seconds": round(time.time() - t0, 1),
                      "data": train.source}
            click.echo(json.dumps(record))
            if out:
                with open(out, "a") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
