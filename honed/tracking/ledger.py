"""The workspace ledger: one row per run in ``<workspace>/ledger.sqlite``, embedded SQLite, no server.

Protocol, so the ledger never points at an incomplete file: a run writes its files first, each through
``honed.tracking.atomic``, and only then upserts its row. A row with status ``running`` promises nothing
about files beyond those already written; readers trust files only for ``done`` runs. Removing a run goes
the other way: delete the row first, then the files.

Concurrency: many processes may read and write one ledger. The database runs in WAL mode (readers never
block the writer), every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front,
so two writers never deadlock), waits for a busy lock up to ``timeout_s`` and retries a few times after
that; a lock that outlasts them all becomes a ``HonedError``, never a raw ``database is locked``.
Keep the workspace on a local disk: SQLite's locking is unreliable on network filesystems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
import json
import math
from pathlib import Path
import random
import sqlite3
import time
from types import TracebackType
from typing import Any, TypeVar

from honed.errors import HonedError
from honed.tasks import get_task
from honed.tracking.atomic import fault_point

LEDGER_FILENAME = "ledger.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("running", "done", "failed", "interrupted")
RETRIES = 4  # extra attempts after busy_timeout expired, with growing pauses

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        name TEXT PRIMARY KEY,
        parent TEXT,
        change TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        task TEXT NOT NULL,
        model TEXT NOT NULL,
        data_fingerprint TEXT NOT NULL,
        metric TEXT NOT NULL,
        score REAL,
        greater_is_better INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        duration_s REAL NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        path TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent)",
)  # statements run one by one: executescript would commit the surrounding transaction

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
_INSERT = f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})"
_UPSERT = _INSERT + " ON CONFLICT (name) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("name", "created")
)  # 'created' keeps the first upsert's time


def _to_row(record: RunRecord) -> dict[str, Any]:
    """The SQL parameters for a record: metrics as JSON, the direction as 0/1."""
    row = asdict(record)
    row["metrics"] = json.dumps(record.metrics, sort_keys=True)
    row["greater_is_better"] = int(record.greater_is_better)
    return row


def _touched(record: RunRecord) -> RunRecord:
    """A validated copy of ``record`` with ``updated`` set to now."""
    return replace(record, updated=utc_now())


def _from_row(row: sqlite3.Row) -> RunRecord:
    """A record from a ``SELECT *`` row."""
    values = {name: row[name] for name in _COLUMNS}
    values["metrics"] = json.loads(values["metrics"])
    values["greater_is_better"] = bool(values["greater_is_better"])
    return RunRecord(**values)


def leaderboard_key(record: RunRecord) -> tuple[bool, float, str]:
    """Sort key putting the best score first (for either direction), unscored runs last, ties oldest first."""
    if record.score is None:
        return (True, 0.0, record.created)
    return (False, -record.score if record.greater_is_better else record.score, record.created)


def _is_busy(error: sqlite3.DatabaseError) -> bool:
    """True for SQLite's lock contention errors, the only ones worth retrying."""
    message = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in message or "busy" in message)


def _is_damaged(error: sqlite3.DatabaseError) -> bool:
    """True when the ledger file is not a database or is corrupt: the user's to fix, not a bug."""
    message = str(error).lower()
    return "not a database" in message or "malformed" in message


class Ledger:
    """The runs of one workspace, stored in ``<workspace>/ledger.sqlite``; use as a context manager.

    Each Ledger opens its own connection; share the workspace, not the object, across processes.
    """

    def __init__(self, workspace: str | Path, *, timeout_s: float = 30.0) -> None:
        self.workspace = Path(workspace)
        self.path = self.workspace / LEDGER_FILENAME
        self.timeout_s = timeout_s
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect()
        try:
            self._retry(self._init_schema)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """Open the database in autocommit mode (transactions are explicit) with WAL and a busy timeout."""
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as error:
            raise HonedError(f"cannot open the ledger {self.path}: {error}; check the workspace path") from error
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        return conn

    def _init_schema(self) -> None:
        """Switch to WAL, create the tables if new, and check the schema version."""
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable against crashes, fast
        self._transaction(self._create_or_check)

    def _create_or_check(self, conn: sqlite3.Connection) -> None:
        """Create the schema, or refuse a ledger written by a newer honed."""
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) > SCHEMA_VERSION:
            raise HonedError(
                f"the ledger {self.path} has schema version {row['value']}, newer than this honed "
                f"understands ({SCHEMA_VERSION}): upgrade honed"
            )

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one BEGIN IMMEDIATE transaction: committed whole or rolled back whole."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            fault_point("ledger-commit")  # reliability tests kill here (HONED_FAULT); a no-op otherwise
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying lock contention that outlasted busy_timeout; never leak 'locked'."""
        for attempt in range(RETRIES + 1):
            try:
                return action()
            except sqlite3.DatabaseError as error:
                if _is_damaged(error):
                    raise HonedError(
                        f"the ledger {self.path} is damaged ({error}): move it aside to start a new one"
                    ) from error
                if not _is_busy(error):
                    raise
                if attempt == RETRIES:
                    raise HonedError(
                        f"the ledger {self.path} stayed locked by another honed process; "
                        "wait for it to finish and run the command again"
                    ) from error
                time.sleep(0.05 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A retried write transaction."""
        return self._retry(lambda: self._transaction(body))

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A retried read."""
        return self._retry(lambda: self._conn.execute(sql, tuple(params)).fetchall())

    def upsert(self, record: RunRecord) -> RunRecord:
        """Insert or update a run by name and return it as stored: ``created`` kept, ``updated`` now.

        Call only after the run's files are written (atomically): the row must never point at a partial file.
        """
        row = _to_row(_touched(record))
        self._write(lambda conn: conn.execute(_UPSERT, row))
        return self.get(record.name) or record

    def insert(self, record: RunRecord) -> RunRecord:
        """Add a new run, raising HonedError if the name is taken; use it to claim a name from ``new_name``."""

        def body(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM runs WHERE name = ?", (record.name,)).fetchone():
                raise HonedError(f"a run named {record.name!r} already exists: pick another name")
            conn.execute(_INSERT, _to_row(_touched(record)))

        self._write(body)
        return self.get(record.name) or record

    def get(self, name: str) -> RunRecord | None:
        """The run called ``name``, or None."""
        rows = self._select("SELECT * FROM runs WHERE name = ?", (name,))
        return _from_row(rows[0]) if rows else None

    def runs(self, order_by_score: bool = False) -> list[RunRecord]:
        """All runs, oldest first; or, with ``order_by_score``, as a leaderboard: best first, unscored last."""
        records = [_from_row(row) for row in self._select("SELECT * FROM runs ORDER BY created, rowid")]
        return sorted(records, key=leaderboard_key) if order_by_score else records

    def children(self, name: str) -> list[RunRecord]:
        """The runs whose parent is ``name``, oldest first."""
        rows = self._select("SELECT * FROM runs WHERE parent = ? ORDER BY created, rowid", (name,))
        return [_from_row(row) for row in rows]

    def delete(self, name: str) -> bool:
        """Remove the run's row (not its children's rows); True if it existed. Delete its files after this."""
        return self._write(lambda conn: conn.execute("DELETE FROM runs WHERE name = ?", (name,)).rowcount) > 0

    def new_name(self, prefix: str) -> str:
        """The first of ``prefix``, ``prefix-2``, ``prefix-3``, ... not in the ledger.

        The name is not reserved: a concurrent process may pick it too, so claim it with ``insert``
        and ask again if that raises.
        """
        check_name(prefix)
        rows = self._select("SELECT name FROM runs WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
        taken = {row["name"] for row in rows}
        if prefix not in taken:
            return prefix
        number = 2
        while f"{prefix}-{number}" in taken:
            number += 1
        return f"{prefix}-{number}"

    def integrity_check(self) -> str:
        """SQLite's own consistency check: 'ok' for a healthy ledger."""
        return str(self._select("PRAGMA integrity_check")[0][0])

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
