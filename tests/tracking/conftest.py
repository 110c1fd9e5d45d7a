"""A PostgreSQL server for the ledger's tests, started once per session; each test gets its own database.
Tests that ask for ``postgres_url`` skip, saying why, where no server can start (tests/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer, unavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database (postgresql://, as a user would write it)."""
    return postgres_server.new_database()
