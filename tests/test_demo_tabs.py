"""The demo's tabs come from what is published: a model added to the catalog reaches its tab with no demo edit,
and a repository holding one translator trained on your own photos opens on it, described as such.

The real Gradio app on in-process ONNX Runtime (no Triton needed to decide tabs), gradio_client, and headless
Chromium for what only a page shows.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import demo_page, needs_chromium
from ganexport import catalog
from ganexport.serving.triton_server import free_port

pytestmark = pytest.mark.integration
# What the command line of a training on a user's folder looks like: the page must not show its paths.
FOLDER_COMMAND = "/home/someone/.venv/bin/ganexport train --model cyclegan --data /home/someone/photos --profile smoke"


def _launch(repository: Path):
    from ganexport.demo.app import launch

    port = free_port()
    app = launch(backend_kind="onnxruntime", repository=repository, port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def _train_and_build(model: str, repo: Path, out: Path, **train_kw) -> None:
    from ganexport.export import build as pipeline
    from ganexport.training.loop import TrainConfig, train

    run = train(TrainConfig(model=model, profile="smoke", out=str(out), progress=False, **train_kw))
    pipeline.build(model, checkpoint_path=run / "checkpoint.safetensors", repo=repo, runtimes=("onnxruntime",),
                   log=lambda msg: None)


def _config(url: str) -> dict:
    with urllib.request.urlopen(url + "config", timeout=30) as r:
        return json.loads(r.read())


def _components(config: dict, kind: str) -> list[dict]:
    return [c for c in config["components"] if c.get("type") == kind]


# --------------------------------------------------------------------------- a model added to the catalog


@pytest.fixture(scope="module")
def extra_models(published, tmp_path_factory):
    """Two models the demo has never heard of, registered in the catalog as a user would add one: a
    conditional GAN and a 2-D autoencoder on digits, published beside the usual ones."""
    repo = tmp_path_factory.mktemp("extra") / "repo"
    shutil.copytree(published[0], repo)
    with pytest.MonkeyPatch.context() as mp:  # registered while the demo starts, not for the other tests
        for base, name in (("cgan", "digit_cgan"), ("autoencoder", "digit_ae")):
            mp.setitem(catalog.MODELS, name, dataclasses.replace(catalog.MODELS[base], name=name, dataset="digits"))
            _train_and_build(name, repo, tmp_path_factory.mktemp("runs"), dataset="digits", limit=32)
        app, url = _launch(repo)
    yield app, url
    app.close()
    app.demo_backend.close()


def test_a_model_added_to_the_catalog_appears_in_the_tab_its_signature_says(extra_models):
    from gradio_client import Client

    app, url = extra_models
    plan = app.demo_plan
    assert plan.models["digit_cgan"].tabs == ("conditional",)
    assert plan.models["digit_ae_decoder"].tabs == ("sample", "latent")
    client = Client(url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]

    def choices(endpoint, parameter="model"):
        return next(p["type"]["enum"] for p in api[endpoint]["parameters"] if p["parameter_name"] == parameter)

    assert "digit_cgan" in choices("/conditional") and "cgan" in choices("/conditional")
    assert "digit_cgan" not in choices("/sample") and "digit_ae_decoder" in choices("/sample")
    assert choices("/decode_point") == ["autoencoder_decoder", "digit_ae_decoder"]
    image, status, _ = client.predict("3", 0, 4, "digit_cgan", api_name="/conditional")
    assert Path(image).is_file() and status.startswith("4 x 3.") and "onnxruntime" in status, status
    image, status, _ = client.predict("digit_ae_decoder", 0.5, -1.0, api_name="/decode_point")
    assert Path(image).is_file() and "z = (0.50, -1.00)" in status
    labels = " ".join(c["props"].get("value") or "" for c in _components(_config(url), "markdown"))
    assert "**digit_cgan**" in labels and "ganexport" in labels


# --------------------------------------------------------------------------- only a translator, on your own photos


@pytest.fixture(scope="module")
def folder_translator(tmp_path_factory, _private_cache):
    """A repository holding only cyclegan, trained on a folder of someone's own photos (DIR/trainA, trainB)."""
    data = tmp_path_factory.mktemp("my-photos")
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB"):
        (data / split).mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(data / split / f"{i}.png")
    repo = tmp_path_factory.mktemp("only-cyclegan") / "repo"
    _train_and_build("cyclegan", repo, tmp_path_factory.mktemp("runs"), data_dir=str(data), limit=8,
                     command=FOLDER_COMMAND)
    app, url = _launch(repo)
    yield app, url, repo
    app.close()
    app.demo_backend.close()


def test_a_repository_with_only_a_translator_shows_only_the_translate_tab(folder_translator):
    app, url, _ = folder_translator
    config = _config(url)
    assert [c["props"]["label"] for c in _components(config, "tabitem")] == ["Translate"]
    assert [c["props"].get("selected") for c in _components(config, "tabs")] == ["translate"]
    notes = [c["props"]["value"] for c in _components(config, "markdown") if c["props"].get("elem_id") ==
             "startup-errors"]
    others = [name for name, (spec, _) in catalog.triton_models().items() if spec.name != "cyclegan"]
    assert notes == [f"Not published: {', '.join(others)}."]
    assert "Not available" not in json.dumps(config)


def test_a_translator_trained_on_your_photos_has_no_filter_column(folder_translator, tmp_path):
    """The pencil-sketch target belongs to photo2sketch; a translator trained on someone's folder has none, and its
    description says what it was trained on, for how long and by which command (without the machine's paths)."""
    from gradio_client import Client, handle_file

    app, url, _ = folder_translator
    config = _config(url)
    (listing,) = [c["props"]["value"] for c in _components(config, "markdown")
                  if c["props"].get("elem_id") == "translate-models"]
    assert "your own CycleGAN layout" in listing and "photo2sketch" not in listing, listing
    assert "trained for 3 steps" in listing and "--data " in listing, listing
    assert "/home/someone" not in json.dumps(config)
    (target,) = [c for c in _components(config, "image") if c["props"].get("elem_id") == "translate-truth"]
    assert target["props"]["visible"] is False
    radio = next(c for c in _components(config, "radio") if c["props"]["label"] == "translator")
    assert [tuple(choice) for choice in radio["props"]["choices"]] == [("A -> B", "cyclegan_a2b"),
                                                                        ("B -> A", "cyclegan_b2a")]

    src = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(src)
    shown, out, target_image, status, _ = Client(url, verbose=False).predict(handle_file(str(src)), "cyclegan_a2b",
                                                                             api_name="/translate")
    assert out and target_image is None and "A -> B" in status and "pencil" not in status, status


def test_a_primary_that_serves_fewer_models_is_not_an_outage(folder_translator, published):
    """Start-up asks the primary for every catalog model: the ones it does not know are not published there,
    not a reason to call it unreachable or to take them from the fallback's repository."""
    from ganexport.demo.backend import FallbackBackend
    from ganexport.serving.backends import connect

    _, _, repo = folder_translator
    fb = FallbackBackend(lambda: connect("onnxruntime", repository=repo),
                         lambda: connect("onnxruntime", repository=published[0]), "primary")
    found, missing = fb.signatures(catalog.triton_models())
    assert sorted(found) == ["cyclegan_a2b", "cyclegan_b2a"] and "dcgan" in missing
    assert fb.last_error is None and "unreachable" not in fb.banner()
    dead = FallbackBackend(lambda: connect("triton-grpc", url=f"127.0.0.1:{free_port()}"),
                           lambda: connect("onnxruntime", repository=repo), "triton-grpc")
    found, _ = dead.signatures(catalog.triton_models())
    assert sorted(found) == ["cyclegan_a2b", "cyclegan_b2a"] and "unreachable" in dead.banner()
    fb.close()
    dead.close()


@needs_chromium
def test_the_page_opens_on_the_translate_tab(folder_translator, tmp_path):
    _, url, _ = folder_translator
    src = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(src)
    with demo_page(url) as page:
        assert [t.inner_text().strip() for t in page.get_by_role("tab").all()] == ["Translate"]
        assert page.get_by_role("tab", name="Translate").get_attribute("aria-selected") == "true"
        assert "\n" not in page.locator("#startup-errors").inner_text().strip()
        page.locator("#translate-input input[type=file]").set_input_files(str(src))
        page.locator("#translate-input img").first.wait_for(state="visible", timeout=30_000)
        page.locator("#translate-btn").click()
        page.wait_for_function("() => document.querySelector('#translate-status')"
                               ".innerText.trim().startsWith('64x48')",
                               timeout=60_000)  # the upload's result, not the bundled example shown on load
        page.locator("#translate-output img").first.wait_for(state="visible", timeout=60_000)
        assert "A -> B" in page.locator("#translate-status").inner_text()
        assert not page.locator("#translate-truth").is_visible()
