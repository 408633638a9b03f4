"""Commit notifications, and the one catch-up-then-live loop that reads after them.

After every transaction that appended events, the store's writer calls
:func:`notify_commit`, which

* moves the store's :class:`CommitSignal` (the last committed ``$all`` position, on which
  tasks wait: the gRPC gateway's catch-up subscriptions and persistent groups), and
* broadcasts a :class:`Committed` message on the store's system pub/sub, topic
  :data:`COMMITS` (what the emitter processes wait on), and
* moves the place of each emitter that broadcasts to nobody (:func:`hush`): such an
  emitter leaves the topic, and the commits move its place instead of waking it, until a
  listener appears (it is then sent the commit that found the listener).

A notification is only a wake-up: every reader reads what it delivers from the storage, so
a notification that is missed or coalesced costs latency, never an event. The reading is
:class:`Cursor` (one step, :meth:`Cursor.read`: catch-up and live are the same read, and
it tells when the reader is caught up and past which commit it must wait), used by the
emitter processes between their :class:`Committed` messages and, through :func:`follow`
(which waits on the :class:`CommitSignal`), by the tasks. This module sits below both the
writer (:mod:`exesdb.systems.store`) and the readers that wait on it
(:mod:`exesdb.systems.notification.emitters`, :mod:`exesdb.grpc`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias

import attrs
import trio

import otp
from otp import pubsub, registry
from otp.lowlevel import NodeVar

from ..events import EventRecord
from .pubsub import pubsub_name

__all__ = [
    "COMMITS",
    "CommitSignal",
    "Committed",
    "Cursor",
    "PositionMoved",
    "Reader",
    "Unheard",
    "commit_signal",
    "follow",
    "hush",
    "notify_commit",
    "storage_opened",
    "unhush",
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


@attrs.define(eq=False)
class Unheard:
    """The place of an emitter that broadcasts ``$all`` (filtered or not) on ``pubsub``
    under ``topic`` while nobody listens (see :func:`hush`): ``position`` is the last
    ``$all`` position committed since, which each commit moves instead of waking the
    emitter. An emitter that stores its position (``tell_moves``) is sent one
    :class:`PositionMoved` when a commit moves it while ``moved`` is False, and sets
    ``moved`` back to False when it has looked."""

    pid: otp.Pid
    pubsub: otp.Name
    topic: Any
    position: int
    tell_moves: bool
    moved: bool = False


@attrs.frozen
class PositionMoved:
    """To a hushed emitter that stores its position: a commit moved its :class:`Unheard`
    place (sent once until the emitter sets ``moved`` back to False)."""


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
        self.unheard: dict[otp.Pid, Unheard] = {}
        """The hushed emitters of the store on this node, by pid (see :func:`hush`)."""

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
        old, signal = signal, CommitSignal(head)
        table[store_id] = signal
        if old is not None:  # its hushed emitters read again (a notification wakes them)
            for unheard in old.unheard.values():
                otp.send(unheard.pid, Committed(head, frozenset(), frozenset()))
    else:
        signal.advance(head)
    return signal


def notify_commit(store_id: str, committed: Committed) -> None:
    """Tell the store's readers on this node that ``committed`` is durable: its signal
    moves, the emitters get the message (when the store's system pub/sub runs), and the
    places of hushed emitters move (an emitter whose topic has a listener now is sent
    ``committed`` and is hushed no more)."""
    signal = commit_signal(store_id)
    signal.advance(committed.last_position)
    if signal.unheard:
        _move_unheard(signal.unheard, committed)
    with contextlib.suppress(otp.NoProc):
        pubsub.broadcast(pubsub_name(store_id, "system"), COMMITS, committed)


def hush(store_id: str, unheard: Unheard) -> None:
    """Called by an emitter that broadcasts to nobody, after it left :data:`COMMITS`: the
    store's commits on this node move ``unheard.position`` instead of sending it
    :class:`Committed`, until one finds a listener of its topic (that commit is sent to it
    and it is hushed no more) or it calls :func:`unhush`. Saves the emitter's process a
    wake-up per commit (a third of the trio thread's work of a one-event append)."""
    commit_signal(store_id).unheard[unheard.pid] = unheard


def unhush(store_id: str, unheard: Unheard) -> None:
    """Undo :func:`hush` (a no-op if a commit already did)."""
    table = commit_signal(store_id).unheard
    if table.get(unheard.pid) is unheard:
        del table[unheard.pid]


def _move_unheard(table: dict[otp.Pid, Unheard], committed: Committed) -> None:
    for pid, unheard in list(table.items()):
        if not otp.is_alive(pid):
            del table[pid]
            continue
        try:
            heard = bool(registry.lookup(unheard.pubsub, unheard.topic))
        except otp.NoProc:  # its pub/sub restarts: the emitter finds out for itself
            heard = True
        if heard:
            del table[pid]
            otp.send(pid, committed)
        elif committed.last_position > unheard.position:
            unheard.position = committed.last_position
            if unheard.tell_moves and not unheard.moved:
                unheard.moved = True
                otp.send(pid, PositionMoved())


# -- the catch-up-then-live loop -------------------------------------------------------------

Reader: TypeAlias = Callable[[int, int], Awaitable[Sequence[EventRecord]]]
"""``reader(start, count)``: at most ``count`` of the reader's stored events from ``start``
(an event number, or an ``$all`` position; included) on, in order."""


@attrs.define
class Cursor:
    """A reader's place in one stream (``by_position`` False: ``next`` is an event number)
    or in ``$all`` (True: ``next`` is a position, the events maybe filtered), and the one
    step of every catch-up-then-live loop, :meth:`read`. Catch-up and live are the same
    step: it reads from ``next`` what the storage holds, so there is nothing to switch.

    ``reader`` reads the events (see :data:`Reader`); ``head`` tells a position every event
    up to which is stored and readable (the :class:`CommitSignal`'s head, or the storage's
    last position). Given those, the guarantees are:

    * each event is returned by one :meth:`read` only, in order, and none is skipped:
      ``next`` moves to just after the last event read (never back, but by :meth:`rewind`);
    * ``caught_up`` tells that the last read was short: it read everything stored when
      it started. ``live_past`` is then the ``$all`` position after which the reader's next
      event will be (the larger of the head captured before that read, and of the last
      position read): waiting for a commit past it before reading again misses nothing
      and wakes for no commit already read;
    * with ``past_head``, a short read of ``$all`` also moves ``next`` past that head (for
      readers that leave events out, e.g. a storage filter: everything up to the head was
      read, so the next read starts after it rather than at the last event returned).
    """

    reader: Reader
    head: Callable[[], int]
    next: int
    by_position: bool
    past_head: bool = False
    seen: int = -1
    """The ``$all`` position of the last event read (-1 before the first)."""
    caught_up: bool = False
    live_past: int = -1

    async def read(self, count: int) -> Sequence[EventRecord]:
        """Read at most ``count`` events from ``next`` and move past them (see the class
        docstring); the storage's errors propagate, with the cursor unchanged."""
        head = self.head()  # before the read: whatever commits later is read next time
        events = await self.reader(self.next, count)
        if events:
            last = events[-1]
            self.next = (last.position if self.by_position else last.event_number) + 1
            self.seen = max(self.seen, last.position)
        self.caught_up = len(events) < count
        if self.caught_up:
            if self.by_position and self.past_head:
                self.skip_past(head)
            self.live_past = max(head, self.next - 1 if self.by_position else self.seen)
        return events

    def skip_past(self, position: int) -> None:
        """Nothing up to the ``$all`` position ``position`` concerns this ``$all`` reader:
        ``next`` moves past it (if not already)."""
        if not self.by_position:
            raise ValueError("skip_past: a stream cursor counts event numbers, not positions")
        self.next = max(self.next, position + 1)

    def rewind(self, start: int) -> None:
        """Read again from ``start`` (e.g. after the last acknowledged event): not caught
        up."""
        self.next = start
        self.seen = -1
        self.caught_up = False
        self.live_past = -1


async def follow(cursor: Cursor, signal: CommitSignal,
                 count: Callable[[], int]) -> AsyncGenerator[Sequence[EventRecord], None]:
    """Catch up, then follow live, for a task: yield each batch ``cursor`` reads (``count()``
    events at most; a batch may be empty), for ever; after a short read (when
    ``cursor.caught_up``, which the consumer may look at), wait on ``signal`` for a commit
    past ``cursor.live_past`` before reading again.

    Every event of the cursor from its start is yielded exactly once, in order, whatever
    the notifications (late or coalesced ones cost nothing, a missing one only delays the
    events until the next). Close it (``contextlib.aclosing``) when done.
    """
    while True:
        batch = await cursor.read(count())
        yield batch
        if cursor.caught_up:
            await signal.wait_past(cursor.live_past)
