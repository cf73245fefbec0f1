"""The spec says what a model is (kind, two_domains, conditional, class_judged); code asks it, not the family name."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from ganexport import catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("spec", catalog.MODELS.values(), ids=lambda s: s.name)
def test_every_published_signature_has_the_specs_kind(spec):
    """... and an autoencoder publishes its encoder (and, on attribute-labelled data, its edit model) beside."""
    assert spec.kind in catalog.KINDS
    kinds = [sig.kind for sig in spec.signatures()]
    assert set(kinds) - set(catalog.LATENT_KINDS) == {spec.kind}
    assert kinds.count("encode") == (spec.encoder is not None) and kinds.count("edit") == spec.edits


@pytest.mark.parametrize("spec", catalog.MODELS.values(), ids=lambda s: s.name)
def test_two_domain_models_have_a_generator_each_way_and_two_domain_data(spec):
    if spec.two_domains:
        assert {"g_ab", "g_ba"} <= set(spec.nets) and catalog.DATASETS[spec.dataset].paired
    else:
        assert not catalog.DATASETS[spec.dataset].paired


def test_the_catalog_says_what_each_model_is():
    kinds = {name: (s.kind, s.two_domains, s.conditional) for name, s in catalog.MODELS.items()}
    assert kinds == {"autoencoder": ("sample", False, False), "vae": ("sample", False, False),
                     "dcgan": ("sample", False, False), "wgan_gp": ("sample", False, False),
                     "cgan": ("sample", False, True), "cyclegan": ("translate", True, False),
                     "ddpm": ("diffuse", False, True), "vae_faces": ("sample", False, False)}


def test_only_diffusion_signatures_carry_a_denoiser():
    for spec in catalog.MODELS.values():
        for sig in spec.signatures():
            if spec.kind == "diffuse":
                den = sig.denoiser()
                assert den.outputs[0].shape == sig.input("noise").shape == sig.outputs[0].shape
                assert den.input("label").high == sig.diffusion["null_label"] == sig.input("label").high
                assert den.max_batch_size == 2 * sig.max_batch_size  # guidance doubles a batch
            else:
                assert sig.diffusion is None
                with pytest.raises(ValueError, match="no denoiser"):
                    sig.denoiser()


def test_who_samples_with_no_class():
    assert catalog.get("dcgan").samples_unconditionally and catalog.get("ddpm").samples_unconditionally
    assert not catalog.get("cgan").samples_unconditionally and not catalog.get("cyclegan").samples_unconditionally


def test_class_judged_means_a_sampler_on_labelled_data():
    assert catalog.get("dcgan").class_judged("fashion-mnist") and catalog.get("cgan").class_judged("digits")
    assert not catalog.get("dcgan").class_judged("folder")  # no labels
    assert not catalog.get("cyclegan").class_judged("photo2sketch")
    assert catalog.get("ddpm").class_judged("fashion-mnist")


def test_inconsistent_specs_are_refused():
    dcgan, cyclegan = catalog.get("dcgan"), catalog.get("cyclegan")
    with pytest.raises(ValueError, match="kind"):
        replace(dcgan, kind="sampler")
    with pytest.raises(ValueError, match="two_domains"):
        replace(dcgan, two_domains=True)
    with pytest.raises(ValueError, match="conditional"):
        replace(cyclegan, conditional=True)


def test_no_code_branches_on_a_family_name():
    """``family`` names the training script (training/<family>.py); what a model is, the spec says."""
    pattern = re.compile(r"family\s*(==|!=|\bin\b)")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for folder in ("ganexport", "training", "export", "serving", "demo", "benchmarks")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
