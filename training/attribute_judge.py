"""A small judge that reads a face's attributes: it scores edits and reconstructions, and gives FID features.

The Fashion-MNIST judge (judge.py) names one class per image; a face carries several attributes at once
(smiling and glasses and a hat), so this one answers yes or no per attribute (one logit each, binary
cross-entropy), with the same small CNN (``nets.Classifier``) and the same penultimate-layer features.
It is trained on the data set's exact labels. What it judges is a VAE's output, which is softer than a
rendered face, so it trains on faces blurred by a random amount (Gaussian, sigma 0 to 1.5 pixels) and
lightly noised; held-out accuracy is measured on the clean faces and on blurred ones.

Cached like the class judge: ``judge_<dataset>.safetensors`` among the released weights when the project
ships one (``released.JUDGE_DATASETS``: then a missing file is an error, since the cards were measured
with it), else trained on first use into the user cache.

    ganexport train-judge --dataset faces --out weights/judge_faces.safetensors
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ganexport import catalog, released
from ganexport.training import checkpoint, data
from ganexport.training.judge import _candidates, _stderr, to_tensor
from ganexport.training.nets import Classifier

MAX_BLUR = 1.5  # sigma in pixels of the strongest blur seen in training
NOISE = 0.05


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of NCHW ``x`` blurred by its own Gaussian ``sigma`` (N,), separably; sigma 0 leaves it."""
    radius = max(1, math.ceil(3 * MAX_BLUR))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # N x K; sigma ~0 gives a delta
    n, c, h, w = x.shape
    kernel = k.repeat_interleave(c, 0)  # one kernel per (image, channel)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def load_attribute_judge(dataset: str, device="cpu", train_if_missing: bool = True,
                         log: Callable[[str], None] = _stderr) -> Classifier:
    """The attribute judge for ``dataset`` (one with ``attribute_names``), from the released weights or the
    cache, else trained now (said in one line) unless it ships (``released.JUDGE_DATASETS``)."""
    names = catalog.DATASETS[dataset].attribute_names
    if not names:
        raise ValueError(f"{dataset} labels no attributes; the attribute judge needs a data set that does")
    candidates = _candidates(dataset)
    for path in candidates:
        if path.is_file():
            meta = checkpoint.read_meta(path)
            net = Classifier(tuple(meta["image_shape"]), len(meta["attribute_names"]))
            net.load_state_dict({k.partition(".")[2]: v.float() for k, v in load_file(str(path)).items()})
            return net.to(device).eval()
    looked = ", ".join(str(p.parent) for p in candidates)
    if dataset in released.JUDGE_DATASETS or not train_if_missing:
        raise checkpoint.CheckpointError(
            f"no attribute judge for {dataset}: {candidates[0].name} is in none of {looked} "
            f"(train one: ganexport train-judge --dataset {dataset})")
    log(f"no attribute judge for {dataset} in {looked}: training one now (cached as {candidates[-1]})")
    with torch.random.fork_rng(devices=[]):
        net, _ = train_attribute_judge(dataset, device=device, out=candidates[-1])
    return net


def train_attribute_judge(dataset: str, *, device="cpu", epochs: float = 3, batch_size: int = 128, seed: int = 0,
                          limit: int | None = None, out: Path | None = None) -> tuple[Classifier, dict]:
    """Train on the train split's labels; returns the judge and its held-out accuracy per attribute (clean and
    blurred by ``MAX_BLUR``)."""
    info = catalog.DATASETS[dataset]
    train = data.load_images(dataset, split="train", limit=limit, seed=seed)
    test = data.load_images(dataset, split="test", limit=limit, seed=seed)
    torch.manual_seed(seed)
    net = Classifier(info.image_shape, len(info.attribute_names)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x = to_tensor(train.images, device)
    y = torch.from_numpy(train.attributes).float().to(device)
    steps = max(1, int(epochs * len(x) / batch_size))
    net.train()
    for _ in tqdm(range(steps), desc=f"attribute judge {dataset}", unit="step", leave=False, disable=None):
        idx = torch.randint(0, len(x), (batch_size,), device=device)
        xb = blur(x[idx], torch.rand(batch_size, device=device) * MAX_BLUR)
        xb = xb + NOISE * torch.randn_like(xb)
        loss = F.binary_cross_entropy_with_logits(net(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    xt = to_tensor(test.images, device)
    blurred = blur(xt, torch.full((len(xt),), MAX_BLUR, device=device))
    acc = {"clean": agreement(predict(net, xt), test.attributes, info.attribute_names),
           "blurred": agreement(predict(net, blurred), test.attributes, info.attribute_names)}
    if out is not None:
        checkpoint.save(out, {"net": net}, {
            "model": "attribute_judge", "dataset": dataset, "image_shape": list(info.image_shape),
            "attribute_names": list(info.attribute_names), "test_accuracy": acc, "epochs": epochs, "seed": seed,
            "train_images": len(x), "max_blur": MAX_BLUR, "noise": NOISE})
    return net, acc


@torch.no_grad()
def predict(net: Classifier, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """N x A booleans for float NCHW images in [-1, 1]: the attributes the judge sees."""
    return torch.cat([net(images[i:i + batch_size]) > 0 for i in range(0, len(images), batch_size)]).cpu().numpy()


def agreement(pred: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Share of images where the judge and the labels agree, per attribute."""
    return {name: float((pred[:, a] == labels[:, a].astype(bool)).mean()) for a, name in enumerate(names)}
