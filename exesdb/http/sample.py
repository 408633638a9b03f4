"""A look at the node and its stores at one moment: what ``/metrics``, the dashboard and
the subscriptions page show.

:func:`sample_node` gathers, on the trio thread, one :class:`StoreSample` per store (its
counters copied, its head, its subscriptions with their lag, its gRPC persistent
subscription groups) and the node's figures (:class:`NodeSample`). It reads counters and
the ``$all`` head in place (no call); subscriptions through
:func:`exesdb.gateway.get_subscriptions` and the store's health monitor
(:func:`exesdb.systems.notification.health`), groups through
:func:`exesdb.grpc.groups.client.list_groups`, each within ``timeout`` seconds: a part
that does not answer is left out (None) and the rest is still reported. The result holds
plain values only, so it may be read on another thread (the metrics render it there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

import otp
from otp.lowlevel import current_node

from ..errors import ExESDBError
from ..gateway import get_subscriptions, list_stores
from ..grpc.groups.client import list_groups
from ..grpc.rpc import RpcError
from ..grpc.stats import GrpcStats, grpc_counters
from ..storage.stats import StorageStats
from ..subscriptions import TRANSIENT
from ..systems.notification import health
from ..systems.notification.leader import canonical_selector
from ..systems.stats import storage_counters
from ..systems.store import backend_of
from .watcher import board

__all__ = ["QUEUE_THRESHOLD", "GroupSample", "NodeSample", "StoreSample",
           "SubscriptionSample", "long_queues", "resident_memory_bytes", "sample_node",
           "sample_store"]

QUEUE_THRESHOLD: Final = 100
"""A mailbox holding this many messages or more is reported (``/metrics``)."""


@attrs.frozen
class SubscriptionSample:
    """One subscription: ``type``, ``selector`` (a stream selector or event type as it
    is, a pattern as JSON), ``name`` (``"transient"`` for
    transient ones), ``kind`` (``"persistent"``/``"transient"``), ``start_from``,
    ``position`` (None before the first event), ``subscriber`` (its pid as text, or None:
    broadcast), and from the health monitor (None when it did not answer): ``head`` (the
    end of ``$all``, or of the stream for a single-stream subscription), ``lag``
    (``head - position``), ``in_flight``, ``running`` and ``subscriber_alive``."""

    type: str
    selector: str
    name: str
    kind: str
    start_from: int
    position: int | None
    subscriber: str | None
    head: int | None = None
    lag: int | None = None
    in_flight: int | None = None
    running: bool | None = None
    subscriber_alive: bool | None = None

    @property
    def key(self) -> str:
        """A unique name in its store: the name of a persistent subscription,
        ``transient:<type>:<selector>:<subscriber>`` for a transient one."""
        if self.kind == "persistent":
            return self.name
        return f"{TRANSIENT}:{self.type}:{self.selector}:{self.subscriber}"


@attrs.frozen
class GroupSample:
    """A gRPC persistent subscription group: ``stream``, ``group``, ``status``,
    ``consumers``, ``in_flight``, ``parked``, ``last_checkpoint``, ``last_known``."""

    stream: str
    group: str
    status: str
    consumers: int
    in_flight: int
    parked: int
    last_checkpoint: int | None
    last_known: int | None


@attrs.frozen
class StoreSample:
    """One store: ``store_id``, ``status`` (``"running"``, ``"restarting"``, or
    ``"stopped"`` for a configured store that does not run), ``head`` (the last ``$all``
    position, -1 when empty; None while its storage is not open), copies of its
    ``storage`` and ``grpc`` counters, its ``subscriptions`` and ``groups`` (None when
    they could not be read; groups also when the store serves no gRPC)."""

    store_id: str
    status: str
    head: int | None
    storage: StorageStats
    grpc: GrpcStats
    subscriptions: tuple[SubscriptionSample, ...] | None
    groups: tuple[GroupSample, ...] | None


@attrs.frozen
class NodeSample:
    """The node: ``processes`` (running now), ``tree_restarts`` (per supervisor path, as the
    tree watcher observed them), ``memory_bytes`` (resident set size; None where the
    system does not tell), its ``stores``, and ``long_queues``: the processes of the tree
    (by path) whose mailbox holds at least :data:`QUEUE_THRESHOLD` messages, as
    ``otp.process_info`` tells."""

    processes: int
    tree_restarts: dict[str, int]
    memory_bytes: int | None
    stores: tuple[StoreSample, ...]
    long_queues: dict[str, int] = attrs.field(factory=dict)


def resident_memory_bytes() -> int | None:
    """This OS process's resident set size (Linux ``/proc/self/statm``), or None.
    Blocking: call it in a thread."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


async def sample_node(stores: Sequence[str] | None = None, timeout: float = 5.0,
                      detail: bool = True) -> NodeSample:
    """The node and ``stores`` (None: every store running on the node), each store's
    calls within ``timeout`` seconds; ``detail=False`` leaves subscriptions and groups
    out (cheaper: counters and heads only)."""
    statuses = {info.store_id: info.status for info in await list_stores()}
    ids = list(statuses) if stores is None else list(stores)
    samples: list[StoreSample | None] = [None] * len(ids)

    async def one(index: int, store_id: str) -> None:
        samples[index] = await sample_store(store_id, statuses.get(store_id, "stopped"),
                                            timeout, detail)

    async with trio.open_nursery() as nursery:
        for index, store_id in enumerate(ids):
            nursery.start_soon(one, index, store_id)
        memory = await trio.to_thread.run_sync(resident_memory_bytes)
    return NodeSample(processes=len(current_node().processes),
                      tree_restarts=dict(board().restarts), memory_bytes=memory,
                      stores=tuple(s for s in samples if s is not None),
                      long_queues=long_queues())


def long_queues(threshold: int | None = None) -> dict[str, int]:
    """The processes of the node's tree (as the tree watcher last saw it, by path) whose
    mailbox holds at least ``threshold`` (:data:`QUEUE_THRESHOLD`) messages.

    It reads them with ``otp.process_info`` (None for a process that has ended)."""
    snapshot = board().snapshot
    if snapshot is None:
        return {}
    limit = QUEUE_THRESHOLD if threshold is None else threshold
    out: dict[str, int] = {}
    for node in snapshot.walk():
        if node.pid is None:
            continue
        info = otp.process_info(node.pid)
        length = getattr(info, "message_queue_len", None) if info is not None else None
        if isinstance(length, int) and length >= limit:
            out[node.path] = length
    return out


async def sample_store(store_id: str, status: str, timeout: float = 5.0,
                       detail: bool = True) -> StoreSample:
    """One store (see :class:`StoreSample`); ``status`` as :func:`exesdb.gateway.list_stores`
    says."""
    try:
        head: int | None = backend_of(store_id).last_position
    except (ExESDBError, otp.OTPError):
        head = None
    subscriptions = groups = None
    if detail and status != "stopped":
        with trio.move_on_after(timeout):
            subscriptions = await _subscriptions(store_id, timeout)
        with trio.move_on_after(timeout):
            groups = await _groups(store_id)
    return StoreSample(store_id, status, head, storage_counters(store_id).copy(),
                       grpc_counters(store_id).copy(), subscriptions, groups)


async def _subscriptions(store_id: str, timeout: float) -> tuple[SubscriptionSample, ...] | None:
    try:
        listed = await get_subscriptions(store_id)
    except (ExESDBError, otp.OTPError):
        return None
    try:
        report: dict[str, dict[str, Any]] = await health(store_id, timeout)
    except (ExESDBError, otp.OTPError):
        report = {}
    out = []
    for sub in listed:
        kind = "transient" if sub.name == TRANSIENT else "persistent"
        subscriber = None if sub.subscriber is None else repr(sub.subscriber)
        key = sub.name if kind == "persistent" else (  # as the health monitor keys it
            f"{TRANSIENT}:{sub.type}:{canonical_selector(sub.selector)}:{sub.subscriber!r}")
        selector = (sub.selector if isinstance(sub.selector, str)
                    else json.dumps(sub.selector, sort_keys=True, ensure_ascii=False))
        entry = report.get(key, {})
        out.append(SubscriptionSample(
            type=sub.type, selector=selector, name=sub.name, kind=kind,
            start_from=sub.start_from, position=sub.position, subscriber=subscriber,
            head=entry.get("head"), lag=entry.get("lag"), in_flight=entry.get("in_flight"),
            running=entry.get("running"), subscriber_alive=entry.get("subscriber_alive")))
    return tuple(out)


async def _groups(store_id: str) -> tuple[GroupSample, ...] | None:
    try:
        infos = await list_groups(store_id)
    except (RpcError, ExESDBError, otp.OTPError):
        return None  # no gRPC gateway, or its groups are restarting
    return tuple(GroupSample(
        stream=info.config.stream, group=info.config.group, status=info.status,
        consumers=len(info.connections), in_flight=info.in_flight, parked=info.parked,
        last_checkpoint=info.last_checkpoint, last_known=info.last_known) for info in infos)
