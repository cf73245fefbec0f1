"""Encoders and attribute edits through the real Triton and the real demo page (tiny nets).

What an edit means is checked through other served models: ``edit(x, s)`` must equal the decoder model's
image of the encoder model's latent plus ``s @ V``, with V read from the checkpoint the edit was built from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganexport import catalog
from ganexport.serving.backends import connect
from ganexport.serving.triton_server import TritonServer, free_port
from ganexport.serving.validation import InvalidInput
from ganexport.training import checkpoint, data
from ganexport.training.nets import to_uint8

pytestmark = pytest.mark.integration
SPEC = catalog.get("vae_faces")
NAMES = catalog.DATASETS[SPEC.dataset].attribute_names
EDIT, ENCODER, DECODER = (next(s.name for s in SPEC.signatures() if s.kind == k) for k in ("edit", "encode", "sample"))


@pytest.fixture(scope="module")
def server(published):
    with TritonServer(published[0], http_port=free_port(), grpc_port=free_port(), metrics_port=0) as srv:
        yield srv


def held_out(n: int) -> np.ndarray:
    return data.load_images(SPEC.dataset, split="test", limit=n, seed=3).images


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_edit_is_the_decoders_image_of_the_encoders_latent_plus_the_vectors(server, tiny_checkpoints, protocol):
    vectors = checkpoint.load(tiny_checkpoints["vae_faces"]).attribute_vectors(NAMES).numpy()
    faces = held_out(3)
    strength = np.zeros((3, len(NAMES)), np.float32)
    strength[0, 0], strength[1, 1], strength[2] = 1.0, -1.0, 0.5
    url = server.http_url if protocol == "http" else server.grpc_url
    with connect(f"triton-{protocol}", url=url) as triton:
        edited = triton.edit(EDIT, faces, strength)
        z = triton.encode(ENCODER, faces)
        assert z.dtype == np.float32 and z.shape == (3, SPEC.hp("smoke")["latent_dim"])
        by_parts = triton.sample(DECODER, (z + strength @ vectors).astype(np.float32))
        assert np.abs(edited.astype(int) - by_parts.astype(int)).max() <= 1
        # strength 0 is the reconstruction, and a named strength is that attribute's alone
        np.testing.assert_array_equal(triton.edit(EDIT, faces, np.zeros_like(strength)), triton.sample(DECODER, z))
        one = triton.edit(EDIT, faces[:1], {NAMES[0]: 1.0})
        np.testing.assert_array_equal(one, edited[:1])
        with pytest.raises(InvalidInput, match="strength"):
            triton.edit(EDIT, faces[:1], np.full((1, len(NAMES)), 10.0, np.float32))


def test_the_edit_models_config_names_its_attributes_for_any_client(server):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        params = client.get_model_config(EDIT)["parameters"]
    finally:
        client.close()
    assert params["attributes"]["string_value"].split(",") == list(NAMES)
    assert json.loads(params["signature"]["string_value"])["attributes"] == list(NAMES)


def test_the_autoencoders_served_encoder_and_decoder_reconstruct_as_the_checkpoint_does(server, tiny_checkpoints):
    ckpt = checkpoint.load(tiny_checkpoints["autoencoder"])
    enc, dec = ckpt.build("encoder"), ckpt.build("decoder")
    images = data.load_images(ckpt.meta["dataset"], split="test", limit=4).images
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        want = to_uint8(dec(enc(x))).numpy()
    with connect("triton-grpc", url=server.grpc_url) as triton:
        got = triton.sample("autoencoder_decoder", triton.encode("autoencoder_encoder", images))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# --------------------------------------------------------------------------- the demo's Latent arithmetic tab


@pytest.fixture(scope="module")
def client(server, published):
    from gradio_client import Client

    from ganexport.demo.app import launch

    port = free_port()
    app = launch(backend_kind="triton-grpc", triton_url=server.grpc_url, repository=published[0], port=port,
                 prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()
        app.demo_backend.close()


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_the_tab_reconstructs_and_edits_a_held_out_face_in_one_request(client, server):
    zeros = [0.0] * len(NAMES)
    face, recon, edited, status, _ = client.predict(EDIT, 5, None, *zeros, api_name="/edit_face")
    np.testing.assert_array_equal(_pixels(recon), _pixels(edited))  # nothing asked: the edit is the reconstruction
    assert "held-out face 5" in status and "triton-grpc" in status and "fallback" not in status, status
    asked = [0.0, 2.5, *zeros[2:-1], -3.0]
    face_again, _, shown, status, _ = client.predict(EDIT, 5, None, *asked, api_name="/edit_face")
    np.testing.assert_array_equal(_pixels(face_again), _pixels(face))
    assert f"{NAMES[1]} +2.5, {NAMES[-1]} -3" in status, status
    held = data.example(SPEC.dataset, 5)[0]
    k = _pixels(face).shape[0] // held.shape[0]  # the page shows each face k times as large
    np.testing.assert_array_equal(_pixels(face)[::k, ::k], held)
    with connect("triton-grpc", url=server.grpc_url) as triton:  # the same request, sent by hand
        want = triton.edit(EDIT, held[None], np.asarray([asked], np.float32))[0]
    np.testing.assert_array_equal(_pixels(shown)[::k, ::k], want)


def test_the_tab_edits_an_upload_morphs_and_combines(client, tmp_path):
    from gradio_client import handle_file

    upload = tmp_path / "me.png"
    Image.fromarray(held_out(1)[0]).resize((150, 120)).save(upload)
    face, _, _, status, _ = client.predict(EDIT, 0, handle_file(str(upload)), *[0.0] * len(NAMES),
                                           api_name="/edit_face")
    assert "your upload me.png" in status and "resized to 64x64" in status, status
    row, status, _ = client.predict(EDIT, 1, 2, 6, None, api_name="/morph")
    side = SPEC.signatures()[0].outputs[0].shape[0]
    w, h = Image.open(row).size
    assert w > 6 * side and h < 2 * (side + 8), (w, h)  # one row of 6 frames
    row, status, _ = client.predict(EDIT, 1, 2, 3, None, api_name="/combine")
    assert "A - B + C" in status and "triton-grpc" in status, status


def test_an_uploaded_garment_lands_in_the_autoencoders_latent_space(client, tmp_path):
    upload = tmp_path / "garment.png"
    Image.fromarray(data.load_images("digits", split="test", limit=1).images[0, ..., 0]).save(upload)
    from gradio_client import handle_file

    point, status, x, y, _ = client.predict("autoencoder_decoder", handle_file(str(upload)), api_name="/locate")
    assert Path(point).is_file() and f"({x:.2f}, {y:.2f})" in status and "triton-grpc" in status, status


def test_the_readme_edit_example_runs_verbatim(server, tmp_path):
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "docs" / "serving.md").read_text()
    code = re.search(r"<!-- example: edit -->\s*```python\n(.*?)```", readme, re.S).group(1)
    Image.fromarray(held_out(1)[0]).resize((200, 160)).save(tmp_path / "face.png")
    env = {"TRITON_HTTP_URL": server.http_url, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"edited (64, 64, 3) attributes {','.join(NAMES)}" in r.stdout
    assert Image.open(tmp_path / "smiling.png").size == (64, 64)


def test_infer_encodes_an_image_to_json_and_edits_one_by_name(published, tmp_path):
    from click.testing import CliRunner

    from ganexport.cli import cli

    repo = str(published[0])
    Image.fromarray(held_out(1)[0]).save(tmp_path / "face.png")
    run = lambda *args: CliRunner().invoke(cli, ["infer", "--repository", repo, "--input", str(tmp_path / "face.png"),  # noqa: E731
                                                 *args])
    result = run("--model", ENCODER, "--output", str(tmp_path / "z.json"))
    assert result.exit_code == 0, result.output
    latent = np.asarray(json.loads((tmp_path / "z.json").read_text())["latent"], np.float32)
    with connect("onnxruntime", repository=repo) as local:
        np.testing.assert_allclose(latent, local.encode(ENCODER, held_out(1))[0], atol=1e-5)
        want = local.edit(EDIT, held_out(1), {NAMES[1]: 1.0, NAMES[0]: -0.5})[0]
    result = run("--model", EDIT, "--edit", f"{NAMES[1]}=1", "--edit", f"{NAMES[0]}=-0.5",
                 "--output", str(tmp_path / "edited.png"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "edited.png")), want)
    refused = run("--model", EDIT, "--edit", "frown=1")
    assert refused.exit_code != 0 and "frown" in refused.output and NAMES[0] in refused.output
    assert run("--model", DECODER, "--edit", f"{NAMES[0]}=1").exit_code != 0  # --edit is for edit models only
