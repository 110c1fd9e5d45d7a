"""The ledger's schema under Alembic: a ledger.sqlite written before migrations (by the code of that time,
kept in tests/tracking/data) is stamped and upgraded without losing a row; newer schemas are refused; the
ledger URL setting decides where the ledger lives, and nothing is written in the workspace when it is set."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import sqlite3

import pytest

from honed.errors import HonedError
from honed.tracking.ledger import LEDGER_ENV, LEDGER_FILENAME, Ledger, RunRecord, locate_run
from honed.tracking.ledger_db import BASELINE, HEAD, MIGRATIONS, VERSION_TABLE, ledger_url, normalize_url

LEGACY = Path(__file__).with_name("data") / "ledger-schema1.sqlite"  # written by honed before this issue


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(LEGACY, workspace / LEDGER_FILENAME)
    return workspace


def _raw(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_head_is_the_newest_script() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_current_head() == HEAD
    assert [s.revision for s in scripts.walk_revisions()][-1] == BASELINE


def test_a_ledger_written_before_migrations_keeps_every_row(legacy: Path) -> None:
    before = _raw(legacy / LEDGER_FILENAME, "SELECT * FROM runs ORDER BY name")
    assert len(before) == 3 and not _raw(legacy / LEDGER_FILENAME,
                                         f"SELECT name FROM sqlite_master WHERE name = '{VERSION_TABLE}'")
    with Ledger(legacy) as ledger:
        runs = {r.name: r for r in ledger.runs()}
    assert _raw(legacy / LEDGER_FILENAME, f"SELECT version_num FROM {VERSION_TABLE}") == [(HEAD,)]
    after = _raw(legacy / LEDGER_FILENAME, "SELECT * FROM runs ORDER BY name")
    assert [row[:-1] for row in after] == before  # every column as it was, the new folder column last
    assert runs["baseline-lr"].parent == "baseline" and runs["baseline-lr"].change == "lr 1e-3 -> 3e-4"
    assert runs["baseline"].score == 0.8 and runs["baseline"].metrics == {"accuracy": 0.8}
    assert runs["regress-1"].greater_is_better is False and runs["regress-1"].score is None
    assert runs["baseline"].folder == os.path.abspath(legacy / "baseline")  # filled from the workspace
    assert runs["regress-1"].folder == ""  # no folder, none invented
    with Ledger(legacy) as ledger:  # opened again: already current, nothing re-run; writes work
        ledger.upsert(RunRecord(name="after", path="after"))
        assert len(ledger.runs()) == 4 and ledger.integrity_check() == "ok"


def test_old_honed_can_still_read_and_write_an_upgraded_ledger(legacy: Path) -> None:
    """The new column has a default, so the statements of the honed before migrations still work."""
    Ledger(legacy).close()
    with sqlite3.connect(legacy / LEDGER_FILENAME) as conn:
        conn.execute("INSERT INTO runs (name, parent, change, kind, status, task, model, data_fingerprint, metric, "
                     "score, greater_is_better, metrics, duration_s, created, updated, path) VALUES ('old', NULL, "
                     "'', 'train', 'done', 'classify', 'm', '', 'accuracy', 0.5, 1, '{}', 1.0, 'x', 'x', 'old')")
    with Ledger(legacy) as ledger:
        assert ledger.get("old").folder == ""


def test_a_pre_migration_ledger_of_a_newer_schema_is_refused(legacy: Path) -> None:
    with sqlite3.connect(legacy / LEDGER_FILENAME) as conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(HonedError, match="upgrade honed"):
        Ledger(legacy)
    assert len(_raw(legacy / LEDGER_FILENAME, "SELECT * FROM runs")) == 3  # untouched


def test_postgres_urls_use_psycopg_3(tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert ledger_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / LEDGER_FILENAME}"
    with pytest.raises(HonedError, match="not a database URL"):
        ledger_url(tmp_path, "not a url")


def test_with_a_url_set_no_ledger_sqlite_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "server" / "team.sqlite"
    shared.parent.mkdir()
    monkeypatch.setenv(LEDGER_ENV, f"sqlite:///{shared}")
    with Ledger(tmp_path / "ws") as ledger:
        ledger.upsert(RunRecord(name="a", path="a"))
        assert ledger.path is None and str(shared) in ledger.where
    assert not (tmp_path / "ws" / LEDGER_FILENAME).exists() and shared.is_file()
    with Ledger(tmp_path / "elsewhere") as ledger:  # another workspace path, the same ledger
        assert ledger.get("a").folder == os.path.abspath(tmp_path / "ws" / "a")


def test_a_run_whose_folder_this_machine_cannot_see_is_named_in_one_line(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        ledger.upsert(RunRecord(name="far", path="far", folder="/mnt/other-machine/runs/far"))
        ledger.upsert(RunRecord(name="folderless"))
    with pytest.raises(HonedError, match="not visible from this machine") as info:
        locate_run(tmp_path, "far")
    assert "/mnt/other-machine/runs/far" in str(info.value) and "\n" not in str(info.value)
    assert locate_run(tmp_path, "folderless") is None and locate_run(tmp_path, "unknown") is None
    (tmp_path / "far").mkdir()  # visible in this workspace after all: found there
    assert locate_run(tmp_path, "far") == tmp_path / "far"
