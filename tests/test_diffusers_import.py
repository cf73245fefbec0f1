"""`ganexport import --format diffusers`: the served loop's scheduler against diffusers' own DDIMScheduler, the
entry a saved pipeline becomes (its signature, record and weights), and every refusal in one line.

Fast: no export and no walks through a UNet here (tests/test_diffusers_walks.py walks each option's tiny UNet
against diffusers; tests/test_diffusers_serving.py builds and serves through Triton).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler
from safetensors.torch import load_file

import diffusers_cases as cases
from ganexport import catalog, models_folder
from ganexport.cli import cli
from ganexport.ddim_scheduler import DDIM, KEYS
from ganexport.demo.tabs import NO_CLASS, DemoModel, tabs_for
from ganexport.export.importers import entry
from ganexport.export.importers.source import ImportRefused
from ganexport.serving.validation import InvalidInput, diffusion_request, validate

UNCONDITIONAL = cases.CASES[0]  # a DDPMPipeline folder: linear betas, epsilon, leading
CONDITIONAL = cases.CASES[-1]  # 1 channel, 3 classes


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An unconditional DDPMPipeline folder and a class-conditional DDIMPipeline folder, saved by diffusers."""
    root = tmp_path_factory.mktemp("diffusers-folders")
    return {"unconditional": cases.save(UNCONDITIONAL, root / "ddpm-tiny"),
            "conditional": cases.save(CONDITIONAL, root / "ddim-classes")}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv(models_folder.ENV, str(models))
    return models


def imported(path, name, null_class=None):
    logged = []
    entry.import_model(path, name, "diffusers", {"null_class": null_class}, log=logged.append)
    return catalog.get(name), logged


def refused(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the scheduler, against diffusers'


SCHEDULES = {
    "linear": {}, "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "squaredcos_cap_v2": {"beta_schedule": "squaredcos_cap_v2"},
    "trained_betas": {"trained_betas": np.linspace(1e-4, 0.03, 1000).tolist()},
    "linear, 1234 timesteps": {"num_train_timesteps": 1234, "beta_start": 0.0003, "beta_end": 0.04},
    "scaled_linear, 50 timesteps": {"num_train_timesteps": 50, "beta_schedule": "scaled_linear"},
}


@pytest.mark.parametrize("config", SCHEDULES.values(), ids=SCHEDULES)
def test_the_noise_schedule_is_diffusers_own_value_for_value(config):
    theirs = DDIMScheduler(**config)
    assert np.array_equal(DDIM(config).betas, theirs.betas.numpy())
    assert np.array_equal(DDIM(config).alphas_cumprod, theirs.alphas_cumprod.numpy())


@pytest.mark.parametrize("spacing, offset, timesteps, top", [("leading", 0, 1000, 1000), ("leading", 1, 1000, 999),
                                                             ("trailing", 0, 1000, 1000), ("linspace", 0, 1000, 1000),
                                                             ("leading", 3, 777, 258), ("trailing", 0, 999, 999)])
def test_the_walk_of_every_step_count_is_diffusers_own(spacing, offset, timesteps, top):
    """And the most steps a request may ask for: leading with an offset of 1 steps past T - 1 at N = T; with 3,
    already at N = 259 (T // N = 3: 258 * 3 + 3 = 777)."""
    config = {"timestep_spacing": spacing, "steps_offset": offset, "num_train_timesteps": timesteps}
    ours, theirs = DDIM(config), DDIMScheduler(**config)
    assert ours.max_steps() == top
    for n in range(1, top + 1):
        theirs.set_timesteps(n)
        assert np.array_equal(ours.walk(n), theirs.timesteps.numpy()), n


STEPS = [dict(prediction_type=p, clip_sample=c, set_alpha_to_one=a, timestep_spacing=s)
         for p in ("epsilon", "v_prediction", "sample") for c, a, s in ((True, True, "leading"),
                                                                       (False, False, "trailing"))]


@pytest.mark.parametrize("config", STEPS + [dict(clip_sample_range=0.3, beta_schedule="squaredcos_cap_v2")],
                         ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_every_step_of_a_walk_is_diffusers_step(config, eta):
    """On random states and model outputs, at each timestep of a 7-step walk (7 does not divide 1000, so the
    previous timestep t - T // N is not the walk's next one under trailing spacing), with the same noise."""
    ours, theirs = DDIM(config), DDIMScheduler(**config)
    theirs.set_timesteps(7)
    walk = ours.walk(7)
    rng = np.random.default_rng(3)
    for i, t in enumerate(theirs.timesteps):
        x, out, z = (rng.standard_normal((2, 3, 4, 4)).astype(np.float32) * s for s in (2.0, 1.0, 1.0))
        want = theirs.step(torch.from_numpy(out), t, torch.from_numpy(x), eta=eta,
                           variance_noise=torch.from_numpy(z) if eta else None).prev_sample.numpy()
        got, sigma = ours.step(x, out, walk, i, eta)
        got = got + sigma * z if sigma > 0 else got
        # torch's float32 sqrt of a scalar is not always correctly rounded (numpy's is): an ulp or two apart
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_the_quirk_of_the_previous_timestep_is_copied():
    """Trailing 3 steps of 1000 walk 999, 666, 332; from 666 diffusers steps to 666 - 333 = 333, not 332."""
    ours = DDIM({"timestep_spacing": "trailing", "clip_sample": False})
    walk = ours.walk(3)
    assert walk.tolist() == [999, 666, 332]
    x, out = np.ones((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    got, _ = ours.step(x, out, walk, 1, 0.0)  # eps 0: x_prev = sqrt(abar_prev / abar_t) x
    a = ours.alphas_cumprod
    assert got.item() == pytest.approx(np.sqrt(a[333] / a[666]), rel=1e-6)
    assert got.item() != pytest.approx(np.sqrt(a[332] / a[666]), rel=1e-6)


def test_the_image_rule_is_the_pipelines():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32) * 1.5
    want = ((torch.from_numpy(x) / 2 + 0.5).clamp(0, 1).numpy() * 255).round().astype("uint8")
    assert np.array_equal(DDIM.to_uint8(x), want)


# --------------------------------------------------------------------------- the entry


def test_an_unconditional_pipeline_serves_noise_steps_guidance_eta_with_its_config_kept(saved, folder):
    spec, logged = imported(saved["unconditional"], "tiny")
    assert spec.kind == "diffuse" and not spec.conditional and spec.origin.format == "diffusers"
    assert any("DDPMScheduler; sampled as DDIMPipeline samples it" in line for line in logged)
    sig = spec.signatures()[0]
    assert [t.name for t in sig.inputs] == ["noise", "steps", "guidance", "eta"]
    assert sig.inputs[0].shape == (8, 8, 3) and sig.input("steps").high == 1000
    assert (sig.input("guidance").low, sig.input("guidance").high) == (1, 1)
    assert [t.name for t in sig.denoiser().inputs] == ["x", "t"] and sig.denoiser().outputs[0].name == "eps"
    record = json.loads((folder / "tiny" / models_folder.ENTRY_FILE).read_text())
    raw = json.loads((saved["unconditional"] / "scheduler" / "scheduler_config.json").read_text())
    assert sig.diffusion["ddim"] == {k: DDIMScheduler.from_config(raw).config[k] for k in KEYS}
    assert record["hparams"]["scheduler_config"] == raw  # the folder's own config, kept
    unet_config = json.loads((saved["unconditional"] / "unet" / "config.json").read_text())
    assert {k: v for k, v in unet_config.items() if not k.startswith("_")} == record["hparams"]["unet"]
    theirs = load_file(str(saved["unconditional"] / "unet" / "diffusion_pytorch_model.safetensors"))
    ours = load_file(str(folder / "tiny" / models_folder.WEIGHTS_FILE))
    assert {k.removeprefix(f"{entry.ROLE}.unet."): v for k, v in ours.items()}.keys() == theirs.keys()
    assert all(torch.equal(ours[f"{entry.ROLE}.unet.{k}"], v) for k, v in theirs.items())
    assert tabs_for(sig) == ("diffusion",)
    assert DemoModel("tiny", sig, spec).diffusion_classes == [NO_CLASS]  # no class picker


def test_guidance_other_than_one_is_refused_in_one_line_without_a_null_class(saved, folder):
    spec, _ = imported(saved["conditional"], "classes")
    sig = spec.signatures()[0]
    assert [t.name for t in sig.inputs] == ["noise", "label", "steps", "guidance", "eta"]
    assert (sig.input("label").low, sig.input("label").high) == (0, 2) and sig.diffusion["null_label"] is None
    noise = np.zeros((2, 8, 8, 1), np.float32)
    validate(sig, diffusion_request(sig, noise, [0, 2], 10, 1.0, 0.0))
    with pytest.raises(InvalidInput) as e:
        validate(sig, diffusion_request(sig, noise, [0, 2], 10, 2.0, 0.0))
    assert "guidance" in refused(e) and "--null-class" in str(e.value)
    with pytest.raises(InvalidInput) as e:
        diffusion_request(sig, noise, None, 10, 1.0, 0.0)
    assert "needs a label" in refused(e)
    served = DemoModel("classes", sig, spec)
    assert tabs_for(sig) == ("conditional", "diffusion") and served.diffusion_classes == ["0", "1", "2"]


def test_a_null_class_named_at_import_offers_guidance(saved, folder):
    spec, _ = imported(saved["conditional"], "guided", null_class=1)
    sig = spec.signatures()[0]
    assert (sig.input("guidance").low, sig.input("guidance").high) == (0, 20) and sig.diffusion["null_label"] == 1
    assert spec.origin.options == {"null_class": 1}
    served = DemoModel("guided", sig, spec)
    assert served.class_indices == [0, 2] and served.diffusion_classes == ["0", "2", NO_CLASS]
    validate(sig, diffusion_request(sig, np.zeros((1, 8, 8, 1), np.float32), None, 10, 3.0, 1.0))


def test_the_command_imports_a_unet_folder_with_its_scheduler_beside_it(saved, folder):
    unet_only = saved["unconditional"] / "unet"
    r = CliRunner().invoke(cli, ["import", str(unet_only), "--name", "beside", "--format", "diffusers"])
    assert r.exit_code == 0, r.output
    assert "noise FP32 [8, 8, 3], steps INT32 [1], guidance FP32 [1], eta FP32 [1] -> image UINT8 [8, 8, 3]" in r.output
    assert catalog.get("beside").origin.source == "unet"


# --------------------------------------------------------------------------- refusals


def _mutate(path, **changes):
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


REFUSALS = {
    "pipeline class": (lambda f: _mutate(f / "model_index.json", _class_name="LDMPipeline"), {}, "a LDMPipeline"),
    "unet class": (lambda f: _mutate(f / "model_index.json", unet=["diffusers", "UNet2DConditionModel"]), {},
                   "UNet2DConditionModel, not a UNet2DModel"),
    "scheduler class": (lambda f: _mutate(f / "scheduler/scheduler_config.json", _class_name="PNDMScheduler"), {},
                        "a PNDMScheduler"),
    "thresholding": (lambda f: _mutate(f / "scheduler/scheduler_config.json", thresholding=True), {},
                     "thresholding true"),
    "rescale_betas_zero_snr": (lambda f: _mutate(f / "scheduler/scheduler_config.json", rescale_betas_zero_snr=True),
                               {}, "rescale_betas_zero_snr true"),
    "beta_schedule": (lambda f: _mutate(f / "scheduler/scheduler_config.json", beta_schedule="sigmoid"), {},
                      "beta_schedule 'sigmoid'"),
    "timestep_spacing": (lambda f: _mutate(f / "scheduler/scheduler_config.json", timestep_spacing="karras"), {},
                         "timestep_spacing 'karras'"),
    "prediction_type": (lambda f: _mutate(f / "scheduler/scheduler_config.json", prediction_type="flow"), {},
                        "prediction_type 'flow'"),
    "class_embed_type": (lambda f: _mutate(f / "unet/config.json", class_embed_type="timestep"), {},
                         "class_embed_type 'timestep'"),
    "fourier time embedding": (lambda f: _mutate(f / "unet/config.json", time_embedding_type="fourier"), {},
                               "time_embedding_type 'fourier'"),
    "learned variance": (lambda f: _mutate(f / "unet/config.json", out_channels=6), {}, "out_channels 6"),
    "sample_size": (lambda f: _mutate(f / "unet/config.json", sample_size=None), {}, "sample_size None"),
    "null class of no classes": (lambda f: None, {"null_class": 0}, "--null-class 0: the UNet embeds no classes"),
    "no scheduler": (lambda f: shutil.rmtree(f / "scheduler"), {}, "no scheduler/scheduler_config.json"),
    "sharded weights": (lambda f: [(f / "unet/diffusion_pytorch_model.safetensors").rename(
        f / "unet/diffusion_pytorch_model-00001-of-00001.safetensors"),
        (f / "unet/diffusion_pytorch_model.safetensors.index.json").write_text("{}")], {}, "sharded weights"),
    "missing keys": (lambda f: _mutate(f / "unet/config.json", layers_per_block=2), {}, "missing keys"),
}


@pytest.mark.parametrize("mutate, options, words", REFUSALS.values(), ids=REFUSALS)
def test_what_the_loop_cannot_reproduce_is_refused_in_one_line_naming_it(saved, folder, tmp_path, mutate, options,
                                                                        words):
    copy = shutil.copytree(saved["unconditional"], tmp_path / "pipeline")
    mutate(copy)
    with pytest.raises(ImportRefused) as e:
        entry.import_model(copy, "refused", "diffusers", {"null_class": None, **options}, log=lambda line: None)
    assert words in refused(e), str(e.value)
    assert not folder.exists() or not any(p for p in folder.iterdir() if not p.name.startswith(".")), "wrote"


def test_a_null_class_outside_the_classes_is_refused_by_the_command(saved, folder):
    r = CliRunner().invoke(cli, ["import", str(saved["conditional"]), "--name", "x", "--format", "diffusers",
                                 "--null-class", "3"])
    assert r.exit_code == 2 and "import refused, nothing written: --null-class 3: the UNet embeds classes 0..2" in \
        r.output, r.output
