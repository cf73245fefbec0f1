"""Imported models served by the real Triton: a pytorch-CycleGAN-and-pix2pix ResNet translator and a
DCGAN-tutorial sampler, imported and built by the commands, then asked over HTTP with tritonclient
under their own names, with the signature of their kind, against forward passes written from their
layouts (tests/import_layouts.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import import_layouts as layouts
from ganexport import models_folder
from ganexport.cli import cli
from ganexport.repository import default_models, latest, read_signature
from ganexport.serving.triton_server import TritonServer, free_port
from needs_triton import httpclient  # skips this module without Triton

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESNET = dict(ngf=2, n_blocks=2, norm="instance", dropout=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported-triton")
    repo = root / "repo"
    state, g = layouts.resnet_state(**RESNET), layouts.dcgan_tutorial_generator(nz=8, ngf=2)
    torch.save(state, root / "latest_net_G_A.pth")
    torch.save({"netG_state_dict": g.state_dict(), "netD_state_dict": layouts.dcgan_tutorial_discriminator()
                .state_dict()}, root / "checkpoint.pth")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(models_folder.ENV, str(root / "models"))
        for args in (["import", str(root / "latest_net_G_A.pth"), "--name", "h2z", "--format", "pytorch-cyclegan"],
                     ["import", str(root / "checkpoint.pth"), "--name", "faces", "--format", "dcgan-tutorial"],
                     ["build", "--model", "h2z", "--repository", str(repo), "--runtimes", "onnxruntime"],
                     ["build", "--model", "faces", "--repository", str(repo), "--runtimes", "onnxruntime"]):
            r = runner.invoke(cli, args)
            assert r.exit_code == 0, r.output
    server = TritonServer(repo, models=default_models(repo), http_port=free_port(), grpc_port=free_port(),
                          metrics_port=free_port())
    try:
        yield server.start(timeout=180), repo, state, g
    finally:
        server.stop()


def _infer(server, model: str, name: str, value: np.ndarray, dtype: str, out: str) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        return client.infer(model, [tensor]).as_numpy(out)
    finally:
        client.close()


def test_triton_translates_with_the_imported_generator_keeping_an_odd_size(served):
    server, repo, state, _ = served
    sig = read_signature(latest(repo, "h2z"))
    assert sig.name == "h2z" and sig.kind == "translate"
    images = np.random.default_rng(5).integers(0, 256, (2, 39, 61, 3), dtype=np.uint8)
    got = _infer(server, "h2z", sig.inputs[0].name, images, sig.inputs[0].dtype, sig.outputs[0].name)
    x = torch.from_numpy(np.pad(images, ((0, 0), (0, 1), (0, 3), (0, 0)), mode="reflect"))
    with torch.no_grad():
        want = layouts.to_uint8(layouts.resnet_forward(state, x.permute(0, 3, 1, 2).float() / 127.5 - 1,
                                                       RESNET["n_blocks"], RESNET["norm"], RESNET["dropout"])
                                [:, :, :39, :61]).numpy()
    assert got.shape == images.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_triton_samples_with_the_imported_dcgan_generator(served):
    server, repo, _, g = served
    sig = read_signature(latest(repo, "faces"))
    assert sig.name == "faces" and sig.kind == "sample" and sig.inputs[0].shape == (8,)
    z = np.random.default_rng(6).standard_normal((4, 8)).astype(np.float32)
    got = _infer(server, "faces", sig.inputs[0].name, z, sig.inputs[0].dtype, sig.outputs[0].name)
    with torch.no_grad():
        want = layouts.to_uint8(g.main(torch.from_numpy(z).reshape(4, 8, 1, 1))).numpy()
    assert got.shape == (4, 64, 64, 3) and np.abs(got.astype(int) - want.astype(int)).max() <= 1
