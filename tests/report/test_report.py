"""``build_report`` on a real tiny workspace: one self-contained page, every section, user strings escaped,
and a short "not available" line (never a failure) where the data is missing."""

from __future__ import annotations

from html.parser import HTMLParser
import shutil

import pytest

from honed import build_report
from honed.errors import HonedError
from honed.report.html import SECTIONS
from honed.tracking.ledger import Ledger, leaderboard_key
from tests.report.conftest import AMP_CLASS, SCRIPT_CLASS


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text between tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def assert_self_contained(page: str) -> Tags:
    tags = parse(page)
    for tag, attrs in tags.tags:
        for key in ("src", "href", "action", "srcset", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "file:")), (tag, key, value[:80])
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,"), attrs
        if tag == "a":
            assert (attrs.get("href") or "#").startswith("#"), attrs
    assert "http://" not in page and "https://" not in page
    assert not any(tag in ("script", "link", "iframe", "object", "embed") for tag, _ in tags.tags)
    return tags


def records(workspace):
    with Ledger(workspace.root) as ledger:
        return {r.name: r for r in ledger.runs()}


def test_run_report_has_every_section_and_escapes_user_strings(workspace, tmp_path):
    out = build_report(workspace.base, tmp_path / "deep" / "report.html")
    assert out == tmp_path / "deep" / "report.html" and out.is_file()
    page = out.read_text()
    tags = assert_self_contained(page)
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    assert "not available" not in page  # runs, curves, analysis, ensemble and bundle all exist
    assert SCRIPT_CLASS not in page and "&lt;script&gt;" in page  # class name in the gallery and the card
    assert "blue &amp; &quot;sky&quot;" in page and AMP_CLASS in "".join(tags.text)
    rows = records(workspace)
    for name in ("base", "child", "pair", "base-analysis"):
        assert f"<b>{name}</b>" in page
    for name in ("base", "child", "pair"):
        assert f"{rows[name].score:.4f}" in page
    delta = rows["child"].score - rows["base"].score
    assert f"{delta:+.4f}" in page  # the child's delta from its parent, in the tree and in "what they bought"
    images = [attrs for tag, attrs in tags.tags if tag == "img"]
    assert sum(a.get("class") == "figure" for a in images) == 5  # curves, confusion, sensitivity, diversity,
    # and the reliability diagram of the calibration section
    assert sum(a.get("class") == "thumb" for a in images) >= 1
    assert "From the bundle" in page and "## " not in page  # the card's markdown is rendered, not raw


def test_workspace_report_centres_on_the_best_run(workspace, tmp_path):
    rows = records(workspace)
    with_folder = [r for r in rows.values() if (workspace.root / r.path / "config.yaml").is_file()]
    best = min((r for r in with_folder if r.score is not None), key=leaderboard_key)
    page = build_report(workspace.root, tmp_path / "ws.html").read_text()
    assert_self_contained(page)
    assert f"<title>honed report: {best.name}</title>" in page
    assert '<tr class="focus"><td class="tree">' in page and page.count('class="focus"') == 1


def test_child_report_borrows_the_parents_analysis_and_says_so(workspace, tmp_path):
    page = build_report("child", tmp_path / "child.html", workspace=workspace.root).read_text()
    assert "From the analysis of <b>base</b>, an ancestor of child" in page
    assert "<code>honed analyze child</code>" in page
    assert 'no exported bundle of child found' in page  # the only bundle is base's, and child is the focus


def test_missing_data_gives_one_line_per_section_not_an_error(workspace, tmp_path):
    lone = shutil.copytree(workspace.child, tmp_path / "lone" / "child")  # no ledger beside it
    for name in ("metrics.csv", "predictions_val.parquet"):
        (lone / name).unlink()
    page = build_report(lone, tmp_path / "lone.html").read_text()
    assert_self_contained(page)
    assert page.count('<p class="missing">not available:') == len(SECTIONS)
    assert "run <code>honed analyze child</code> to add it" in page
    assert "<img" not in page


def test_an_unknown_target_is_a_user_error(tmp_path):
    with pytest.raises(HonedError, match="neither a run folder nor a workspace"):
        build_report(tmp_path / "nowhere", tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_a_workflow_folder_centres_on_its_best_run_and_final_bundle(workspace, tmp_path):
    import json

    folder = workspace.root / "wf"
    folder.mkdir(exist_ok=True)
    shutil.copytree(workspace.bundle, folder / "bundle", dirs_exist_ok=True)
    (folder / "workflow.json").write_text(json.dumps({"name": "wf", "best": "child", "steps": []}))
    try:
        page = build_report(folder, tmp_path / "wf.html", workspace=workspace.root).read_text()
    finally:
        shutil.rmtree(folder)
    assert "<title>honed report: workflow wf (best run child)</title>" in page
    assert f"From the bundle <code>{folder / 'bundle'}</code>. It was exported from <b>base</b>" in page


def test_regression_sections_say_what_applies_instead(tmp_path):
    from honed.report.data import ReportData
    from honed.report.html import render

    page = render(ReportData(title="t", workspace=None, focus="r<1>", run_dir=tmp_path, task="regress",
                             metric="mae", greater_is_better=False))
    assert "a confusion matrix needs a classification task" in page and "largest residuals" in page
    assert "r<1>" not in page and "honed analyze r&lt;1&gt;" in page
    assert page.count('<p class="missing">not available:') == len(SECTIONS)
