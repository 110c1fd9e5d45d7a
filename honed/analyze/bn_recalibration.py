"""``honed bn-recalibrate``: a finished run's weights file with its batch norm statistics re-estimated on its
training images (``honed.training.bn_recalibrate``): validation scores before and after, the previous weights
kept as ``<name>.before-bn.safetensors``, the record in ``bn_recalibration.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from honed.combine.calibration import calibrate_run
from honed.analyze.source import load_run
from honed.artifacts.run_folder import BEST_WEIGHTS, VAL_PREDICTIONS, save_predictions
from honed.artifacts.trained import load_trained
from honed.artifacts.weights import save_weights
from honed.data.dataset import split_dataset
from honed.data.loader import make_loader
from honed.data.pipeline import BatchPipeline
from honed.errors import HonedError
from honed.runtime import setup_runtime
from honed.tracking.atomic import write_bytes, write_json
from honed.training.bn_recalibrate import recalibrate_bn, sample_training_set, trained_bn_layers
from honed.training.evaluation import evaluate_split

RECORD_FILE = "bn_recalibration.json"
DEFAULT_BATCHES = 100  # x 64 images: per-channel means over thousands of images are stable to ~1e-2 std
WEIGHT_FILES = {"best": BEST_WEIGHTS, "last": "last.safetensors", "swa": "swa.safetensors"}


@dataclass
class Recalibration:
    """What ``recalibrate_run`` did: validation scores before and after, and where the files went."""

    run: str
    weights: str  # the file recalibrated, e.g. best.safetensors
    backup: str  # the previous weights, e.g. best.before-bn.safetensors
    metric: str
    before: dict[str, float]
    after: dict[str, float]
    layers: int  # batch norm layers re-estimated
    images: int  # training images they were re-estimated on
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def recalibrate_run(run_dir: str | Path, *, weights: str = "best", batches: int = DEFAULT_BATCHES, batch_size: int = 64,
                    device: str = "auto", workers: int = -1, seed: int = 0) -> Recalibration:
    """Re-estimate the batch norm statistics of a run's weights on its training split (``batches`` batches of
    ``batch_size``, 0: all), re-evaluate validation, keep the previous file, save the new one atomically.

    For ``best`` weights the run's ``predictions_val.parquet`` is rewritten too, so analysis sees the model
    that is saved; the ledger row keeps the score of training (the JSON record has both)."""
    if weights not in WEIGHT_FILES:
        raise HonedError(f"--weights must be one of {', '.join(WEIGHT_FILES)}, not {weights!r}")
    started = time.perf_counter()
    source = load_run(run_dir)
    path = source.run_dir / WEIGHT_FILES[weights]
    if not path.is_file():
        hint = "train with --swa" if weights == "swa" else "train or --resume the run"
        raise HonedError(f"run {source.name} has no {path.name}: {hint} first")
    trained = load_trained(source.run_dir, weights=path.name, gbm_head=False)
    model, config, manifest = trained.network, trained.config, source.manifest
    runtime = setup_runtime(device, "32")
    model.to(runtime.device)
    last_epoch = int(source.history["epoch"].max()) if source.history is not None else config.train.epochs
    layers = trained_bn_layers(model, config, last_epoch)
    if not layers:
        raise HonedError(f"run {source.name} trained no batch norm layer (strategy {config.model.strategy}, model "
                         f"{config.model.name}): its statistics are the ones it started from; nothing to recalibrate")
    pipeline = BatchPipeline(config.preprocess.mean, config.preprocess.std)
    size = config.preprocess.image_size
    val_set = split_dataset(manifest, "val", size)
    val_loader = make_loader(val_set, batch_size=batch_size, train=False, workers=workers)
    before, _ = evaluate_split(model, val_loader, val_set, manifest, runtime=runtime, pipeline=pipeline)
    train_set = sample_training_set(manifest, size, batches * batch_size, seed=seed)
    images = recalibrate_bn(model, make_loader(train_set, batch_size=batch_size, train=False, workers=workers),
                            runtime=runtime, pipeline=pipeline, layers=layers)
    after, predictions = evaluate_split(model, val_loader, val_set, manifest, runtime=runtime, pipeline=pipeline)
    backup = path.with_name(path.name.replace(".safetensors", ".before-bn.safetensors"))
    write_bytes(backup, path.read_bytes())  # the previous weights, complete on disk before they are replaced
    save_weights(path, model)
    if weights == "best":
        save_predictions(source.run_dir / VAL_PREDICTIONS, predictions)
        calibrate_run(source.run_dir)  # new weights, new predictions: the temperature is fitted again
    result = Recalibration(source.name, path.name, backup.name, config.main_metric(), _renamed(before),
                           _renamed(after), len(layers), images, round(time.perf_counter() - started, 2))
    write_json(source.run_dir / RECORD_FILE, result.to_dict())
    return result


def _renamed(scores: dict[str, float]) -> dict[str, float]:
    """evaluate_split's ``loss`` is the validation loss: named as in metrics.csv."""
    return {("val_loss" if k == "loss" else k): float(v) for k, v in scores.items()}
