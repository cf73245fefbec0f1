"""The code's GPU paths, on a CUDA machine: ONNX Runtime's CUDA execution provider, TorchScript on CUDA,
training on --device cuda. Each test is marked ``gpu`` and skipped (with the reason) where no CUDA device
is usable, so the CPU suite still runs everything else.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_onnxruntime_backend_runs_on_the_cuda_provider_and_matches_the_cpu(published):
    from ganexport.serving.backends import LocalBackend

    repo, _ = published
    z = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    with LocalBackend(repo) as gpu:
        sig = gpu.metadata("dcgan")
        z = z[:, :sig.inputs[0].shape[0]]
        on_gpu = gpu.sample("dcgan", z)
        assert gpu.providers[0] == "CUDAExecutionProvider", gpu.providers
    import onnxruntime as ort

    from ganexport.repository import MODEL_FILES, latest

    cpu = ort.InferenceSession(str(latest(repo, "dcgan") / MODEL_FILES["onnxruntime"]),
                               providers=["CPUExecutionProvider"])
    on_cpu = cpu.run(None, {sig.inputs[0].name: z})[0]
    assert np.abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 1  # uint8 levels


def test_torchscript_backend_runs_on_cuda_and_matches_the_cpu(published):
    import torch

    from ganexport.repository import MODEL_FILES, latest
    from ganexport.serving.backends import LocalBackend

    repo, _ = published
    image = np.random.default_rng(1).integers(0, 256, (1, 40, 52, 3), dtype=np.uint8)
    with LocalBackend(repo, runtime="torchscript") as gpu:
        on_gpu = gpu.translate("cyclegan_a2b_torchscript", image)
    module = torch.jit.load(str(latest(repo, "cyclegan_a2b_torchscript") / MODEL_FILES["torchscript"]),
                            map_location="cpu")
    on_cpu = module(torch.from_numpy(image)).numpy()
    assert on_gpu.shape == image.shape
    assert np.abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 1


def test_training_on_cuda_writes_a_checkpoint_that_loads_on_the_cpu(tmp_path):
    from ganexport.training import checkpoint
    from ganexport.training.loop import TrainConfig, train

    run = train(TrainConfig(model="dcgan", profile="smoke", dataset="digits", device="cuda", out=str(tmp_path),
                            limit=32, progress=False))
    meta = checkpoint.read_meta(run)
    assert meta["device"].startswith("cuda")
    net = checkpoint.load(run).build("generator")
    assert next(net.parameters()).device.type == "cpu"
