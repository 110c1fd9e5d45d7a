"""The ledger as a tree of steps: each run under its parent, with the change in its score from the parent."""

from __future__ import annotations

from dataclasses import dataclass

from honed.tracking.ledger import RunRecord


@dataclass
class TreeRow:
    record: RunRecord
    depth: int
    delta: float | None  # score minus the parent's score (same metric), None when either has none


def run_tree(records: list[RunRecord]) -> list[TreeRow]:
    """Runs in depth-first order from the roots (oldest first), children under their parent."""
    by_name = {r.name: r for r in records}
    children: dict[str | None, list[RunRecord]] = {}
    for record in sorted(records, key=lambda r: r.created):
        parent = record.parent if record.parent in by_name else None  # a parent deleted since: show as a root
        children.setdefault(parent, []).append(record)
    rows: list[TreeRow] = []

    def visit(record: RunRecord, depth: int) -> None:
        parent = by_name.get(record.parent or "")
        rows.append(TreeRow(record, depth, _delta(record, parent)))
        for child in children.get(record.name, []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return rows


def _delta(record: RunRecord, parent: RunRecord | None) -> float | None:
    if parent is None or record.score is None or parent.score is None or record.metric != parent.metric:
        return None
    return record.score - parent.score
