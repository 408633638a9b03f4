"""The group-committing writer: a gen_server that owns a backend's writes.

Every write of a store goes through its :class:`Writer`. Guarantees:

* **Group commit**: the writer collects the requests that arrive while a transaction is
  being committed and writes them together in the next transaction (one fsync), at most
  ``max_batch`` per transaction. With no commit in flight a request is written at once.
* **Independent outcomes**: each request's checks (expected version, idempotence) are
  applied on their own, in arrival order, each seeing the effects of the requests before
  it; one failing request fails alone.
* **Acknowledgement after durability**: a caller gets its result only once the transaction
  holding its request is durable (as durable as the backend was opened).
* **Fenced writes**: a request may be a :class:`~exesdb.storage.fencing.Fenced`
  operation (a leader-only write, cluster mode), passed on to the backend as it is; its
  result is the operation's, or :class:`~exesdb.errors.StaleEpoch`. Only a backend
  that fences (:class:`~exesdb.storage.postgres.PostgresBackend`) accepts them.
* Invalid arguments raise :class:`exesdb.InvalidArgument` in the caller, before anything is
  sent. A call that times out (``timeout`` seconds) raises :class:`otp.CallTimeout`; its
  request may still be written, and an idempotent re-send of an append is safe.
* On a normal stop (``SHUTDOWN`` from its supervisor, :func:`otp.gen_server.stop`) the
  writer first commits and answers the requests it holds. The writer does not close the
  backend: whoever opened it does.
* **Failures are logged, not flooded**: a write the backend fails keeps its error's kind
  for the caller (:class:`~exesdb.errors.StorageFull` for a full disk, ...) and is logged
  at ERROR, once per run of failures and then at most every 10 s, with a WARNING when
  writes succeed again (:class:`FailedWrites`).
* **Counted**: each transaction written is counted in the backend's
  :attr:`~exesdb.storage.Backend.counters` (transactions, batch sizes, transaction
  times; per append its wait at the writer, and when it wrote, its events and bytes),
  at a cost of a few adds per transaction and append and one per event.
"""

from __future__ import annotations

import copy as copy_module
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from time import monotonic, perf_counter
from typing import Any, Final

import trio

import otp
from otp.gen_server import From

from ..constants import ANY, ExpectedVersion
from ..errors import ExESDBError, StorageError
from ..events import NewEvent
from .backend import Backend
from .fencing import Fenced
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
from .stats import StorageStats

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_TIMEOUT",
    "Writer",
    "append",
    "delete_checkpoint",
    "delete_snapshot",
    "delete_stream",
    "delete_subscription",
    "record_snapshot",
    "save_checkpoint",
    "save_subscription",
    "start_link",
    "submit",
]

log: Final = logging.getLogger("exesdb.storage.writer")

OnCommit = Callable[[list[WriteOp], list[Any]], None]
"""Called with the operations of a durable transaction and their results."""

DEFAULT_MAX_BATCH: Final = 1000
"""The most requests one transaction holds."""
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a caller waits for its write by default (ExESDB's ``timeout``, 10000 ms)."""

_OPS: Final = frozenset(
    {Append, DeleteStream, RecordSnapshot, DeleteSnapshot, SaveCheckpoint, DeleteCheckpoint,
     SaveSubscription, DeleteSubscription, Fenced}
)


_GATHER: Final = otp.NoReply(timeout=0)


class Writer(otp.GenServer):
    """The gen_server behind :func:`start_link`; requests are write operations
    (:mod:`exesdb.storage.ops`) and replies their results (see the module docstring).

    A request is added to ``pending`` and the writer returns to its mailbox with an idle
    timeout of 0, so every request already waiting there joins ``pending`` too; when the
    mailbox is empty the timeout fires and the writer writes ``pending`` (at most
    ``max_batch`` per transaction) and answers each caller. While it waits for a
    transaction to become durable, new requests pile up in its mailbox: they make the
    next transaction.
    """

    backend: Backend
    max_batch: int
    pending: list[tuple[WriteOp, From, float]]
    """The requests to write, each with the time it arrived (:func:`time.perf_counter`)."""

    async def init(self, backend: Backend, max_batch: int = DEFAULT_MAX_BATCH,
                   on_commit: OnCommit | None = None) -> None:
        if not isinstance(backend, Backend):
            raise TypeError(f"backend must be an exesdb.storage.Backend, got {backend!r}")
        if type(max_batch) is not int or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if on_commit is not None and not callable(on_commit):
            raise TypeError(f"on_commit must be callable, got {on_commit!r}")
        otp.trap_exits(True)
        self.backend = backend
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.pending = []
        self.failures = FailedWrites()

    async def handle_call(self, request: Any, from_: From) -> Any:
        if type(request) not in _OPS:
            raise TypeError(f"exesdb writer: not a write operation: {request!r}")
        pending = self.pending
        pending.append((request, from_, perf_counter()))
        if len(pending) >= self.max_batch:
            await self._commit()
        # Let every request already in the mailbox join the transaction: the idle
        # timeout of 0 fires as soon as the mailbox is empty.
        return _GATHER

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._commit()
        elif type(msg) is not otp.Exit:  # exits of linked processes other than the parent
            log.warning("exesdb writer: unexpected message %r", msg)

    async def terminate(self, reason: Any) -> None:
        await self._commit()

    async def _commit(self) -> None:
        """Write everything pending, ``max_batch`` per transaction, answering each caller
        and counting the transaction in the backend's counters."""
        while self.pending:
            batch = self.pending[: self.max_batch]
            del self.pending[: self.max_batch]
            started = perf_counter()
            written = True
            ops = [op for op, _from, _at in batch]
            try:
                results = await self.backend.write(ops)
            except ExESDBError as exc:  # the kind of storage error is kept (disk full, ...)
                results = [_copy_error(exc) if isinstance(exc, StorageError)
                           else StorageError(str(exc)) for _ in batch]
                written = False
            self.failures.record(self.backend, results)
            done = perf_counter()
            reply = otp.gen_server.reply
            for (_op, from_, _at), result in zip(batch, results, strict=True):
                reply(from_, result)
            if written:
                _count(self.backend.counters, batch, results, done - started, done)
            if self.on_commit is not None:
                self.on_commit(ops, results)


def _copy_error(exc: StorageError) -> StorageError:
    """A copy of ``exc`` for one caller (each caller raises its own), of the same class."""
    try:
        copy: StorageError = copy_module.copy(exc)
    except Exception:
        return StorageError(str(exc))
    copy.__traceback__ = None
    return copy


class FailedWrites:
    """Logs the writes a backend failed (logger ``exesdb.storage.writer``), so a full or
    broken disk shows in the log without flooding it: the first failed write of a run at
    ERROR at once, with the error; then, while writes keep failing, at most one ERROR line
    every ``interval`` seconds with how many failed since; and one WARNING line when a
    write succeeds again. Only storage errors count (a wrong expected version is the
    caller's affair)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.failing = False
        self.unreported = 0
        self.total = 0
        self.last_logged = 0.0

    def record(self, backend: Backend, results: list[Any]) -> None:
        """Note the results of one transaction of ``backend``."""
        failed = [r for r in results if isinstance(r, StorageError)]
        if not failed:
            if self.failing and len(results) > 0:
                log.warning("%r: writes succeed again (%d failed in all)", backend,
                            self.total + self.unreported)
                self.failing = False
                self.unreported = self.total = 0
            return
        now = _now()
        if not self.failing:
            self.failing = True
            self.total = len(failed)
            self.last_logged = now
            log.error("%r: a write failed: %s", backend, failed[0])
            return
        self.unreported += len(failed)
        if now - self.last_logged >= self.interval:
            log.error("%r: %d more writes failed in %.0f s, the last with: %s", backend,
                      self.unreported, now - self.last_logged, failed[-1])
            self.total += self.unreported
            self.unreported = 0
            self.last_logged = now


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio (a test calling record directly)
        return monotonic()


def _count(counters: StorageStats, batch: list[tuple[WriteOp, From, float]],
           results: list[Any], seconds: float, done: float) -> None:
    """Count a durable transaction of ``batch`` that took ``seconds``, answered at
    ``done``: per transaction and per append a few adds, per event one."""
    counters.transactions += 1
    counters.batch_size.observe(len(batch))
    counters.transaction_seconds.observe(seconds)
    latency = counters.append_seconds  # observed inline below: this loop runs per append
    bounds, buckets = latency.bounds, latency.counts
    appends = events_appended = bytes_appended = 0
    waited = 0.0
    for (op, _from, arrived), result in zip(batch, results, strict=True):
        if type(op) is not Append:
            continue
        wait = done - arrived
        buckets[bisect_left(bounds, wait)] += 1
        waited += wait
        if type(result) is Appended:  # events were written (not a re-send, not an error)
            events = op.events
            appends += 1
            events_appended += len(events)
            for event in events:
                encoded = event._encoded
                bytes_appended += len(encoded[4]) + len(encoded[6])
    latency.total += waited
    counters.appends += appends
    counters.events_appended += events_appended
    counters.bytes_appended += bytes_appended


async def start_link(
    backend: Backend, *, name: Any = None, max_batch: int = DEFAULT_MAX_BATCH,
    on_commit: OnCommit | None = None,
) -> otp.Pid:
    """Start a :class:`Writer` for ``backend``, linked to the caller; return its pid.

    ``on_commit(ops, results)``, if given, is called in the writer after each transaction
    is durable and its callers answered (the store uses it to wake its subscriptions); it
    must not block.
    """
    pid = await otp.gen_server.start_link(Writer, backend, max_batch, on_commit, name=name)
    assert pid is not None
    return pid


async def submit(writer: otp.Name, op: WriteOp | Fenced,
                 timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Have ``writer`` write ``op``; return its result or raise the error it failed with."""
    result = await otp.gen_server.call(writer, op, timeout)
    if isinstance(result, BaseException):
        raise result
    return result


async def append(
    writer: otp.Name,
    stream_id: str,
    expected_version: ExpectedVersion,
    events: Iterable[NewEvent],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> int:
    """Append ``events`` to ``stream_id`` through ``writer`` (see
    :meth:`exesdb.storage.Backend.append`); return the new version once durable."""
    result = await otp.gen_server.call(writer, Append(stream_id, expected_version, events),
                                       timeout)
    if isinstance(result, int):
        return result
    raise result


async def delete_stream(
    writer: otp.Name,
    stream_id: str,
    expected_version: ExpectedVersion = ANY,
    *,
    hard: bool = False,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> int:
    """Delete ``stream_id`` through ``writer`` (see
    :meth:`exesdb.storage.Backend.delete_stream`); return the number of its last event."""
    last: int = await submit(writer, DeleteStream(stream_id, expected_version, hard), timeout)
    return last


async def record_snapshot(
    writer: otp.Name,
    source_uuid: str,
    stream_uuid: str,
    version: int,
    data: Any,
    metadata: Any = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> None:
    """Record a snapshot through ``writer``; durable when it returns."""
    await submit(writer, RecordSnapshot(source_uuid, stream_uuid, version, data, metadata),
                 timeout)


async def delete_snapshot(
    writer: otp.Name,
    source_uuid: str,
    stream_uuid: str,
    version: int,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> None:
    """Delete a snapshot through ``writer``, if it exists."""
    await submit(writer, DeleteSnapshot(source_uuid, stream_uuid, version), timeout)


async def save_checkpoint(
    writer: otp.Name, name: str, position: int, *, timeout: float | None = DEFAULT_TIMEOUT
) -> None:
    """Store a subscription checkpoint through ``writer``; durable when it returns."""
    await submit(writer, SaveCheckpoint(name, position), timeout)


async def delete_checkpoint(
    writer: otp.Name, name: str, *, timeout: float | None = DEFAULT_TIMEOUT
) -> None:
    """Delete a subscription checkpoint through ``writer``, if it exists."""
    await submit(writer, DeleteCheckpoint(name), timeout)


async def save_subscription(
    writer: otp.Name,
    name: str,
    type: str,
    selector: str | Mapping[str, Any],
    start_from: int,
    with_subscriber: bool = False,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> None:
    """Store a persistent subscription's definition through ``writer`` (see
    :meth:`exesdb.storage.Backend.save_subscription`); durable when it returns."""
    await submit(writer, SaveSubscription(name, type, selector, start_from, with_subscriber),
                 timeout)


async def delete_subscription(
    writer: otp.Name, name: str, *, timeout: float | None = DEFAULT_TIMEOUT
) -> None:
    """Delete a persistent subscription's definition and checkpoint through ``writer``, if
    they exist."""
    await submit(writer, DeleteSubscription(name), timeout)
