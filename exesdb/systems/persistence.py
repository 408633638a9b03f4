"""PersistenceSystem: the workers that read and write a store's streams, snapshots and
subscription positions, and the periodic flush.

``PersistenceSystem`` (one_for_one, 10 restarts in 60 s) runs:

* :class:`PersistenceWorker`, which asks the storage to flush (checkpoint its write-ahead
  log into the database file) every ``persistence_interval`` ms (ExESDB defect 5: its flush
  was disabled);
* :class:`Streams`: partitioned dynamic supervisors of :class:`StreamsWriterWorker` and
  :class:`StreamsReaderWorker`, one per stream, started on demand, temporary, and ending
  after ``writer_idle_ms`` / ``reader_idle_ms`` idle. A writer worker hands each write
  it gets on to the storage's group-committing writer in arrival order, so one stream's
  writes keep their order while all streams share transactions (a gateway worker hands
  appends to that writer itself, see :mod:`exesdb.systems.gateway`: a writer worker
  serves the stream's deletes); a reader worker reads;
* :class:`Snapshots`: the same for snapshots, keyed by (source uuid, stream uuid);
* :class:`Subscriptions`: :class:`SubscriptionsReader` and :class:`SubscriptionsWriter`,
  the durable positions of persistent subscriptions.

Workers answer the original caller directly (``gen_server.forward``), and return errors
of the store (:class:`exesdb.ExESDBError`) as values for the gateway to raise. Their
requests are the frozen classes next to them (:data:`StreamRead`, :data:`SnapshotRead`,
:data:`CheckpointRead`, :class:`Flush`), and the writers take the storage's write
operations (:data:`exesdb.storage.WriteOp`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from typing import Any, Final, TypeAlias, assert_never

import attrs

import otp
from otp import gen_server, partition_supervisor, supervisor
from otp.supervisor import ChildSpec, StartChildError

from ..constants import Direction, End
from ..errors import ExESDBError
from ..events import Filter
from ..naming import child_spec_id, genserver_name, partition_name
from ..options import StoreOptions
from ..storage import Backend
from .processes import StoreServer, StoreSupervisor
from .store import backend_of, writer_name

__all__ = [
    "CheckpointRead",
    "Flush",
    "ListCheckpoints",
    "ListSnapshots",
    "ListStreams",
    "PersistenceRequest",
    "PersistenceSystem",
    "PersistenceWorker",
    "ReadAll",
    "ReadCheckpoint",
    "ReadSnapshot",
    "ReadStream",
    "SnapshotRead",
    "Snapshots",
    "SnapshotsReaderWorker",
    "SnapshotsWriterWorker",
    "StreamRead",
    "StreamVersion",
    "Streams",
    "StreamsReaderWorker",
    "StreamsWriterWorker",
    "Subscriptions",
    "SubscriptionsReader",
    "SubscriptionsWriter",
    "flush",
    "list_checkpoints",
    "read_checkpoint",
    "worker_for",
]

log: Final = logging.getLogger("exesdb.systems.persistence")

PARTITIONS: Final = max(1, min(os.cpu_count() or 1, 4))
"""Dynamic supervisors per worker kind and store."""


# -- per-key workers -------------------------------------------------------------------------


class _KeyedWorker(otp.GenServer):
    """A temporary worker for one key (a stream, a snapshot) that ends when idle."""

    async def init(self, store_id: str, key: Hashable, idle_ms: int) -> Any:
        self.store_id = store_id
        self.key = key
        self.idle = idle_ms / 1000
        self.no_reply = otp.NoReply(timeout=self.idle)
        return self.no_reply

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            return otp.Stop(otp.NORMAL)  # idle: a later request starts a new worker
        return self.no_reply


class _ForwardingWorker(_KeyedWorker):
    """Hands each write on to the store's writer, in arrival order."""

    async def init(self, store_id: str, key: Hashable, idle_ms: int) -> Any:
        self.writer = writer_name(store_id)
        self.writer_pid: otp.Pid | None = None
        return await super().init(store_id, key, idle_ms)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        pid = self.writer_pid
        if pid is None or not otp.is_alive(pid):
            pid = self.writer_pid = otp.whereis(self.writer)
        gen_server.forward(pid if pid is not None else self.writer, request, from_)
        return self.no_reply


class _ReadingWorker(_KeyedWorker):
    """Runs the reads it serves on the store's storage (:meth:`read`); replies with the
    result, or the store's error as a value."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        try:
            result = await self.read(backend_of(self.store_id), request)
        except ExESDBError as exc:
            result = exc
        return otp.Reply(result, timeout=self.idle)

    async def read(self, backend: Backend, request: Any) -> Any:
        """The result of ``request`` on ``backend``; raises ValueError for a request this
        worker does not serve."""
        raise ValueError(f"{type(self).__qualname__}: unknown read {request!r}")


# -- reads of streams ---------------------------------------------------------------------


@attrs.frozen
class ReadStream:
    """Reply: at most ``count`` events of ``stream_id`` from ``start`` (included)."""

    stream_id: str
    start: int | End
    count: int
    direction: Direction


@attrs.frozen
class ReadAll:
    """Reply: at most ``count`` events of ``$all`` passing ``filter``, from
    ``from_position`` (included)."""

    from_position: int | End
    count: int
    direction: Direction
    filter: Filter | None


@attrs.frozen
class StreamVersion:
    """Reply: the number of the stream's last event (-1 for a missing stream)."""

    stream_id: str


@attrs.frozen
class ListStreams:
    """Reply: the ids of the streams that have visible events, sorted."""


StreamRead: TypeAlias = ReadStream | ReadAll | StreamVersion | ListStreams
"""Every request :class:`StreamsReaderWorker` serves."""


class StreamsWriterWorker(_ForwardingWorker):
    """Serialises the writes of one stream handed to it (its deletes; appends go from
    the gateway worker straight to the writer) into the store's writer."""


class StreamsReaderWorker(_ReadingWorker):
    """Reads one stream (or, under the key ``"$all"``, the store-wide order):
    :data:`StreamRead`."""

    async def read(self, backend: Backend, request: Any) -> Any:
        if not isinstance(request, StreamRead):
            return await super().read(backend, request)
        match request:
            case ReadStream(stream_id, start, count, direction):
                return await backend.read_stream(stream_id, start, count, direction)
            case ReadAll(from_position, count, direction, filter):
                return await backend.read_all(from_position, count, direction, filter)
            case StreamVersion(stream_id):
                return await backend.stream_version(stream_id)
            case ListStreams():
                return await backend.list_streams()
            case _:
                assert_never(request)


# -- reads of snapshots -------------------------------------------------------------------


@attrs.frozen
class ReadSnapshot:
    """Reply: the snapshot at exactly ``version`` (the highest when None), or None."""

    source_uuid: str
    stream_uuid: str
    version: int | None


@attrs.frozen
class ListSnapshots:
    """Reply: the snapshots matching the uuids given (None: any), sorted."""

    source_uuid: str | None
    stream_uuid: str | None


SnapshotRead: TypeAlias = ReadSnapshot | ListSnapshots
"""Every request :class:`SnapshotsReaderWorker` serves."""


class SnapshotsWriterWorker(_ForwardingWorker):
    """Serialises the snapshot writes of one (source uuid, stream uuid)."""


class SnapshotsReaderWorker(_ReadingWorker):
    """Reads the snapshots of one (source uuid, stream uuid): :data:`SnapshotRead`."""

    async def read(self, backend: Backend, request: Any) -> Any:
        if not isinstance(request, SnapshotRead):
            return await super().read(backend, request)
        match request:
            case ReadSnapshot(source_uuid, stream_uuid, version):
                return await backend.read_snapshot(source_uuid, stream_uuid, version)
            case ListSnapshots(source_uuid, stream_uuid):
                return await backend.list_snapshots(source_uuid, stream_uuid)
            case _:
                assert_never(request)


def _partitions_spec(owner: type, kind: str, opts: StoreOptions) -> ChildSpec:
    name = partition_name(owner, opts.store_id, kind)

    async def start() -> otp.Pid | None:
        return await partition_supervisor.start_link(partitions=PARTITIONS, name=name,
                                                     intensity=100, period=5)

    return ChildSpec(id=(child_spec_id(owner, opts.store_id), kind), start=start,
                     type="supervisor")


async def worker_for(
    owner: type, kind: str, worker: type[_KeyedWorker], store_id: str, key: Hashable,
    idle_ms: int,
) -> otp.Pid:
    """The running worker of ``key`` (starting it under ``owner``'s ``kind`` partitions)."""
    name = partition_name(worker, store_id, key)
    pid = otp.whereis(name)
    if pid is not None:
        return pid

    async def start(*_extra: Any) -> otp.Pid | None:
        return await gen_server.start_link(worker, store_id, key, idle_ms, name=name)

    spec = ChildSpec(id=key, start=start, restart="temporary", shutdown=5.0)
    try:
        pid = await partition_supervisor.start_child(
            partition_name(owner, store_id, kind), key, spec
        )
    except StartChildError as exc:
        if isinstance(exc.reason, otp.AlreadyStarted):  # another gateway worker won
            return exc.reason.pid  # type: ignore[no-any-return]
        raise
    assert pid is not None
    return pid


class Streams(StoreSupervisor):
    """one_for_one: the partitioned supervisors of the stream writers and readers."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([_partitions_spec(Streams, "writers", opts),
                                _partitions_spec(Streams, "readers", opts)])


class Snapshots(StoreSupervisor):
    """one_for_one: the partitioned supervisors of the snapshot writers and readers."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([_partitions_spec(Snapshots, "writers", opts),
                                _partitions_spec(Snapshots, "readers", opts)])


# -- subscriptions' positions ----------------------------------------------------------------


@attrs.frozen
class ReadCheckpoint:
    """Reply: the stored position of the persistent subscription ``name``, or None."""

    name: str


@attrs.frozen
class ListCheckpoints:
    """Reply: every stored position, as a dict name -> position."""


CheckpointRead: TypeAlias = ReadCheckpoint | ListCheckpoints
"""Every request :class:`SubscriptionsReader` serves."""


class SubscriptionsReader(StoreServer):
    """Reads the durable positions of persistent subscriptions (:data:`CheckpointRead`);
    the store's errors are replied as values."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, CheckpointRead):
            return await super().handle_call(request, from_)
        try:
            backend = backend_of(self.store_id)
            match request:
                case ReadCheckpoint(name):
                    return await backend.read_checkpoint(name)
                case ListCheckpoints():
                    return await backend.list_checkpoints()
                case _:
                    assert_never(request)
        except ExESDBError as exc:
            return exc


async def _reader_call(store_id: str, request: CheckpointRead, timeout: float) -> Any:
    result = await gen_server.call(genserver_name(SubscriptionsReader, store_id), request,
                                   timeout)
    if isinstance(result, ExESDBError):
        raise result
    return result


async def read_checkpoint(store_id: str, name: str, timeout: float = 5.0) -> int | None:
    """The stored position of the persistent subscription ``name`` (None: none), read by
    the store's :class:`SubscriptionsReader`; raises the store's error
    (:class:`exesdb.StoreUnavailable` while its storage restarts)."""
    position: int | None = await _reader_call(store_id, ReadCheckpoint(name), timeout)
    return position


async def list_checkpoints(store_id: str, timeout: float = 5.0) -> dict[str, int]:
    """Every stored position of the store's subscriptions (name -> position), as
    :func:`read_checkpoint` reads them."""
    positions: dict[str, int] = await _reader_call(store_id, ListCheckpoints(), timeout)
    return positions


class SubscriptionsWriter(StoreServer):
    """Writes subscription positions through the store's writer (durable when answered):
    a :class:`~exesdb.storage.SaveCheckpoint` or :class:`~exesdb.storage.DeleteCheckpoint`."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        gen_server.forward(writer_name(self.store_id), request, from_)
        return otp.NoReply()


class Subscriptions(StoreSupervisor):
    """one_for_one: SubscriptionsReader and SubscriptionsWriter."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([SubscriptionsReader.child_spec(opts),
                                SubscriptionsWriter.child_spec(opts)])


# -- the periodic flush ----------------------------------------------------------------------


@attrs.frozen
class Flush:
    """Flush the storage now (:func:`flush`). Reply: None."""


PersistenceRequest: TypeAlias = Flush
"""Every request :class:`PersistenceWorker` serves."""


class PersistenceWorker(StoreServer):
    """Flushes the storage every ``persistence_interval`` ms, and on :class:`Flush`
    (:data:`PersistenceRequest`)."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.interval = opts.persistence_interval / 1000
        return otp.NoReply(timeout=self.interval)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, PersistenceRequest):
            return await super().handle_call(request, from_)
        match request:
            case Flush():
                await self._flush()
                return otp.Reply(None, timeout=self.interval)
            case _:
                assert_never(request)

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._flush()
        return otp.NoReply(timeout=self.interval)

    async def _flush(self) -> None:
        try:
            await backend_of(self.store_id).flush()
        except ExESDBError as exc:  # the storage restarts; the next flush will do
            log.warning("store %r: flush failed: %s", self.store_id, exc)


async def flush(store_id: str, timeout: float = 5.0) -> None:
    """Have the store's :class:`PersistenceWorker` flush its storage now; returns once it
    has (a flush that failed because the storage restarts is logged, not raised)."""
    await gen_server.call(genserver_name(PersistenceWorker, store_id), Flush(), timeout)


class PersistenceSystem(StoreSupervisor):
    """one_for_one, 10 restarts in 60 s: the flush worker, Streams, Snapshots,
    Subscriptions."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [PersistenceWorker.child_spec(opts), Streams.child_spec(opts),
             Snapshots.child_spec(opts), Subscriptions.child_spec(opts)],
            strategy="one_for_one", intensity=10, period=60,
        )
