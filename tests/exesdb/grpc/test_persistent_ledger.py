"""The bookkeeping of a persistent subscription group (:class:`exesdb.grpc.groups.ledger.Ledger`),
without I/O: dispatch per strategy, acks, nacks, timeouts, retries and parking, and the
checkpoint, which never passes an event that is not done; its properties under any
interleaving of what can happen to a group (every event in exactly one place, nothing
settled twice, retries within the maximum); and the reading of stored group settings
(:meth:`exesdb.grpc.groups.config.GroupConfig.from_json`), which type-checks every field."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exesdb.grpc.groups.config import GroupConfig, GroupSettings
from exesdb.grpc.groups.ledger import Entry, Ledger, NackAction


def ledger(max_retry_count: int = 10, timeout: float = 0.0,
           strategy: str = "RoundRobin") -> Ledger:
    return Ledger(max_retry_count, timeout, strategy)


def feed(book: Ledger, keys: list[int], unwanted: frozenset[int] = frozenset()) -> None:
    for key in keys:
        book.receive(key, f"id{key}", key, f"stream-{key % 3}", key not in unwanted, key)


def ids(assignments: list) -> list:
    return [entry.ack_id for _, entry in assignments]


def test_events_go_in_order_to_a_consumer_with_free_slots_only():
    book = ledger()
    feed(book, [0, 1, 2, 3])
    book.connect(1, buffer_size=2)
    assert ids(book.dispatch(0.0)) == ["id0", "id1"]
    assert book.dispatch(0.0) == []
    book.ack(["id0"])
    assert ids(book.dispatch(0.0)) == ["id2"]


def test_round_robin_alternates_between_consumers():
    book = ledger(strategy="RoundRobin")
    feed(book, [0, 1, 2, 3])
    book.connect(1, 10)
    book.connect(2, 10)
    assert [cid for cid, _ in book.dispatch(0.0)] == [1, 2, 1, 2]


def test_dispatch_to_single_fills_the_first_consumer_before_the_next():
    book = ledger(strategy="DispatchToSingle")
    feed(book, [0, 1, 2])
    book.connect(1, 2)
    book.connect(2, 10)
    assert [cid for cid, _ in book.dispatch(0.0)] == [1, 1, 2]


def test_pinned_sends_a_stream_to_the_same_consumer():
    book = ledger(strategy="Pinned")
    feed(book, list(range(12)))
    book.connect(1, 100)
    book.connect(2, 100)
    owners: dict[str, set[int]] = {}
    for cid, entry in book.dispatch(0.0):
        owners.setdefault(entry.stream_id, set()).add(cid)
    assert all(len(cids) == 1 for cids in owners.values())


def test_the_checkpoint_stops_before_the_first_event_not_acked():
    book = ledger()
    feed(book, [10, 20, 30])
    book.connect(1, 10)
    book.dispatch(0.0)
    book.ack(["id10", "id30"])
    assert book.safe_key == 10
    book.ack(["id20"])
    assert book.safe_key == 30
    assert book.since_checkpoint == 3


def test_filtered_out_events_do_not_hold_the_checkpoint_back():
    book = ledger()
    feed(book, [1, 2, 3], unwanted=frozenset({1, 2}))
    assert book.safe_key == 2
    book.connect(1, 10)
    assert ids(book.dispatch(0.0)) == ["id3"]


def test_nack_retry_sends_the_event_again_with_its_retry_count_ahead_of_new_ones():
    book = ledger()
    feed(book, [0, 1])
    book.connect(1, 1)
    [(_, first)] = book.dispatch(0.0)
    assert first.ack_id == "id0"
    assert book.nack(["id0"], "retry") == []
    (_, again), = book.dispatch(0.0)
    assert (again.ack_id, again.retry_count) == ("id0", 1)


def test_nack_skip_counts_as_done_and_nack_park_hands_the_event_back_to_park():
    book = ledger()
    feed(book, [0, 1])
    book.connect(1, 10)
    book.dispatch(0.0)
    book.nack(["id0"], "skip")
    assert book.safe_key == 0
    [parked] = book.nack(["id1"], "park", "bad data")
    assert (parked.ack_id, parked.reason, book.safe_key) == ("id1", "bad data", 0)
    book.parked(parked)
    assert book.safe_key == 1


def test_an_event_past_its_message_timeout_is_sent_again_then_parked_past_max_retries():
    book = ledger(max_retry_count=1, timeout=5.0)
    feed(book, [0])
    book.connect(1, 10)
    book.dispatch(0.0)
    assert book.next_deadline() == 5.0
    assert book.expire(4.9) == []
    assert book.expire(5.0) == []
    (_, again), = book.dispatch(5.0)
    assert again.retry_count == 1
    [parked] = book.expire(10.0)
    assert parked.ack_id == "id0"
    assert book.dispatch(10.0) == []


def test_a_consumer_leaving_hands_its_events_in_flight_to_the_others():
    book = ledger()
    feed(book, [0, 1])
    book.connect(1, 10)
    book.dispatch(0.0)
    book.connect(2, 10)
    assert book.disconnect(1) == []
    assert {(cid, e.ack_id, e.retry_count) for cid, e in book.dispatch(0.0)} == {
        (2, "id0", 1), (2, "id1", 1)}


def test_a_replayed_parked_event_goes_first_and_never_moves_the_checkpoint():
    book = ledger()
    feed(book, [5])
    book.add_replayed("link", "parked", "s")
    book.connect(1, 10)
    assert ids(book.dispatch(0.0)) == ["link", "id5"]
    book.ack(["link"])
    assert book.safe_key is None


def test_an_event_whose_id_is_in_flight_waits_until_it_is_done():
    book = ledger()
    book.receive(0, "same", 0, "s", True)
    book.receive(1, "same", 1, "s", True)
    book.connect(1, 10)
    assert [e.key for _, e in book.dispatch(0.0)] == [0]
    book.ack(["same"])
    assert [e.key for _, e in book.dispatch(0.0)] == [1]


# -- the property ----------------------------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("connect"), st.integers(1, 3), st.integers(1, 4)),
    st.tuples(st.just("disconnect"), st.integers(1, 3)),
    st.tuples(st.just("ack"), st.integers(0, 30)),
    st.tuples(st.just("nack"), st.integers(0, 30),
              st.sampled_from(["unknown", "park", "retry", "skip", "stop"])),
    st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
    st.tuples(st.just("park_done"),),
    st.tuples(st.just("arrive"), st.integers(1, 4), st.booleans()),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops, max_retry=st.integers(0, 3),
       strategy=st.sampled_from(["RoundRobin", "DispatchToSingle", "Pinned"]))
def test_the_checkpoint_never_passes_an_event_not_done_and_every_event_ends_done(
        ops, max_retry, strategy):
    book = ledger(max_retry, timeout=1.0, strategy=strategy)
    now = 0.0
    next_key = 0
    keys: list[int] = []
    done: set[int] = set()
    parking: list = []

    def check() -> None:
        open_keys = [e.key for e in book.window if e.state != "done"]
        if book.safe_key is not None:
            assert all(k > book.safe_key for k in open_keys)
            assert all(k in done or any(e.key == k and e.state == "done" for e in book.window)
                       for k in keys if k <= book.safe_key)
        for cid, slot in book.consumers.items():
            assert len(slot.in_flight) <= slot.buffer_size
            assert all(e.consumer == cid and e.state == "flight" for e in slot.in_flight.values())

    for op in ops:
        kind = op[0]
        if kind == "connect" and op[1] not in book.consumers:
            book.connect(op[1], op[2])
        elif kind == "disconnect":
            parking += book.disconnect(op[1])
        elif kind == "ack":
            entry = book.flight.get(f"id{op[1]}")
            book.ack([f"id{op[1]}"])
            if entry is not None:
                done.add(entry.key)
        elif kind == "nack":
            entry = book.flight.get(f"id{op[1]}")
            parking += book.nack([f"id{op[1]}"], op[2])
            if entry is not None and op[2] == "skip":
                done.add(entry.key)
        elif kind == "tick":
            now += op[1]
            parking += book.expire(now)
        elif kind == "park_done":
            for entry in parking:
                book.parked(entry)
                done.add(entry.key)
            parking = []
        else:
            for _ in range(op[1]):
                book.receive(next_key, f"id{next_key}", next_key, f"s{next_key % 2}", op[2],
                             next_key)
                keys.append(next_key)
                if not op[2]:
                    done.add(next_key)
                next_key += 1
        book.dispatch(now)
        check()

    # Drain: one consumer acks everything it gets; parking completes.
    book.connect(99, 5)
    for _ in range(10_000):
        for entry in parking:
            book.parked(entry)
            done.add(entry.key)
        parking = []
        sent = book.dispatch(now)
        if not sent and not book.flight:
            break
        done.update(e.key for _, e in sent)
        book.ack([e.ack_id for _, e in sent])
        for cid in [c for c in book.consumers if c != 99]:
            parking += book.disconnect(cid)
        check()
    assert not book.window
    assert book.safe_key == (keys[-1] if keys else None)


def test_any_consumer_settles_any_event_in_flight_to_the_group():
    book = ledger(strategy="RoundRobin")
    feed(book, [0, 1, 2])
    book.connect(1, 10)
    book.connect(2, 10)
    assert [(cid, e.ack_id) for cid, e in book.dispatch(0.0)] == [
        (1, "id0"), (2, "id1"), (1, "id2")]
    book.ack(["id1"])  # in flight to consumer 2: settled, whoever acks it
    [parked] = book.nack(["id2"], "park")
    assert (set(book.flight), parked.ack_id) == ({"id0"}, "id2")
    assert (book.free(1), book.free(2)) == (9, 10)


def test_an_ack_or_nack_of_an_id_not_in_flight_changes_nothing():
    book = ledger()
    feed(book, [0, 1])
    book.connect(1, 1)
    book.dispatch(0.0)
    book.ack(["id1"])  # waiting, not in flight
    assert book.nack(["unknown"], "park") == []
    assert (set(book.flight), [e.ack_id for e in book.ready], book.safe_key) == (
        {"id0"}, ["id1"], None)


def test_retried_events_go_out_in_subscription_order_before_new_ones():
    book = ledger()
    feed(book, [0, 1, 2, 3])
    book.connect(1, 2)
    book.dispatch(0.0)
    book.nack(["id1"], "retry")
    book.nack(["id0"], "retry")
    assert [(e.ack_id, e.retry_count) for _, e in book.dispatch(0.0)] == [
        ("id0", 1), ("id1", 1)]


# -- the ledger under any interleaving (hypothesis' stateful testing) --------------------------


class TheLedgerUnderAnyInterleaving(RuleBasedStateMachine):
    """Events arriving (some filtered out, some twice), consumers joining and leaving,
    acks and nacks of any id by any consumer, time passing, parking completing and
    checkpoints being stored, in any order; after every step:

    * every event is in exactly one place: waiting, in flight to one consumer (within its
      buffer), to be parked, or done (acked, skipped, filtered out or parked);
    * nothing is settled twice: a done event stays done; an ack or nack of an id in flight
      to the group settles it, whichever consumer it went to (as in KurrentDB), and of an
      id not in flight changes nothing;
    * retries never exceed ``max_retry_count``: no event is sent more than
      ``max_retry_count + 1`` times, and one that failed that often is to be parked;
    * the checkpoint never passes an event not done, never goes back, and counts every
      event once.
    """

    @initialize(max_retry=st.integers(0, 3),
                strategy=st.sampled_from(["RoundRobin", "DispatchToSingle", "Pinned"]))
    def a_group(self, max_retry: int, strategy: str) -> None:
        self.max_retry = max_retry
        self.book = ledger(max_retry, timeout=1.0, strategy=strategy)
        self.entries: dict[int, Entry | None] = {}  # None: done and checkpointable at once
        self.sent: Counter[int] = Counter()
        self.to_park: list[Entry] = []
        self.now = 0.0
        self.counted = 0  # events the stored checkpoints counted
        self.done_before: set[int] = set()
        self.safe_before: int | None = None

    # -- what happens ----------------------------------------------------------------------
    @rule(n=st.integers(1, 4), wanted=st.booleans())
    def events_arrive(self, n: int, wanted: bool) -> None:
        for _ in range(n):
            key = len(self.entries)
            assert self.book.receive(key, f"id{key}", key, f"s{key % 2}", wanted, key)
            window = self.book.window
            self.entries[key] = window[-1] if window and window[-1].key == key else None

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def an_event_arrives_again(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.entries)))
        with self.unchanged():
            assert not self.book.receive(key, f"id{key}", key, "s0", True, key)

    @rule(cid=st.integers(1, 3), buffer_size=st.integers(1, 4))
    def a_consumer_joins(self, cid: int, buffer_size: int) -> None:
        if cid not in self.book.consumers:
            self.book.connect(cid, buffer_size)

    @rule(cid=st.integers(1, 3))
    def a_consumer_leaves(self, cid: int) -> None:
        self.to_park += self.book.disconnect(cid)

    @rule()
    def the_group_dispatches(self) -> None:
        for _, entry in self.book.dispatch(self.now):
            assert entry.key is not None
            self.sent[entry.key] += 1

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def a_consumer_acks(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.entries)))
        if self.in_flight(key):  # to whichever consumer: any may settle it
            self.book.ack([f"id{key}"])
            assert self.state(key) == "done"
        else:
            with self.unchanged():
                self.book.ack([f"id{key}"])

    @precondition(lambda self: self.entries)
    @rule(data=st.data(),
          action=st.sampled_from(["unknown", "park", "retry", "skip", "stop"]))
    def a_consumer_nacks(self, data: st.DataObject, action: NackAction) -> None:
        key = data.draw(st.sampled_from(sorted(self.entries)))
        if self.in_flight(key) and action != "stop":
            self.to_park += self.book.nack([f"id{key}"], action, "")
            assert self.state(key) != "flight"
        else:
            with self.unchanged():
                assert self.book.nack([f"id{key}"], action, "") == []

    @rule(seconds=st.floats(0.0, 3.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.to_park += self.book.expire(self.now)

    @rule()
    def parking_completes(self) -> None:
        for entry in self.to_park:
            self.book.parked(entry)
        self.to_park = []

    @rule()
    def a_checkpoint_is_stored(self) -> None:
        self.counted += self.book.since_checkpoint
        self.book.checkpointed()

    # -- what always holds ----------------------------------------------------------------
    @invariant()
    def every_event_is_in_exactly_one_place(self) -> None:
        book = self.book
        for key, entry in self.entries.items():
            if entry is None:
                continue
            queued = sum(1 for e in (*book.ready, *book.retry) if e is entry)
            holders = [cid for cid, slot in book.consumers.items()
                       if any(e is entry for e in slot.in_flight.values())]
            parking = sum(1 for e in book.parking if e is entry)
            in_flight = book.flight.get(f"id{key}") is entry
            if entry.state == "ready":
                assert (queued >= 1, holders, parking, in_flight) == (True, [], 0, False)
            elif entry.state == "flight":
                assert (holders, parking, in_flight) == ([entry.consumer], 0, True)
            elif entry.state == "parking":
                assert (holders, parking, in_flight) == ([], 1, False)
            else:
                assert (holders, parking, in_flight) == ([], 0, False)
        for slot in book.consumers.values():
            assert len(slot.in_flight) <= slot.buffer_size

    @invariant()
    def nothing_done_is_undone(self) -> None:
        done = {key for key in self.entries if self.state(key) == "done"}
        assert done >= self.done_before
        self.done_before = done

    @invariant()
    def retries_never_exceed_the_maximum(self) -> None:
        for key, entry in self.entries.items():
            assert self.sent[key] <= self.max_retry + 1
            if entry is not None:
                assert entry.retry_count <= self.max_retry
                if entry.state == "parking" and entry.reason.endswith("retry count reached"):
                    assert entry.retry_count == self.max_retry

    @invariant()
    def the_checkpoint_passes_only_done_events_once_each(self) -> None:
        safe = self.book.safe_key
        if safe is None:
            assert self.safe_before is None and self.counted + self.book.since_checkpoint == 0
            return
        assert self.safe_before is None or safe >= self.safe_before
        self.safe_before = safe
        assert all(self.state(key) == "done" for key in range(safe + 1))
        assert self.counted + self.book.since_checkpoint == safe + 1

    # -- helpers ---------------------------------------------------------------------------
    def state(self, key: int) -> str:
        entry = self.entries[key]
        return "done" if entry is None else entry.state

    def in_flight(self, key: int) -> bool:
        entry = self.entries[key]
        return entry is not None and entry.state == "flight"

    @contextlib.contextmanager
    def unchanged(self) -> Iterator[None]:
        """The block changes nothing in the ledger that this machine can see."""
        before = self.snapshot()
        yield
        assert self.snapshot() == before

    def snapshot(self) -> tuple[Any, ...]:
        book = self.book
        return (
            {k: None if e is None else (e.state, e.consumer, e.retry_count, e.deadline)
             for k, e in self.entries.items()},
            book.safe_key, book.since_checkpoint, book.last_key,
            {cid: sorted(slot.in_flight, key=str) for cid, slot in book.consumers.items()},
            [e.key for e in book.ready], [e.key for e in book.retry],
            [e.key for e in book.parking])


TestTheLedgerUnderAnyInterleaving = TheLedgerUnderAnyInterleaving.TestCase


# -- the stored settings -----------------------------------------------------------------------


def stored(**changes: object) -> dict:
    config = GroupConfig("orders", "g", GroupSettings()).as_json()
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = config
        for parent in parents:
            target = target[parent]
        target[last] = value
    return config


def test_stored_settings_read_back_as_they_were_written():
    config = GroupConfig("$all", "g", GroupSettings(max_retry_count=3), "end", 7)
    assert GroupConfig.from_json(config.as_json()) == config


def test_stored_settings_kurrentdb_accepts_read_back_as_they_were_written():
    settings = GroupSettings(min_checkpoint_count=100, max_checkpoint_count=5,
                             live_buffer_size=0, max_retry_count=-1, checkpoint_after_ms=0)
    config = GroupConfig("orders", "g", settings)
    assert GroupConfig.from_json(config.as_json()) == config


@pytest.mark.parametrize(("changes", "field"), [
    ({"settings__max_retry_count": "ten"}, "settings.max_retry_count"),
    ({"settings__resolve_links": 1}, "settings.resolve_links"),
    ({"settings__message_timeout_ms": 1.5}, "settings.message_timeout_ms"),
    ({"settings__consumer_strategy": None}, "settings.consumer_strategy"),
    ({"settings__consumer_strategy": "Lottery"}, "settings.consumer_strategy"),
    ({"settings__read_batch_size": 500}, "settings.read_batch_size"),  # not below the buffer
    ({"settings": []}, "settings"),
    ({"stream": 5}, "stream"),
    ({"group": ""}, "group"),
    ({"start": "middle"}, "start"),
    ({"start_from": -1}, "start_from"),
    ({"filter": {"on": "stream", "regex": "(?=x)"}}, "filter"),
])
def test_a_wrongly_typed_stored_setting_is_a_value_error_naming_it(changes, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        GroupConfig.from_json(stored(**changes))


def test_a_stored_filter_is_type_checked_field_by_field():
    base = {"stream": "$all", "group": "g", "settings": {}}
    for bad, field in [({"on": "nothing"}, "filter.on"),
                       ({"on": "stream", "regex": 3}, "filter.regex"),
                       ({"on": "stream", "prefixes": "ab"}, "filter.prefixes"),
                       ({"on": "stream", "prefixes": ["a"], "window": "1"}, "filter.window"),
                       ({"on": "stream", "regex": "(?=x)"}, "filter.regex")]:
        with pytest.raises(ValueError, match=f"^{field}"):
            GroupConfig.from_json({**base, "filter": bad})
