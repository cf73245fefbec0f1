"""The moving average of the served nets: the arithmetic, and what a run writes and resumes with it."""

from __future__ import annotations

import pytest
import torch

from ganexport.training import checkpoint
from ganexport.training.loop import TrainConfig, train
from ganexport.training.weight_average import WeightAverage

from conftest import smoke_config


def test_the_average_follows_the_weights_with_the_warmed_up_decay():
    """Worked by hand: the decay at step s is min(decay, (1 + s) / (10 + s)), so from 0 the average goes
    0.9 * 4 = 3.6; 2/11 * 3.6 + 9/11 * 8 = 7.2; 0.25 * 7.2 + 0.75 * 2 = 3.3; and at step 20, where the
    warm-up (21/30) is above the cap, 0.5 * 3.3 + 0.5 * 4 = 3.65."""
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage({"g": net}, ["g"], decay=0.5)
    for step, w, expected in [(0, 4.0, 3.6), (1, 8.0, 7.2), (2, 2.0, 3.3), (20, 4.0, 3.65)]:
        with torch.no_grad():
            net.weight.fill_(w)
        avg.update({"g": net}, step)
        assert avg.average["g"].weight.item() == pytest.approx(expected), step
    assert net.weight.item() == 4.0  # the trained weights are untouched


def test_in_place_swaps_the_average_in_and_back():
    nets = {"g": torch.nn.Linear(2, 2), "d": torch.nn.Linear(2, 2)}
    raw_g, raw_d = nets["g"], nets["d"]
    avg = WeightAverage(nets, ["g"], decay=0.9)
    with avg.in_place(nets) as swapped:
        assert swapped["g"] is avg.average["g"] and swapped["d"] is raw_d
    assert nets["g"] is raw_g


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage({"g": torch.nn.Linear(1, 1)}, ["g"], decay=decay)


def test_a_run_saves_the_average_serves_it_and_resumes_from_the_raw_weights(tmp_path):
    def run(out, steps, resume=None):  # no image pool: its contents are not saved for --resume
        hp = {"ema_decay": 0.9, "pool_size": 0}
        if resume:
            return train(TrainConfig(model="cyclegan", resume=resume, steps=steps, progress=False, hp=hp))
        return train(smoke_config("cyclegan", out, steps=steps, hp=hp))

    straight = run(tmp_path / "a", 4)
    saved = checkpoint.load(straight)
    raw = checkpoint.load_train_state(straight / "train_state.pt")["raw_nets"]
    assert set(raw) == {"g_ab", "g_ba"}  # the served roles; the discriminators are not averaged
    for role in raw:
        assert any(not torch.equal(raw[role][k], saved.state[role][k]) for k in raw[role]), role

    first = run(tmp_path / "b", 2)
    resumed = run(None, 4, resume=str(first))
    again = checkpoint.load(resumed)
    for role in saved.state:  # resuming from raw weights + the saved average gives the straight run exactly
        for key in saved.state[role]:
            assert torch.equal(saved.state[role][key], again.state[role][key]), f"{role}.{key}"
