"""The ledger on a real PostgreSQL (a throwaway server, tests/postgres.py): the same records and guarantees
as on SQLite, eight processes at once with no lost row, a killed writer leaves no half row, several processes
migrate a new database at once, Optuna's studies share the database, and `honed runs` / `honed report` /
`honed show` read it. Every test skips, saying why, where no PostgreSQL binary exists."""

from __future__ import annotations

from dataclasses import replace
import json
import multiprocessing
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from honed.errors import HonedError
from honed.tracking.ledger import LEDGER_ENV, LEDGER_FILENAME, Ledger, RunRecord
from tests.reliability.cli_app import cli_app
from tests.reliability.test_concurrent_ledger import check_nothing_lost, run_concurrently


@pytest.fixture
def team(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """HONED_LEDGER set to a fresh database, as `export HONED_LEDGER=...` on every machine of a team."""
    monkeypatch.setenv(LEDGER_ENV, postgres_url)
    return postgres_url


def test_records_round_trip_and_nothing_is_written_in_the_workspace(team: str, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.url.startswith("postgresql+psycopg://") and not ledger.embedded
        first = ledger.upsert(RunRecord(name="base", metric="rmse", greater_is_better=False, score=0.5,
                                        metrics={"rmse": 0.5, "nested": {"é": [1, 2]}}, path="base"))
        second = ledger.upsert(replace(first, status="done", score=0.4))
        ledger.insert(RunRecord(name="child", parent="base", score=float("nan"), path="child"))
        with pytest.raises(HonedError, match="already exists"):
            ledger.insert(RunRecord(name="child"))
        assert second.created == first.created and second.updated > first.updated
        assert ledger.get("base").metrics == {"rmse": 0.5, "nested": {"é": [1, 2]}}
        assert [r.name for r in ledger.children("base")] == ["child"] and ledger.get("child").score is None
        assert ledger.new_name("child") == "child-2" and ledger.new_name("other") == "other"
        assert ledger.get("base").folder == os.path.abspath(tmp_path / "ws" / "base")
        assert ledger.delete("child") and not ledger.delete("child")
        assert ledger.integrity_check() == "ok"
    assert not (tmp_path / "ws" / LEDGER_FILENAME).exists()


def _open_fresh(_: int) -> str:
    with Ledger("/nonexistent-workspace") as ledger:  # a URL ledger needs no workspace folder
        return ledger.integrity_check()


def test_processes_opening_a_new_database_at_once_migrate_it_once(team: str) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert pool.map(_open_fresh, range(8)) == ["ok"] * 8
    import psycopg

    with psycopg.connect(team) as conn:
        assert conn.execute("SELECT version_num FROM honed_ledger_version").fetchall() == [("0002_run_folder",)]


def test_eight_processes_share_a_postgres_ledger_briefly(team: str, tmp_path: Path) -> None:
    outcome = run_concurrently(tmp_path / "ws", tmp_path / "logs", seconds=5.0)
    rows = check_nothing_lost(tmp_path / "ws", outcome)
    assert rows > 1 + 3 and not (tmp_path / "ws" / LEDGER_FILENAME).exists()


@pytest.mark.reliability
def test_eight_processes_share_a_postgres_ledger_for_twenty_seconds(team: str, tmp_path: Path) -> None:
    outcome = run_concurrently(tmp_path / "ws", tmp_path / "logs", seconds=20.0)
    rows = check_nothing_lost(tmp_path / "ws", outcome)
    print(f"postgres ledger: 8 processes, {outcome['duration_s']:.1f} s, {rows} rows, "
          f"operations {outcome['operations']}")


def _write_until_killed(workspace: str) -> None:
    """Write three runs with large metrics; the third transaction is SIGKILLed just before its COMMIT."""
    os.environ["HONED_FAULT"] = "ledger-commit:3"
    with Ledger(workspace) as ledger:
        for i in range(3):
            ledger.upsert(RunRecord(name=f"r{i}", metrics={f"m{k}": k * 0.5 for k in range(2000)}, path=f"r{i}"))


def test_a_killed_writer_leaves_no_half_row(team: str, tmp_path: Path) -> None:
    child = multiprocessing.get_context("fork").Process(target=_write_until_killed, args=(str(tmp_path),))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -9  # killed at the fault point, mid-transaction
    with Ledger(tmp_path, timeout_s=5) as ledger:  # the server rolled the dead transaction back, locks freed
        rows = ledger.runs()
        assert [r.name for r in rows] == ["r0", "r1"]
        assert all(len(r.metrics) == 2000 for r in rows)
        ledger.upsert(RunRecord(name="r2"))  # the name the dead writer held is free
        assert ledger.get("r2") is not None


def test_optuna_studies_share_the_ledger_database(team: str, tmp_path: Path) -> None:
    import optuna

    from honed.search.tune import default_storage

    storage = default_storage(tmp_path)
    assert storage.startswith("postgresql+psycopg://") and storage.endswith(team.rsplit("/", 1)[1])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with Ledger(tmp_path) as ledger:
        ledger.upsert(RunRecord(name="s-t0"))
        assert [r.name for r in ledger.runs()] == ["s-t0"]
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2


@pytest.mark.slow
def test_runs_report_and_show_read_a_postgres_ledger(postgres_url: str, color_folder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from honed.training.fit import train
    from tests.training.test_train import tiny_config

    monkeypatch.delenv(LEDGER_ENV, raising=False)
    monkeypatch.setenv(LEDGER_ENV, postgres_url)  # as the training machine sees it
    workspace = tmp_path / "shared" / "runs"
    train(tiny_config(color_folder, workspace, epochs=1))
    monkeypatch.delenv(LEDGER_ENV)  # the reading machine passes --ledger instead
    runner, app = CliRunner(), cli_app()
    listed = runner.invoke(app, ["--ledger", postgres_url, "runs", "--workspace", str(workspace), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["name"] for r in json.loads(listed.output)] == ["tiny"]
    assert LEDGER_ENV not in os.environ  # --ledger lasts for its command only
    elsewhere = tmp_path / "laptop"  # another workspace path: the row's absolute folder finds the run
    out = tmp_path / "report.html"
    report = runner.invoke(app, ["--ledger", postgres_url, "report", "tiny", "--workspace", str(elsewhere),
                                 "--out", str(out)])
    assert report.exit_code == 0, report.output
    assert "tiny" in out.read_text() and not (workspace / LEDGER_FILENAME).exists()
    with Ledger(workspace, url=postgres_url) as ledger:
        ledger.upsert(replace(ledger.get("tiny"), name="far", path="far", folder="/mnt/gpu-box/runs/far"))
    for command in (["show", "far"], ["report", "far", "--out", str(tmp_path / "far.html")],
                    ["predict", "far", str(color_folder)]):
        result = runner.invoke(app, ["--ledger", postgres_url, *command, "--workspace", str(elsewhere)])
        assert result.exit_code != 0 and isinstance(result.exception, HonedError), (command, result.output)
        assert "/mnt/gpu-box/runs/far" in str(result.exception) and "not visible" in str(result.exception)
