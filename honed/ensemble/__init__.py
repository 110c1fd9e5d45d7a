"""Ensembles: voting over runs, snapshots of one run, bagging and boosting, each saved as a run with a
diversity report.

    from honed.ensemble import bag, boost, create_ensemble
    result = create_ensemble(["resnet-a", "convnext-b", "vit-c"], method="soft", workspace="honed-runs")
    honed.load(result.run_dir).predict(["cat.jpg"])        # an EnsemblePredictor: each member its own preprocessing
    bag(config, members=5); boost(config, rounds=5)          # members trained on re-drawn training rows
    create_ensemble(snapshots="cyclic-run")                  # the snapshots of one --schedule cyclic run

Members train one after another on one device; spreading them over devices is not done here (each member is
an independent ``honed.train`` call, so a caller can run them in parallel and ensemble the runs afterwards).
"""

from honed.ensemble.bagging import bag
from honed.ensemble.boosting import boost
from honed.ensemble.build import create_ensemble
from honed.combine.rules import (
    TIE_RULE,
    CombinationRule,
    get_method,
    hard_vote,
    list_methods,
    register_method,
    soft_vote,
)
from honed.ensemble.diversity import DiversityReport, independent_majority_error, poisson_binomial_pmf
from honed.predict.ensemble_predictor import EnsemblePredictor
from honed.ensemble.store import EnsembleResult
from honed.predict.voting import VotingEnsemble
from honed.combine.simplex import cross_fit, fit_simplex_weights

__all__ = [
    "TIE_RULE", "CombinationRule", "DiversityReport", "EnsemblePredictor", "EnsembleResult", "VotingEnsemble", "bag",
    "boost", "create_ensemble", "cross_fit", "fit_simplex_weights", "get_method", "hard_vote",
    "independent_majority_error", "list_methods", "poisson_binomial_pmf", "register_method", "soft_vote",
]
