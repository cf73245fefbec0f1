"""The convolutional VAE's nets (the study notes' ``vae_faces``): strided convs down to a latent and back.

An MLP (nets.MLPEncoder) is enough for 28x28 garments; a 64x64 colour face needs convolutions to keep
where things are (glasses on the eyes, a smile under the nose). As in the notes, each stride-2 conv halves
the side (64 -> 32 -> 16 -> 8 -> 4) with batch norm and leaky ReLU, a dense layer gives the mean and log
variance of the latent, and the decoder mirrors it with transposed convs and ends in tanh. Any side of the
form base * 2**k works (``nets.halvings``), so the same factories build 8x8 test nets.
"""

from __future__ import annotations

from torch import nn

from ganexport.training.nets import halvings, init_dcgan_weights


def _channels(side: int, width: int) -> tuple[int, int, list[int]]:
    steps, base = halvings(side)
    return steps, base, [width * 2 ** i for i in range(steps)]  # e.g. 64: [w, 2w, 4w, 8w]


class ConvEncoder(nn.Module):
    """Image NCHW in [-1, 1] -> (mu, logvar), each N x latent."""

    def __init__(self, image_shape, width: int, latent_dim: int):
        super().__init__()
        h, w, c = image_shape
        if h != w:
            raise ValueError(f"the convolutional encoder takes square images, got {h}x{w}")
        _, base, chans = _channels(h, width)
        layers, cin = [], c
        for i, cout in enumerate(chans):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(cout)] if i else []
            layers += [nn.LeakyReLU(0.2, True)]
            cin = cout
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(chans[-1] * base * base, 2 * latent_dim)
        init_dcgan_weights(self)

    def forward(self, x):
        return self.head(self.body(x)).chunk(2, dim=1)


class ConvDecoder(nn.Module):
    """Latent N x latent -> image NCHW in [-1, 1]: the part that samples (the served decoder)."""

    def __init__(self, image_shape, width: int, latent_dim: int):
        super().__init__()
        h, w, c = image_shape
        _, base, chans = _channels(h, width)
        chans = chans[::-1]  # e.g. [8w, 4w, 2w, w]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, chans[0] * base * base, bias=False),
            nn.Unflatten(1, (chans[0], base, base)), nn.BatchNorm2d(chans[0]), nn.LeakyReLU(0.2, True),
        )
        ups = []
        for cin, cout in zip(chans, chans[1:]):
            ups += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
        ups += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]
        self.up = nn.Sequential(*ups)
        init_dcgan_weights(self)

    def forward(self, z):
        return self.up(self.project(z))


def conv_vae_encoder(image_shape, hp):
    return ConvEncoder(image_shape, hp["width"], hp["latent_dim"])


def conv_decoder(image_shape, hp):
    return ConvDecoder(image_shape, hp["width"], hp["latent_dim"])
