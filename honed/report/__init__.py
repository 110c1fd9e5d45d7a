"""One self-contained HTML page about a run or a workspace: the step tree, learning curves, confusion,
worst predictions, sensitivity, recommendations and what they bought, ensemble diversity, the model card.

``collect`` gathers the data, ``figures`` draws it (matplotlib Agg, PNG bytes), ``html`` renders the page.
"""

from __future__ import annotations

from pathlib import Path

from honed.report.collect import collect
from honed.report.data import ReportData

__all__ = ["ReportData", "build_report", "collect"]


def build_report(target: Path, out: Path, *, workspace: Path | None = None, bundle: Path | None = None) -> Path:
    """Write the report for ``target`` (a run folder, a run name in ``workspace``, or a workspace, which
    centres on its best run) to ``out`` and return ``out``. ``bundle`` names the exported bundle whose
    model card to show when it is not recorded in the workspace."""
    from honed.report.html import render
    from honed.tracking.atomic import write_text

    page = render(collect(Path(target), workspace=None if workspace is None else Path(workspace),
                          bundle=None if bundle is None else Path(bundle)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out
