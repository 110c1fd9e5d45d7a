"""The arithmetic of combining members, on hand-made probability tables: soft, hard (ties included), weighted
(fitted without leaking), mean; the independence formula; the diversity matrices; the registry's errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.model_selection import KFold

from honed.ensemble import (
    CombinationRule,
    cross_fit,
    fit_simplex_weights,
    get_method,
    hard_vote,
    independent_majority_error,
    list_methods,
    poisson_binomial_pmf,
    register_method,
    soft_vote,
)
from honed.ensemble.diversity import diversity_report, render_markdown, save_report
from honed.errors import HonedError

# 3 members x 4 samples x 3 classes
TABLE = np.array([
    [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
    [[0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1]],
    [[0.1, 0.2, 0.7], [0.1, 0.2, 0.7], [0.45, 0.1, 0.45], [0.1, 0.2, 0.7]],
])


def test_soft_vote_is_the_mean_probability():
    np.testing.assert_allclose(soft_vote(TABLE), TABLE.mean(axis=0))
    np.testing.assert_allclose(soft_vote(TABLE, np.array([2.0, 1.0, 1.0])),
                               (2 * TABLE[0] + TABLE[1] + TABLE[2]) / 4)


def test_hard_vote_counts_top_classes_and_disagrees_with_soft_where_it_should():
    # sample 0: votes 0, 0, 2 -> class 0 (2 of 3), although soft gives 0 too; sample 3: votes 2, 1, 2 -> 2
    shares = hard_vote(TABLE)
    np.testing.assert_allclose(shares[0], [2 / 3, 0, 1 / 3])
    assert shares.argmax(axis=1)[[0, 3]].tolist() == [0, 2]
    # sample 1: votes 1, 2, 2 -> hard says 2; soft mean [0.133, 0.433, 0.433] ties 1 and 2 within rounding
    assert shares[1].argmax() == 2


def test_hard_vote_ties_go_to_the_highest_mean_probability_then_the_lowest_index():
    # sample 2: votes 0 (member 0), 1 (member 1), 0 (member 2: 0.45 vs 0.45, argmax takes the lowest index)
    assert hard_vote(TABLE)[2].argmax() == 0
    two = np.array([[[0.6, 0.4], [0.45, 0.55]],  # member votes: sample 0 -> 0, sample 1 -> 1
                    [[0.3, 0.7], [0.9, 0.1]]])  # member votes: sample 0 -> 1, sample 1 -> 0
    # each sample: one vote each, a tie; mean probabilities: sample 0 [0.45, 0.55] -> 1; sample 1 [0.675, 0.325] -> 0
    shares = hard_vote(two)
    assert shares.argmax(axis=1).tolist() == [1, 0]
    np.testing.assert_allclose(shares, 0.5, atol=1e-12)  # still the vote shares, nudged by one float step
    exact = np.array([[[0.7, 0.3, 0.0]], [[0.0, 0.3, 0.7]]])  # votes 0 and 2 tie, mean probabilities tie too
    assert hard_vote(exact).argmax(axis=1).tolist() == [0]  # lowest index wins
    flipped = np.array([[[0.0, 0.3, 0.7]], [[0.7, 0.3, 0.0]]])
    assert hard_vote(flipped).argmax(axis=1).tolist() == [0]  # regardless of the members' order


def test_hard_vote_with_weights_and_the_samme_alias():
    weights = np.array([0.2, 0.2, 0.6])  # member 2 outvotes the others together
    assert hard_vote(TABLE, weights).argmax(axis=1).tolist() == [2, 2, 0, 2]
    np.testing.assert_array_equal(get_method("samme").combine(TABLE, weights), hard_vote(TABLE, weights))


def test_weights_are_fitted_towards_the_better_member_and_cross_fitted_without_leaking():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 60)
    good = np.full((60, 3), 0.1)
    good[np.arange(60), targets] = 0.8
    noise = rng.dirichlet(np.ones(3), 60)
    outputs = np.stack([good, noise])
    weights = fit_simplex_weights(outputs, targets, "classify")
    assert weights.sum() == pytest.approx(1) and weights[0] > 0.9
    fit = cross_fit(outputs, targets, "classify", folds=5, seed=3)
    for (fit_rows, score_rows), fold_weights in zip(KFold(5, shuffle=True, random_state=3).split(targets),
                                                    fit.fold_weights):
        own = fit_simplex_weights(outputs[:, fit_rows], targets[fit_rows], "classify")
        np.testing.assert_allclose(fold_weights, own)  # fitted on the other folds only
        np.testing.assert_allclose(fit.outputs[score_rows], np.tensordot(own, outputs[:, score_rows], axes=1))
    np.testing.assert_allclose(fit.weights, weights)


def test_regression_mean_and_weights():
    values = np.array([[[1.0], [2.0]], [[3.0], [6.0]]])
    np.testing.assert_allclose(get_method("mean").combine(values, None), [[2.0], [4.0]])
    targets = np.array([[3.0], [6.0]])
    assert fit_simplex_weights(values, targets, "regress")[1] > 0.99


def test_independent_majority_error_is_the_binomial_tail():
    assert independent_majority_error([0.01] * 3) == pytest.approx(3 * 0.01 ** 2 * 0.99 + 0.01 ** 3)
    assert independent_majority_error([0.01] * 3) == pytest.approx(0.000298, abs=1e-9)
    rates = [0.1, 0.2, 0.3, 0.25]
    brute = sum(np.prod([r if w else 1 - r for r, w in zip(rates, wrong)])
                for wrong in itertools.product([0, 1], repeat=4) if sum(wrong) > 2)  # more than half of 4: 3+
    assert independent_majority_error(rates) == pytest.approx(brute)
    assert poisson_binomial_pmf(rates).sum() == pytest.approx(1)
    assert independent_majority_error([0.3]) == pytest.approx(0.3)  # one member: its own error


def test_diversity_matrices_and_files(tmp_path):
    targets = np.array([0, 1, 2, 2])
    report = diversity_report(["a", "b", "c"], TABLE, targets, soft_vote(TABLE), task="classify", metric="accuracy")
    picks = TABLE.argmax(axis=2)  # a: 0 1 0 2, b: 0 2 1 1, c: 2 2 0 2
    assert report.member_errors == pytest.approx([0.25, 0.75, 0.75])
    assert report.disagreement[0][1] == pytest.approx(np.mean(picks[0] != picks[1]))
    assert report.disagreement[0][0] == 0
    wrong = (picks != targets).astype(float)
    assert report.error_correlation[0][2] == pytest.approx(np.corrcoef(wrong[0], wrong[2])[0, 1])
    assert report.independent_error == pytest.approx(independent_majority_error([0.25, 0.75, 0.75]))
    save_report(report, tmp_path)
    stored = json.loads((tmp_path / "diversity.json").read_text())
    assert stored["members"] == ["a", "b", "c"] and len(stored["error_correlation"]) == 3
    assert (tmp_path / "diversity.png").read_bytes()[:4] == b"\x89PNG"
    assert "if members erred independently" in render_markdown(report)


def test_registry_fails_helpfully():
    assert {"soft", "hard", "weighted", "mean", "samme"} <= set(list_methods())
    assert list_methods("s*") == ["samme", "soft"]
    with pytest.raises(HonedError, match="unknown ensemble method 'median'.*hard, mean"):
        get_method("median")
    with pytest.raises(HonedError, match="'soft' is for classify, not regress: use mean, weighted"):
        get_method("soft", "regress")
    with pytest.raises(HonedError, match="already registered"):
        register_method("soft", tasks=("classify",))(soft_vote)


@pytest.mark.parametrize("raw, message", [
    ({"method": "soft"}, "exactly the keys"),
    ({"method": "nope", "weights": None}, "unknown ensemble method"),
    ({"method": "weighted", "weights": [0.5]}, "2 numbers"),
    ({"method": "weighted", "weights": [-1, 2]}, "non-negative"),
    ({"method": "weighted", "weights": [True, 1]}, "2 numbers"),
])
def test_rule_from_json_is_strict(raw, message):
    with pytest.raises(HonedError, match=message):
        CombinationRule.from_dict(raw, 2)
    assert CombinationRule.from_dict({"method": "weighted", "weights": [1, 3]}, 2).weights == (1.0, 3.0)
