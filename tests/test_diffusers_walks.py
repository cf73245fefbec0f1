"""Each option the served loop reproduces, on a tiny UNet2DModel saved by diffusers: the served loop around the
imported denoiser against diffusers' own walk (tests/diffusers_cases.py), at 10 and 50 steps.

Per case, before the tolerance is trusted: the walk is well conditioned (the UNet's output off by 1e-5 moves
diffusers' own image by at most one level), and the option matters (diffusers' image with the option
changed is far beyond the tolerance). Then the served images are within 2 uint8 levels of diffusers', with
at most 1% of the values more than one level apart (the issue's gate). The PyTorch denoiser is the one build
exports (its exports are compared with it to 1e-4 by parity, and served through Triton by
test_diffusers_serving.py), so what this measures is the loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffusers_cases as cases
from ganexport import catalog, diffusion, models_folder
from ganexport.export import wrappers
from ganexport.export.importers import entry
from ganexport.training import checkpoint
from ganexport.training.unet import numpy_eps_fn

pytestmark = pytest.mark.slow

STEPS = (10, 50)
MAX_LEVELS, MAX_BEYOND_ONE = 2, 0.01  # the gate
CONDITIONING_ERROR = 1e-5  # ten times the float noise between ONNX Runtime and PyTorch on these nets


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets on a shared 2-core machine: a second thread only waits for the other processes' cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def request(sig, case: cases.Case, x: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """The served signature's request for the walk ``cases.walk`` takes (named by the signature)."""
    n = len(x)
    values = {"noise": x, "label": cases.labels(case, n), "steps": np.full(n, steps, np.int32),
              "guidance": np.full(n, case.guidance, np.float32), "eta": np.full(n, case.eta, np.float32)}
    return {t.name: values[t.name].reshape(n, *t.shape) for t in sig.inputs}


def served(name: str, case: cases.Case, x: np.ndarray, steps: int) -> np.ndarray:
    """The imported entry's images: ganexport's loop (what the server runs) around its PyTorch denoiser."""
    spec = catalog.get(name)
    sig = spec.signatures()[0]
    ckpt = checkpoint.load(spec.origin.weights)
    denoiser = wrappers.for_checkpoint(ckpt, sig)
    return diffusion.run_signature(sig, numpy_eps_fn(denoiser), request(sig, case, x, steps))[0]


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_the_served_loop_walks_as_diffusers_does(tmp_path, monkeypatch, case):
    monkeypatch.setenv(models_folder.ENV, str(tmp_path / "models"))
    folder = cases.save(case, tmp_path / "pipeline")
    entry.import_model(folder, "case", "diffusers", {"null_class": case.null_class}, log=lambda line: None)
    unet, config = cases.load(folder)
    x = cases.noise(case)
    flipped = {**config, case.flip[0]: case.flip[1]}
    moved = cases.levels(cases.walk(unet, config, case, x, 10), cases.walk(unet, flipped, case, x, 10))
    assert moved[1] > 10 * MAX_BEYOND_ONE, f"{case.flip} hardly changes diffusers' images ({moved}): a weak case"
    for steps in STEPS:
        want = cases.walk(unet, config, case, x, steps)
        shaken = cases.levels(want, cases.walk(cases.Scaled(unet, CONDITIONING_ERROR), config, case, x, steps))
        assert shaken[0] <= 1, f"{steps} steps: a chaotic walk ({shaken}); no tolerance can be trusted on it"
        got = served("case", case, x, steps)
        worst, beyond = cases.levels(got, want)
        assert worst <= MAX_LEVELS and beyond <= MAX_BEYOND_ONE, (steps, worst, beyond)


def test_the_builds_gate_against_diffusers_passes_its_walk_and_refuses_one_a_few_levels_off(tmp_path, monkeypatch):
    """What build runs (parity.compare_diffusion against the net's own reference sampler), here with the PyTorch
    denoiser standing in for an exported file, on one short walk: diffusers' walk passes; the same walk moved by
    2 levels on 2% of the values, or by 3 on one, is refused (test_diffusers_serving.py reads a real build's
    parity.json)."""
    from ganexport.export import parity

    monkeypatch.setenv(models_folder.ENV, str(tmp_path / "models"))
    case = cases.CASES[2]  # squaredcos_cap_v2
    entry.import_model(cases.save(case, tmp_path / "pipeline"), "gated", "diffusers", {"null_class": None},
                       log=lambda line: None)
    spec = catalog.get("gated")
    sig = spec.signatures()[0]
    denoiser = wrappers.for_checkpoint(checkpoint.load(spec.origin.weights), sig)
    diffusers_own = wrappers.reference_sampler(denoiser)

    def off(levels: int, share: float):
        def sampler(signature, request):
            images = diffusers_own(signature, request).astype(np.int16)
            moved = np.random.default_rng(0).random(images.shape) < share if share else np.zeros(images.shape, bool)
            moved.flat[0] = True
            shift = np.where(moved, np.where(images > 127, -levels, levels), 0)
            return np.clip(images + shift, 0, 255).astype(np.uint8)
        return sampler

    def failures(reference) -> list[str]:
        runs = {"torchscript": parity.torch_run(denoiser, sig.denoiser())}
        found, _, _ = parity.compare_diffusion(sig, denoiser, runs, walks=((10, 8, 0.0),), reference=reference)
        return found["torchscript"].failures

    assert diffusers_own.about.startswith("diffusers ") and failures(diffusers_own) == []
    for levels, share, words in ((2, 0.02, "differ by more than one level (gate 1%)"), (3, 0.0, "differ by 3 levels")):
        assert any(words in failure for failure in failures(off(levels, share)))


def test_the_served_loop_makes_ddim_pipelines_own_images(tmp_path, monkeypatch):
    """DDIMPipeline itself on a DDPMPipeline folder, from its own seeded draw: the served loop, given that draw,
    makes the same images; and the reference build compares with (diffusers_reference) is that pipeline."""
    from ganexport.export.importers import diffusers_reference

    monkeypatch.setenv(models_folder.ENV, str(tmp_path / "models"))
    case = cases.CASES[0]
    folder = cases.save(case, tmp_path / "pipeline")
    entry.import_model(folder, "ddpm_folder", "diffusers", {"null_class": None}, log=lambda line: None)
    unet, config = cases.load(folder)
    for steps in STEPS:
        x, want = cases.pipeline_images(folder, steps, seed=4)
        worst, beyond = cases.levels(served("ddpm_folder", case, x, steps), want)
        assert worst <= MAX_LEVELS and beyond <= MAX_BEYOND_ONE, (steps, worst, beyond)
        reference = diffusers_reference.sample(unet, config, x, None, steps)
        assert np.array_equal(reference, want)
