"""Training: every family learns a few smoke steps, checkpoints round-trip, runs resume exactly."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from ganexport import catalog
from ganexport.training import checkpoint
from ganexport.training.loop import TrainConfig, train

from conftest import SMOKE_DATA, smoke_config  # cyclegan: a few photo2sketch crops; the rest: 8x8 digits


def smoke_run(tmp_path, model, **kw):
    return train(smoke_config(model, tmp_path, **kw))


@pytest.mark.parametrize("model", list(catalog.MODELS))
def test_every_family_trains_smoke_steps(tiny_checkpoints, model):
    """The session's smoke run of each model (the one the export and eval tests use)."""
    run = tiny_checkpoints[model].parent
    for name in ("checkpoint.safetensors", "train_state.pt", "samples.png", "loss_curve.png", "health.jsonl",
                 "config.json"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "health.jsonl").read_text().splitlines()]
    steps = catalog.get(model).hp("smoke")["steps"]
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    losses = [v for r in records for k, v in r.items() if k.startswith("loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    meta = checkpoint.read_meta(run / "checkpoint.safetensors")
    assert meta["model"] == model and meta["step"] == steps and meta["dataset"] == SMOKE_DATA[model]
    assert meta["command"]


@pytest.mark.parametrize("model", ["dcgan", "cgan"])
def test_health_log_has_class_histogram(tmp_path, model):
    run = smoke_run(tmp_path, model)
    last = json.loads((run / "health.jsonl").read_text().splitlines()[-1])  # one step's figures (log_every 1)
    histogram = last["class_histogram"]
    assert sum(histogram) == 1000 and len(histogram) == 10
    assert last["classes_present"] == sum(h > 0 for h in histogram)
    # d_real and d_fake are D's mean probabilities: -log is convex, so the step's BCE loss is at least
    # -log(d_real) - log(1 - d_fake) (Jensen); logits, or figures of another batch, break this
    assert last["loss_d"] >= -math.log(last["d_real"]) - math.log(1 - last["d_fake"]) - 1e-6
    assert last["grad_g"] > 0
    if model == "cgan":  # a share of the 1000 judged samples
        assert last["label_accuracy"] * 1000 == pytest.approx(round(last["label_accuracy"] * 1000), abs=0.01)
    assert math.isfinite(last["class_variety"]) and last["class_variety"] > 0


def test_checkpoint_round_trips_exactly(tmp_path):
    run = smoke_run(tmp_path, "cgan")
    ckpt = checkpoint.load(run)
    assert set(ckpt.state) == {"generator", "discriminator"}
    g = ckpt.build("generator")
    path = checkpoint.save(tmp_path / "copy.safetensors", {"generator": g}, ckpt.meta)
    again = checkpoint.load(path)
    for key, value in g.state_dict().items():
        assert torch.equal(again.state["generator"][key], value), key
    assert again.meta == ckpt.meta


def test_fp16_checkpoint_keeps_meta_and_halves_floats(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    path = checkpoint.save(tmp_path / "half.safetensors", {"net": net}, {"model": "dcgan"}, dtype=torch.float16)
    loaded = checkpoint.load(path)
    assert loaded.state["net"]["0.weight"].dtype == torch.float16
    assert loaded.state["net"]["1.num_batches_tracked"].dtype == torch.int64  # integers stay as they are
    assert torch.equal(loaded.state["net"]["0.weight"], net[0].weight.detach().half())


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight = smoke_run(tmp_path / "a", "dcgan", steps=4)
    first = smoke_run(tmp_path / "b", "dcgan", steps=2)
    resumed = train(TrainConfig(model="dcgan", resume=str(first), steps=4, progress=False))
    assert resumed == first
    a, b = checkpoint.load(straight), checkpoint.load(resumed)
    assert b.meta["step"] == 4
    for role in a.state:
        for key in a.state[role]:
            assert torch.equal(a.state[role][key], b.state[role][key]), f"{role}.{key}"


def test_a_run_says_what_it_trains_on_and_prints_progress_lines_without_a_terminal(tmp_path, capsys):
    """Under pytest stderr is no terminal, as under nohup or CI: the bar draws nothing, plain lines do."""
    train(TrainConfig(model="dcgan", profile="smoke", dataset="digits", out=str(tmp_path), steps=4))
    err = capsys.readouterr()
    said = err.out + err.err
    assert "dcgan: data: 1500 train images from scikit-learn load_digits" in said
    lines = [line for line in said.splitlines() if line.startswith("dcgan [smoke] step ")]
    assert [line.split()[3] for line in lines] == ["1/4", "2/4", "3/4", "4/4"], said
    assert "steps/s" in lines[-1] and "min left" in lines[-1] and " d " in lines[-1]


def test_resume_says_from_which_step_and_when_there_is_nothing_left(tmp_path, capsys):
    first = smoke_run(tmp_path, "dcgan", steps=2)
    capsys.readouterr()
    train(TrainConfig(model="dcgan", resume=str(first), steps=4))
    said = capsys.readouterr()
    assert f"resuming {first} from step 2 of 4" in said.out + said.err
    train(TrainConfig(model="dcgan", resume=str(first), steps=4))
    said = capsys.readouterr()
    assert "already finished at step 4 of 4; nothing to train" in said.out + said.err


def test_pickled_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"x": 1}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="pickled"):
        checkpoint.load(bad)


def test_corrupt_checkpoint_gives_checkpoint_error(tmp_path):
    run = smoke_run(tmp_path, "dcgan")
    path = run / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ganexport.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_data_dir_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nonexistent"
    result = _cli("train", "--model", "cyclegan", "--data", str(missing), "--out", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cyclegan_refuses_a_plain_image_folder(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "one.png")
    result = _cli("train", "--model", "cyclegan", "--data", str(tmp_path), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and "trainA" in result.stderr


def test_cli_help_shows_defaults():
    result = _cli("train", "--help")
    assert result.returncode == 0
    assert "[default: quick]" in result.stdout and "smoke" in result.stdout


@pytest.mark.slow  # a fresh interpreter that imports torch: seconds before the first step
def test_cli_trains_a_smoke_run(tmp_path):
    result = _cli("train", "--model", "vae", "--profile", "smoke", "--dataset", "digits", "--out", str(tmp_path),
                  "--quiet")
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "vae").iterdir())
    assert len(runs) == 1 and (runs[0] / "samples.png").stat().st_size > 0
    assert checkpoint.read_meta(runs[0] / "checkpoint.safetensors")["command"].startswith("ganexport train")


@pytest.mark.slow  # a fresh interpreter that imports torch: seconds before the first step
def test_cli_hp_override_reaches_the_checkpoint_typed(tmp_path):
    result = _cli("train", "--model", "vae", "--profile", "smoke", "--dataset", "digits", "--out", str(tmp_path),
                  "--quiet", "--hp", "kl_weight=0.25", "--hp", "hidden=24")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "vae").iterdir()
    hp = checkpoint.read_meta(run / "checkpoint.safetensors")["hparams"]
    assert hp["kl_weight"] == 0.25 and hp["hidden"] == 24 and isinstance(hp["hidden"], int)


@pytest.mark.parametrize("bad, says", [("klweight=0.5", "kl_weight"), ("hidden=1.5", "int"),
                                       ("kl_weight", "KEY=VALUE")])
def test_cli_hp_refuses_unknown_keys_and_bad_values(tmp_path, bad, says):
    from click.testing import CliRunner

    from ganexport.cli import cli

    result = CliRunner().invoke(cli, ["train", "--model", "vae", "--profile", "smoke", "--dataset", "digits",
                                      "--out", str(tmp_path), "--hp", bad])
    assert result.exit_code == 2 and says in result.output, result.output  # a usage error, not a traceback
    assert not (tmp_path / "vae").exists()  # refused before any run directory is made


def test_lr_decays_linearly_after_its_start_and_not_without_one():
    from ganexport.training.loop import lr_factor

    assert [lr_factor(s, 100, None) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    factors = [lr_factor(s, 100, 0.5) for s in range(100)]
    assert factors[:51] == [1.0] * 51 and factors[-1] == pytest.approx(0.02)
    assert all(a > b for a, b in zip(factors[50:], factors[51:]))  # strictly decreasing once it starts


def test_cyclegan_lr_schedule_is_applied_to_the_optimizers(tmp_path):
    run = smoke_run(tmp_path, "cyclegan", steps=4, hp={"lr_decay_start": 0.5})
    state = checkpoint.load_train_state(run / "train_state.pt")
    lr = catalog.get("cyclegan").hp("smoke")["lr"]
    for opt in state["optimizers"].values():  # the last step (index 3) ran at 1 - (3 - 2) / 2 of the rate
        assert opt["param_groups"][0]["lr"] == pytest.approx(0.5 * lr)


def test_resume_of_a_run_older_than_a_new_hparam_takes_its_default(tmp_path):
    first = smoke_run(tmp_path, "cyclegan", steps=2)
    ckpt = checkpoint.load(first / "checkpoint.safetensors")
    nets = {role: ckpt.build(role) for role in ckpt.state}
    del ckpt.meta["hparams"]["aba_weight_scale"]  # as written before the key existed
    checkpoint.save(first / "checkpoint.safetensors", nets, ckpt.meta)
    resumed = train(TrainConfig(model="cyclegan", resume=str(first), steps=3, progress=False))
    assert checkpoint.read_meta(resumed / "checkpoint.safetensors")["step"] == 3


def test_cgan_fake_labels_come_in_same_class_pairs_for_mode_seeking():
    from types import SimpleNamespace

    from ganexport.training import cgan

    from ganexport.training.parallel import SINGLE, RowRandom

    recipe = SimpleNamespace(hp={"num_classes": 10}, device="cpu", random=RowRandom(SINGLE, torch.device("cpu")))
    labels = cgan.Recipe.fake_condition(recipe, 64, torch.Generator().manual_seed(0))
    assert labels.shape == (64,) and torch.equal(labels[:32], labels[32:])
    assert len(labels.unique()) > 5  # still spread over the classes
    assert cgan.Recipe.fake_condition(recipe, 5).shape == (5,)


def test_mode_seeking_punishes_a_generator_that_ignores_z():
    from types import SimpleNamespace

    from ganexport.training import cgan

    z = torch.randn(8, 4)
    ignores_z = torch.zeros(8, 1, 6, 6)
    uses_z = z[:, :1, None, None].expand(8, 1, 6, 6)
    term = lambda weight, fake: cgan.Recipe.generator_regulariser(  # noqa: E731
        SimpleNamespace(hp={"mode_seeking": weight}), z, fake)
    assert term(1.0, ignores_z)["loss_mode_seeking"] > 100 * term(1.0, uses_z)["loss_mode_seeking"]
    assert term(2.0, uses_z)["loss_mode_seeking"] == pytest.approx(2 * term(1.0, uses_z)["loss_mode_seeking"])
    assert term(0.0, uses_z) == {}


def test_cgan_mode_seeking_term_is_logged_only_when_on(tmp_path):
    def last_record(run):
        return json.loads((run / "health.jsonl").read_text().splitlines()[-1])

    on = last_record(smoke_run(tmp_path / "on", "cgan", hp={"mode_seeking": 1.0}))
    off = last_record(smoke_run(tmp_path / "off", "cgan", hp={"mode_seeking": 0.0}))
    assert on["loss_mode_seeking"] > 0 and math.isfinite(on["loss_mode_seeking"])
    assert "loss_mode_seeking" not in off


def test_cgan_checkpoint_from_before_projection_rebuilds_and_resumes_its_label_plane(tmp_path):
    first = smoke_run(tmp_path, "cgan", steps=2, hp={"d_conditioning": "plane", "mode_seeking": 0.0})
    ckpt = checkpoint.load(first / "checkpoint.safetensors")
    nets = {role: ckpt.build(role) for role in ckpt.state}
    for key in ("d_conditioning", "mode_seeking"):  # as written before the keys existed
        del ckpt.meta["hparams"][key]
    checkpoint.save(first / "checkpoint.safetensors", nets, ckpt.meta)
    old = checkpoint.load(first / "checkpoint.safetensors")
    assert old.hp["d_conditioning"] == "plane" and old.build("discriminator").label_plane is not None
    resumed = train(TrainConfig(model="cgan", resume=str(first), steps=3, progress=False))
    assert checkpoint.read_meta(resumed / "checkpoint.safetensors")["step"] == 3


def test_health_warns_of_mode_collapse_inside_classes():
    from ganexport.training.loop import health_warnings

    assert any("inside classes" in w for w in health_warnings({}, 10, 10, class_variety=0.3))
    assert not health_warnings({}, 10, 10, class_variety=0.9)
    assert not health_warnings({}, 10, 10)


def test_a_resumed_run_records_both_commands(tmp_path):
    first = train(TrainConfig(model="dcgan", profile="smoke", dataset=SMOKE_DATA["dcgan"], out=str(tmp_path),
                              limit=64, progress=False, steps=2, command="ganexport train --model dcgan --steps 2"))
    train(TrainConfig(model="dcgan", resume=str(first), steps=4, progress=False,
                      command=f"ganexport train --model dcgan --resume {first} --steps 4"))
    meta = checkpoint.read_meta(first / "checkpoint.safetensors")
    assert meta["command"] == ("ganexport train --model dcgan --steps 2 && "
                               f"ganexport train --model dcgan --resume {first} --steps 4")


def test_structure_l1_scores_what_a_sketch_carries_and_ignores_colour_and_flat_tone():
    """The A -> B -> A detail term: edges and texture count, a photo's colours and flat tones do not."""
    from ganexport.training.losses import structure_l1

    gen = torch.Generator().manual_seed(0)
    photo = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (photo * luma).sum(1, keepdim=True).expand(-1, 3, -1, -1)  # what a sketch can hold of it
    flat_shift = photo + 0.3  # every pixel brighter: the tone of flat areas, no new edge
    assert structure_l1(grey, photo) < 1e-6
    assert structure_l1(flat_shift, photo) < 1e-6
    blurred = torch.nn.functional.avg_pool2d(photo, 5, stride=1, padding=2, count_include_pad=False)
    assert structure_l1(blurred, photo) > 0.05  # lost detail is what it does score
    assert torch.nn.functional.l1_loss(grey, photo) > 0.1  # where a plain L1 pays for the colours
