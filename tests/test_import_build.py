"""Imported models go through the very build, parity gate, publishing and serving of the catalog's own: a
pytorch-CycleGAN-and-pix2pix ResNet and U-Net, a DCGAN-tutorial generator and a module, each built by
``ganexport build --model NAME`` with no other step, compared end to end with the forward pass written
from its layout (tests/import_layouts.py), and a module one runtime cannot take refused or published alone.

Slow: every build exports ONNX and TorchScript and runs parity (seconds to a minute each on 2 cores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import import_layouts as layouts
from ganexport import models_folder
from ganexport.cli import cli
from ganexport.repository import latest, read_parity, read_signature
from ganexport.serving.backends import connect

pytestmark = pytest.mark.slow

RESNET = dict(ngf=2, n_blocks=6, norm="instance")
UNET = dict(ngf=1, num_downs=8, norm="batch")

BRANCHY = '''
import torch
from torch import nn


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot follow it, TorchScript's compiler can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        if bool(x.mean() > 0):
            return torch.tanh(self.conv(x))
        return -torch.tanh(self.conv(x))


class Plain(Branchy):
    def forward(self, x):
        return torch.tanh(self.conv(x))
'''


def run(*args: str, ok: bool = True):
    r = CliRunner().invoke(cli, list(args))
    assert (r.exit_code == 0) == ok, r.output
    return r


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A models folder with a ResNet, a U-Net and a DCGAN generator imported and built into one repository."""
    root = tmp_path_factory.mktemp("imported")
    repo = root / "repo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(models_folder.ENV, str(root / "models"))
        mp.syspath_prepend(str(root))
        (root / "user_branchy.py").write_text(BRANCHY)
        resnet, unet = layouts.resnet_state(**RESNET), layouts.unet_state(**UNET)
        torch.save(resnet, root / "latest_net_G_A.pth")
        torch.save(unet, root / "latest_net_G.pth")
        g = layouts.dcgan_tutorial_generator(nz=8, ngf=2)
        torch.save({"netG_state_dict": g.state_dict(), "epoch": 3}, root / "dcgan.pth")
        run("import", str(root / "latest_net_G_A.pth"), "--name", "h2z", "--format", "pytorch-cyclegan")
        run("import", str(root / "latest_net_G.pth"), "--name", "facades", "--format", "pytorch-cyclegan",
            "--netG", "unet_256", "--norm", "batch")
        run("import", str(root / "dcgan.pth"), "--name", "faces", "--format", "dcgan-tutorial")
        logs = {name: run("build", "--model", name, "--repository", str(repo)).output
                for name in ("h2z", "facades", "faces")}
        yield dict(root=root, repo=repo, resnet=resnet, unet=unet, dcgan=g, logs=logs, mp=mp)


def test_each_is_published_under_its_name_with_its_kinds_signature_and_its_source(world):
    repo = world["repo"]
    for name, (inp, out) in {"h2z": ("image", "translated"), "facades": ("image", "translated"),
                             "faces": ("z", "image")}.items():
        assert "-> pass" in world["logs"][name] and "FAIL" not in world["logs"][name]
        for published in (name, f"{name}_torchscript"):
            version = latest(repo, published)
            assert version is not None and version.name == "1"
            sig = read_signature(version)
            assert ([t.name for t in sig.inputs], [t.name for t in sig.outputs]) == ([inp], [out])
            report = read_parity(version)
            assert report["passed"] and report["source"]["imported"]["format"] in ("pytorch-cyclegan",
                                                                                    "dcgan-tutorial")
    sizes = {tuple(case["image"][1:3]) for case in read_parity(latest(repo, "facades"))["inputs_tried"]}
    assert (37, 53) in sizes and (131, 257) in sizes  # the U-Net at sides no multiple of 256


@pytest.mark.parametrize("name", ["h2z", "facades"])
def test_a_published_translator_gives_what_its_layout_computes_at_an_odd_size(world, name):
    images = np.random.default_rng(3).integers(0, 256, (2, 45, 77, 3), dtype=np.uint8)
    with connect("onnxruntime", repository=world["repo"]) as backend:
        got = backend.translate(name, images)
    if name == "h2z":
        forward, multiple = (lambda x: layouts.resnet_forward(world["resnet"], x, RESNET["n_blocks"],
                                                              RESNET["norm"])), 4
    else:
        forward, multiple = (lambda x: layouts.unet_forward(world["unet"], x, UNET["ngf"], UNET["num_downs"],
                                                            UNET["norm"])), 2 ** UNET["num_downs"]
    pad = ((0, 0), (0, -45 % multiple), (0, -77 % multiple), (0, 0))
    x = torch.from_numpy(np.pad(images, pad, mode="reflect")).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = layouts.to_uint8(forward(x)[:, :, :45, :77]).numpy()
    assert got.shape == images.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_published_sampler_draws_what_the_tutorials_generator_draws(world):
    z = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    with connect("torchscript", repository=world["repo"]) as backend:
        got = backend.sample("faces_torchscript", z)
    with torch.no_grad():
        want = layouts.to_uint8(world["dcgan"].main(torch.from_numpy(z).reshape(5, 8, 1, 1))).numpy()
    assert got.shape == (5, 64, 64, 3) and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_verify_checks_an_imported_model_against_its_entry(world):
    out = run("verify", "--model", "h2z", "--repository", str(world["repo"])).output
    assert "models/h2z/weights.safetensors (the one this repository was built from)" in out
    assert "h2z: version 1: ok" in out and "h2z_torchscript: version 1: ok" in out


def test_a_module_one_runtime_cannot_take_is_refused_then_published_for_the_other_alone(world):
    root, repo = world["root"], world["repo"]
    from user_branchy import Branchy, Plain

    torch.manual_seed(0)
    torch.save(Plain().state_dict(), root / "plain.pth")
    run("import", str(root / "plain.pth"), "--name", "odd", "--format", "module", "--module", "user_branchy:Plain",
        "--kind", "translate")
    run("build", "--model", "odd", "--repository", str(repo))
    before = json.loads((latest(repo, "odd") / "parity.json").read_text())
    torch.save(Branchy().state_dict(), root / "branchy.pth")
    run("import", str(root / "branchy.pth"), "--name", "odd", "--format", "module", "--module",
        "user_branchy:Branchy", "--kind", "translate", "--replace")
    r = run("build", "--model", "odd", "--repository", str(repo), ok=False)
    error = r.output.splitlines()[-1]
    assert r.exit_code == 2 and error.startswith("error: build of odd refused") and "Traceback" not in r.output
    assert "onnxruntime cannot take it" in error and "data-dependent" in error
    assert "build with --runtimes torchscript" in error
    # the failed build left the working model serving, untouched
    assert latest(repo, "odd").name == "1" and json.loads((latest(repo, "odd") / "parity.json").read_text()) == before
    assert latest(repo, "odd_torchscript").name == "1"
    out = run("build", "--model", "odd", "--repository", str(repo), "--runtimes", "torchscript").output
    assert "odd_torchscript: published version 2" in out and "parity torchscript" in out
    assert "parity onnxruntime" not in out
    assert latest(repo, "odd").name == "1"  # the ONNX model was not asked for, so it is as it was
    assert "note: odd (version 1) was built from another checkpoint and still serves it (this build was for " \
           "torchscript alone)" in out, out  # said, so that nobody takes it for the new weights


def test_the_parity_gate_refuses_an_imported_model_whose_export_drifts(world, monkeypatch):
    from conftest import perturbing_export
    from ganexport.export import onnx_export

    repo = world["repo"]
    before = (latest(repo, "faces") / "model.onnx").read_bytes()
    monkeypatch.setattr(onnx_export, "export_onnx", perturbing_export(onnx_export.export_onnx))
    r = run("build", "--model", "faces", "--repository", str(repo), ok=False)
    error = r.output.splitlines()[-1]
    assert error.startswith("error: build of faces refused, nothing published") and "onnxruntime disagrees" in error
    assert latest(repo, "faces").name == "1" and (latest(repo, "faces") / "model.onnx").read_bytes() == before
