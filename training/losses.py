"""The losses of the seed material, one small function each.

Discriminators return logits; the sigmoid lives inside the BCE, which is the
numerically stable way to write -log D(x) - log(1 - D(G(z))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganexport.sketch import LUMA


def bce_discriminator(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), averaged over the batch."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def bce_generator_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): strong gradients while D still rejects the fakes (the saturating
    log(1 - D(G(z))) vanishes exactly then, the failure the seed material describes)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def wasserstein_critic(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic widens the gap between real and fake scores: E[C(G(z))] - E[C(x)]."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """(||grad C(x_hat)||_2 - 1)^2 at random points between real and fake images (``alpha``: each row's
    mix, N x 1 x 1 x 1, uniform in [0, 1); drawn here when not given).

    This is the soft 1-Lipschitz constraint of WGAN-GP, used instead of weight
    clipping.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def lsgan(pred: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (CycleGAN): (D(x) - 1)^2 for real, D(x)^2 for fake."""
    return F.mse_loss(pred, torch.ones_like(pred) if target_is_real else torch.zeros_like(pred))


def tone_matching(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance between the grey levels of two equal-sized batches.

    Sorting both batches' pixels pairs each quantile of the fakes with the same
    quantile of the reals, so the mean absolute difference of the sorted values
    is the distance between the two intensity histograms. It needs no pairing
    of images, so it fits unpaired training: it asks the fakes to use the
    domain's tones (white paper, dark strokes) without saying where.
    """
    return (fake.mean(1).flatten().sort().values - real.mean(1).flatten().sort().values).abs().mean()


def structure_l1(x_hat: torch.Tensor, x: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """L1 between the fine luminance detail of two NCHW batches in [-1, 1]: each image's luma minus its
    local mean over a (2 * radius + 1) box.

    This is what a pencil sketch can carry of a photo: edges and texture, not
    colour and not the tone of flat areas. A cycle scored on it asks
    G_ba(G_ab(photo)) to bring back the photo's structure without paying G_ab
    to hide colours or flat tones in tints of its page.
    """
    luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)

    def detail(t):
        y = (t * luma).sum(1, keepdim=True)
        return y - F.avg_pool2d(y, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

    return F.l1_loss(detail(x_hat), detail(x))


def reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per image, averaged over the batch (a Gaussian likelihood)."""
    return ((x_hat - x) ** 2).flatten(1).sum(1).mean()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)), summed over latent dims, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
