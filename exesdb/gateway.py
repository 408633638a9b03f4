"""The API of a store, store id first as in ExESDB: every function is async and goes to a
gateway worker of the store it names, but appends, which go straight to the store's
group-committing writer while it runs (see :mod:`exesdb.systems.gateway`).

Guarantees:

* A store that is not running raises :class:`exesdb.StoreNotFound`; while part of a store
  restarts a call either completes or raises :class:`exesdb.StoreUnavailable` (retry it),
  and no call waits longer than the store's ``timeout`` option.
* Invalid arguments raise :class:`exesdb.InvalidArgument` before anything is sent.
* An append or delete is acknowledged once durable (unless the store runs with
  ``durable=False``); the expected-version, idempotence and delete rules are the storage
  engine's (see :mod:`exesdb.storage.rules`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import trio

import otp
from otp.lowlevel import NodeVar

from .constants import ANY, DEFAULT_COUNT, END, Direction, End, ExpectedVersion
from .errors import (
    ExESDBError,
    InvalidArgument,
    StorageUnavailable,
    StoreNotFound,
    StoreUnavailable,
)
from .events import EventRecord, Filter, NewEvent, Snapshot
from .naming import REGISTRY
from .options import StoreOptions, validate_store_id
from .storage.ops import Append, DeleteSnapshot, DeleteStream, RecordSnapshot
from .subscriptions import TRANSIENT, Events, Subscription, SubscriptionLost, validate
from .systems import system_name
from .systems.gateway import (
    GatewayRequest,
    Route,
    ToTracker,
    gateway_worker_name,
    store_writer,
)
from .systems.notification.leader import (
    AckEvent,
    Detach,
    ListSubscriptions,
    Subscribe,
    Unsubscribe,
    transient_key,
)
from .systems.persistence import (
    ListSnapshots,
    ListStreams,
    ReadAll,
    ReadSnapshot,
    ReadStream,
    StreamVersion,
)
from .systems.pubsub import pubsub_name
from .systems.store import Store, StoreInfo, node_stores, registered_stores
from .validation import (
    check_count,
    check_direction,
    check_filter,
    check_name,
    check_snapshot_key,
    check_snapshot_keys,
    check_start,
    check_stream_id,
)

__all__ = [
    "ack_event",
    "append_events",
    "delete_snapshot",
    "delete_stream",
    "get_events",
    "get_streams",
    "get_subscriptions",
    "get_version",
    "list_snapshots",
    "list_stores",
    "pubsub",
    "read_all",
    "read_snapshot",
    "record_snapshot",
    "remove_subscription",
    "save_subscription",
    "stream_backward",
    "stream_forward",
    "subscribe",
]

_ALL = "$all"  # the reader key of the store-wide order; no stream is named "$all"
_STREAMS = "$streams"
_rotation = itertools.count()


def _store(store_id: str) -> StoreOptions:
    opts = node_stores().get(store_id)
    if opts is not None:
        return opts
    validate_store_id(store_id)
    if otp.whereis(REGISTRY) is None or otp.whereis(system_name(store_id)) is None:
        raise StoreNotFound(store_id)
    raise StoreUnavailable(store_id, "its registration is restarting")


# store id -> the last known pid of each gateway worker (checked alive before each use)
_gateway_pids: NodeVar[dict[str, list[otp.Pid | None]]] = NodeVar("exesdb.gateway_pids",
                                                                  factory=dict)


def _gateway_worker(store_id: str, size: int) -> otp.Pid:
    table = _gateway_pids.get()
    pids = table.get(store_id)
    if pids is None or len(pids) != size:
        pids = table[store_id] = [None] * size
    first = next(_rotation) % size
    for i in range(size):
        index = (first + i) % size
        pid = pids[index]
        if pid is not None and otp.is_alive(pid):
            return pid
        pid = pids[index] = otp.whereis(gateway_worker_name(store_id, index))
        if pid is not None:
            return pid
    raise StoreUnavailable(store_id, "no gateway worker is running")


async def _request(store_id: str, request: GatewayRequest) -> Any:
    """Send ``request`` through a gateway worker of the store (every call of this module
    goes through here) and return the reply; an error of the store is raised, and a
    gateway worker that is gone or does not answer within the store's ``timeout`` raises
    :class:`exesdb.StoreUnavailable`, as does a storage that lost its database
    (:class:`~exesdb.errors.StorageUnavailable`, cluster mode: retry)."""
    opts = _store(store_id)
    worker = _gateway_worker(store_id, opts.gateway_pool_size)
    return await _call(store_id, worker, request, opts.timeout_s)


async def _call(store_id: str, pid: otp.Pid, request: Any, timeout: float) -> Any:
    """The reply of ``pid`` to ``request``, with the errors of :func:`_request`."""
    try:
        result = await otp.gen_server.call(pid, request, timeout)
    except (otp.NoProc, otp.ServerExited, otp.CallTimeout) as exc:
        raise StoreUnavailable(store_id, str(exc)) from None
    if isinstance(result, StorageUnavailable):
        raise StoreUnavailable(store_id, str(result)) from result
    if isinstance(result, ExESDBError):
        raise result
    return result


# -- streams -------------------------------------------------------------------------------


async def append_events(
    store_id: str, stream_id: str, events: Iterable[NewEvent],
    expected_version: ExpectedVersion = ANY,
) -> int:
    """Append ``events`` to ``stream_id`` if ``expected_version`` holds; return the new
    version (the number of the last event written). Raises
    :class:`exesdb.WrongExpectedVersion` or :class:`exesdb.StreamDeleted`."""
    op = Append(stream_id, expected_version, events)
    opts = node_stores().get(store_id)
    writer = None if opts is None else store_writer(store_id)
    if opts is None or writer is None:  # not running: the gateway's errors
        version: int = await _request(store_id, Route("stream_writer", op.stream_id, op))
    else:  # what a gateway worker would do, one process hop sooner
        version = await _call(store_id, writer, op, opts.timeout_s)
    return version


async def get_events(
    store_id: str, stream_id: str, start_version: int | End = 0, count: int = DEFAULT_COUNT,
    direction: Direction = "forward",
) -> list[EventRecord]:
    """At most ``count`` events of ``stream_id`` from ``start_version`` (included); a
    missing stream reads as empty."""
    stream_id = check_stream_id(stream_id)
    read = ReadStream(stream_id, check_start(start_version), check_count(count),
                      check_direction(direction))
    result: list[EventRecord] = await _request(store_id,
                                               Route("stream_reader", stream_id, read))
    return result


async def stream_forward(
    store_id: str, stream_id: str, start_version: int | End = 0, batch_size: int = 1000,
) -> AsyncIterator[EventRecord]:
    """Yield the stream's events one by one from ``start_version``, reading in batches."""
    check_count(batch_size, "batch_size")
    next_version = check_start(start_version)
    if next_version is END:
        return
    while True:
        batch = await get_events(store_id, stream_id, next_version, batch_size, "forward")
        for event in batch:
            yield event
        if len(batch) < batch_size:
            return
        next_version = batch[-1].event_number + 1


async def stream_backward(
    store_id: str, stream_id: str, start_version: int | End = END, batch_size: int = 1000,
) -> AsyncIterator[EventRecord]:
    """Yield the stream's events one by one, newest first, from ``start_version``."""
    check_count(batch_size, "batch_size")
    next_version = check_start(start_version)
    while True:
        batch = await get_events(store_id, stream_id, next_version, batch_size, "backward")
        for event in batch:
            yield event
        if len(batch) < batch_size or batch[-1].event_number == 0:
            return
        next_version = batch[-1].event_number - 1


async def read_all(
    store_id: str, from_position: int | End = 0, count: int = DEFAULT_COUNT,
    direction: Direction = "forward", filter: Filter | None = None,
) -> list[EventRecord]:
    """At most ``count`` events of ``$all`` passing ``filter``, from ``from_position``
    (included)."""
    read = ReadAll(check_start(from_position, "from_position"), check_count(count),
                   check_direction(direction), check_filter(filter))
    result: list[EventRecord] = await _request(store_id, Route("stream_reader", _ALL, read))
    return result


async def get_streams(store_id: str) -> list[str]:
    """The ids of the streams that have visible events, sorted."""
    result: list[str] = await _request(store_id,
                                       Route("stream_reader", _STREAMS, ListStreams()))
    return result


async def get_version(store_id: str, stream_id: str) -> int:
    """The number of the stream's last event; -1 for a missing or soft-deleted stream."""
    stream_id = check_stream_id(stream_id)
    result: int = await _request(store_id, Route("stream_reader", stream_id,
                                                 StreamVersion(stream_id)))
    return result


async def delete_stream(
    store_id: str, stream_id: str, expected_version: ExpectedVersion = ANY, hard: bool = False,
) -> int:
    """Delete ``stream_id``: soft (reads as missing; a later append continues its
    numbering) or ``hard`` (gone for good). Its events stay in ``$all``. Returns the
    number of the stream's last event ever written, soft-deleted ones included (-1 when
    it never had one)."""
    op = DeleteStream(stream_id, expected_version, hard)
    last: int = await _request(store_id, Route("stream_writer", op.stream_id, op))
    return last


# -- snapshots -------------------------------------------------------------------------------


async def record_snapshot(
    store_id: str, source_uuid: str, stream_uuid: str, version: int, record: Any,
    metadata: Any = None,
) -> None:
    """Record the snapshot of (source, stream) at ``version``; durable when it returns
    (recording a version again replaces it)."""
    op = RecordSnapshot(source_uuid, stream_uuid, version, record, metadata)
    await _request(store_id, Route("snapshot_writer", (op.source_uuid, op.stream_uuid), op))


async def read_snapshot(
    store_id: str, source_uuid: str, stream_uuid: str, version: int | None = None,
) -> Snapshot | None:
    """The snapshot at exactly ``version``, or the highest version when None; None when
    there is none."""
    source_uuid, stream_uuid, version = check_snapshot_key(source_uuid, stream_uuid, version)
    result: Snapshot | None = await _request(store_id, Route(
        "snapshot_reader", (source_uuid, stream_uuid),
        ReadSnapshot(source_uuid, stream_uuid, version)))
    return result


async def delete_snapshot(
    store_id: str, source_uuid: str, stream_uuid: str, version: int,
) -> None:
    """Delete the snapshot of (source, stream) at ``version``, if any."""
    op = DeleteSnapshot(source_uuid, stream_uuid, version)
    await _request(store_id, Route("snapshot_writer", (op.source_uuid, op.stream_uuid), op))


async def list_snapshots(
    store_id: str, source_uuid: str | None = None, stream_uuid: str | None = None,
) -> list[Snapshot]:
    """The snapshots matching the given uuids, sorted by (source, stream, version)."""
    source_uuid, stream_uuid = check_snapshot_keys(source_uuid, stream_uuid)
    result: list[Snapshot] = await _request(store_id, Route(
        "snapshot_reader", ("$list", source_uuid, stream_uuid),
        ListSnapshots(source_uuid, stream_uuid)))
    return result


# -- subscriptions ---------------------------------------------------------------------------


async def save_subscription(
    store_id: str, type: str, selector: Any, name: str = TRANSIENT, start_from: int = 0,
    subscriber: otp.Pid | None = None,
) -> None:
    """Create a subscription, or update the subscriber of an existing persistent one.

    Events from ``start_from`` (included) on go to ``subscriber`` as
    :class:`exesdb.Events` messages, or, with no subscriber, are broadcast on the store's
    events pub/sub (see :mod:`exesdb.subscriptions`). A persistent subscription that
    exists keeps its stored position (``start_from`` applies only when it is created).
    Raises :class:`exesdb.InvalidArgument` for a bad type, selector, name or start.
    """
    selector = validate(type, selector, name, start_from)
    if subscriber is not None and not isinstance(subscriber, otp.Pid):
        raise InvalidArgument(f"subscriber: must be a pid or None, got {subscriber!r}")
    await _request(store_id, ToTracker(Subscribe(type, selector, name, start_from,
                                                 subscriber)))


async def remove_subscription(
    store_id: str, type: str, selector: Any, name: str = TRANSIENT,
    subscriber: otp.Pid | None = None,
) -> None:
    """Remove a persistent subscription (and its stored position), or the transient ones
    of that type and selector (of ``subscriber``, or all of them when None).

    Raises :class:`exesdb.SubscriptionNotFound` for an unknown persistent name.
    """
    selector = validate(type, selector, name, 0)
    await _request(store_id, ToTracker(Unsubscribe(type, selector, name, subscriber)))


async def get_subscriptions(store_id: str) -> list[Subscription]:
    """Every subscription of the store (the default ``"all-events"`` one included)."""
    result: list[Subscription] = await _request(store_id, ToTracker(ListSubscriptions()))
    return result


async def ack_event(store_id: str, name: str, subscriber: otp.Pid | None,
                    event: EventRecord) -> None:
    """Acknowledge, as ``subscriber``, ``event`` and every earlier one of the persistent
    subscription ``name``: its stored position moves there (durably) and they are not
    delivered again. Does nothing for a transient subscription; raises
    :class:`exesdb.SubscriptionNotFound` for an unknown name, and
    :class:`exesdb.InvalidArgument` when ``subscriber`` is not the subscription's
    subscriber (None for one that broadcasts)."""
    check_name(name, "name")
    if subscriber is not None and not isinstance(subscriber, otp.Pid):
        raise InvalidArgument(f"subscriber: must be a pid or None, got {subscriber!r}")
    if not isinstance(event, EventRecord):
        raise InvalidArgument(f"event: must be an exesdb.EventRecord, got {event!r}")
    await _request(store_id, ToTracker(AckEvent(name, subscriber, event)))


@contextlib.asynccontextmanager
async def subscribe(
    store_id: str, type: str, selector: Any, name: str = TRANSIENT, start_from: int = 0,
) -> AsyncIterator[AsyncIterator[EventRecord]]:
    """Subscribe the calling process and iterate over the events, in order::

        async with gateway.subscribe("orders", "by_stream", "$all") as events:
            async for event in events:
                ...

    A persistent subscription (any name but ``"transient"``) is acknowledged as the loop
    advances (once all events of a delivered batch were taken), so leaving the loop early
    redelivers what was not acknowledged. On exit a transient subscription is removed and
    a persistent one waits for its next subscriber. The loop takes only its own
    subscription's events, even beside other subscriptions of the same process.

    A transient subscription that ends with the store's core
    (:class:`exesdb.SubscriptionLost`) makes the loop raise
    :class:`exesdb.StoreUnavailable`: subscribe again, from after the last event taken.
    """
    me = otp.self()
    await save_subscription(store_id, type, selector, name, start_from, me)
    key = name if name != TRANSIENT else transient_key(
        type, validate(type, selector, name, start_from), me)
    try:
        yield _receive_events(store_id, name, key, me)
    finally:
        # A store that stopped or restarts meanwhile has nothing to undo (a transient
        # subscription ends with the store): do not hide the loop's own outcome.
        with trio.CancelScope(shield=True), contextlib.suppress(ExESDBError):
            if name == TRANSIENT:
                await remove_subscription(store_id, type, selector, name, me)
            else:
                await _request(store_id, ToTracker(Detach(name, me)))


async def _receive_events(store_id: str, name: str, key: Any,
                          me: otp.Pid) -> AsyncIterator[EventRecord]:
    """The events of the subscription ``key`` (named ``name``) delivered to ``me``."""
    persistent = name != TRANSIENT
    while True:
        batch = await otp.receive(match=lambda m: (type(m) is Events and m.key == key)
                                  or _lost(m, store_id, key, me))
        if type(batch) is SubscriptionLost:
            raise StoreUnavailable(store_id, f"the subscription ended with the store's core "
                                   f"({batch.reason!r}): subscribe again")
        for event in batch.events:
            yield event
        if persistent and batch.events:
            await ack_event(store_id, name, me, batch.events[-1])


def _lost(msg: Any, store_id: str, key: Any, me: otp.Pid) -> bool:
    """Whether ``msg`` tells ``me`` that its transient subscription ``key`` ended."""
    return (type(msg) is SubscriptionLost and msg.store_id == store_id
            and transient_key(msg.type, msg.selector, me) == key)


# -- stores ----------------------------------------------------------------------------------


async def list_stores() -> list[StoreInfo]:
    """The stores running on this node, by store id: ``"running"``, or ``"restarting"``
    while their storage or a gateway worker is restarting."""
    if otp.whereis(REGISTRY) is None:
        return []
    out = []
    for opts in registered_stores():
        if otp.whereis(system_name(opts.store_id)) is None:
            continue
        healthy = otp.whereis(otp.registry.via(REGISTRY, (opts.store_id, Store))) is not None
        healthy = healthy and all(
            otp.whereis(gateway_worker_name(opts.store_id, i)) is not None
            for i in range(opts.gateway_pool_size)
        )
        out.append(StoreInfo(store_id=opts.store_id, data_dir=os.fspath(opts.store_dir),
                             options=opts.as_dict(),
                             status="running" if healthy else "restarting"))
    return out


async def pubsub(store_id: str) -> Any:
    """The name of the store's events pub/sub (subscriptions without a subscriber
    broadcast there)."""
    _store(store_id)
    return pubsub_name(store_id, "events")
