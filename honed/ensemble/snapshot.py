"""Snapshot ensembles: one run trained with the cyclic schedule (cosine with restarts) leaves a snapshot of its
weights, with its validation predictions, at the end of each cycle; the snapshots vote like separate runs.

The cheap option: one training's cost for M members, at the price of members that are less diverse than
independently trained runs (the diversity report shows how much less).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from honed.ensemble.members import Member
from honed.errors import HonedError
from honed.artifacts.run_folder import MANIFEST_FILE
from honed.training.snapshots import snapshot_files  # the files training writes, read here

_SNAPSHOT = re.compile(r"^snapshot-(?P<cycle>[0-9]+)\.safetensors$")


def snapshot_members(run_dir: Path) -> list[Member]:
    """The run's snapshots as ensemble members, in cycle order; at least two are needed."""
    cycles = sorted(int(m["cycle"]) for m in (_SNAPSHOT.match(p.name) for p in Path(run_dir).iterdir()) if m)
    members = [Member(f"{run_dir.name}@snapshot-{c}", Path(run_dir).resolve(), *snapshot_files(c),
                      test_predictions=f"snapshot-{c}.predictions_test.parquet") for c in cycles]
    members = [m for m in members if (m.run_dir / m.val_predictions).is_file()]
    if len(members) < 2:
        raise HonedError(f"run {run_dir.name!r} has {len(members)} snapshot(s): train it with --schedule cyclic "
                         "and two or more cycles (--cycles K, K dividing --epochs) to ensemble its snapshots")
    return members


def snapshot_test_tables(members: list[Member], *, device: str = "auto", workers: int = 0
                         ) -> list[pd.DataFrame] | None:
    """Test predictions of each snapshot, when the run has a test split of readable files; None otherwise."""
    from honed.data.manifest import Manifest
    from honed.artifacts.predictions import predictions_table

    manifest_path = members[0].run_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    frame = pd.read_parquet(manifest_path)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if test.empty or not all(Path(p).is_file() for p in test["path"]):
        return None
    labels = members[0].labels()
    manifest = Manifest(frame=test, task=labels["task"], classes=labels["classes"],
                        target_columns=labels["target_columns"])
    targets = manifest.targets(test)
    tables = []
    for member in members:
        outputs, _ = member.load(device=device).predict_outputs(test["path"].tolist(), workers=workers)
        tables.append(predictions_table(test["path"].tolist(), outputs, targets, manifest))
    return tables
