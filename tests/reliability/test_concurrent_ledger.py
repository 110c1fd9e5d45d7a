"""Eight processes on one workspace ledger at once: training-like writers, prediction-like readers, the
`honed runs` listing and leaderboard reports, for a bounded time. No row is lost, no "database is locked"
reaches a user, and SQLite's integrity check passes afterwards.

Each writer opens a new Ledger per operation, as training does (``honed.artifacts.run_folder.record``), and logs a
line per committed write; the test checks every logged row is in the ledger with its last written state.
"""

from __future__ import annotations

from dataclasses import replace
import json
import multiprocessing
import random
import time
import traceback
from pathlib import Path

import pytest

from honed.errors import HonedError
from honed.tracking.ledger import Ledger, RunRecord

PROCESSES = 8
ROLES = ("train", "train", "train", "predict", "predict", "list", "list", "report")


def _worker(role: str, index: int, workspace: str, log_dir: str, seconds: float) -> None:
    """Run one role until the deadline; every failure is logged, never raised (the parent reads the logs)."""
    rng = random.Random(index)
    log = open(Path(log_dir) / f"{role}-{index}.jsonl", "w")
    deadline = time.monotonic() + seconds
    operations = 0
    try:
        while time.monotonic() < deadline:
            if role == "train":
                _train_once(workspace, f"w{index}-{operations}", rng, log)
            elif role == "predict":
                with Ledger(workspace) as ledger:
                    names = [r.name for r in ledger.runs()]
                    if names:
                        record = ledger.get(rng.choice(names))
                        assert record is not None and record.metric == "accuracy"
            elif role == "list":
                _list_runs(workspace)
            else:
                with Ledger(workspace) as ledger:
                    board = ledger.runs(order_by_score=True)
                    for record in board[:5]:
                        ledger.children(record.name)
                    assert ledger.integrity_check() == "ok"
            operations += 1
    except BaseException as error:  # noqa: BLE001 - reported to the parent through the log
        log.write(json.dumps({"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}) + "\n")
    log.write(json.dumps({"operations": operations}) + "\n")
    log.close()


def _train_once(workspace: str, name: str, rng: random.Random, log) -> None:
    """Claim a name, then the writes a training run makes: running rows per epoch, then done with a score."""
    with Ledger(workspace) as ledger:
        ledger.insert(RunRecord(name=name, model="test_resnet", metric="accuracy", parent=None))
    log.write(json.dumps({"name": name, "status": "running"}) + "\n")
    for epoch in range(rng.randint(1, 3)):
        with Ledger(workspace) as ledger:
            current = ledger.get(name)
            ledger.upsert(replace(current, metrics={"epoch": epoch}, duration_s=epoch))
    score = round(rng.random(), 6)
    with Ledger(workspace) as ledger:
        ledger.upsert(replace(ledger.get(name), status="done", score=score))
    log.write(json.dumps({"name": name, "status": "done", "score": score}) + "\n")
    log.flush()


def _list_runs(workspace: str) -> None:
    from typer.testing import CliRunner

    from tests.reliability.cli_app import cli_app

    result = CliRunner().invoke(cli_app(), ["runs", "--workspace", workspace, "--json"])
    if result.exit_code != 0 or "locked" in result.output.lower():
        raise RuntimeError(f"`honed runs` failed ({result.exit_code}): {result.output} {result.exception!r}")
    json.loads(result.output)


def run_concurrently(workspace: Path, log_dir: Path, seconds: float) -> dict:
    """Start the eight roles at once on ``workspace`` and return what their logs say."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with Ledger(workspace) as ledger:  # an existing ledger with a first run, as a workspace in use has
        ledger.upsert(RunRecord(name="seed", model="test_resnet", metric="accuracy", status="done", score=0.5))
    context = multiprocessing.get_context("fork")  # the children reuse the imported modules
    children = [context.Process(target=_worker, args=(role, i, str(workspace), str(log_dir), seconds))
                for i, role in enumerate(ROLES)]
    start = time.monotonic()
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=seconds + 120)
    duration = time.monotonic() - start
    assert all(child.exitcode == 0 for child in children), [child.exitcode for child in children]
    written, errors, operations = {}, [], {}
    for path in sorted(log_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "error" in entry:
                errors.append(f"{path.stem}: {entry['error']}\n{entry['trace']}")
            elif "operations" in entry:
                operations[path.stem] = entry["operations"]
            else:
                written[entry["name"]] = entry
    return {"written": written, "errors": errors, "operations": operations, "duration_s": duration}


def check_nothing_lost(workspace: Path, outcome: dict) -> int:
    assert not outcome["errors"], "\n".join(outcome["errors"])
    assert len(outcome["operations"]) == PROCESSES and all(n > 0 for n in outcome["operations"].values())
    with Ledger(workspace) as ledger:
        rows = {r.name: r for r in ledger.runs()}
        assert ledger.integrity_check() == "ok"
    missing = [name for name in outcome["written"] if name not in rows]
    assert not missing, missing
    for name, entry in outcome["written"].items():
        assert rows[name].status == entry["status"], name
        if entry["status"] == "done":
            assert rows[name].score == pytest.approx(entry["score"])
    return len(rows)


def test_eight_processes_share_a_ledger_briefly(tmp_path):
    outcome = run_concurrently(tmp_path / "ws", tmp_path / "logs", seconds=5.0)
    rows = check_nothing_lost(tmp_path / "ws", outcome)
    assert rows > 1 + 3  # every writer committed something


@pytest.mark.reliability
def test_eight_processes_share_a_ledger_for_twenty_seconds(tmp_path):
    outcome = run_concurrently(tmp_path / "ws", tmp_path / "logs", seconds=20.0)
    rows = check_nothing_lost(tmp_path / "ws", outcome)
    print(f"ledger: {PROCESSES} processes, {outcome['duration_s']:.1f} s, {rows} rows, "
          f"operations {outcome['operations']}")


def test_a_lock_held_too_long_becomes_a_honed_error(tmp_path):
    """The other side of the promise: when another process really holds the write lock past every retry,
    the user gets a HonedError naming the fix, not sqlite3's 'database is locked'."""
    import sqlite3

    with Ledger(tmp_path) as ledger:
        ledger.upsert(RunRecord(name="a"))
    holder = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(HonedError, match="locked by another"):
            with Ledger(tmp_path, timeout_s=0.05) as ledger:  # opening already needs the lock (schema check)
                ledger.upsert(RunRecord(name="b"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
