"""The ledger: records round-trip, the leaderboard orders both metric directions, many processes share it."""

from __future__ import annotations

import os
from pathlib import Path
import sqlite3
import subprocess
import sys

import pytest

from honed.errors import HonedError
from honed.tracking.ledger import LEDGER_FILENAME, SCHEMA_VERSION, Ledger, RunRecord
from honed.tracking.ledger_db import HEAD, VERSION_TABLE

REPO = Path(__file__).resolve().parents[2]

# Each worker waits for the go file, then upserts its rows (writer) or lists the ledger repeatedly (reader).
WORKER = """
import sys, time
from pathlib import Path
from honed.tracking.ledger import Ledger, RunRecord
workspace, role, worker = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with Ledger(workspace) as ledger:
    print("ready", flush=True)
    while not (workspace / "go").exists():
        time.sleep(0.005)
    if role == "writer":
        for i in range(25):
            ledger.upsert(RunRecord(name=f"w{worker}-r{i}", score=float(i), metrics={"acc": i / 25}))
    else:
        for _ in range(60):
            names = [run.name for run in ledger.runs(order_by_score=True)]
            assert len(names) == len(set(names)) <= 200
"""


def make(name: str, score: float | None, *, greater: bool = True, **kwargs: object) -> RunRecord:
    return RunRecord(name=name, score=score, greater_is_better=greater, metric="m", **kwargs)  # type: ignore[arg-type]


def test_round_trip_with_metrics_and_none_score(tmp_path: Path) -> None:
    record = RunRecord(
        name="baseline",
        parent=None,
        change="",
        kind="train",
        status="done",
        task="regress",
        model="resnet18",
        data_fingerprint="abc123",
        metric="rmse",
        score=None,
        greater_is_better=False,
        metrics={"rmse": 0.5, "per_class": {"a": [1, 2]}, "note": "é"},
        duration_s=12.5,
        path="runs/baseline",
    )
    with Ledger(tmp_path) as ledger:
        stored = ledger.upsert(record)
        got = ledger.get("baseline")
    assert got == stored
    assert got is not None and got.score is None and got.metrics == record.metrics
    assert got.greater_is_better is False and got.task == "regress" and got.path == "runs/baseline"
    assert got.created == record.created and got.updated >= record.updated
    assert (tmp_path / LEDGER_FILENAME).exists()


def test_reopen_and_update_keeps_created(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        first = ledger.upsert(make("a", None))
    with Ledger(tmp_path) as ledger:
        second = ledger.upsert(make("a", 0.9, status="done"))
        assert ledger.get("missing") is None
        assert len(ledger.runs()) == 1
    assert second.created == first.created and second.score == 0.9 and second.status == "done"


def test_nan_score_is_stored_as_none(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        assert ledger.upsert(make("diverged", float("nan"))).score is None


@pytest.mark.parametrize("greater, expected", [(True, ["b", "c", "a", "none"]), (False, ["a", "c", "b", "none"])])
def test_leaderboard_order(tmp_path: Path, greater: bool, expected: list[str]) -> None:
    with Ledger(tmp_path) as ledger:
        for name, score in [("none", None), ("a", 0.1), ("b", 0.9), ("c", 0.5)]:
            ledger.upsert(make(name, score, greater=greater))
        assert [r.name for r in ledger.runs(order_by_score=True)] == expected
        assert [r.name for r in ledger.runs()] == ["none", "a", "b", "c"]  # insertion (created) order


def test_children_and_delete(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        ledger.upsert(make("base", 0.5))
        ledger.upsert(make("lr", 0.6, parent="base", change="lr 1e-3 -> 3e-4"))
        ledger.upsert(make("aug", 0.7, parent="base", change="+ mixup"))
        ledger.upsert(make("aug-tta", 0.8, parent="aug", change="+ flip TTA"))
        assert [r.name for r in ledger.children("base")] == ["lr", "aug"]
        assert [r.name for r in ledger.children("aug")] == ["aug-tta"]
        assert ledger.children("aug-tta") == []
        assert ledger.delete("lr") is True
        assert ledger.delete("lr") is False
        assert [r.name for r in ledger.children("base")] == ["aug"]


def test_new_name_and_insert(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        assert ledger.new_name("resnet") == "resnet"
        ledger.upsert(make("resnet", None))
        ledger.upsert(make("resnet-extra", None))  # shares the prefix, not the numbering
        assert ledger.new_name("resnet") == "resnet-2"
        ledger.insert(make("resnet-2", None))
        ledger.upsert(make("resnet-3", None))
        assert ledger.new_name("resnet") == "resnet-4"
        assert ledger.new_name("res") == "res"
        with pytest.raises(HonedError, match="already exists"):
            ledger.insert(make("resnet-2", 1.0))
        assert ledger.get("resnet-2").score is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"name": ""}, "empty"), ({"name": "a/b"}, "contain"), ({"name": ".x"}, "start"),
     ({"name": "a", "status": "ok"}, "status"), ({"name": "a", "task": "detect"}, "task")],
)
def test_bad_records_raise_honed_error(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(HonedError, match=match):
        RunRecord(**kwargs)  # type: ignore[arg-type]


def test_schema_version_and_newer_ledger_refused(tmp_path: Path) -> None:
    Ledger(tmp_path).close()
    conn = sqlite3.connect(tmp_path / LEDGER_FILENAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()[0] == HEAD
    assert int(HEAD.split("_")[0]) == SCHEMA_VERSION
    with conn:  # a newer honed's revision, which this one has no script for
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999_future'")
    conn.close()
    with pytest.raises(HonedError, match="upgrade honed"):
        Ledger(tmp_path)


def test_damaged_ledger_raises_honed_error(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILENAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HonedError, match="damaged"):
        Ledger(tmp_path)


def test_lock_held_too_long_is_a_honed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("honed.tracking.ledger.RETRIES", 1)
    with Ledger(tmp_path, timeout_s=0.05) as ledger:
        holder = sqlite3.connect(tmp_path / LEDGER_FILENAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(HonedError, match="locked by another honed process") as info:
                ledger.upsert(make("x", None))
            assert "database is locked" not in str(info.value)
            assert ledger.get("x") is None  # reads still work while a writer holds the lock (WAL)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        ledger.upsert(make("x", None))  # the failed attempt left no transaction open


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    roles = [("writer", i) for i in range(8)] + [("reader", i) for i in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), role, str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        for role, i in roles
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        (tmp_path / "go").touch()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr.decode()
        assert stderr == b""
    with Ledger(tmp_path) as ledger:
        runs = ledger.runs()
        assert {r.name for r in runs} == {f"w{w}-r{i}" for w in range(8) for i in range(25)}
        assert ledger.integrity_check() == "ok"
        assert ledger.get("w3-r7").metrics == {"acc": 7 / 25}  # type: ignore[union-attr]
