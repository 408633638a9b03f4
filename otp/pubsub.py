"""pubsub: topics that processes subscribe to, a local Phoenix.PubSub.

A pub/sub is a registry with duplicate keys (see :mod:`otp.registry`) whose keys are
topics: :func:`subscribe` registers the calling process under a topic, and
:func:`broadcast` sends a message to every process registered under it. Because it is a
registry, a subscriber that exits is unsubscribed on its own before its exit can be
observed, and :func:`otp.registry.lookup` on a pub/sub lists a topic's subscribers.

Guarantees:

* Every function but :func:`start_link` is synchronous and never blocks: a broadcast puts
  the message in each subscriber's mailbox before it returns.
* A message is delivered once per subscription: a process that subscribed twice to a
  topic receives each broadcast twice (as in Phoenix.PubSub), and :func:`unsubscribe`
  removes all of its subscriptions to the topic.
* Messages from one broadcaster reach each subscriber in the order they were broadcast.

Example::

    await pubsub.start_link("events")
    pubsub.subscribe("events", "stream:42")
    pubsub.broadcast("events", "stream:42", ("appended", 7))
    msg = await otp.receive()            # ("appended", 7)
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from . import registry
from ._child_spec import ChildSpec
from ._names import Name, Via
from ._process import Pid, current

__all__ = [
    "broadcast",
    "broadcast_from",
    "child_spec",
    "start_link",
    "subscribe",
    "unsubscribe",
]


async def start_link(name: str | Via | None = None) -> Pid:
    """Start a pub/sub linked to the caller under ``name`` (local or via); return its pid.

    A taken name raises :class:`otp.AlreadyStarted`. Without a name, address it by pid.
    """
    return await registry.start_link(keys="duplicate", name=name)


def child_spec(name: str | Via, id: Any = None) -> ChildSpec:
    """A supervisor child spec that starts a pub/sub named ``name`` (the default id)."""
    return registry.child_spec(keys="duplicate", name=name, id=id)


def _pubsub(ps: Name) -> registry._Table:
    table = registry._table(ps)
    if table.is_unique:
        raise ValueError(f"{ps!r} is a registry with unique keys, not a pub/sub")
    return table


def _subscribers(ps: Name, topic: Hashable) -> dict[Pid, list[Any]] | None:
    return _pubsub(ps).duplicate.get(topic)


def subscribe(ps: Name, topic: Hashable) -> None:
    """Subscribe the calling process to ``topic`` until it unsubscribes or exits.

    Every function here raises :class:`otp.registry.UnknownRegistry` (an
    :class:`otp.NoProc`) when ``ps`` is not running, and ``ValueError`` when it is a
    registry with unique keys rather than a pub/sub.
    """
    _pubsub(ps).add_duplicate(current(), topic, None)


def unsubscribe(ps: Name, topic: Hashable) -> None:
    """Remove the calling process's subscriptions to ``topic``; a no-op if it has none."""
    _pubsub(ps).remove(current().pid, topic)


def broadcast(ps: Name, topic: Hashable, msg: Any) -> None:
    """Send ``msg`` to every subscriber of ``topic`` (the caller too, if it subscribed)."""
    subscribers = _subscribers(ps, topic)
    if subscribers is None:
        return
    for pid, subscriptions in subscribers.items():
        proc = pid._proc
        if proc is not None:
            for _ in subscriptions:
                proc.deliver(msg)


def broadcast_from(ps: Name, sender_pid: Pid, topic: Hashable, msg: Any) -> None:
    """Send ``msg`` to every subscriber of ``topic`` except ``sender_pid``."""
    subscribers = _subscribers(ps, topic)
    if subscribers is None:
        return
    for pid, subscriptions in subscribers.items():
        if pid is sender_pid:
            continue
        proc = pid._proc
        if proc is not None:
            for _ in subscriptions:
                proc.deliver(msg)
