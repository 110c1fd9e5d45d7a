"""The ``probe`` strategy: frozen features extracted once, a scikit-learn head fitted on them, the result a
normal honed run (config, metrics.csv, predictions, ledger row, weights) that predicts and exports as any other.

Features are the input of the network's last linear layer (``honed.models.features``: extracted once,
cached), so a head fitted on them is exactly that layer.

Heads (``--head-model``: logreg, svm, ridge, svr, gbm) are models, registered in
``honed.models.heads.HEADS`` and looked up by name here. A linear head is written into the last layer. Trees
are not a linear layer, and honed never pickles, so a gbm run keeps the frozen network's weights and the
fitted trees as an ONNX graph (``gbm_head.onnx``, see ``honed.models.heads.gbm``; no training data): it
predicts, exports as a bundle (and to ONNX, network and trees in one graph) and joins ensembles.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from honed.config import RunConfig
from honed.data.dataset import split_dataset
from honed.data.prepare import PreparedData
from honed.errors import HonedError
from honed.data.cache import cache_root
from honed.artifacts import run_folder as runs
from honed.artifacts.predictions import predictions_table
from honed.artifacts.run_folder import BEST_WEIGHTS, PROBE_FILE
from honed.artifacts.weights import save_weights
from honed.tracking.atomic import write_json
from honed.models.features import extract_features, last_linear
from honed.models.heads import HEADS, FittedHead, head_kind, sklearn_threads
from honed.models.heads.gbm import GBM_ROUNDS
from honed.models.heads.sklearn import softmax
from honed.progress import Reporter
from honed.runtime import Runtime
from honed.tasks import get_task
from honed.training.devices import agree_across_ranks
from honed.training.result import TrainResult




# ---------------------------------------------------------------------------------------------------- heads


def fit_head(kind: str, features: np.ndarray, targets: np.ndarray, *, task: str, outputs: int,
             seed: int = 0, rounds: int = GBM_ROUNDS, leaf: int | None = None) -> FittedHead:
    """Fit the head ``kind`` (a ``HEADS`` name) on ``features`` [N, F]; ``targets`` are class indices or [N, T].

    gbm only: ``rounds`` boosting iterations, ``leaf`` rows a leaf at least (None: ``gbm_leaf`` of N)."""
    spec = HEADS[kind]
    with sklearn_threads():
        return spec.fit(features, targets, task=task, outputs=outputs, seed=seed, rounds=rounds, leaf=leaf)


def write_head(model: nn.Module, head: FittedHead) -> None:
    """Copy a linear head into the network's last linear layer: the saved weights then predict as fitted."""
    if head.weight is None:
        raise HonedError(f"a {head.kind} head is not a linear layer: it cannot be written into the network")
    layer = last_linear(model)
    if tuple(layer.weight.shape) != head.weight.shape:
        raise HonedError(f"probe head of shape {head.weight.shape} does not fit the layer {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(head.bias))
        elif np.any(head.bias != 0):
            raise HonedError("the last linear layer has no bias to hold the probe's intercept: use --strategy head")


# ---------------------------------------------------------------------------------------------------- the run


def train_probe(config: RunConfig, model: nn.Module, data: PreparedData, *, run_dir: Path, runtime: Runtime,
                reporter: Reporter, resume: bool = False) -> TrainResult:
    """Features of every split, a head fitted on the training ones, then the files of any honed run."""
    if runtime.distributed:
        raise HonedError("the probe strategy extracts features and fits on one process: run it without torchrun")
    started = time.perf_counter()
    manifest, workspace, metric = data.manifest, Path(config.workspace), config.main_metric()
    kind = head_kind(manifest.task, config.model.head_model)
    runs.start(workspace, run_dir, config, manifest, data.bad_files, metric, resumed=resume)
    model.to(runtime.device)
    splits = [s for s in ("train", "val", "test") if manifest.has_split(s)]
    sets = {s: split_dataset(manifest, s, config.preprocess.image_size) for s in splits}
    counts = ", ".join(f"{len(sets[s])} {s}" for s in splits)
    reporter.message(f"probe: frozen {config.model.name} features of {counts} images at "
                     f"{config.preprocess.image_size}px, then a {kind} head")
    features = {s: extract_features(model, sets[s], mean=config.preprocess.mean, std=config.preprocess.std,
                                    device=runtime.device, batch_size=config.train.batch_size * 2,
                                    workers=config.train.workers, reporter=reporter, label=f"{s} features",
                                    cache_dir=cache_root()) for s in splits}
    extracted = time.perf_counter()
    targets = {s: np.asarray(sets[s].targets) for s in splits}
    head = fit_head(kind, features["train"], targets["train"], task=manifest.task, outputs=manifest.num_outputs,
                    seed=config.train.seed, rounds=config.model.gbm_rounds or GBM_ROUNDS)
    if head.weight is not None:
        write_head(model, head)
        layer = last_linear(model).cpu()
        with torch.no_grad():  # the network's own last layer on the features: what predict will compute
            raw = {s: layer(torch.from_numpy(features[s])).double().numpy() for s in splits}
        outputs = {s: softmax(r) if manifest.task_type.is_classification else r for s, r in raw.items()}
        model.to(runtime.device)
    else:
        outputs = {s: head.predict(features[s]) for s in splits}
    scores = {s: get_task(manifest.task).score(outputs[s], targets[s]) for s in splits}
    for s in splits[1:]:
        runs.save_predictions(run_dir / f"predictions_{s}.parquet",
                              predictions_table(sets[s].paths, outputs[s], targets[s], manifest))
    if head.weight is None:  # trees: their ONNX graph, no training data (honed never pickles)
        from honed.models.heads.gbm import HEAD_FILE, save_gbm_head

        save_gbm_head(run_dir / HEAD_FILE, head)
    save_weights(run_dir / BEST_WEIGHTS, model)  # a gbm run's head layer is untouched: only its input counts
    save_weights(run_dir / "last.safetensors", model)
    seconds = time.perf_counter() - started
    row = {"epoch": 1, "train_loss": scores["train"]["loss"],
           **{k if k != "loss" else "val_loss": v for k, v in scores.get("val", {}).items()}, "lr": 0.0,
           "seconds": seconds}  # no val scores in a refit, which has no validation split
    history = pd.DataFrame([row])
    runs.save_history(run_dir, history, metric)
    write_json(run_dir / PROBE_FILE, {
        "head_model": kind, "features": int(features["train"].shape[1]), "details": head.details,
        "weights_written": True, "head": "linear" if head.weight is not None else "gbm-onnx",
        "train_" + metric: scores["train"].get(metric),
        "extract_seconds": extracted - started, "fit_seconds": time.perf_counter() - extracted,
        "note": "" if head.weight is not None else "a gbm head is not a linear layer and honed never pickles: "
                "its fitted trees are kept as an ONNX graph (gbm_head.onnx)"})
    metrics = {k: v for k, v in row.items() if k not in ("epoch", "lr", "seconds")}
    metrics.update({f"test_{k}": v for k, v in scores.get("test", {}).items()})
    runs.record(workspace, run_dir, config, manifest, metric, metrics, status="done", duration_s=seconds)
    reporter.epoch_finished(row)
    digest = agree_across_ranks(model, runtime, run_dir)
    return TrainResult(config.name, run_dir, metric, float(row.get(metric, "nan")), metrics, 1, history, digest)
