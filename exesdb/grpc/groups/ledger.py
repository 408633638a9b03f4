"""A persistent subscription group's bookkeeping (:class:`Ledger`): which events wait for
a consumer, which are in flight to whom (with their retry counts and deadlines), which are
to be parked, and how far the group's checkpoint may move.

Pure: no processes, no I/O, no clock (the time is an argument). The group process
(:mod:`exesdb.grpc.groups.group`) feeds it the subscription's events and the consumers'
acks and nacks, writes what it hands back to be parked, and stores its checkpoint.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import zlib
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

__all__ = ["NACK_ACTIONS", "Entry", "EntryState", "Ledger", "NackAction"]

NackAction: TypeAlias = Literal["unknown", "park", "retry", "skip", "stop"]
"""What a consumer asks for an event it failed (see :meth:`Ledger.nack`)."""
NACK_ACTIONS: Final[tuple[NackAction, ...]] = ("unknown", "park", "retry", "skip", "stop")
"""Every :data:`NackAction`."""
EntryState: TypeAlias = Literal["ready", "flight", "parking", "done"]
"""Where an :class:`Entry` is (see there)."""


@attrs.define(eq=False)
class Entry:
    """One event of a group, from its arrival until it is done.

    ``key`` is its place in the subscription's order (None for a replayed parked event,
    which is behind the checkpoint already); ``anchor`` what a checkpoint at it
    acknowledges; ``item`` what a consumer receives. ``state`` is ``"ready"`` (waiting for
    a consumer), ``"flight"`` (sent to ``consumer``, due back by ``deadline``),
    ``"parking"`` (to be written to the parked stream, with ``reason``) or ``"done"``.
    """

    ack_id: Hashable
    key: int | None
    item: Any
    stream_id: str
    anchor: Any = None
    retry_count: int = 0
    state: EntryState = "ready"
    consumer: int | None = None
    deadline: float | None = None
    reason: str = ""


@attrs.define(eq=False)
class _Slot:
    """A consumer's room: ``buffer_size`` events in flight at most, those in flight,
    and how many it was sent in all."""

    buffer_size: int
    in_flight: dict[Hashable, Entry] = attrs.Factory(dict)
    total: int = 0


class Ledger:
    """A group's bookkeeping, free of I/O and of the clock (times are given): the events
    waiting for a consumer (retries first), the events in flight per consumer with their
    retry counts and deadlines, and the checkpoint it may move to.

    Guarantees: the checkpoint candidate (:attr:`safe_key`) never passes an event that is
    not done (acked, skipped, filtered out or parked); an event goes to at most one
    consumer at a time, to a consumer with a free slot (``buffer_size`` in flight at most);
    an event that fails (nack retry, timeout, its consumer leaving) more than
    ``max_retry_count`` times is handed back to be parked; events to retry go out before
    new ones, the retried ones in their subscription order (ahead of any later retry), as
    KurrentDB's retry buffer has them; an ack or nack settles an event in flight to the
    group whoever sends it, as in KurrentDB.
    """

    def __init__(self, max_retry_count: int, message_timeout: float, strategy: str) -> None:
        self.max_retry_count = max_retry_count
        self.message_timeout = message_timeout  # seconds; 0: no timeout
        self.strategy = strategy
        self.consumers: dict[int, _Slot] = {}
        self.ready: deque[Entry] = deque()
        self.retry: deque[Entry] = deque()
        self.flight: dict[Hashable, Entry] = {}
        self.parking: list[Entry] = []
        self.window: deque[Entry] = deque()  # arrived since the safe key, in key order
        self.last_key: int | None = None  # the last key that arrived
        self.safe_key: int | None = None  # everything up to it is done
        self.safe_anchor: Any = None
        self.since_checkpoint = 0  # events that became safe since the last checkpoint
        self._rotation = 0
        self._deadlines: list[tuple[float, int, Entry]] = []  # a heap; stale items skipped
        self._sequence = itertools.count()

    # -- arrivals ------------------------------------------------------------------------------
    def receive(self, key: int, ack_id: Hashable, item: Any, stream_id: str, wanted: bool,
                anchor: Any = None) -> bool:
        """An event of the subscription arrived (keys increase); ``wanted`` False for one
        the filter leaves out (done at once). Returns False for a key already seen."""
        if self.last_key is not None and key <= self.last_key:
            return False
        self.last_key = key
        entry = Entry(ack_id, key, item, stream_id, anchor, state="ready" if wanted else "done")
        self.window.append(entry)
        if wanted:
            self.ready.append(entry)
        else:
            self._advance()
        return True

    def add_replayed(self, ack_id: Hashable, item: Any, stream_id: str) -> Entry:
        """A parked event to deliver again, ahead of new events; returns its entry, whose
        state becomes ``"done"`` once it is acked, skipped or parked again."""
        entry = Entry(ack_id, None, item, stream_id)
        self.retry.append(entry)
        return entry

    # -- consumers -----------------------------------------------------------------------------
    def connect(self, cid: int, buffer_size: int) -> None:
        """A consumer joins, with room for ``buffer_size`` events in flight."""
        self.consumers[cid] = _Slot(buffer_size)

    def disconnect(self, cid: int) -> list[Entry]:
        """A consumer leaves: its events in flight are retried; returns those to park."""
        slot = self.consumers.pop(cid, None)
        if slot is None:
            return []
        to_park: list[Entry] = []
        for entry in list(slot.in_flight.values()):
            self.flight.pop(entry.ack_id, None)
            self._fail(entry, "Client disconnected and max retry count reached", to_park)
        return to_park

    def free(self, cid: int) -> int:
        """How many more events consumer ``cid`` may have in flight."""
        slot = self.consumers.get(cid)
        return 0 if slot is None else slot.buffer_size - len(slot.in_flight)

    def dispatch(self, now: float) -> list[tuple[int, Entry]]:
        """Give waiting events (retries first) to consumers with free slots, per the
        strategy; returns ``(consumer, entry)`` in the order to send them."""
        out: list[tuple[int, Entry]] = []
        for queue in (self.retry, self.ready):
            while queue:
                entry = queue[0]
                if entry.state != "ready":
                    queue.popleft()
                    continue
                if entry.ack_id in self.flight:
                    break  # the same id is in flight: wait until it is done
                cid = self._choose(entry)
                if cid is None:
                    return out
                queue.popleft()
                slot = self.consumers[cid]
                entry.state, entry.consumer = "flight", cid
                entry.deadline = now + self.message_timeout if self.message_timeout > 0 else None
                if entry.deadline is not None:
                    heapq.heappush(self._deadlines,
                                   (entry.deadline, next(self._sequence), entry))
                slot.in_flight[entry.ack_id] = entry
                slot.total += 1
                self.flight[entry.ack_id] = entry
                out.append((cid, entry))
        return out

    def _choose(self, entry: Entry) -> int | None:
        cids = list(self.consumers)
        if not cids:
            return None
        if self.strategy == "DispatchToSingle":
            return next((c for c in cids if self.free(c) > 0), None)
        if self.strategy in ("Pinned", "PinnedByCorrelation"):
            pinned = cids[zlib.crc32(entry.stream_id.encode()) % len(cids)]
            if self.free(pinned) > 0:
                return pinned
        for i in range(len(cids)):
            cid = cids[(self._rotation + i) % len(cids)]
            if self.free(cid) > 0:
                self._rotation = (self._rotation + i + 1) % len(cids)
                return cid
        return None

    # -- outcomes ------------------------------------------------------------------------------
    def ack(self, ids: Iterable[Hashable]) -> None:
        """The events with these ids are processed. Any id in flight to the group counts,
        whichever consumer it went to (KurrentDB lets any consumer of a group settle any
        event in flight to it); ids not in flight (waiting, done, unknown) are ignored."""
        for ack_id in ids:
            entry = self._take(ack_id)
            if entry is not None:
                self._done(entry)

    def nack(self, ids: Iterable[Hashable], action: NackAction,
             reason: str = "") -> list[Entry]:
        """The events with these ids failed: ``park`` (returned, to be parked), ``skip``
        (done), ``retry`` or ``unknown`` (sent again, or parked once over the retry
        count). ``stop`` changes nothing here (the group ends that consumer). As for
        :meth:`ack`, any id in flight to the group counts and others are ignored."""
        to_park: list[Entry] = []
        if action == "stop":
            return to_park
        for ack_id in ids:
            entry = self._take(ack_id)
            if entry is None:
                continue
            if action == "skip":
                self._done(entry)
            elif action == "park":
                entry.state, entry.reason = "parking", reason or "Client nak"
                self.parking.append(entry)
                to_park.append(entry)
            else:
                self._fail(entry, reason or "Max retry count reached", to_park)
        return to_park

    def expire(self, now: float) -> list[Entry]:
        """Events in flight past their deadline are retried; returns those to park."""
        to_park: list[Entry] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, entry = heapq.heappop(heap)
            if entry.state == "flight" and entry.deadline == deadline:
                self._take(entry.ack_id)
                self._fail(entry, "Message timed out and max retry count reached", to_park)
        return to_park

    def parked(self, entry: Entry) -> None:
        """``entry`` was written to the parked stream: it is done."""
        if entry.state == "parking":
            with contextlib.suppress(ValueError):
                self.parking.remove(entry)
            self._done(entry)

    def checkpointed(self) -> None:
        """The safe key was stored as the checkpoint."""
        self.since_checkpoint = 0

    def next_deadline(self) -> float | None:
        """The earliest deadline of an event in flight."""
        heap = self._deadlines
        while heap and not (heap[0][2].state == "flight" and heap[0][2].deadline == heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _take(self, ack_id: Hashable) -> Entry | None:
        entry = self.flight.get(ack_id)
        if entry is None:
            return None
        del self.flight[ack_id]
        slot = self.consumers.get(entry.consumer) if entry.consumer is not None else None
        if slot is not None:
            slot.in_flight.pop(ack_id, None)
        entry.consumer = entry.deadline = None
        return entry

    def _fail(self, entry: Entry, reason: str, to_park: list[Entry]) -> None:
        entry.consumer = entry.deadline = None
        if entry.retry_count >= self.max_retry_count:
            entry.state, entry.reason = "parking", reason
            self.parking.append(entry)
            to_park.append(entry)
        else:
            entry.retry_count += 1
            entry.state = "ready"
            self._requeue(entry)

    def _requeue(self, entry: Entry) -> None:
        """Put a failed event back among the retries: before the first retry later in
        the subscription's order (KurrentDB's ``StreamBuffer.AddRetry``), after the
        replayed parked events, which have no place in it."""
        retry = self.retry
        if entry.key is not None:
            for index, other in enumerate(retry):
                if other.key is not None and other.key > entry.key:
                    retry.insert(index, entry)
                    return
        retry.append(entry)

    def _done(self, entry: Entry) -> None:
        entry.state = "done"
        if entry.key is not None:
            self._advance()

    def _advance(self) -> None:
        window = self.window
        while window and window[0].state == "done":
            entry = window.popleft()
            self.safe_key, self.safe_anchor = entry.key, entry.anchor
            self.since_checkpoint += 1

    # -- stats ---------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Events waiting for a consumer (first deliveries)."""
        return sum(1 for e in self.ready if e.state == "ready")

    @property
    def retrying(self) -> int:
        """Events waiting to be sent again."""
        return sum(1 for e in self.retry if e.state == "ready")
