"""Any torch module: built by the user's factory, loaded with their weights, adapted to the serving conventions.

The module's conventions are options: what it does (``--kind``), its pixel ranges, the multiple a
translator's sides must be, a sampler's latent size and the shape each z takes. The adapters
(adapters.py) map them to the wrappers' [-1, 1] NCHW floats inside the graph. The factory is imported
by path whenever the model is built, so its package must be importable then (the import says so); the
weights are only ever read as tensors. The module is run once at import, in its own conventions, so a
``--kind`` its output contradicts is refused before anything is written.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ganexport.export.importers import source
from ganexport.export.importers.adapters import RANGES, SamplerAdapter, TranslatorAdapter
from ganexport.export.importers.entry import Converted
from ganexport.export.importers.source import ImportRefused

FACTORY = f"{__name__}:build"
DEFAULTS = {"kwargs": "{}", "input_range": "-1,1", "output_range": "-1,1", "channels": 3, "multiple": 4}
# The options that belong to one kind only: given for the other, they are a mistake worth saying.
KIND_OPTIONS = {"translate": ("input_range", "channels", "multiple"), "sample": ("latent", "sample_shape")}
PROBE_SIDE = 64  # a translator is tried on an image this size (rounded up to its multiple)
NOUNS = {"translate": "translator", "sample": "sampler"}


def _factory(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImportRefused(f"--module {spec}: give PKG.MOD:FACTORY, e.g. models:Generator")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or whatever the module's own code raises while importing
        raise ImportRefused(f"--module {spec}: {module_name} does not import ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); it must be "
                            f"importable (on PYTHONPATH) whenever the model is imported or built") from None
    if not hasattr(module, attribute):
        raise ImportRefused(f"--module {spec}: {module_name} has no {attribute}")
    return getattr(module, attribute)


def make(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """The user's module, built by its factory (ImportRefused in one line when it cannot be)."""
    factory = _factory(spec)
    try:
        made = factory(**kwargs)
    except Exception as e:
        raise ImportRefused(f"--module {spec}: the factory fails with --kwargs {json.dumps(kwargs)} "
                            f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})"
                            ) from None
    if not isinstance(made, nn.Module):
        raise ImportRefused(f"--module {spec}: the factory returns a {type(made).__name__}, not a torch module")
    return made


ADAPTERS: dict[str, Callable[[nn.Module, dict[str, Any]], nn.Module]] = {
    "translate": lambda inner, hp: TranslatorAdapter(inner, hp["multiple"], hp["input_range"], hp["output_range"]),
    "sample": lambda inner, hp: SamplerAdapter(inner, hp["sample_shape"], hp["output_range"]),
}


def build(image_shape, hp: dict[str, Any]) -> nn.Module:
    """The user's module inside its adapter (the catalog's factory signature)."""
    return ADAPTERS[hp["kind"]](make(hp["module"], hp["kwargs"]), hp)


# --------------------------------------------------------------------------- options


def _range(flag: str, value: str) -> str:
    value = value.replace(" ", "")
    if value not in RANGES:
        raise ImportRefused(f"{flag} {value}: choose one of {', '.join(RANGES)}")
    return value


def hparams(options: dict[str, Any]) -> dict[str, Any]:
    """The entry's hyper-parameters from the options, each checked (ImportRefused names the first wrong one)."""
    if not options.get("module"):
        raise ImportRefused("--format module needs --module PKG.MOD:FACTORY")
    kind = options.get("kind")
    if kind not in ADAPTERS:
        raise ImportRefused(f"--format module needs --kind {' or '.join(ADAPTERS)}" + (f", not {kind}" if kind else ""))
    other = next(k for k in ADAPTERS if k != kind)
    wrong = [k for k in KIND_OPTIONS[other] if options.get(k) is not None]
    if wrong:
        raise ImportRefused(f"--{wrong[0].replace('_', '-')} is for --kind {other}, not {kind}")
    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    try:
        kwargs = json.loads(opts["kwargs"])
    except json.JSONDecodeError as e:
        raise ImportRefused(f"--kwargs: not JSON ({e})") from None
    if not isinstance(kwargs, dict):
        raise ImportRefused(f"--kwargs: a JSON object of keyword arguments, not a {type(kwargs).__name__}")
    hp = {"module": opts["module"], "kwargs": kwargs, "kind": kind,
          "output_range": _range("--output-range", opts["output_range"])}
    if kind == "translate":
        return {**hp, "input_range": _range("--input-range", opts["input_range"]), "channels": int(opts["channels"]),
                "multiple": opts["multiple"]}
    if options.get("latent") is None:
        raise ImportRefused("--kind sample needs --latent (the size of z)")
    try:
        shape = [int(d) for d in str(opts.get("sample_shape") or opts["latent"]).split(",")]
    except ValueError:
        raise ImportRefused(f"--sample-shape {opts['sample_shape']}: give sizes like 100,1,1") from None
    if math.prod(shape) != opts["latent"] or min(shape) < 1:
        raise ImportRefused(f"--sample-shape {','.join(map(str, shape))} holds {math.prod(shape)} values, "
                            f"not --latent {opts['latent']}")
    return {**hp, "latent_dim": opts["latent"], "sample_shape": shape}


# --------------------------------------------------------------------------- the module's own output


# What else may be wrong when the module fails on its trial input, by --kind: the other kind, or the input.
OTHER_FIXES = {"translate": "--channels (its input's channels), --multiple", "sample": "--latent, --sample-shape"}


def _tried(module: nn.Module, x: torch.Tensor, kind: str, what: str) -> torch.Tensor:
    other = next(k for k in ADAPTERS if k != kind)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as e:
        raise ImportRefused(f"--kind {kind}: the module fails on {what} {list(x.shape)} ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}); check "
                            f"{OTHER_FIXES[kind]}, or is it a {NOUNS[other]} (--kind {other})?") from None
    if not isinstance(out, torch.Tensor):
        raise ImportRefused(f"--kind {kind}: the module returns a {type(out).__name__} for {what}, not one tensor")
    return out


def image_shape(inner: nn.Module, hp: dict[str, Any]) -> tuple[tuple[int, int, int], torch.Tensor]:
    """What the module makes, seen by running it once in its own conventions: (-1, -1, C) for a translator
    (ImportRefused unless it returns an image of its input's size and channels), (H, W, C) for a sampler;
    and that output."""
    kind = hp["kind"]
    if kind == "translate":
        side = -(-PROBE_SIDE // hp["multiple"]) * hp["multiple"]
        x = torch.rand(1, hp["channels"], side, side) * 2 - 1
        out = _tried(inner, x, kind, "an image")
        if list(out.shape) != list(x.shape):
            raise ImportRefused(f"--kind translate contradicts the module: it turns an image {list(x.shape)} into "
                                f"{list(out.shape)}, not an image of the same size and channels")
        return (-1, -1, hp["channels"]), out
    z = torch.randn(1, *hp["sample_shape"])
    out = _tried(inner, z, kind, "a z")
    if out.dim() != 4 or out.shape[0] != 1 or out.shape[1] not in (1, 3):
        raise ImportRefused(f"--kind sample contradicts the module: it turns a z {list(z.shape)} into "
                            f"{list(out.shape)}, not an image [1, 1 or 3 channels, H, W]")
    return (int(out.shape[2]), int(out.shape[3]), int(out.shape[1])), out


def range_doubt(out: torch.Tensor, output_range: str) -> str | None:
    """A sentence when the module's trial output does not look like ``output_range`` (a sigmoid's output read
    as -1..1 serves only the upper half of the levels; a tanh's read as 0..1 loses the lower half)."""
    low, high = float(out.min()), float(out.max())
    if output_range == "-1,1" and low >= 0 and high > 0:
        return (f"its output on a trial input stays within {low:.2f}..{high:.2f}, never below 0: if it ends in a "
                f"sigmoid, import with --output-range 0,1 (as -1,1 it serves only the brighter half of the levels)")
    if output_range == "0,1" and low < -0.05:
        return (f"its output on a trial input goes down to {low:.2f}: if it ends in a tanh, import with "
                f"--output-range -1,1 (as 0,1 everything below 0 is served black)")
    return None


def convert(path: Path, options: dict[str, Any], log: Callable[[str], None] = print) -> Converted:
    """The user's module with the weights in ``path`` (under ``--key``, or the one entry whose keys fit)."""
    path = Path(path)
    hp = hparams(options)
    inner = make(hp["module"], hp["kwargs"])
    keys = set(inner.state_dict())
    state = source.state_dict(path, source.load(path), options.get("key"), lambda s: set(s) == keys,
                              what=f"the weights of {hp['module']}")
    source.check_finite(path, state)
    source.load_into(inner, state, path)
    shape, out = image_shape(inner, hp)
    log(f"{path.name}: {hp['module']} loaded; it must be importable (on PYTHONPATH) whenever this model is built")
    doubt = range_doubt(out, hp["output_range"])
    if doubt:
        log(f"{path.name}: warning: {doubt}")
    what = "translator" if hp["kind"] == "translate" else f"sampler of {'x'.join(map(str, shape))} images"
    return Converted(kind=hp["kind"], factory=FACTORY, hparams=hp, image_shape=shape,
                     net=ADAPTERS[hp["kind"]](inner, hp), description=f"{hp['module']} {what}")
