"""What an operator's read-only command learns of a store in PostgreSQL before it opens
it: whether the store's schema exists, and how much room it takes.

Nothing here creates or changes anything (its session is read-only). Everything blocks:
call it from a worker thread, never on the trio thread.
"""

from __future__ import annotations

import psycopg

from .postgres_conn import Connector, close_quietly, failure
from .postgres_schema import schema_name

__all__ = ["store_size"]

_SIZE = (
    b"SELECT n.oid IS NOT NULL, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint "
    b"FROM (SELECT %s::name AS name) w LEFT JOIN pg_namespace n ON n.nspname = w.name "
    b"LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm') "
    b"GROUP BY n.oid")


def store_size(dsn: str, store_id: str, timeout: float = 5.0) -> int | None:
    """Bytes the tables of store ``store_id`` take in database ``dsn`` (their indexes and
    TOAST included); None when the database holds no such store (its schema is missing).

    Raises :class:`~exesdb.errors.StorageUnavailable` when the database cannot be reached
    within ``timeout`` seconds, :class:`exesdb.StorageError` for another failure."""
    connector = Connector(dsn=dsn, application_name=f"exesdb {store_id}",
                          connect_timeout=timeout, statement_timeout=timeout, durable=True)
    conn = connector.connect("inspect", reader=True)
    try:
        row = conn.execute(_SIZE, (schema_name(store_id),)).fetchone()
    except psycopg.Error as exc:
        raise failure(exc, "reading the store's size", conn) from exc
    finally:
        close_quietly(conn)
    assert row is not None
    exists, size = row
    return int(size) if exists else None
