"""Label issues and quality flags on the pages, in a real headless browser (Debian's Chromium through
playwright, as tests/report/test_browser.py): the data check page and a run report show the doubtful labels
as thumbnails with their given and suggested labels, every image decodes, nothing is fetched."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.data.test_label_issues import FLIPPED, noisy_folder  # noqa: F401 - the fixture
from tests.report.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: install Debian's "
                                "chromium package to run the headless-browser tests of the pages")


def _open(page_file: Path) -> tuple[list[str], list[str], list[dict], str]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
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
            text = page.inner_text("body")
        finally:
            browser.close()
    return errors, requests, images, text


def test_data_check_page_shows_label_issues_and_quality_in_chromium(noisy_folder, tmp_path):  # noqa: F811
    from tests.reliability.cli_app import cli_app

    page_file = tmp_path / "check.html"
    result = CliRunner().invoke(cli_app(), ["data", "check", str(noisy_folder), "--label-issues", "--image-size",
                                            "32", "--csv", str(tmp_path / "issues.csv"), "--html", str(page_file)])
    assert result.exit_code == 0, result.output
    errors, requests, images, text = _open(page_file)
    assert errors == [] and all(url.startswith(("file:", "data:")) for url in requests), (errors, requests)
    cards = [i for i in images if i["alt"].startswith("labelled ")]
    assert len(cards) >= 3 and all(i["complete"] and i["width"] > 0 for i in images)
    assert "labelled red, looks like blue" in {i["alt"] for i in cards}
    assert "Label issues" in text and "Image quality" in text and "suggested" in text


# a probe run, its analysis and a bundle: 17 s at a load average of 12-16 (47 s at 15-25): under the slow mark's 20 s
def test_run_report_and_card_show_doubtful_validation_labels(noisy_folder, tmp_path, monkeypatch):  # noqa: F811
    from honed import build_report
    from honed.training.fit import train
    from tests.training.test_train import tiny_config

    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))
    frame = pd.DataFrame({"path": sorted(str(p) for p in noisy_folder.rglob("*.png"))})
    frame["label"] = [Path(p).parent.name for p in frame["path"]]
    flipped = {str(noisy_folder / name) for name in FLIPPED}
    frame["split"] = ["val" if p in flipped or i % 4 == 0 else "train" for i, p in enumerate(frame["path"])]
    manifest = tmp_path / "manifest.csv"
    frame.to_csv(manifest, index=False)
    config = tiny_config(manifest, tmp_path / "ws", epochs=1)
    config.model.name, config.model.pretrained, config.model.strategy = "tf_efficientnet_lite0", True, "probe"
    config.preprocess.image_size = 32
    run = train(config).run_dir
    page_file = build_report(run, tmp_path / "report.html")
    errors, requests, images, text = _open(page_file)
    assert errors == [] and all(url.startswith(("file:", "data:")) for url in requests), (errors, requests)
    assert "Doubtful labels and image quality" in text
    doubtful = {i["alt"] for i in images if i["alt"].startswith("labelled ")}
    assert {"labelled red, looks like blue", "labelled blue, looks like red"} <= doubtful
    assert all(i["complete"] and i["width"] > 0 for i in images)

    from honed.analyze import analyze_run
    from honed.export.bundle import export_bundle

    analyze_run(run, probes=["blur"], max_images=20, reference_images=20)
    export_bundle(run, tmp_path / "bundle")
    card = (tmp_path / "bundle" / "model_card.md").read_text()
    assert "## Data quality" in card and "validation images have a doubtful label" in card
    assert "flip0.png" in card and "image quality of the analyzed val images" in card
