"""``honed data check --html``: one self-contained page with the top label issues (thumbnail, given label,
suggested label, score) and the image quality flags (threshold from the data, thumbnails of flagged images).
The cards are the run report's (``honed.report.html.label_issue_gallery``)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from honed.data.audit import AuditReport
from honed.data.quality import threshold_text
from honed.report import figures
from honed.report.html import CSS, PAGE, esc, image, label_issue_gallery, missing, table
from honed.version import __version__

FLAGGED_SHOWN = 8  # thumbnails per quality flag


def render_data_check(report: AuditReport, issues=None, *, source: str, top: int = 10) -> str:
    """The page; ``issues`` is a ``honed.analyze.label_issues.LabelIssues`` or None when not asked for."""
    sections = [("quality", "Image quality", quality_section(report))]
    if issues is not None:
        text = (f"<p>{len(issues)} of {issues.images} training images are probably mislabelled "
                f"({esc(issues.source)}); the {min(top, len(issues))} most likely first. Nothing was relabelled "
                "or dropped: <code>--exclude-label-issues N</code> trains without them.</p>")
        sections.insert(0, ("label-issues", "Label issues",
                                  text + (label_issue_gallery(issues.rows[:top]) or missing("none found"))))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in report.warnings) or "<li>none</li>"
    sections.append(("warnings", "Warnings", f"<ul>{warnings}</ul>"))
    body = "\n".join(f'<section id="{key}"><h2>{esc(title)}</h2>{html}</section>' for key, title, html in sections)
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    return PAGE.substitute(title=esc(f"Data check: {source}"), css=CSS, nav=nav, sections=body,
                           meta=esc(f"{report.n_images} images"), version=esc(__version__),
                           when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def quality_section(report: AuditReport) -> str:
    quality = report.quality
    if not quality.thresholds:
        return missing("too few decoded images to judge quality (or --cheap): run the check without --cheap")
    splits = sorted(quality.shares)
    rows = [[esc(flag.replace("_", " ")), esc(threshold_text(flag, t)), str(len(quality.flags.get(flag, []))),
             *[f"{quality.shares[s].get(flag, 0.0):.1%}" for s in splits]] for flag, t in quality.thresholds.items()]
    parts = ["<p>Thresholds come from this data: the median plus or minus 3.5 robust deviations (MAD).</p>",
             table(["flag", "threshold", "images", *splits], rows, numeric=range(2, 3 + len(splits)))]
    for flag, paths in quality.flags.items():
        cards = []
        for path in paths[:FLAGGED_SHOWN]:
            thumb = figures.thumbnail(path)
            picture = image(thumb, flag, "thumb") if thumb else '<div class="noimg">no image</div>'
            cards.append(f'<div class="card">{picture}<div class="missing" title="{esc(path)}">'
                         f"{esc(Path(path).name)}</div></div>")
        if cards:
            parts.append(f"<h3>{esc(flag.replace('_', ' '))}</h3><div class=\"gallery\">{''.join(cards)}</div>")
    return "".join(parts)
