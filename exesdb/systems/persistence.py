"""PersistenceSystem: the workers that read and write a store's streams, snapshots and
subscription positions, and the periodic flush.

``PersistenceSystem`` (one_for_one, 10 restarts in 60 s) runs:

* :class:`PersistenceWorker`, which asks the storage to flush (checkpoint its write-ahead
  log into the database file) every ``persistence_interval`` ms (ExESDB defect 5: its flush
  was disabled);
* :class:`Streams`: partitioned dynamic supervisors of :class:`StreamsWriterWorker` and
  :class:`StreamsReaderWorker`, one per stream, started on demand, temporary, and ending
  after ``writer_idle_ms`` / ``reader_idle_ms`` idle. A writer worker hands each append
  on to the storage's group-committing writer in arrival order, so one stream's writes
  keep their order while all streams share transactions; a reader worker reads;
* :class:`Snapshots`: the same for snapshots, keyed by (source uuid, stream uuid);
* :class:`Subscriptions`: :class:`SubscriptionsReader` and :class:`SubscriptionsWriter`,
  the durable positions of persistent subscriptions.

Workers answer the original caller directly (``gen_server.forward``), and return errors
of the store (:class:`exesdb.ExESDBError`) as values for the gateway to raise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from typing import Any, ClassVar, Final

import otp
from otp import gen_server, partition_supervisor, supervisor
from otp.supervisor import ChildSpec, StartChildError

from ..errors import ExESDBError
from ..naming import child_spec_id, partition_name
from ..options import StoreOptions
from .processes import StoreServer, StoreSupervisor
from .store import backend_of, writer_name

__all__ = [
    "PersistenceSystem",
    "PersistenceWorker",
    "Snapshots",
    "SnapshotsReaderWorker",
    "SnapshotsWriterWorker",
    "Streams",
    "StreamsReaderWorker",
    "StreamsWriterWorker",
    "Subscriptions",
    "SubscriptionsReader",
    "SubscriptionsWriter",
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
    """Runs reads on the store's storage; ``request`` is ``(method, *args)``."""

    methods: ClassVar[frozenset[str]] = frozenset()

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        method, *args = request
        if method not in self.methods:
            raise ValueError(f"{type(self).__qualname__}: unknown read {method!r}")
        try:
            result = await getattr(backend_of(self.store_id), method)(*args)
        except ExESDBError as exc:
            result = exc
        return otp.Reply(result, timeout=self.idle)


class StreamsWriterWorker(_ForwardingWorker):
    """Serialises the appends and deletes of one stream into the store's writer."""


class StreamsReaderWorker(_ReadingWorker):
    """Reads one stream (or, under the key ``"$all"``, the store-wide order)."""

    methods = frozenset({"read_stream", "read_all", "stream_version", "list_streams",
                         "head_position"})


class SnapshotsWriterWorker(_ForwardingWorker):
    """Serialises the snapshot writes of one (source uuid, stream uuid)."""


class SnapshotsReaderWorker(_ReadingWorker):
    """Reads the snapshots of one (source uuid, stream uuid)."""

    methods = frozenset({"read_snapshot", "list_snapshots"})


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


class SubscriptionsReader(StoreServer):
    """Reads the durable positions of persistent subscriptions: ``("read", name)`` or
    ``("list",)``."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        backend = backend_of(self.store_id)
        try:
            if request[0] == "read":
                return await backend.read_checkpoint(request[1])
            if request[0] == "list":
                return await backend.list_checkpoints()
        except ExESDBError as exc:
            return exc
        raise ValueError(f"SubscriptionsReader: unknown request {request!r}")


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


class PersistenceWorker(StoreServer):
    """Flushes the storage every ``persistence_interval`` ms (and on ``"flush"`` calls)."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.interval = opts.persistence_interval / 1000
        return otp.NoReply(timeout=self.interval)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if request == "flush":
            await self._flush()
            return otp.Reply(None, timeout=self.interval)
        raise ValueError(f"PersistenceWorker: unknown request {request!r}")

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._flush()
        return otp.NoReply(timeout=self.interval)

    async def _flush(self) -> None:
        try:
            await backend_of(self.store_id).flush()
        except ExESDBError as exc:  # the storage restarts; the next flush will do
            log.warning("store %r: flush failed: %s", self.store_id, exc)


class PersistenceSystem(StoreSupervisor):
    """one_for_one, 10 restarts in 60 s: the flush worker, Streams, Snapshots,
    Subscriptions."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [PersistenceWorker.child_spec(opts), Streams.child_spec(opts),
             Snapshots.child_spec(opts), Subscriptions.child_spec(opts)],
            strategy="one_for_one", intensity=10, period=60,
        )
