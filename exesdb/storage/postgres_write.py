"""The PostgreSQL backend's write transactions: :class:`WriteEngine`.

Called from one worker thread at a time, never on the trio thread. Each :meth:`write`
runs its operations in one transaction on the engine's connection (group commit):

* A transaction with stream operations (appends, stream deletes) first locks the store's
  head row (:mod:`exesdb.storage.postgres_schema`): every such transaction of every node
  is serialised there, decides its operations against the committed state, takes its
  ``$all`` positions from the head and writes the new head back before it commits. So
  positions are gapless and in commit order, and any node may append.
* Other operations (snapshots, checkpoints, subscription definitions) do not take the
  head lock; they are upserts and deletes of their own rows.
* A :class:`~exesdb.storage.fencing.Fenced` operation is checked against the
  ``leader_epoch`` row, share-locked until commit, in the same transaction.
* A transaction that appends events sends a commit notice
  (:mod:`exesdb.storage.postgres_notify`) on the store's channel in the same statement
  that writes the head back, so every node listening learns of it once it commits.
* The engine caches stream states between transactions; the cache is used only when the
  head's ``gen`` shows that no other transaction changed streams since this engine's last
  commit, and is dropped whenever a transaction fails.
* **One round trip when nothing changed**: a write of appends only, to streams whose
  states are cached, is decided against the cache and sent as one statement outside any
  transaction, the store's append statement (:attr:`Queries.append
  <exesdb.storage.postgres_schema.Queries.append>`), which commits it only if the head is
  still the one this engine last committed (no other transaction changed streams since)
  and none of its event ids is stored yet, under the same head lock. Otherwise nothing is
  written and the write runs as the transaction above. The results are the same either
  way; the statement only saves the round trips of reading what the engine knew.
* **Two round trips after another node wrote**: when the cache is stale (another node's
  commit notice moved :attr:`WriteEngine.last_position` past the cached head, a stream
  is not cached, or a statement was just refused), a write of appends only first reads
  the head and the streams it names in one statement (:meth:`WriteEngine.stale_streams`,
  :meth:`WriteEngine.refreshed`: no lock; the statement checks the head under the lock),
  then sends the statement planned on them (once the engine committed a transaction
  on the head: a backend's first write to streams is the transaction). Appends
  alternating between two nodes cost 650-800 us each instead of 1,150-1,750 (the
  transaction: seven round trips and two thread hand-offs). If that statement is refused
  too (another node is writing at that moment), the write runs as the transaction, and so
  does the next write that would read afresh: under contention the engine does not keep
  paying for reads that lose the race.
  A refusal is always the transaction's to give: it looks the new ids up first (a
  re-send of a written append is answered with its version).

Failures: a lost database or a timeout fails every operation of the transaction with
:class:`~exesdb.errors.StorageUnavailable` (``outcome_unknown`` when the
connection was lost during COMMIT) and drops the connection, so the next call
reconnects. Any other database error fails a one-operation transaction with
:class:`exesdb.StorageError`; a shared transaction is then retried one operation per
transaction, so only the operations that cannot be written fail.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import attrs
import psycopg

from ..errors import ExESDBError, InvalidArgument, StaleEpoch, StorageError, StorageUnavailable
from . import records
from .batch import StreamBatch, StreamState
from .fencing import Fenced, check_epoch, epoch_crc, verify_epoch
from .ops import (
    Append,
    Appended,
    DeleteCheckpoint,
    DeleteSnapshot,
    DeleteStream,
    DeleteSubscription,
    RecordSnapshot,
    SaveCheckpoint,
    SaveSubscription,
    WriteOp,
)
from .postgres_conn import Conn, Connector, close_quietly, failure
from .postgres_notify import encode_notice, notify_channel
from .postgres_read import MAX_INT8, text
from .postgres_schema import HARD_DELETED, LIVE, Queries, head_crc, verify_head
from .postgres_watchdog import deadline
from .postgres_wire import (
    BIGINT,
    BIGINT_ARRAY,
    BYTEA_ARRAY,
    SMALLINT_ARRAY,
    TEXT,
    Lost,
    bytea_array,
    int2_array,
    int8,
    int8_array,
)

__all__ = ["APPEND_NEW_STREAMS_TYPES", "APPEND_TYPES", "OneStatement", "WriteEngine"]

_STREAM_CACHE_SIZE: Final = 100_000
_TUPLES_OK: Final = psycopg.pq.ExecStatus.TUPLES_OK
_ONE: Final = int8(1)
"""The append statement's answer when it wrote (a binary bigint count)."""
APPEND_TYPES: Final = (BIGINT, BIGINT, BIGINT, BIGINT, BYTEA_ARRAY, BIGINT_ARRAY, BIGINT_ARRAY,
                       BIGINT_ARRAY, BYTEA_ARRAY, BIGINT_ARRAY, BYTEA_ARRAY, BIGINT, BIGINT,
                       BIGINT, BIGINT, TEXT, TEXT)
"""The parameter types of :attr:`~exesdb.storage.postgres_schema.Queries.append`."""
APPEND_NEW_STREAMS_TYPES: Final = (*APPEND_TYPES, BIGINT_ARRAY, BYTEA_ARRAY, BIGINT_ARRAY,
                                   SMALLINT_ARRAY, BIGINT_ARRAY)
"""The parameter types of
:attr:`~exesdb.storage.postgres_schema.Queries.append_new_streams`: those of
:data:`APPEND_TYPES`, then the new streams' columns."""


@attrs.frozen
class OneStatement:
    """A call of the store's append statement planned by :meth:`WriteEngine.plan_append`:
    on ``conn``, statement ``query`` prepared as ``name``, with binary ``params`` of
    ``types``; ``results`` are the operations' if it commits; ``batch`` and ``gen`` are
    what the engine caches then."""

    conn: Conn
    name: bytes
    query: bytes
    types: tuple[int, ...]
    params: list[bytes]
    results: list[Any]
    batch: StreamBatch
    gen: int
    refreshed: bool = False
    """Planned on a cache just read (:meth:`WriteEngine.refreshed`)."""


def _lost(conn: Conn) -> bool:
    """Whether libpq found ``conn`` broken (e.g. by a call through
    :mod:`exesdb.storage.postgres_wire`, which psycopg does not see)."""
    return conn.pgconn.status != psycopg.pq.ConnStatus.OK


def _idle(conn: Conn) -> bool:
    """Whether ``conn`` is usable and outside any transaction (a statement sent on it
    is its own transaction)."""
    return (not (conn.closed or conn.broken or _lost(conn))
            and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE)


def _too_large(field: str, value: int) -> InvalidArgument:
    return InvalidArgument(f"{field}: must be at most 2**63 - 1, got {value!r}")


class WriteEngine:
    """The write side of one backend (see the module docstring)."""

    def __init__(self, connector: Connector, queries: Queries, name: str) -> None:
        self._connector = connector
        self._q = queries
        self._name = name
        self._conn: Conn | None = None
        self._streams: dict[str, StreamState] = {}
        self._gen: int | None = None  # head.gen after this engine's last commit
        # The head row (last_pos, next_skey, gen) after this engine's last transaction
        # that locked it, when the stream cache matches it (None: unknown).
        self._head: tuple[int, int, int] | None = None
        self._committing = False
        self._closed = False
        self._primed = False  # a transaction that locked the head committed
        self._refreshed = False  # the cache was just read by refreshed()
        self._refresh_refused = False  # the last append planned on a refreshed cache was
        self._position_lock = threading.Lock()
        self.last_position = -1
        """The highest ``$all`` position this engine committed or saw (monotonic; read
        anywhere without a lock: reading an int attribute is atomic)."""
        self.transactions = 0
        """How many write transactions committed."""
        self.token = secrets.token_hex(8)
        """This engine's mark on its commit notices."""
        self._channel = notify_channel(queries.schema)
        self._channel_bytes = self._channel.encode()

    # -- connection ----------------------------------------------------------------------

    def _connection(self) -> Conn:
        if self._closed:
            raise StorageError(f"{self._name}: the store is closed")
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken or _lost(conn)):
            return conn
        if conn is not None:
            close_quietly(conn)
            self._conn = None
        self._conn = self._connector.connect("writer")
        return self._conn

    def use(self, conn: Conn) -> None:
        """Adopt ``conn`` (the connection the backend was opened with) as the write
        connection."""
        self._conn = conn

    def saw(self, position: int) -> None:
        """Advance :attr:`last_position` to ``position`` if it is higher. Called from the
        write thread and from readers' threads: the lock keeps it monotonic."""
        with self._position_lock:
            if position > self.last_position:
                self.last_position = position

    def _forget(self, conn: Conn) -> None:
        """After a failed transaction: drop the cached stream states and roll back, or
        drop the connection if it is broken."""
        self._streams.clear()
        self._gen = None
        self._head = None
        if not (conn.closed or conn.broken):
            try:
                conn.rollback()
                return
            except psycopg.Error:
                pass
        close_quietly(conn)
        if self._conn is conn:
            self._conn = None

    def _lost_while_committing(self, conn: Conn) -> bool:
        """Whether the connection was lost after COMMIT was sent: then nobody knows if
        the transaction committed (an error the server answered means it did not)."""
        return self._committing and (conn.closed or conn.broken)

    # -- writes --------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp | Fenced]) -> list[Any]:
        """Run ``ops`` in one transaction; one result (or error) per operation."""
        try:
            conn = self._connection()
        except StorageUnavailable as exc:
            return [exc] * len(ops)
        try:
            with deadline(conn, self._connector.hang_timeout):
                return self._transaction(conn, ops)
        except psycopg.Error as exc:
            error = failure(exc, "the write transaction", conn,
                            outcome_unknown=self._lost_while_committing(conn))
            self._forget(conn)
            if isinstance(error, StorageUnavailable) or len(ops) == 1:
                return [error] * len(ops)
        except BaseException:
            self._forget(conn)
            raise
        # The shared transaction failed: run each operation alone, so one that cannot be
        # written does not fail the others.
        return [self.write([op])[0] for op in ops]

    def _transaction(self, conn: Conn, ops: Sequence[WriteOp | Fenced]) -> list[Any]:
        self._committing = False
        q = self._q
        plain = [op.op if isinstance(op, Fenced) else op for op in ops]
        cursor = conn.cursor()
        batch = None
        gen = 0
        if any(type(op) is Append or type(op) is DeleteStream for op in plain):
            last_pos, next_key, gen = verify_head(cursor.execute(q.lock_head).fetchone())
            batch = self._stream_batch(cursor, plain, last_pos + 1, next_key, gen)
        epoch: tuple[int, str] | None = None
        results: list[Any] = []
        for op, inner in zip(ops, plain, strict=True):
            if isinstance(op, Fenced):
                if epoch is None:
                    row = cursor.execute(q.share_epoch).fetchone()
                    if row is None:
                        raise StorageError("corrupt store: its leader epoch row is missing")
                    epoch = verify_epoch(*row)
                try:
                    check_epoch(op.epoch, *epoch)
                except StaleEpoch as exc:
                    results.append(exc)
                    continue
            if type(inner) is Append or type(inner) is DeleteStream:
                assert batch is not None
                results.append(batch.apply(inner))
            else:
                results.append(self._other(cursor, inner))
        changed = batch is not None and bool(batch.rows or batch.dirty)
        if batch is not None and changed:
            gen += 1
            self._write_streams(cursor, batch)
            last = batch.position - 1
            crc = head_crc(last, batch.next_key, gen)
            if batch.rows:
                cursor.execute(q.update_head_notify, (
                    last, batch.next_key, gen, crc, self._channel,
                    self._notice(ops, plain, results, first=batch.rows[0][0], last=last)))
            else:
                cursor.execute(q.update_head, (last, batch.next_key, gen, crc))
        self._committing = True
        conn.commit()
        self._committing = False
        self.transactions += 1
        if batch is not None:
            self._committed(batch, gen)
        return results

    def _committed(self, batch: StreamBatch, gen: int) -> None:
        """After the commit of a transaction that held the head lock: the head it left
        (``gen``; positions and keys from ``batch``) is this engine's cached head."""
        last = batch.position - 1
        self._primed = True
        self._gen = gen
        self._head = (last, batch.next_key, gen)
        self.saw(last)
        streams = self._streams
        if len(streams) > _STREAM_CACHE_SIZE:
            for stream_id in list(streams)[: len(streams) - _STREAM_CACHE_SIZE // 2]:
                del streams[stream_id]

    def plan_append(self, ops: Sequence[WriteOp | Fenced]) -> OneStatement | None:
        """The append statement's call that writes ``ops`` (see the module docstring), if
        they are appends to cached streams, decided against the cache (no I/O; call it
        where :meth:`write` may not run meanwhile). None: :meth:`write` must write them.
        The caller runs the call (:func:`~exesdb.storage.postgres_wire.execute`) on
        :attr:`OneStatement.conn` and then calls :meth:`answered` or :meth:`not_appended`.
        """
        refreshed, self._refreshed = self._refreshed, False
        head = self._head
        conn = self._conn
        if head is None or conn is None or not _idle(conn):
            return None
        if self.last_position > head[0]:  # another node's commit (its notice) came since
            return None  # the statement would refuse it: no round trip for that
        streams = self._streams
        appends: list[Append] = []
        for op in ops:
            if not (type(op) is Append and op.stream_id in streams):
                return None
            appends.append(op)
        last_pos, next_key, gen = head
        ids = [event._encoded[0] for op in appends for event in op.events]
        unique = list(set(ids))
        batch = StreamBatch(streams, {}, position=last_pos + 1, next_key=next_key,
                            now=time.time_ns() // 1000, track_ids=len(unique) < len(ids))
        results = [batch.apply(op) for op in appends]
        if not batch.rows:  # nothing to write: only the committed state can tell
            self._drop_cache()  # (the batch may have changed cached states)
            return None
        last = batch.position - 1
        keys, names, firsts, crcs = [], [], [], []
        for stream_id, (stream, is_new) in batch.dirty.items():
            assert is_new and stream.key is not None  # appends only make new streams
            keys.append(stream.key)
            names.append(stream_id.encode())
            firsts.append(stream.first)
            crcs.append(records.stream_crc(stream.key, stream_id, stream.first, LIVE))
        positions, skeys, numbers, eids, event_crcs, blobs = zip(*batch.rows, strict=True)
        notice = self._notice(ops, appends, results, first=positions[0], last=last)
        params = [
            int8(last_pos), int8(next_key), int8(gen), int8(head_crc(last_pos, next_key, gen)),
            bytea_array(unique), int8_array(positions), int8_array(skeys),
            int8_array(numbers), bytea_array(eids), int8_array(event_crcs), bytea_array(blobs),
            int8(last), int8(batch.next_key), int8(gen + 1),
            int8(head_crc(last, batch.next_key, gen + 1)), self._channel_bytes,
            notice.encode(),
        ]
        q = self._q
        if not keys:
            return OneStatement(conn, b"exesdb_append", q.append, APPEND_TYPES, params,
                                results, batch, gen + 1, refreshed)
        params += [int8_array(keys), bytea_array(names), int8_array(firsts),
                   int2_array([LIVE] * len(keys)), int8_array(crcs)]
        return OneStatement(conn, b"exesdb_append_new_streams", q.append_new_streams,
                            APPEND_NEW_STREAMS_TYPES, params, results, batch, gen + 1,
                            refreshed)

    def answered(self, call: OneStatement,
                 answer: Sequence[psycopg.pq.abc.PGresult]) -> list[Any] | None:
        """The statement of ``call`` was answered ``answer`` (its results): the
        operations' results when it committed them (the engine's state follows), else
        None: nothing was written (the head moved, or an event id is stored), the stream
        cache is dropped, and :meth:`write` must write them."""
        result = answer[-1] if answer else None
        if (result is not None and result.status == _TUPLES_OK and result.ntuples == 1
                and result.get_value(0, 0) == _ONE):
            self.transactions += 1
            self._committed(call.batch, call.gen)
            return call.results
        self._refresh_refused = call.refreshed
        self._drop_cache()
        return None

    def not_appended(self, call: OneStatement, exc: psycopg.Error) -> list[Any] | None:
        """``call`` failed with ``exc``: the results when the database is out of reach
        (the operations fail with :class:`~exesdb.errors.StorageUnavailable`, with an
        unknown outcome when the connection was lost during the call, which is then
        closed), else None (nothing was written: :meth:`write` writes them). The stream
        cache is dropped either way."""
        self._drop_cache()
        lost = isinstance(exc, Lost)
        if lost or _lost(call.conn):
            if self._conn is call.conn:
                self._conn = None
            close_quietly(call.conn)
        error = failure(exc, "the write transaction", call.conn, outcome_unknown=lost)
        if isinstance(error, StorageUnavailable):
            return [error] * len(call.results)
        return None  # an error the transaction tells, if it happens again

    def abandoned(self, call: OneStatement) -> None:
        """``call`` ended with something other than an answer or a database error (its
        outcome is unknown): the connection, maybe in the middle of it, is closed and the
        stream cache dropped."""
        self._drop_cache()
        if self._conn is call.conn:
            self._conn = None
        close_quietly(call.conn)

    def stale_streams(self, ops: Sequence[WriteOp | Fenced]) -> tuple[Conn, list[str]] | None:
        """When :meth:`plan_append` cannot plan ``ops`` only because the cache is stale
        (another node committed since, a stream is not cached, or the cache was dropped)
        and they are appends only, after the engine's first transaction on the head: the
        idle write connection and the streams to read
        (with :attr:`Queries.refresh <exesdb.storage.postgres_schema.Queries.refresh>`,
        then :meth:`refreshed`). None when the transaction must write them, or when the
        last append planned on a refreshed cache was refused (another node is writing
        at the same time: the next write goes straight to the transaction)."""
        if self._refresh_refused:
            self._refresh_refused = False
            return None
        if not self._primed:
            return None  # a backend's first write to streams is the transaction
        conn = self._conn
        if conn is None or not _idle(conn):
            return None
        wanted: dict[str, None] = {}
        for op in ops:
            if type(op) is not Append:
                return None
            wanted[op.stream_id] = None
        return conn, list(wanted)

    def refreshed(self, rows: Sequence[tuple[Any, ...]], wanted: list[str]) -> None:
        """Cache the head and the ``wanted`` streams' states read in one snapshot
        (``rows`` of :attr:`Queries.refresh`), verified by their checksums; the streams
        cached before are kept only if the head's ``gen`` did not move."""
        if not rows:
            raise StorageError("corrupt store: its head row is missing")
        last_pos, next_key, gen = verify_head(rows[0][:4])
        loaded: dict[str, StreamState] = {}
        for row in rows:
            key, raw, first, state, crc, last = row[4:]
            if key is None:
                continue
            stream_id = text(raw, "stream record")
            records.verify_stream(key, stream_id, first, state, crc)
            loaded[stream_id] = StreamState(key, -1 if last is None else last, first,
                                            state == HARD_DELETED)
        streams = self._streams
        if gen != self._gen:
            streams.clear()
        for stream_id in wanted:
            streams[stream_id] = loaded.get(stream_id) or StreamState(None, -1, 0, False)
        self._gen = gen
        self._head = (last_pos, next_key, gen)
        self._refreshed = True
        self.saw(last_pos)

    def refresh_failed(self, conn: Conn, exc: BaseException) -> None:
        """Reading with :attr:`Queries.refresh` on ``conn`` failed with ``exc`` (nothing
        was written): the cache is dropped, and the connection closed if it is no longer
        usable (or the read ended other than with a database's answer); the transaction
        writes the operations (and reports a lost database)."""
        self._drop_cache()
        if not isinstance(exc, psycopg.Error) or isinstance(exc, Lost) or _lost(conn):
            if self._conn is conn:
                self._conn = None
            close_quietly(conn)

    def _drop_cache(self) -> None:
        """Forget the cached stream states and head (they may have been changed in place
        by a batch that was not committed)."""
        self._streams.clear()
        self._gen = None
        self._head = None
        self._refreshed = False

    def _notice(self, ops: Sequence[WriteOp | Fenced], plain: Sequence[WriteOp],
                results: list[Any], *, first: int, last: int) -> str:
        """The commit notice of a transaction that wrote positions ``first`` .. ``last``."""
        streams: set[str] = set()
        types: set[str] = set()
        for inner, result in zip(plain, results, strict=True):
            if type(result) is Appended and type(inner) is Append:
                streams.add(inner.stream_id)
                types.update(event.event_type for event in inner.events)
        return encode_notice(first, last, self.token, streams, types)

    def _stream_batch(self, cursor: psycopg.Cursor[Any], ops: list[WriteOp], position: int,
                      next_key: int, gen: int) -> StreamBatch:
        """The batch of this transaction, with the states of the streams it names."""
        streams = self._streams
        if gen != self._gen:
            streams.clear()  # another transaction changed streams since our last commit
        wanted = {op.stream_id for op in ops if type(op) is Append or type(op) is DeleteStream}
        missing = [stream_id for stream_id in wanted if stream_id not in streams]
        if missing:
            loaded: dict[str, StreamState] = {}
            rows = cursor.execute(self._q.load_streams,
                                  ([stream_id.encode() for stream_id in missing],))
            for key, raw, first, state, crc, last in rows.fetchall():
                stream_id = text(raw, "stream record")
                records.verify_stream(key, stream_id, first, state, crc)
                loaded[stream_id] = StreamState(key, -1 if last is None else last, first,
                                                state == HARD_DELETED)
            for stream_id in missing:
                streams[stream_id] = loaded.get(stream_id) or StreamState(None, -1, 0, False)
        ids = [event._encoded[0] for op in ops if type(op) is Append for event in op.events]
        known: dict[bytes, list[tuple[int, int]]] = {}
        if ids:
            for event_id, key, number in cursor.execute(self._q.find_ids, (ids,)).fetchall():
                known.setdefault(event_id, []).append((key, number))
        return StreamBatch(streams, known, position=position, next_key=next_key,
                           now=time.time_ns() // 1000, track_ids=len(set(ids)) < len(ids))

    def _write_streams(self, cursor: psycopg.Cursor[Any], batch: StreamBatch) -> None:
        q = self._q
        if batch.rows:  # one statement, never a pipeline (see Queries.insert_events)
            cursor.execute(q.insert_events, [list(c) for c in zip(*batch.rows, strict=True)])
        for stream_id, (stream, is_new) in batch.dirty.items():
            assert stream.key is not None
            state = HARD_DELETED if stream.hard else LIVE
            crc = records.stream_crc(stream.key, stream_id, stream.first, state)
            if is_new:
                cursor.execute(q.insert_stream,
                               (stream.key, stream_id.encode(), stream.first, state, crc))
            else:
                cursor.execute(q.update_stream, (stream.first, state, crc, stream.key))

    def _other(self, cursor: psycopg.Cursor[Any], op: WriteOp) -> ExESDBError | None:
        """Write a snapshot, checkpoint or subscription operation; None, or the
        :class:`exesdb.InvalidArgument` of a number PostgreSQL cannot hold."""
        q = self._q
        kind = type(op)
        if kind is RecordSnapshot:
            assert isinstance(op, RecordSnapshot)
            if op.version > MAX_INT8:
                return _too_large("version", op.version)
            now = time.time_ns() // 1000
            crc = records.snapshot_crc(op.source_uuid, op.stream_uuid, op.version, now,
                                       op.blob)
            cursor.execute(q.upsert_snapshot, (op.source_uuid.encode(), op.stream_uuid.encode(),
                                               op.version, now, crc, op.blob))
        elif kind is DeleteSnapshot:
            assert isinstance(op, DeleteSnapshot)
            if op.version <= MAX_INT8:
                cursor.execute(q.delete_snapshot, (op.source_uuid.encode(),
                                                   op.stream_uuid.encode(), op.version))
        elif kind is SaveCheckpoint:
            assert isinstance(op, SaveCheckpoint)
            if op.position > MAX_INT8:
                return _too_large("position", op.position)
            cursor.execute(q.upsert_checkpoint, (op.name.encode(), op.position,
                                                 records.checkpoint_crc(op.name, op.position)))
        elif kind is DeleteCheckpoint:
            assert isinstance(op, DeleteCheckpoint)
            cursor.execute(q.delete_checkpoint, (op.name.encode(),))
        elif kind is SaveSubscription:
            assert isinstance(op, SaveSubscription)
            flag = int(op.with_subscriber)
            cursor.execute(q.upsert_subscription, (
                op.name.encode(), op.type, op.selector_json, op.start_from, flag,
                records.subscription_crc(op.name, op.type, op.selector_json, op.start_from,
                                         flag),
            ))
        elif kind is DeleteSubscription:
            assert isinstance(op, DeleteSubscription)
            cursor.execute(q.delete_subscription, (op.name.encode(),))
            cursor.execute(q.delete_checkpoint, (op.name.encode(),))
        else:
            raise TypeError(f"not a write operation: {op!r}")
        return None

    # -- leader epoch --------------------------------------------------------------------

    def advance_epoch(self, leader: str, expected: int | None) -> int:
        """Set the store's leader epoch to the next one, held by ``leader``, in one
        transaction; with ``expected``, only if the epoch is ``expected`` now (else
        :class:`~exesdb.errors.StaleEpoch`). Returns the new epoch."""
        conn = self._connection()
        self._committing = False
        try:
            with deadline(conn, self._connector.hang_timeout):
                return self._advance_epoch(conn, leader, expected)
        except psycopg.Error as exc:
            error = failure(exc, "advancing the leader epoch", conn,
                            outcome_unknown=self._lost_while_committing(conn))
            self._forget(conn)
            raise error from exc
        except BaseException:
            self._forget(conn)
            raise

    def _advance_epoch(self, conn: Conn, leader: str, expected: int | None) -> int:
        q = self._q
        row = conn.execute(q.lock_epoch).fetchone()
        if row is None:
            raise StorageError("corrupt store: its leader epoch row is missing")
        epoch, holder = verify_epoch(*row)
        if expected is not None:
            check_epoch(expected, epoch, holder)
        epoch += 1
        conn.execute(q.update_epoch, (epoch, leader, epoch_crc(epoch, leader)))
        self._committing = True
        conn.commit()
        self._committing = False
        return epoch

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later writes raise :class:`exesdb.StorageError`."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)
