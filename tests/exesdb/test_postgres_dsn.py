"""The PostgreSQL backend with a DSN that follows the primary: several hosts and
``target_session_attrs=read-write``, libpq's way of reaching whichever server accepts
writes (the README's advice for a PostgreSQL failover).

libpq tells a primary from a standby by the session's ``default_transaction_read_only``
(and ``in_hot_standby``), so the backend's read connections, read-only by design, must
become so only after they connected: set at connection time, every server would look
like a standby to them, and no read would ever run."""

from __future__ import annotations

import pytest

from exesdb import ANY, NewEvent
from exesdb.storage.postgres import PostgresBackend
from exesdb.storage.postgres_conn import Connector

from .cluster_checker import free_ports


@pytest.fixture
def dsn(pg_server) -> str:
    """The session's server second of two hosts (the first refuses connections), writes
    required."""
    (closed,) = free_ports(1)
    return (f"host=127.0.0.1,127.0.0.1 port={closed},{pg_server.port} user=postgres "
            "dbname=postgres target_session_attrs=read-write")


async def test_a_store_on_a_dsn_requiring_a_read_write_server_appends_and_reads(
        dsn, pg_store_id):
    backend = await PostgresBackend.open(dsn, pg_store_id)
    try:
        await backend.append("order-1", ANY, [NewEvent("Placed", {"n": 1})])
        assert [e.data for e in await backend.read_stream("order-1", 0, 10)] == [{"n": 1}]
        assert [e.stream_id for e in await backend.read_all(0, 10)] == ["order-1"]
    finally:
        await backend.close()


def test_its_read_connections_are_still_read_only(dsn):
    connector = Connector(dsn, "exesdb test", connect_timeout=5, statement_timeout=5,
                          durable=True)
    conn = connector.connect("reader", reader=True)
    try:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    finally:
        conn.close()
