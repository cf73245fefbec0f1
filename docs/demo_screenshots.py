"""Take docs/demo/<tab>.jpg: each tab of the demo as it opens (no click), served by Triton from a repository that
`ganexport build --model all` made from the released weights, in headless Chromium.

    ganexport build --model all                # into model_repository/, as make demo does
    python docs/demo_screenshots.py model_repository
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import demo_page  # noqa: E402  (tests/browser.py: Debian's chromium through Playwright)

from ganexport.demo.app import launch  # noqa: E402
from ganexport.demo.tabs import TABS  # noqa: E402
from ganexport.serving.triton_server import TritonServer, free_port  # noqa: E402

# What each tab shows on load: the element to wait for before the picture is taken.
SHOWN = {"translate": "translate-output", "sample": "sample-output", "conditional": "class-output",
         "latent": "manifold-output", "diffusion": "diffusion-output", "arithmetic": "edit-output"}


def main(repository: Path, out: Path = ROOT / "docs" / "demo") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=0) as server:
        port = free_port()
        app = launch(backend_kind="triton-grpc", triton_url=server.grpc_url, repository=repository, port=port,
                     prevent_thread_lock=True, quiet=True)
        try:
            with demo_page(f"http://127.0.0.1:{port}/") as page:
                for tab in app.demo_plan.tabs:
                    page.get_by_role("tab", name=TABS[tab]).click()
                    page.locator(f"#{SHOWN[tab]} img").first.wait_for(state="visible", timeout=120_000)
                    page.wait_for_timeout(1000)
                    png = out / f"{tab}.png"
                    page.screenshot(path=str(png), full_page=True)
                    with Image.open(png) as im:
                        im.convert("RGB").save(png.with_suffix(".jpg"), quality=80, optimize=True)
                    png.unlink()
                    print(f"{tab}: {png.with_suffix('.jpg')}")
        finally:
            app.close()
            app.demo_backend.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
