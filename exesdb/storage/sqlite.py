"""The SQLite backend, the embedded default: one WAL-mode database file per store.

:class:`SQLiteBackend` gives every guarantee of :class:`exesdb.storage.Backend`. Its
blocking work runs in worker threads, never on the trio thread: writes on one write
connection in a dedicated thread (:mod:`exesdb.storage._thread`), serialised; reads on a
pool of read connections through ``trio.to_thread.run_sync``, concurrently with writes
(WAL readers see the last committed state and do not block the writer).

Durability: opened ``durable=True`` (the default), SQLite runs with
``synchronous=FULL``, so each write transaction is fsynced before ``write`` returns.
``durable=False`` uses ``synchronous=NORMAL``: a commit reaches the operating system but
is fsynced only at the next WAL checkpoint, so an acknowledged write survives a crash of
the process but may be lost (never torn) if the machine loses power. This is the only
setting that trades safety for speed.

Counters (:attr:`Backend.counters`): each write observes how long its last ``COMMIT`` took
(the WAL written and, when durable, fsynced) in ``fsync_seconds``; each stream and
``$all`` read counts itself and the events it returned.

Faults: a store whose files cannot be written (a read-only mount, an immutable file) is
refused at open with :class:`exesdb.StorageError` naming the file (SQLite would open it
read-only and fail every write); a full disk fails the write with
:class:`~exesdb.errors.StorageFull` (nothing written; reads go on; writes resume once
there is room); damage met by a read (a checksum mismatch, a malformed page) fails that
read with :class:`~exesdb.errors.CorruptData` and is logged at ERROR (logger
``exesdb.storage``) with where it is: the ``$all`` position, the stream and the version.
A store opened for writing holds :data:`RUNNING_FILE` until it is closed cleanly, so the
next open can tell (:attr:`SQLiteBackend.unclean_stop`) that a run was killed.

The writer keeps each stream's state (key, last number, first visible number, deleted)
in a bounded in-memory cache; it is the only writer of the file, so the cache is exact,
and it is dropped whenever a transaction fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from ..constants import DEFAULT_COUNT, END, Direction, End
from ..errors import (
    CorruptData,
    StorageError,
    StorageFull,
    StreamDeleted,
)
from ..events import EventRecord, Filter, NewEvent, Snapshot, lazy_record
from ..validation import (
    check_count,
    check_direction,
    check_filter,
    check_name,
    check_snapshot_key,
    check_snapshot_keys,
    check_start,
    check_stream_id,
)
from . import records
from ._thread import WorkerThread
from .backend import Backend
from .batch import StreamBatch, StreamState
from .definitions import SubscriptionDefinition
from .ops import (
    Append,
    DeleteCheckpoint,
    DeleteSnapshot,
    DeleteStream,
    DeleteSubscription,
    RecordSnapshot,
    SaveCheckpoint,
    SaveSubscription,
    WriteOp,
)
from .rules import visible_version
from .sqlite_schema import DB_FILE, SCHEMA_VERSION, connect, open_file, recognise

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

LIVE: Final = 0
HARD_DELETED: Final = 1

_STREAM_CACHE_SIZE: Final = 100_000
_IN_CHUNK: Final = 500  # ids per "IN (...)" query, below SQLite's variable limit
_IDLE_READERS: Final = 8
_FILTER_CHUNK: Final = 1000
_NO_LIMIT: Final = 1 << 62

_SELECT_EVENT: Final = f"SELECT {records.EVENT_ROW_COLUMNS}"
_STREAM_FORWARD: Final = (
    f"{_SELECT_EVENT} FROM events WHERE skey = ? AND num >= ? ORDER BY num LIMIT ?"
)
_STREAM_BACKWARD: Final = (
    f"{_SELECT_EVENT} FROM events WHERE skey = ? AND num <= ? AND num >= ? "
    "ORDER BY num DESC LIMIT ?"
)
_ALL_FORWARD: Final = f"{_SELECT_EVENT}, skey FROM events WHERE pos >= ? ORDER BY pos LIMIT ?"
_ALL_BACKWARD: Final = (
    f"{_SELECT_EVENT}, skey FROM events WHERE pos <= ? ORDER BY pos DESC LIMIT ?"
)
_KEYS: Final = struct.Struct("<qqq")  # as records.event_crc packs the row keys
_BLOB: Final = bytearray
"""What a bytes parameter is passed as: sqlite3 binds a bytearray directly as the same BLOB,
while each bytes goes through its adapter lookup first, which raises and drops an
AttributeError (CPython 3.11: about a microsecond per value, three values per event)."""
_JOIN: Final = bytearray().join
"""Joins an event blob's parts straight into a bytearray (see :data:`_BLOB`): no copy."""
RUNNING_FILE: Final = "exesdb.running"
"""The marker a store's directory holds while a backend has the store open for writing:
written (durably) when it opens, removed when it closes cleanly. Found at open, it says the
previous run did not stop cleanly (:attr:`SQLiteBackend.unclean_stop`)."""
_pack_prefix: Final = records.pack_stream_prefix
_pack_event: Final = records.pack_event_header
_pack_keys: Final = _KEYS.pack
_crc32: Final = zlib.crc32
_TOP_UNKNOWN: Final = b"\xff" * 17
"""An event id above every 16-byte id: every id is looked up (the store's highest id is not
known)."""
_ROW_VALUES: Final = 6  # an event row's values: pos, skey, num, eid, crc, rec
_INSERT_SIZES: Final = (64, 16, 4, 1)
"""Rows per ``INSERT`` statement: a transaction's rows go in statements of these sizes,
largest first. One statement of many rows costs about two thirds of ``executemany`` of
them (SQLite 3.40, 100 rows: 146 against 229 us), and a few sizes keep every statement
in the connection's statement cache."""
_INSERT_EVENTS: Final = {
    size: "INSERT INTO events(pos, skey, num, eid, crc, rec) VALUES "
          + ", ".join(["(?, ?, ?, ?, ?, ?)"] * size)
    for size in _INSERT_SIZES
}


def _insert_events(conn: sqlite3.Connection, values: list[Any]) -> None:
    """Insert the event rows whose values ``values`` holds one after the other
    (:data:`_ROW_VALUES` each), in statements of :data:`_INSERT_SIZES` rows."""
    execute = conn.execute
    rows = len(values) // _ROW_VALUES
    if rows in _INSERT_EVENTS:
        execute(_INSERT_EVENTS[rows], values)
        return
    start = 0
    for size in _INSERT_SIZES:
        width = size * _ROW_VALUES
        statement = _INSERT_EVENTS[size]
        while rows >= size:
            execute(statement, values[start:start + width])
            start += width
            rows -= size


log: Final = logging.getLogger("exesdb.storage")

_SQLITE_CORRUPT: Final = 11
_SQLITE_FULL: Final = 13
_SQLITE_NOTADB: Final = 26


def _storage_error(exc: sqlite3.Error, doing: str) -> StorageError:
    """The :class:`exesdb.StorageError` of a failed SQLite call: :class:`StorageFull` when
    the disk is full, :class:`CorruptData` when SQLite found the file malformed."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_FULL:
        full: StorageError = StorageFull(f"{doing} failed: {exc}")
        full.__cause__ = exc
        return full
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        corrupt = CorruptData("file", f"{doing} failed: {exc}")
        corrupt.__cause__ = exc
        return corrupt
    error = StorageError(f"{doing} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class _Batch(StreamBatch):
    """One write transaction in the making: the rules' decisions of
    :class:`~exesdb.storage.batch.StreamBatch`, with the event rows staged as SQLite binds
    them (:attr:`values`). Updates the writer's stream cache in place (the engine drops
    the whole cache if the transaction fails). Touches the database only to load what the
    decisions need and to write snapshots, checkpoints and subscription definitions."""

    def __init__(self, conn: sqlite3.Connection, ops: Sequence[WriteOp],
                 streams: dict[str, StreamState], position: int, next_key: int,
                 top_id: bytes) -> None:
        self.conn = conn
        self.values: list[Any] = []  # the event rows' values, one row after the other
        wanted = {op.stream_id for op in ops if type(op) is Append or type(op) is DeleteStream}
        missing = [stream_id for stream_id in wanted if stream_id not in streams]
        if missing:
            loaded = self._load_streams(missing)
            for stream_id in missing:
                streams[stream_id] = loaded.get(stream_id) or StreamState(None, -1, 0, False)
        ids = [event._encoded[0] for op in ops if type(op) is Append for event in op.events]
        # An id above every id the store holds (``top_id``, see _Engine) is not stored:
        # time-ordered ids (uuid7, the default) nearly always are, and need no lookup.
        self.top_id = max(ids) if ids else b""
        super().__init__(streams, self._find_ids(ids) if ids and min(ids) <= top_id else {},
                         position=position, next_key=next_key, now=time.time_ns() // 1000,
                         track_ids=len(set(ids)) < len(ids))

    def _stage(self, stream_id: str, key: int, number: int, position: int,
               events: Sequence[NewEvent]) -> None:
        # records.stream_prefix, encode_event and event_crc, inlined (a row per event),
        # the row's values added to the flat list the INSERTs bind
        raw_id = stream_id.encode()
        prefix = _pack_prefix(self.now, len(raw_id)) + raw_id
        add_row = self.values.extend
        for event in events:
            event_id, event_type, content_type, data_kind, data, metadata_kind, metadata = (
                event._encoded
            )
            blob = _JOIN((prefix, _pack_event(event_id, data_kind, metadata_kind,
                                              len(event_type), len(content_type), len(data),
                                              len(metadata)),
                          event_type, content_type, data, metadata))
            add_row((position, key, number, _BLOB(event_id),
                     _crc32(blob, _crc32(_pack_keys(position, key, number))), blob))
            number += 1
            position += 1

    def _other(self, op: WriteOp) -> None:
        conn = self.conn
        if type(op) is RecordSnapshot:
            crc = records.snapshot_crc(op.source_uuid, op.stream_uuid, op.version, self.now,
                                       op.blob)
            conn.execute(
                "INSERT OR REPLACE INTO snapshots(source_uuid, stream_uuid, version, created, "
                "crc, rec) VALUES (?, ?, ?, ?, ?, ?)",
                (op.source_uuid, op.stream_uuid, op.version, self.now, crc, op.blob),
            )
        elif type(op) is DeleteSnapshot:
            conn.execute(
                "DELETE FROM snapshots WHERE source_uuid = ? AND stream_uuid = ? AND version = ?",
                (op.source_uuid, op.stream_uuid, op.version),
            )
        elif type(op) is SaveCheckpoint:
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints(name, position, crc) VALUES (?, ?, ?)",
                (op.name, op.position, records.checkpoint_crc(op.name, op.position)),
            )
        elif type(op) is DeleteCheckpoint:
            conn.execute("DELETE FROM checkpoints WHERE name = ?", (op.name,))
        elif type(op) is SaveSubscription:
            conn.execute(
                "INSERT OR REPLACE INTO subscriptions(name, type, selector, start_from, "
                "with_subscriber, crc) VALUES (?, ?, ?, ?, ?, ?)",
                (op.name, op.type, op.selector_json, op.start_from, int(op.with_subscriber),
                 records.subscription_crc(op.name, op.type, op.selector_json, op.start_from,
                                          int(op.with_subscriber))),
            )
        elif type(op) is DeleteSubscription:
            conn.execute("DELETE FROM subscriptions WHERE name = ?", (op.name,))
            conn.execute("DELETE FROM checkpoints WHERE name = ?", (op.name,))
        else:
            raise TypeError(f"not a write operation: {op!r}")

    def _load_streams(self, stream_ids: list[str]) -> dict[str, StreamState]:
        loaded: dict[str, StreamState] = {}
        for start in range(0, len(stream_ids), _IN_CHUNK):
            chunk = stream_ids[start:start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT s.skey, s.stream_id, s.first, s.state, s.crc, "
                "(SELECT max(num) FROM events e WHERE e.skey = s.skey) "
                f"FROM streams s WHERE s.stream_id IN ({marks})"
            )
            for key, stream_id, first, state, crc, last in self.conn.execute(query, chunk):
                records.verify_stream(key, stream_id, first, state, crc)
                loaded[stream_id] = StreamState(key, -1 if last is None else last, first,
                                            state == HARD_DELETED)
        return loaded

    def _find_ids(self, ids: list[bytes]) -> dict[bytes, list[tuple[int, int]]]:
        known: dict[bytes, list[tuple[int, int]]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = [_BLOB(event_id) for event_id in ids[start:start + _IN_CHUNK]]
            marks = ",".join("?" * len(chunk))
            for event_id, key, number in self.conn.execute(
                f"SELECT eid, skey, num FROM events WHERE eid IN ({marks})", chunk
            ):
                known.setdefault(event_id, []).append((key, number))
        return known


class _Engine:
    """The synchronous core: called from worker threads only, never from the trio thread."""

    def __init__(self, path: Path, durable: bool, writer: sqlite3.Connection | None,
                 schema_version: int = SCHEMA_VERSION) -> None:
        self.path = path
        self.durable = durable
        self.schema_version = schema_version
        self.transactions = 0
        self.commit_seconds = 0.0  # how long the last COMMIT took (WAL write and fsync)
        self._writer: sqlite3.Connection | None = writer
        self._write_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._streams: dict[str, StreamState] = {}
        self._next_position = 0
        self._next_key = 0
        self._top_id = b""  # no stored event id is above it (see _load_counters)
        self.read_only = writer is None
        self.unclean_stop: str | None = None
        if writer is not None:
            self._load_counters(writer)

    @classmethod
    def open_read_only(cls, directory: Path) -> _Engine:
        """Open an existing store for reading only (beside a running server, or not)."""
        path = directory / DB_FILE
        if not path.is_file():
            raise StorageError(f"{directory}: no exesdb store here ({DB_FILE} is missing)")
        try:
            conn = connect(path, True, reader=True)
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"opening {path}") from exc
        try:
            version = recognise(conn, path)
            engine = cls(path, True, None, version)
            engine._load_counters(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"{path}: not a readable exesdb store ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        engine._readers.append(conn)
        return engine

    @classmethod
    def open(cls, directory: Path, durable: bool) -> _Engine:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{directory}: cannot create the store directory ({exc})") from exc
        path = directory / DB_FILE
        _check_writable(directory, path)
        previous = _read_marker(directory / RUNNING_FILE)
        wal = path.with_name(path.name + "-wal")
        wal_bytes = wal.stat().st_size if previous is not None and wal.exists() else 0
        writer = open_file(path, durable)
        try:
            engine = cls(path, durable, writer)
            if previous is not None:
                engine.unclean_stop = _unclean_stop_note(previous, wal_bytes,
                                                         engine.last_position)
            _write_marker(directory / RUNNING_FILE)
            return engine
        except sqlite3.Error as exc:
            writer.close()
            raise _storage_error(exc, f"opening {path}") from exc
        except BaseException:
            writer.close()
            raise

    @property
    def last_position(self) -> int:
        """The position of the last event committed, -1 when none: kept by the write
        thread, read anywhere (reading an int attribute is atomic)."""
        return self._next_position - 1

    def _load_counters(self, conn: sqlite3.Connection) -> None:
        position = conn.execute("SELECT max(pos) FROM events").fetchone()[0]
        key = conn.execute("SELECT max(skey) FROM streams").fetchone()[0]
        self._next_position = 0 if position is None else position + 1
        self._next_key = 0 if key is None else key + 1
        # The highest event id stored (the event-id index's last entry): an append's ids
        # above it need no lookup. Raised by each commit to the highest id it was given
        # (written or not: too high only costs lookups). SQLite orders blobs by memcmp,
        # then length, as Python orders bytes.
        top = conn.execute("SELECT max(eid) FROM events").fetchone()[0]
        self._top_id = (b"" if top is None else top if type(top) is bytes
                        else _TOP_UNKNOWN)

    # -- writes --------------------------------------------------------------------------

    def _not_writable(self) -> StorageError:
        """The error for a write to a store open read-only, or closed."""
        return StorageError(f"{self.path}: the store is "
                            f"{'open read-only' if self.read_only else 'closed'}")

    def write(self, ops: Sequence[WriteOp]) -> list[Any]:
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise self._not_writable()
            try:
                return self._transaction(conn, ops)
            except sqlite3.Error as exc:
                self._recover(conn)
                if len(ops) == 1:
                    return [_storage_error(exc, "the write transaction")]
        # The shared transaction failed: run each operation alone, so one that cannot be
        # written does not fail the others.
        return [self.write([op])[0] for op in ops]

    def _recover(self, conn: sqlite3.Connection) -> None:
        self._streams.clear()
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._load_counters(conn)
        except sqlite3.Error:
            pass

    def _transaction(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[Any]:
        execute = conn.execute
        execute("BEGIN IMMEDIATE")
        try:
            batch = _Batch(conn, ops, self._streams, self._next_position, self._next_key,
                           self._top_id)
            results = [batch.apply(op) for op in ops]
            if batch.values:
                _insert_events(conn, batch.values)
            for stream_id, (stream, is_new) in batch.dirty.items():
                assert stream.key is not None
                state = HARD_DELETED if stream.hard else LIVE
                crc = records.stream_crc(stream.key, stream_id, stream.first, state)
                if is_new:
                    execute(
                        "INSERT INTO streams(skey, stream_id, first, state, crc) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (stream.key, stream_id, stream.first, state, crc),
                    )
                else:
                    execute(
                        "UPDATE streams SET first = ?, state = ?, crc = ? WHERE skey = ?",
                        (stream.first, state, crc, stream.key),
                    )
            committing = time.perf_counter()
            execute("COMMIT")
            self.commit_seconds = time.perf_counter() - committing
        except BaseException:
            self._streams.clear()  # it may hold this transaction's changes
            if conn.in_transaction:
                execute("ROLLBACK")
            raise
        self.transactions += 1
        self._next_position = batch.position
        self._next_key = batch.next_key
        if batch.top_id > self._top_id:
            self._top_id = batch.top_id
        streams = self._streams
        if len(streams) > _STREAM_CACHE_SIZE:
            for stream_id in list(streams)[: len(streams) - _STREAM_CACHE_SIZE // 2]:
                del streams[stream_id]
        return results

    # -- reads ---------------------------------------------------------------------------

    def _read(self, fn: Callable[[sqlite3.Connection], T], doing: str) -> T:
        conn = self._acquire_reader()
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            error = _storage_error(exc, doing)
            if isinstance(error, CorruptData):
                self._report_corruption(error)
            raise error from exc
        except CorruptData as exc:
            located = _locate(conn, exc)
            self._report_corruption(located)
            raise located from None
        finally:
            self._release_reader(conn)

    def _report_corruption(self, error: CorruptData) -> None:
        """Log damage met while reading, at ERROR, with where it is."""
        log.error("%s: %s (other records still read; python -m exesdb verify lists all "
                  "damage)", self.path, error)

    def _acquire_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._closed:
                raise StorageError(f"{self.path}: the store is closed")
            if self._readers:
                return self._readers.pop()
        try:
            return connect(self.path, self.durable, reader=True)
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"opening a reader on {self.path}") from exc

    def _release_reader(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            if not self._closed and len(self._readers) < _IDLE_READERS:
                if conn.in_transaction:
                    conn.rollback()
                self._readers.append(conn)
                return
        conn.close()

    @staticmethod
    def _stream_row(conn: sqlite3.Connection, stream_id: str) -> tuple[int, int] | None:
        row = conn.execute(
            "SELECT skey, first, state, crc FROM streams WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        if row is None:
            return None
        key, first, state, crc = row
        records.verify_stream(key, stream_id, first, state, crc)
        if state == HARD_DELETED:
            raise StreamDeleted(stream_id)
        return key, first

    def read_stream(
        self, stream_id: str, start: int | End, count: int, direction: Direction
    ) -> list[EventRecord]:
        def read(conn: sqlite3.Connection) -> list[EventRecord]:
            found = self._stream_row(conn, stream_id)
            if found is None:
                return []
            key, first = found
            if direction == "forward":
                if start is END:
                    return []
                begin = max(start, first)
                rows = conn.execute(_STREAM_FORWARD, (key, begin, count)).fetchall()
                return _verified_stream_rows(rows, key, begin, 1)
            top = _NO_LIMIT if start is END else start
            if top < first:
                return []
            rows = conn.execute(_STREAM_BACKWARD, (key, top, first, count)).fetchall()
            # The last number is not known in advance: the rows must run down from the first.
            return _verified_stream_rows(rows, key, rows[0][1] if rows else 0, -1)

        return self._read(read, f"reading stream {stream_id!r}")

    def read_all(
        self, start: int | End, count: int, direction: Direction, filter: Filter | None
    ) -> list[EventRecord]:
        def read(conn: sqlite3.Connection) -> list[EventRecord]:
            forward = direction == "forward"
            if start is END:
                if forward:
                    return []
                begin = _NO_LIMIT
            else:
                begin = start
            query = _ALL_FORWARD if forward else _ALL_BACKWARD
            if filter is None or (not filter.event_types and not filter.stream_prefixes):
                return _verified_all_rows(conn.execute(query, (begin, count)).fetchall())
            out: list[EventRecord] = []
            fill = records.fill_event
            peek = records.peek_event
            matches = filter.matches
            while len(out) < count:
                rows = conn.execute(query, (begin, _FILTER_CHUNK)).fetchall()
                if not rows:
                    break
                for row in rows:
                    records.verify_event(row, row[4])
                    if matches(*peek(row[3])):
                        out.append(lazy_record(fill, row))
                        if len(out) == count:
                            break
                begin = rows[-1][0] + 1 if forward else rows[-1][0] - 1
                if begin < 0:
                    break
            return out

        return self._read(read, "reading $all")

    def stream_version(self, stream_id: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            found = self._stream_row(conn, stream_id)
            if found is None:
                return -1
            key, first = found
            last = conn.execute("SELECT max(num) FROM events WHERE skey = ?", (key,)).fetchone()[0]
            return visible_version(-1 if last is None else last, first)

        return self._read(read, f"reading the version of stream {stream_id!r}")

    def list_streams(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            out = []
            for key, stream_id, first, state, crc, last in conn.execute(
                "SELECT s.skey, s.stream_id, s.first, s.state, s.crc, "
                "(SELECT max(num) FROM events e WHERE e.skey = s.skey) "
                "FROM streams s ORDER BY s.stream_id"
            ):
                records.verify_stream(key, stream_id, first, state, crc)
                if state == LIVE and last is not None and last >= first:
                    out.append(stream_id)
            return out

        return self._read(read, "listing streams")

    def head_position(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            position = conn.execute("SELECT max(pos) FROM events").fetchone()[0]
            return -1 if position is None else int(position)

        return self._read(read, "reading the head position")

    def read_snapshot(self, source_uuid: str, stream_uuid: str, version: int | None
                      ) -> Snapshot | None:
        def read(conn: sqlite3.Connection) -> Snapshot | None:
            select = ("SELECT source_uuid, stream_uuid, version, created, crc, rec FROM snapshots "
                      "WHERE source_uuid = ? AND stream_uuid = ?")
            if version is None:
                row = conn.execute(f"{select} ORDER BY version DESC LIMIT 1",
                                   (source_uuid, stream_uuid)).fetchone()
            else:
                row = conn.execute(f"{select} AND version = ?",
                                   (source_uuid, stream_uuid, version)).fetchone()
            return None if row is None else records.decode_snapshot(*row)

        return self._read(read, "reading a snapshot")

    def list_snapshots(self, source_uuid: str | None, stream_uuid: str | None) -> list[Snapshot]:
        def read(conn: sqlite3.Connection) -> list[Snapshot]:
            where = []
            args = []
            if source_uuid is not None:
                where.append("source_uuid = ?")
                args.append(source_uuid)
            if stream_uuid is not None:
                where.append("stream_uuid = ?")
                args.append(stream_uuid)
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = conn.execute(
                "SELECT source_uuid, stream_uuid, version, created, crc, rec FROM snapshots"
                f"{clause} ORDER BY source_uuid, stream_uuid, version", args,
            ).fetchall()
            return [records.decode_snapshot(*row) for row in rows]

        return self._read(read, "listing snapshots")

    def read_checkpoint(self, name: str) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT position, crc FROM checkpoints WHERE name = ?",
                               (name,)).fetchone()
            if row is None:
                return None
            records.verify_checkpoint(name, row[0], row[1])
            return int(row[0])

        return self._read(read, f"reading checkpoint {name!r}")

    def list_checkpoints(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            out = {}
            for name, position, crc in conn.execute(
                "SELECT name, position, crc FROM checkpoints ORDER BY name"
            ):
                records.verify_checkpoint(name, position, crc)
                out[name] = position
            return out

        return self._read(read, "listing checkpoints")

    def _has_subscriptions(self, conn: sqlite3.Connection) -> bool:
        """False when the file is of schema version 1 (opened read-only, not migrated)."""
        if self.schema_version >= 2:
            return True
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'subscriptions'").fetchone() is not None

    def read_subscription(self, name: str) -> SubscriptionDefinition | None:
        def read(conn: sqlite3.Connection) -> SubscriptionDefinition | None:
            if not self._has_subscriptions(conn):
                return None
            row = conn.execute(
                "SELECT name, type, selector, start_from, with_subscriber, crc "
                "FROM subscriptions WHERE name = ?", (name,),
            ).fetchone()
            return None if row is None else records.decode_subscription(*row)

        return self._read(read, f"reading subscription {name!r}")

    def list_subscriptions(self) -> list[SubscriptionDefinition]:
        def read(conn: sqlite3.Connection) -> list[SubscriptionDefinition]:
            if not self._has_subscriptions(conn):
                return []
            rows = conn.execute(
                "SELECT name, type, selector, start_from, with_subscriber, crc "
                "FROM subscriptions ORDER BY name"
            ).fetchall()
            return [records.decode_subscription(*row) for row in rows]

        return self._read(read, "listing subscriptions")

    def stats(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            events, last = conn.execute("SELECT count(*), max(pos) FROM events").fetchone()
            streams = conn.execute(
                "SELECT count(*) FROM streams s WHERE s.state = ? AND EXISTS "
                "(SELECT 1 FROM events e WHERE e.skey = s.skey AND e.num >= s.first)",
                (LIVE,),
            ).fetchone()[0]
            return {"streams": streams, "events": events,
                    "last_position": -1 if last is None else last}

        return self._read(read, "counting the store")

    # -- life cycle ----------------------------------------------------------------------

    def flush(self) -> None:
        """Checkpoint the write-ahead log into the database file without waiting for
        readers (SQLite's PASSIVE checkpoint)."""
        with self._write_lock:
            conn = self._writer
            if conn is None:
                return  # read-only or closed: nothing of ours to flush
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc, "flushing the write-ahead log") from exc

    def settings(self) -> tuple[str, int]:
        """``(journal_mode, synchronous)`` as the write connection reports them."""
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise self._not_writable()
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
            except sqlite3.Error as exc:
                raise _storage_error(exc, "reading the write connection's settings") from exc
            return str(mode), int(synchronous)

    def close(self) -> None:
        """Close every connection of the engine, each once: the idle readers and the writer
        now (after the write in progress, if any), a reader in use when it is given back.
        Later calls close nothing. If closing a connection fails, the others are closed
        all the same and :class:`exesdb.StorageError` is raised afterwards."""
        with self._write_lock:
            with self._readers_lock:
                self._closed = True
                conns, self._readers = self._readers, []
            had_writer = self._writer is not None
            if self._writer is not None:
                conns.append(self._writer)  # closed last: it checkpoints the WAL
                self._writer = None
            failure: sqlite3.Error | None = None
            for conn in conns:
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    failure = failure or exc
            if had_writer and failure is None:  # a clean stop: see RUNNING_FILE
                with contextlib.suppress(OSError):
                    (self.path.parent / RUNNING_FILE).unlink(missing_ok=True)
        if failure is not None:
            raise _storage_error(failure, f"closing {self.path}")


def _verified_stream_rows(rows: list[Any], key: int, number: int, step: int
                          ) -> list[EventRecord]:
    """Records of stream rows, checked against their checksums and for gaps, their most
    used fields decoded here, in the reading thread (the others, and JSON data, on first
    access: see :func:`exesdb.storage.records.decode_event`)."""
    out: list[EventRecord] = []
    append = out.append
    crc32 = zlib.crc32
    pack = _KEYS.pack
    fill = records.decode_event
    new = object.__new__
    for row in rows:
        if row[1] != number or crc32(row[3], crc32(pack(row[0], key, number))) != row[2]:
            if row[1] != number:
                raise StorageError(
                    f"corrupt stream index: expected event {number}, found {row[1]!r} at "
                    f"$all position {row[0]!r}"
                )
            raise records.corrupt_event(row[0], number)
        record = new(EventRecord)
        fill(record, row)
        append(record)
        number += step
    return out


def _verified_all_rows(rows: list[Any]) -> list[EventRecord]:
    """Records of ``$all`` rows, checked against their checksums and decoded (as
    :func:`_verified_stream_rows`)."""
    out: list[EventRecord] = []
    append = out.append
    crc32 = zlib.crc32
    pack = _KEYS.pack
    fill = records.decode_event
    new = object.__new__
    for row in rows:
        if crc32(row[3], crc32(pack(row[0], row[4], row[1]))) != row[2]:
            raise records.corrupt_event(row[0], row[1])
        record = new(EventRecord)
        fill(record, row)
        append(record)
    return out


def _locate(conn: sqlite3.Connection, error: CorruptData) -> CorruptData:
    """``error`` with the stream of a damaged event named (looked up by its row's stream
    key, which the checksum also covers), if it was not."""
    if error.kind != "event" or error.stream_id is not None or error.position is None:
        return error
    try:
        row = conn.execute("SELECT s.stream_id, e.num FROM events e JOIN streams s "
                           "ON s.skey = e.skey WHERE e.pos = ?", (error.position,)).fetchone()
    except sqlite3.Error:
        return error
    if row is None or type(row[0]) is not str:
        return error
    located = CorruptData("event", error.reason, position=error.position, stream_id=row[0],
                          event_number=error.event_number if error.event_number is not None
                          else row[1])
    located.__traceback__ = error.__traceback__
    return located


def _read_marker(marker: Path) -> str | None:
    """The content of a previous run's :data:`RUNNING_FILE`, None if there is none."""
    try:
        return marker.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _write_marker(marker: Path) -> None:
    """Write :data:`RUNNING_FILE` durably (the file and its directory entry fsynced), so
    that a crash of the machine too is seen at the next open. A failure (a full disk) is
    not fatal: the store then just cannot tell the next run how this one ended."""
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"pid {os.getpid()}, opened {time.strftime('%Y-%m-%d %H:%M:%S %z')}"
                         "\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.open(marker.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        log.debug("%s: cannot write the running marker: %s", marker, exc)


def _unclean_stop_note(previous: str, wal_bytes: int, last_position: int) -> str:
    """What to tell the operator about a store whose previous run did not stop cleanly."""
    if wal_bytes:
        recovered = (f"SQLite recovered its write-ahead log ({wal_bytes} bytes): every "
                     "committed transaction kept, an unfinished one dropped")
    else:
        recovered = "its write-ahead log was empty: nothing to recover"
    head = f"up to $all position {last_position}" if last_position >= 0 else "no events"
    return (f"the previous run ({previous}) did not stop cleanly (killed, or the machine "
            f"stopped); {recovered}; the store holds {head}; 'python -m exesdb verify' "
            "checks every record")


def _check_writable(directory: Path, path: Path) -> None:
    """Raise :class:`exesdb.StorageError` naming the file and the reason if the store's
    files cannot be written: the database file or its write-ahead log and shared-memory
    files, where they exist (opened for writing and closed again), or the directory, where
    SQLite creates them (else SQLite would open the store read-only and fail every write).
    Checked by trying, so it holds for root too (an immutable file, a read-only mount)."""
    for candidate in (path, path.with_name(path.name + "-wal"),
                      path.with_name(path.name + "-shm")):
        try:
            fd = os.open(candidate, os.O_RDWR)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"{candidate}: the store file is not writable "
                               f"({exc.strerror or exc}); appends would fail") from None
        os.close(fd)
    if not os.access(directory, os.W_OK | os.X_OK):  # access(2) sees read-only mounts
        raise StorageError(f"{directory}: the store directory is not writable (permissions, "
                           "a read-only file system or an immutable directory); appends "
                           "would fail")


class SQLiteBackend(Backend):
    """The SQLite backend of one store (see the module docstring).

    Open it with ``await SQLiteBackend.open(directory, durable=True)``; the store's file
    is ``<directory>/exesdb.sqlite3``. One process should open a store at a time.
    """

    def __init__(self, engine: _Engine) -> None:
        """Use :meth:`open`."""
        self._engine = engine
        self._writes = WorkerThread(f"exesdb writer {engine.path}")
        self._read_limiter = trio.CapacityLimiter(_IDLE_READERS)
        self._closed = False
        self._close_done: trio.Event | None = None  # set once close has closed everything
        self._close_failure: StorageError | None = None

    @classmethod
    async def open(cls, directory: str | os.PathLike[str], *, durable: bool = True,
                   read_only: bool = False) -> SQLiteBackend:
        """Open the store in ``directory`` (created if missing), or create it there.

        ``read_only`` opens an existing store for reading only, beside a writer or not;
        its writes raise :class:`exesdb.StorageError`. Raises :class:`exesdb.StorageError`
        if the file there is not an exesdb store, has a schema version this code does not
        read, or cannot be opened.
        """
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be a bool, got {durable!r}")
        if read_only:
            engine = await trio.to_thread.run_sync(_Engine.open_read_only, Path(directory))
        else:
            engine = await trio.to_thread.run_sync(_Engine.open, Path(directory), durable)
        return cls(engine)

    async def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        # At most _IDLE_READERS reads at once, so each finds a pooled connection instead
        # of opening (and then closing) one of its own under load.
        self._check_open()
        return await trio.to_thread.run_sync(fn, *args, limiter=self._read_limiter)

    @property
    def path(self) -> Path:
        """The store's database file."""
        return self._engine.path

    @property
    def durable(self) -> bool:
        """True when each write is fsynced before it is acknowledged."""
        return self._engine.durable

    @property
    def unclean_stop(self) -> str | None:
        """None if the previous run that opened this store for writing closed it cleanly
        (or there was none); else one line for the operator: that it did not stop cleanly,
        what SQLite's recovery did, and how far the store goes (see
        :data:`RUNNING_FILE`)."""
        return self._engine.unclean_stop

    @property
    def transactions(self) -> int:
        """How many write transactions committed since the store was opened."""
        return self._engine.transactions

    async def write(self, ops: Sequence[WriteOp]) -> list[Any]:
        ops = list(ops)
        if not ops:
            return []
        if self._closed:
            raise StorageError(f"{self.path}: the store is closed")
        results = await self._writes.run(self._engine.write, ops)
        self.counters.fsync_seconds.observe(self._engine.commit_seconds)
        return results

    async def read_stream(
        self,
        stream_id: str,
        start_version: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
    ) -> list[EventRecord]:
        stream_id = check_stream_id(stream_id)
        start = check_start(start_version, "start_version")
        count = check_count(count)
        direction = check_direction(direction)
        events = await self._reading(self._engine.read_stream, stream_id, start, count,
                                     direction)
        counters = self.counters
        counters.stream_reads += 1
        counters.events_read += len(events)
        return events

    async def read_all(
        self,
        from_position: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
        filter: Filter | None = None,
    ) -> list[EventRecord]:
        start = check_start(from_position, "from_position")
        count = check_count(count)
        direction = check_direction(direction)
        filter = check_filter(filter)
        events = await self._reading(self._engine.read_all, start, count, direction, filter)
        counters = self.counters
        counters.all_reads += 1
        counters.events_read += len(events)
        return events

    async def stream_version(self, stream_id: str) -> int:
        stream_id = check_stream_id(stream_id)
        return await self._reading(self._engine.stream_version, stream_id)

    async def list_streams(self) -> list[str]:
        return await self._reading(self._engine.list_streams)

    async def head_position(self) -> int:
        return await self._reading(self._engine.head_position)

    async def read_snapshot(
        self, source_uuid: str, stream_uuid: str, version: int | None = None
    ) -> Snapshot | None:
        source_uuid, stream_uuid, version = check_snapshot_key(source_uuid, stream_uuid,
                                                               version)
        return await self._reading(self._engine.read_snapshot, source_uuid, stream_uuid, version)

    async def list_snapshots(
        self, source_uuid: str | None = None, stream_uuid: str | None = None
    ) -> list[Snapshot]:
        source_uuid, stream_uuid = check_snapshot_keys(source_uuid, stream_uuid)
        return await self._reading(self._engine.list_snapshots, source_uuid, stream_uuid)

    async def read_checkpoint(self, name: str) -> int | None:
        name = check_name(name, "name")
        return await self._reading(self._engine.read_checkpoint, name)

    async def list_checkpoints(self) -> dict[str, int]:
        return await self._reading(self._engine.list_checkpoints)

    async def read_subscription(self, name: str) -> SubscriptionDefinition | None:
        name = check_name(name, "name")
        return await self._reading(self._engine.read_subscription, name)

    async def list_subscriptions(self) -> list[SubscriptionDefinition]:
        return await self._reading(self._engine.list_subscriptions)

    @property
    def last_position(self) -> int:
        """The ``$all`` position of the last event committed, -1 when the store is empty:
        read from the store when it was opened, then advanced by each write of this
        backend (no I/O). A read-only backend reports the store as it was opened."""
        return self._engine.last_position

    async def stats(self) -> dict[str, int]:
        return await self._reading(self._engine.stats)

    async def flush(self) -> None:
        self._check_open()
        await self._writes.run(self._engine.flush)

    async def write_settings(self) -> tuple[str, int]:
        """``(journal_mode, synchronous)`` as SQLite reports them on the write connection,
        read in the write thread: ``("wal", 2)`` (FULL) when opened durable, ``("wal",
        1)`` (NORMAL) when not. Raises :class:`exesdb.StorageError` when the store is open
        read-only or closed."""
        self._check_open()
        return await self._writes.run(self._engine.settings)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self.path}: the store is closed")

    async def close(self) -> None:
        """Close the store's connections: exactly once, whoever calls and whatever is
        cancelled.

        The first call marks the backend closed, so that from then on every other method
        raises :class:`exesdb.StorageError`, and starts the close in a trio system task,
        which completes even if the caller is cancelled or the run is ending: it waits for
        the reads in progress to end, then closes every connection on the write thread
        (after the writes queued before it) and stops that thread. Every call, the first
        included, returns once that close has completed, so once ``close`` returned this
        backend has no connection to the database file left; a cancelled call stops
        waiting, not closing. Raises :class:`exesdb.StorageError` (on every call) if
        closing a connection failed.
        """
        if self._close_done is None:
            self._closed = True
            self._close_done = trio.Event()
            trio.lowlevel.spawn_system_task(self._close_connections,
                                            name=f"closing {self.path}")
        await self._close_done.wait()
        if self._close_failure is not None:
            raise StorageError(str(self._close_failure)) from self._close_failure

    async def _close_connections(self) -> None:
        """The close :meth:`close` starts. A system task: shielded, and never raises."""
        assert self._close_done is not None
        try:
            with trio.CancelScope(shield=True):
                # A read holds a token of the limiter until its thread has given its
                # connection back, so holding all the tokens means no read is in progress.
                limiter = self._read_limiter
                for _ in range(int(limiter.total_tokens)):
                    await limiter.acquire_on_behalf_of(object())
                await self._writes.run(self._engine.close)
        except StorageError as exc:  # reported to the callers of close
            self._close_failure = exc
        except Exception as exc:  # the same: a system task must not raise
            failure = StorageError(f"closing {self.path} failed: {exc!r}")
            failure.__cause__ = exc
            self._close_failure = failure
        finally:
            self._writes.stop()
            self._close_done.set()

    def __repr__(self) -> str:
        return f"<SQLiteBackend {str(self.path)!r} durable={self.durable}>"


