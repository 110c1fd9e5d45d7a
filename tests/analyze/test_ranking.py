"""The ranking score on a toy factor whose shift, sensitivity and error concentration are set by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from honed.analyze.factors import Factor
from honed.analyze.sensitivity import ProbeRun
from honed.analyze.ranking import (
    MIN_SCORE,
    Evidence,
    FactorScore,
    rank_factors,
    score_factor,
)
from honed.analyze.recommend import merge_policy, recommend, to_apply


def _bump(x: torch.Tensor, amount: float, g: torch.Generator, channel: int = 0) -> torch.Tensor:
    out = x.clone()
    out[:, channel, 0, 0] += amount / 10
    return out


def _read(x: torch.Tensor, channel: int = 0) -> torch.Tensor:
    return x[:, channel, 0, 0] * 10


TOY = Factor("toy", "rotation", "toy images", "units", 0.0, (1.0, 2.0, 3.0), _bump, _read, +1,
             lambda m: f"rotate:{m:.2g}")
OTHER = Factor("other", "colour", "other images", "units", 0.0, (1.0, 2.0, 3.0),
               lambda x, a, g: _bump(x, a, g, channel=1), lambda x: _read(x, channel=1), +1, lambda m: "color:0.3")


def _images(values: np.ndarray) -> torch.Tensor:
    """uint8 images carrying a toy value (0..2.55 in steps of 0.01) in pixel (0, 0) of channel 0."""
    x = torch.zeros(len(values), 3, 4, 4)
    x[:, 0, 0, 0] = torch.as_tensor(values, dtype=torch.float32) / 10
    x[:, 1, 0, 0] = torch.as_tensor(np.linspace(0, 0.5, len(values), endpoint=False), dtype=torch.float32) / 10
    return (x * 255).round().to(torch.uint8)


def evidence(*, val_shift: np.ndarray, drops: tuple[float, float, float], val_failures: np.ndarray,
             n: int = 40) -> Evidence:
    """Training images with toy values in [0, 0.5), probed with failure rates ``drops`` at strengths 1, 2, 3
    (for both toy factors); the validation images are the training ones with the toy value shifted."""
    base = np.linspace(0, 0.5, n, endpoint=False)
    ref = _images(base)
    run = ProbeRun(clean=np.zeros(n))
    g = torch.Generator()
    for factor in (TOY, OTHER):
        for k, (strength, drop) in enumerate(zip(factor.strengths, drops)):
            failing = np.zeros(n)
            failing[: int(round(drop * n))] = 1
            run.failures[factor.name, k] = failing
            run.measured[factor.name, k] = factor.measure(factor.transform(ref.float() / 255, strength, g))
    val = _images(base + val_shift)
    return Evidence(run, ref, val, val_failures, [f"img{i}.png" for i in range(n)], headroom=0.5, seed=0)


SENSITIVE = (0.25, 0.5, 0.5)  # failure rates under the probe: half the headroom at 1, all of it from 2 on
BLIND = (0.0, 0.0, 0.0)


def test_shift_with_sensitivity_scores_high_and_matches_the_strength():
    score = score_factor(TOY, evidence(val_shift=np.full(40, 2.0), drops=SENSITIVE, val_failures=np.ones(40) / 2))
    assert score.expected_drop == pytest.approx(1.0) and score.score == pytest.approx(1.0)
    assert 1.9 <= score.matched_strength <= 3.0 and score.significant
    assert score.policy.startswith("rotate:")


def test_sensitivity_without_shift_explains_nothing():
    score = score_factor(TOY, evidence(val_shift=np.zeros(40), drops=SENSITIVE, val_failures=np.zeros(40)))
    assert score.expected_drop == 0 and score.score == 0 and not score.significant


def test_shift_without_sensitivity_explains_nothing():
    score = score_factor(TOY, evidence(val_shift=np.full(40, 2.0), drops=BLIND, val_failures=np.zeros(40)))
    assert score.expected_drop == 0 and score.score == 0 and not score.significant


def test_a_partial_shift_shows_as_error_concentration():
    shift = np.zeros(40)
    shift[-10:] = 3.0  # a quarter of validation images is far out, and only those fail
    failures = (shift > 0).astype(float)
    score = score_factor(TOY, evidence(val_shift=shift, drops=BLIND, val_failures=failures))
    assert score.expected_drop == 0 and score.concentration > 0.9
    assert score.score == pytest.approx(1 - (1 - score.expected_drop) * (1 - score.concentration))
    assert score.slice_failure == 1 and score.rest_failure == 0 and score.significant
    assert set(score.examples) <= {f"img{i}.png" for i in range(30, 40)}


def test_rank_factors_puts_the_shifted_factor_first():
    ev = evidence(val_shift=np.full(40, 2.0), drops=SENSITIVE, val_failures=np.ones(40) / 2)
    ranked = rank_factors([OTHER, TOY], ev)
    assert [s.name for s in ranked] == ["toy", "other"]
    assert ranked[0].score > 0.9 and ranked[1].score == 0  # equally sensitive, but only one is shifted


def _fs(name: str, group: str, score: float, policy: str, significant: bool = True) -> FactorScore:
    nan = float("nan")
    return FactorScore(name, group, name, score, score, 0.0, [0.5], [1.0], 1.0, 0.9, 0, 1, nan, nan, [nan, nan],
                       0, significant, policy)


def test_recommendations_group_by_remedy_and_improve_applies_the_top_ones():
    factors = [_fs("rotation", "rotation", 0.8, "rotate:40@0.8"), _fs("contrast", "colour", 0.5, "color:0.5@0.8"),
               _fs("saturation", "colour", 0.45, "color:0.6@0.8"), _fs("blur", "blur", 0.2, "blur:1@0.5"),
               _fs("noise", "noise", 0.05, "noise:0.1", significant=False)]
    recs = recommend(factors, gap={"relative_gap": 0.85}, drop_rate=0.0, weight_decay=0.0)
    assert [r.group for r in recs] == ["rotation", "colour", "blur"]
    assert recs[1].policy == "color:0.5@0.8" and len(recs[1].evidence["factors"]) == 2
    assert [r.group for r in to_apply(recs)] == ["rotation", "colour"]


def test_a_gap_no_factor_explains_asks_for_regularization():
    recs = recommend([_fs("blur", "blur", 0.05, "blur:1", significant=False)], gap={"relative_gap": 0.6},
                     drop_rate=0.1, weight_decay=0.01)
    assert [r.group for r in recs] == ["regularization"]
    assert recs[0].regularization == {"drop_rate": 0.3, "weight_decay": 0.05}
    assert recs[0].score == pytest.approx(0.55) and recs[0].score >= MIN_SCORE
    assert recommend([], gap={"relative_gap": 0.05}, drop_rate=0, weight_decay=0) == []


def test_merge_policy_appends_and_replaces_by_name():
    assert merge_policy("hflip,rotate:10", ["rotate:30@0.8", "color:0.5"]) == "hflip,rotate:30@0.8,color:0.5"
    assert merge_policy("", ["scale:0.3@0.8", "blur:2@0.5,noise:0.03@0.3"]) == "scale:0.3@0.8,blur:2@0.5,noise:0.03@0.3"
