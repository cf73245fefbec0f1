"""vae_faces: the convolutional VAE's nets, attribute vectors, and the served encoder and edit graphs.

The served graphs are checked against a second computation by hand (the nets called directly), and the
attribute vectors against a closed form; serving them through ONNX Runtime, TorchScript and Triton is in
test_serving_local.py / test_triton_clients.py (every published model) and below (the edit's meaning).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ganexport import catalog
from ganexport.export import wrappers
from ganexport.serving.backends import edit_strengths
from ganexport.serving.validation import InvalidInput, validate
from ganexport.training import conv_vae
from ganexport.training.nets import to_uint8
from ganexport.training.vae_faces import attribute_vectors

SPEC = catalog.get("vae_faces")
SMOKE = SPEC.hp("smoke")


@pytest.mark.parametrize("shape", [(64, 64, 3), (8, 8, 1), (28, 28, 1)])
def test_conv_vae_maps_images_to_mean_and_logvar_and_back(shape):
    torch.manual_seed(0)
    enc, dec = conv_vae.conv_vae_encoder(shape, SMOKE).eval(), conv_vae.conv_decoder(shape, SMOKE).eval()
    x = torch.rand(3, shape[2], shape[0], shape[1]) * 2 - 1
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (3, SMOKE["latent_dim"])
    out = dec(mu)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


def test_the_catalog_publishes_decoder_encoder_and_edit_with_the_attribute_names():
    sigs = {s.kind: s for s in SPEC.signatures()}
    names = catalog.DATASETS[SPEC.dataset].attribute_names
    assert set(sigs) == {"sample", "encode", "edit"}
    assert sigs["sample"].input("z").shape == sigs["encode"].outputs[0].shape == (SPEC.hp("full")["latent_dim"],)
    assert sigs["encode"].inputs[0].shape == sigs["edit"].inputs[0].shape == sigs["edit"].outputs[0].shape
    strength = sigs["edit"].inputs[1]
    assert sigs["edit"].attributes == names and strength.shape == (len(names),)
    assert strength.low == -strength.high and strength.high >= 1  # an edit of strength 1 is in range


def test_attribute_vectors_recover_each_attributes_direction_in_a_balanced_design():
    """Latents z = sum of W[a] over the attributes a face has: with every combination equally often, the mean
    with an attribute minus the mean without it is exactly W[a] (the others cancel)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5))
    labels = np.array(list(itertools.product([0, 1], repeat=3)) * 2, np.uint8)
    z = torch.from_numpy(labels @ w).float() + 0.5
    vectors, counts = attribute_vectors(z, labels)
    torch.testing.assert_close(vectors, torch.from_numpy(w).float(), atol=1e-5, rtol=1e-5)
    assert counts == [[8, 8]] * 3
    empty, counts = attribute_vectors(z[:1], labels[:1])  # one face: no group to compare with
    assert torch.equal(empty, torch.zeros(3, 5)) and counts[0] in ([0, 1], [1, 0])


def _nets(shape=(64, 64, 3), seed=1):
    torch.manual_seed(seed)
    enc, dec = conv_vae.conv_vae_encoder(shape, SMOKE), conv_vae.conv_decoder(shape, SMOKE)
    with torch.no_grad():  # some training so batch-norm statistics are not the defaults
        for _ in range(3):
            dec(enc(torch.rand(8, shape[2], shape[0], shape[1]) * 2 - 1)[0])
    return enc.eval(), dec.eval()


def test_the_edit_graph_is_decoder_of_mean_plus_weighted_vectors_and_zero_is_the_reconstruction():
    enc, dec = _nets()
    names = catalog.DATASETS["faces"].attribute_names
    vectors = torch.randn(len(names), SMOKE["latent_dim"])
    editor = wrappers.Editor(enc, dec, vectors).eval()
    encoder = wrappers.Encoder(enc).eval()
    decoder = wrappers.wrap(dec, SPEC.signatures(hp=SMOKE)[0])
    image = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    strength = torch.tensor([[1.0] + [0.0] * (len(names) - 1), [0.0, -2.0] + [0.5] * (len(names) - 2)])
    with torch.no_grad():
        x = image.permute(0, 3, 1, 2).float() / 255 * 2 - 1  # by hand: [0, 255] -> [-1, 1]
        mu = enc(x)[0]
        want = to_uint8(dec(mu + strength @ vectors))
        torch.testing.assert_close(editor(image, strength), want, atol=1, rtol=0)
        # strength 0 is what the served encoder then the served decoder give
        torch.testing.assert_close(editor(image, torch.zeros_like(strength)), decoder(encoder(image)), atol=1, rtol=0)
        torch.testing.assert_close(encoder(image), mu, atol=1e-5, rtol=1e-5)


def test_an_autoencoders_served_encoder_speaks_its_served_decoders_standard_units():
    """The autoencoder's decoder maps z to z * std + mean (its codes are not N(0, I)); its encoder must give
    (code - mean) / std, so decoder(encoder(x)) is the reconstruction."""
    spec = catalog.get("autoencoder")
    hp = spec.hp("smoke")
    torch.manual_seed(0)
    enc, dec = spec.build("encoder", (28, 28, 1), hp).eval(), spec.build("decoder", (28, 28, 1), hp).eval()
    prior = ([0.5, -2.0], [3.0, 0.25])
    encoder = wrappers.Encoder(enc, prior)
    decoder = wrappers.wrap(dec, spec.signatures((28, 28, 1), hp)[0], prior)
    image = torch.randint(0, 256, (3, 28, 28, 1), dtype=torch.uint8)
    with torch.no_grad():
        code = enc(image.permute(0, 3, 1, 2).float() / 127.5 - 1)
        torch.testing.assert_close(encoder(image), (code - torch.tensor(prior[0])) / torch.tensor(prior[1]))
        torch.testing.assert_close(decoder(encoder(image)), to_uint8(dec(code)), atol=1, rtol=0)


def test_strengths_by_name_vector_or_rows_and_their_validation():
    sig = next(s for s in SPEC.signatures() if s.kind == "edit")
    a = len(sig.attributes)
    by_name = edit_strengths(sig, {sig.attributes[1]: 1.0, sig.attributes[-1]: -0.5}, rows=2)
    want = np.zeros((2, a), np.float32)
    want[:, 1], want[:, -1] = 1.0, -0.5
    np.testing.assert_array_equal(by_name, want)
    np.testing.assert_array_equal(edit_strengths(sig, want[0], rows=2), want)
    with pytest.raises(InvalidInput, match="unknown attribute.*frown"):
        edit_strengths(sig, {"frown": 1.0}, rows=1)
    image = np.zeros((1, *sig.inputs[0].shape), np.uint8)
    validate(sig, {"image": image, "strength": np.full((1, a), sig.inputs[1].high, np.float32)})  # the edge is in
    for bad, words in ((np.nan, "finite"), (np.inf, "finite"), (sig.inputs[1].high + 0.5, "outside")):
        strength = np.zeros((1, a), np.float32)
        strength[0, 0] = bad
        with pytest.raises(InvalidInput, match=words):
            validate(sig, {"image": image, "strength": strength})


# --------------------------------------------------------------------------- metrics, card (a smoke run)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """vae_faces trained for the smoke profile's steps on a few drawn faces; the held-out split cut to 12 faces
    (a test never draws the 2000)."""
    from ganexport import faces
    from ganexport.training.loop import TrainConfig, train

    mp = pytest.MonkeyPatch()
    mp.setitem(faces.COUNTS, "test", 12)
    mp.setitem(faces.COUNTS, "train", 40)
    try:
        run = train(TrainConfig(model="vae_faces", profile="smoke", out=str(tmp_path_factory.mktemp("runs")),
                                limit=32, progress=False))
        yield run / "checkpoint.safetensors"
    finally:
        mp.undo()


@pytest.mark.slow
def test_metrics_cards_and_latent_size_table_of_a_run(smoke_run, tmp_path, monkeypatch):
    import json

    from ganexport import faces
    from ganexport.training import data, eval as ev, latent_sizes, release

    monkeypatch.setitem(faces.COUNTS, "test", 12)
    monkeypatch.setitem(faces.COUNTS, "train", 40)
    ckpt = checkpoint_of(smoke_run)
    names = catalog.DATASETS["faces"].attribute_names
    assert len(ckpt.attribute_vectors(names)) == len(names)  # stored by the run, in the catalog's order
    edit, recon = (r["results"] for r in ev.evaluate(smoke_run, ["attr_edit", "recon_faces2k"], log=lambda m: None))
    labels = data.load_images("faces", split="test").attributes
    for a, name in enumerate(names):
        r = edit["per_attribute"][name]
        assert (r["n_added"], r["n_removed"]) == (int((labels[:, a] == 0).sum()), int(labels[:, a].sum()))
        assert all(0 <= r[k] <= 1 for k in ("others_kept_added",) + (("added",) if r["n_added"] else ()))
    # reconstruction L1 by a second computation: the checkpoint's nets called directly
    images = data.load_images("faces", split="test").images
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        back = to_uint8(ckpt.build("decoder")(ckpt.build("encoder")(x)[0])).numpy()
    assert recon["l1"] == pytest.approx(np.abs(back.astype(float) - images).mean() / 255, abs=1e-6)
    assert recon["attribute_agreement"] == pytest.approx(np.mean(list(recon["per_attribute"].values())))

    line = latent_sizes.record(smoke_run)
    out = tmp_path / "vae_faces.latent_sizes.jsonl"
    out.write_text(json.dumps(line) + "\n")
    table = "\n".join(latent_sizes.table(out))
    assert f"| {SMOKE['latent_dim']} | {SMOKE['steps']} | {recon['l1']:.4f} |" in table

    weights = tmp_path / "weights"
    released = release.release(smoke_run, weights, log=lambda m: None)
    (weights / "vae_faces.latent_sizes.jsonl").write_text(out.read_text())
    picture = release.sample_picture(checkpoint_of(released))
    rows = 2 + len(names) + 2  # faces, reconstructions, one row per attribute, 16 random decodes
    assert picture.size[1] == rows * (64 + 2) + 2
    card = release.card("vae_faces", released, "vae_faces.png")
    assert "## Latent size" in card and "toggled at strength 1" in card


def checkpoint_of(path):
    from ganexport.training import checkpoint

    return checkpoint.load(path)
