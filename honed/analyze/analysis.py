"""``analyze_run``: a finished run's weaknesses, named with their evidence, and the fix to try next.

It reads the run's validation predictions (mistakes, confusion, per-class scores), probes the model on
validation and training images under controlled transformations (:mod:`honed.analyze.sensitivity`), ranks the
factors that explain the failures (:mod:`honed.analyze.ranking`) and turns them into recommendations
(:mod:`honed.analyze.recommend`). Results go to ``RUN/analysis/`` and, when the run lives in a workspace,
to a ledger row of kind ``analysis`` whose parent is the run (see :mod:`honed.analyze.outputs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from honed.analyze import mistakes
from honed.analyze.calibration_report import calibration_report, save_reliability
from honed.analyze.factors import Factor, select_factors
from honed.analyze.image_sizes import measure_sizes
from honed.analyze.sensitivity import BatchPredictor, ProbeRun, probe_table, run_probes
from honed.analyze.ranking import Evidence, FactorScore, rank_factors, with_shifts
from honed.analyze.recommend import Recommendation, merge_policy, recommend, to_apply
from honed.analyze.shift import detect_shifts
from honed.analyze.shift_evidence import shift_evidence
from honed.analyze.slices import class_slices, image_size_slice, train_val_gap
from honed.analyze.source import ImageSet, RunSource, load_run
from honed.data.quality import split_quality
from honed.progress import LogReporter, Reporter

ANALYSIS_DIR = "analysis"
ANALYSIS_FILE = "analysis.json"


@dataclass
class Analysis:
    """What ``analyze_run`` found; ``to_dict()`` is what ``analysis.json`` holds."""

    run: str
    run_dir: Path
    task: str
    metric: str
    summary: dict  # sizes, clean failure on training and validation images, the gap, original image sizes
    errors: dict  # worst predictions, confusion, per-class scores (or largest residuals)
    probes: list[dict]  # one row per factor, strength and image set
    factors: list[FactorScore]  # best explanation first
    slices: list[dict]  # factor, class and image-size slices, worst excess first
    recommendations: list[Recommendation]  # strongest first
    policy: str  # merged augmentation fragments of the recommendations improve applies
    regularization: dict[str, float]  # drop_rate / weight_decay improve sets ({} when none)
    settings: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # figure and table names in the analysis folder
    ledger_name: str = ""  # the analysis row in the workspace ledger ("" when not recorded)
    fit: dict = field(default_factory=dict)  # the learning-curve verdict (honed.analyze.fit_report; {}: no curve)
    bn_staleness: dict = field(default_factory=dict)  # running statistics vs inputs (honed.analyze.bn_staleness)
    shifts: dict = field(default_factory=dict)  # split statistics, candidate shifts, evidence (honed.analyze.shift)
    training: dict[str, float] = field(default_factory=dict)  # epochs / lr improve sets ({} when none)
    evidence_images: Any = field(default=None, repr=False)  # the shift evidence (ShiftEvidence), for the figure
    calibration: dict = field(default_factory=dict)  # ECE / NLL before and after (honed.analyze.calibration_report)

    @property
    def folder(self) -> Path:
        return self.run_dir / ANALYSIS_DIR

    @property
    def top(self) -> FactorScore | None:
        return self.factors[0] if self.factors else None

    def to_dict(self) -> dict:
        return {"run": self.run, "task": self.task, "metric": self.metric, "settings": self.settings,
                "summary": self.summary, "recommended": {"policy": self.policy, "regularization": self.regularization,
                                "training": self.training},
                "recommendations": [r.to_dict() for r in self.recommendations],
                "factors": [f.to_dict() for f in self.factors], "slices": self.slices, "probes": self.probes,
                "errors": self.errors, "files": self.files, "ledger_name": self.ledger_name, "fit": self.fit,
                "bn_staleness": self.bn_staleness, "shifts": self.shifts, "calibration": self.calibration}


def analyze_run(run_dir: str | Path, *, tta: Any = None, probes: Sequence[str] | None = None,
                seed: int = 0, max_images: int = 2000, reference_images: int = 256, workers: int = -1,
                reporter: Reporter | None = None, save: bool = True) -> Analysis:
    """Analyze a finished run and (with ``save``) write ``RUN/analysis/`` and a ledger row.

    ``tta``: test-time augmentation to analyze the model with (views such as "flip,crops" or a
    ``honed.tta.TTASetting``), or any model with ``predict_batch`` on uint8 batches to analyze instead of the
    run's; the mistakes are then recomputed with it rather than read from predictions_val.parquet.
    ``probes``: factor names to probe (default all, see ``honed.analyze.factors``). Validation images are
    sampled to ``max_images`` and training images to ``reference_images`` (seeded, stratified by class).
    """
    started = time.perf_counter()
    reporter = reporter or LogReporter()
    factors = select_factors(probes)
    source = load_run(run_dir)
    model = _predictor(source, tta)
    val = source.sample("val", max_images, seed=seed, workers=workers)
    ref = source.sample("train", reference_images, seed=seed + 1, workers=workers)
    reporter.message(f"probing {len(val.paths)} validation and {len(ref.paths)} training images "
                     f"under {sum(len(f.strengths) for f in factors)} conditions")
    ref_run, val_run = _probe_both(model, source, factors, ref, val, seed, reporter)
    chance = _chance_failure(source, ref)
    headroom = max(chance - float(ref_run.clean.mean()), 1e-3)
    by_label = source.task_type.is_classification  # classes are groups to slice by; regression has none
    evidence = Evidence(ref_run, ref.images, val.images, val_run.clean, val.paths,
                        headroom, seed, val_groups=val.targets if by_label else None,
                        reference_groups=ref.targets if by_label else None)
    ranked = rank_factors(factors, evidence)
    gap = train_val_gap(float(ref_run.clean.mean()), float(val_run.clean.mean()), headroom=headroom,
                        task=source.task, history=source.history, metric=source.config.main_metric())
    reporter.message("testing shifts between the splits: validation images transformed back, training images made so")
    with torch.inference_mode():
        shifts, statistics = detect_shifts(
            model, train_images=ref.images, train_targets=ref.targets, val_images=val.images,
            val_targets=val.targets, task=source.task, headroom=headroom, seed=seed,
            train_outputs=ref_run.outputs, val_outputs=val_run.outputs)
        top_shift = next((s for s in shifts if s.significant), None)
        shown = (shift_evidence(model, top_shift, statistics, val.images, val.targets, val.paths,
                                source.manifest.classes if by_label else []) if top_shift else None)
    ranked = with_shifts(ranked, shifts)
    by_class = (class_slices(val.targets, source.manifest.classes, val_run.clean, val.paths, headroom=headroom,
                             seed=seed) if by_label else [])
    sizes = measure_sizes(ref.paths or val.paths)  # the training images are the ones augmented
    quality = split_quality({"train": ref.paths, "val": val.paths}).shares  # blur-heavy validation -> blur
    fit = _fit(source)
    recommendations = recommend(ranked, gap=gap, drop_rate=source.config.model.drop_rate,
                                weight_decay=source.config.train.weight_decay, sizes=sizes, shifts=shifts, fit=fit,
                                epochs=source.config.train.epochs, lr=source.config.train.lr, chance=chance,
                                quality=quality, input_size=_resizable_input(model, val.images))
    applied = to_apply(recommendations)
    analysis = Analysis(
        run=source.name, run_dir=Path(run_dir), task=source.task, metric=source.config.main_metric(),
        summary={"validation_images": len(val.paths), "training_images": len(ref.paths), "chance_failure": chance,
                 "headroom": headroom, **gap, "image_sizes": sizes.to_dict() if sizes else {},
                 "image_quality": quality},
        errors=_errors(source, val, val_run if tta is not None else None),
        probes=(probe_table(ref_run, factors, image_set="training", scale=headroom, seed=seed)
                + probe_table(val_run, factors, image_set="validation",
                              scale=max(chance - float(val_run.clean.mean()), 1e-3), seed=seed)),
        factors=ranked, slices=_slices(ranked, by_class, val, val_run.clean, headroom, seed),
        recommendations=recommendations, policy=merge_policy("", [r.policy for r in applied if r.policy]),
        regularization={k: v for r in applied for k, v in r.regularization.items()},
        training=_largest(r.training for r in applied),
        settings={"seed": seed, "max_images": max_images, "reference_images": reference_images,
                  "probes": [f.name for f in factors], "tta": tta is not None,
                  "seconds": round(time.perf_counter() - started, 2)},
        fit=fit, bn_staleness=_bn_staleness(model, source, ref),
        shifts={"statistics": statistics, "candidates": [s.to_dict() for s in shifts],
                "evidence": shown.to_dict() if shown else {}}, evidence_images=shown,
        calibration=calibration_report(run_dir))
    if save:
        from honed.analyze.outputs import save_analysis

        if analysis.calibration:  # the reliability diagram beside the other figures
            analysis.calibration["figure"] = save_reliability(run_dir, analysis.folder)

        save_analysis(analysis, source, duration_s=time.perf_counter() - started)
    return analysis


def _largest(dicts) -> dict[str, float]:
    """Key by key, the largest value: the budget of the most demanding fix applied."""
    out: dict[str, float] = {}
    for values in dicts:
        for key, value in values.items():
            out[key] = max(out.get(key, value), value)
    return out


def _predictor(source: RunSource, tta) -> BatchPredictor:
    """The run's model, with test-time augmentation when ``tta`` names views or is a TTA setting."""
    if hasattr(tta, "predict_batch"):
        return tta
    from honed.predict import load

    return load(source.run_dir) if tta is None else load(source.run_dir, tta=tta)


def _probe_both(model: BatchPredictor, source: RunSource, factors: Sequence[Factor], ref: ImageSet, val: ImageSet,
                seed: int, reporter: Reporter) -> tuple[ProbeRun, ProbeRun]:
    conditions = sum(len(f.strengths) for f in factors)
    with torch.inference_mode():
        reporter.phase_started("probing training images", conditions)
        ref_run = run_probes(model, ref.images, ref.targets, source.task, factors, seed=seed, measure=True,
                             progress=reporter.advance)
        reporter.phase_finished()
        reporter.phase_started("probing validation images", conditions)
        val_run = run_probes(model, val.images, val.targets, source.task, factors, seed=seed,
                             progress=reporter.advance)
        reporter.phase_finished()
    return ref_run, val_run


def _resizable_input(model: BatchPredictor, images: torch.Tensor) -> int:
    """The side the model sees when its network also takes inputs twice as large (a convnet pools globally; a
    ViT's position embeddings are fixed), else 0: a fix may then train at a larger size from the run's weights."""
    network = getattr(model, "model", None)
    side = int(images.shape[-1])
    if not isinstance(network, torch.nn.Module):
        return 0
    parameter = next(network.parameters(), None)
    probe = torch.zeros(1, images.shape[1], 2 * side, 2 * side,
                        device=parameter.device if parameter is not None else "cpu")
    was_training = network.training
    try:
        with torch.inference_mode():
            network.eval()(probe)
    except Exception:  # noqa: BLE001 - any failure means the network is tied to its input size
        return 0
    finally:
        network.train(was_training)
    return side


def _fit(source: RunSource) -> dict:
    """Over/under-fitting from the learning curves; {} for runs without them (probe runs)."""
    from honed.analyze.fit_report import run_fit_report
    from honed.errors import HonedError

    try:
        return run_fit_report(source.run_dir, save=False).to_dict()
    except HonedError:
        return {}


def _bn_staleness(model: BatchPredictor, source: RunSource, ref: ImageSet) -> dict:
    """Whether the run's batch norm statistics still fit its training images; {} without a network to look into."""
    from honed.analyze.bn_staleness import run_bn_staleness

    network = getattr(model, "model", None)
    if not isinstance(network, torch.nn.Module):
        return {}
    history = source.history
    last_epoch = (int(history["epoch"].max()) if history is not None and "epoch" in history and len(history)
                  else source.config.train.epochs)
    found = run_bn_staleness(network, ref.images, source.config, last_epoch=last_epoch)
    return {} if found is None else {**found.to_dict(), "message": found.message(source.name)}


def _chance_failure(source: RunSource, ref: ImageSet) -> float:
    """A guesser's failure: 1 - 1/C, or for regression the MAE of always predicting the training mean."""
    if source.task_type.is_classification:
        return 1.0 - 1.0 / len(source.manifest.classes)
    targets = ref.targets.reshape(len(ref.targets), -1)
    return float(np.abs(targets - targets.mean(axis=0)).mean())


def _errors(source: RunSource, val: ImageSet, recomputed: ProbeRun | None) -> dict:
    """The mistakes report from predictions_val.parquet, or from the recomputed outputs under ``tta``."""
    predictions = source.predictions
    if recomputed is not None:
        from honed.artifacts.predictions import predictions_table

        predictions = predictions_table(val.paths, recomputed.outputs, val.targets, source.manifest)
    return mistakes.error_report(predictions, task=source.task, classes=source.manifest.classes,
                                 target_columns=source.manifest.target_columns)


def _slices(ranked: Sequence[FactorScore], by_class: list[dict], val: ImageSet, failures: np.ndarray,
            headroom: float, seed: int) -> list[dict]:
    rows = [{"name": f.slice, "kind": f"factor:{f.name}", "n": f.slice_size, "failure": f.slice_failure,
             "rest_failure": f.rest_failure, "difference": f.slice_failure - f.rest_failure, "ci": f.slice_ci,
             "excess": f.concentration, "examples": f.examples} for f in ranked if f.slice_size]
    sized = image_size_slice(val.paths, failures, headroom=headroom, seed=seed)
    rows += ([sized] if sized else []) + by_class
    return sorted(rows, key=lambda r: (-r["excess"], -float(np.nan_to_num(r["difference"], nan=-1.0))))
