"""Shared fixtures: a private cache so tests never touch the user's, and tiny-run helpers.

Tiers: ``make test`` runs everything; ``make test-fast`` (``-m "not integration and not slow"``) leaves
out what starts Triton, Gradio or Chromium (``integration``, set per module) and what needs every model
exported and published first (``slow``, set here for tests that use the ``published`` fixture) or trains
beyond smoke steps (``slow``, set on the test).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

from ganexport import catalog


# Fixtures whose set-up makes a test slow: `published` exports and publishes every model of the catalog.
SLOW_FIXTURES = {"published"}


def pytest_collection_modifyitems(config, items):
    no_gpu = None
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu"):
            if no_gpu is None:
                no_gpu = _why_no_gpu()
            if no_gpu:
                item.add_marker(pytest.mark.skip(reason=no_gpu))


def _why_no_gpu() -> str | None:
    """None when CUDA is usable by torch and by ONNX Runtime, else the reason gpu-marked tests skip."""
    try:
        import torch

        from ganexport.serving.backends import cuda_usable
    except ImportError as e:
        return f"gpu test: {e.name} is not installed"
    if not torch.cuda.is_available():
        return "gpu test: no CUDA device is usable here (torch.cuda.is_available() is False)"
    if not cuda_usable():
        return "gpu test: ONNX Runtime has no CUDA execution provider here (install onnxruntime-gpu)"
    return None


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Judges trained during tests (digits: seconds) go to a throwaway cache."""
    old = os.environ.get("GANEXPORT_CACHE")
    os.environ["GANEXPORT_CACHE"] = str(tmp_path_factory.mktemp("ganexport-cache"))
    yield
    if old is None:
        os.environ.pop("GANEXPORT_CACHE", None)
    else:
        os.environ["GANEXPORT_CACHE"] = old


# Smoke data: cyclegan trains on a few photo2sketch crops, at 32 px (a translator is fully convolutional: the size
# changes no name or shape it serves, and 96 px crops cost 9 times the time); a model that edits attributes on a few
# faces drawn for the test (the data set that labels them); the others on scikit-learn's 8x8 digits (instant).
SMOKE_DATA = {name: ("photo2sketch" if spec.two_domains else spec.dataset if spec.edits else "digits")
              for name, spec in catalog.MODELS.items()}
SMOKE_IMAGE_SIZE = {name: 32 for name, spec in catalog.MODELS.items() if spec.two_domains}


def smoke_config(model: str, out, **kw):
    """The TrainConfig of a smoke run of ``model`` on its smoke data, into ``out``."""
    from ganexport.training.loop import TrainConfig

    kw = {"limit": 64, "image_size": SMOKE_IMAGE_SIZE.get(model), **kw}
    return TrainConfig(model=model, profile="smoke", dataset=SMOKE_DATA[model], out=str(out), progress=False, **kw)


class TinyCheckpoints(Mapping):
    """model -> checkpoint.safetensors of a few smoke steps (so BatchNorm running stats are real: parity must not
    look better than it is), trained the first time a test asks for that model, once per session."""

    def __init__(self, out):
        self.out, self.paths = out, {}

    def __getitem__(self, model: str):
        if model not in catalog.MODELS:
            raise KeyError(model)
        if model not in self.paths:
            from ganexport.training.loop import train

            self.paths[model] = train(smoke_config(model, self.out, limit=32)) / "checkpoint.safetensors"
        return self.paths[model]

    def __iter__(self):
        return iter(catalog.MODELS)

    def __len__(self) -> int:
        return len(catalog.MODELS)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, _private_cache):
    return TinyCheckpoints(tmp_path_factory.mktemp("runs"))


def _diffusion_models() -> list[str]:
    return [name for name, spec in catalog.MODELS.items() if spec.kind == "diffuse"]


@pytest.fixture(scope="session")
def diffusion_published(tmp_path_factory, tiny_checkpoints):
    """(repository, {model: [(triton name, version), ...]}) of the diffusion models alone, on tiny nets: what
    the fast tier's diffusion tests serve, and what ``published`` takes its diffusion models from."""
    from ganexport.export import build as pipeline

    repo = tmp_path_factory.mktemp("diffusion-published") / "repo"
    versions = {m: pipeline.build(m, checkpoint_path=tiny_checkpoints[m], repo=repo, log=lambda msg: None)
                for m in _diffusion_models()}
    return repo, versions


@pytest.fixture(scope="session")
def published(tmp_path_factory, tiny_checkpoints, diffusion_published):
    """(repository, {model: [(triton name, version), ...]}): every model built once, on tiny nets
    (the diffusion models copied from ``diffusion_published``, built there)."""
    import shutil

    from ganexport.export import build as pipeline

    # Tests that change files work on a copy (shutil.copytree).
    repo = tmp_path_factory.mktemp("published") / "repo"
    versions = {}
    for m, ckpt in tiny_checkpoints.items():
        if m in diffusion_published[1]:
            for name, _ in diffusion_published[1][m]:
                shutil.copytree(diffusion_published[0] / name, repo / name)
            versions[m] = diffusion_published[1][m]
        else:
            versions[m] = pipeline.build(m, checkpoint_path=ckpt, repo=repo, log=lambda msg: None)
    return repo, versions


@pytest.fixture(scope="module")
def onnx_triton(published):
    """The real Triton (default host 127.0.0.1, free ports) on the ONNX Runtime models of ``published``.

    One per test module that asks for it. The _torchscript twins are left out, as `ganexport serve`
    does by default: each of their stubs imports torch (about 250 MB and seconds per model).
    """
    from ganexport.repository import default_models
    from ganexport.serving.triton_server import TritonServer, free_port

    server = TritonServer(published[0], models=default_models(published[0]), http_port=free_port(),
                          grpc_port=free_port(), metrics_port=free_port())
    try:
        yield server.start(timeout=180)
    finally:
        server.stop()


def perturbing_export(real_export):
    """``onnx_export.export_onnx`` that writes the file, then nudges one weight of it by 0.05: a tampered
    export the parity gate must refuse (monkeypatch it in)."""
    import onnx

    def export_then_perturb(module, sig, example, path, **kw):
        real_export(module, sig, example, path, **kw)
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        values = onnx.numpy_helper.to_array(weight).copy()
        values.flat[0] += 0.05
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
        onnx.save(model, str(path))
        return path

    return export_then_perturb


# Kernels run at another batch size (a request merged with others by Triton's batcher, or a row of a batch against a
# request of its own) may sum in another order, and their rounding depends on the CPU (AVX2 or AVX-512 kernels): a
# value can cross a uint8 level. A request answered with another request's image differs by far more.
BATCH_ROUNDING_LEVELS = 1


def assert_rows_are_their_own(got, want) -> None:
    """Each image of ``got`` (uint8, one per request) within BATCH_ROUNDING_LEVELS of the same row of ``want``, and
    nearer to it than to any other row of ``want``: the right image went back to each caller."""
    import numpy as np

    got, want = [np.asarray(g).astype(np.int64) for g in got], [np.asarray(w).astype(np.int64) for w in want]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"row {i}: shape {g.shape}, expected {w.shape}"
        levels = int(np.abs(g - w).max())
        assert levels <= BATCH_ROUNDING_LEVELS, f"row {i} is {levels} uint8 levels from its own image"
        distances = [int(np.abs(g - other).sum()) for other in want]
        assert distances[i] == min(distances), f"row {i} is nearer another request's image: {distances}"
