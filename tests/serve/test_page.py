"""The page at / in a real headless Chromium: choose an image, see the top-k and the preprocessed view."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from honed.serve import ServeSettings, create_app, load_served
from tests.conftest import write_image
from honed.serve.process import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@contextmanager
def serving(bundle, *, tokens=()):
    """The app under a real uvicorn server in a thread, on a free loopback port; yields its URL."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(load_served(bundle, device="cpu"), ServeSettings(),
                                                      tokens=tokens),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(url + "/health").status_code == 200
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_url(bundle):
    with serving(bundle) as url:
        yield url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser test needs Debian's Chromium at /usr/bin/chromium")
def test_page_predicts_a_chosen_image_in_a_real_browser(live_url, tmp_path):
    from playwright.sync_api import sync_playwright

    image = write_image(tmp_path / "red-square.png", (200, 40, 40), size=(64, 48), noise_seed=3)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(live_url + "/")
            assert "honed model" in page.text_content("h1")
            page.set_input_files("#files", str(image))
            page.wait_for_selector(".topk tr", timeout=20_000)
            rows = page.locator(".topk tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
            preview = page.get_attribute(".result img", "src")
            status = page.text_content("#status")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(rows) == 2 and {row[0] for row in rows} == {"blue", "red"}
    probabilities = [float(row[1]) for row in rows]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-3
    assert preview.startswith("data:image/png;base64,") and status == "1 prediction(s)"
    assert problems == []
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not a blank page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser test needs Debian's Chromium at /usr/bin/chromium")
def test_page_asks_for_the_token_once_and_sends_it(bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    token = "page-token-for-the-browser-test"
    first = write_image(tmp_path / "one.png", (200, 40, 40), size=(32, 32), noise_seed=3)
    second = write_image(tmp_path / "two.png", (40, 40, 200), size=(32, 32), noise_seed=4)
    prompts: list[str] = []
    with serving(bundle, tokens=(token,)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (prompts.append(dialog.message), dialog.accept(token)))
            page.goto(url + "/")
            page.set_input_files("#files", str(first))
            page.wait_for_function("document.getElementById('status').textContent === '1 prediction(s)'",
                                   timeout=20_000)
            page.set_input_files("#files", str(second))  # the stored token: no second question
            page.wait_for_selector("text=two.png", timeout=20_000)
            stored = page.evaluate("sessionStorage.getItem('honed-token')")
        finally:
            browser.close()
    assert len(prompts) == 1 and "token" in prompts[0]
    assert stored == token
