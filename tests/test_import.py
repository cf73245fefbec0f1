"""`ganexport import`: other projects' checkpoints read as those projects write them, checked against forward
passes written from their layouts (tests/import_layouts.py), and every refusal in one line with nothing written.

Fast: no export here (test_import_build.py builds, publishes and serves imported models).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import import_layouts as layouts
from ganexport import catalog, models_folder
from ganexport.cli import cli
from ganexport.export import wrappers
from ganexport.export.importers import entry
from ganexport.export.importers.source import ImportRefused


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty models folder, named by $GANEXPORT_MODELS as a user would."""
    models = tmp_path / "models"
    monkeypatch.setenv(models_folder.ENV, str(models))
    return models


def save(tmp_path, obj, name="latest_net_G_A.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def imported(path, name, fmt, **options):
    """import_model as the command calls it: every option of the format, None where not given."""
    logged = []
    entry.import_model(path, name, fmt, options, log=logged.append)
    return catalog.get(name), logged


def served(spec, images: np.ndarray) -> np.ndarray:
    """A translator's uint8 output through the serving wrapper the build exports, from the entry's weights."""
    from ganexport.training import checkpoint

    ckpt = checkpoint.load(spec.origin.weights)
    sig = spec.signatures()[0]
    with torch.no_grad():
        return wrappers.for_checkpoint(ckpt, sig)(torch.from_numpy(images)).numpy()


def reference(forward, images: np.ndarray, multiple: int) -> np.ndarray:
    """``forward`` (NCHW [-1, 1]) on images reflect-padded to ``multiple`` (numpy's reflection bounces as often
    as a pad needs), cropped back, as uint8."""
    n, h, w, _ = images.shape
    pad = ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0))
    x = torch.from_numpy(np.pad(images, pad, mode="reflect")).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        return layouts.to_uint8(forward(x)[:, :, :h, :w]).numpy()


def levels(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def photo(h: int, w: int, c: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, h, w, c), dtype=np.uint8)


def refused(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def assert_nothing_written(folder):
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


# --------------------------------------------------------------------------- pytorch-CycleGAN-and-pix2pix


@pytest.mark.parametrize("norm, dropout, stale", [("instance", False, False), ("instance", True, False),
                                                  ("batch", False, False), ("none", False, False),
                                                  ("instance", False, True)],
                         ids=["instance", "dropout", "batch", "none", "older-release"])
def test_a_resnet_generator_serves_what_its_layout_computes_at_an_odd_size(tmp_path, folder, norm, dropout, stale):
    state = layouts.resnet_state(ngf=2, n_blocks=6, norm=norm, dropout=dropout, stale=stale)
    spec, logged = imported(save(tmp_path, state), "h2z", "pytorch-cyclegan")
    assert spec.kind == "translate" and spec.origin.format == "pytorch-cyclegan"
    assert spec.hparams["full"]["netG"] == "resnet_6blocks" and spec.hparams["full"]["norm"] == norm
    assert spec.hparams["full"]["dropout"] == dropout
    assert any("dropped" in line and "running statistics" in line for line in logged) == stale
    images = photo(37, 53)
    got = served(spec, images)
    assert got.shape == images.shape
    state = {k: v for k, v in state.items() if "running" not in k or norm == "batch"}
    want = reference(lambda x: layouts.resnet_forward(state, x, 6, norm, dropout), images, 4)
    assert levels(got, want) <= 1


@pytest.mark.parametrize("netg, num_downs, norm", [("unet_256", 8, "batch"), ("unet_128", 7, "instance")])
def test_a_unet_pads_to_its_depth_and_crops_back_at_sides_that_are_no_multiple(tmp_path, folder, netg, num_downs,
                                                                                norm):
    state = layouts.unet_state(ngf=1, num_downs=num_downs, norm=norm)
    spec, _ = imported(save(tmp_path, state, "latest_net_G.pth"), "facades", "pytorch-cyclegan", netG=netg)
    assert spec.hparams["full"]["netG"] == netg
    for h, w in ((8, 8), (37, 53), (300, 20)):  # 300 pads to 512 for unet_256
        images = photo(h, w, seed=h)
        got = served(spec, images)
        assert got.shape == images.shape
        want = reference(lambda x: layouts.unet_forward(state, x, 1, num_downs, norm), images, 2 ** num_downs)
        assert levels(got, want) <= 1


def test_a_batch_norm_file_without_its_batch_counters_is_taken(tmp_path, folder):
    """PyTorch before 0.4.1 saved BatchNorm without num_batches_tracked; torch's own loading accepts such files."""
    state = layouts.unet_state(ngf=1, num_downs=7, norm="batch")
    old = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    assert len(old) < len(state)
    spec, _ = imported(save(tmp_path, old, "latest_net_G.pth"), "facades", "pytorch-cyclegan", netG="unet_128")
    images = photo(37, 53)
    want = reference(lambda x: layouts.unet_forward(state, x, 1, 7, "batch"), images, 2 ** 7)
    assert levels(served(spec, images), want) <= 1


def test_key_picks_one_generator_of_a_checkpoint_that_holds_two(tmp_path, folder):
    a, b = (layouts.resnet_state(ngf=2, n_blocks=1, seed=seed) for seed in (1, 2))
    path = save(tmp_path, {"netG_A": a, "netG_B": b, "epoch": 5}, "checkpoint.pth")
    with pytest.raises(ImportRefused) as e:
        imported(path, "h2z", "pytorch-cyclegan")
    assert "2 entries look like a pytorch-CycleGAN-and-pix2pix generator (netG_A, netG_B)" in refused(e)
    assert "--key" in str(e.value)
    spec, _ = imported(path, "h2z", "pytorch-cyclegan", key="netG_B")
    images = photo(9, 13)
    want = reference(lambda x: layouts.resnet_forward(b, x, 1, "instance", False), images, 4)
    assert levels(served(spec, images), want) <= 1


def test_a_flat_state_dict_of_a_whole_model_says_which_key_takes_the_generator(tmp_path, folder):
    """A training script's one state dict of every net ("generator.", "discriminator."): --key names the prefix."""
    generator = layouts.resnet_state(ngf=2, n_blocks=1)
    state = {**{f"generator.{k}": v for k, v in generator.items()},
             "discriminator.head.weight": torch.zeros(1, 4, 4, 4)}
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, state), "h2z", "pytorch-cyclegan")
    assert "not a pytorch-CycleGAN-and-pix2pix generator" in refused(e)
    assert "--key generator takes the keys under generator" in str(e.value)
    spec, _ = imported(save(tmp_path, state), "h2z", "pytorch-cyclegan", key="generator")
    images = photo(9, 13)
    want = reference(lambda x: layouts.resnet_forward(generator, x, 1, "instance", False), images, 4)
    assert levels(served(spec, images), want) <= 1


def test_a_grey_generator_serves_one_channel(tmp_path, folder):
    spec, _ = imported(save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1, nc=1)), "grey", "pytorch-cyclegan")
    sig = spec.signatures()[0]
    assert sig.inputs[0].shape == (-1, -1, 1) and sig.outputs[0].shape == (-1, -1, 1)
    assert served(spec, photo(9, 11, 1)).shape == (1, 9, 11, 1)


@pytest.mark.parametrize("flags, word", [(dict(ngf=64), "--ngf 64"), (dict(netG="resnet_9blocks"), "--netG"),
                                         (dict(norm="batch"), "--norm batch"), (dict(no_dropout=True), "--no_dropout")])
def test_a_flag_that_contradicts_the_weights_is_refused_in_one_line(tmp_path, folder, flags, word):
    path = save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=6, dropout=True))
    with pytest.raises(ImportRefused) as e:
        imported(path, "h2z", "pytorch-cyclegan", **flags)
    message = refused(e)
    assert word in message and "contradicts the weights" in message and "resnet_6blocks" in message
    assert_nothing_written(folder)


def test_flags_that_agree_with_the_weights_are_taken(tmp_path, folder):
    path = save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=9))
    spec, _ = imported(path, "h2z", "pytorch-cyclegan", netG="resnet_9blocks", ngf=2, norm="instance", no_dropout=True)
    assert spec.origin.options == {"netG": "resnet_9blocks", "ngf": 2, "norm": "instance", "no_dropout": True}


@pytest.mark.parametrize("flags, word", [(dict(netG="resnet_12blocks"), "--netG resnet_12blocks: unknown"),
                                         (dict(norm="layer"), "--norm layer: unknown")])
def test_an_unknown_netg_or_norm_is_refused(tmp_path, folder, flags, word):
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, layouts.resnet_state(n_blocks=1)), "h2z", "pytorch-cyclegan", **flags)
    assert word in refused(e)


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path, folder):
    state = layouts.resnet_state(ngf=2, n_blocks=2)
    missing = {k: v for k, v in state.items() if k != "model.4.weight"}
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, missing), "a", "pytorch-cyclegan")
    assert "missing keys model.4.weight" in refused(e)
    extra = {**state, "model.99.weight": torch.zeros(1), "head.bias": torch.zeros(1)}
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, extra), "a", "pytorch-cyclegan")
    assert "unexpected keys" in refused(e) and "model.99.weight" in str(e.value)
    wrong = {**state, "model.4.weight": torch.zeros(4, 2, 5, 5)}
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, wrong), "a", "pytorch-cyclegan")
    assert "model.4.weight is [4, 2, 5, 5], expected [4, 2, 3, 3]" in refused(e)
    assert_nothing_written(folder)


def test_non_finite_weights_are_refused(tmp_path, folder):
    state = layouts.resnet_state(ngf=2, n_blocks=1)
    state["model.1.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, state), "a", "pytorch-cyclegan")
    assert "non-finite" in refused(e) and "model.1.weight" in str(e.value)


def test_a_file_that_is_not_such_a_generator_says_what_it_holds(tmp_path, folder):
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, {"fc.weight": torch.zeros(2, 2)}), "a", "pytorch-cyclegan")
    assert "not a pytorch-CycleGAN-and-pix2pix generator" in refused(e) and "fc.weight" in str(e.value)


def _truncated(path):
    torch.save(layouts.resnet_state(n_blocks=1), path)
    path.write_bytes(path.read_bytes()[:-200])


def _torchscript(path):
    torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 4, 4)), str(path))


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (_truncated, "not a torch weights file, or truncated"),
    (lambda p: p.mkdir(), "is a folder"),
    (_torchscript, "is a TorchScript archive, not weights"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a torch weights file"),
    (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(2000)), "not a torch weights file"),  # a JPEG renamed
], ids=["empty", "truncated", "folder", "torchscript", "random bytes", "jpeg"])
def test_a_file_that_is_not_weights_is_told_apart_from_one_that_needs_code(tmp_path, folder, make, words):
    path = tmp_path / "latest_net_G_A.pth"
    make(path)
    with pytest.raises(ImportRefused) as e:
        imported(path, "a", "pytorch-cyclegan")
    assert refused(e).startswith(f"latest_net_G_A.pth: {words}") and "unpickled" not in str(e.value)
    assert_nothing_written(folder)


def test_a_safetensors_file_is_read_whatever_its_name(tmp_path, folder):
    from safetensors.torch import save_file

    save_file(layouts.resnet_state(ngf=2, n_blocks=1), str(tmp_path / "latest_net_G_A.pth"))
    spec, _ = imported(tmp_path / "latest_net_G_A.pth", "h2z", "pytorch-cyclegan")
    assert spec.kind == "translate"


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_file_that_needs_code_unpickled_is_refused_naming_it(tmp_path, folder):
    marker = tmp_path / "PWNED"
    path = save(tmp_path, {"model.1.weight": Payload(marker)})
    with pytest.raises(ImportRefused) as e:
        imported(path, "a", "pytorch-cyclegan")
    assert refused(e).startswith("latest_net_G_A.pth: refused: it needs code unpickled to load (it names io.open)")
    assert not marker.exists()
    assert_nothing_written(folder)


# --------------------------------------------------------------------------- the DCGAN tutorial


def test_a_dcgan_tutorial_checkpoint_dict_is_found_and_sized_from_its_weights(tmp_path, folder):
    g = layouts.dcgan_tutorial_generator(nz=8, ngf=2, nc=3)
    path = save(tmp_path, {"epoch": 5, "netG_state_dict": g.state_dict(),
                           "netD_state_dict": layouts.dcgan_tutorial_discriminator().state_dict(),
                           "G_losses": [1.5, 1.2]}, "checkpoint.pth")
    spec, _ = imported(path, "faces", "dcgan-tutorial")
    sig = spec.signatures()[0]
    assert spec.kind == "sample" and [t.name for t in sig.inputs] == ["z"] and sig.inputs[0].shape == (8,)
    assert sig.outputs[0].shape == (64, 64, 3)
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    from ganexport.training import checkpoint

    wrapper = wrappers.for_checkpoint(checkpoint.load(spec.origin.weights), sig)
    with torch.no_grad():
        got = wrapper(torch.from_numpy(z)).numpy()
        want = layouts.to_uint8(g.main(torch.from_numpy(z).reshape(3, 8, 1, 1))).numpy()
    assert levels(got, want) <= 1 and want.std() > 0


def test_a_dcgan_state_dict_and_a_named_key_work_too(tmp_path, folder):
    g = layouts.dcgan_tutorial_generator(nz=4, ngf=1, nc=1)
    spec, _ = imported(save(tmp_path, g.state_dict(), "netG_epoch_24.pth"), "plain", "dcgan-tutorial")
    assert spec.signatures()[0].outputs[0].shape == (64, 64, 1)
    nested = save(tmp_path, {"models": {"G": g.state_dict()}}, "nested.pth")
    spec, _ = imported(nested, "nested", "dcgan-tutorial", key="models.G")
    assert spec.signatures()[0].inputs[0].shape == (4,)


def test_a_checkpoint_with_numpy_figures_and_the_runs_options_beside_the_weights_imports(tmp_path, folder):
    """Training scripts save a numpy loss, numpy arrays and argparse's Namespace beside the weights: data,
    rebuilt without running code the file names (a payload beside them is still refused: the test below)."""
    import argparse

    g = layouts.dcgan_tutorial_generator(nz=4, ngf=1).state_dict()
    path = save(tmp_path, {"netG_state_dict": g, "loss_G": np.float64(0.7), "losses": np.arange(5, dtype=np.float32),
                           "args": argparse.Namespace(lr=2e-4, nz=4), "epoch": 3}, "dcgan_checkpoint.pth")
    spec, _ = imported(path, "faces", "dcgan-tutorial")
    assert spec.signatures()[0].inputs[0].shape == (4,)


def test_dcgan_refuses_two_generators_and_a_dict_without_one(tmp_path, folder):
    g = layouts.dcgan_tutorial_generator(nz=4, ngf=1).state_dict()
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, {"netG": g, "ema": g}), "a", "dcgan-tutorial")
    assert "2 entries look like a DCGAN-tutorial generator" in refused(e) and "--key" in str(e.value)
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, {"netD": layouts.dcgan_tutorial_discriminator().state_dict()}), "a", "dcgan-tutorial")
    assert "no entry looks like a DCGAN-tutorial generator" in refused(e)
    with pytest.raises(ImportRefused) as e:
        imported(save(tmp_path, {"netG": g}), "a", "dcgan-tutorial", key="generator")
    assert "no entry --key 'generator'" in refused(e) and "netG" in str(e.value)
    assert_nothing_written(folder)


# --------------------------------------------------------------------------- any module


MODULE = '''
import torch
from torch import nn


class Sketcher(nn.Module):
    """Pixels 0..1 in and out; its sides must be multiples of 8."""

    def __init__(self, channels=3, width=4):
        super().__init__()
        self.down = nn.Conv2d(channels, width, 4, stride=8, padding=0)
        self.up = nn.ConvTranspose2d(width, channels, 8, stride=8)

    def forward(self, x):
        return torch.sigmoid(self.up(torch.relu(self.down(x))))


class Painter(nn.Module):
    def __init__(self, nz=6):
        super().__init__()
        self.fc = nn.ConvTranspose2d(nz, 3, 8)

    def forward(self, z):
        return torch.tanh(self.fc(z))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)[:, :12])
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import user_nets

    return importlib.reload(user_nets)


def test_a_module_translator_with_its_own_range_and_multiple(tmp_path, folder, user_module):
    torch.manual_seed(0)
    net = user_module.Sketcher().eval()
    path = save(tmp_path, {"model": net.state_dict(), "step": 10}, "sketcher.pt")
    spec, logged = imported(path, "sketch", "module", module="user_nets:Sketcher", kind="translate",
                            input_range="0,1", output_range="0,1", multiple=8)
    assert any("importable" in line for line in logged)
    images = photo(21, 13)
    got = served(spec, images)

    def forward(x):  # the wrapper's [-1, 1] in the module's 0..1, and back
        return net((x + 1) / 2) * 2 - 1

    assert levels(got, reference(forward, images, 8)) <= 1


@pytest.mark.parametrize("module, output_range, warned", [
    ("Sketcher", None, "--output-range 0,1"),  # a sigmoid read as -1..1
    ("Sketcher", "0,1", None),
    ("Painter", "0,1", "--output-range -1,1"),  # a tanh read as 0..1
    ("Painter", None, None),
])
def test_an_output_range_the_trial_output_contradicts_is_warned_about(tmp_path, folder, user_module, module,
                                                                       output_range, warned):
    torch.manual_seed(0)
    net = getattr(user_module, module)().eval()
    path = save(tmp_path, net.state_dict(), "net.pth")
    options = dict(kind="translate", multiple=8) if module == "Sketcher" else dict(kind="sample", latent=6,
                                                                                    sample_shape="6,1,1")
    _, logged = imported(path, "m", "module", module=f"user_nets:{module}", output_range=output_range, **options)
    warnings = [line for line in logged if "warning" in line]
    assert (warned in warnings[0]) if warned else not warnings, logged


def test_a_module_sampler_from_safetensors_with_a_sample_shape(tmp_path, folder, user_module):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = user_module.Painter().eval()
    save_file({f"ema.{k}": v for k, v in net.state_dict().items()}, str(tmp_path / "painter.safetensors"))
    spec, _ = imported(tmp_path / "painter.safetensors", "painter", "module", module="user_nets:Painter",
                       kind="sample", latent=6, sample_shape="6,1,1", key="ema")
    sig = spec.signatures()[0]
    assert sig.inputs[0].shape == (6,) and sig.outputs[0].shape == (8, 8, 3)


@pytest.mark.parametrize("options, words", [
    (dict(kind="sample", latent=12), "--kind sample contradicts the module"),
    (dict(kind="translate"), "--kind translate contradicts the module"),
])
def test_a_kind_the_modules_output_contradicts_is_refused(tmp_path, folder, user_module, options, words):
    path = save(tmp_path, user_module.Classifier().state_dict(), "classifier.pth")
    with pytest.raises(ImportRefused) as e:
        imported(path, "a", "module", module="user_nets:Classifier", **options)
    assert words in refused(e)
    assert_nothing_written(folder)


@pytest.mark.parametrize("options, words", [
    (dict(module="no_such_package.nets:G", kind="translate"), "no_such_package.nets does not import"),
    (dict(module="user_nets:Missing", kind="translate"), "user_nets has no Missing"),
    (dict(module="user_nets:Sketcher", kind="translate", kwargs="{width: 4}"), "--kwargs: not JSON"),
    (dict(module="user_nets:Sketcher", kind="translate", kwargs='{"depth": 4}'), "the factory fails"),
    (dict(module="user_nets:Sketcher"), "needs --kind translate or sample"),
    (dict(module="user_nets:Painter", kind="sample"), "needs --latent"),
    (dict(module="user_nets:Painter", kind="sample", latent=6, sample_shape="5,1,1"), "holds 5 values"),
    (dict(module="user_nets:Sketcher", kind="translate", latent=6), "--latent is for --kind sample"),
    (dict(module="user_nets:Sketcher", kind="translate", input_range="0,255"), "--input-range 0,255"),
])
def test_module_options_are_checked_in_one_line(tmp_path, folder, user_module, options, words):
    path = save(tmp_path, user_module.Sketcher().state_dict(), "w.pth")
    with pytest.raises(ImportRefused) as e:
        imported(path, "a", "module", **options)
    assert words in refused(e)
    assert_nothing_written(folder)


# --------------------------------------------------------------------------- the models folder and the catalog


def test_the_entry_records_its_source_and_becomes_a_catalog_model(tmp_path, folder):
    path = save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1))
    imported(path, "h2z", "pytorch-cyclegan")
    record = json.loads((folder / "h2z" / models_folder.ENTRY_FILE).read_text())
    assert record["source"] == {"file": "latest_net_G_A.pth", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert record["format"] == "pytorch-cyclegan" and record["kind"] == "translate"
    assert (folder / "h2z" / models_folder.WEIGHTS_FILE).is_file()
    assert "h2z" in catalog.models() and "h2z" not in catalog.MODELS
    spec, sig = catalog.triton_models(("onnxruntime", "torchscript"))["h2z_torchscript"]
    assert spec.name == "h2z" and (sig.inputs[0].name, sig.outputs[0].name) == ("image", "translated")


def test_a_name_of_the_catalog_or_a_taken_one_is_refused(tmp_path, folder):
    path = save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1))
    for name, words in (("cyclegan_a2b", "own catalog"), ("dcgan_torchscript", "own catalog"),
                        ("DCGAN", "dcgan is a model of ganexport's own catalog"), ("all", "means every model"),
                        ("../x", "letters, digits")):
        with pytest.raises(models_folder.EntryError, match=words):
            imported(path, name, "pytorch-cyclegan")
    imported(path, "h2z", "pytorch-cyclegan")
    with pytest.raises(models_folder.EntryError, match="--replace"):
        imported(path, "h2z", "pytorch-cyclegan")
    for name in ("h2z_torchscript", "H2Z"):  # one folder on a file system that ignores case
        with pytest.raises(models_folder.EntryError, match="h2z"):
            imported(path, name, "pytorch-cyclegan")
    entry.import_model(path, "h2z", "pytorch-cyclegan", {"ngf": 2}, replace=True, log=lambda m: None)
    assert catalog.get("h2z").origin.options == {"ngf": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["h2z"]  # no staging or replaced folders left


def test_two_imports_of_one_name_at_once_cannot_both_win(folder):
    """The name is checked before the (slow) conversion, so two imports of one name can both pass the check:
    the entry installed first is kept and the other refused, unless it asked to --replace."""
    def install(text: str, **how) -> None:
        staged = models_folder.staging_dir(folder)
        try:
            (staged / "marker").write_text(text)
            models_folder.install(staged, "h2z", folder, **how)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    install("the first import")
    with pytest.raises(models_folder.EntryError, match="appeared while this import ran"):
        install("the second import")
    assert (folder / "h2z" / "marker").read_text() == "the first import"
    install("a replacement", replace=True)
    assert (folder / "h2z" / "marker").read_text() == "a replacement"
    assert sorted(p.name for p in folder.iterdir()) == ["h2z"]


def test_an_entry_that_cannot_be_read_is_skipped_and_listed(tmp_path, folder):
    imported(save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1)), "good", "pytorch-cyclegan")
    (folder / "broken").mkdir()
    (folder / "broken" / models_folder.ENTRY_FILE).write_text("{not json")
    outside = json.loads((folder / "good" / models_folder.ENTRY_FILE).read_text())
    outside.update(name="evil", nets={"generator": "os:system"})
    (folder / "evil").mkdir()
    (folder / "evil" / models_folder.ENTRY_FILE).write_text(json.dumps(outside))
    (folder / "evil" / models_folder.WEIGHTS_FILE).write_bytes(b"")
    assert set(catalog.imported_models()) == {"good"}
    out = CliRunner().invoke(cli, ["models"]).output
    assert "good  (imported, format pytorch-cyclegan, from latest_net_G_A.pth" in out
    assert "broken  (cannot be read" in out and "evil  (cannot be read" in out and "os:system" in out


def test_the_import_command_says_one_line_exits_2_and_writes_nothing(tmp_path, folder):
    path = save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1))
    runner = CliRunner()
    for args, words in ((["--format", "pytorch-cyclegan", "--ngf", "3"], "--ngf 3 contradicts"),
                        (["--format", "caffe"], "--format caffe: unknown"),
                        (["--format", "pytorch-cyclegan", "--module", "x:y"], "--module is an option of --format "
                                                                              "module, not of pytorch-cyclegan")):
        r = runner.invoke(cli, ["import", str(path), "--name", "h2z", *args])
        assert r.exit_code == 2, r.output
        assert r.output.count("\n") == 1 and words in r.output, r.output
    assert_nothing_written(folder)
    r = runner.invoke(cli, ["import", str(path), "--name", "h2z", "--format", "pytorch-cyclegan"])
    assert r.exit_code == 0, r.output
    assert "image UINT8 [-1, -1, 3] -> translated UINT8 [-1, -1, 3]" in r.output
    assert "h2z" in runner.invoke(cli, ["build", "--help"]).output  # --model takes it now


def test_the_models_folder_is_the_working_directorys_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(models_folder.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    imported(save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1)), "here", "pytorch-cyclegan")
    assert (tmp_path / "models" / "here" / models_folder.ENTRY_FILE).is_file()
    assert catalog.get("here").origin.weights == str(models_folder.DEFAULT_DIR / "here" / models_folder.WEIGHTS_FILE)


def test_the_demo_offers_imported_models_in_their_tabs_saying_where_they_came_from(tmp_path, folder):
    from ganexport.demo.tabs import DemoModel, catalog_endpoints

    imported(save(tmp_path, layouts.resnet_state(ngf=2, n_blocks=1)), "h2z", "pytorch-cyclegan")
    g = layouts.dcgan_tutorial_generator(nz=4, ngf=1)
    imported(save(tmp_path, {"netG_state_dict": g.state_dict()}, "dcgan.pth"), "faces", "dcgan-tutorial")
    samplers, translators = catalog_endpoints()
    assert "faces" in samplers and "h2z" in translators
    served = catalog.triton_models()
    translator = DemoModel("h2z", served["h2z"][1], served["h2z"][0])  # nothing published with it (a remote Triton)
    assert translator.tabs == ("translate",) and not translator.shows_filter_target  # input | output, no target
    assert "imported from `latest_net_G_A.pth` (format pytorch-cyclegan)" in translator.describe()
    published = {"imported": {"format": "dcgan-tutorial", "source": "release.pth", "sha256": "0" * 64}}
    sampler = DemoModel("faces", served["faces"][1], served["faces"][0], published)
    assert sampler.tabs == ("sample",) and "imported from `release.pth` (format dcgan-tutorial)" in sampler.describe()
