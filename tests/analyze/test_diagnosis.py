"""One diagnosis: the fit report, the factors and the shifts rank in one list that never contradicts itself,
and improve checks the top fixes before it applies one."""

from __future__ import annotations

import math

import numpy as np

import pytest

from honed.analyze.candidates import CONTROL, Candidate, best_candidate, continued_epochs, from_analysis
from honed.analyze.ranking import FactorScore
from honed.analyze.recommend import recommend, to_apply
from honed.analyze.shift import ShiftScore
from honed.config import DataConfig, RunConfig, TrainConfig

NAN = math.nan
UNDERFIT = {"verdict": "underfitting", "evidence": ["training loss still falling 12% per epoch over the last 2 "
                                                    "epochs (validation 8%): the run stopped while learning"],
            "suggestions": ["--epochs 16 (now 8)"]}
OVERFIT = {"verdict": "overfitting", "evidence": ["validation loss lowest at epoch 3"], "suggestions": []}


def _factor(name: str, group: str, score: float, policy: str, significant: bool = True) -> FactorScore:
    return FactorScore(name=name, group=group, slice=name, score=score, expected_drop=score, concentration=0.0,
                       sensitivity=[score], strengths=[1.0], matched_strength=1.0, shift_auc=0.5, train_median=0.0,
                       val_median=0.0, slice_failure=NAN, rest_failure=NAN, slice_ci=[NAN, NAN], slice_size=0,
                       significant=significant, policy=policy)


def _shift(score: float, share: float, significant: bool = True) -> ShiftScore:
    return ShiftScore(name="turned a quarter clockwise", factor="rotation", group="orientation",
                      policy="quarter_turn@0.5", score=score, share_of_gap=share, recovered=score * 0.6,
                      ci=[0.1, 0.3], val_failure=0.54, back_failure=0.34, train_failure=0.3, simulated_failure=0.6,
                      significant=significant)


def test_an_underfitting_model_is_told_to_train_longer_never_to_regularize():
    gap = {"relative_gap": 0.6, "train_failure": 0.3}  # a large gap no factor explains
    recs = recommend([_factor("size", "scale", 0.05, "scale:0.6@0.8", significant=False)], gap=gap, drop_rate=0.1,
                     weight_decay=0.01, fit=UNDERFIT, epochs=8, lr=0.01, chance=0.75)
    groups = [r.group for r in recs]
    assert groups == ["underfitting"], groups
    rec = recs[0]
    assert rec.training == {"epochs": 16.0, "lr": 0.02} and rec.regularization == {"drop_rate": 0.0}
    assert rec.score == pytest.approx(0.4) and "still falling" in rec.reason
    # the same numbers without the verdict: the unexplained gap is read as a regularization problem
    # a shift that explains most of the gap still comes first, and the model is still not told to regularize
    both = recommend([], gap=gap, drop_rate=0.1, weight_decay=0.01, fit=UNDERFIT, shifts=[_shift(0.3, 0.85)],
                     epochs=8, chance=0.75)
    assert [r.group for r in both] == ["orientation", "underfitting"]
    plain = recommend([], gap=gap, drop_rate=0.1, weight_decay=0.01, epochs=8)
    assert [r.group for r in plain] == ["regularization"] and plain[0].regularization["weight_decay"] == 0.05


def test_an_overfitting_model_is_told_to_regularize_even_when_factors_explain_the_gap():
    gap = {"relative_gap": 0.3, "train_failure": 0.01}
    recs = recommend([_factor("hue", "colour", 0.3, "color:0.5@0.8")], gap=gap, drop_rate=0.0, weight_decay=0.0,
                     fit=OVERFIT, epochs=8)
    assert [r.group for r in recs] == ["colour", "overfitting"]
    assert recs[1].regularization == {"drop_rate": 0.2, "weight_decay": 0.05}
    assert recs[0].training == {"epochs": 16.0}  # augmentation is budgeted twice the epochs


def test_a_shift_that_explains_the_gap_comes_first_and_shrinks_the_unexplained_part():
    gap = {"relative_gap": 0.35, "train_failure": 0.3}
    factors = [_factor("size", "scale", 0.12, "scale:0.6@0.8"), _factor("rotation", "rotation", 0.0, "rotate:10",
                                                                         significant=False)]
    recs = recommend(factors, gap=gap, drop_rate=0.0, weight_decay=0.0, shifts=[_shift(0.3, 0.85)], epochs=8)
    assert [r.group for r in recs] == ["orientation", "scale"]  # 0.35 - 0.3 left: no regularization
    assert recs[0].policy == "quarter_turn@0.5" and "85%" in recs[0].reason
    assert recs[0].evidence["shift"]["back_failure"] == 0.34
    assert [r.group for r in to_apply(recs)] == ["orientation"]  # 0.12 < half of 0.3
    # an insignificant shift is evidence of nothing
    weak = recommend(factors, gap=gap, drop_rate=0.0, weight_decay=0.0, shifts=[_shift(0.3, 0.85, False)])
    assert "orientation" not in [r.group for r in weak]


def test_a_measured_shift_sets_its_groups_policy_when_a_sensitivity_in_the_group_scores_higher():
    """CIFAR darkened 4x: contrast sensitivity (a side effect of darkening) outscored the measured darkening;
    the group keeps the higher score, the augmentation is the one that covers the measured shift."""
    darker = ShiftScore(name="darker (0.25x brightness)", factor="brightness", group="colour",
                        policy="brightness:5@0.5", score=0.41, share_of_gap=0.7, recovered=0.3, ci=[0.1, 0.4],
                        val_failure=0.56, back_failure=0.3, train_failure=0.2, simulated_failure=0.5,
                        significant=True)
    recs = recommend([_factor("contrast", "colour", 0.95, "color:0.875@0.8")], gap={"relative_gap": 0.7,
                     "train_failure": 0.2}, drop_rate=0.0, weight_decay=0.0, shifts=[darker], epochs=8)
    assert recs[0].group == "colour" and recs[0].score == pytest.approx(0.95)
    assert recs[0].policy == "brightness:5@0.5" and recs[0].evidence["shift"]["name"].startswith("darker")


def test_a_measured_shift_outranks_a_higher_sensitivity_that_shows_no_shift():
    """Quarter-turned CIFAR validation images: turning them back won 47% of the gap (under "most"), while the
    model's sensitivity to small rotations scored higher, though less than twice as high: the measured shift
    comes first."""
    gap = {"relative_gap": 0.45, "train_failure": 0.2}
    factors = [_factor("rotation", "rotation", 0.29, "rotate:15@0.5"), _factor("translation", "position", 0.17,
                                                                              "translate:0.1@0.5")]
    recs = recommend(factors, gap=gap, drop_rate=0.0, weight_decay=0.0, shifts=[_shift(0.19, 0.47)], epochs=8)
    assert [r.group for r in recs][:3] == ["orientation", "rotation", "position"]
    unmeasured = recommend(factors, gap=gap, drop_rate=0.0, weight_decay=0.0, shifts=[_shift(0.19, 0.47, False)])
    assert [r.group for r in unmeasured][:2] == ["rotation", "position"]
    # shapes rotated by any angle: flipping back wins a little (a turned triangle looks flipped), the rotation
    # sensitivity is more than twice that: rotation stays first
    factors[0] = _factor("rotation", "rotation", 0.55, "rotate:30@0.5")
    turned = recommend(factors, gap=gap, drop_rate=0.0, weight_decay=0.0, shifts=[_shift(0.21, 0.34)], epochs=8)
    assert [r.group for r in turned][:2] == ["rotation", "orientation"]


def test_candidates_come_from_the_recommendations_and_the_best_check_that_helps_is_kept():
    saved = {"recommendations": [
        {"group": "orientation", "title": "t", "score": 0.5, "policy": "quarter_turn@0.5", "regularization": {},
         "training": {"epochs": 16.0}},
        {"group": "flip", "title": "t", "score": 0.3, "policy": "", "regularization": {}, "training": {}},
        {"group": "underfitting", "title": "t", "score": 0.2, "policy": "", "regularization": {"drop_rate": 0.0},
         "training": {"epochs": 16.0, "lr": 0.02}}]}
    found = from_analysis(saved)
    assert [c.group for c in found] == ["orientation", "underfitting"]  # "flip" changes nothing
    assert found[1].dropout == 0.0 and found[1].lr == 0.02 and found[0].epochs == 16
    parent = RunConfig(data=DataConfig(source="x"), train=TrainConfig(epochs=8))
    assert continued_epochs(parent, found[0]) == 16  # an added augmentation: all the 16 epochs it asks for
    assert continued_epochs(parent, found[1]) == 8  # train longer: 8 more from the parent's weights, 16 in all
    a, b = Candidate("a", "", 0.5, check_score=0.60), Candidate("b", "", 0.4, check_score=0.70)
    assert best_candidate([a, b], parent_score=0.65, metric="accuracy") is b
    assert best_candidate([a, b], parent_score=0.75, metric="accuracy") is None  # nothing helps: nothing kept
    assert best_candidate([a, b], parent_score=0.65, metric="mae") is a  # lower is better


def test_a_fix_is_judged_against_the_same_short_fine_tune_without_it():
    """A short check restarts the learning-rate schedule, which can cost more than any fix gains: against the
    parent nothing would help; against the control (the unchanged short fine-tune) the fix that helps is found."""
    control = Candidate(CONTROL, "", 0.0, check_score=0.30)
    colour, scale = Candidate("colour", "", 0.6, check_score=0.36), Candidate("scale", "", 0.5, check_score=0.26)
    assert best_candidate([colour, scale], parent_score=0.445, metric="accuracy") is None  # against the parent
    assert best_candidate([control, colour, scale], parent_score=0.445, metric="accuracy") is colour
    assert best_candidate([control, scale], parent_score=0.2, metric="accuracy") is None  # below the control


def test_a_measured_shifts_fix_is_not_vetoed_by_a_short_check():
    """An added augmentation pays late: the fix for a shift that explains most of the gap stays when its short
    check falls under the control; another fix that beats it (without outputs to pair: by score) replaces it."""
    control = Candidate(CONTROL, "", 0.0, check_score=0.667)
    blur = Candidate("blur", "", 0.6, "blur:2@0.5", shift_share=0.8, check_score=0.614)
    other = Candidate("underfitting", "", 0.3, check_score=0.621)
    assert blur.proven and not other.proven
    assert best_candidate([control, blur, other], parent_score=0.66, metric="accuracy") is blur
    better = Candidate("colour", "", 0.3, check_score=0.70)
    assert best_candidate([control, blur, better], parent_score=0.66, metric="accuracy") is better
    unproven = Candidate("blur", "", 0.6, "blur:2@0.5", shift_share=0.3, check_score=0.614)
    assert best_candidate([control, unproven, other], parent_score=0.66, metric="accuracy") is None
    saved = {"recommendations": [{"group": "blur", "title": "t", "score": 0.6, "policy": "blur:2@0.5",
                                  "regularization": {}, "training": {"epochs": 10.0},
                                  "evidence": {"shift": {"share_of_gap": 0.8}}}]}
    assert from_analysis(saved)[0].proven


@pytest.mark.slow
def test_improve_checks_the_top_fixes_keeps_one_that_helps_and_records_them(tmp_path):
    """A quarter-turned validation split: the checks are ledger runs, and the kept fix recovers accuracy."""
    import numpy as np

    from honed.analyze import improve_run
    from honed.tracking.ledger import Ledger
    from tests.analyze.test_shift import trained

    base = trained(tmp_path, lambda a: np.rot90(a, k=-1))
    result, comparison = improve_run(base.run_dir, analyze_options={"workers": 0, "reference_images": 60,
                                                                    "probes": ["rotation", "size"]}, check=2)
    control, *checks = comparison["candidates"]
    assert control["group"] == "control" and control["check_run"]  # the same short fine-tune, nothing changed
    assert checks and checks[0]["group"] == "orientation" and comparison["kept"] == "orientation"
    assert checks[0]["check_score"] > control["check_score"]
    assert result.metrics["accuracy"] > base.metrics["accuracy"] + 0.2
    config = RunConfig.from_yaml(result.run_dir / "config.yaml")
    assert "quarter_turn" in config.train.augment and config.model.weights.endswith("best.safetensors")
    assert config.train.epochs == 8  # an added augmentation continues from the parent for twice its 4 epochs
    with Ledger(base.run_dir.parent) as ledger:
        rows = {c["check_run"]: ledger.get(c["check_run"]) for c in [control, *checks]}
    for check in [control, *checks]:  # each a ledger run from the parent
        row = rows[check["check_run"]]
        assert row.parent == "base" and row.change.startswith(f"check {check['group']}:")
        assert row.score == pytest.approx(check["check_score"])


def _check_run(folder, correct):
    """A check run folder with only its validation predictions: two classes, ``correct`` images right."""
    import pandas as pd

    targets = np.arange(len(correct)) % 2
    p_b = np.where(correct, targets, 1 - targets) * 0.8 + 0.1
    folder.mkdir()
    pd.DataFrame({"path": [f"{i}.png" for i in range(len(correct))], "target": np.array(["a", "b"])[targets],
                  "p:a": 1 - p_b, "p:b": p_b}).to_parquet(folder / "predictions_val.parquet")


def test_the_analysis_ranking_stands_unless_a_check_beats_it_beyond_noise(tmp_path):
    right = np.arange(200) >= 80  # 120 of 200
    _check_run(tmp_path / "scale", right)
    one_more = right.copy()
    one_more[0] = True
    _check_run(tmp_path / "regularize", one_more)
    many_more = right | (np.arange(200) < 60)
    _check_run(tmp_path / "colour", many_more)
    ranked = Candidate("scale", "", 0.7, check_score=0.600, check_run="scale")
    close = Candidate("overfitting", "", 0.4, check_score=0.605, check_run="regularize")
    clear = Candidate("colour", "", 0.4, check_score=0.900, check_run="colour")
    assert best_candidate([ranked, close], parent_score=0.5, metric="accuracy", workspace=tmp_path) is ranked
    assert best_candidate([ranked, close], parent_score=0.5, metric="accuracy") is close  # no outputs: scores
    assert best_candidate([ranked, close, clear], parent_score=0.5, metric="accuracy", workspace=tmp_path) is clear
    assert best_candidate([ranked, close], parent_score=0.602, metric="accuracy", workspace=tmp_path) is close
    weak = Candidate("overfitting", "", 0.1, check_score=0.900, check_run="colour")  # clearly better, weak prior
    assert best_candidate([ranked, weak], parent_score=0.5, metric="accuracy", workspace=tmp_path) is ranked
    assert best_candidate([ranked, weak], parent_score=0.65, metric="accuracy", workspace=tmp_path) is weak  # alone
