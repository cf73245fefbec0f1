"""Evaluation, release and gallery: metric maths on known inputs, the registry on tiny checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from ganexport import catalog
from ganexport.cli import cli
from ganexport.released import weights_dir
from ganexport.training import checkpoint, eval as ev, release


# --------------------------------------------------------------------------- the measures


def test_frechet_distance_of_two_gaussians_is_the_squared_mean_shift():
    """Same covariance, means 3 apart on each of 4 axes: FID = 4 * 9 (closed form), up to sampling noise."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 4))
    b = rng.standard_normal((20000, 4)) + 3.0
    assert ev.frechet_distance(a, b) == pytest.approx(36.0, rel=0.03)
    assert ev.frechet_distance(a, rng.standard_normal((20000, 4))) < 0.05


def test_frechet_distance_sees_a_narrower_distribution():
    """Mode collapse in feature space: same mean, variance / 4 -> FID = 4 * (1 + 1/4 - 2 * 1/2) = 1."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((20000, 4)), rng.standard_normal((20000, 4)) * 0.5
    assert ev.frechet_distance(a, b) == pytest.approx(1.0, rel=0.05)


def test_blurring_lowers_laplacian_variance():
    rng = np.random.default_rng(2)
    sharp = (rng.random((8, 28, 28, 1)) > 0.5).astype(np.uint8) * 255
    blurred = np.stack([np.asarray(Image.fromarray(im[..., 0]).filter(ImageFilter.GaussianBlur(1.5)))[..., None]
                        for im in sharp])
    assert ev.laplacian_variance(blurred) < 0.2 * ev.laplacian_variance(sharp)
    assert ev.laplacian_variance(np.full((2, 8, 8, 3), 77, np.uint8)) == 0.0


def test_mean_l1_is_on_a_zero_to_one_scale():
    black, white = np.zeros((2, 4, 4, 3), np.uint8), np.full((2, 4, 4, 3), 255, np.uint8)
    assert ev.mean_l1(black, white) == 1.0
    assert ev.mean_l1(white, white) == 0.0


# --------------------------------------------------------------------------- the registry on tiny checkpoints


def _copy(tiny_checkpoints, model, tmp_path):
    dst = tmp_path / model / "checkpoint.safetensors"
    dst.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoints[model], dst)
    return dst


def test_each_model_gets_the_metrics_its_protocol_fits():
    """What a checkpoint's metadata (its model and the data it trained on) makes applicable."""
    fits = {m: ev.applicable({"model": m, "dataset": d})
            for m, d in (("dcgan", "digits"), ("cgan", "digits"), ("cyclegan", "photo2sketch"))}
    # nets trained on digits: the Fashion-MNIST FID does not apply to them
    assert fits["dcgan"] == ["class_coverage", "class_variety", "sharpness"]
    assert fits["cgan"] == ["cgan_acc", "class_variety", "sharpness"]
    assert fits["cyclegan"] == ["sketch_l1", "sketch_f1_512", "photo_l1_512", "cycle_l1"]
    on_fashion = ("autoencoder", "vae", "dcgan", "wgan_gp", "cgan")
    assert all("fid_fmnist10k" in ev.applicable({"model": m, "dataset": "fashion-mnist"}) for m in on_fashion)
    assert "fid_fmnist10k" not in ev.applicable({"model": "vae_faces", "dataset": "faces"})


def test_evaluate_appends_json_lines_beside_the_checkpoint(tiny_checkpoints, tmp_path):
    ckpt = _copy(tiny_checkpoints, "cgan", tmp_path)
    first = ev.evaluate(ckpt, n=50, log=lambda m: None)
    ev.evaluate(ckpt, ["cgan_acc"], n=50, seed=1, log=lambda m: None)
    lines = [json.loads(x) for x in (ckpt.parent / "eval.jsonl").read_text().splitlines()]
    assert [r["metric"] for r in lines] == ["cgan_acc", "class_variety", "sharpness", "cgan_acc"]
    acc = first[0]["results"]
    assert len(acc["per_class"]) == 10 and acc["n"] == 50
    # balanced labels: the overall accuracy is the mean of the per-class ones
    assert acc["accuracy"] == pytest.approx(np.mean(list(acc["per_class"].values())))
    assert ev.latest(ckpt)["cgan_acc"]["seed"] == 1
    assert all(ev.headline(r) for r in first)


def test_cgan_acc_of_a_generator_that_ignores_the_label_is_a_tenth(tiny_checkpoints, tmp_path):
    """The label's part of the generator's input projection zeroed: what it draws no longer depends on the class
    asked for, so with balanced labels the judge agrees with the asked class 1/10 of the time (in expectation;
    2000 samples put 0.1 within +-0.02 at two standard deviations)."""
    import torch

    ckpt = _copy(tiny_checkpoints, "cgan", tmp_path)
    loaded = checkpoint.load(ckpt)
    nets = {role: loaded.build(role) for role in loaded.state}
    with torch.no_grad():  # the first latent_dim inputs of the projection are z; the rest, the label embedding
        nets["generator"].project[0].weight[:, loaded.hp["latent_dim"]:] = 0
    checkpoint.save(ckpt, nets, loaded.meta)
    (record,) = ev.evaluate(ckpt, ["cgan_acc"], n=2000, log=lambda m: None)
    assert record["results"]["accuracy"] == pytest.approx(0.1, abs=0.03)


def test_class_coverage_of_a_decoder_that_draws_one_image_is_one_class(tiny_checkpoints, tmp_path):
    """Every weight of the decoder zeroed (biases kept): each latent decodes to the same image, so the 1000
    samples fall into one class: present 1, share 1, and a KL from uniform of log(10) (closed form)."""
    import torch

    ckpt = _copy(tiny_checkpoints, "vae", tmp_path)
    loaded = checkpoint.load(ckpt)
    nets = {role: loaded.build(role) for role in loaded.state}
    with torch.no_grad():
        for name, param in nets["decoder"].named_parameters():
            if name.endswith("weight"):
                param.zero_()
    checkpoint.save(ckpt, nets, loaded.meta)
    (record,) = ev.evaluate(ckpt, ["class_coverage"], log=lambda m: None)
    r = record["results"]
    assert r["classes_present"] == 1 and max(r["histogram"]) == 1000 == sum(r["histogram"])
    assert r["largest_class_share"] == 1.0 and r["kl_from_uniform"] == pytest.approx(np.log(10))


def test_within_class_l1_on_known_images():
    import torch

    black, white, grey = torch.zeros(4, 4), torch.ones(4, 4), torch.full((4, 4), 0.25)
    images = torch.stack([black, white, grey, grey, grey])
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 0: |0 - 1| = 1; class 1: identical, 0; class 2: alone, skipped
    assert ev.within_class_l1(images, labels, 3) == pytest.approx(0.5)
    assert np.isnan(ev.within_class_l1(images[:1], labels[:1], 3))


def test_class_variety_sees_a_cgan_that_ignores_z(tiny_checkpoints, tmp_path):
    """The fault the old cgan release had: every sample of a class the same garment. Ratio 0 when z is cut."""
    import torch

    ckpt = _copy(tiny_checkpoints, "cgan", tmp_path)
    (record,) = ev.evaluate(ckpt, ["class_variety"], log=lambda m: None)
    assert record["results"]["ratio_to_real"] > 0 and record["results"]["grouped_by"] == "asked class"
    loaded = checkpoint.load(ckpt)
    nets = {role: loaded.build(role) for role in loaded.state}
    with torch.no_grad():  # the first latent_dim inputs of the projection are z; the rest, the label embedding
        nets["generator"].project[0].weight[:, :loaded.hp["latent_dim"]] = 0
    checkpoint.save(ckpt, nets, loaded.meta)
    (record,) = ev.evaluate(ckpt, ["class_variety"], log=lambda m: None)
    assert record["results"]["ratio_to_real"] == 0.0 and record["results"]["real"] > 0


def test_sketch_l1_reports_the_trivial_baselines(tiny_checkpoints, tmp_path):
    from ganexport.training import data

    (record,) = ev.evaluate(_copy(tiny_checkpoints, "cyclegan", tmp_path), ["sketch_l1"], log=lambda m: None)
    side = checkpoint.read_meta(tiny_checkpoints["cyclegan"])["image_shape"][0]  # crops at the size it trained on
    truth = data.load_domains("photo2sketch", split="test", image_size=side).b.astype(np.float64)
    r = record["results"]
    assert r["baselines"]["blank_page"] == pytest.approx(np.abs(255 - truth).mean() / 255)
    assert r["ratio_to_best_baseline"] == pytest.approx(r["l1"] / min(r["baselines"].values()))
    # the paired-ceiling script (training/sketch_bound.py) scores a generator as this metric does: the same crops
    # and scale. It runs batches of another size, whose kernels may round differently and move a few values by
    # one level; one level on one of the ~5.5M values moves the mean by 7e-10, another protocol by about 1e-2.
    from ganexport.training import sketch_bound

    pair = data.load_domains("photo2sketch", split="test", image_size=side)
    net = checkpoint.load(tiny_checkpoints["cyclegan"]).build("g_ab")
    assert sketch_bound.held_out_l1(net, pair.a, pair.b) == pytest.approx(r["l1"], abs=1e-5)


@pytest.mark.slow  # trains the paired bound for real steps
def test_sketch_bound_trains_the_catalog_generator_on_pairs_and_records_its_scores(tmp_path):
    from ganexport.training import sketch_bound

    out = tmp_path / "bound.jsonl"
    result = CliRunner().invoke(sketch_bound.main, ["--profile", "smoke", "--steps", "2", "--every", "1",
                                                    "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["ratio_to_blank_page"] > 0 and r["sketch_l1"] > 0 for r in records)
    assert "g_ab of cyclegan/smoke (width 4, 1 blocks)" in result.output


def test_whole_photo_protocol_scores_the_filter_perfect_and_a_blank_page_zero():
    from ganexport.sketch import pencil_sketch
    from ganexport.training import photos

    rng = np.random.default_rng(0)
    shots = [rng.integers(0, 256, (40 + 8 * i, 52, 3), dtype=np.uint8) for i in range(3)]
    held_out = [(f"p{i}", shot, pencil_sketch(shot)) for i, shot in enumerate(shots)]
    exact = ev.score_sketches(pencil_sketch, held_out)
    blank = ev.score_sketches(lambda p: np.full_like(p, 255), held_out)
    assert exact["f1"] == 1.0 and exact["l1"] == 0.0 and exact["l1_ratio"] == 0.0
    assert blank["f1"] == 0.0 and blank["l1_ratio"] == pytest.approx(1.0) and blank["stroke_share"] == 0.0
    assert len(exact["per_photo_f1"]) == 3 and photos.LONG_SIDE == 512


def test_whole_photo_protocol_on_a_case_worked_by_hand():
    """A 10x10 page with a true stroke down column 3; drawn: column 4 (a pixel off: right within the 1-pixel
    tolerance) and column 8 (wrong). Precision 10/20, recall 10/10, F1 2 * 0.5 * 1 / 1.5 = 2/3; L1: 30 of 100
    pixels wrong by the full range = 0.3, a blank page 0.1, so 3x a blank page's; 20 of 100 pixels drawn."""
    truth, drawn = np.full((10, 10, 3), 255, np.uint8), np.full((10, 10, 3), 255, np.uint8)
    truth[:, 3] = 0
    drawn[:, 4] = drawn[:, 8] = 0
    r = ev.score_sketches(lambda photo: drawn, [("page", np.zeros_like(truth), truth)])
    assert (r["precision"], r["recall"]) == (0.5, 1.0) and r["f1"] == pytest.approx(2 / 3)
    assert r["l1"] == pytest.approx(0.3) and r["l1_ratio"] == pytest.approx(3.0) and r["stroke_share"] == 0.2


@pytest.mark.slow  # translates every held-out photo whole at 512 px
def test_sketch_f1_512_translates_whole_held_out_photos(tiny_checkpoints, tmp_path):
    from ganexport.training import photos

    if not photos.available("test")[0]:
        pytest.skip("no held-out photo installed")
    ckpt = _copy(tiny_checkpoints, "cyclegan", tmp_path)
    f1, back = ev.evaluate(ckpt, ["sketch_f1_512", "photo_l1_512"], log=lambda m: None)
    r = f1["results"]
    assert r["n_photos"] == len(photos.available("test")[0]) and r["photos"][0] == photos.available("test")[0][0].name
    assert r["baselines"]["blank_page"]["f1"] == 0.0 and r["baselines"]["blank_page"]["l1_ratio"] == pytest.approx(1)
    assert 0 <= r["f1"] <= 1 and r["l1_ratio"] > 0 and 0.02 < r["filter_stroke_share"] < 0.4
    assert r["baselines"]["sobel_edges"]["f1"] > 0.3  # edges line up with the filter's strokes on real photos
    assert back["results"]["l1"] > 0 and back["results"]["baselines"]["sketch_itself"] > 0
    # the paired-ceiling script scores whole photos as this metric does (a few values one level apart at most,
    # from kernels that round differently at another batch: a stroke pixel more or less moves F1 by about 1e-5)
    from ganexport.training import sketch_bound

    net = checkpoint.load(ckpt).build("g_ab").eval()
    assert sketch_bound.held_out_photos_score(net)["f1"] == pytest.approx(r["f1"], abs=1e-3)


def test_unknown_or_unfit_metrics_are_refused(tiny_checkpoints, tmp_path):
    ckpt = _copy(tiny_checkpoints, "dcgan", tmp_path)
    with pytest.raises(ValueError, match="unknown metric"):
        ev.evaluate(ckpt, ["inception_score"])
    with pytest.raises(ValueError, match="does not apply|do\\(es\\) not apply"):
        ev.evaluate(ckpt, ["sketch_l1"])
    assert not (ckpt.parent / "eval.jsonl").exists()


def test_eval_cli_prints_and_records(tiny_checkpoints, tmp_path):
    ckpt = _copy(tiny_checkpoints, "autoencoder", tmp_path)
    res = CliRunner().invoke(cli, ["eval", "-m", "autoencoder", "--checkpoint", str(ckpt), "--metrics", "sharpness",
                                   "--n", "20"])
    assert res.exit_code == 0, res.output
    assert "sharpness:" in res.output and (ckpt.parent / "eval.jsonl").is_file()
    bad = CliRunner().invoke(cli, ["eval", "-m", "autoencoder", "--checkpoint", str(ckpt), "--metrics", "nope"])
    assert bad.exit_code == 2 and "unknown metric" in bad.output


# --------------------------------------------------------------------------- release and gallery


def test_release_writes_fp16_and_drops_stale_metrics(tiny_checkpoints, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "dcgan.eval.jsonl").write_text('{"metric": "sharpness"}\n')
    out = release.release(tiny_checkpoints["dcgan"], weights, log=lambda m: None)
    ckpt = checkpoint.load(out)
    assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float16"
               for state in ckpt.state.values() for v in state.values())
    assert ckpt.meta["model"] == "dcgan" and ckpt.meta["hardware"]
    assert not (weights / "dcgan.eval.jsonl").exists()


def test_release_refuses_weights_over_the_size_limit(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(release, "MAX_RELEASE_BYTES", 2**20 // 100)  # 0.01 MiB, below the tiny net's size
    with pytest.raises(ValueError, match=r"^cyclegan: 0\.0[2-9] MiB in fp16, over the 0\.01 MiB limit for released"):
        release.release(tiny_checkpoints["cyclegan"], tmp_path, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_a_replaced_release_keeps_its_figures_and_the_card_shows_both(tiny_checkpoints, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    first = release.release(tiny_checkpoints["cgan"], weights, log=lambda m: None)
    (old,) = ev.evaluate(first, ["cgan_acc"], n=20, seed=3, log=lambda m: None)
    release.release(tiny_checkpoints["cgan"], weights, log=lambda m: None)  # the "new" weights
    (new,) = ev.evaluate(first, ["cgan_acc"], n=20, seed=4, log=lambda m: None)
    (entry,) = release.history(first)
    assert entry["metrics"]["cgan_acc"]["results"] == old["results"]
    assert entry["step"] == checkpoint.read_meta(tiny_checkpoints["cgan"])["step"]
    card = release.card("cgan", first, "cgan.png")
    section = card.split("## Earlier releases", 1)[1]
    this_row, replaced_row = [line for line in section.splitlines() if line.startswith("| **this one**")
                              or line.startswith("| replaced")]
    assert ev.headline(new) in this_row and ev.headline(old) in replaced_row


def test_gallery_writes_cards_pictures_and_one_page_section(tiny_checkpoints, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "docs" / "models.md"  # the default page: docs/models.md beside weights/
    readme.write_text("# demo\n\nintro\n")
    for m in ("cgan", "cyclegan"):
        release.release(tiny_checkpoints[m], weights, log=lambda m: None)
    ev.evaluate(weights / "cgan.safetensors", ["cgan_acc"], n=20, log=lambda m: None)
    for i in range(2):  # by default, then named; regenerating replaces the section instead of adding another
        release.gallery(weights, readme if i else None, log=lambda m: None)
    text = readme.read_text()
    assert text.count(release.GALLERY_START) == 1 and text.startswith("# demo\n\nintro")
    assert "![cgan](weights/cgan.png)" in text and "[cyclegan](weights/cyclegan.md)" in text
    acc = ev.latest(weights / "cgan.safetensors")["cgan_acc"]["results"]["accuracy"]
    assert f"{acc:.3f}" in text
    card = (weights / "cgan.md").read_text()
    command = checkpoint.read_meta(weights / "cgan.safetensors")["command"]
    assert "cgan_acc" in card and release.display_command(command) in card
    with Image.open(weights / "cgan.png") as im:
        # digits are 8x8; one row per class of 8 samples, zoomed for viewing
        assert im.size[0] > 8 * 8 and im.size[1] > 10 * 8
    with Image.open(weights / "cyclegan.png") as im:  # photo | sketch | filter | back, per held-out photo
        assert im.mode == "RGB" and im.size[0] == 4 * 320 + 5 * 4 and im.size[1] >= 320
    with Image.open(weights / "cyclegan_b2a.png") as im:  # sketch | G_B->A(sketch) | photo
        assert im.size[0] == 3 * 320 + 4 * 4
    assert "cyclegan_b2a.png" in (weights / "cyclegan.md").read_text()


# --------------------------------------------------------------------------- what ships


@pytest.mark.parametrize("model", list(catalog.MODELS))
def test_released_weights_are_small_fp16_carded_and_serve_the_catalog_signatures(model):
    path = weights_dir() / f"{model}.safetensors"
    assert path.is_file(), f"no released weights for {model}"
    assert path.stat().st_size < release.MAX_RELEASE_BYTES
    ckpt = checkpoint.load(path)
    assert {str(v.dtype) for state in ckpt.state.values() for v in state.values() if v.is_floating_point()} == \
        {"torch.float16"}
    # the signatures the server and the demo assume (catalog defaults) are the ones these weights export
    assert ckpt.spec.signatures(ckpt.image_shape, ckpt.hp) == ckpt.spec.signatures()
    card = (weights_dir() / f"{model}.md").read_text()
    assert release.display_command(ckpt.meta["command"]) in card and f"{model}.png" in card
    assert "/tmp/" not in card and "/work/" not in card
    assert (weights_dir() / f"{model}.png").is_file()
