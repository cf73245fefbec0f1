"""Imported diffusers pipelines served by the real Triton, against diffusers' own output.

The example of docs/import.md (``<!-- import-example: diffusers -->``: import a folder saved by diffusers, build,
serve, a tritonclient request) runs verbatim as one bash script in an empty folder holding a DDPMPipeline
saved there, with ports handed to ``serve`` through $GANEXPORT_*_PORT. What it built is then served again,
beside a class-conditional pipeline imported with ``--null-class``, and their walks through Triton at 10 and
50 steps are held to diffusers' (DDIMPipeline itself where it can take the case): within 2 uint8 levels,
at most 1% of the values more than one level apart. Every case is first checked for its conditioning
(tests/diffusers_cases.py), the example's UNet trained a few dozen steps so that its 32x32 walk is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import diffusers_cases as cases
from ganexport import models_folder
from ganexport.cli import cli
from ganexport.repository import PARITY_FILE, latest
from ganexport.serving.backends import connect
from ganexport.serving.triton_server import TritonServer, free_port
from needs_triton import httpclient  # skips this module without Triton

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "import.md"
# The example's folder: a DDPMPipeline (linear betas, epsilon, leading spacing, clipped x0), 32x32 RGB.
BUTTERFLIES = cases.Case("ddpm-butterflies-32", {}, ("timestep_spacing", "trailing"), pipeline="DDPMPipeline",
                         scheduler_class="DDPMScheduler", size=(32, 32), widths=(4, 8), seed=0, train_steps=40)
GUIDED = cases.CASES[-1]  # class-conditional, 1 channel, 8x8, null class 2, guidance 3
MAX_LEVELS, MAX_BEYOND_ONE = 2, 0.01


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets on a shared 2-core machine: a second torch thread only waits for the other processes' cores
    (the example's commands get OMP_NUM_THREADS=1 for the same reason)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def example() -> str:
    match = re.search(r"<!-- import-example: diffusers -->\n```sh\n(.*?)```", PAGE.read_text(), re.S)
    assert match, f"{PAGE.name} has no diffusers import example"
    return match.group(1)


def well_conditioned(case: cases.Case, unet, config, x) -> None:
    for steps in (10, 50):
        want = cases.walk(unet, config, case, x, steps)
        shaken = cases.levels(want, cases.walk(cases.Scaled(unet, 1e-5), config, case, x, steps))
        assert shaken[0] <= 1, f"{case.name}, {steps} steps: a chaotic walk ({shaken}); no tolerance holds on it"


def within_gate(got: np.ndarray, want: np.ndarray, what: str) -> None:
    worst, beyond = cases.levels(got, want)
    assert worst <= MAX_LEVELS and beyond <= MAX_BEYOND_ONE, f"{what}: {worst} levels, {beyond:.2%} beyond one"


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The docs' example run in an empty folder: (folder, its output, its ports)."""
    cwd = tmp_path_factory.mktemp("readme-diffusers")
    cases.save(BUTTERFLIES, cwd / BUTTERFLIES.name)
    ports = {kind: free_port() for kind in ("HTTP", "GRPC", "METRICS")}
    env = {k: v for k, v in os.environ.items() if k not in (models_folder.ENV, "PYTHONPATH")}
    env.update({f"GANEXPORT_{kind}_PORT": str(port) for kind, port in ports.items()})
    env.update(TRITON_HTTP_URL=f"127.0.0.1:{ports['HTTP']}", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", example()], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=900)
    return cwd, r


@pytest.fixture(scope="module")
def server(readme, tmp_path_factory):
    """Triton serving the docs' pipeline and a guided class-conditional one built beside it."""
    cwd, r = readme
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    folder = cases.save(GUIDED, tmp_path_factory.mktemp("guided") / "ddim-classes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(models_folder.ENV, str(cwd / "models"))
        runner = CliRunner()
        for args in (["import", str(folder), "--name", "guided", "--format", "diffusers", "--null-class", "2"],
                     ["build", "--model", "guided", "--repository", str(cwd / "model_repository"),
                      "--runtimes", "onnxruntime"]):
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, result.output
    triton = TritonServer(cwd / "model_repository", models=["butterflies", "guided"], http_port=free_port(),
                          grpc_port=free_port(), metrics_port=free_port())
    try:
        yield triton.start(timeout=180), folder
    finally:
        triton.stop()


def test_the_readme_example_serves_diffusers_images(readme):
    """Verbatim, in an empty folder: the four images it saved are DDIMPipeline's walk of its noise."""
    cwd, r = readme
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "butterflies (4, 32, 32, 3) uint8" in r.stdout
    got = np.asarray(Image.open(cwd / "butterflies.png"))
    assert got.shape == (32, 4 * 32, 3)
    unet, config = cases.load(cwd / BUTTERFLIES.name)
    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)  # the example's noise
    well_conditioned(BUTTERFLIES, unet, config, x)
    want = np.concatenate(list(cases.walk(unet, config, BUTTERFLIES, x, 50)), axis=1)
    within_gate(got, want, "docs request, 50 steps")
    assert [e.spec.origin.format for e in models_folder.entries(cwd / "models")] == ["diffusers"]


def test_build_published_both_runtimes_with_parity_against_diffusers(readme):
    cwd, _ = readme
    for name in ("butterflies", "butterflies_torchscript"):
        report = json.loads((latest(cwd / "model_repository", name) / PARITY_FILE).read_text())
        assert report["passed"] and report["sampler_gate"]["reference"].startswith("diffusers 0.42.1: DDIMScheduler")
        assert report["sampler_gate"]["max_beyond_one_level_fraction"] == MAX_BEYOND_ONE
        for figures in report["backends"].values():
            assert set(figures["sampler"]) == {"10", "50", "10 eta 1"}
            for walk in figures["sampler"].values():
                assert walk["max_uint8_levels"] <= MAX_LEVELS and walk["beyond_one_level_fraction"] <= MAX_BEYOND_ONE


def test_triton_makes_ddim_pipelines_own_images_at_10_and_50_steps(server, readme):
    triton, _ = server
    cwd, _ = readme
    with connect("triton-grpc", url=triton.grpc_url, timeout=300) as remote:
        for steps in (10, 50):
            x, want = cases.pipeline_images(cwd / BUTTERFLIES.name, steps, seed=7, rows=4)
            within_gate(remote.diffuse("butterflies", x, None, steps), want, f"DDIMPipeline, {steps} steps")


def test_triton_walks_a_guided_class_conditional_pipeline_as_diffusers(server, readme):
    """And the in-process backend runs the same loop: the same images at any eta."""
    triton, folder = server
    unet, config = cases.load(folder)
    x = cases.noise(GUIDED, seed=5, rows=4)
    well_conditioned(GUIDED, unet, config, x)
    label = cases.labels(GUIDED, 4)
    with connect("triton-http", url=triton.http_url, timeout=300) as remote, \
            connect("onnxruntime", repository=readme[0] / "model_repository") as local:
        for steps, eta in ((10, 0.0), (50, 0.0), (10, 1.0), (10, 0.5)):
            got = remote.diffuse("guided", x, label, steps, guidance=GUIDED.guidance, eta=eta)
            want = cases.walk(unet, config, GUIDED, x, steps, eta=eta)
            within_gate(got, want, f"guided, {steps} steps, eta {eta}")
            assert np.array_equal(local.diffuse("guided", x, label, steps, guidance=GUIDED.guidance, eta=eta), got)


def test_the_demo_offers_both_in_its_diffusion_tab_with_a_class_picker_only_for_the_conditional_one(
        server, readme, tmp_path, monkeypatch):
    import gradio as gr

    from ganexport.demo.app import build_app
    from ganexport.demo.handlers import Handlers
    from ganexport.demo.tabs import NO_CLASS

    cwd, _ = readme
    monkeypatch.setenv(models_folder.ENV, str(cwd / "models"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app = build_app(backend_kind="onnxruntime", repository=cwd / "model_repository")
    try:
        plan = app.demo_plan
        assert [m.name for m in plan.tab("diffusion")] == ["butterflies", "guided"]
        assert [m.name for m in plan.tab("conditional")] == ["guided"]
        shown = {b.label: b.visible for b in app.blocks.values() if getattr(b, "label", None) in ("class", "guidance")
                 and isinstance(b, (gr.Dropdown, gr.Slider))}
        assert shown["class"] is False and shown["guidance"] is False  # butterflies first: no class, guidance 1
        assert plan.models["guided"].diffusion_classes == ["0", "1", NO_CLASS]
        handlers = Handlers(app.demo_backend, plan)
        assert "guidance 1" in handlers.diffusion(NO_CLASS, 10, 2.0, 0, 2, "butterflies")[2]
        assert "guidance 3" in handlers.diffusion("1", 10, 3.0, 0, 2, "guided")[2]
    finally:
        app.demo_backend.close()


def test_triton_refuses_guidance_and_a_label_for_an_unconditional_pipeline_in_one_line(server):
    triton, _ = server
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        def ask(**values):
            inputs = []
            for name, value in values.items():
                inputs.append(httpclient.InferInput(name, list(value.shape), {"float32": "FP32", "int32": "INT32",
                                                                              "int64": "INT64"}[str(value.dtype)]))
                inputs[-1].set_data_from_numpy(value)
            with pytest.raises(Exception) as e:
                client.infer("butterflies", inputs)
            message = str(e.value)
            assert "[400]" in message and "\n" not in message
            return message

        one = {"noise": np.zeros((1, 32, 32, 3), np.float32), "steps": np.full((1, 1), 10, np.int32),
               "eta": np.zeros((1, 1), np.float32)}
        assert "input 'guidance' has values outside [1, 1]" in ask(**one, guidance=np.full((1, 1), 2, np.float32))
        assert "unknown input 'label'" in ask(**one, guidance=np.ones((1, 1), np.float32),
                                              label=np.zeros((1, 1), np.int64))
    finally:
        client.close()
