"""The storage backend interface: what any backend (SQLite now, PostgreSQL later) provides.

A backend stores one store's events, streams, snapshots, checkpoints and persistent
subscription definitions. All methods are async and never block the trio thread, except
the :attr:`Backend.last_position` property, which does no I/O. Writes go through
:meth:`Backend.write`, which runs a list of operations in one transaction: the
convenience methods (``append``, ``delete_stream``, ...) each write one operation. In a
store, a single writer process (:mod:`exesdb.storage.writer`) calls ``write`` so that
concurrent appends share transactions; reads call the backend directly and may run
concurrently with writes.

Guarantees every backend gives:

* **Atomicity**: each operation of a ``write`` is all or nothing, its checks (expected
  version, idempotence) and its writes happen in the same transaction, and an operation
  whose check fails changes nothing. Operations of one ``write`` are applied in order and
  see each other's effects.
* **Durability**: when ``write`` returns, its transaction is on disk (fsynced) if the
  backend was opened ``durable`` (the default).
* **Order**: ``$all`` positions are integers >= 0, strictly increasing in commit order
  and never reused; within a stream, event numbers run 0, 1, 2, ... without gaps.
* **Integrity**: a read either returns exactly what was written or raises
  :class:`exesdb.StorageError`; it never returns damaged data.
* **Reads** see every write whose ``write`` returned before the read started, and each
  read sees one consistent state of the store.

Errors: :class:`exesdb.InvalidArgument` for arguments breaking a rule (before anything
happens), :class:`exesdb.WrongExpectedVersion` and :class:`exesdb.StreamDeleted` per the
rules in :mod:`exesdb.storage.rules`, :class:`exesdb.StorageError` for I/O failures,
corruption and use after :meth:`Backend.close`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..constants import ANY, DEFAULT_COUNT, Direction, End, ExpectedVersion
from ..events import EventRecord, Filter, NewEvent, Snapshot
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
from .stats import StorageStats

__all__ = ["Backend"]


def _raise_or_return(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


class Backend(abc.ABC):
    """A store's storage. See the module docstring for the guarantees."""

    # -- writes --------------------------------------------------------------------------

    @abc.abstractmethod
    async def write(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Run ``ops`` in order in one transaction; return one result per operation.

        A result is the operation's value (an :class:`~exesdb.storage.ops.Append`'s new
        version, None for the others) or the :class:`exesdb.ExESDBError` instance that
        operation failed with; a failed operation changes nothing and does not affect the
        others. Returns once the transaction is durable. If the storage fails the shared
        transaction, the operations are retried one transaction each, so only those that
        cannot be written get a :class:`exesdb.StorageError`; a closed store raises it.
        """

    async def append(
        self, stream_id: str, expected_version: ExpectedVersion, events: Iterable[NewEvent]
    ) -> int:
        """Append ``events`` to ``stream_id`` if ``expected_version`` holds; return the
        new version (the number of the last event written). See
        :mod:`exesdb.storage.rules` for the expected-version and idempotence rules."""
        op = Append(stream_id, expected_version, events)
        return _raise_or_return((await self.write([op]))[0])  # type: ignore[no-any-return]

    async def delete_stream(
        self, stream_id: str, expected_version: ExpectedVersion = ANY, hard: bool = False
    ) -> int:
        """Delete ``stream_id``: soft by default (it reads as missing, not listed, version
        -1; a later append continues its numbering), or ``hard`` (reads, appends and
        versions raise :class:`exesdb.StreamDeleted` for good). Its events stay in
        ``$all``. Returns the number of its last event ever written (-1 when none)."""
        op = DeleteStream(stream_id, expected_version, hard)
        return _raise_or_return((await self.write([op]))[0])  # type: ignore[no-any-return]

    async def record_snapshot(
        self, source_uuid: str, stream_uuid: str, version: int, data: Any,
        metadata: Any = None,
    ) -> None:
        """Record the snapshot of ``(source_uuid, stream_uuid, version)``, replacing any;
        durable when it returns."""
        op = RecordSnapshot(source_uuid, stream_uuid, version, data, metadata)
        _raise_or_return((await self.write([op]))[0])

    async def delete_snapshot(self, source_uuid: str, stream_uuid: str, version: int) -> None:
        """Delete the snapshot of ``(source_uuid, stream_uuid, version)``, if any."""
        _raise_or_return(
            (await self.write([DeleteSnapshot(source_uuid, stream_uuid, version)]))[0]
        )

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Store ``position`` under the checkpoint ``name``; durable when it returns."""
        _raise_or_return((await self.write([SaveCheckpoint(name, position)]))[0])

    async def delete_checkpoint(self, name: str) -> None:
        """Delete the checkpoint ``name``, if any."""
        _raise_or_return((await self.write([DeleteCheckpoint(name)]))[0])

    async def save_subscription(
        self, name: str, type: str, selector: str | Mapping[str, Any], start_from: int,
        with_subscriber: bool = False,
    ) -> None:
        """Store the definition of the persistent subscription ``name``, replacing any,
        without touching its checkpoint; durable when it returns. See
        :class:`~exesdb.storage.SaveSubscription` for the arguments."""
        op = SaveSubscription(name, type, selector, start_from, with_subscriber)
        _raise_or_return((await self.write([op]))[0])

    async def delete_subscription(self, name: str) -> None:
        """Delete the definition of the persistent subscription ``name`` and its
        checkpoint in one transaction, if they exist."""
        _raise_or_return((await self.write([DeleteSubscription(name)]))[0])

    # -- reads ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def read_stream(
        self,
        stream_id: str,
        start_version: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
    ) -> list[EventRecord]:
        """At most ``count`` events of ``stream_id`` from ``start_version`` (included),
        forward or backward.

        A missing or soft-deleted stream reads as empty; a hard-deleted one raises
        :class:`exesdb.StreamDeleted`. ``END`` starts backward reads at the last event and
        makes forward reads empty; a backward start past the end starts at the end.
        """

    @abc.abstractmethod
    async def read_all(
        self,
        from_position: int | End = 0,
        count: int = DEFAULT_COUNT,
        direction: Direction = "forward",
        filter: Filter | None = None,
    ) -> list[EventRecord]:
        """At most ``count`` events of ``$all`` passing ``filter``, from ``from_position``
        (included: forward reads positions >= it, backward <= it). ``END`` as for
        :meth:`read_stream`. Events of deleted streams stay in ``$all``."""

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The number of the stream's last visible event, -1 for a missing or soft-deleted
        stream; raises :class:`exesdb.StreamDeleted` for a hard-deleted one."""

    @abc.abstractmethod
    async def list_streams(self) -> list[str]:
        """The ids of the streams that have visible events, sorted."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The position of the last event in ``$all``, -1 when the store is empty."""

    @abc.abstractmethod
    async def read_snapshot(
        self, source_uuid: str, stream_uuid: str, version: int | None = None
    ) -> Snapshot | None:
        """The snapshot at exactly ``version``, or the highest version when None; None
        when there is none."""

    @abc.abstractmethod
    async def list_snapshots(
        self, source_uuid: str | None = None, stream_uuid: str | None = None
    ) -> list[Snapshot]:
        """The snapshots matching the given keys, sorted by (source, stream, version)."""

    @abc.abstractmethod
    async def read_checkpoint(self, name: str) -> int | None:
        """The position stored under ``name``, or None."""

    @abc.abstractmethod
    async def list_checkpoints(self) -> dict[str, int]:
        """Every checkpoint: name -> position."""

    @abc.abstractmethod
    async def read_subscription(self, name: str) -> SubscriptionDefinition | None:
        """The definition of the persistent subscription ``name``, or None."""

    @abc.abstractmethod
    async def list_subscriptions(self) -> list[SubscriptionDefinition]:
        """Every persistent subscription definition, sorted by name."""

    @property
    @abc.abstractmethod
    def last_position(self) -> int:
        """The ``$all`` position of the last event committed through this backend (or
        found in the store when it was opened), -1 when the store is empty.

        Synchronous and free of I/O, so safe to read on the trio thread: once a ``write``
        has returned, it is at least the position of that write's last event.
        """

    @abc.abstractmethod
    async def stats(self) -> dict[str, int]:
        """``streams`` (with visible events), ``events`` (in ``$all``) and
        ``last_position`` (-1 when empty)."""

    _counters: StorageStats | None = None

    @property
    def counters(self) -> StorageStats:
        """What this storage has done (:class:`~exesdb.storage.stats.StorageStats`): the
        writer counts its transactions there, a backend that measures them its commits
        and reads. A fresh one per backend unless a store gives its own (set it), so that
        a store's counts outlive a reopening of its storage."""
        if self._counters is None:
            self._counters = StorageStats()
        return self._counters

    @counters.setter
    def counters(self, value: StorageStats) -> None:
        self._counters = value

    # -- life cycle ----------------------------------------------------------------------

    @abc.abstractmethod
    async def flush(self) -> None:
        """Move what the storage holds in its log into its main file (a periodic
        housekeeping step: acknowledged writes are already durable without it)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the storage; later calls raise :class:`exesdb.StorageError`.
        Idempotent."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

