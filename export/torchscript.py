"""TorchScript export of the same serving wrappers, saved and reloaded before it is trusted.

Samplers are traced (no shape-dependent control flow); translators are
scripted, because their pad-to-a-multiple-of-4 depends on the input size and
a trace would freeze the pad amounts of the example image. Both keep the
wrapper's ``float_forward`` as a second method, which parity compares. A
diffusion model's denoiser (signature kind "denoise") is traced with its
forward alone: its output is already the float parity compares.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ganexport import catalog
from ganexport.export.wrappers import Translator


def export_torchscript(wrapper: nn.Module, sig: catalog.Signature, example: tuple[torch.Tensor, ...],
                       path: Path) -> torch.jit.ScriptModule:
    """Write ``path`` and return the module loaded back from it."""
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript is deprecated in torch 2.13 but still works
        if isinstance(wrapper, Translator):
            scripted = torch.jit.script(wrapper.eval())
        else:
            methods = {"forward": example}
            if sig.kind != "denoise":
                methods["float_forward"] = example
            scripted = torch.jit.trace_module(wrapper.eval(), methods)
        torch.jit.save(scripted, str(path))
        return load(path)


def load(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()
