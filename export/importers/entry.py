"""From a converted net to an entry of the models folder: checked through the serving wrapper, then written whole.

Every format's converter returns a ``Converted``; this module does the rest the same way for all of them:
it refuses a name that is taken, options of another format and a net whose output does not fit its kind,
runs the net once through the very wrapper the build exports (an odd-sized image for a translator), and
only then writes the weights (a ganexport checkpoint) and the import record into a staged folder that is
renamed into place. A refusal writes nothing.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ganexport import __version__, models_folder
from ganexport.export.importers import formats
from ganexport.export.importers.source import ImportRefused
from ganexport.repository import sha256

ROLE = "generator"  # the role of an imported net in its checkpoint and spec: what its one Triton model serves


@dataclass
class Converted:
    """What a format's converter read: the net with its weights loaded (eval mode), the factory ("module:function",
    called as ``factory(image_shape, hparams)``) that rebuilds it at build time, and what the catalog needs."""

    kind: str  # "translate", "sample" or "diffuse" (catalog.KINDS)
    factory: str
    hparams: dict[str, Any]  # a sampler's include latent_dim
    image_shape: tuple[int, int, int]  # a translator's sides are -1: any size
    net: nn.Module
    description: str
    conditional: bool = False  # takes a class label (a class-conditional diffusion UNet)
    source_sha256: str | None = None  # a source that is a folder: one digest of the files read (else the file's)


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (an option not given is None, a flag not given False)."""
    return {k: v for k, v in options.items() if v is not None and v is not False}


def _format(name: str, options: dict[str, Any]) -> formats.Format:
    fmt = formats.FORMATS.get(name)
    if fmt is None:
        raise ImportRefused(f"--format {name}: unknown; choose one of {', '.join(formats.FORMATS)}")
    foreign = [k for k in given_options(options) if k not in fmt.option_names]
    if foreign:
        flag = next(o.opts[0] for o in formats.options() if o.name == foreign[0])
        raise ImportRefused(f"{flag} is an option of --format {' / '.join(formats.owners(foreign[0]))}, "
                            f"not of {name}")
    return fmt


def convert(source: Path, fmt: str, options: dict[str, Any], log: Callable[[str], None] = print) -> Converted:
    """Run ``fmt``'s converter on ``source`` with its own options."""
    f = _format(fmt, options)
    module, function = f.converter.split(":")
    converter = getattr(importlib.import_module(module), function)
    return converter(Path(source), {k: options.get(k) for k in f.option_names}, log)


def record(name: str, fmt: str, converted: Converted, source: Path, options: dict[str, Any],
           description: str | None, command: str | None) -> dict[str, Any]:
    """The import record: what models_folder reads back as this model's ModelSpec."""
    return {
        "record_version": models_folder.RECORD_VERSION, "name": name, "format": fmt, "kind": converted.kind,
        "description": description or converted.description, "nets": {ROLE: converted.factory}, "role": ROLE,
        "hparams": converted.hparams, "image_shape": list(converted.image_shape), "conditional": converted.conditional,
        "options": given_options(options),
        "source": {"file": Path(source).name, "sha256": converted.source_sha256 or sha256(Path(source))},
        "command": command, "ganexport": __version__,
    }


def probe(spec, net: nn.Module, source: Path) -> None:
    """Run ``net`` once through the wrapper the build will export (build's tracing inputs: batch 2 and, for
    a translator, an odd 37x53 image; a diffusion model's denoiser on its own inputs) and check that its
    output fits the signature and is finite."""
    from ganexport.export import build, wrappers

    served = spec.signatures()[0]
    sig = wrappers.exported_signature(served)
    args = build.example_inputs(sig)
    what = "x".join(str(d) for d in args[0].shape)
    try:
        with torch.no_grad():
            wrapper = wrappers.wrap(net, served)
            out = wrapper(*args) if sig is not served else wrapper.float_forward(*args)
    except Exception as e:  # whatever the module raises: the user needs its first line
        raise ImportRefused(f"{source.name}: the net fails on a {sig.inputs[0].name} of shape {what}: "
                            f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
                            ) from None
    h, w, c = sig.outputs[0].shape
    if sig.kind == "translate":  # the input's own size
        h, w = args[0].shape[1:3]
    expected = [args[0].shape[0], c, h, w] if sig is served else list(args[0].shape)  # a denoiser's: NHWC like x
    if list(out.shape) != expected:
        raise ImportRefused(f"{source.name}: as a {sig.kind} model its net turns a {sig.inputs[0].name} of shape "
                            f"{what} into {list(out.shape)}, not {expected} (an NCHW image)")
    if not bool(torch.isfinite(out).all()):
        raise ImportRefused(f"{source.name}: the net's output on a {sig.inputs[0].name} of shape {what} is not finite")


def import_model(source: Path, name: str, fmt: str, options: dict[str, Any], *, description: str | None = None,
                 replace: bool = False, folder: Path | None = None, command: str | None = None,
                 log: Callable[[str], None] = print) -> Path:
    """Convert ``source`` and write it as the entry ``name`` of the models folder; returns the entry's folder.
    Raises ImportRefused (or models_folder.EntryError) in one line, having written nothing."""
    from ganexport.training import checkpoint

    source = Path(source)
    folder = models_folder.models_dir() if folder is None else Path(folder)
    models_folder.check_name(name, folder, replace=replace)
    converted = convert(source, fmt, options, log)
    rec = record(name, fmt, converted, source, options, description, command)
    spec = models_folder.spec_from_record(rec, folder / name)
    probe(spec, converted.net, source)
    meta = {"model": name, "image_shape": list(converted.image_shape), "hparams": converted.hparams,
            "command": command, "imported": {"format": fmt, "source": rec["source"]["file"],
                                             "sha256": rec["source"]["sha256"]}}
    staged = models_folder.staging_dir(folder)
    try:
        checkpoint.save(staged / models_folder.WEIGHTS_FILE, {ROLE: converted.net}, meta)
        models_folder.write_record(staged, rec)
        return models_folder.install(staged, name, folder, replace=replace)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
