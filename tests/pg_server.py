"""A throw-away PostgreSQL server for tests: :class:`PostgresServer`, the package's own
(:mod:`exesdb.pgserver`, which ``python -m exesdb dev-cluster`` uses too), re-exported
here for the tests.

A missing PostgreSQL raises :class:`PostgresNotInstalled`, whose message says to
``apt-get install postgresql``: the PostgreSQL tests fail, they are never skipped. The
session-wide instance of the tests is the ``pg_server`` fixture of
``tests/exesdb/conftest.py``.
"""

from __future__ import annotations

from exesdb.pgserver import INSTALL_HINT, PostgresNotInstalled, PostgresServer, find_bindir

__all__ = ["INSTALL_HINT", "PostgresNotInstalled", "PostgresServer", "find_bindir"]
