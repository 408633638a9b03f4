"""Commit notifications: what each write transaction appended, and waiting for the next.

After every transaction that appended events, the store's writer calls
:func:`notify_commit`, which

* moves the store's :class:`CommitSignal` (the last committed ``$all`` position, on which
  tasks wait: the gRPC gateway's catch-up subscriptions and persistent groups), and
* broadcasts a :class:`Committed` message on the store's system pub/sub, topic
  :data:`COMMITS` (what the emitter processes wait on).

A notification is only a wake-up: every reader reads what it delivers from the storage, so
a notification that is missed or coalesced costs latency, never an event. This module sits
below both the writer (:mod:`exesdb.systems.store`) and the readers that wait on it
(:mod:`exesdb.systems.notification.emitters`, :mod:`exesdb.grpc`).
"""

from __future__ import annotations

import contextlib
from typing import Final

import attrs
import trio
from otp.lowlevel import NodeVar

import otp
from otp import pubsub

from .pubsub import pubsub_name

__all__ = [
    "COMMITS",
    "CommitSignal",
    "Committed",
    "commit_signal",
    "notify_commit",
    "storage_opened",
]

COMMITS: Final = "$commits"
"""The topic, on the store's system pub/sub, of the :class:`Committed` messages."""


@attrs.frozen
class Committed:
    """Sent after each write transaction that appended events: the last ``$all``
    position, and the streams and event types it appended to."""

    last_position: int
    streams: frozenset[str]
    types: frozenset[str]


class CommitSignal:
    """The head of a store's ``$all`` (``head``: the last committed position, -1 before
    the first known commit), and the tasks waiting for it to move past a position.

    Guarantees: ``head`` never decreases; :meth:`wait_past` returns as soon as ``head`` is
    greater than the position it was given (at once if it already is), without polling.
    Both methods must be called from the trio thread of the node that owns the signal.
    """

    def __init__(self, head: int = -1) -> None:
        self.head = head
        self._moved = trio.Event()

    def advance(self, position: int) -> None:
        """Record that everything up to ``position`` is committed and wake the waiters
        (a position not past ``head``, e.g. a late notification, changes nothing)."""
        if position <= self.head:
            return
        self.head = position
        moved, self._moved = self._moved, trio.Event()
        moved.set()

    async def wait_past(self, position: int) -> int:
        """Wait until ``head`` is greater than ``position``; return ``head``."""
        while self.head <= position:
            await self._moved.wait()
        return self.head


_signals: NodeVar[dict[str, CommitSignal]] = NodeVar("exesdb.commit_signals", factory=dict)


def commit_signal(store_id: str) -> CommitSignal:
    """The commit signal of ``store_id`` on this node (one per store id and node; it
    outlives restarts of the store's processes, so waiters never miss a wake-up)."""
    table = _signals.get()
    signal = table.get(store_id)
    if signal is None:
        signal = table[store_id] = CommitSignal()
    return signal


def storage_opened(store_id: str, head: int) -> CommitSignal:
    """Called when the store's storage opens with ``head`` as its last position: the
    signal moves to it. A head behind the signal's means another storage under the same
    store id (a new data directory): the store gets a fresh signal, whose waiters are the
    readers started from then on."""
    table = _signals.get()
    signal = table.get(store_id)
    if signal is None or head < signal.head:
        signal = table[store_id] = CommitSignal(head)
    else:
        signal.advance(head)
    return signal


def notify_commit(store_id: str, committed: Committed) -> None:
    """Tell the store's readers on this node that ``committed`` is durable: its signal
    moves, and the emitters get the message (when the store's system pub/sub runs)."""
    commit_signal(store_id).advance(committed.last_position)
    with contextlib.suppress(otp.NoProc):
        pubsub.broadcast(pubsub_name(store_id, "system"), COMMITS, committed)
