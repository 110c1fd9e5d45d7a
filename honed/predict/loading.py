"""``load``: a Predictor from a run folder, a bundle (folder or .zip) or an ensemble of either.

Loading reads a YAML config, a JSON label list and safetensors weights (a run), or a validated bundle.json
and safetensors weights (a bundle, see ``honed.export.bundle``): nothing from disk is executed.
"""

from __future__ import annotations

from pathlib import Path
from honed.artifacts.bundle_files import BundleFiles, read_meta
from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE, ENSEMBLE_FILE
from honed.artifacts.trained import BACKENDS, from_bundle_files, is_bundle, load_trained
from honed.predict.ensembles import load_ensemble, load_ensemble_bundle
from honed.predict.predictor import Predictor, bundle_tta
from honed.tta.setting import TTASetting, as_setting


def load(path: str | Path, *, device: str = "auto", backend: str = "torch", tta: TTASetting | str | None = None,
         weights: str = BEST_WEIGHTS, calibrate: bool = True) -> Predictor:
    """A Predictor from a run folder (its best weights) or a bundle (folder or .zip, see ``honed export``).

    ``backend="onnx"`` runs a bundle's model.onnx in ONNX Runtime instead of PyTorch. ``tta`` ("flip,crops",
    a ``honed.tta.TTASetting``, or "none" to switch a bundle's own setting off) sets test-time augmentation.
    An ensemble (run folder or bundle) loads as an ``EnsemblePredictor``, which predicts like any Predictor.
    ``weights`` picks another weights file of a run folder, e.g. a snapshot of a cyclic schedule.
    ``calibrate=False`` returns raw probabilities instead of the ones scaled by the temperature fitted on the
    validation split (``honed.combine.calibration``); a model without one predicts raw either way.
    """
    BACKENDS.get(backend)  # an unknown name: refused before anything is read
    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        predictor = load_ensemble(path, device=device, backend=backend, calibrate=calibrate)
    elif not (path / CONFIG_FILE).exists() and is_bundle(path):
        files = BundleFiles(path)
        raw = read_meta(files)
        if isinstance(raw, dict) and raw.get("kind") == "ensemble":
            predictor = load_ensemble_bundle(files, raw, device=device, backend=backend, calibrate=calibrate)
        else:
            trained = from_bundle_files(files, raw, backend=backend)
            predictor = Predictor.from_trained(trained, device=device, tta=bundle_tta(trained.bundle_meta),
                                               calibrate=calibrate)
    else:
        predictor = Predictor.from_trained(load_trained(path, weights=weights, backend=backend), device=device,
                                           calibrate=calibrate)
    if tta is not None:
        predictor.tta = as_setting(tta)
    return predictor

