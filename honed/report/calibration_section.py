"""The report's calibration section: ECE (15 bins), NLL and accuracy before and after the run's temperature, on
validation and test, with the reliability diagram (``honed.analyze.calibration_report``)."""

from __future__ import annotations

from pathlib import Path

from honed.analyze.calibration_report import calibration_report, reliability_png, summary_rows


def calibration_html(run_dir: Path, *, esc, table, image, missing) -> str:
    """The section's HTML; the page's own helpers (escape, table, image, missing line) are passed in."""
    report = calibration_report(run_dir)
    if not report:
        return missing("calibration is for classification runs with saved predictions")
    rows = summary_rows(report)
    png = reliability_png(run_dir)
    return "\n".join([f"<p>{esc(report['words'])}</p>",
                      table(["split", "images", "ECE before -> after", "NLL before -> after",
                             "accuracy before -> after"], [[esc(c) for c in row] for row in rows], numeric=(1,)),
                      image(png, "reliability diagram: accuracy against confidence, raw and calibrated")
                      if png else ""])
