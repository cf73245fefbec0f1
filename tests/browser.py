"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) on a running demo page."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium")


@contextlib.contextmanager
def demo_page(url: str) -> Iterator:
    """The page at ``url`` once its tabs are drawn; the browser is closed afterwards, whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Not "networkidle": the page keeps a heartbeat stream open (Gradio frees a session's state when
            # it ends), so the network never idles.
            page.goto(url, wait_until="load")
            page.get_by_role("tab").first.wait_for(state="visible", timeout=30_000)
            yield page
        finally:
            browser.close()
