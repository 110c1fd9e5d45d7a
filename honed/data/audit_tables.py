"""``honed data check``'s tables: an audit report (``honed.data.audit``) for the terminal."""

from __future__ import annotations

from rich.table import Table

from honed.data.audit import AuditReport, ordered_splits, plural, ratio_text
from honed.data.quality import threshold_text

SHOWN = 10  # rows per problem kind in the rendered tables; the JSON report has all of them


def render_audit(report: AuditReport) -> list[Table]:
    """Tables for the CLI to print: overview, classes, image properties, problems, warnings."""
    tables = [_overview_table(report)]
    if report.class_counts:
        tables.append(_class_table(report))
    tables.append(_images_table(report))
    if report.quality.thresholds:
        tables.append(quality_table(report))
    problems = _problems_table(report)
    if problems.row_count:
        tables.append(problems)
    tables.append(_warnings_table(report))
    return tables


def _overview_table(report: AuditReport) -> Table:
    table = Table(title="Data" + (" (cheap: headers only)" if report.cheap else ""))
    table.add_column("")
    table.add_column("value", justify="right")
    for split in ordered_splits(set(report.split_counts)):
        table.add_row(f"{split} images", str(report.split_counts[split]))
    if report.imbalance_ratio is not None:
        table.add_row("class imbalance in train", ratio_text(report.imbalance_ratio))
    table.add_row("bad files", str(len(report.bad_files)))
    table.add_row("exact duplicate groups", str(len(report.exact_duplicates)))
    if not report.cheap:
        table.add_row("near duplicate groups", str(len(report.near_duplicates)))
    return table


def _class_table(report: AuditReport) -> Table:
    splits = ordered_splits(set(report.split_counts))
    table = Table(title=plural(len(report.class_counts), "class", "classes"))
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    rows = sorted(report.class_counts.items(), key=lambda item: -sum(item[1].values()))
    shown = rows if len(rows) <= 2 * SHOWN else rows[:SHOWN] + [None] + rows[-SHOWN:]
    for row in shown:
        if row is None:
            table.add_row(f"... {len(rows) - 2 * SHOWN} more", *[""] * len(splits))
            continue
        label, per_split = row
        table.add_row(label, *[str(per_split.get(split, 0)) for split in splits])
    return table


def _images_table(report: AuditReport) -> Table:
    table = Table(title="Images")
    table.add_column("property")
    table.add_column("values")
    for name, stats in report.sizes.items():
        table.add_row(name, f"min {stats['min']}  median {stats['median']:g}  max {stats['max']}")
    table.add_row("modes", ", ".join(f"{mode} {count}" for mode, count in report.modes.items()))
    table.add_row("formats", ", ".join(f"{fmt} {count}" for fmt, count in report.formats.items()))
    return table


def quality_table(report: AuditReport) -> Table:
    """Each quality flag: its threshold (from this data's distribution) and the share of each split flagged."""
    splits = ordered_splits(set(report.quality.shares))
    table = Table(title="Image quality (thresholds from this data: median +- 3.5 robust deviations)")
    table.add_column("flag")
    table.add_column("threshold")
    for split in splits:
        table.add_column(split, justify="right")
    for flag, threshold in report.quality.thresholds.items():
        shares = [report.quality.shares[split].get(flag, 0.0) for split in splits]
        table.add_row(flag.replace("_", " "), threshold_text(flag, threshold), *[f"{s:.1%}" for s in shares])
    return table


def _problems_table(report: AuditReport) -> Table:
    table = Table(title="Problems" + (" (cheap: no pixel checks)" if report.cheap else ""))
    table.add_column("kind")
    table.add_column("files")
    for bad in report.bad_files[:SHOWN]:
        table.add_row(f"bad: {bad.reason}", bad.path)
    for kind, groups in (("exact duplicate", report.exact_duplicates), ("near duplicate", report.near_duplicates)):
        for group in groups[:SHOWN]:
            where = "/".join(group.spanned_splits)
            table.add_row(f"{kind} ({where})", "\n".join(group.paths))
    for name, paths in report.flags.items():
        for path in paths[:SHOWN]:
            table.add_row(name.replace("_", " "), path)
    return table


def _warnings_table(report: AuditReport) -> Table:
    table = Table(title="Warnings")
    table.add_column("finding")
    for warning in report.warnings:
        table.add_row(warning)
    if not report.warnings:
        table.add_row("none", style="green")
    return table
