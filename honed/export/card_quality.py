"""The model card's "Data quality" section: the training images a run left out as likely label errors
(``--exclude-label-issues``), the validation labels its analysis doubts, and the image quality shares. Read from
the run's files only: cleanlab and the quality scan live above export (``honed.analyze``, ``honed data check``)."""

from __future__ import annotations

import json
from pathlib import Path

from honed.data.label_issues import read_exclusion
from honed.errors import HonedError

ANALYSIS_FILE = Path("analysis") / "analysis.json"  # written by honed.analyze.analysis, read as the report does
SHOWN = 5  # doubtful labels listed by path


def data_quality_section(run_dir: Path, exclude: str) -> str:
    """Markdown: what is known of this run's labels and image quality, and how to learn the rest."""
    lines = ["## Data quality"]
    if exclude:
        try:
            count = f"{len(read_exclusion(exclude))} training images"
        except HonedError:
            count = "training images"
        lines.append(f"- trained without {count} listed as likely label errors (`{Path(exclude).name}`, "
                     "`--exclude-label-issues`)")
    else:
        lines.append("- trained on every training image: none excluded as a likely label error")
    analysis = _analysis(Path(run_dir))
    doubtful = (analysis.get("errors") or {}).get("label_issues")
    if doubtful is None:
        lines.append("- label issues: not checked with this run (`honed analyze RUN`, or "
                     "`honed data check DATA --label-issues` for the training images)")
    else:
        examples = "; ".join(f"`{Path(r['path']).name}` labelled {r['given']}, looks like {r['suggested']}"
                             for r in doubtful[:SHOWN])
        lines.append(f"- {len(doubtful)} validation images have a doubtful label (cleanlab on this run's "
                     f"predictions){': ' + examples if examples else ''}")
    quality = (analysis.get("summary") or {}).get("image_quality") or {}
    for split, shares in sorted(quality.items()):
        flagged = ", ".join(f"{flag.replace('_', ' ')} {share:.1%}" for flag, share in shares.items() if share)
        lines.append(f"- image quality of the analyzed {split} images: {flagged or 'no flags'}")
    return "\n".join(lines)


def _analysis(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / ANALYSIS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
