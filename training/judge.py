"""A small classifier that judges generated images of a labelled dataset.

Training uses it to log the class histogram of 1k samples (mode collapse shows
as missing classes); evaluation will use its penultimate features for FID.
It is trained once per dataset and cached: ``judge_<dataset>.safetensors`` among
the released weights when the project ships one (``released.JUDGE_DATASETS``),
else the user cache (``$GANEXPORT_CACHE`` or ``~/.cache/ganexport``). A shipped
judge that cannot be found is an error, not a reason to train another: the
metrics in the model cards were measured with the shipped one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ganexport.cache import cache_dir
from ganexport import catalog, released
from ganexport.training import checkpoint, data
from ganexport.training.nets import Classifier




def _candidates(dataset: str) -> list[Path]:
    """Where a judge may be: the released weights, the package's own (``$GANEXPORT_WEIGHTS`` may name a folder of
    your releases without one), then the user cache."""
    name = f"judge_{dataset}.safetensors"
    folders = [released.weights_dir()]
    try:
        folders.append(released.packaged_dir())
    except released.ReleasedError:
        pass
    return [d / name for d in dict.fromkeys(folders)] + [cache_dir() / name]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def to_tensor(images: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], the range every net here uses, in torch's default float type (the
    run's precision)."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).to(torch.get_default_dtype()).div(127.5).sub(1.0)


def load_judge(dataset: str, device="cpu", train_if_missing: bool = True,
               log: Callable[[str], None] = _stderr) -> Classifier | None:
    """The judge for ``dataset`` (None when the dataset has no labels, or it has no judge yet and
    ``train_if_missing`` is off).

    A dataset whose judge ships (``released.JUDGE_DATASETS``) never trains one: its absence raises
    ``CheckpointError``. Another dataset's is trained on first use, said in one line, and cached.
    Runs on a forked RNG: whether the judge was cached or trained just now must
    not change the random stream of the training run that asked for it.
    """
    with torch.random.fork_rng(devices=[]):
        return _load_judge(dataset, device, train_if_missing, log)


def _load_judge(dataset: str, device, train_if_missing: bool, log: Callable[[str], None]) -> Classifier | None:
    info = catalog.DATASETS[dataset]
    if not info.num_classes:
        return None
    candidates = _candidates(dataset)
    for path in candidates:
        if path.is_file():
            meta = checkpoint.read_meta(path)
            net = Classifier(tuple(meta["image_shape"]), meta["num_classes"])
            net.load_state_dict({k.partition(".")[2]: v.float() for k, v in load_file(str(path)).items()})
            return net.to(device).eval()
    looked = ", ".join(str(p.parent) for p in candidates)
    if dataset in released.JUDGE_DATASETS:
        raise checkpoint.CheckpointError(
            f"no judge for {dataset}: {candidates[0].name} ships with ganexport but is in none of {looked} "
            f"(reinstall ganexport, or train one: ganexport train-judge --dataset {dataset})")
    if not train_if_missing:
        return None
    log(f"no judge for {dataset} in {looked}: training one now (cached as {candidates[-1]})")
    net, _ = train_judge(dataset, device=device, out=candidates[-1])
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
