"""The Python peer the storage benchmarks compare with: the ``eventsourcing`` library's
SQLite recorder (``eventsourcing.sqlite.SQLiteApplicationRecorder``), what a Python
program would otherwise use as an embedded event store.

It is used as its users use it: ``insert_events`` with :class:`StoredEvent` objects (one
transaction per call) and ``select_events`` of one aggregate (one query). Durability is
made the same as exesdb's: the library already puts its file in WAL mode and SQLite's
default ``synchronous`` is FULL on this build, but the setting is per connection, so every
connection of its pool is given ``PRAGMA synchronous=FULL`` explicitly when it is made,
and :meth:`Peer.durability` reads both settings back for the benchmark to check.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)

__all__ = ["Peer"]


class _DurablePool(SQLiteConnectionPool):
    """The library's pool, with ``synchronous=FULL`` set on every connection it makes."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection


class Peer:
    """One ``eventsourcing`` SQLite store in ``path``: appends and reads of aggregates."""

    def __init__(self, path: Path) -> None:
        self.datastore = SQLiteDatastore(str(path))
        self.datastore.pool.close()  # made no connection yet; replaced before first use
        self.datastore.pool = _DurablePool(db_name=str(path))
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()

    def durability(self) -> tuple[str, int]:
        """``(journal_mode, synchronous)`` as a connection of the pool reports them."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0])
            cursor.execute("PRAGMA synchronous")
            synchronous = int(cursor.fetchone()[0])
        return mode, synchronous

    def append(self, aggregate: uuid.UUID, version: int, topic: str,
               states: Sequence[bytes]) -> None:
        """Append ``states`` as events ``version``, ``version + 1``, ... of ``aggregate``
        in one transaction (one ``insert_events`` call)."""
        self.recorder.insert_events([
            StoredEvent(originator_id=aggregate, originator_version=version + i, topic=topic,
                        state=state)
            for i, state in enumerate(states)
        ])

    def read(self, aggregate: uuid.UUID) -> Sequence[StoredEvent]:
        """Every event of ``aggregate``, in order (one ``select_events`` call)."""
        return self.recorder.select_events(aggregate)

    def close(self) -> None:
        self.datastore.close()
