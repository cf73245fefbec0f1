"""Self-describing checkpoints: safetensors weights whose metadata says what they are.

A checkpoint holds every net of a training model under ``<role>.<param>``
keys, and a JSON ``ganexport`` metadata entry: model, family, dataset, image
shape, hyper-parameters, the exact command, step, versions and metrics. That
is enough to rebuild the nets with no other file, as nanoGPT's checkpoints
carry their config. Nothing here unpickles: weights are safetensors and the
optimizer state (for --resume) is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open

from ganexport import catalog, released

META_KEY = "ganexport"
RUNS_DIR = Path("runs")  # in the working directory, as `ganexport train --out` writes them


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt or not ours; the message is one line."""


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    state: dict[str, dict[str, torch.Tensor]]  # role -> state_dict

    @property
    def spec(self) -> catalog.ModelSpec:
        return catalog.get(self.meta["model"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    @property
    def hp(self) -> dict[str, Any]:
        """The run's hyper-parameters; keys it predates take the value it was trained with (``hp_before``)."""
        return {**self.spec.hp_before, **self.meta["hparams"]}

    @property
    def latent_prior(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) of the training codes for decoders whose latents are not N(0, I) (the autoencoder)."""
        if "latent_mean" in self.meta and "latent_std" in self.meta:
            return list(self.meta["latent_mean"]), list(self.meta["latent_std"])
        return None

    def attribute_vectors(self, names: tuple[str, ...]) -> torch.Tensor:
        """len(names) x latent: the attribute vectors the run stored (training/vae_faces.py), in ``names``' order."""
        stored = self.meta.get("attribute_names") or []
        missing = [n for n in names if n not in stored]
        if missing or "attribute_vectors" not in self.meta:
            raise CheckpointError(f"{self.meta['model']} checkpoint without attribute vectors for "
                                  f"{', '.join(missing or names)}; train it again with this version")
        vectors = torch.tensor(self.meta["attribute_vectors"], dtype=torch.float32)
        return vectors[[stored.index(n) for n in names]]

    def build(self, role: str) -> torch.nn.Module:
        """The net playing ``role``, with its trained weights, in eval mode. Weights that do not fit the net
        (another size, a missing key) or that hold NaN or infinity (a run that diverged) are refused in one
        line: such a net exports and even passes parity, NaN against NaN, while serving black images."""
        net = self.spec.build(role, self.image_shape, self.hp)
        weights = {k: v.float() for k, v in self.state.get(role, {}).items()}
        broken = next((k for k, v in weights.items() if not torch.isfinite(v).all()), None)
        if broken is not None:
            raise CheckpointError(f"{self.meta['model']} checkpoint: {role} weight {broken} holds NaN or infinite "
                                  "values (did the run diverge?)")
        try:
            net.load_state_dict(weights)
        except RuntimeError as e:  # torch lists every mismatch on lines of their own: the first says what
            lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
            more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
            raise CheckpointError(f"{self.meta['model']} checkpoint does not fit its {role} net: "
                                  f"{lines[0][:300]}{more}") from None
        return net.eval()


@dataclass(frozen=True)
class Choice:
    """The checkpoint a command will use, and why (said on its first line, so nobody builds the wrong one)."""

    path: Path
    why: str


def newest_run(model: str, runs: Path = RUNS_DIR) -> Path | None:
    """The most recently written runs/<model>/*/checkpoint.safetensors, or None."""
    found = sorted(Path(runs).glob(f"{model}/*/checkpoint.safetensors"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def choose(model: str, given: str | Path | None = None, *, latest_run: bool = False, runs: Path = RUNS_DIR,
           weights: Path | None = None) -> Choice | None:
    """The checkpoint build, export, verify and eval take (their --help states the rule): the one
    ``given`` (a file or a run folder), else the released weights (``weights``, default
    ``released.weights_dir()``), else the newest run, with the newest run first when ``latest_run``;
    None when there is neither."""
    if given is not None:
        return Choice(resolve(given), "given with --checkpoint")
    weights = released.weights_dir() if weights is None else Path(weights)
    shipped, run = weights / f"{model}.safetensors", newest_run(model, runs)
    shipped = shipped if shipped.is_file() else None
    if latest_run and run:
        return Choice(run, "the newest run (--latest-run)")
    if shipped:
        why = f"the released weights, {released.where(weights)}"
        return Choice(shipped, why + (f"; --latest-run takes {shown(run.parent)} instead" if run else ""))
    if run:
        return Choice(run, f"the newest run; no released {model}.safetensors in {shown(weights)}")
    return None


def shown(path: str | Path) -> str:
    """``path`` as the user would type it: relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def save(path: str | Path, nets: dict[str, torch.nn.Module], meta: dict[str, Any],
         dtype: torch.dtype | None = None) -> Path:
    """Write nets + metadata atomically (temp file, then rename), so a kill never leaves half a file.

    ``dtype=torch.float16`` stores floating tensors in half precision (released weights).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for role, net in nets.items():
        for key, value in net.state_dict().items():
            value = value.detach().cpu()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            tensors[f"{role}.{key}"] = value.contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """Only the metadata (cheap: safetensors reads the header, not the weights)."""
    path = resolve(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without ganexport metadata; was it written by ganexport?")
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise CheckpointError(f"{path}: its ganexport metadata is damaged (not a JSON object naming its model)")
    return meta


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint (or a run directory holding checkpoint.safetensors)."""
    path = resolve(path)
    meta = read_meta(path)
    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt weights ({e})") from None
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        role, _, name = key.partition(".")
        state.setdefault(role, {})[name] = value
    return Checkpoint(meta, state)


def resolve(path: str | Path) -> Path:
    """The checkpoint file a user names: the file itself, or a run directory's checkpoint.safetensors."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.suffix in (".pt", ".pth", ".ckpt", ".pkl"):
        raise CheckpointError(f"{path}: pickled checkpoints are refused; ganexport loads safetensors only")
    return path


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Optimizer states, step and RNG for --resume (plain tensors and numbers only)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read what ``save_train_state`` wrote, refusing anything else in one line.

    ``weights_only=True`` is torch's restricted unpickler: it rebuilds tensors,
    numbers and containers and refuses every other global, so a planted
    train_state.pt cannot run code. Its refusal is a page of advice, hence
    the one-line CheckpointError.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError: all mean "not ours"
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please|\n|$)", str(e), re.S)
        why = found.group(1) if found else (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: refused: not a plain tensor/number training state, and ganexport "
                              f"never unpickles anything else ({why[:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: refused: holds a {type(state).__name__}, not a training state")
    return state
