"""Pictures of a run: sample grids and loss curves, because people would rather look than read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganexport.images import grid_image, upscale_for_viewing
from ganexport.training.nets import to_uint8


def save_grid(images: torch.Tensor, nrow: int, path: Path) -> Path:
    """Write a PNG grid; small images (28x28) are upscaled so a person can see them."""
    arr = to_uint8(images.detach().float().cpu()).numpy()
    scale = upscale_for_viewing(arr.shape[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(arr, nrow, scale=scale).save(path)
    return path


def save_loss_curves(history_path: Path, out: Path, title: str = "") -> Path | None:
    """Plot every ``loss_*`` series and the health figures (D(x), D(G(z)), gradient norms) of health.jsonl."""
    if not history_path.exists():
        return None
    records = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float)) and k != "step"})
    losses = [k for k in keys if k.startswith("loss")]
    outputs = [k for k in keys if k.startswith(("d_", "label_acc"))]
    grads = [k for k in keys if k.startswith("grad_")]
    panels = [(name, series) for name, series in
              (("losses", losses), ("D outputs / accuracy", outputs), ("gradient norms", grads)) if series]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels):
        for k in series:
            ax.plot(steps, [r.get(k, np.nan) for r in records], label=k)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if name == "gradient norms":
            ax.set_yscale("log")
    fig.suptitle(title)
    # fixed margins rather than tight_layout, which measures every tick label and took 80% of a plot's time
    # (a smoke run draws one per checkpoint)
    fig.subplots_adjust(left=0.11 / len(panels), right=1 - 0.03 / len(panels), bottom=0.12, top=0.86, wspace=0.25)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
