"""``honed boost --method gbm``: gradient boosting on frozen features, trained as a gbm probe run.

The run is an ordinary probe run (``--strategy probe --head-model gbm``, see ``honed.training.probe``): the
config's backbone with its starting weights (``pretrained`` or ``weights``) extracts the pre-logit features,
scikit-learn's HistGradientBoosting is fitted on them for ``rounds`` iterations, and the run keeps the fitted
trees as an ONNX graph, never their training data (``honed.models.heads.gbm``). It therefore predicts with
``honed.load`` (no refit), exports as a bundle or one ONNX graph and joins ensembles; boost only names it and
reports it as its other methods' results.
"""

from __future__ import annotations

import copy
import json

from honed.config import RunConfig
from honed.data.manifest import Manifest
from honed.ensemble.resample import ensemble_name
from honed.ensemble.store import EnsembleResult
from honed.errors import HonedError
from honed.progress import Reporter


def boost_gbm(config: RunConfig, *, rounds: int = 100, manifest: Manifest | None = None,
              reporter: Reporter | None = None) -> EnsembleResult:
    """Train a gbm probe run of ``rounds`` boosting iterations on ``config``'s frozen backbone; its result as an
    EnsembleResult of kind "gbm" (no members, no rule) whose ``run_dir`` is the probe run."""
    from honed.training.fit import train
    from honed.artifacts.run_folder import PROBE_FILE

    if rounds < 1:
        raise HonedError(f"--rounds must be at least 1, not {rounds}")
    run = copy.deepcopy(config)
    run.name = ensemble_name(config, "gbm")
    run.model.strategy, run.model.head_model, run.model.gbm_rounds = "probe", "gbm", rounds
    run.change = run.change or f"gradient boosting ({rounds} rounds) on frozen {config.model.name} features"
    result = train(run, manifest=manifest, reporter=reporter)
    facts = json.loads((result.run_dir / PROBE_FILE).read_text())
    details = {"backbone": config.model.name, "pretrained": config.model.pretrained, "weights": config.model.weights,
               "features": facts["features"], **facts["details"]}
    return EnsembleResult(result.name, result.run_dir, "gbm", None, result.metric, result.score, result.metrics,
                          [], {}, None, details)
