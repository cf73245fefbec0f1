"""Serving wrappers: the pre- and post-processing baked into the exported graph.

Clients send and receive plain images: samplers take latents (and a label) and
return uint8 NHWC images; translators take uint8 NHWC images of any size from
``sig.min_image_side`` to ``sig.max_image_side``, reflect-pad them to a multiple
of 4 (the generator's two stride-2 steps need it) and crop the result back, so
the output has exactly the input's height and width.

Each wrapper also exposes ``float_forward``: the same computation stopped
before the uint8 rounding, which parity compares at atol 1e-4 (comparing
uint8 alone would hide errors under the rounding step). The exported file
keeps that float inside it under the name FLOAT_OUTPUT (``WithFloat``).

An autoencoder also publishes its encoder (``Encoder``: uint8 image -> latent, whose output is
already a float, so it is its own ``float_forward``) and, where its data set labels attributes, an
edit model (``Editor``: encoder, the weighted sum of attribute vectors, decoder, in one graph).

A "diffuse" model is the exception: its file holds one step of its sampler, the
denoiser (``training.unet.NHWCDenoiser``, NHWC float in and out, named by
``sig.denoiser()``), because the loop around it (ganexport.diffusion) runs in
numpy wherever the model is served. Its output is already the float that parity
compares, so it has no uint8 twin and no ``float_forward``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ganexport import catalog
from ganexport.training.nets import TRANSLATE_MULTIPLE as MULTIPLE
from ganexport.training.nets import to_uint8  # the graph's rounding rule (re-exported for the tests)
from ganexport.training.nets import translator_input
from ganexport.training.unet import NHWCDenoiser

FLOAT_OUTPUT = "float"  # inside every exported file whose output is uint8: the value before the rounding


def rounds_to_uint8(sig: catalog.Signature) -> bool:
    """Whether ``sig``'s output is a uint8 image rounded from a float (whose file then keeps FLOAT_OUTPUT inside);
    an encoder's latent and a denoiser's noise estimate are the float itself."""
    return sig.outputs[0].dtype == "UINT8"


class _WithPrior(nn.Module):
    """A net and the (mean, std) of its decoder's training codes as buffers; ``affine`` is False without them."""

    def __init__(self, net: nn.Module, prior: tuple[list[float], list[float]] | None = None):
        super().__init__()
        self.net = net.eval()
        self.affine = prior is not None
        mean, std = prior if prior is not None else ([0.0], [1.0])
        self.register_buffer("latent_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("latent_std", torch.tensor(std, dtype=torch.float32))


class Sampler(_WithPrior):
    """z [N, latent] -> image uint8 [N, H, W, C].

    Every served sampler takes standard-normal latents. A decoder whose codes
    sit elsewhere (the plain autoencoder's: no prior pulls them to N(0, I))
    carries ``prior`` = (mean, std) of its training codes, and the graph maps
    z to ``z * std + mean`` before decoding, so a client that draws
    N(0, I) gets the decodes the model card shows instead of off-data blurs.
    """

    def latent(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean if self.affine else z

    def float_forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.latent(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.float_forward(z))


class ConditionalSampler(Sampler):
    """z [N, latent], label int64 [N, 1] -> image uint8 [N, H, W, C]."""

    def float_forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.net(self.latent(z), label.reshape(-1))

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.float_forward(z, label))


class Translator(nn.Module):
    """image uint8 [N, H, W, C] -> translated uint8 [N, H, W, C], any H and W.

    The sides are reflect-padded to a multiple of the net's ``input_multiple`` (default 4, what ganexport's
    generators need); an imported net that needs more than a reflection can give pads itself and says 1.
    """

    __constants__ = ["multiple"]  # TorchScript reads module constants, not globals

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()
        self.multiple = int(getattr(net, "input_multiple", MULTIPLE))

    @torch.jit.export
    def float_forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(translator_input(image, self.multiple))[:, :, :image.shape[1], :image.shape[2]]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.float_forward(image))


class Encoder(_WithPrior):
    """image uint8 [N, H, W, C] -> latent float [N, D]: the encoder's code (a VAE's mean), in the space the served
    decoder draws z from. For a decoder that carries a ``prior`` (``Sampler``), that is (code - mean) / std, so the
    decoder model gives back the reconstruction of what this one encodes."""

    def code(self, image: torch.Tensor) -> torch.Tensor:
        """The encoder's own code of a uint8 image: a VAE's encoder gives (mean, log variance), the mean is kept."""
        out = self.net(image.permute(0, 3, 1, 2).float() / 127.5 - 1.0)
        return out[0] if isinstance(out, (tuple, list)) else out

    def float_forward(self, image: torch.Tensor) -> torch.Tensor:
        code = self.code(image)
        return (code - self.latent_mean) / self.latent_std if self.affine else code

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.float_forward(image)


class Editor(nn.Module):
    """image uint8 [N, H, W, C], strength float [N, A] -> edited uint8 [N, H, W, C]: the decoder of the image's
    code plus ``strength @ vectors`` (A x D, one attribute vector a row, in the order of the signature's
    ``attributes``). Strength 0 everywhere gives the plain reconstruction."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, vectors: torch.Tensor):
        super().__init__()
        self.encoder = Encoder(encoder)
        self.decoder = decoder.eval()
        self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))

    def float_forward(self, image: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.code(image) + strength @ self.vectors)

    def forward(self, image: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.float_forward(image, strength))


def for_checkpoint(ckpt, sig: catalog.Signature) -> nn.Module:
    """The serving wrapper of ``sig`` built from a ``training.checkpoint.Checkpoint``: its net, and for an edit
    model also the spec's encoder and the attribute vectors the checkpoint carries."""
    if sig.kind == "encode":
        return Encoder(ckpt.build(sig.net), ckpt.latent_prior)
    if sig.kind == "edit":
        return Editor(ckpt.build(ckpt.spec.encoder), ckpt.build(sig.net), ckpt.attribute_vectors(sig.attributes))
    return wrap(ckpt.build(sig.net), sig, ckpt.latent_prior)


def wrap(net: nn.Module, sig: catalog.Signature,
         prior: tuple[list[float], list[float]] | None = None) -> nn.Module:
    """The wrapper a signature calls for; ``prior`` (a sampler's latent mean and std) is baked in.
    A "diffuse" signature gets its denoiser, what its exported files compute (``exported_signature``)."""
    if sig.diffusion is not None:
        return NHWCDenoiser(net.eval()).eval()
    if sig.kind == "translate":
        return Translator(net)
    return (ConditionalSampler if len(sig.inputs) == 2 else Sampler)(net, prior)


def reference_sampler(wrapper: nn.Module):
    """The sampler of the project a diffusion model was imported from, where its net brings one (an imported
    diffusers pipeline's: ``sampler(sig, request) -> images``, with ``about`` saying what it runs); None for
    ganexport's own models, whose reference is the eager denoiser under ganexport's loop."""
    make = getattr(getattr(wrapper, "net", None), "reference_sampler", None)
    return make() if callable(make) else None


def exported_signature(sig: catalog.Signature) -> catalog.Signature:
    """The signature of the exported files themselves: a diffuse model's denoiser, else ``sig``.

    Export names ONNX tensors, dynamic axes and tracing inputs from this, so the denoiser's names and
    its doubled max batch (guidance) come from ``sig.denoiser()`` and are typed nowhere else.
    """
    return sig.denoiser() if sig.diffusion is not None else sig


class WithFloat(nn.Module):
    """A wrapper's served image and, as a second output, the float it rounds (``float_forward``), computed once.

    One export of this gives the published file (less its second output: onnx_export) with the float still
    inside it under the name FLOAT_OUTPUT, which parity gates; the uint8 gate checks the first output against
    the wrapper's own ``forward``. The forward takes the wrapper's argument names (z, label / image), so the
    same dynamic shapes apply, and this module holds the wrapper's own submodules, parameters and buffers
    rather than the wrapper, so the file names its weights as the wrapper's (``net.0.weight``).
    """

    def __init__(self, wrapper: nn.Module):
        super().__init__()
        self._modules.update(wrapper._modules)
        self._parameters.update(wrapper._parameters)
        self._buffers.update(wrapper._buffers)

        def forward(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value = wrapper.float_forward(*args)
            return to_uint8(value), value

        forward.__signature__ = inspect.signature(wrapper.float_forward)  # what torch.export binds inputs by
        self.forward = forward
