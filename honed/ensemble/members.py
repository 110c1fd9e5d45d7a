"""Ensemble members: trained runs (or one run's snapshots) with their saved validation predictions.

An ensemble is combined from the predictions its members saved when they were evaluated, aligned row by
row on the shared validation (and test) images; each member keeps its own architecture, input size and
preprocessing, because each is loaded as its own Predictor when the ensemble predicts new images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from honed.config import RunConfig
from honed.errors import HonedError
from honed.artifacts.run_folder import BEST_WEIGHTS, CONFIG_FILE, TEST_PREDICTIONS, VAL_PREDICTIONS, RunFolder
from honed.tasks import get_task



@dataclass(frozen=True)
class Member:
    """One member: a run folder, the weights file it predicts with, and the file of its validation predictions."""

    name: str  # shown in reports: the run name, or "run@snapshot-2"
    run_dir: Path
    weights: str = BEST_WEIGHTS
    val_predictions: str = VAL_PREDICTIONS
    test_predictions: str = TEST_PREDICTIONS

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    def labels(self) -> dict:
        return self.folder.labels().to_dict()

    def config(self) -> RunConfig:
        return self.folder.config()

    def load(self, *, device: str = "auto"):
        """This member as a Predictor with its own preprocessing, predicting raw probabilities: an ensemble
        combines its members' raw outputs, as saved in their predictions, and calibrates the combination."""
        from honed.predict import load

        return load(self.run_dir, device=device, weights=self.weights, calibrate=False)

    def val_table(self) -> pd.DataFrame:
        path = self.folder.file(self.val_predictions)
        if not path.is_file():
            raise HonedError(f"member {self.name!r} has no {self.val_predictions}: ensembles combine the "
                             "validation predictions of finished runs")
        return pd.read_parquet(path)

    def test_table(self) -> pd.DataFrame | None:
        path = self.folder.file(self.test_predictions)
        return pd.read_parquet(path) if path.is_file() else None


def resolve_members(specs: Sequence[str | Path], workspace: Path) -> list[Member]:
    """Run names (in ``workspace``) or run folders -> Members; two or more, each a finished run."""
    from honed.artifacts.trained import is_bundle
    from honed.artifacts.run_folder import find_run

    if len(specs) < 2:
        raise HonedError(f"an ensemble needs at least 2 members, got {len(specs)}: name more runs, "
                         "or use --snapshots RUN for one run's snapshots")
    members = []
    for spec in specs:
        path = Path(spec)
        if is_bundle(path) and not (path / CONFIG_FILE).exists():
            raise HonedError(f"{spec} is a bundle: ensemble members must be runs, whose validation predictions "
                             "are saved (export the ensemble afterwards with `honed export`)")
        run_dir = find_run(workspace, str(spec)).resolve()
        members.append(Member(run_dir.name, run_dir))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise HonedError(f"the same run is named twice among the members: {names}")
    return members


def table_outputs(table: pd.DataFrame, task: str, classes: Sequence[str],
                  target_columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A predictions table -> (outputs [N, C], targets): class probabilities and indices, or values."""
    if get_task(task).is_classification:  # the table's columns: class probabilities, or predicted values
        columns = [f"p:{c}" for c in classes]
        index = {c: i for i, c in enumerate(classes)}
        targets = table["target"].astype(str).map(index).to_numpy(dtype=np.int64) if "target" in table else None
    else:
        columns = [f"prediction:{t}" for t in target_columns]
        tcols = [f"target:{t}" for t in target_columns]
        targets = table[tcols].to_numpy(dtype=np.float32) if all(c in table for c in tcols) else None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise HonedError(f"a predictions table lacks the columns {missing[:3]}: it is not from this task's runs")
    return table[columns].to_numpy(dtype=np.float64), targets


def aligned_outputs(tables: Sequence[pd.DataFrame], names: Sequence[str], task: str, classes: Sequence[str],
                    target_columns: Sequence[str], split: str = "validation"
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Members' prediction tables on one split -> (paths, outputs [M, N, C], targets), aligned by path.

    Members must have predicted the same images with the same targets; otherwise they were not trained on
    the same split, and combining them would compare different images.
    """
    reference = tables[0]
    paths = reference["path"].astype(str).tolist()
    outputs, targets = [], None
    for name, table in zip(names, tables):
        table = _aligned(table, paths, name, names[0], split)
        values, member_targets = table_outputs(table, task, classes, target_columns)
        if targets is None:
            targets = member_targets
        elif member_targets is not None and not np.array_equal(member_targets, targets):
            raise HonedError(f"members {names[0]!r} and {name!r} disagree on the {split} labels: they were not "
                             "trained on the same data")
        outputs.append(values)
    return paths, np.stack(outputs), targets


def _aligned(table: pd.DataFrame, paths: list[str], name: str, first: str, split: str) -> pd.DataFrame:
    mine = table["path"].astype(str).tolist()
    if mine == paths:
        return table
    if sorted(mine) != sorted(paths) or len(set(paths)) != len(paths):
        raise HonedError(f"members {first!r} and {name!r} were evaluated on different {split} images "
                         f"({len(paths)} vs {len(mine)}): ensemble runs trained on the same data and split "
                         "(same --val-fraction and --seed, or an explicit val/ folder)")
    return table.set_index(table["path"].astype(str)).loc[paths].reset_index(drop=True)


def check_compatible(members: Sequence[Member]) -> dict:
    """The members' shared labels (task, classes, target columns); HonedError if they differ."""
    first = members[0].labels()
    for member in members[1:]:
        labels = member.labels()
        if labels != first:
            raise HonedError(f"members {members[0].name!r} and {member.name!r} predict different things "
                             f"({first['task']} {first['classes'] or first['target_columns']} vs {labels['task']} "
                             f"{labels['classes'] or labels['target_columns']}): ensemble runs of the same data")
    return first
