"""The PostgreSQL backend: a store in its own schema of a PostgreSQL database, which
several nodes may open and write at once (cluster mode).

:class:`PostgresBackend` gives every guarantee of :class:`exesdb.storage.Backend`, with
the same rules (:mod:`exesdb.storage.rules`) and the same checksummed records
(:mod:`exesdb.storage.records`) as the SQLite backend:

* **Atomicity and group commit**: each :meth:`~PostgresBackend.write` is one PostgreSQL
  transaction (:mod:`exesdb.storage.postgres_write`).
* **Durability**: opened ``durable=True`` (the default), every commit waits for
  PostgreSQL's WAL flush (``synchronous_commit=on``; the server must run with
  ``fsync=on``). ``durable=False`` uses ``synchronous_commit=off``: a commit returns
  before its WAL is flushed, so a crash of the *database server* may lose the last
  acknowledged writes (never tear them); a crash of this process loses nothing.
* **Order across nodes**: ``$all`` positions come from the store's head row, locked by
  each appending transaction until it commits, so they are gapless and follow commit
  order on every node: a reader never sees a position while a lower one can still
  appear (:mod:`exesdb.storage.postgres_schema`).
* **Reads** are single statements (one consistent state each: see
  :mod:`exesdb.storage.postgres_read`) on a pool of read-only connections, concurrently
  with writes; each sees every write that returned before it started.

Blocking I/O never runs on the trio thread: writes run in a dedicated worker thread
(:mod:`exesdb.storage._thread`), serialised; reads through ``trio.to_thread.run_sync``
with a limiter of ``max_readers``. Forward reads of a stream or of ``$all`` (what
subscriptions read, catching up and live) are sent from the trio thread through libpq's
non-blocking interface on an idle read connection when there is one, and decoded there
unless they return many rows (a thread hand-off each way was about half of a live
read's time). A write that is a single statement (appends decided
against the writer's cache, see :mod:`exesdb.storage.postgres_write`) is sent from the
trio thread through libpq's non-blocking interface instead
(:mod:`exesdb.storage.postgres_wire`): one round trip, no thread hand-off; after another
node wrote, a read of the head and the streams first, the same way (two round trips).
The write connection is used by one write (or epoch advance) at a time, in call order.

``last_position`` (no I/O) follows this backend's own writes and every head it reads;
other nodes append too, so :meth:`PostgresBackend.refresh_last_position` (or
:meth:`~PostgresBackend.head_position`, or :meth:`~PostgresBackend.stats`) reads the
store's head and advances it, and :meth:`~PostgresBackend.saw_committed` advances it to
a position known committed otherwise (another node's commit notice: every append sends
one, see :mod:`exesdb.storage.postgres_notify`).

Losing the database: calls fail promptly (``connect_timeout``, ``statement_timeout``,
TCP keepalives, and for a server that is alive but hung a client-side deadline of twice
``statement_timeout``: :mod:`exesdb.storage.postgres_watchdog`) with
:class:`~exesdb.errors.StorageUnavailable`, a
:class:`exesdb.StorageError` meant to be shown as :class:`exesdb.StoreUnavailable`
(retryable); the backend reconnects on a later call once the database answers.
Write operations that fail this way report it as their result; a write whose connection
was lost during COMMIT says its outcome is unknown.

Leader fencing (:mod:`exesdb.storage.fencing`): :meth:`~PostgresBackend.write` also
takes :class:`~exesdb.storage.fencing.Fenced` operations, refused with
:class:`~exesdb.errors.StaleEpoch` when their epoch is not the store's;
:meth:`~PostgresBackend.advance_epoch` starts a new epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import psycopg
import trio
from psycopg.adapt import Transformer

from ..constants import DEFAULT_COUNT, Direction, End
from ..errors import ExESDBError, InvalidArgument, StorageError, StorageUnavailable
from ..events import EventRecord, Filter, Snapshot
from ..validation import (
    check_count,
    check_direction,
    check_filter,
    check_name,
    check_snapshot_key,
    check_snapshot_keys,
    check_start,
    check_store_id,
    check_stream_id,
    check_version,
)
from . import postgres_read as read
from ._thread import WorkerThread
from .backend import Backend
from .definitions import SubscriptionDefinition
from .fencing import Fenced
from .ops import WriteOp
from .postgres_conn import Conn, Connector, ReaderPool, close_quietly, failure
from .postgres_read import MAX_INT8
from .postgres_schema import Queries, prepare, schema_name
from .postgres_wire import BIGINT, BYTEA, BYTEA_ARRAY, bytea_array, execute, int8
from .postgres_write import WriteEngine

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_STATEMENT_TIMEOUT", "PostgresBackend"]

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
"""Seconds a connection attempt may take before the call fails."""
DEFAULT_STATEMENT_TIMEOUT: Final = 10.0
"""Seconds one statement (lock waits included) may take before the call fails: the
writer's callers wait as long by default."""
DEFAULT_MAX_READERS: Final = 8
_ROWS_HERE: Final = 64
"""Rows a read decodes on the trio thread; more are decoded in a worker thread."""
_STREAM_TYPES: Final = (BIGINT, BIGINT, BYTEA)
_ALL_TYPES: Final = (BIGINT, BIGINT)
_REFRESH_TYPES: Final = (BYTEA_ARRAY,)


def _clamp(value: int | End) -> int | End:
    return value if type(value) is not int or value <= MAX_INT8 else MAX_INT8


def _positive_seconds(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgument(f"{field}: must be a number of seconds > 0, got {value!r}")
    return float(value)


class PostgresBackend(Backend):
    """The PostgreSQL backend of one store (see the module docstring).

    Open it with ``await PostgresBackend.open(dsn, store_id)``; close it when done.
    """

    def __init__(self, connector: Connector, queries: Queries, store_id: str,
                 max_readers: int) -> None:
        """Use :meth:`open`."""
        self._store_id = store_id
        self._queries = queries
        self._connector = connector
        self._name = f"PostgreSQL store {store_id!r} (schema {queries.schema!r})"
        self._engine = WriteEngine(connector, queries, self._name)
        self._readers = ReaderPool(connector, max_readers, self._name)
        self._writes = WorkerThread(f"exesdb writer {store_id}")
        self._write_lock = trio.StrictFIFOLock()  # one user of the write connection
        self._read_limiter = trio.CapacityLimiter(max_readers)
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        store_id: str,
        *,
        durable: bool = True,
        schema: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        max_readers: int = DEFAULT_MAX_READERS,
        application_name: str | None = None,
    ) -> PostgresBackend:
        """Open store ``store_id`` in the PostgreSQL database ``dsn`` (a libpq connection
        string or URI), creating its schema and tables if they are missing.

        ``schema`` defaults to :func:`~exesdb.storage.postgres_schema.schema_name` of the
        store id. Safe to call from several nodes at once for the same store. Connections
        are named ``application_name`` (default ``"exesdb <store_id>"``) plus ``writer``
        or ``reader`` in ``pg_stat_activity``.

        Raises :class:`exesdb.InvalidArgument` for a bad argument,
        :class:`~exesdb.errors.StorageUnavailable` if the database cannot be
        reached in time, :class:`exesdb.StorageError` if the schema is not this store's.
        """
        if not isinstance(dsn, str):
            raise InvalidArgument(f"dsn: must be a str, got {type(dsn).__name__}")
        store_id = check_store_id(store_id)
        if not isinstance(durable, bool):
            raise InvalidArgument(f"durable: must be True or False, got {durable!r}")
        if schema is None:
            schema = schema_name(store_id)
        elif not isinstance(schema, str) or not 0 < len(schema.encode()) <= 63:
            raise InvalidArgument(f"schema: must be a str of 1 to 63 bytes, got {schema!r}")
        if type(max_readers) is not int or max_readers < 1:
            raise InvalidArgument(f"max_readers: must be an int >= 1, got {max_readers!r}")
        if application_name is None:
            application_name = f"exesdb {store_id}"
        elif not isinstance(application_name, str):
            raise InvalidArgument(f"application_name: must be a str, got {application_name!r}")
        connector = Connector(
            dsn=dsn,
            application_name=application_name,
            connect_timeout=_positive_seconds(connect_timeout, "connect_timeout"),
            statement_timeout=_positive_seconds(statement_timeout, "statement_timeout"),
            durable=durable,
        )
        queries = Queries(schema)
        conn, last = await trio.to_thread.run_sync(_open, connector, queries, store_id)
        backend = cls(connector, queries, store_id, max_readers)
        backend._engine.use(conn)
        backend._engine.saw(last)
        return backend

    async def _reading(self, fn: Callable[..., T], *args: Any, doing: str) -> T:
        q = self._queries

        def run(conn: Conn) -> T:
            return fn(conn, q, *args)

        return await trio.to_thread.run_sync(self._readers.run, run, doing,
                                             limiter=self._read_limiter)

    async def _reading_here(self, name: bytes, query: bytes, types: Sequence[int],
                            params: list[bytes],
                            rows_to: Callable[[list[tuple[Any, ...]]], T],
                            doing: str) -> T | None:
        """Run ``query`` from the trio thread (:mod:`exesdb.storage.postgres_wire`) on an
        idle read connection and return ``rows_to(rows)``; None when no connection is
        idle (the caller reads in a thread, which connects). Rows are decoded here, or
        in a thread when there are more than :data:`_ROWS_HERE`."""
        conn = self._readers.idle()
        if conn is None:
            return None
        try:
            result = (await execute(conn, name, query, types, params,
                                    self._connector.hang_timeout))[-1]
            transformer = Transformer(conn)
        except psycopg.Error as exc:
            error = failure(exc, doing, conn)
            self._readers.discard(conn, everything=isinstance(error, StorageUnavailable))
            raise error from exc
        self._readers.release(conn)

        def load() -> T:
            transformer.set_pgresult(result, format=psycopg.pq.Format.BINARY)
            return rows_to(transformer.load_rows(0, result.ntuples, tuple))

        if result.ntuples > _ROWS_HERE:
            return await trio.to_thread.run_sync(load, limiter=self._read_limiter)
        return load()

    @property
    def store_id(self) -> str:
        """The store's id."""
        return self._store_id

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the store."""
        return self._queries.schema

    @property
    def durable(self) -> bool:
        """True when each commit waits for PostgreSQL's WAL flush."""
        return self._connector.durable

    @property
    def notify_token(self) -> str:
        """The token this backend's commit notices carry
        (:class:`~exesdb.storage.postgres_notify.CommitNotice`), so a listener can tell
        them from other nodes'."""
        return self._engine.token

    def saw_committed(self, position: int) -> None:
        """Advance :attr:`last_position` to ``position`` (no I/O), which the caller knows
        committed (a commit notice says so; positions are gapless and follow commit
        order, so everything below it is committed too). A lower position changes
        nothing."""
        if type(position) is not int or position < -1:
            raise InvalidArgument(f"position: must be an int >= -1, got {position!r}")
        self._engine.saw(position)

    @property
    def transactions(self) -> int:
        """How many write transactions this backend committed."""
        return self._engine.transactions

    # -- writes --------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp | Fenced]) -> list[Any]:
        """As :meth:`exesdb.storage.Backend.write`; ``ops`` may include
        :class:`~exesdb.storage.fencing.Fenced` operations. An operation that fails
        because the database is out of reach has a
        :class:`~exesdb.errors.StorageUnavailable` result."""
        ops = list(ops)
        if not ops:
            return []
        if self._closed:
            raise StorageError(f"{self._name}: the store is closed")
        lock = self._write_lock
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            # Free (the usual case): taken without the schedule point acquire() makes, which
            # would let every runnable task of the node run before the append is sent.
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            return await self._write(ops)
        finally:
            lock.release()

    async def _refresh(self, ops: Sequence[WriteOp | Fenced]) -> bool:
        """When the write engine's cache is what keeps ``ops`` from one statement (see
        :meth:`~exesdb.storage.postgres_write.WriteEngine.stale_streams`): read the head
        and their streams in one statement on the idle write connection and cache them;
        whether it did. A failed read drops the cache (nothing was written)."""
        engine = self._engine
        stale = engine.stale_streams(ops)
        if stale is None:
            return False
        conn, wanted = stale
        try:
            answer = await execute(conn, b"exesdb_refresh", self._queries.refresh,
                                   _REFRESH_TYPES, [bytea_array([s.encode() for s in wanted])],
                                   self._connector.hang_timeout)
            result = answer[-1]
            transformer = Transformer(conn)
            transformer.set_pgresult(result, format=psycopg.pq.Format.BINARY)
            engine.refreshed(transformer.load_rows(0, result.ntuples, tuple), wanted)
        except (psycopg.Error, ExESDBError) as exc:
            engine.refresh_failed(conn, exc)  # the transaction writes them
            return False
        except BaseException as exc:
            with contextlib.suppress(psycopg.Error):
                trio.lowlevel.notify_closing(conn.pgconn.socket)
            engine.refresh_failed(conn, exc)
            raise
        return True

    async def _write(self, ops: list[WriteOp | Fenced]) -> list[Any]:
        """:meth:`write`, holding the write lock: one statement planned on the cache, or
        on the head and streams read afresh when the cache is stale (also once after a
        statement planned on the cache was refused: another node wrote since); else,
        or when a statement planned on a fresh read is refused too (another node writes
        at the same moment), or for anything but appends, the transaction."""
        engine = self._engine
        for _attempt in range(2):
            call = engine.plan_append(ops)
            if call is None and await self._refresh(ops):
                call = engine.plan_append(ops)
            if call is None:
                break
            try:
                answer = await execute(call.conn, call.name, call.query, call.types,
                                       call.params, self._connector.hang_timeout)
            except psycopg.Error as exc:
                results = engine.not_appended(call, exc)
                if results is not None:
                    return results
                break  # an error the transaction tells, if it happens again
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    trio.lowlevel.notify_closing(call.conn.pgconn.socket)
                engine.abandoned(call)
                raise
            results = engine.answered(call, answer)
            if results is not None:
                return results
            if call.refreshed:
                break
        return await self._writes.run(engine.write, ops)

    async def advance_epoch(self, leader: str, expected: int | None = None) -> int:
        """Start the store's next leader epoch, held by ``leader`` (a name, e.g. the
        node's); return it. With ``expected``, only if the current epoch is ``expected``,
        else raise :class:`~exesdb.errors.StaleEpoch` (a compare-and-set for
        elections). Waits for fenced writes in flight; later ones need the new epoch."""
        leader = check_name(leader, "leader")
        if expected is not None:
            expected = check_version(expected, "expected")
        if self._closed:
            raise StorageError(f"{self._name}: the store is closed")
        async with self._write_lock:
            return await self._writes.run(self._engine.advance_epoch, leader, expected)

    async def leader_epoch(self) -> tuple[int, str]:
        """``(epoch, leader)``: the store's current leader epoch (0 and ``""`` before the
        first election)."""
        return await self._reading(read.leader_epoch, doing="reading the leader epoch")

    # -- reads ---------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        start_version: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
    ) -> list[EventRecord]:
        stream_id = check_stream_id(stream_id)
        start = _clamp(check_start(start_version, "start_version"))
        count = min(check_count(count), MAX_INT8)
        direction = check_direction(direction)
        doing = f"reading stream {stream_id!r}"
        if direction == "forward" and type(start) is int:
            events = await self._reading_here(
                b"exesdb_stream_forward", self._queries.stream_forward_wire, _STREAM_TYPES,
                [int8(start), int8(count), stream_id.encode()],
                lambda rows: read.stream_events(stream_id, rows, start, direction), doing)
            if events is not None:
                return events
        return await self._reading(read.read_stream, stream_id, start, count, direction,
                                   doing=doing)

    async def read_all(
        self,
        from_position: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
        filter: Filter | None = None,
    ) -> list[EventRecord]:
        start = _clamp(check_start(from_position, "from_position"))
        count = min(check_count(count), MAX_INT8)
        direction = check_direction(direction)
        filter = check_filter(filter)
        if (direction == "forward" and type(start) is int
                and (filter is None or not (filter.event_types or filter.stream_prefixes))):
            events = await self._reading_here(
                b"exesdb_all_forward", self._queries.all_forward_wire, _ALL_TYPES,
                [int8(start), int8(count)],
                read.all_events, "reading $all")
            if events is not None:
                return events
        return await self._reading(read.read_all, start, count, direction, filter,
                                   doing="reading $all")

    async def stream_version(self, stream_id: str) -> int:
        stream_id = check_stream_id(stream_id)
        return await self._reading(read.stream_version, stream_id,
                                   doing=f"reading the version of stream {stream_id!r}")

    async def list_streams(self) -> list[str]:
        return await self._reading(read.list_streams, doing="listing streams")

    async def head_position(self) -> int:
        """The position of the last event in ``$all`` as the database has it now (other
        nodes' appends included); advances :attr:`last_position` to it."""
        position = await self._reading(read.head, doing="reading the head position")
        self._engine.saw(position)
        return position

    async def refresh_last_position(self) -> int:
        """Read the store's head from the database, advance :attr:`last_position` to it
        (other nodes append too), and return :attr:`last_position`."""
        await self.head_position()
        return self.last_position

    async def read_snapshot(
        self, source_uuid: str, stream_uuid: str, version: int | None = None
    ) -> Snapshot | None:
        source_uuid, stream_uuid, version = check_snapshot_key(source_uuid, stream_uuid,
                                                               version)
        return await self._reading(read.read_snapshot, source_uuid, stream_uuid, version,
                                   doing="reading a snapshot")

    async def list_snapshots(
        self, source_uuid: str | None = None, stream_uuid: str | None = None
    ) -> list[Snapshot]:
        source_uuid, stream_uuid = check_snapshot_keys(source_uuid, stream_uuid)
        return await self._reading(read.list_snapshots, source_uuid, stream_uuid,
                                   doing="listing snapshots")

    async def read_checkpoint(self, name: str) -> int | None:
        name = check_name(name, "name")
        return await self._reading(read.read_checkpoint, name,
                                   doing=f"reading checkpoint {name!r}")

    async def list_checkpoints(self) -> dict[str, int]:
        return await self._reading(read.list_checkpoints, doing="listing checkpoints")

    async def read_subscription(self, name: str) -> SubscriptionDefinition | None:
        name = check_name(name, "name")
        return await self._reading(read.read_subscription, name,
                                   doing=f"reading subscription {name!r}")

    async def list_subscriptions(self) -> list[SubscriptionDefinition]:
        return await self._reading(read.list_subscriptions, doing="listing subscriptions")

    @property
    def last_position(self) -> int:
        """The highest ``$all`` position this backend knows committed, -1 when none: read
        when it was opened, advanced by each of its writes and by every head it reads
        (no I/O). Other nodes' appends show only after
        :meth:`refresh_last_position`."""
        return self._engine.last_position

    async def stats(self) -> dict[str, int]:
        result = await self._reading(read.stats, doing="counting the store")
        self._engine.saw(result["last_position"])
        return result

    # -- life cycle ----------------------------------------------------------------------

    async def flush(self) -> None:
        """Nothing to do: PostgreSQL checkpoints its WAL by itself."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readers.close()
        try:
            async with self._write_lock:
                await self._writes.run(self._engine.close)
        finally:
            self._writes.stop()

    def __repr__(self) -> str:
        return (f"<PostgresBackend store {self._store_id!r} schema {self.schema!r} "
                f"durable={self.durable}>")


def _open(connector: Connector, queries: Queries, store_id: str) -> tuple[Conn, int]:
    """Connect, create or recognise the schema, read the head; return the connection
    (for writes) and the head position. Runs in a worker thread."""
    conn = connector.connect("writer")
    try:
        prepare(conn, queries, store_id)
        position = read.head(conn, queries)
        conn.rollback()
        return conn, position
    except psycopg.Error as exc:
        error = failure(exc, f"opening store {store_id!r}", conn)
        close_quietly(conn)
        raise error from exc
    except BaseException:
        close_quietly(conn)
        raise
