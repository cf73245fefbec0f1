"""A small classifier that judges generated images of a labelled dataset.

Training uses it to log the class histogram of 1k samples (mode collapse shows
as missing classes); evaluation will use its penultimate features for FID.
It is trained once per dataset and cached: ``weights/judge_<dataset>.safetensors``
when the project ships one, else the user cache (``$GANEXPORT_CACHE`` or
``~/.cache/ganexport``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ganexport import catalog
from ganexport.training import checkpoint, data
from ganexport.training.nets import Classifier

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


def cache_dir() -> Path:
    return Path(os.environ.get("GANEXPORT_CACHE", Path.home() / ".cache" / "ganexport"))


def _candidates(dataset: str) -> list[Path]:
    name = f"judge_{dataset}.safetensors"
    return [SHIPPED_DIR / name, cache_dir() / name]


def to_tensor(images: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], the range every net here uses."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def load_judge(dataset: str, device="cpu", train_if_missing: bool = True) -> Classifier | None:
    """The judge for ``dataset`` (None when the dataset has no labels).

    Runs on a forked RNG: whether the judge was cached or trained just now must
    not change the random stream of the training run that asked for it.
    """
    with torch.random.fork_rng(devices=[]):
        return _load_judge(dataset, device, train_if_missing)


def _load_judge(dataset: str, device, train_if_missing: bool) -> Classifier | None:
    info = catalog.DATASETS[dataset]
    if not info.num_classes:
        return None
    for path in _candidates(dataset):
        if path.is_file():
            meta = checkpoint.read_meta(path)
            net = Classifier(tuple(meta["image_shape"]), meta["num_classes"])
            net.load_state_dict({k.partition(".")[2]: v.float() for k, v in load_file(str(path)).items()})
            return net.to(device).eval()
    if not train_if_missing:
        return None
    net, _ = train_judge(dataset, device=device, out=_candidates(dataset)[1])
    return net


def train_judge(dataset: str, *, device="cpu", epochs: int = 2, batch_size: int = 128, seed: int = 0,
                out: Path | None = None) -> tuple[Classifier, float]:
    """Train the judge on the dataset's train split; returns it and its test accuracy."""
    info = catalog.DATASETS[dataset]
    train, test = data.load_images(dataset, split="train"), data.load_images(dataset, split="test")
    torch.manual_seed(seed)
    net = Classifier(info.image_shape, info.num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, y = to_tensor(train.images, device), torch.from_numpy(train.labels).to(device)
    steps = epochs * (len(x) // batch_size)
    net.train()
    for _ in tqdm(range(steps), desc=f"judge {dataset}", unit="step", leave=False, disable=None):
        idx = torch.randint(0, len(x), (batch_size,), device=device)
        xb = x[idx] + 0.05 * torch.randn_like(x[idx])  # slight noise: judge GAN samples, not only clean data
        loss = F.cross_entropy(net(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    acc = accuracy(net.eval(), test.images, test.labels, device)
    if out is not None:
        checkpoint.save(out, {"net": net}, {
            "model": "judge", "dataset": dataset, "image_shape": list(info.image_shape),
            "num_classes": info.num_classes, "test_accuracy": acc, "epochs": epochs, "seed": seed,
        })
    return net, acc


@torch.no_grad()
def predict(net: Classifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class indices for float NCHW images in [-1, 1]."""
    return torch.cat([net(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def accuracy(net: Classifier, images: np.ndarray, labels: np.ndarray, device="cpu") -> float:
    pred = predict(net, to_tensor(images, device)).cpu().numpy()
    return float((pred == labels).mean())
