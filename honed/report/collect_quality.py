"""The report's data-quality section: which doubtful labels to show and the image quality shares."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from honed.report.data import DataQuality

LABEL_ISSUES_SHOWN = 12  # doubtful labels listed with thumbnails
WORKFLOW_LIST = "label_issues.csv"  # what the workflow's setup writes into its folder


def collect_data_quality(saved: dict | None, predictions: pd.DataFrame | None, classes: list[str],
                         workflow_folder: Path | None = None) -> DataQuality | None:
    """From the run's analysis, else its validation predictions (cleanlab on them: cheap), plus the workflow
    setup's list of doubtful training labels when the report is about a workflow; None when there is nothing."""
    from honed.analyze.mistakes import label_issues

    found = DataQuality(quality=((saved or {}).get("summary") or {}).get("image_quality") or {})
    errors = (saved or {}).get("errors") or {}
    if "label_issues" in errors:
        found.label_issues, found.label_source = errors["label_issues"], "validation images, from the analysis"
    elif predictions is not None and classes:
        found.label_issues = label_issues(predictions, classes)
        found.label_source = "validation images, cleanlab on the run's predictions"
    listed = Path(workflow_folder) / WORKFLOW_LIST if workflow_folder is not None else None
    if listed is not None and listed.is_file():
        training = pd.read_csv(listed).head(LABEL_ISSUES_SHOWN).to_dict("records")
        if training:
            found.label_issues = training + found.label_issues
            found.label_source = f"training images from the workflow's setup ({listed.name}), then " + (
                found.label_source or "none among the validation images")
    found.label_issues = found.label_issues[:LABEL_ISSUES_SHOWN * 2]
    return found if found.label_issues or found.quality else None
