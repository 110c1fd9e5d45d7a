"""Where the ledger lives and how its schema is kept current: the database URL, the engine, the migrations.

One setting names the ledger of a workspace: the environment variable ``HONED_LEDGER`` (the CLI's
``--ledger URL`` sets it for the command). Unset, the ledger is embedded SQLite, ``<workspace>/ledger.sqlite``;
set, it is any SQLAlchemy URL, e.g. ``postgresql://user@host:5432/db`` for a team (mapped to psycopg 3),
and no ``ledger.sqlite`` is written.

The schema is versioned with Alembic; the scripts ship in ``honed/tracking/migrations`` and run at open,
under a lock (SQLite's write lock, PostgreSQL's advisory lock), so two processes opening a new database at
once never both create it. A ledger written before migrations existed (a ``meta`` table, schema version 1)
is stamped as the first revision, then upgraded like any other. Alembic's bookkeeping table is named
``honed_ledger_version`` so the ledger can share a database with Optuna, which keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import functools
import os
from pathlib import Path
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from honed.errors import HonedError

LEDGER_ENV = "HONED_LEDGER"
LEDGER_FILENAME = "ledger.sqlite"
VERSION_TABLE = "honed_ledger_version"
BASELINE = "0001_baseline"  # the schema written before migrations existed (meta.schema_version = 1)
HEAD = "0002_run_folder"  # the newest revision in migrations/versions; a test keeps the two in step
MIGRATIONS = Path(__file__).with_name("migrations")
WRITE_FLAG = "honed_write"  # set on a connection for the transactions that write
PG_LOCK_KEY = 4_711_021  # any constant: the advisory lock that serializes honed's migrations on PostgreSQL

_REVISION = sa.text(f"SELECT version_num FROM {VERSION_TABLE}")
metadata = sa.MetaData()
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("parent", sa.Text),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("data_fingerprint", sa.Text, nullable=False),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("greater_is_better", sa.Integer, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("updated", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("folder", sa.Text, nullable=False, server_default=""),  # absolute; revision 0002
)


def configured_url() -> str:
    """The ledger URL the environment sets ('' for the embedded SQLite default)."""
    return os.environ.get(LEDGER_ENV, "").strip()


def normalize_url(url: str) -> str:
    """An SQLAlchemy URL with the driver honed installs: ``postgresql://`` (and ``postgres://``) use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def ledger_url(workspace: str | Path, url: str | None = None) -> str:
    """The URL of the workspace's ledger: ``url``, else ``HONED_LEDGER``, else SQLite in the workspace."""
    chosen = (url or configured_url()).strip()
    if not chosen:
        return f"sqlite:///{Path(os.path.abspath(workspace)) / LEDGER_FILENAME}"
    try:
        sa.engine.make_url(normalize_url(chosen))
    except sa.exc.ArgumentError as error:
        raise HonedError(f"the ledger URL {chosen!r} is not a database URL ({error}): use e.g. "
                         "postgresql://user@host:5432/db or sqlite:////path/ledger.sqlite") from None
    return normalize_url(chosen)


def has_ledger(workspace: str | Path) -> bool:
    """Whether the workspace has a ledger to read: a database URL is set, or its ledger.sqlite exists."""
    return bool(configured_url()) or (Path(workspace) / LEDGER_FILENAME).is_file()


def shown(url: str) -> str:
    """The URL for messages, without its password."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


@functools.lru_cache(maxsize=16)
def create_engine(url: str, timeout_s: float) -> Engine:
    """An engine with no pool (each Ledger owns one connection); SQLite in WAL mode with explicit
    ``BEGIN IMMEDIATE`` transactions, so two writers never deadlock and readers never block the writer.

    One engine per URL in a process, as SQLAlchemy advises: its cache of compiled statements is what makes
    opening a Ledger cheap (a new engine per open compiled every statement again). Without a pool it holds no
    connection, so a forked child may reuse it."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": timeout_s})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # autocommit in the driver: the "begin" hook says BEGIN
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")  # in WAL: durable against crashes, fast

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.info.get(WRITE_FLAG):  # reads stay in SQLite's autocommit: they never take the lock
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {"connect_timeout": max(1, int(timeout_s))} if url.startswith("postgresql") else {}
    try:
        return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise HonedError(f"the ledger URL {shown(url)} needs a database driver that is not installed ({error}): "
                         "pip install 'honed[team]'") from None


@contextmanager
def write_transaction(conn: Connection) -> Iterator[Connection]:
    """One write transaction on ``conn``: BEGIN IMMEDIATE on SQLite, a plain BEGIN elsewhere."""
    conn.info[WRITE_FLAG] = True
    try:
        with conn.begin():
            yield conn
    finally:
        conn.info.pop(WRITE_FLAG, None)


def is_busy(error: BaseException) -> bool:
    """Lock contention or a serialization conflict: worth retrying."""
    orig = getattr(error, "orig", error)
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return "locked" in message or "busy" in message
    return getattr(orig, "sqlstate", None) in ("40001", "40P01", "55P03")  # serialization, deadlock, lock


def is_damaged(error: BaseException) -> bool:
    """The SQLite file is not a database or is corrupt: the user's to fix, not a bug."""
    message = str(getattr(error, "orig", error)).lower()
    return "not a database" in message or "malformed" in message


def is_unreachable(error: BaseException) -> bool:
    """The database server cannot be reached or refused the login."""
    orig = getattr(error, "orig", None)
    return isinstance(error, sa.exc.OperationalError) and orig is not None and not isinstance(orig, sqlite3.Error)


def current_revision(conn: Connection, *, in_transaction: bool = False) -> str | None:
    """The ledger's Alembic revision, None for a database Alembic has not stamped. Outside a transaction one
    query (the common case of every open); inside one, the catalog is asked first, since on PostgreSQL a failed
    query would end the transaction."""
    if in_transaction:
        return conn.execute(_REVISION).scalar() if sa.inspect(conn).has_table(VERSION_TABLE) else None
    try:
        return conn.execute(_REVISION).scalar()
    except sa.exc.DBAPIError as error:
        orig = error.orig
        missing = "no such table" in str(orig).lower() or getattr(orig, "sqlstate", None) == "42P01"
        if not missing:
            raise
        conn.rollback()  # PostgreSQL: the failed statement ended the transaction
        return None


def migrate(conn: Connection, workspace: Path) -> None:
    """Bring the ledger to HEAD on the Ledger's own connection: nothing to do (one read) when it is current;
    else, under the lock, stamp a pre-migration ledger as the baseline and run the scripts in one transaction."""
    current = current_revision(conn)
    conn.rollback()  # end the read's implicit transaction before taking the lock
    if current == HEAD:
        return
    with write_transaction(conn):  # SQLite: the write lock, taken up front
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        revision = current_revision(conn, in_transaction=True)  # again, under the lock: another process may have migrated
        if revision == HEAD:
            return
        if revision is None and sa.inspect(conn).has_table("runs"):
            revision = _stamp_pre_migration(conn)
        _upgrade(conn, workspace, revision)


def _stamp_pre_migration(conn: Connection) -> str:
    """A ledger of the schema before migrations: check its version, then record it as the baseline."""
    row = conn.execute(sa.text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    if row is not None and int(row[0]) > 1:
        raise HonedError(f"the ledger has schema version {row[0]}, newer than this honed understands: upgrade honed")
    from alembic.migration import MigrationContext

    MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(_scripts(), BASELINE)
    return BASELINE


def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def _upgrade(conn: Connection, workspace: Path, revision: str | None) -> None:
    """Run the scripts from ``revision`` to HEAD on ``conn``, inside its open transaction."""
    from alembic import command
    from alembic.config import Config

    known = {script.revision for script in _scripts().walk_revisions()}
    if revision is not None and revision not in known:
        raise HonedError(f"the ledger is at schema revision {revision}, which this honed does not know "
                         "(a newer honed wrote it): upgrade honed")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(connection=conn, version_table=VERSION_TABLE, workspace=str(workspace))
    command.upgrade(config, "head")
