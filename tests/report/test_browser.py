"""The report in a real headless browser (Debian's Chromium through playwright): it loads from file:// without
console or page errors, asks for nothing over the network, every figure decodes, and the page is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from honed import build_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent: install Debian's chromium package to run "
                                       "the headless-browser test of the HTML report")


def test_report_renders_in_chromium(workspace, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    page_file = build_report(workspace.base, tmp_path / "report.html")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => "
                                   "({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert title == "honed report: base"
    assert len(images) >= 5  # four figures and at least one thumbnail
    assert all(i["complete"] and i["width"] > 0 for i in images), images
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 900  # the full page, taller than the viewport
    assert pixels.std() > 20  # not a blank (single-colour) page
    assert len(np.unique(pixels)) > 50  # figures and text, not a few flat blocks
