"""The workspace ledger: one row per run, in embedded SQLite (``<workspace>/ledger.sqlite``, the default) or
in a database a team shares (``HONED_LEDGER`` / ``--ledger URL``, e.g. PostgreSQL), through SQLAlchemy Core.
Where it lives and how its schema is migrated: ``honed.tracking.ledger_db``.

Protocol, so the ledger never points at an incomplete file: a run writes its files first, each through
``honed.tracking.atomic``, and only then upserts its row. A row with status ``running`` promises nothing
about files beyond those already written; readers trust files only for ``done`` runs. Removing a run goes
the other way: delete the row first, then the files. Each row keeps the absolute path of its folder
(``folder``), so a machine sharing the ledger can say when it cannot see a run's folder.

Concurrency: many processes may read and write one ledger. Every write is one transaction, committed whole
or rolled back whole. On SQLite: WAL mode (readers never block the writer), ``BEGIN IMMEDIATE`` (the write
lock is taken up front, so two writers never deadlock), a busy timeout of ``timeout_s``; on PostgreSQL its
row locks. Contention that outlasts a few retries becomes a ``HonedError``, never a raw ``database is
locked``. SQLite's locking is unreliable on network filesystems: several machines share a database server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
import json
import math
import os
from pathlib import Path
import random
import time
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from honed.errors import HonedError
from honed.tasks import get_task
from honed.tracking import ledger_db
from honed.tracking.atomic import fault_point
from honed.tracking.ledger_db import LEDGER_ENV, LEDGER_FILENAME, has_ledger, ledger_url, runs_table

__all__ = ["LEDGER_ENV", "LEDGER_FILENAME", "STATUSES", "Ledger", "RunRecord", "check_name", "has_ledger",
           "leaderboard_key", "ledger_url", "utc_now"]

SCHEMA_VERSION = 2  # the revision number of ledger_db.HEAD
STATUSES = ("running", "done", "failed", "interrupted")
RETRIES = 4  # extra attempts after busy_timeout expired, with growing pauses

T = TypeVar("T")


def utc_now() -> str:
    """The current time as ISO-8601 UTC with microseconds, which sorts correctly as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def check_name(name: str) -> str:
    """Return ``name`` if it can name a run (and its folder); raise HonedError naming the fix if not."""
    if not name or name != name.strip():
        raise HonedError(f"run name {name!r} is empty or has surrounding spaces: give a plain name like 'baseline'")
    if any(char in name for char in '/\\:*?"<>|') or name.startswith("."):
        raise HonedError(f"run name {name!r} cannot start with '.' or contain / \\ : * ? \" < > |: rename it")
    if not name.isprintable():  # NUL, newlines, escapes: no file system or terminal takes them well
        raise HonedError(f"run name {name!r} has control characters: use letters, digits, '-' and '_'")
    return name


@dataclass
class RunRecord:
    """One run as the ledger stores it; ``metrics`` is any JSON-serializable dict."""

    name: str  # unique in the workspace; also names the run folder
    parent: str | None = None  # the run this one changes, None for a baseline
    change: str = ""  # what changed from the parent, in words ("lr 1e-3 -> 3e-4")
    kind: str = "train"  # 'train', 'cv', 'ensemble', 'analysis', ... (free text)
    status: str = "running"  # one of STATUSES
    task: str = "classify"  # a task name (honed.tasks.TASKS)
    model: str = ""  # backbone or method name
    data_fingerprint: str = ""  # the manifest's fingerprint, so runs on other data are told apart
    metric: str = ""  # name of the main metric
    score: float | None = None  # main metric value; None when not measured (NaN is stored as None)
    greater_is_better: bool = True  # direction of the main metric, for the leaderboard
    metrics: dict[str, Any] = field(default_factory=dict)  # every metric, JSON-serializable
    duration_s: float = 0.0  # wall-clock seconds
    created: str = field(default_factory=utc_now)  # ISO-8601 UTC; kept from the first upsert
    updated: str = field(default_factory=utc_now)  # ISO-8601 UTC; set by every upsert
    path: str = ""  # run folder, relative to the workspace ('' when the run has no folder)
    folder: str = ""  # the run folder's absolute path; the ledger sets it from its workspace and ``path``

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.status not in STATUSES:
            raise HonedError(f"unknown run status {self.status!r}: use one of {', '.join(STATUSES)}")
        get_task(self.task)  # a HonedError naming the tasks there are
        if self.score is not None:
            self.score = None if math.isnan(float(self.score)) else float(self.score)
        self.greater_is_better = bool(self.greater_is_better)
        self.duration_s = float(self.duration_s)


_COLUMNS = tuple(f.name for f in fields(RunRecord))
_UPDATED = tuple(c for c in _COLUMNS if c not in ("name", "created"))  # 'created' keeps the first upsert's time


def _upsert(insert: Any) -> sa.Executable:
    """INSERT ... ON CONFLICT (name) DO UPDATE, in the dialect's construct; built once, values bound at run."""
    statement = insert(runs_table)
    return statement.on_conflict_do_update(index_elements=["name"], set_={c: statement.excluded[c] for c in _UPDATED})


_UPSERTS = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
_INSERT = runs_table.insert()
_GET = sa.select(runs_table).where(runs_table.c.name == sa.bindparam("name"))


def _to_row(record: RunRecord) -> dict[str, Any]:
    """The SQL parameters for a record: metrics as JSON, the direction as 0/1."""
    row = asdict(record)
    row["metrics"] = json.dumps(record.metrics, sort_keys=True)
    row["greater_is_better"] = int(record.greater_is_better)
    return row


def _from_row(row: Any) -> RunRecord:
    """A record from a row of ``runs``."""
    values = {name: row._mapping[name] for name in _COLUMNS}
    values["metrics"] = json.loads(values["metrics"])
    values["greater_is_better"] = bool(values["greater_is_better"])
    values["folder"] = values["folder"] or ""
    return RunRecord(**values)


def leaderboard_key(record: RunRecord) -> tuple[bool, float, str]:
    """Sort key putting the best score first (for either direction), unscored runs last, ties oldest first."""
    if record.score is None:
        return (True, 0.0, record.created)
    return (False, -record.score if record.greater_is_better else record.score, record.created)


class Ledger:
    """The runs of one workspace, in the database ``ledger_url(workspace, url)`` names; a context manager.

    Each Ledger opens its own connection; share the workspace (and URL), not the object, across processes.
    """

    def __init__(self, workspace: str | Path, *, url: str | None = None, timeout_s: float = 30.0) -> None:
        self.workspace = Path(workspace)
        self.url = ledger_url(self.workspace, url)
        self.embedded = self.url.startswith("sqlite")
        chosen = url or ledger_db.configured_url()
        self.path = None if chosen else self.workspace / LEDGER_FILENAME  # the default file; None for a URL
        self.where = str(self.path) if self.path else ledger_db.shown(self.url)  # for messages
        self.timeout_s = timeout_s
        if self.path is not None:
            self.workspace.mkdir(parents=True, exist_ok=True)
        self._engine = ledger_db.create_engine(self.url, timeout_s)
        self._conn: Connection | None = None
        try:
            self._conn = self._retry(self._engine.connect)
            self._retry(lambda: ledger_db.migrate(self._connection(), self.workspace))
        except BaseException:
            self.close()
            raise

    def _transaction(self, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one transaction (BEGIN IMMEDIATE on SQLite): committed whole or rolled back whole."""
        conn = self._connection()
        with ledger_db.write_transaction(conn):
            result = body(conn)
            fault_point("ledger-commit")  # reliability tests kill here (HONED_FAULT); a no-op otherwise
        return result

    def _connection(self) -> Connection:
        if self._conn is None:
            raise HonedError("the ledger is closed: open a new Ledger")
        return self._conn

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying lock contention that outlasted the busy timeout; never leak 'locked'."""
        for attempt in range(RETRIES + 1):
            try:
                return action()
            except sa.exc.DBAPIError as error:
                if self._conn is not None and self._conn.in_transaction():
                    self._conn.rollback()
                if ledger_db.is_damaged(error):
                    raise HonedError(
                        f"the ledger {self.where} is damaged ({error.orig}): move it aside to start a new one"
                    ) from error
                if not ledger_db.is_busy(error):
                    if ledger_db.is_unreachable(error):
                        first = (str(error.orig).strip() or "no answer").splitlines()[0]
                        raise HonedError(f"cannot reach the ledger database {self.where} ({first}): check the "
                                         f"URL in --ledger / {LEDGER_ENV} and that the server runs") from error
                    raise
                if attempt == RETRIES:
                    raise HonedError(
                        f"the ledger {self.where} stayed locked by another honed process; "
                        "wait for it to finish and run the command again"
                    ) from error
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _write(self, body: Callable[[Connection], T]) -> T:
        """A retried write transaction."""
        return self._retry(lambda: self._transaction(body))

    def _select(self, query: sa.Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """A retried read, in its own short transaction (so a reader never holds a snapshot open)."""
        def read() -> list[Any]:
            conn = self._connection()
            rows = conn.execute(query, params).fetchall()
            conn.rollback()  # end the read's implicit transaction (SQLAlchemy's autobegin)
            return rows

        return self._retry(read)

    def _stamped(self, record: RunRecord) -> dict[str, Any]:
        """The row for ``record``: ``updated`` now, and its folder's absolute path when it has one."""
        folder = record.folder or (os.path.abspath(self.workspace / record.path) if record.path else "")
        return _to_row(replace(record, updated=utc_now(), folder=folder))

    def _upsert_statement(self) -> sa.Executable:
        dialect = self._connection().dialect.name
        if dialect not in _UPSERTS:
            raise HonedError(f"the ledger supports SQLite and PostgreSQL, not {dialect}: use a postgresql:// URL")
        return _UPSERTS[dialect]

    def upsert(self, record: RunRecord) -> RunRecord:
        """Insert or update a run by name and return it as stored: ``created`` kept, ``updated`` now.

        Call only after the run's files are written (atomically): the row must never point at a partial file.
        """
        row = self._stamped(record)
        self._write(lambda conn: conn.execute(self._upsert_statement(), row))
        return self.get(record.name) or record

    def insert(self, record: RunRecord) -> RunRecord:
        """Add a new run, raising HonedError if the name is taken; use it to claim a name from ``new_name``."""
        taken = HonedError(f"a run named {record.name!r} already exists: pick another name")

        def body(conn: Connection) -> None:
            if conn.execute(_GET, {"name": record.name}).first():
                raise taken
            conn.execute(_INSERT, self._stamped(record))

        try:
            self._write(body)
        except sa.exc.IntegrityError as error:  # PostgreSQL: a concurrent insert of the name committed first
            raise taken from error
        return self.get(record.name) or record

    def get(self, name: str) -> RunRecord | None:
        """The run called ``name``, or None."""
        rows = self._select(_GET, {"name": name})
        return _from_row(rows[0]) if rows else None

    def runs(self, order_by_score: bool = False) -> list[RunRecord]:
        """All runs, oldest first; or, with ``order_by_score``, as a leaderboard: best first, unscored last."""
        rows = self._select(sa.select(runs_table).order_by(runs_table.c.created, runs_table.c.name))
        records = [_from_row(row) for row in rows]
        return sorted(records, key=leaderboard_key) if order_by_score else records

    def children(self, name: str) -> list[RunRecord]:
        """The runs whose parent is ``name``, oldest first."""
        query = sa.select(runs_table).where(runs_table.c.parent == name)
        return [_from_row(row) for row in self._select(query.order_by(runs_table.c.created, runs_table.c.name))]

    def delete(self, name: str) -> bool:
        """Remove the run's row (not its children's rows); True if it existed. Delete its files after this."""
        statement = runs_table.delete().where(runs_table.c.name == name)
        return self._write(lambda conn: conn.execute(statement).rowcount) > 0

    def new_name(self, prefix: str) -> str:
        """The first of ``prefix``, ``prefix-2``, ``prefix-3``, ... not in the ledger.

        The name is not reserved: a concurrent process may pick it too, so claim it with ``insert``
        and ask again if that raises.
        """
        check_name(prefix)
        column = runs_table.c.name
        taken = {row[0] for row in self._select(sa.select(column).where(sa.func.substr(column, 1, len(prefix))
                                                                        == prefix))}
        if prefix not in taken:
            return prefix
        number = 2
        while f"{prefix}-{number}" in taken:
            number += 1
        return f"{prefix}-{number}"

    def folder_of(self, record: RunRecord) -> Path | None:
        """Where the run's folder is on this machine: in this workspace, else where the row says; None when
        neither exists here (another machine wrote it to a folder this one does not see)."""
        for candidate in (self.workspace / record.path if record.path else None,
                          Path(record.folder) if record.folder else None):
            if candidate is not None and candidate.exists():
                return candidate
        return None

    def integrity_check(self) -> str:
        """'ok' for a healthy ledger: SQLite's own consistency check; on a server, every row readable."""
        if self.embedded:
            return str(self._select(sa.text("PRAGMA integrity_check"))[0][0])
        self.runs()  # PostgreSQL checks its own pages and constraints; this checks each row parses
        return "ok"

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def locate_run(workspace: str | Path, name: str) -> Path | None:
    """The folder of the run ``name`` as the workspace's ledger records it: None when the ledger has no such
    run; a HonedError when it has, but the folder is not visible from this machine."""
    if not name or any(char in name for char in "/\\") or not has_ledger(workspace):
        return None
    with Ledger(workspace) as ledger:
        record = ledger.get(name)
        if record is None or not (record.path or record.folder):
            return None
        folder, where = ledger.folder_of(record), ledger.where
    if folder is None:
        shown = record.folder or str(Path(workspace) / record.path)
        raise HonedError(f"run {name!r} is in the ledger {where}, but its folder {shown} is not visible from this "
                         "machine: mount the shared run folder at that path, or pass --workspace where it is mounted")
    return folder
