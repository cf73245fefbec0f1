"""The Gradio demo against the real Triton server: every endpoint, users' uploads, fallback, and a real browser."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import demo_page, needs_chromium
from ganexport import catalog
from ganexport.demo.tabs import TABS
from ganexport.serving.backends import connect
from ganexport.serving.triton_server import TritonServer, free_port

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def server(published):
    with TritonServer(published[0], http_port=free_port(), grpc_port=free_port(), metrics_port=0) as srv:
        yield srv


def _launch(**kw):
    from ganexport.demo.app import launch

    port = free_port()
    app = launch(port=port, prevent_thread_lock=True, quiet=True, **kw)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def demo_app(server, published):
    app, url = _launch(backend_kind="triton-grpc", triton_url=server.grpc_url, repository=published[0])
    yield app, url
    app.close()
    app.demo_backend.close()


@pytest.fixture(scope="module")
def demo(demo_app):
    return demo_app[1]


@pytest.fixture(scope="module")
def client(demo):
    from gradio_client import Client

    return Client(demo, verbose=False)


def photo(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A photo-like RGB image: smooth colour gradients, a few shapes, some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    arr = np.stack([x, y, (x + y) / 2], -1) * 200
    for _ in range(5):
        cy, cx, r = rng.integers(h), rng.integers(w), rng.integers(5, max(6, min(h, w) // 3))
        arr[(np.mgrid[0:h, 0:w][0] - cy) ** 2 + (np.mgrid[0:h, 0:w][1] - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# --------------------------------------------------------------------------- every endpoint over gradio_client


@pytest.mark.parametrize("api_name,args", [
    ("/sample", ("dcgan", 3, 9)),
    ("/sample", ("wgan_gp", 0, 4)),
    ("/sample", ("vae_decoder", 0, 4)),
    ("/sample", ("autoencoder_decoder", 0, 4)),
    ("/latent_walk", ("dcgan", 0, 1, 6)),
    ("/conditional", ("7", 0, 5)),  # the classes of the data cgan was trained on: the tests train it on digits
    ("/all_classes", (0, 2)),
    ("/decode_point", ("autoencoder_decoder", 0.5, -1.0)),
    ("/manifold", ("autoencoder_decoder", 5, 2)),
])
def test_generation_endpoints_return_images_served_by_triton(client, api_name, args):
    image, status, banner = client.predict(*args, api_name=api_name)
    assert image and Path(image).is_file(), status
    w, h = _size(image)
    assert w >= 8 and h >= 8
    assert "triton-grpc" in status and " ms" in status and "fallback" not in status, status
    assert "unreachable" not in banner


def test_grid_sizes_follow_the_request(client):
    one, _, _ = client.predict("dcgan", 0, 1, api_name="/sample")
    nine, _, _ = client.predict("dcgan", 0, 9, api_name="/sample")
    walk, _, _ = client.predict("dcgan", 0, 1, 8, api_name="/latent_walk")
    (w1, h1), (w9, h9), (ww, hw) = _size(one), _size(nine), _size(walk)
    assert w9 > 2 * w1 and h9 > 2 * h1  # 3 x 3
    assert ww > 6 * w1 and hw == h1  # one row of 8 frames


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def test_diffusion_returns_a_grid_and_the_first_samples_trajectory(demo_app, client):
    """4 samples of class 3 in one row, and seed 0's 10 snapshots in another; its last snapshot is its sample."""
    from ganexport.images import upscale_for_viewing

    h, w, _ = demo_app[0].demo_plan.models["ddpm"].signature.outputs[0].shape
    grid, frames, status, banner = client.predict("3", 3, 1.5, 0, 4, "ddpm", api_name="/diffusion")
    k = upscale_for_viewing(h)
    assert _size(grid) == ((4 * (w + 2) + 2) * k, (h + 4) * k), status
    assert _size(frames) == ((10 * (w + 2) + 2) * k, (h + 4) * k)
    first = _pixels(grid)[2 * k:(2 + h) * k, 2 * k:(2 + w) * k]
    last = _pixels(frames)[2 * k:(2 + h) * k, (2 + 9 * (w + 2)) * k:(2 + 9 * (w + 2) + w) * k]
    np.testing.assert_array_equal(first, last)
    assert "4 x 3, seeds 0..3: 3 DDIM (eta 0) steps, guidance 1.5." in status, status
    assert "triton-grpc" in status and " ms" in status and "fallback" not in status and "unreachable" not in banner
    again, _, status, _ = client.predict("no class (unconditional)", 3, 2, 0, 1, "ddpm", True, api_name="/diffusion")
    assert "ancestral DDPM (eta 1)" in status and "no effect without a class" in status, status


def test_the_conditional_tab_shows_a_diffusion_model_beside_the_gan(client):
    """Same class, same seeds: the GAN's grid, and the diffusion model's beside it (nothing for "none")."""
    gan, status, _ = client.predict("7", 0, 3, api_name="/conditional")  # the page's first model: cgan
    assert status.startswith("3 x 7.") and "DDIM" not in status, status
    beside, status, _ = client.predict("7", 0, 3, api_name="/conditional_beside")  # beside it at first: ddpm
    assert status.startswith("**ddpm**, same class and seeds: 3 x 7. 25 DDIM (eta 0) steps"), status
    assert _size(beside) == _size(gan)  # both learnt the 8x8 digits here: a row of 3 of them on each side
    nothing, status, _ = client.predict("7", 0, 3, "none", api_name="/conditional_beside")
    assert nothing is None and status == ""


# The translator is chosen by its Triton model name. The page labels it with its direction ("photo -> sketch"),
# which comes from the data it was trained on, so it is no stable value for API clients.
@pytest.mark.parametrize("w,h", [(64, 48), (640, 427)])
@pytest.mark.parametrize("model,direction", [("cyclegan_a2b", "photo -> sketch"), ("cyclegan_b2a", "sketch -> photo")])
def test_translate_keeps_the_input_size(client, tmp_path, w, h, model, direction):
    from gradio_client import handle_file

    src = photo(tmp_path / "in.png", w, h)
    shown, out, truth, status, _ = client.predict(handle_file(str(src)), model, api_name="/translate")
    assert out, status
    assert _size(out) == (w, h) and _size(shown) == (w, h)
    assert "triton-grpc" in status and " ms" in status and direction in status
    if model == "cyclegan_a2b":
        assert _size(truth) == (w, h)
        with Image.open(src) as im:
            from ganexport.sketch import pencil_sketch

            np.testing.assert_array_equal(np.asarray(Image.open(truth).convert("RGB")),
                                          pencil_sketch(np.asarray(im.convert("RGB"))))
    else:
        assert truth is None


def _refusal(client, *args, api_name="/translate") -> str:
    """The message of a request the page refuses: gradio_client gets an error, not a finished call."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(*args, api_name=api_name)
    return str(e.value.message)


def test_bad_uploads_are_errors_with_a_clear_message_and_no_server_path(client, tmp_path):
    """Each is refused as an error (the page shows it, API clients get an error status), in one line that
    names the file by its base name: never Gradio's temp folder, the upload's hash folder or the repository."""
    from gradio_client import handle_file

    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    tiny = photo(tmp_path / "tiny.png", 4, 4)
    thin = photo(tmp_path / "thin.png", 3000, 10)
    good = photo(tmp_path / "good.png", 64, 64).read_bytes()
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    expected = {text: "not an image", tiny: "too small", thin: "too narrow", corrupt: "unreadable", garbage: ""}
    for path, words in expected.items():
        message = _refusal(client, handle_file(str(path)), "cyclegan_a2b")
        assert message.startswith(f"{path.name}: ") and words in message, (path.name, message)
        assert "/" not in message and os.environ["GRADIO_TEMP_DIR"] not in message, message
        assert "Traceback" not in message and "\n" not in message, message
    assert "upload a photo" in _refusal(client, None, "cyclegan_a2b")
    assert "Sneaker" in _refusal(client, "Sneaker", 0, 2, api_name="/conditional")  # cgan learnt digits here


def test_a_phone_photo_above_the_largest_side_is_scaled_down_to_fit(client, tmp_path):
    """A 1600x1200 JPEG stored sideways (EXIF orientation 6, as phones write it) is translated upright at
    768x1024, the status saying it was scaled down; a 1100x40 strip keeps its aspect ratio."""
    from gradio_client import handle_file

    im = Image.open(photo(tmp_path / "src.png", 1600, 1200))
    exif = im.getexif()
    exif[0x0112] = 6
    im.convert("RGB").save(tmp_path / "IMG_0001.jpg", "JPEG", exif=exif.tobytes())
    shown, out, _, status, _ = client.predict(handle_file(str(tmp_path / "IMG_0001.jpg")), "cyclegan_a2b",
                                              api_name="/translate")
    assert _size(out) == _size(shown) == (768, 1024), status
    assert "scaled down from 1200x1600 to 768x1024" in status and "1024-pixel limit" in status, status
    shown, out, _, status, _ = client.predict(handle_file(str(photo(tmp_path / "strip.png", 1100, 40))),
                                              "cyclegan_b2a", api_name="/translate")
    assert _size(out) == (1024, 37) and "scaled down from 1100x40" in status, status


def test_an_animated_gif_is_translated_from_its_first_frame(client, tmp_path):
    from gradio_client import handle_file

    frames = [Image.open(photo(tmp_path / f"f{i}.png", 64, 48, seed=i)).convert("RGB") for i in range(3)]
    frames[0].save(tmp_path / "wave.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    shown, out, _, status, _ = client.predict(handle_file(str(tmp_path / "wave.gif")), "cyclegan_a2b",
                                              api_name="/translate")
    assert _size(out) == (64, 48) and "wave.gif is animated (3 frames); only its first frame is used" in status
    with Image.open(tmp_path / "wave.gif") as gif:
        first = np.asarray(gif.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(shown).convert("RGB")), first)


def test_every_api_parameter_has_a_name(client):
    """"Use via API" names each input after the handler's parameter (no param_0, param_1...)."""
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = {endpoint: [p["parameter_name"] for p in info["parameters"]] for endpoint, info in api.items()}
    assert names == {
        "/sample": ["model", "seed", "count"],
        "/latent_walk": ["model", "from_seed", "to_seed", "frames"],
        "/conditional": ["class_name", "seed", "count", "model"],
        "/conditional_beside": ["class_name", "seed", "count", "beside"],
        "/all_classes": ["seed", "rows", "model"],
        "/decode_point": ["model", "x", "y"],
        "/manifold": ["model", "grid_size", "extent"],
        "/diffusion": ["class_name", "steps", "guidance", "seed", "count", "model", "ancestral"],
        "/translate": ["image", "model"],
        "/locate": ["model", "image"],
        "/edit_face": ["model", "face", "image", *catalog.DATASETS["faces"].attribute_names],
        "/morph": ["model", "face_a", "face_b", "frames", "image"],
        "/combine": ["model", "face_a", "face_b", "face_c", "image"],
    }


def test_an_upload_is_deleted_once_it_was_read(demo_app, client, tmp_path):
    """Gradio keeps what clients upload in its temp folder; the demo deletes an upload once translated, and
    Gradio's delete_cache removes the results it cached (all of them when the demo stops: the fallback test)."""
    from gradio_client import handle_file

    from ganexport.demo.app import DELETE_CACHE

    app, _ = demo_app
    assert app.delete_cache == DELETE_CACHE
    client.predict(handle_file(str(photo(tmp_path / "delete-me-after.png", 64, 48))), "cyclegan_a2b",
                   api_name="/translate")
    uploads = [Path(p) for p in app.upload_file_set if Path(p).name == "delete-me-after.png"]
    assert uploads, "the upload went through Gradio's upload route"
    assert not any(p.exists() for p in uploads), uploads


# --------------------------------------------------------------------------- fallback


def test_unreachable_triton_falls_back_to_onnxruntime_and_says_so(published):
    from gradio_client import Client

    dead = f"127.0.0.1:{free_port()}"
    app, url = _launch(backend_kind="triton-grpc", triton_url=dead, repository=published[0])
    try:
        c = Client(url, verbose=False)
        image, status, banner = c.predict("dcgan", 0, 4, api_name="/sample")
        assert image and Path(image).is_file()
        assert "onnxruntime (in-process fallback)" in status and "unreachable" in status, status
        assert "unreachable" in banner and dead in banner
        _, frames, status, _ = c.predict("3", 2, 2, 0, 1, "ddpm", api_name="/diffusion")
        assert Path(frames).is_file() and "onnxruntime (in-process fallback)" in status, status
        kept = set().union(*(getattr(block, "keep_in_cache", set()) for block in app.blocks.values()))  # examples
        cached = [Path(f) for files in app.temp_file_sets for f in files if f not in kept]
        assert any(p.is_file() for p in cached), "the result went through Gradio's cache"
    finally:
        app.close()
        app.demo_backend.close()
    assert not [p for p in cached if p.exists()], "the demo stopped; its results must go with it"


def test_fallback_switches_back_when_triton_returns(server, published):
    from ganexport.demo.backend import FallbackBackend

    target = {"url": f"127.0.0.1:{free_port()}"}
    fb = FallbackBackend(lambda: connect("triton-grpc", url=target["url"]),
                         lambda: connect("onnxruntime", repository=published[0]), "triton-grpc")
    z = np.zeros((2, fb.metadata("dcgan").inputs[0].shape[0]), np.float32)
    down = fb.call("sample", "dcgan", z)
    assert "fallback" in down.backend and fb.last_error
    target["url"] = server.grpc_url  # Triton "returns"
    up = fb.call("sample", "dcgan", z)
    assert up.backend.startswith("triton-grpc") and fb.last_error is None and "back" in up.note
    np.testing.assert_array_equal(up.images, down.images)
    fb.close()


def test_demo_imports_no_torch():
    import subprocess

    code = "import sys, ganexport.demo.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- a real browser


@needs_chromium
def test_browser_translates_an_upload_and_every_tab_renders(demo, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    w, h = 640, 427
    src = photo(tmp_path / "upload.png", w, h, seed=5)
    with demo_page(demo) as page:
        def tab(name):
            page.get_by_role("tab", name=name).click()

        def shot(name, output):
            page.locator(f"#{output} img").first.wait_for(state="visible", timeout=60_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / f"demo-{name}.png"), full_page=True)

        tab("Sample")
        page.locator("#sample-btn").click()
        shot("sample", "sample-output")
        tab("Conditional")
        page.locator("#class-btn").click()  # the GAN's grid, and the diffusion model's beside it
        page.locator("#beside-output img").first.wait_for(state="visible", timeout=60_000)
        assert "ddpm" in page.locator("#beside-status").inner_text()
        page.locator("#all-btn").click()
        shot("conditional", "all-output")
        tab("Diffusion")
        page.locator("#diffusion-btn").click()
        page.locator("#diffusion-trajectory img").first.wait_for(state="visible", timeout=60_000)
        shot("diffusion", "diffusion-output")
        assert "25 DDIM (eta 0) steps, guidance 2" in page.locator("#diffusion-status").inner_text()
        tab("Latent space")
        page.locator("#manifold-btn").click()
        page.locator("#point-btn").click()
        shot("latent", "manifold-output")

        tab("Translate")
        page.locator("#translate-input input[type=file]").set_input_files(str(src))
        page.locator("#translate-input img").first.wait_for(state="visible", timeout=30_000)  # the preview
        page.locator("#translate-btn").click()
        page.wait_for_function("() => document.querySelector('#translate-status')"
                               ".innerText.trim().startsWith('640x427')",
                               timeout=60_000)  # the upload's result, no longer the example shown on load
        out = page.locator("#translate-output img").first
        out.wait_for(state="visible", timeout=60_000)
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=out.element_handle(),
                               timeout=30_000)
        size = out.evaluate("el => [el.naturalWidth, el.naturalHeight]")
        assert tuple(size) == (w, h)
        body = page.request.get(out.get_attribute("src")).body()
        (tmp_path / "out.png").write_bytes(body)
        with Image.open(tmp_path / "out.png") as got, Image.open(src) as sent:
            assert got.format == "PNG" and got.size == (w, h)
            assert not np.array_equal(np.asarray(got.convert("RGB")), np.asarray(sent.convert("RGB")))
        status = page.locator("#translate-status").inner_text()
        assert "triton-grpc" in status and "ms" in status
        assert page.locator("#translate-truth").is_visible()  # photo2sketch's filter target, A -> B only
        shot("translate", "translate-output")

        # The other direction on the same upload (deleted from the server once read): no new upload needed.
        page.get_by_label("sketch -> photo").check()
        page.locator("#translate-truth").wait_for(state="hidden", timeout=30_000)
        page.locator("#translate-btn").click()
        page.wait_for_function("() => document.querySelector('#translate-status').innerText"
                               ".includes('sketch -> photo')", timeout=60_000)
        assert "triton-grpc" in page.locator("#translate-status").inner_text()
    for name in ("sample", "conditional", "diffusion", "latent", "translate"):
        assert (ARTIFACTS / f"demo-{name}.png").stat().st_size > 10_000


@needs_chromium
def test_the_page_opens_on_a_translated_photo_and_every_tab_shows_a_result_without_a_click(demo_app):
    app, url = demo_app
    ARTIFACTS.mkdir(exist_ok=True)
    outputs = {"translate": "translate-output", "sample": "sample-output", "conditional": "class-output",
               "latent": "manifold-output", "diffusion": "diffusion-output", "arithmetic": "edit-output"}
    assert app.demo_plan.tabs[0] == "translate" and set(app.demo_plan.tabs) <= set(outputs)
    with demo_page(url) as page:
        first = page.get_by_role("tab").first
        assert first.inner_text().strip() == "Translate" and first.get_attribute("aria-selected") == "true"
        out = page.locator("#translate-output img").first
        out.wait_for(state="visible", timeout=60_000)
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=out.element_handle(), timeout=30_000)
        status = page.locator("#translate-status").inner_text()
        assert status.startswith("Bundled example") and "triton-grpc" in status, status
        assert page.locator("#translate-shown img").first.is_visible()
        for tab in app.demo_plan.tabs:
            page.get_by_role("tab", name=TABS[tab]).click()
            page.locator(f"#{outputs[tab]} img").first.wait_for(state="visible", timeout=60_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / f"demo-open-{tab}.png"), full_page=True)
            assert page.locator(f"#tab-{tab}").get_by_text("About this model").is_visible()  # descriptions folded away


# --------------------------------------------------------------------------- the command


def test_a_busy_page_port_is_one_line_before_triton_starts(published):
    import socket

    from click.testing import CliRunner

    from ganexport.demo.demo_cli import demo

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(demo, ["--repository", str(published[0]), "--port", str(port),
                                           "--triton-http-port", "0", "--triton-grpc-port", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip() == f"Error: the demo page's port {port} on 127.0.0.1 is already in use: give " \
                                    "another --port", result.output
    assert "Triton serves" not in result.output


def test_demo_command_starts_triton_and_the_page_and_ctrl_c_stops_both(published, tmp_path):
    """What `ganexport demo` does, on free ports: Triton + page up, a 640x427 upload comes back 640x427,
    SIGINT stops the demo and the Triton it started."""
    import signal
    import subprocess
    import time
    import urllib.request

    from gradio_client import Client, handle_file

    port, http, grpc = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "ganexport.demo.demo_cli", "--repository", str(published[0]), "--port", str(port),
           "--triton-http-port", str(http), "--triton-grpc-port", str(grpc)]
    log = open(tmp_path / "demo.log", "w+")
    # A background job of a non-interactive shell (CI, nohup) starts with SIGINT ignored; the
    # demo must still stop on it. PYTHONUNBUFFERED: the log shows how far a shutdown got.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-2000:]
                time.sleep(0.5)
        src = photo(tmp_path / "in.jpg", 640, 427)
        _, out, _, status, _ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(str(src)), "cyclegan_a2b", api_name="/translate")
        assert _size(out) == (640, 427) and f"triton-grpc at 127.0.0.1:{grpc}" in status, status

        # Triton dies under the demo (a crafted request can do that): the demo's supervisor restarts it on the
        # same ports, and the page is served by Triton again.
        from ganexport.benchmarks.procfs import descendants

        triton = [p for p in descendants(proc.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "tritonserver"]
        assert len(triton) == 1, triton
        os.kill(triton[0], signal.SIGKILL)
        deadline = time.monotonic() + 180  # room for one failed restart and its retry on a loaded machine
        while "Triton is back" not in (tmp_path / "demo.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-2000:]
            time.sleep(0.5)
        _, out, _, status, _ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(str(src)), "cyclegan_a2b", api_name="/translate")
        assert f"triton-grpc at 127.0.0.1:{grpc}" in status and "fallback" not in status, status
        assert "supervisor: tritonserver was killed by SIGKILL" in (tmp_path / "demo.log").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)  # a hang guard, not a speed check: shutdown waits for Triton's own exit
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("demo did not stop within 120 s of Ctrl-C; its log:\n"
                                 + (tmp_path / "demo.log").read_text()[-2000:]) from None
    import socket

    for p_ in (port, http, grpc):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p_)) != 0, f"port {p_} still listening after Ctrl-C"
