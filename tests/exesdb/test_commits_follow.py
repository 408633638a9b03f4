"""The store's one catch-up-then-live loop, :class:`exesdb.systems.commits.Cursor` (the
step the emitters and the gRPC subscriptions read with) and
:func:`exesdb.systems.commits.follow` (the loop the gRPC subscriptions run on the commit
signal), on a real SQLite store.

The properties: whatever the interleaving of appends, reads and commit notifications
(notifications on time, late, coalesced or missing while the storage holds the events), a
follower started at any position sees every event of its stream or of ``$all`` from its
start exactly once, in order, with no gap where catch-up turns live; and a short read
leaves nothing unread up to the position it says to wait past.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from exesdb import ANY, EventRecord, Filter, NewEvent
from exesdb.storage import Append, SQLiteBackend
from exesdb.systems.commits import CommitSignal, Cursor, follow

WAIT = 10.0

# -- what a cursor reads ----------------------------------------------------------------------


@attrs.frozen
class Kind:
    """A kind of reader: of one stream (by event number) or of ``$all`` (by position),
    maybe filtered by the storage, moving past the head on a short read or not."""

    id: str
    stream: str | None
    event_types: tuple[str, ...] = ()
    past_head: bool = False

    def reader(self, backend: SQLiteBackend) -> Callable[[int, int], Awaitable[
            list[EventRecord]]]:
        if self.stream is not None:
            stream = self.stream
            return lambda start, count: backend.read_stream(stream, start, count)
        storage_filter = Filter(event_types=self.event_types) if self.event_types else None
        return lambda start, count: backend.read_all(start, count, filter=storage_filter)

    def selects(self, event: EventRecord, start: int) -> bool:
        if self.stream is not None:
            return event.stream_id == self.stream and event.event_number >= start
        return event.position >= start and (not self.event_types
                                             or event.event_type in self.event_types)


KINDS = [
    Kind("stream a (gRPC stream subscriptions, stream emitters)", "a"),
    Kind("$all (gRPC $all subscriptions)", None),
    Kind("$all, past the head (the $all emitters)", None, past_head=True),
    Kind("$all of type T2, past the head (by_event_type emitters)", None, ("T2",),
         past_head=True),
]


def key(event: EventRecord) -> tuple[str, int, int]:
    return (event.stream_id, event.event_number, event.position)


async def stored(backend: SQLiteBackend, kind: Kind, start: int) -> list[tuple[str, int, int]]:
    """Every stored event the reader should see from ``start``, in its order."""
    everything = await backend.read_all(0, 10_000)
    return [key(e) for e in everything if kind.selects(e, start)]


async def append(backend: SQLiteBackend, stream: str, event_type: str, n: int) -> int:
    """Append ``n`` events; return the ``$all`` position of the last."""
    result = await backend.write([Append(stream, ANY, [NewEvent(event_type, {"i": i})
                                                       for i in range(n)])])
    return int(result[0].position)


# -- a commit signal that tells when its waiter is parked -------------------------------------


class WatchedSignal(CommitSignal):
    """A :class:`CommitSignal` that says when a task waits on it (``past``: the position
    it waits past, None while it is not waiting)."""

    def __init__(self, head: int = -1) -> None:
        super().__init__(head)
        self.past: int | None = None
        self.entered = trio.Event()

    async def wait_past(self, position: int) -> int:
        self.past = position
        entered, self.entered = self.entered, trio.Event()
        entered.set()
        try:
            return await super().wait_past(position)
        finally:
            self.past = None

    async def parked(self) -> int:
        """Wait until the follower waits, blocked, for a commit; return the position."""
        while self.past is None or self.head > self.past:
            await self.entered.wait()
        return self.past


# -- the interleavings --------------------------------------------------------------------------


@attrs.frozen
class Op:
    """One step of a run: an append notified at once (``commit``), an append not notified
    yet (``append``), or a late notification (``notify`` picks which of the appends not
    notified yet: out of order is late; those never picked are missing, or coalesced into
    a later one). ``when``: while the follower waits for a commit
    (``"parked"``), or inside its next read: after it captured the head and before it
    reads the storage (``"before read"``), or after the storage answered and before the
    cursor moves (``"after read"``: the race between a short read and the wait)."""

    what: str  # "commit", "append" or "notify"
    stream: str
    event_type: str
    n: int
    pick: int
    when: str


ops_st = st.lists(st.builds(
    Op, st.sampled_from(("commit", "append", "notify")), st.sampled_from(("a", "b")),
    st.sampled_from(("T1", "T2")), st.integers(1, 2), st.integers(0, 5),
    st.sampled_from(("parked", "before read", "after read"))), max_size=12)


starts_st = st.integers(0, 6)
"""Where a follower starts (often before the events, sometimes after them all)."""


@attrs.define
class Run:
    """The store, its commit signal, and the commits not notified yet."""

    backend: SQLiteBackend
    signal: WatchedSignal
    pending: list[int] = attrs.Factory(list)

    async def do(self, op: Op) -> None:
        if op.what != "notify":
            position = await append(self.backend, op.stream, op.event_type, op.n)
            if op.what == "commit":
                self.signal.advance(position)
            else:
                self.pending.append(position)
        elif self.pending:
            self.signal.advance(self.pending.pop(op.pick % len(self.pending)))


def hooked(reader: Callable[[int, int], Awaitable[list[EventRecord]]],
           queue: list[Op], run: Run) -> Callable[[int, int], Awaitable[list[EventRecord]]]:
    """``reader``, doing the queued steps around the storage's read, each when it says."""

    async def read(start: int, count: int) -> list[EventRecord]:
        while queue and queue[0].when == "before read":
            await run.do(queue.pop(0))
        events = await reader(start, count)
        while queue and queue[0].when == "after read":
            await run.do(queue.pop(0))
        return events

    return read


@attrs.frozen
class Followed:
    """What a follower had seen each time it waited for a commit (with the signal's head
    then), and in the end; and what the store holds for it."""

    waits: list[tuple[int, list[tuple[str, int, int]]]]
    seen: list[tuple[str, int, int]]
    stored: list[tuple[str, int, int]]


async def follow_run(kind: Kind, start: int, before: list[Op], ops: list[Op],
                     counts: list[int], storage_head: bool) -> Followed:
    """Start a follower at ``start`` after ``before``, do ``ops`` (each when it says),
    then notify the last commit and wait until the follower waits again."""
    with tempfile.TemporaryDirectory() as root:
        backend = await SQLiteBackend.open(root, durable=False)
        try:
            signal = WatchedSignal()
            run = Run(backend, signal)
            for op in before:  # stored before the follower starts: caught up on
                await run.do(op)
            queue: list[Op] = []
            # The head: the signal's (as the gRPC subscriptions), or the storage's own
            # (as the emitters), which the signal may lag far behind.
            head: Callable[[], int] = ((lambda: backend.last_position) if storage_head
                                       else (lambda: signal.head))
            cursor = Cursor(hooked(kind.reader(backend), queue, run), head, start,
                            by_position=kind.stream is None, past_head=kind.past_head)
            got: list[EventRecord] = []
            sizes = itertools.cycle(counts)
            waits: list[tuple[int, list[tuple[str, int, int]]]] = []

            async def follower() -> None:
                async with aclosing(follow(cursor, signal, lambda: next(sizes))) as batches:
                    async for batch in batches:
                        got.extend(batch)

            async def parked() -> int:
                past = await signal.parked()
                waits.append((signal.head, [key(e) for e in got]))
                return past

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(follower)
                    for op in ops:
                        if op.when != "parked":
                            queue.append(op)
                        else:
                            await parked()
                            await run.do(op)
                    await parked()
                    while queue:  # steps the follower did not get to read after
                        await run.do(queue.pop(0))
                    signal.advance(backend.last_position)  # a notification comes at last
                    await parked()
                    nursery.cancel_scope.cancel()
            return Followed(waits, [key(e) for e in got], await stored(backend, kind, start))
        finally:
            await backend.close()


@given(kind=st.sampled_from(KINDS), start=starts_st, before=ops_st, ops=ops_st,
       counts=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       storage_head=st.booleans())
async def test_a_follower_sees_every_event_from_its_start_once_in_order_whatever_the_notifications(
        kind, start, before, ops, counts, storage_head):
    run = await follow_run(kind, start, before, ops, counts, storage_head)
    assert run.seen == run.stored


@given(kind=st.sampled_from(KINDS), start=starts_st, before=ops_st, ops=ops_st,
       counts=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       storage_head=st.booleans())
async def test_a_waiting_follower_has_seen_every_event_up_to_the_last_notified_commit(
        kind, start, before, ops, counts, storage_head):
    run = await follow_run(kind, start, before, ops, counts, storage_head)
    for head, seen in run.waits:
        assert seen == run.stored[:len(seen)]  # once each, in order
        assert [k for k in run.stored if k[2] <= head and k not in seen] == []


@given(kind=st.sampled_from(KINDS), start=starts_st, before=ops_st, ops=ops_st,
       counts=st.lists(st.integers(1, 4), min_size=1, max_size=4))
async def test_after_a_short_read_nothing_up_to_the_position_to_wait_past_is_unread(
        kind, start, before, ops, counts):
    with tempfile.TemporaryDirectory() as root:
        backend = await SQLiteBackend.open(root, durable=False)
        try:
            run = Run(backend, WatchedSignal())
            for op in before:
                await run.do(op)
            queue: list[Op] = []
            cursor = Cursor(hooked(kind.reader(backend), queue, run),
                            lambda: backend.last_position, start,
                            by_position=kind.stream is None, past_head=kind.past_head)
            got: list[EventRecord] = []
            sizes = itertools.cycle(counts)
            for op in ops:  # as an emitter: a read whenever told (here: after each step)
                if op.when != "parked":
                    queue.append(op)
                else:
                    await run.do(op)
                got.extend(await cursor.read(next(sizes)))
                if cursor.caught_up:
                    read = {key(e) for e in got}
                    assert [k for k in await stored(backend, kind, start)
                            if k[2] <= cursor.live_past and k not in read] == []
            while True:  # woken by the notifications of the commits made meanwhile
                last = backend.last_position
                got.extend(await cursor.read(next(sizes)))
                if cursor.caught_up and not queue and backend.last_position == last:
                    break
            assert [key(e) for e in got] == await stored(backend, kind, start)
        finally:
            await backend.close()


# -- single behaviours ------------------------------------------------------------------------


@pytest.fixture
async def backend(tmp_path):
    store = await SQLiteBackend.open(tmp_path, durable=False)
    try:
        yield store
    finally:
        await store.close()


def all_cursor(backend: SQLiteBackend, start: int = 0, past_head: bool = False,
               event_types: Sequence[str] = ()) -> Cursor:
    kind = Kind("$all", None, tuple(event_types), past_head)
    return Cursor(kind.reader(backend), lambda: backend.last_position, start,
                  by_position=True, past_head=past_head)


async def test_a_short_read_of_a_filtered_all_moves_past_the_head(backend):
    await append(backend, "a", "T2", 1)
    head = await append(backend, "a", "T1", 3)
    cursor = all_cursor(backend, past_head=True, event_types=["T2"])
    assert [e.position for e in await cursor.read(10)] == [0]
    assert (cursor.caught_up, cursor.next, cursor.live_past) == (True, head + 1, head)


async def test_without_past_head_a_short_read_stays_after_the_last_event_read(backend):
    await append(backend, "a", "T2", 1)
    head = await append(backend, "a", "T1", 3)
    cursor = all_cursor(backend, event_types=["T2"])
    await cursor.read(10)
    assert (cursor.next, cursor.live_past) == (1, head)


async def test_a_full_read_is_not_caught_up(backend):
    await append(backend, "a", "T1", 3)
    cursor = all_cursor(backend)
    assert len(await cursor.read(3)) == 3
    assert (cursor.caught_up, cursor.next) == (False, 3)


async def test_a_stream_cursor_waits_past_the_head_or_its_last_event(backend):
    await append(backend, "a", "T1", 2)
    head = await append(backend, "b", "T1", 2)
    cursor = Cursor(Kind("a", "a").reader(backend), lambda: backend.last_position, 0,
                    by_position=False)
    assert [e.event_number for e in await cursor.read(10)] == [0, 1]
    assert (cursor.caught_up, cursor.next, cursor.seen, cursor.live_past) == (
        True, 2, 1, head)


async def test_a_stream_cursor_cannot_skip_positions(backend):
    cursor = Cursor(Kind("a", "a").reader(backend), lambda: -1, 0, by_position=False)
    with pytest.raises(ValueError):
        cursor.skip_past(5)


async def test_rewind_reads_again_from_where_it_is_told(backend):
    await append(backend, "a", "T1", 3)
    cursor = all_cursor(backend)
    await cursor.read(10)
    cursor.rewind(1)
    assert not cursor.caught_up
    assert [e.position for e in await cursor.read(10)] == [1, 2]


async def test_a_storage_error_leaves_the_cursor_unchanged(backend):
    async def failing(start: int, count: int) -> Any:
        raise OSError("disk")

    cursor = Cursor(failing, lambda: 7, 3, by_position=True, past_head=True)
    with pytest.raises(OSError):
        await cursor.read(10)
    assert (cursor.next, cursor.caught_up, cursor.live_past) == (3, False, -1)


async def test_a_missing_notification_only_delays_the_events_until_the_next(backend):
    signal = WatchedSignal(await append(backend, "a", "T1", 1))
    cursor = Cursor(Kind("$all", None).reader(backend), lambda: signal.head, 0,
                    by_position=True)
    got: list[EventRecord] = []

    async def follower() -> None:
        async with aclosing(follow(cursor, signal, lambda: 10)) as batches:
            async for batch in batches:
                got.extend(batch)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower)
            await signal.parked()
            await append(backend, "a", "T1", 1)  # committed, not notified
            await signal.parked()
            assert [e.position for e in got] == [0]
            signal.advance(await append(backend, "a", "T1", 1))
            assert await signal.parked() == 2
            nursery.cancel_scope.cancel()
    assert [e.position for e in got] == [0, 1, 2]
