"""Proof that error analysis works: a planted weakness is ranked first, and improving on it recovers the loss."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from honed.analyze import improve_run, read_analysis
from honed.augment import parse_policy
from honed.config import RunConfig
from honed.tracking.ledger import Ledger

PLANTED = {  # synthetic shift -> the recommendation group that must come first, and its augmentation
    "rotated": ("rotation", "rotate"),
    "small": ("scale", "scale"),
    "recoloured": ("colour", "color"),
    "blurred": ("blur", "blur"),
}
IMPROVE_EPOCHS = 15  # augmented training needs longer than the 5-epoch baseline


@pytest.mark.parametrize("shift", list(PLANTED))
def test_analysis_ranks_the_planted_factor_first(planted, shift):
    case = planted(shift)
    group, augmentation = PLANTED[shift]
    top = case.analysis.factors[0]
    assert top.group == group and top.significant, [(f.name, round(f.score, 3)) for f in case.analysis.factors]
    assert case.analysis.recommendations[0].group == group
    assert augmentation in [item.name for item in parse_policy(case.analysis.policy).items]
    runner_up = case.analysis.factors[1]
    assert top.score > runner_up.score + 0.1 or runner_up.group == group  # a clear margin over other remedies


def test_analysis_writes_its_files_and_a_ledger_row(planted):
    case = planted("rotated")
    folder = case.run_dir / "analysis"
    for name in ("analysis.json", "worst.png", "confusion.png", "probes.png", "ranking.png", "probes.csv"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    saved = json.loads((folder / "analysis.json").read_text())
    assert saved == read_analysis(case.run_dir)
    assert saved["recommended"]["policy"] == case.analysis.policy
    assert saved["errors"]["worst"][0]["loss"] >= saved["errors"]["worst"][-1]["loss"]
    assert {"true", "predicted", "count"} <= set(saved["errors"]["confusion"]["pairs"][0])
    assert {row["class"] for row in saved["errors"]["per_class"]} == {"circle", "cross", "square", "triangle"}
    probes = pd.read_csv(folder / "probes.csv")
    assert set(probes["set"]) == {"training", "validation"} and (probes["ci_low"] <= probes["ci_high"]).all()
    assert any(s["kind"] == "class" for s in saved["slices"])
    with Ledger(case.run_dir.parent) as ledger:
        row = ledger.get(case.analysis.ledger_name)
    assert row.kind == "analysis" and row.parent == "baseline" and row.score is None
    assert row.path == "baseline/analysis" and "rotate" in row.change


@pytest.mark.slow
@pytest.mark.parametrize("shift", list(PLANTED))
def test_improve_recovers_at_least_half_of_the_planted_loss(planted, shift):
    case = planted(shift)
    lost = case.clean_accuracy - case.shifted_accuracy
    assert lost > 0.05, (case.clean_accuracy, case.shifted_accuracy)  # the planted weakness costs accuracy
    result, comparison = improve_run(case.run_dir, epochs=IMPROVE_EPOCHS, name=f"improved-{shift}")
    recovered = result.metrics["accuracy"] - case.shifted_accuracy
    assert recovered >= 0.5 * lost, (case.clean_accuracy, case.shifted_accuracy, result.metrics["accuracy"])
    config = RunConfig.from_yaml(result.run_dir / "config.yaml")
    kept = next(c for c in comparison["candidates"] if c["group"] == comparison["kept"])  # checked first
    assert config.parent == "baseline" and config.change.startswith(f"augment: +{kept['augment']}")
    assert comparison["before"]["accuracy"] == pytest.approx(case.shifted_accuracy)
    assert comparison["delta"]["accuracy"] == pytest.approx(recovered)
