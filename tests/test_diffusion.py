"""The diffusion sampler (ganexport.diffusion) against what theory says it must do, and the DDPM recipe.

The sampler is checked with oracle denoisers whose right answer is known without the
code under test: for Gaussian data the best noise estimate is a closed formula, and
deterministic DDIM must then follow the probability-flow map from noise to data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ganexport import catalog, diffusion
from ganexport.training.nets import to_uint8 as torch_to_uint8

SCHEDULE = diffusion.Schedule(1000)
ABAR = SCHEDULE.alpha_bar()
MU, SIGMA = 0.1, 0.3


def oracle(targets: dict[int, np.ndarray]):
    """A perfect denoiser for data that holds one image per label: the noise that takes x_t to its image."""
    def eps(x, t, label):
        ab = ABAR[t.astype(int)][:, None, None, None]
        x0 = np.stack([targets[int(k)] for k in label])
        return ((x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)).astype(np.float32)
    return eps


def gaussian_eps(x, t, label):
    """The exact noise estimate E[eps | x_t] when every pixel of the data is N(MU, SIGMA^2)."""
    ab = ABAR[t.astype(int)][:, None, None, None]
    return (np.sqrt(1 - ab) * (x - np.sqrt(ab) * MU) / (ab * SIGMA ** 2 + 1 - ab)).astype(np.float32)


def image(seed: int, shape=(8, 8, 1)) -> np.ndarray:
    """A target in [-1, 1] whose uint8 rounding is exact (multiples of 1/127.5 from -1)."""
    levels = np.random.default_rng(seed).integers(0, 256, shape)
    return (levels / 127.5 - 1).astype(np.float32)


def as_u8(x):
    return np.round((x + 1) * 127.5).astype(np.uint8)


def test_schedule_destroys_the_image_gradually_and_the_walk_starts_at_pure_noise():
    assert np.all(np.diff(ABAR) < 0) and ABAR[0] > 0.999 and ABAR[-1] < 1e-6
    for steps in (1, 3, 7, 10, 25, 50, 333, 999, 1000):
        walk = SCHEDULE.walk(steps)
        assert len(walk) == steps and walk[0] == 999 and walk[-1] >= 0
        assert np.all(np.diff(walk) < 0)  # strictly noisier to cleaner, no timestep twice
    assert list(SCHEDULE.walk(1000)) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="1..1000"):
        SCHEDULE.walk(0)


@pytest.mark.parametrize("steps, max_levels, mean_levels", [(1000, 1, 0.2), (50, 8, 2.0)])
def test_deterministic_ddim_follows_the_probability_flow_of_gaussian_data(steps, max_levels, mean_levels):
    """For Gaussian data the probability-flow ODE maps noise z to MU + SIGMA z; DDIM (eta 0) approximates it,
    exactly in the limit of many steps."""
    noise = np.random.default_rng(0).standard_normal((200, 8, 8, 1)).astype(np.float32)
    out = diffusion.sample(gaussian_eps, SCHEDULE, noise, np.zeros(200, int), null_label=10, steps=steps)
    gap = np.abs(out.images.astype(int) - diffusion.to_uint8(MU + SIGMA * noise).astype(int))
    assert gap.max() <= max_levels and gap.mean() <= mean_levels


def test_ancestral_sampling_at_every_step_draws_the_data_distribution():
    """eta 1 over all 1000 steps is DDPM's own sampler: its samples of Gaussian data have the data's mean and
    spread (12,800 pixels: the estimates are good to about 0.003)."""
    noise = np.random.default_rng(1).standard_normal((200, 8, 8, 1)).astype(np.float32)
    out = diffusion.sample(gaussian_eps, SCHEDULE, noise, np.zeros(200, int), 10, steps=1000, eta=1.0)
    x = out.images / 127.5 - 1
    assert abs(x.mean() - MU) < 0.01 and abs(x.std() - SIGMA) < 0.01
    assert np.corrcoef(x.ravel(), noise.ravel())[0, 1] < 0.5  # fresh noise each step: not the ODE's map


def test_guidance_one_is_the_conditional_model_and_zero_the_unconditional_one():
    cond, uncond = image(0), image(1)
    eps = oracle({3: cond, 10: uncond})
    noise = np.random.default_rng(2).standard_normal((2, 8, 8, 1)).astype(np.float32)
    labels = np.array([3, 10])
    one = diffusion.sample(eps, SCHEDULE, noise, labels, 10, steps=20, guidance=1.0).images
    zero = diffusion.sample(eps, SCHEDULE, noise, labels, 10, steps=20, guidance=0.0).images
    assert (one[0] == as_u8(cond)).mean() > 0.99 and (zero[0] == as_u8(uncond)).mean() > 0.99
    assert (one[1] == as_u8(uncond)).mean() > 0.99 and (zero[1] == as_u8(uncond)).mean() > 0.99  # no class: no twin


def test_guidance_runs_one_denoiser_call_per_step_with_twins_only_where_needed():
    calls = []

    def eps(x, t, label):
        calls.append(label.copy())
        return np.zeros_like(x)

    noise = np.zeros((3, 8, 8, 1), np.float32)
    diffusion.sample(eps, SCHEDULE, noise, np.array([1, 10, 4]), 10, steps=5, guidance=3.0)
    assert len(calls) == 5
    assert all(list(c) == [1, 10, 4, 10, 10] for c in calls)  # two twins: rows 0 and 2, none for the null row
    calls.clear()
    diffusion.sample(eps, SCHEDULE, noise, np.array([1, 10, 4]), 10, steps=5, guidance=1.0)
    assert all(list(c) == [1, 10, 4] for c in calls)


def test_rows_batched_with_other_settings_get_the_images_they_get_alone():
    rng = np.random.default_rng(3)
    targets = {k: image(k) for k in range(11)}
    eps = lambda x, t, label: oracle(targets)(x, t, label) + 0.3 * np.sin(x * 3 + t[:, None, None, None] / 100)  # noqa: E731
    noise = rng.standard_normal((4, 8, 8, 1)).astype(np.float32)
    labels, steps = np.array([1, 2, 3, 10]), np.array([5, 9, 5, 9])
    guidance, eta = np.array([2.0, 2.0, 0.5, 2.0]), np.array([0.0, 1.0, 0.0, 1.0])
    both = diffusion.sample_rows(eps, SCHEDULE, noise, labels, steps, guidance, eta, null_label=10, frames=4)
    for i in range(4):
        alone = diffusion.sample(eps, SCHEDULE, noise[i:i + 1], labels[i:i + 1], 10, steps=int(steps[i]),
                                 guidance=float(guidance[i]), eta=float(eta[i]), frames=4)
        assert np.array_equal(both.images[i], alone.images[0]), i
        assert np.array_equal(both.trajectory[i], alone.trajectory[0]), i


def test_ancestral_noise_follows_the_initial_noise_so_a_request_is_reproducible():
    eps = lambda x, t, label: 0.5 * x  # noqa: E731
    noise = np.random.default_rng(4).standard_normal((3, 8, 8, 1)).astype(np.float32)
    a = diffusion.sample(eps, SCHEDULE, noise, np.full(3, 10), 10, steps=10, eta=1.0).images
    b = diffusion.sample(eps, SCHEDULE, noise[::-1].copy(), np.full(3, 10), 10, steps=10, eta=1.0).images
    assert np.array_equal(a, b[::-1])
    c = diffusion.sample(eps, SCHEDULE, noise, np.full(3, 10), 10, steps=10, eta=0.0).images
    assert not np.array_equal(a, c)  # eta 1 did add noise


@pytest.mark.parametrize("steps", [1, 4, 10, 30])
def test_the_trajectory_has_the_same_frames_at_any_steps_and_ends_on_the_image(steps):
    noise = np.random.default_rng(5).standard_normal((2, 8, 8, 1)).astype(np.float32)
    out = diffusion.sample(oracle({0: image(0)}), SCHEDULE, noise, np.zeros(2, int), 10, steps=steps, frames=10)
    assert out.trajectory.shape == (2, 10, 8, 8, 1) and out.trajectory.dtype == np.uint8
    assert np.array_equal(out.trajectory[:, -1], out.images)
    if steps >= 10:  # the walk starts near noise: the first frame is far from the last
        assert np.abs(out.trajectory[:, 0].astype(int) - out.images.astype(int)).mean() > 5


def test_uint8_rounding_is_the_exported_graphs():
    x = np.concatenate([np.linspace(-1.2, 1.2, 2001), (np.arange(256) + 0.5) / 127.5 - 1]).astype(np.float32)
    x = x.reshape(1, 1, 1, -1)
    ref = torch_to_uint8(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert np.array_equal(diffusion.to_uint8(x), ref)


def test_run_signature_answers_in_the_signatures_output_order():
    sig = catalog.get("ddpm").signatures()[0]
    n = 3
    inputs = {"noise": np.zeros((n, *sig.input("noise").shape), np.float32), "label": np.array([[0], [10], [9]]),
              "steps": np.full((n, 1), 2, np.int32), "guidance": np.full((n, 1), 2.0, np.float32),
              "eta": np.zeros((n, 1), np.float32)}
    seen = []

    def run(feeds):
        seen.append({k: v.shape for k, v in feeds.items()})
        return [np.zeros_like(feeds["x"])]

    image_out, trajectory = diffusion.run_signature(sig, diffusion.denoiser_eps_fn(sig, run), inputs)
    assert image_out.shape == (n, *sig.output("image").shape)
    assert trajectory.shape == (n, *sig.output("trajectory").shape)
    den = sig.denoiser()
    assert seen[0] == {"x": (5, *den.input("x").shape), "t": (5, 1), "label": (5, 1)}  # 3 rows + 2 twins


@pytest.mark.parametrize("t", [0, 500, 999])
def test_a_v_net_that_predicts_its_target_gives_back_the_exact_noise(t):
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and v = sqrt(abar) eps - sqrt(1 - abar) x0 determine eps; the
    served noise estimate of a perfect v net must be that eps, also at abar ~ 2e-9 (t = 999)."""
    from ganexport.training.unet import NHWCDenoiser, ddpm_unet

    net = ddpm_unet((8, 8, 1), {"width": 8, "num_classes": 10, "prediction": "v", "timesteps": 1000}).double()
    gen = torch.Generator().manual_seed(t)
    x0, eps = torch.rand(4, 1, 8, 8, generator=gen).double() * 2 - 1, torch.randn(4, 1, 8, 8, generator=gen).double()
    ts = torch.full((4,), t)
    ab = torch.from_numpy(ABAR[ts.numpy()])[:, None, None, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    net.forward = lambda x, tt, label: net.target(x0, eps, ts)  # a perfect v net
    got = NHWCDenoiser(net)(x_t.permute(0, 2, 3, 1), ts.double()[:, None], torch.zeros(4, 1, dtype=torch.long))
    assert torch.allclose(got.permute(0, 3, 1, 2), eps, atol=1e-4)


def test_ddpm_training_learns_to_see_the_noise(tmp_path):
    """60 steps on digits cut the denoising loss, measured on one fixed batch of 512 noisings of held-out digits
    (the logged loss, on random batches, is too noisy to compare two points of); and the class health check runs
    the sampler on the judge as for the GANs."""
    from ganexport.training import checkpoint, data, judge
    from ganexport.training.loop import TrainConfig, train

    run = train(TrainConfig(model="ddpm", profile="smoke", dataset="digits", steps=60, out=str(tmp_path),
                            progress=False, hp={"sample_every": 60, "log_every": 10}))
    trained = checkpoint.load(run)
    torch.manual_seed(trained.meta["seed"])  # the weights the run started from, as the loop builds them
    untrained = trained.spec.build("denoiser", trained.image_shape, trained.hp).eval()
    held_out = data.load_images("digits", split="test")
    gen = torch.Generator().manual_seed(1)
    pick = torch.randint(0, len(held_out.images), (512,), generator=gen)
    x, label = judge.to_tensor(held_out.images[pick.numpy()]), torch.from_numpy(held_out.labels[pick.numpy()])
    t = torch.randint(0, trained.hp["timesteps"], (512,), generator=gen)
    eps = torch.randn(x.shape, generator=gen)

    def loss(net) -> float:
        a = net.sqrt_abar[t][:, None, None, None]
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(net(a * x + (1 - a * a).sqrt() * eps, t.float(), label),
                                                      net.target(x, eps, t)))

    before, after = loss(untrained), loss(trained.build("denoiser").eval())
    print(f"denoising loss on a fixed held-out batch: {before:.3f} before, {after:.3f} after 60 steps")
    assert after < 0.8 * before  # 0.66 seen here; a run that learns nothing stays at 1
    last = json.loads((run / "health.jsonl").read_text().splitlines()[-1])
    histogram = last["class_histogram"]
    assert sum(histogram) == 1000 and last["classes_present"] == sum(h > 0 for h in histogram)
    assert "label_accuracy" in last


def test_label_dropout_trains_the_no_class_estimate():
    """With label_dropout 1 every label becomes the null index: the net can only learn the unconditional task."""
    from ganexport.training import ddpm
    from ganexport.training.data import ImageSet
    from ganexport.training.loop import Batches

    spec = catalog.get("ddpm")
    hp = spec.hp("smoke", label_dropout=1.0)
    images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    batches = Batches(ImageSet(images, np.arange(16) % 10, (), "test"), 8, "cpu", 0)
    recipe = ddpm.Recipe(spec, hp, (8, 8, 1), torch.device("cpu"), batches, 0)
    seen = []
    recipe.nets["denoiser"].register_forward_hook(lambda m, args, out: seen.append(args[2].clone()))
    recipe.train_step(batches.draw)
    assert seen and (seen[0] == hp["num_classes"]).all()
