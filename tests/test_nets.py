"""Nets: each family's nets produce the shapes the catalog's signatures promise."""

from __future__ import annotations

import pytest
import torch

from ganexport import catalog
from ganexport.training import losses, nets


def tiny(spec):
    return spec.hp("smoke")


@pytest.mark.parametrize("spec", [s for s in catalog.MODELS.values() if s.kind == "sample"], ids=lambda s: s.name)
def test_samplers_make_the_catalog_output_shape(spec):
    shape = catalog.DATASETS[spec.dataset].image_shape
    for sig in (s for s in spec.signatures(shape, tiny(spec)) if s.kind == "sample"):
        net = spec.build(sig.net, shape, tiny(spec)).eval()
        z_spec = sig.input("z")
        args = [torch.randn(3, *z_spec.shape)]
        if spec.conditional:
            label = sig.input("label")
            args.append(torch.tensor([int(label.low), 4, int(label.high)]))
        out = net(*args)
        h, w, c = sig.outputs[0].shape
        assert out.shape == (3, c, h, w)
        assert out.min() >= -1 and out.max() <= 1  # tanh range: what the uint8 wrapper expects


@pytest.mark.parametrize("role", ["discriminator"])
@pytest.mark.parametrize("name", ["dcgan", "cgan"])
def test_discriminators_give_one_logit_per_image(name, role):
    spec = catalog.get(name)
    shape = catalog.DATASETS[spec.dataset].image_shape
    d = spec.build(role, shape, tiny(spec))
    x = torch.randn(5, shape[2], shape[0], shape[1])
    out = d(x, torch.arange(5)) if spec.conditional else d(x)
    assert out.shape == (5,)


@pytest.mark.parametrize("conditioning", ["plane", "projection"])
def test_conditional_discriminator_logit_depends_on_the_label(conditioning):
    spec = catalog.get("cgan")
    hp = {**tiny(spec), "d_conditioning": conditioning}
    d = spec.build("discriminator", (28, 28, 1), hp).eval()
    x = torch.randn(1, 1, 28, 28).repeat(10, 1, 1, 1)  # one image, every label
    with torch.no_grad():
        logits = d(x, torch.arange(10))
    assert logits.unique().numel() == 10


def test_projection_discriminator_adds_class_vector_dot_features():
    """Projection: D(x, y) - D(x, y') = (e_y - e_y') . phi(x), whatever the head learned."""
    spec = catalog.get("cgan")
    d = spec.build("discriminator", (28, 28, 1), {**tiny(spec), "d_conditioning": "projection"}).eval()
    assert d.label_plane is None
    with torch.no_grad():
        torch.nn.init.normal_(d.label_projection.weight)
        x = torch.randn(2, 1, 28, 28)
        phi = d.body(x)
        gap = d(x, torch.tensor([3, 3])) - d(x, torch.tensor([7, 7]))
        e = d.label_projection.weight
    torch.testing.assert_close(gap, (phi * (e[3] - e[7])).sum(1), rtol=1e-4, atol=1e-4)


def test_conditional_discriminator_refuses_unknown_conditioning():
    spec = catalog.get("cgan")
    with pytest.raises(ValueError, match="conditioning"):
        spec.build("discriminator", (28, 28, 1), {**tiny(spec), "d_conditioning": "concat"})


def test_wgan_critic_has_no_batch_norm_and_no_sigmoid():
    spec = catalog.get("wgan_gp")
    critic = spec.build("critic", (28, 28, 1), tiny(spec))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in critic.modules())


@pytest.mark.parametrize("hw", [(64, 64), (32, 48), (100, 76)])
def test_cyclegan_generator_keeps_multiple_of_4_sizes(hw):
    spec = catalog.get("cyclegan")
    for sig in spec.signatures():
        g = spec.build(sig.net, (64, 64, 3), tiny(spec)).eval()
        out = g(torch.randn(2, 3, *hw))
        assert out.shape == (2, 3, *hw)
    d = spec.build("d_a", (64, 64, 3), tiny(spec))
    assert d(torch.randn(2, 3, 64, 64)).shape[:2] == (2, 1)


def test_patchgan_without_instance_norm_sees_a_uniform_tint():
    """Grey paper must not pass for white: instance norm hides most of a uniform shift from the logits, no norm
    keeps it (a trained instance-norm D_b scored real sketches 0.700 and the same sketches on grey paper 0.708)."""
    torch.manual_seed(0)
    sketch = torch.where(torch.rand(4, 3, 32, 32) < 0.1, -0.5, 1.0)  # dark strokes on white
    tinted = sketch - 0.1
    gaps = {}
    for norm in ("instance", "none"):
        d = nets.PatchDiscriminator(3, 8, norm).eval()
        with torch.no_grad():
            gaps[norm] = float((d(sketch) - d(tinted)).abs().mean() / d(sketch).abs().mean())
    assert gaps["none"] > 2 * gaps["instance"], gaps
    with pytest.raises(ValueError, match="norm"):
        nets.PatchDiscriminator(3, 8, "batch")


@pytest.mark.parametrize("side,expected", [(28, (2, 7)), (8, (1, 4)), (64, (4, 4)), (32, (3, 4))])
def test_halvings(side, expected):
    assert nets.halvings(side) == expected


def test_halvings_rejects_odd_sides():
    with pytest.raises(ValueError):
        nets.halvings(27)


def test_bce_losses_match_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d_x, d_gz = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = (-torch.log(d_x)).mean() + (-torch.log(1 - d_gz)).mean()
    assert torch.allclose(losses.bce_discriminator(real, fake), expected_d)
    assert torch.allclose(losses.bce_generator_nonsaturating(fake), (-torch.log(d_gz)).mean())


def test_gradient_penalty_is_zero_for_a_unit_slope_critic_and_positive_otherwise():
    x_real, x_fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    w = torch.randn(1, 1, 8, 8)
    unit = lambda x: (x * (w / w.norm())).flatten(1).sum(1)  # noqa: E731
    steep = lambda x: 3 * unit(x)  # noqa: E731
    assert losses.gradient_penalty(unit, x_real, x_fake).item() == pytest.approx(0.0, abs=1e-10)
    assert losses.gradient_penalty(steep, x_real, x_fake).item() == pytest.approx(4.0, rel=1e-5)


def test_kl_is_zero_at_the_prior():
    mu, logvar = torch.zeros(3, 2), torch.zeros(3, 2)
    assert losses.kl_standard_normal(mu, logvar).item() == 0.0
    assert losses.kl_standard_normal(mu + 1, logvar).item() == pytest.approx(1.0)
