"""The workflow's step table shows what each step scored, a fix's short check included."""

from __future__ import annotations

import types

from rich.console import Console

from honed.cli.workflow_cmd import score_cell, steps_table
from honed.workflow.state import Step, WorkflowState


def _rendered(steps: list[Step]) -> str:
    result = types.SimpleNamespace(name="w", state=WorkflowState(name="w", metric="accuracy", steps=steps))
    console = Console(width=200, record=True)
    console.print(steps_table(result))
    return console.export_text()


def test_a_check_shows_its_score_in_parentheses_and_the_caption_says_why():
    baseline = Step("baseline", "done", run="w-baseline", score=0.6667, kept=True)
    check = Step("improve-1-check-scale", "done", run="w-improve-1-check-scale", details={"check": True, "score": 0.6})
    skipped = Step("tta", "skipped", change="does not fit")
    assert [score_cell(s) for s in (baseline, check, skipped)] == ["0.6667", "(0.6000)", ""]
    text = _rendered([baseline, check, skipped])
    assert "(0.6000)" in text and "not a candidate for best" in text


def test_no_caption_without_checks():
    assert "candidate for best" not in _rendered([Step("baseline", "done", run="w-baseline", score=0.5)])
