"""From a DataConfig to a Manifest ready for training: load the source, set the validation split,
and find the files that cannot be decoded (listed with reasons, never silently dropped)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import pandas as pd

from honed.data.config import DataConfig
from honed.data.manifest import Manifest
from honed.data.sources import load_source
from honed.data.splits import with_validation
from honed.errors import HonedError
from honed.progress import Phase, Reporter


@dataclass
class PreparedData:
    manifest: Manifest
    bad_files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "split", "reason"]))
    warnings: list[str] = field(default_factory=list)  # from the cheap audit: duplicates, leakage, imbalance


def prepare_data(config: DataConfig, *, seed: int, manifest: Manifest | None = None,
                 progress: Callable[[int], None] | None = None, reporter: Reporter | None = None) -> PreparedData:
    """``reporter`` sees the scan and the duplicate check as phases (count, rate, time left); ``progress``
    gets the scan's increments instead, for callers that draw their own."""
    manifest = manifest or load_source(config.source, task=config.task, path_column=config.path_column,
                                       label_column=config.label_column, target_columns=config.target_columns,
                                       torchvision_root=config.torchvision_root)
    if manifest.task != config.task:
        raise HonedError(f"the data is for task {manifest.task!r} but --task is {config.task!r}")
    if config.exclude:  # an explicit choice (--exclude-label-issues), recorded in the run's config and change
        manifest = _excluding(manifest, config.exclude)
    with Phase(reporter, f"scanning {len(manifest.frame)} images", len(manifest.frame)) as phase:
        bad = _find_bad_files(manifest, progress or phase)
    if len(bad):
        if config.strict:
            first = bad.iloc[0]
            raise HonedError(f"{len(bad)} image(s) cannot be decoded (e.g. {first.path}: {first.reason}); "
                             "fix or remove them, or drop --strict to skip them")
        manifest = _without(manifest, set(bad["path"]))
    manifest = with_validation(manifest, val_fraction=config.val_fraction, folds=config.folds, fold=config.fold,
                               seed=seed, validation=config.validation)
    if config.validation and not manifest.has_split("val"):
        raise HonedError("no validation images left: add images or lower --val-fraction")
    with Phase(reporter, "checking duplicates", len(manifest.frame)) as phase:
        warnings = _cheap_audit(manifest, phase)
    return PreparedData(manifest=manifest, bad_files=bad, warnings=warnings)


def _cheap_audit(manifest: Manifest, progress: Callable[[int], None] | None = None) -> list[str]:
    """The part of ``honed data check`` that costs no decoding: exact duplicates (leakage across the
    splits as they will be used), class balance. Bad files are handled by the scan, so not repeated here."""
    if manifest.in_memory:
        return []
    from honed.data.audit import audit

    columns = ["path", "split"] + (["label"] if manifest.task_type.is_classification else [])
    report = audit(manifest.frame[columns], cheap=True, progress=progress)
    return [w for w in report.warnings if "decod" not in w and "bad" not in w.lower()]


def _find_bad_files(manifest: Manifest, progress) -> pd.DataFrame:
    if manifest.in_memory:
        return pd.DataFrame(columns=["path", "split", "reason"])
    from honed.data.scan_cache import cached_scan

    frame = manifest.frame
    result = cached_scan(frame["path"].tolist(), progress=progress)
    rows = [(b.path, reason_split, b.reason) for b in result.bad
            for reason_split in frame.loc[frame["path"] == b.path, "split"].head(1)]
    return pd.DataFrame(rows, columns=["path", "split", "reason"])


def _excluding(manifest: Manifest, listed: str) -> Manifest:
    from honed.data.label_issues import drop_excluded, read_exclusion

    frame, _ = drop_excluded(manifest.frame, read_exclusion(listed))
    return _without(replace(manifest, frame=frame), set())  # refuses a class left without training images


def _without(manifest: Manifest, paths: set[str]) -> Manifest:
    frame = manifest.frame[~manifest.frame["path"].isin(paths)].reset_index(drop=True)
    if manifest.task_type.is_classification:
        left = set(frame.loc[frame["split"] == "train", "label"])
        gone = [c for c in manifest.classes if c not in left]
        if gone:
            raise HonedError(f"class(es) {gone} have no decodable training images left: fix those files")
    if frame.empty:
        raise HonedError("no decodable images at all: check the files")
    return Manifest(frame=frame, task=manifest.task, classes=manifest.classes,
                    target_columns=manifest.target_columns, name=manifest.name, datasets=manifest.datasets)
