"""Fixtures for the exesdb tests: a fresh store per test, on each storage backend.

* ``backend``: a durable store, once per backend (``[sqlite]``: a file in a temporary
  directory; ``[postgres]``: a fresh schema on the session's PostgreSQL server), closed
  after the test.
* ``open_backend``: the same parametrization as an opener, for tests that close and
  reopen their store: ``await open_backend()`` opens this test's store (again).
* ``pg_server``: one PostgreSQL server for the whole session
  (:class:`tests.pg_server.PostgresServer`), started on first use, stopped and removed
  at the end; ``pg_store_id`` a store id no other test uses (so its schema is fresh).

The summary at the end of the run shows the cluster checker's figures of each scenario
that ran (:mod:`tests.exesdb.cluster_checker`), whatever the capture settings.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Awaitable, Callable

import pytest

from exesdb.storage import Backend, SQLiteBackend
from exesdb.storage.postgres import PostgresBackend

from ..pg_server import PostgresServer

BACKENDS = ["sqlite", "postgres"]
_store_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server; a missing PostgreSQL fails the tests that use it."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_store_id() -> str:
    """A store id of its own for this test (a fresh PostgreSQL schema)."""
    return f"test{next(_store_numbers)}"


@pytest.fixture
async def pg_backend(pg_server, pg_store_id):
    """A PostgreSQL backend of a store of its own, opened for the test and closed after."""
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=BACKENDS)
def open_backend(request, tmp_path) -> Callable[[], Awaitable[Backend]]:
    """Opens this test's durable store on the parametrized backend (again on each call)."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        store_id = request.getfixturevalue("pg_store_id")
        return lambda: PostgresBackend.open(server.dsn, store_id)
    return lambda: SQLiteBackend.open(tmp_path / "store")


@pytest.fixture
async def backend(open_backend):
    """A durable store of this test's own, closed after the test."""
    store = await open_backend()
    try:
        yield store
    finally:
        await store.close()


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the cluster checker's figures, one line per scenario run."""
    checker = sys.modules.get("tests.exesdb.cluster_checker")
    if checker is not None and checker.REPORTS:
        terminalreporter.write_sep("=", "cluster checker")
        for line in checker.REPORTS:
            terminalreporter.write_line(line)
