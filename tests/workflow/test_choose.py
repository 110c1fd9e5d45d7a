"""The strategy measured on the data where the advisor's rule is unsure: the decision rule on constructed
scores, the candidates the prior names, k-fold scores on cached features, and the choice in the workflow."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from honed.advise.advisor import Advice
from honed.advise.probe_gain import Measurements
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.data.prepare import prepare_data
from honed.tracking.ledger import Ledger
from honed.workflow import run_workflow
from honed.workflow.choice_scores import Candidate, feature_scores
from honed.workflow.choose import candidates_for, pick
from tests.workflow.test_workflow import tiny_spec


def _advice(decision: str, *, per_class: int = 30, gain: float = 0.4, pretrained: bool = True) -> Advice:
    m = Measurements(task="classify", model="m", image_size=16, pretrained=pretrained, train_images=per_class * 2,
                     classes=2, per_class_min=per_class, per_class_median=per_class, sample=40,
                     probe_pretrained=0.5 + gain, probe_random=0.5, chance=0.5, seconds=1.0)
    return Advice(decision, ["constructed"], m)


def test_the_cheaper_candidate_wins_within_one_standard_error():
    head = Candidate("head", [0.80, 0.82, 0.78, 0.81, 0.79])  # mean 0.800, se ~0.007
    partial = Candidate("partial", [0.81, 0.80, 0.82, 0.80, 0.82])  # mean 0.810, se 0.004
    choice = pick([partial, head], greater_is_better=True)
    assert partial.se == pytest.approx(0.004, abs=1e-3)
    assert choice.strategy == "partial"  # 0.010 behind is more than the best's standard error
    tied = Candidate("partial", [0.80, 0.81, 0.79, 0.80, 0.81])  # mean 0.802: head is within its se
    choice = pick([tied, head], greater_is_better=True)
    assert choice.strategy == "head" and "cheaper" in choice.reason
    assert pick([Candidate("full", [0.5]), Candidate("probe", [0.5])], greater_is_better=True).strategy == "probe"


def test_folds_that_agree_by_chance_keep_the_pooled_predictions_standard_error():
    lucky = Candidate("head", [0.96] * 5, pooled_se=0.013)  # each fold 47 of 49 right: no spread by chance
    assert lucky.std == 0 and lucky.se == pytest.approx(0.013)
    probe = Candidate("probe", [0.95, 0.95, 0.94, 0.95, 0.95])
    assert pick([lucky, probe], greater_is_better=True).strategy == "probe"  # one image behind: within noise
    assert Candidate("head", [0.80, 0.90, 0.70, 0.85, 0.75], pooled_se=0.01).se == pytest.approx(0.0354, abs=1e-3)


def test_lower_is_better_metrics_and_holdout_standard_errors():
    probe = Candidate("probe", [0.62], holdout_se=0.05)
    full = Candidate("full", [0.58], holdout_se=0.05)  # lower loss, but within the holdout's standard error
    assert pick([full, probe], greater_is_better=False).strategy == "probe"
    full.holdout_se = 0.01
    assert pick([full, probe], greater_is_better=False).strategy == "full"


def test_the_prior_names_the_candidates_and_a_sure_rule_is_left_alone():
    assert candidates_for(_advice("probe")) == ["probe", "head", "partial"]
    assert candidates_for(_advice("partial", per_class=500, gain=0.05)) == ["probe", "head", "partial"]
    assert candidates_for(_advice("full", per_class=6000)) == ["partial", "full"]  # near FULL_MIN_PER_CLASS
    assert candidates_for(_advice("full", per_class=20000)) == []
    assert candidates_for(_advice("scratch", pretrained=False)) == []


def test_probe_and_head_are_scored_by_k_fold_on_cached_features(color_folder, tmp_path, one_thread):
    base = RunConfig(name="", workspace=str(tmp_path), data=DataConfig(source=str(color_folder)),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=20, batch_size=8, lr=0.05, workers=0, seed=0))
    manifest = prepare_data(base.data, seed=0).manifest
    scored = feature_scores(base, manifest, ["probe", "head"], folds=4, metric="accuracy")
    assert [c.strategy for c in scored] == ["probe", "head"]
    for candidate in scored:
        assert len(candidate.scores) == 4 and candidate.std >= 0 and "4-fold" in candidate.how
        assert candidate.mean > 0.8  # two colours: separable even on random features
        assert candidate.se >= candidate.pooled_se >= 0
    holdout = feature_scores(base, manifest, ["probe"], folds=1, metric="accuracy")[0]
    assert len(holdout.scores) == 1 and holdout.holdout_se is not None


def test_the_workflow_records_each_measured_candidate(cifar_mini, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr("honed.advise.advisor.advise_manifest", lambda *a, **k: _advice("probe", per_class=40))
    spec = tiny_spec(cifar_mini, tmp_path / "ws", strategy="auto", lr=3e-3, improve_rounds=0, tune_trials=0,
                     ensemble_size=0, tta="", refit=False)
    spec.base.train.epochs = 1
    result = run_workflow(spec)
    saved = json.loads((result.folder / "choice.json").read_text())
    assert saved["prior"] == "probe" and saved["folds"] == 5
    strategies = [c["strategy"] for c in saved["candidates"]]
    assert strategies == ["probe", "head", "partial"]
    with Ledger(tmp_path / "ws") as ledger:
        rows = {r.name: r for r in ledger.runs()}
    for strategy in strategies:
        row = rows[f"wf-choose-{strategy}"]
        assert row.kind == "choice" and row.parent == "wf" and len(row.metrics["scores"]) == 5
        assert "±" in row.change and result.state.step(f"choose-{strategy}").status == "done"
    assert all(rows[f"wf-choose-partial-fold{k}"].kind == "cv-fold" for k in range(5))
    out_of_fold = pd.concat([pd.read_parquet(tmp_path / "ws" / f"wf-choose-partial-fold{k}" / "predictions_val.parquet")
                             for k in range(5)])
    fold0 = pd.read_parquet(tmp_path / "ws" / "wf-choose-partial-fold0" / "manifest.parquet")
    assert out_of_fold["path"].is_unique and set(out_of_fold["path"]) == set(  # each image once
        fold0.loc[fold0["split"].isin(["train", "val"]), "path"])
    partial = rows["wf-choose-partial"].metrics  # short runs get the pooled floor too, not only cached features
    assert partial["pooled_se"] > 0 and partial["se"] >= partial["pooled_se"]
    chosen = saved["strategy"]
    assert result.state.step("setup").change.split("strategy ")[1].startswith(chosen)
    assert rows["wf-baseline"].change.startswith(f"baseline: {chosen}")


def test_short_runs_are_priced_before_they_start_and_skipped_when_they_would_eat_the_budget():
    from types import SimpleNamespace

    from honed.workflow.budget import Budget
    from honed.workflow.choose import _unaffordable
    from honed.workflow.plan import Asked, Data, make_plan
    from honed.workflow.timing import Costs

    # tf_efficientnet_lite0 at 224 px on two busy cores; 244 photos (ants and bees) with a 5-minute budget
    costs = Costs(image_size=224, build_s=1.0, load_s=0.01, train_s=0.12, infer_s=0.04, seconds=1.5)
    data = Data(train=196, val=48, test=0, classes=2, batch_size=32)
    asked = Asked(strategy="probe", lr_given=False, epochs=5, improve_rounds=1, tune_trials=0, tta_views=1,
                  ensemble_size=0, analysis_images=200, refit=True)
    state = SimpleNamespace(step=lambda key: None, steps=[], best="")

    def ctx(budget_s: float) -> SimpleNamespace:
        plan = make_plan(budget_s, 10, costs, data, asked)
        return SimpleNamespace(plan=plan, spec=SimpleNamespace(budget_s=budget_s), budget=Budget(budget_s),
                               state=state)

    why = _unaffordable(ctx(300), "partial", 5, 5, spent=5.0)
    assert why.startswith("budget: its 5-fold CV short runs take about") and "to spare" in why
    assert _unaffordable(ctx(3600), "partial", 5, 5, spent=5.0) == ""  # an hour affords them
