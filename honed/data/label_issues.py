"""Lists of images to leave out of training, as ``honed data check --label-issues`` writes them (a CSV with a
``path`` column, ranked) or as a user writes them (one path a line). Finding label issues needs a backbone and
lives above the data layer (``honed.analyze.label_issues``); reading the list a run excludes does not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from honed.errors import HonedError

CSV_COLUMNS = ("path", "given", "suggested", "score", "rank")  # what `honed data check --label-issues` writes


def read_exclusion(value: str | Path) -> list[str]:
    """Paths listed in a file: a CSV with a ``path`` column (as ``--label-issues`` writes) or one path a line."""
    path = Path(value)
    if not path.is_file():
        raise HonedError(f"no list of images to exclude at {value}: give a number N or a file of paths")
    lines = path.read_text().splitlines()
    if lines and lines[0].strip().split(",")[0] == "path":
        return pd.read_csv(path)["path"].astype(str).tolist()
    return [line.strip() for line in lines if line.strip()]


def drop_excluded(frame: pd.DataFrame, paths: list[str]) -> tuple[pd.DataFrame, int]:
    """``frame`` without the training rows whose path is listed (matched as given or resolved), and how many
    rows were dropped. Validation and test rows stay: excluding them would change what runs are scored on."""
    listed = set(paths) | {str(Path(p).resolve()) for p in paths}
    resolved = frame["path"].astype(str).map(lambda p: str(Path(p).resolve()))
    drop = (frame["split"] == "train") & (frame["path"].astype(str).isin(listed) | resolved.isin(listed))
    return frame[~drop].reset_index(drop=True), int(drop.sum())
