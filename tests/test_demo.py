"""The Gradio demo against the real Triton server: every endpoint, bad uploads, fallback, and a real browser."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganexport.serving.backends import connect
from ganexport.serving.triton_server import TritonServer, free_port

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


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
def demo(server, published):
    app, url = _launch(backend_kind="triton-grpc", triton_url=server.grpc_url, repository=published[0])
    yield url
    app.close()
    app.demo_backend.close()


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
    ("/conditional", ("Sneaker", 0, 5)),
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


@pytest.mark.parametrize("w,h", [(64, 48), (640, 427)])
@pytest.mark.parametrize("direction", ["photo -> sketch", "sketch -> photo"])
def test_translate_keeps_the_input_size(client, tmp_path, w, h, direction):
    from gradio_client import handle_file

    src = photo(tmp_path / "in.png", w, h)
    shown, out, truth, status, _ = client.predict(handle_file(str(src)), direction, api_name="/translate")
    assert out, status
    assert _size(out) == (w, h) and _size(shown) == (w, h)
    assert "triton-grpc" in status and " ms" in status
    if direction == "photo -> sketch":
        assert _size(truth) == (w, h)
        with Image.open(src) as im:
            from ganexport.sketch import pencil_sketch

            np.testing.assert_array_equal(np.asarray(Image.open(truth).convert("RGB")),
                                          pencil_sketch(np.asarray(im.convert("RGB"))))
    else:
        assert truth is None


def test_bad_uploads_get_a_clear_message(client, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    tiny = photo(tmp_path / "tiny.png", 4, 4)
    huge = photo(tmp_path / "huge.png", 1100, 40)
    good = photo(tmp_path / "good.png", 64, 64).read_bytes()
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    expected = {text: "not an image", tiny: "too small", huge: "limit is 1024", corrupt: "unreadable",
                garbage: ""}
    for path, words in expected.items():
        shown, out, truth, status, _ = client.predict(handle_file(str(path)), "photo -> sketch",
                                                      api_name="/translate")
        assert out is None and status.startswith("❌"), (path.name, status)
        assert words in status and "Traceback" not in status, (path.name, status)
    _, out, _, status, _ = client.predict(None, "photo -> sketch", api_name="/translate")
    assert out is None and "upload a photo" in status


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
    finally:
        app.close()
        app.demo_backend.close()


def test_fallback_switches_back_when_triton_returns(server, published):
    from ganexport.demo.app import FallbackBackend

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


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_browser_translates_an_upload_and_every_tab_renders(demo, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    w, h = 640, 427
    src = photo(tmp_path / "upload.png", w, h, seed=5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo, wait_until="networkidle")

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
            page.locator("#all-btn").click()
            shot("conditional", "all-output")
            tab("Latent space")
            page.locator("#manifold-btn").click()
            page.locator("#point-btn").click()
            shot("latent", "manifold-output")

            tab("Translate")
            page.locator("#translate-input input[type=file]").set_input_files(str(src))
            page.locator("#translate-input img").first.wait_for(state="visible", timeout=30_000)  # the preview
            page.locator("#translate-btn").click()
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
            shot("translate", "translate-output")
        finally:
            browser.close()
    for name in ("sample", "conditional", "latent", "translate"):
        assert (ARTIFACTS / f"demo-{name}.png").stat().st_size > 10_000


# --------------------------------------------------------------------------- the command


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
            handle_file(str(src)), "photo -> sketch", api_name="/translate")
        assert _size(out) == (640, 427) and f"triton-grpc at 127.0.0.1:{grpc}" in status, status
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
