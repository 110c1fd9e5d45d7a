from honed.tracking.ledger import RunRecord
from honed.tracking.tree import run_tree


def _record(name, parent=None, score=None, created="", metric="accuracy"):
    return RunRecord(name=name, parent=parent, score=score, metric=metric, created=created)


def test_children_sit_under_their_parent_with_the_change_in_score():
    records = [_record("b", "a", 0.7, "2"), _record("a", None, 0.6, "1"), _record("c", "b", 0.65, "3"),
               _record("x", None, 0.5, "4"), _record("orphan", "deleted", 0.4, "5"), _record("d", "a", None, "6")]
    rows = run_tree(records)
    assert [(r.record.name, r.depth) for r in rows] == [("a", 0), ("b", 1), ("c", 2), ("d", 1), ("x", 0),
                                                         ("orphan", 0)]
    deltas = {r.record.name: r.delta for r in rows}
    assert abs(deltas["b"] - 0.1) < 1e-9 and abs(deltas["c"] + 0.05) < 1e-9
    assert deltas["a"] is None and deltas["d"] is None and deltas["orphan"] is None


def test_no_delta_across_metrics():
    rows = run_tree([_record("a", None, 0.6, "1"), _record("b", "a", 0.3, "2", metric="log_loss")])
    assert rows[1].delta is None
