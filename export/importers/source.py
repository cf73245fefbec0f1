"""Reading a foreign weights file without running its code, and finding the state dict in it.

``.safetensors`` files are read by safetensors; anything else by ``torch.load(weights_only=True)``,
torch's restricted unpickler, which rebuilds tensors, numbers and containers and refuses every other
global. A file that needs code unpickled (a whole pickled module, an optimizer of a custom class) is
refused in one line naming the file: an imported checkpoint never runs anything.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ganexport.training.checkpoint import CheckpointError

State = dict[str, torch.Tensor]
SHOWN = 4  # keys listed in a message


class ImportRefused(CheckpointError):
    """A file, an option or a module that cannot be imported; the message is one line naming what is wrong."""


def some(keys, n: int = SHOWN) -> str:
    """'a, b, c, d and 5 more': a few keys for a one-line message."""
    keys = list(keys)
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load(path: Path) -> Any:
    """The file's contents, read without unpickling code (ImportRefused otherwise, saying which of: a folder,
    empty, truncated or not a weights file, a TorchScript archive, a pickle that names code)."""
    path = Path(path)
    if path.is_dir():
        raise ImportRefused(f"{path.name}: is a folder; give the weights file in it")
    if not path.is_file():
        raise ImportRefused(f"{path.name}: no such file")
    if path.stat().st_size == 0:
        raise ImportRefused(f"{path.name}: is empty")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ImportRefused(f"{path.name}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_data_only_globals()):
            warnings.simplefilter("ignore", UserWarning)  # torch's own advice (pickle protocol, jit.load) is not ours
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's restricted unpickler refused: the file names code
        if not _starts_like_a_pickle(path):  # random bytes, a JPEG renamed .pth: no pickle refused anything
            raise ImportRefused(f"{path.name}: not a torch weights file (neither a torch.save archive, a pickle "
                                "nor safetensors)") from None
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)|(Unsupported operand \d+)",
                          str(e))
        why = (f"it names {found.group(1)}" if found and found.group(1) else found.group(2) if found
               else "not plain weights")
        raise ImportRefused(f"{path.name}: refused: it needs code unpickled to load ({why}); ganexport reads "
                            f"weights only: save the state dict (torch.save(net.state_dict(), ...)) or "
                            f"safetensors") from None
    except Exception as e:  # RuntimeError (a broken zip, a TorchScript archive), EOFError, KeyError...
        text = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]
        text = f"{type(e).__name__}{': ' + text if text else ''}"
        if "TorchScript" in text:
            raise ImportRefused(f"{path.name}: is a TorchScript archive, not weights; save the state dict "
                                f"(torch.save(net.state_dict(), ...)) or safetensors") from None
        raise ImportRefused(f"{path.name}: not a torch weights file, or truncated ({text})") from None


def _data_only_globals() -> list:
    """What training scripts put beside the weights that only holds data: numpy scalars and arrays (a loss, a
    metric) and argparse's Namespace (the run's options). Each is rebuilt from data, never from code the file
    names; pickles of numpy 1 and 2 name numpy's core module differently, so both names are allowed."""
    import argparse

    import numpy as np

    core = np._core if hasattr(getattr(np, "_core", None), "multiarray") else np.core  # numpy 2, numpy 1
    allowed: list = [np.dtype, np.ndarray, argparse.Namespace]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(core.multiarray.scalar, f"{module}.scalar"),
                    (core.multiarray._reconstruct, f"{module}._reconstruct")]
    return allowed + [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "uint8", "bool")]


def _starts_like_a_pickle(path: Path) -> bool:
    """Whether the file holds a pickle torch's unpickler could have refused: torch.save's zip archive (PK), or its
    legacy format and any pickle of protocol 2 or later, which open with PROTO (0x80) and the protocol."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file whatever its name: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(10)
    return len(head) == 10 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < path.stat().st_size


def is_state(obj: Any) -> bool:
    """A flat mapping of names to tensors: what ``state_dict()`` returns."""
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def state_dict(path: Path, contents: Any, key: str | None, fits: Callable[[State], bool] | None = None,
               what: str = "a state dict") -> State:
    """The state dict in a file's ``contents``: under ``key`` (dots go deeper; a flat state dict's keys are
    prefixes), else the contents themselves if they fit, else the one entry of a checkpoint dict that ``fits``
    (DataParallel's ``module.`` prefix taken off first)."""
    name = Path(path).name
    if key is not None:
        found = _under(contents, key)
        if found is None:
            top = list(contents) if isinstance(contents, Mapping) else []
            raise ImportRefused(f"{name}: no entry --key {key!r} (it holds {some(top) or 'no entries'})")
        if not is_state(found):
            raise ImportRefused(f"{name}: --key {key!r} holds a {type(found).__name__}, not a state dict")
        return _plain(found)
    if is_state(contents):
        plain = _plain(contents)
        if fits is None or fits(plain):
            return plain
        prefixes = sorted({k.split(".", 1)[0] for k in plain if "." in k})
        under = [p for p in prefixes if fits(_plain(_under(plain, p)))] if len(prefixes) > 1 else []
        hint = f"; --key {under[0]} takes the keys under {under[0]}." if len(under) == 1 else ""
        raise ImportRefused(f"{name}: not {what} (its keys: {some(list(plain))}){hint}")
    if isinstance(contents, Mapping):
        states = {k: _plain(v) for k, v in contents.items() if is_state(v)}
        fitting = [k for k, v in states.items() if fits is None or fits(v)]
        if len(fitting) == 1:
            return states[fitting[0]]
        if len(fitting) > 1:
            raise ImportRefused(f"{name}: {len(fitting)} entries look like {what} ({some(fitting)}); "
                                f"name one with --key")
        raise ImportRefused(f"{name}: no entry looks like {what} (entries: {some(list(contents))}); name it with "
                            f"--key")
    raise ImportRefused(f"{name}: holds a {type(contents).__name__}, not {what}")


def _under(contents: Any, key: str) -> Any:
    if isinstance(contents, Mapping) and key in contents:
        return contents[key]
    node = contents
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            node = None
            break
        node = node[part]
    if node is not None:
        return node
    if is_state(contents):  # a flat safetensors file: the key is a prefix
        prefix = key + "."
        found = {k[len(prefix):]: v for k, v in contents.items() if k.startswith(prefix)}
        return found or None
    return None


def _plain(state: Mapping[str, torch.Tensor]) -> State:
    """A plain dict, without DataParallel's ``module.`` prefix when every key has it."""
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_finite(path: Path, state: State) -> None:
    """ImportRefused naming the first tensors holding NaN or infinity."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ImportRefused(f"{Path(path).name}: non-finite weights (NaN or infinity) in {some(bad)}")


def load_into(net: torch.nn.Module, state: State, path: Path) -> torch.nn.Module:
    """``net`` with ``state`` loaded strictly; missing or unexpected keys and wrong shapes in one line."""
    name = Path(path).name
    own = net.state_dict()
    # PyTorch before 0.4.1 saved BatchNorm without its batch counter, which eval mode never reads: torch's
    # own load_state_dict fills it in for such files, and so does this
    state = {**{k: v for k, v in own.items() if k.endswith(".num_batches_tracked") and k not in state}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = ([f"missing keys {some(missing)}"] if missing else []) + (
            [f"unexpected keys {some(unexpected)}"] if unexpected else [])
        raise ImportRefused(f"{name}: {'; '.join(parts)}")
    wrong = [f"{k} is {list(state[k].shape)}, expected {list(v.shape)}" for k, v in own.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ImportRefused(f"{name}: wrong shapes: {some(wrong, 2)}")
    net.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()})
    return net.eval()
