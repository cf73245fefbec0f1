"""The nets of every family, each a factory ``f(image_shape, hp) -> nn.Module``.

The catalog names these factories by dotted path; they read only their
arguments (never global options), so a test can build a tiny net in the
catalog's shapes by passing a small ``width``. Images are NCHW floats in
[-1, 1]; generators end in tanh. ``image_shape`` is (H, W, C), as in the
catalog's signatures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """tanh output NCHW in [-1, 1] -> uint8 NHWC: the one rounding rule, shared by the exported
    graph (export/wrappers.py), sample grids and evaluation, so all three see the same pixels."""
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


# The ResNet generator downsamples twice by 2: its input sides must be multiples of 4.
TRANSLATE_MULTIPLE = 4


def translator_input(image: torch.Tensor, multiple: int = TRANSLATE_MULTIPLE) -> torch.Tensor:
    """uint8 NHWC image of any size -> float NCHW in [-1, 1], reflect-padded to multiples of ``multiple``.

    The exported graph (export/wrappers.py) and evaluation on whole photos
    share it, so a score on full photos is a score of what is served; crop the
    translator's output back with ``[:, :, :H, :W]``. Tensors only, so
    TorchScript can compile it inside the served wrapper.
    """
    h, w = image.shape[1], image.shape[2]
    x = image.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    return F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")


@torch.no_grad()
def translate_photo(net: nn.Module, image: np.ndarray) -> np.ndarray:
    """One uint8 HxWxC image of any size through a translator, as the served graph does: uint8 HxWxC back."""
    x = torch.from_numpy(np.array(image)).unsqueeze(0)  # a copy: cached photos are read-only
    x = x.to(next(net.parameters()).device)
    return to_uint8(net(translator_input(x))[:, :, :image.shape[0], :image.shape[1]]).cpu().numpy()[0]


def init_dcgan_weights(module: nn.Module) -> nn.Module:
    """N(0, 0.02) conv weights, N(1, 0.02) norm scales, as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def halvings(side: int) -> tuple[int, int]:
    """How many stride-2 steps take ``side`` down to a small base (4..7): (steps, base).

    28 -> (2, 7), 8 -> (1, 4), 64 -> (4, 4). The generator upsamples and the
    discriminator downsamples this many times, so any side of the form
    base * 2**k works.
    """
    steps = 0
    while side % 2 == 0 and side > 7 and side // 2 >= 4:
        side //= 2
        steps += 1
    if steps == 0:
        raise ValueError(f"image side {side} cannot be halved to a 4..7 base; use a side like 28, 32 or 64")
    return steps, side


# --------------------------------------------------------------------------- autoencoders


class MLPEncoder(nn.Module):
    """Flattened image -> latent vector (or (mu, logvar) for the VAE)."""

    def __init__(self, image_shape, hidden: int, latent_dim: int, variational: bool):
        super().__init__()
        h, w, c = image_shape
        self.variational = variational
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(h * w * c, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, latent_dim * (2 if variational else 1)),
        )

    def forward(self, x):
        out = self.body(x)
        return out.chunk(2, dim=1) if self.variational else out


class MLPDecoder(nn.Module):
    """Latent vector -> image in [-1, 1]; the part of an autoencoder that is served."""

    def __init__(self, image_shape, hidden: int, latent_dim: int):
        super().__init__()
        h, w, c = image_shape
        self.shape = (c, h, w)
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, hidden), nn.ReLU(),
            nn.Linear(hidden, h * w * c), nn.Tanh(),
        )

    def forward(self, z):
        return self.body(z).view(z.shape[0], *self.shape)


def mlp_encoder(image_shape, hp):
    return MLPEncoder(image_shape, hp["hidden"], hp["latent_dim"], variational=False)


def mlp_vae_encoder(image_shape, hp):
    return MLPEncoder(image_shape, hp["hidden"], hp["latent_dim"], variational=True)


def mlp_decoder(image_shape, hp):
    return MLPDecoder(image_shape, hp["hidden"], hp["latent_dim"])


# --------------------------------------------------------------------------- DCGAN-style G and D


class ConvGenerator(nn.Module):
    """z (+ optional label embedding) -> Linear -> base x base -> transposed convs -> tanh image."""

    def __init__(self, image_shape, latent_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        h, w, c = image_shape
        if h != w:
            raise ValueError(f"the DCGAN generator makes square images, got {h}x{w}")
        steps, base = halvings(h)
        chans = [width * 2 ** (steps - 1 - i) for i in range(steps)]  # e.g. [2w, w]
        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        in_dim = latent_dim * (2 if num_classes else 1)
        self.project = nn.Sequential(
            nn.Linear(in_dim, chans[0] * base * base, bias=False),
            nn.Unflatten(1, (chans[0], base, base)), nn.BatchNorm2d(chans[0]), nn.ReLU(True),
        )
        ups = []
        for cin, cout in zip(chans, chans[1:]):
            ups += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        ups += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]
        self.up = nn.Sequential(*ups)
        init_dcgan_weights(self)

    def forward(self, z, label=None):
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(label)], dim=1)
        return self.up(self.project(z))


class ConvDiscriminator(nn.Module):
    """Image (+ optional label) -> strided convs -> one logit (no sigmoid).

    ``norm`` is "batch" for the BCE GANs and "none" for the WGAN-GP critic,
    whose gradient penalty is per-sample and must not mix the batch.

    ``conditioning`` says how a label enters: "plane" adds a learned image
    plane per class as an extra input channel; "projection" (Miyato & Koyama,
    2018) adds the inner product of a learned class vector with the image
    features to the logit, so the label judges what the convs saw instead of
    being one more channel they may learn to ignore.
    """

    def __init__(self, image_shape, width: int, norm: str = "batch", num_classes: int = 0,
                 conditioning: str = "plane"):
        super().__init__()
        if conditioning not in ("plane", "projection"):
            raise ValueError(f"conditioning must be 'plane' or 'projection', got {conditioning!r}")
        h, w, c = image_shape
        steps, base = halvings(h)
        self.image_hw = (h, w)
        chans = [width * 2 ** i for i in range(steps)]
        features = chans[-1] * base * base
        plane = bool(num_classes) and conditioning == "plane"
        self.label_plane = nn.Embedding(num_classes, h * w) if plane else None
        self.label_projection = nn.Embedding(num_classes, features) if num_classes and not plane else None
        layers, cin = [], c + (1 if plane else 0)
        for i, cout in enumerate(chans):
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=(norm == "none" or i == 0)))
            if norm == "batch" and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(features, 1)
        init_dcgan_weights(self)
        if self.label_projection is not None:
            nn.init.normal_(self.label_projection.weight, 0.0, features ** -0.5)

    def forward(self, x, label=None):
        if self.label_plane is not None:
            x = torch.cat([x, self.label_plane(label).view(-1, 1, *self.image_hw)], dim=1)
        h = self.body(x)
        logit = self.head(h).squeeze(1)
        if self.label_projection is not None:
            logit = logit + (self.label_projection(label) * h).sum(1)
        return logit


def dcgan_generator(image_shape, hp):
    return ConvGenerator(image_shape, hp["latent_dim"], hp["width"])


def dcgan_discriminator(image_shape, hp):
    return ConvDiscriminator(image_shape, hp["width"], norm="batch")


def wgan_critic(image_shape, hp):
    return ConvDiscriminator(image_shape, hp["width"], norm="none")


def cgan_generator(image_shape, hp):
    return ConvGenerator(image_shape, hp["latent_dim"], hp["width"], num_classes=hp["num_classes"])


def cgan_discriminator(image_shape, hp):
    return ConvDiscriminator(image_shape, hp["width"], norm="batch", num_classes=hp["num_classes"],
                             conditioning=hp["d_conditioning"])


# --------------------------------------------------------------------------- CycleGAN


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch),
        )

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-w, d2w, d4w, n residual blocks, u2w, uw, c7s1-C, tanh.

    Two stride-2 downsamplings: H and W must be multiples of 4 (the export
    wrapper pads and crops so served images can be any size).
    ``upsample="transpose"`` is the paper's stride-2 transposed convolution;
    ``"resize"`` doubles the map by nearest neighbour and then convolves
    (Odena et al., "Deconvolution and checkerboard artifacts", 2016), which
    cannot print the checkerboard texture that greys a white page.
    """

    def __init__(self, channels: int, width: int, n_blocks: int, upsample: str = "transpose"):
        super().__init__()
        w = width
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(w * mult, w * mult * 2, 3, 2, 1), nn.InstanceNorm2d(w * mult * 2), nn.ReLU(True)]
        layers += [ResidualBlock(w * 4) for _ in range(n_blocks)]
        if upsample not in ("transpose", "resize"):
            raise ValueError(f"ResnetGenerator upsample must be 'transpose' or 'resize', got {upsample!r}")
        for mult in (4, 2):
            up = ([nn.ConvTranspose2d(w * mult, w * mult // 2, 3, 2, 1, output_padding=1)] if upsample == "transpose"
                  else [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w * mult, w * mult // 2, 3, 1, 1)])
            layers += [*up, nn.InstanceNorm2d(w * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, x):
        return self.body(x)


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN: a map of real/fake logits, one per overlapping patch.

    ``norm="instance"`` is the paper's. Instance norm removes each feature
    map's mean, so the discriminator barely sees a uniform shift in
    brightness: grey paper passes for white. ``norm="none"`` keeps absolute tone visible,
    which a target like a pencil sketch on white paper needs.
    """

    def __init__(self, channels: int, width: int, norm: str = "instance"):
        super().__init__()
        if norm not in ("instance", "none"):
            raise ValueError(f"PatchDiscriminator norm must be 'instance' or 'none', got {norm!r}")
        w = width
        normed = (lambda c: nn.InstanceNorm2d(c)) if norm == "instance" else (lambda c: nn.Identity())  # noqa: E731
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, w * 2, 4, 2, 1), normed(w * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w * 2, w * 4, 4, 1, 1), normed(w * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w * 4, 1, 4, 1, 1),
        )
        init_dcgan_weights(self)

    def forward(self, x):
        return self.body(x)


def resnet_generator(image_shape, hp):
    return ResnetGenerator(image_shape[2], hp["width"], hp["n_blocks"], hp["upsample"])


def patchgan_discriminator(image_shape, hp):
    return PatchDiscriminator(image_shape[2], hp["width"] * 2, hp["d_norm"])


# --------------------------------------------------------------------------- the judge


class Classifier(nn.Module):
    """A small CNN that judges generated images: class histograms now, FID features later.

    ``features`` is the penultimate layer (the embedding FID compares).
    """

    def __init__(self, image_shape, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        h, w, c = image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(True),
            nn.AdaptiveAvgPool2d(max(1, math.ceil(min(h, w) / 8))), nn.Flatten(),
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, c, h, w)).shape[1]
        self.embed = nn.Sequential(nn.Linear(n, feature_dim), nn.ReLU(True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        return self.embed(self.conv(x))

    def forward(self, x):
        return self.head(self.features(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
