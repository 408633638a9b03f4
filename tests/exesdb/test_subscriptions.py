"""Subscriptions through a running store: catch-up, live, broadcast and persistent delivery,
back-pressure, the default subscription, the API's errors and several stores."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import exesdb
import otp
from exesdb import (
    EventRecord,
    Events,
    InvalidArgument,
    NewEvent,
    SubscriptionNotFound,
    gateway,
    start_store,
    stop_store,
)
from exesdb.naming import genserver_name
from exesdb.storage import SQLiteBackend
from exesdb.subscriptions import topic
from exesdb.systems.commits import COMMITS, PositionMoved, commit_signal
from exesdb.systems.notification import health
from exesdb.systems.notification.emitters import (
    MAX_IN_FLIGHT,
    emitter_name,
    get_state,
    pool_name,
)
from exesdb.systems.notification.leader import transient_key
from exesdb.systems.pubsub import pubsub_name
from exesdb.systems.store import backend_of

# Quiet periods: how long "nothing more arrives" is watched for.
QUIET = 0.15
WAIT = 10.0


@pytest.fixture
async def store(tmp_path):
    """A running store "s" in a node, for the test's body."""
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        yield "s"


# -- the five kinds of subscription ----------------------------------------------------------


@attrs.frozen
class Case:
    """A subscription and which of the sample events it selects."""

    id: str
    type: str
    selector: Any
    selects: Callable[[EventRecord], bool]
    stream: str | None = None  # a single-stream subscription: start_from is a version

    def pos(self, event: EventRecord) -> int:
        return event.event_number if self.stream is not None else event.position


PATTERN = {"stream_id": "orders-2", "event_type": "Placed"}
PAYLOAD = {"tag": {"k": "a"}}

CASES = [
    Case("all", "by_stream", "$all", lambda e: True),
    Case("stream", "by_stream", "$orders-1", lambda e: e.stream_id == "orders-1",
         stream="orders-1"),
    Case("type", "by_event_type", "Paid", lambda e: e.event_type == "Paid"),
    Case("pattern", "by_event_pattern", PATTERN,
         lambda e: e.stream_id == "orders-2" and e.event_type == "Placed"),
    Case("payload", "by_event_payload", PAYLOAD,
         lambda e: isinstance(e.data, dict) and e.data.get("tag", {}).get("k") == "a"),
]
by_case = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])

SAMPLE = [("orders-1", "Placed"), ("orders-2", "Placed"), ("users-1", "Joined"),
          ("orders-1", "Paid"), ("orders-2", "Paid"), ("orders-1", "Shipped")]


async def append_sample(store: str, rounds: int = 2, start: int = 0) -> None:
    """Append ``rounds`` x SAMPLE: every case selects some events and skips others."""
    for r in range(start, start + rounds):
        for i, (stream, event_type) in enumerate(SAMPLE):
            await gateway.append_events(store, stream, [NewEvent(event_type, {
                "n": r * 100 + i, "tag": {"k": "a" if (r + i) % 2 else "b", "z": 1}})])


async def stored(store: str, case: Case, start: int = 0) -> list[EventRecord]:
    """What the subscription should deliver from ``start``, read back from the store."""
    if case.stream is not None:
        return [e for e in await gateway.get_events(store, case.stream, start, 10_000)]
    return [e for e in await gateway.read_all(store, start, 10_000) if case.selects(e)]


def is_events(name: str = "transient") -> Callable[[Any], bool]:
    return lambda m: type(m) is Events and m.subscription == name


async def take(n: int, name: str = "transient", limit: float = WAIT) -> list[EventRecord]:
    """The next ``n`` events received in Events messages of subscription ``name``."""
    out: list[EventRecord] = []
    with trio.fail_after(limit):
        while len(out) < n:
            batch = await otp.receive(match=is_events(name))
            out.extend(batch.events)
    assert len(out) == n, f"{len(out) - n} events more than expected"
    return out


async def quiet(name: str = "transient", delay: float = QUIET) -> None:
    """Assert that no Events message of ``name`` arrives within ``delay`` seconds."""
    try:
        batch = await otp.receive(match=is_events(name), timeout=delay)
    except otp.ReceiveTimeout:
        return
    raise AssertionError(f"unexpected delivery: {batch!r}")


async def forwarder(parent: otp.Pid) -> None:
    """A subscriber process that passes what it receives on to ``parent``."""
    while True:
        msg = await otp.receive()
        otp.send(parent, ("fwd", otp.self(), msg))


def forwarded(pid: otp.Pid, name: str) -> Callable[[Any], bool]:
    return lambda m: (type(m) is tuple and m[0] == "fwd" and m[1] == pid
                      and type(m[2]) is Events and m[2].subscription == name)


async def take_from(pid: otp.Pid, n: int, name: str, limit: float = WAIT) -> list[EventRecord]:
    out: list[EventRecord] = []
    with trio.fail_after(limit):
        while len(out) < n:
            out.extend((await otp.receive(match=forwarded(pid, name)))[2].events)
    assert len(out) == n
    return out


async def kill(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.exit(pid, otp.KILL)
    await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)


async def subscriptions(store: str) -> dict[str, list[exesdb.Subscription]]:
    out: dict[str, list[exesdb.Subscription]] = {}
    for sub in await gateway.get_subscriptions(store):
        out.setdefault(sub.name, []).append(sub)
    return out


async def eventually(check: Callable[[], Any], limit: float = WAIT) -> None:
    """Retry the async ``check`` until it returns true."""
    with trio.fail_after(limit):
        while not await check():  # noqa: ASYNC110 (state in other processes)
            await trio.sleep(0.01)


def digest(pattern: Any) -> str:
    text = json.dumps(pattern, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


# -- catch-up and live, per type --------------------------------------------------------------


@by_case
async def test_catch_up_from_0_delivers_every_matching_event_in_order(store, case):
    await append_sample(store)
    expected = await stored(store, case)
    assert 0 < len(expected) < 12 or case.id == "all"
    await gateway.save_subscription(store, case.type, case.selector, subscriber=otp.self())
    assert await take(len(expected)) == expected
    await quiet()


@by_case
async def test_catch_up_from_the_middle_starts_at_start_from_included(store, case):
    await append_sample(store, rounds=3)
    everything = await stored(store, case)
    middle = everything[len(everything) // 2]
    start = case.pos(middle)
    expected = await stored(store, case, start)
    assert expected[0] == middle and len(expected) < len(everything)
    await gateway.save_subscription(store, case.type, case.selector, start_from=start,
                                    subscriber=otp.self())
    assert await take(len(expected)) == expected
    await quiet()


@by_case
async def test_catch_up_from_the_end_delivers_only_what_comes_later(store, case):
    await append_sample(store)
    everything = await stored(store, case)
    end = case.pos(everything[-1]) + 1
    await gateway.save_subscription(store, case.type, case.selector, start_from=end,
                                    subscriber=otp.self())
    await quiet()
    await append_sample(store, rounds=1, start=5)
    expected = [e for e in await stored(store, case) if case.pos(e) >= end]
    assert expected and await take(len(expected)) == expected
    await quiet()


@by_case
async def test_live_events_follow_the_catch_up_without_gap_or_duplicate(store, case):
    await append_sample(store)
    await gateway.save_subscription(store, case.type, case.selector, subscriber=otp.self())
    before = await stored(store, case)
    assert await take(len(before)) == before
    await append_sample(store, rounds=2, start=2)
    after = await stored(store, case)
    assert await take(len(after) - len(before)) == after[len(before):]
    await quiet()


@by_case
async def test_with_no_subscriber_events_are_broadcast_on_the_store_pubsub(store, case):
    name = "transient"
    otp.pubsub.subscribe(await gateway.pubsub(store),
                         topic(store, case.type, case.selector, name))
    await append_sample(store)
    await gateway.save_subscription(store, case.type, case.selector)
    expected = await stored(store, case)
    # the default subscription broadcasts $all too, under its own name
    assert await take(len(expected)) == expected


@pytest.mark.parametrize(("type", "selector", "name", "sub_topic"), [
    ("by_stream", "$all", "transient", "$all"),
    ("by_stream", "$orders-1", "transient", "$orders-1"),
    ("by_stream", "$orders-1", "audit", "$audit"),
    ("by_stream", "$all", "audit", "$audit"),
    ("by_event_type", "Paid", "transient", "Paid"),
    ("by_event_type", "Paid", "billing", "*billing-Paid"),
    ("by_event_pattern", PATTERN, "transient", f"evt-pat-transient-{digest(PATTERN)}"),
    ("by_event_pattern", PATTERN, "watch", f"evt-pat-watch-{digest(PATTERN)}"),
    ("by_event_payload", PAYLOAD, "transient", f"evt-pay-transient-{digest(PAYLOAD)}"),
    ("by_event_payload", {"é": "ü", "a": [1, 2]}, "p",
     f"evt-pay-p-{digest({'a': [1, 2], 'é': 'ü'})}"),
])
async def test_broadcasts_go_to_the_topic_named_as_exesdb_names_it(store, type, selector,
                                                                   name, sub_topic):
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:{sub_topic}")
    await gateway.save_subscription(store, type, selector, name=name)
    await gateway.append_events(store, "orders-1", [NewEvent("Paid", {"tag": {"k": "a"}})])
    await gateway.append_events(store, "orders-2", [NewEvent("Placed", {"é": "ü",
                                                                        "a": [1, 2]})])
    batch = await otp.receive(match=is_events(name), timeout=WAIT)
    assert batch.events and batch.events[0].stream_id in ("orders-1", "orders-2")


async def test_the_default_subscription_broadcasts_on_the_all_topic(store):
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$all")
    await append_sample(store, rounds=1)
    assert await take(len(SAMPLE), name="all-events") == await gateway.read_all(store)


async def test_a_pattern_with_a_nested_mapping_matches_as_a_subset(store):
    await gateway.append_events(store, "x", [NewEvent("E", {"a": {"b": 1, "c": 2}}),
                                             NewEvent("E", {"a": {"b": 2}}),
                                             NewEvent("E", b"raw")])
    await gateway.save_subscription(store, "by_event_pattern", {"data": {"a": {"b": 1}}},
                                    subscriber=otp.self())
    [event] = await take(1)
    assert event.data == {"a": {"b": 1, "c": 2}}
    await gateway.save_subscription(store, "by_event_payload", {"a": {}},
                                    subscriber=otp.self())
    assert [e.event_number for e in await take(2)] == [0, 1]  # bytes data never matches
    await quiet()


async def test_a_tuple_in_a_selector_matches_as_the_list_it_is_stored_as(store):
    await gateway.append_events(store, "x", [NewEvent("E", {"a": [1, 2]})])
    await gateway.save_subscription(store, "by_event_payload", {"a": (1, 2)}, name="t",
                                    subscriber=otp.self())
    assert len(await take(1, "t")) == 1
    [sub] = (await subscriptions(store))["t"]
    assert sub.selector == {"a": [1, 2]}


# -- transient subscriptions ------------------------------------------------------------------


async def test_a_transient_subscription_ends_when_its_subscriber_dies(store):
    sub = otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_stream", "$all", subscriber=sub)
    assert "transient" in await subscriptions(store)
    key = transient_key("by_stream", "$all", sub)
    assert otp.whereis(emitter_name(store, key)) is not None
    await kill(sub)

    async def gone() -> bool:
        return "transient" not in await subscriptions(store)

    await eventually(gone)
    assert otp.whereis(pool_name(store, key)) is None


async def test_remove_subscription_of_one_subscriber_ends_only_its_transient(store):
    me, other = otp.self(), otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_event_type", "Paid", subscriber=me)
    await gateway.save_subscription(store, "by_event_type", "Paid", subscriber=other)
    await gateway.remove_subscription(store, "by_event_type", "Paid", subscriber=me)
    [left] = (await subscriptions(store))["transient"]
    assert left.subscriber == other
    await gateway.append_events(store, "o", [NewEvent("Paid", {})])
    assert len(await take_from(other, 1, "transient")) == 1
    await quiet()


async def test_remove_subscription_without_subscriber_ends_every_transient_of_the_selector(
        store):
    me, other = otp.self(), otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_event_pattern", PATTERN, subscriber=me)
    await gateway.save_subscription(store, "by_event_pattern", dict(reversed(PATTERN.items())),
                                    subscriber=other)
    await gateway.save_subscription(store, "by_event_pattern", PATTERN)  # broadcasting
    await gateway.save_subscription(store, "by_event_type", "Placed", subscriber=me)
    assert len((await subscriptions(store))["transient"]) == 4
    await gateway.remove_subscription(store, "by_event_pattern", PATTERN)
    [left] = (await subscriptions(store))["transient"]
    assert (left.type, left.selector) == ("by_event_type", "Placed")


async def test_a_transient_subscription_is_not_kept_across_a_restart(tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.save_subscription("s", "by_stream", "$all", subscriber=otp.self())
        await gateway.save_subscription("s", "by_stream", "$all")
        await stop_store("s")
        await start_store(store_id="s", data_dir=tmp_path)
        assert "transient" not in await subscriptions("s")


async def test_ack_on_a_transient_subscription_does_nothing(store):
    await append_sample(store, rounds=1)
    await gateway.save_subscription(store, "by_stream", "$all", subscriber=otp.self())
    events = await take(len(SAMPLE))
    await gateway.ack_event(store, "transient", otp.self(), events[-1])
    [sub] = (await subscriptions(store))["transient"]
    assert sub.position is None


# -- persistent subscriptions -----------------------------------------------------------------


async def test_ack_event_advances_the_position_cumulatively(store):
    me = otp.self()
    await append_sample(store, rounds=2)
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    events = await take(12, "p")
    [sub] = (await subscriptions(store))["p"]
    assert sub.position is None
    await gateway.ack_event(store, "p", me, events[7])  # acks 0..7 at once
    [sub] = (await subscriptions(store))["p"]
    assert sub.position == events[7].position
    await gateway.ack_event(store, "p", me, events[3])  # an older ack moves nothing back
    [sub] = (await subscriptions(store))["p"]
    assert sub.position == events[7].position
    # a new subscriber (the same process again) gets what follows the ack
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    assert await take(4, "p") == events[8:]


async def test_a_single_stream_subscription_acks_by_stream_version(store):
    me = otp.self()
    await append_sample(store, rounds=2)
    await gateway.save_subscription(store, "by_stream", "$orders-1", name="o", subscriber=me)
    events = await take(6, "o")
    await gateway.ack_event(store, "o", me, events[2])
    [sub] = (await subscriptions(store))["o"]
    assert sub.position == 2


async def test_the_acknowledged_position_survives_a_restart_of_the_store(tmp_path):
    async with otp.node():
        me = otp.self()
        await start_store(store_id="s", data_dir=tmp_path)
        await append_sample("s")
        await gateway.save_subscription("s", "by_event_type", "Paid", name="p",
                                        subscriber=me)
        events = await take(4, "p")
        await gateway.ack_event("s", "p", me, events[1])
        await stop_store("s")
        await start_store(store_id="s", data_dir=tmp_path)
        [sub] = (await subscriptions("s"))["p"]
        assert (sub.type, sub.selector, sub.start_from, sub.position) == (
            "by_event_type", "Paid", 0, events[1].position)
        await gateway.save_subscription("s", "by_event_type", "Paid", name="p",
                                        subscriber=me)
        got = []
        with trio.fail_after(WAIT):
            while len(got) < 2:
                got.extend((await otp.receive(match=is_events("p"))).events)
        # what was in flight when the store stopped may come twice, but never acked events
        assert got[-2:] == events[2:]
        assert all(e.position > events[1].position for e in got)


async def test_saving_an_existing_name_keeps_the_position_and_replaces_the_subscriber(store):
    await append_sample(store)
    old = otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=old)
    events = await take_from(old, 12, "p")
    await gateway.ack_event(store, "p", old, events[4])
    new = otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_stream", "$all", name="p", start_from=0,
                                    subscriber=new)
    [sub] = (await subscriptions(store))["p"]
    assert (sub.subscriber, sub.start_from, sub.position) == (new, 0, events[4].position)
    assert await take_from(new, 7, "p") == events[5:]
    await gateway.append_events(store, "z", [NewEvent("Late", {})])
    [late] = await take_from(new, 1, "p")
    assert late.stream_id == "z"
    with pytest.raises(otp.ReceiveTimeout):
        await otp.receive(match=forwarded(old, "p"), timeout=QUIET)


async def test_a_dead_subscriber_makes_its_subscription_wait_for_a_new_one(store):
    await append_sample(store, rounds=1)
    pubsub = await gateway.pubsub(store)
    otp.pubsub.subscribe(pubsub, topic(store, "by_stream", "$all", "p"))
    old = otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=old)
    events = await take_from(old, 6, "p")
    await gateway.ack_event(store, "p", old, events[1])
    await kill(old)

    async def waiting() -> bool:
        [sub] = (await subscriptions(store))["p"]
        return sub.subscriber is None

    await eventually(waiting)
    await append_sample(store, rounds=1, start=1)
    await quiet("p")  # it waits: no broadcast
    [sub] = (await subscriptions(store))["p"]
    assert sub.position == events[1].position
    new = otp.spawn(forwarder, otp.self())
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=new)
    got = await take_from(new, 10, "p")
    assert got == (await gateway.read_all(store))[2:]


async def test_at_most_max_in_flight_unacknowledged_events_are_delivered(store):
    me = otp.self()
    total = MAX_IN_FLIGHT * 2 + 500
    for chunk in range(0, total, 500):
        await gateway.append_events(store, "big", [NewEvent("E", {"i": i})
                                                   for i in range(chunk, chunk + 500)])
    await gateway.save_subscription(store, "by_stream", "$big", name="slow", subscriber=me)
    first = await take(MAX_IN_FLIGHT, "slow")
    await quiet("slow")
    [entry] = [v for k, v in (await health(store)).items() if k == "slow"]
    assert entry["in_flight"] == MAX_IN_FLIGHT
    await gateway.ack_event(store, "slow", me, first[299])  # 300 acked: 300 more may come
    more = await take(300, "slow")
    await quiet("slow")
    assert [e.event_number for e in more] == list(range(MAX_IN_FLIGHT, MAX_IN_FLIGHT + 300))
    await gateway.ack_event(store, "slow", me, more[-1])  # none in flight: 1000 more
    again = await take(MAX_IN_FLIGHT, "slow")
    await quiet("slow")
    await gateway.ack_event(store, "slow", me, again[-1])
    rest = await take(total - 2 * MAX_IN_FLIGHT - 300, "slow")
    assert rest[-1].event_number == total - 1


async def test_remove_subscription_of_a_persistent_name_deletes_its_position(store):
    me = otp.self()
    await append_sample(store, rounds=1)
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    events = await take(6, "p")
    await gateway.ack_event(store, "p", me, events[-1])
    await gateway.remove_subscription(store, "by_stream", "$all", name="p")
    assert "p" not in await subscriptions(store)
    assert otp.whereis(pool_name(store, "p")) is None
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    await quiet("p")
    # created again, it starts from its new start_from: the old position is gone
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    assert len(await take(7, "p")) == 7


async def test_a_persistent_subscription_without_subscriber_broadcasts_and_moves_on(store):
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:*b-Paid")
    await append_sample(store)
    await gateway.save_subscription(store, "by_event_type", "Paid", name="b")
    events = await take(4, "b")
    assert events == await stored(store, CASES[2])

    async def moved() -> bool:
        [sub] = (await subscriptions(store))["b"]
        return sub.position == events[-1].position

    await eventually(moved)


# -- the default subscription -----------------------------------------------------------------


async def test_the_default_subscription_is_created_at_the_end_on_the_first_start(tmp_path):
    backend = await SQLiteBackend.open(tmp_path / "s")
    await backend.append("x", -1, [NewEvent("E", {}) for _ in range(5)])
    await backend.close()
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        [sub] = (await subscriptions("s"))["all-events"]
        assert (sub.type, sub.selector, sub.start_from, sub.subscriber) == (
            "by_stream", "$all", 5, None)


async def test_the_default_subscription_resumes_from_its_stored_position(tmp_path):
    async with otp.node():
        me = otp.self()
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "x", [NewEvent("Before", {})])

        async def broadcast() -> bool:
            return (await subscriptions("s"))["all-events"][0].position == 0

        await eventually(broadcast)
        await stop_store("s")
        backend = await SQLiteBackend.open(tmp_path / "s")
        # stopping stored how far it broadcast (to nobody): past "Before"
        assert await backend.read_checkpoint("all-events") == 0
        await backend.append("x", 0, [NewEvent("WhileStopped", {}) for _ in range(3)])
        await backend.close()

        async def listen() -> None:  # on the topic before the store's emitters start
            with trio.fail_after(WAIT):
                while otp.whereis(pubsub_name("s", "events")) is None:
                    await trio.lowlevel.checkpoint()
            otp.pubsub.subscribe(pubsub_name("s", "events"), "s:$all")
            while True:
                otp.send(me, await otp.receive())

        otp.spawn(listen)
        await start_store(store_id="s", data_dir=tmp_path)
        events = await take(3, "all-events")
        assert [(e.event_type, e.event_number) for e in events] == [
            ("WhileStopped", 1), ("WhileStopped", 2), ("WhileStopped", 3)]
        [sub] = (await subscriptions("s"))["all-events"]
        assert sub.start_from == 0


async def test_the_default_subscription_covers_what_is_appended_once_start_store_returns(
        tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        otp.pubsub.subscribe(await gateway.pubsub("s"), "s:$all")
        await gateway.append_events("s", "x", [NewEvent("First", {})])
        [sub] = (await subscriptions("s"))["all-events"]
        assert sub.start_from == 0
        [event] = await take(1, "all-events")
        assert event.event_type == "First"


# -- a broadcast nobody listens to ----------------------------------------------------------


async def hushed_all_events_emitter(store: str) -> otp.Pid:
    """The default subscription's emitter, once it is hushed (nobody listens to it)."""
    emitter = otp.whereis(emitter_name(store, "all-events"))
    assert emitter is not None

    async def hushed() -> bool:
        return emitter in commit_signal(store).unheard

    await eventually(hushed)
    return emitter


async def test_a_broadcast_nobody_listens_to_is_moved_by_the_commits_not_woken(store):
    await gateway.append_events(store, "x", [NewEvent("First", {})])
    emitter = await hushed_all_events_emitter(store)
    for i in range(20):
        await gateway.append_events(store, "x", [NewEvent("More", {"i": i})])
    assert emitter in commit_signal(store).unheard
    assert commit_signal(store).unheard[emitter].position == 20
    notified = [pid for pid, _ in otp.registry.lookup(pubsub_name(store, "system"), COMMITS)]
    assert emitter not in notified


async def test_a_hushed_broadcast_answers_a_state_question_without_waking(store):
    await gateway.append_events(store, "x", [NewEvent("First", {})])
    emitter = await hushed_all_events_emitter(store)
    await gateway.append_events(store, "x", [NewEvent("Second", {})])
    state = await get_state(emitter)
    assert state.position == 1  # the place the commit moved
    assert emitter in commit_signal(store).unheard


async def test_a_place_moved_notice_that_comes_after_a_wake_up_is_dropped_quietly(store, caplog):
    await gateway.append_events(store, "x", [NewEvent("First", {})])
    emitter = await hushed_all_events_emitter(store)
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$all")
    await gateway.append_events(store, "x", [NewEvent("Heard", {})])  # wakes it
    [heard] = await take(1, "all-events")
    assert heard.event_type == "Heard"
    assert emitter not in commit_signal(store).unheard
    otp.send(emitter, PositionMoved())  # as a commit sent it before the wake-up
    await get_state(emitter)  # handled after the notice
    assert "unexpected message" not in caplog.text


async def test_a_listener_that_comes_to_a_hushed_broadcast_gets_what_is_committed_after(store):
    await gateway.append_events(store, "x", [NewEvent("Before", {})])
    await hushed_all_events_emitter(store)
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$all")
    await gateway.append_events(store, "x", [NewEvent("After", {}), NewEvent("Later", {})])
    await gateway.append_events(store, "y", [NewEvent("Last", {})])
    events = await take(3, "all-events")
    assert [e.event_type for e in events] == ["After", "Later", "Last"]
    await quiet("all-events")


async def test_a_hushed_broadcast_stores_and_reports_the_position_the_commits_moved(store):
    for i in range(5):
        await gateway.append_events(store, "x", [NewEvent("E", {"i": i})])

    async def stored() -> bool:
        return await backend_of(store).read_checkpoint("all-events") == 4

    await eventually(stored)
    [sub] = (await subscriptions(store))["all-events"]
    assert sub.position == 4


# -- restarts of the processes behind a subscription ------------------------------------------


async def test_a_waiting_subscription_keeps_waiting_when_its_emitter_restarts(store):
    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$p")
    async with gateway.subscribe(store, "by_stream", "$all", name="p"):
        pass  # leaving the block: it waits for its next subscriber
    await kill(otp.whereis(emitter_name(store, "p")))
    await append_sample(store, rounds=1)
    await quiet("p")  # restarted, it still waits: no broadcast
    [sub] = (await subscriptions(store))["p"]
    assert (sub.subscriber, sub.position) == (None, None)
    await gateway.save_subscription(store, "by_stream", "$all", name="p",
                                    subscriber=otp.self())
    assert len(await take(6, "p")) == 6


async def test_a_subscriber_keeps_its_subscription_across_a_crash_of_the_store_core(store):
    from exesdb.systems import CoreSystem

    me = otp.self()
    await append_sample(store, rounds=1)
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    events = await take(6, "p")
    await gateway.ack_event(store, "p", me, events[2])
    await kill(otp.whereis(genserver_name(CoreSystem, store)))
    await eventually(_answers(store))
    # delivery resumes, to the same subscriber, after the last ack
    assert await take(3, "p") == events[3:]
    await gateway.append_events(store, "x", [NewEvent("After", {})])
    [event] = await take(1, "p")
    assert event.event_type == "After"


def _answers(store: str) -> Callable[[], Any]:
    async def check() -> bool:
        try:
            await gateway.get_subscriptions(store)
        except exesdb.StoreUnavailable:
            return False
        return True

    return check


async def test_a_broadcast_position_is_stored_under_a_steady_flow_of_appends(store):
    from exesdb.systems.notification.emitters import CHECKPOINT_INTERVAL

    otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$b")
    await gateway.save_subscription(store, "by_stream", "$all", name="b")
    stored_at = None
    with trio.fail_after(WAIT):
        while stored_at is None:  # appends far more often than CHECKPOINT_INTERVAL
            await gateway.append_events(store, "x", [NewEvent("E", {})])
            await trio.sleep(CHECKPOINT_INTERVAL / 20)
            stored_at = await backend_of(store).read_checkpoint("b")
    assert stored_at >= 0


# -- get_subscriptions, health, leadership ----------------------------------------------------


async def test_get_subscriptions_reports_every_field(store):
    me = otp.self()
    await append_sample(store, rounds=1)
    await gateway.save_subscription(store, "by_event_pattern", PATTERN, name="pat",
                                    start_from=1, subscriber=me)
    await gateway.save_subscription(store, "by_stream", "$orders-1", subscriber=me)
    [event] = await take(1, "pat")
    await gateway.ack_event(store, "pat", me, event)
    subs = await gateway.get_subscriptions(store)
    assert all(isinstance(s, exesdb.Subscription) for s in subs)
    assert [(s.name, s.type, s.selector, s.start_from, s.subscriber) for s in subs] == [
        ("all-events", "by_stream", "$all", 0, None),
        ("pat", "by_event_pattern", PATTERN, 1, me),
        ("transient", "by_stream", "$orders-1", 0, me),
    ]
    assert subs[1].position == event.position
    assert subs[2].position is None


async def test_health_reports_lag_liveness_and_in_flight(store):
    sub = otp.spawn(forwarder, otp.self())
    await append_sample(store, rounds=1)
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=sub)
    events = await take_from(sub, 6, "p")
    await gateway.ack_event(store, "p", sub, events[1])
    entry = (await health(store))["p"]
    assert (entry["position"], entry["head"], entry["lag"], entry["in_flight"],
            entry["subscriber_alive"], entry["running"]) == (
        events[1].position, events[-1].position, 4, 4, True, True)
    await kill(sub)
    await eventually(lambda: _no_subscriber(store, "p"))
    entry = (await health(store))["p"]
    assert (entry["subscriber"], entry["in_flight"], entry["running"]) == (None, 0, True)


async def _no_subscriber(store: str, name: str) -> bool:
    [sub] = (await subscriptions(store))[name]
    return sub.subscriber is None


async def test_a_node_that_stops_leading_stands_its_emitters_down(store):
    await gateway.save_subscription(store, "by_stream", "$all", name="p",
                                    subscriber=otp.self())
    from exesdb.systems.notification import activate, deactivate, is_active

    assert otp.whereis(pool_name(store, "p")) is not None
    await deactivate(store)
    assert not await is_active(store)
    assert otp.whereis(pool_name(store, "p")) is None
    assert otp.whereis(pool_name(store, "all-events")) is None
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    await quiet("p")
    await activate(store)  # ExESDB's LeaderWorker.activate(store)
    assert await is_active(store)
    assert otp.whereis(pool_name(store, "p")) is not None
    [event] = await take(1, "p")
    assert event.stream_id == "x"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("type", "selector", "message"), [
    ("by_nothing", "$all", "type:"),
    ("by_stream", "orders", "selector:"),
    ("by_stream", "$", "selector:"),
    ("by_stream", 5, "selector:"),
    ("by_event_type", "", "selector:"),
    ("by_event_type", 3, "selector:"),
    ("by_event_pattern", "Paid", "selector:"),
    ("by_event_pattern", {}, "selector:"),
    ("by_event_pattern", {"colour": "red"}, "selector: 'colour' is not a field of EventRecord"),
    ("by_event_payload", ["k"], "selector:"),
    ("by_event_payload", {"k": object()}, "selector:"),
])
async def test_a_bad_type_or_selector_raises_invalid_argument(store, type, selector, message):
    with pytest.raises(InvalidArgument, match="^" + message.replace("$", r"\$")):
        await gateway.save_subscription(store, type, selector)
    with pytest.raises(InvalidArgument, match="^" + message.replace("$", r"\$")):
        await gateway.remove_subscription(store, type, selector)
    assert [s.name for s in await gateway.get_subscriptions(store)] == ["all-events"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start_from": -1}, "start_from:"),
    ({"start_from": True}, "start_from:"),
    ({"start_from": "0"}, "start_from:"),
    ({"name": ""}, "name:"),
    ({"name": 7}, "name:"),
    ({"subscriber": "me"}, "subscriber:"),
])
async def test_a_bad_start_name_or_subscriber_raises_invalid_argument(store, kwargs, message):
    with pytest.raises(InvalidArgument, match="^" + message):
        await gateway.save_subscription(store, "by_stream", "$all", **kwargs)


async def test_ack_event_of_something_else_than_an_event_raises_invalid_argument(store):
    with pytest.raises(InvalidArgument, match=r"^event:"):
        await gateway.ack_event(store, "all-events", None, {"position": 3})


async def test_removing_an_unknown_persistent_name_raises_subscription_not_found(store):
    with pytest.raises(SubscriptionNotFound):
        await gateway.remove_subscription(store, "by_stream", "$all", name="nope")


async def test_acking_an_unknown_persistent_name_raises_subscription_not_found(store):
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    [event] = await gateway.get_events(store, "x")
    with pytest.raises(SubscriptionNotFound):
        await gateway.ack_event(store, "nope", otp.self(), event)


async def test_removing_a_transient_that_does_not_exist_is_not_an_error(store):
    await gateway.remove_subscription(store, "by_stream", "$all", subscriber=otp.self())


# -- the subscribe() context manager ----------------------------------------------------------


async def test_subscribe_iterates_catch_up_then_live_and_removes_a_transient_on_exit(store):
    await append_sample(store, rounds=1)
    seen = []
    async with gateway.subscribe(store, "by_stream", "$orders-1") as events:
        async for event in events:
            seen.append(event)
            if len(seen) == 3:
                await gateway.append_events(store, "orders-1", [NewEvent("Live", {})])
            if len(seen) == 4:
                break
    assert [e.event_type for e in seen] == ["Placed", "Paid", "Shipped", "Live"]
    assert "transient" not in await subscriptions(store)


async def test_subscribe_acks_a_persistent_subscription_as_the_loop_advances(store):
    for i in range(5):
        await gateway.append_events(store, "x", [NewEvent("E", {"i": i})])
    seen = []
    async with gateway.subscribe(store, "by_stream", "$x", name="loop") as events:
        async for event in events:
            seen.append(event.event_number)
            if event.event_number == 4:
                await gateway.append_events(store, "x", [NewEvent("E", {"i": 5})])
            if event.event_number == 5:
                break
    assert seen == list(range(6))
    [sub] = (await subscriptions(store))["loop"]
    # the batch of 0..4 was acknowledged when the loop went on to event 5; 5 was not
    assert (sub.position, sub.subscriber) == (4, None)
    async with gateway.subscribe(store, "by_stream", "$x", name="loop") as events:
        async for event in events:
            assert event.event_number == 5
            break


async def test_subscribe_after_a_persistent_loop_resumes_after_the_last_ack(store):
    await gateway.append_events(store, "x", [NewEvent("E", {"i": i}) for i in range(3)])
    async with gateway.subscribe(store, "by_event_type", "E", name="r") as events:
        async for event in events:
            if event.event_number == 2:
                break
    await gateway.append_events(store, "x", [NewEvent("E", {"i": 3})])
    async with gateway.subscribe(store, "by_event_type", "E", name="r") as events:
        got = []
        async for event in events:
            got.append(event.event_number)
            if event.event_number == 3:
                break
    assert got == [0, 1, 2, 3]  # nothing was acknowledged: the first batch comes again


async def test_two_subscribe_loops_of_one_process_each_get_only_their_own_events(store):
    await gateway.append_events(store, "a", [NewEvent("A", {"n": 0})])
    await gateway.append_events(store, "b", [NewEvent("B", {"n": 0})])
    async with (gateway.subscribe(store, "by_stream", "$a") as from_a,
                gateway.subscribe(store, "by_stream", "$b") as from_b):
        await gateway.append_events(store, "b", [NewEvent("B", {"n": 1})])
        await gateway.append_events(store, "a", [NewEvent("A", {"n": 1})])
        with trio.fail_after(WAIT):
            got_b = [await anext(from_b) for _ in range(2)]
            got_a = [await anext(from_a) for _ in range(2)]
    assert [(e.stream_id, e.data["n"]) for e in got_a] == [("a", 0), ("a", 1)]
    assert [(e.stream_id, e.data["n"]) for e in got_b] == [("b", 0), ("b", 1)]


# -- several stores ---------------------------------------------------------------------------


async def test_two_stores_with_subscriptions_of_the_same_names_do_not_cross_talk(tmp_path):
    async with otp.node():
        me = otp.self()
        await start_store(store_id="a", data_dir=tmp_path)
        await start_store(store_id="b", data_dir=tmp_path)
        subs = {s: otp.spawn(forwarder, me) for s in ("a", "b")}
        for store in ("a", "b"):
            otp.pubsub.subscribe(await gateway.pubsub(store), f"{store}:$all")
            await gateway.save_subscription(store, "by_stream", "$all", name="p",
                                            subscriber=subs[store])
            await gateway.save_subscription(store, "by_stream", "$all",
                                            subscriber=subs[store])
        await gateway.append_events("a", "x", [NewEvent("InA", {})])
        await gateway.append_events("a", "x", [NewEvent("InA", {})])
        await gateway.append_events("b", "x", [NewEvent("InB", {})])
        for name in ("p", "transient"):
            assert [e.event_type for e in await take_from(subs["a"], 2, name)] == ["InA"] * 2
            assert [e.event_type for e in await take_from(subs["b"], 1, name)] == ["InB"]
        broadcast: list[str] = []
        while len(broadcast) < 3:  # one batch per read: two commits may share one
            batch = await otp.receive(match=is_events("all-events"), timeout=WAIT)
            broadcast.extend(e.event_type for e in batch.events)
        assert sorted(broadcast) == ["InA", "InA", "InB"]
        a_events = await gateway.get_events("a", "x")
        await gateway.ack_event("a", "p", subs["a"], a_events[1])
        positions = {s: (await subscriptions(s))["p"][0].position for s in ("a", "b")}
        assert positions == {"a": a_events[1].position, "b": None}
        await gateway.remove_subscription("a", "by_stream", "$all", name="p")
        assert "p" in await subscriptions("b")
        with pytest.raises(SubscriptionNotFound):
            await gateway.remove_subscription("a", "by_stream", "$all", name="p")
        await gateway.append_events("b", "x", [NewEvent("InB", {})])
        assert len(await take_from(subs["b"], 1, "p")) == 1
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(match=forwarded(subs["a"], "p"), timeout=QUIET)


# -- the catch-up/live switch under concurrent appends (property) -----------------------------
# End to end, through the emitters. Their reading is exesdb.systems.commits.Cursor, the one
# catch-up-then-live loop, which tests/exesdb/test_commits_follow.py checks on its own
# against late, coalesced and missing commit notifications.

STREAMS = ("a", "b", "c")
TYPES = ("T1", "T2", "T3")
SELECTIONS = [
    Case("all", "by_stream", "$all", lambda e: True),
    Case("stream-a", "by_stream", "$a", lambda e: e.stream_id == "a", stream="a"),
    Case("stream-c", "by_stream", "$c", lambda e: e.stream_id == "c", stream="c"),
    Case("type-T2", "by_event_type", "T2", lambda e: e.event_type == "T2"),
    Case("pattern", "by_event_pattern", {"stream_id": "b", "event_type": "T1"},
         lambda e: e.stream_id == "b" and e.event_type == "T1"),
    Case("payload", "by_event_payload", {"k": 1}, lambda e: e.data["k"] == 1),
]

appends_st = st.lists(st.tuples(st.sampled_from(STREAMS), st.sampled_from(TYPES),
                                st.integers(1, 3), st.integers(0, 3)),
                      min_size=1, max_size=12)
"""(stream, type, events in the append, checkpoints before it)."""
subscribes_st = st.lists(st.tuples(st.sampled_from(range(len(SELECTIONS))),
                                   st.one_of(st.just("end"), st.integers(0, 25)),
                                   st.booleans(), st.integers(0, 30)),
                         min_size=1, max_size=4)
"""(selection, start_from or "end", persistent, checkpoints before subscribing)."""


async def _appender(parent: otp.Pid, plan: list[tuple[str, str, int, int]], tag: int) -> None:
    for i, (stream, event_type, n, pause) in enumerate(plan):
        for _ in range(pause):
            await trio.lowlevel.checkpoint()
        await gateway.append_events("s", stream, [
            NewEvent(event_type, {"k": (i + j) % 2, "tag": tag}) for j in range(n)])
    otp.send(parent, ("appended", tag))


async def _collector(parent: otp.Pid, index: int, case: Case, start: Any, name: str,
                     pause: int, got: list[EventRecord]) -> None:
    for _ in range(pause):
        await trio.lowlevel.checkpoint()
    if start == "end":  # the end as it is now, while the appends go on
        if case.stream is not None:
            start = await gateway.get_version("s", case.stream) + 1
        else:
            last = await gateway.read_all("s", exesdb.END, 1, "backward")
            start = last[0].position + 1 if last else 0
    await gateway.save_subscription("s", case.type, case.selector, name=name,
                                    start_from=start, subscriber=otp.self())
    otp.send(parent, ("subscribed", index, start))
    while True:
        got.extend((await otp.receive(match=is_events(name))).events)


@settings(max_examples=50)
@given(plans=st.lists(appends_st, min_size=1, max_size=2), subscribes=subscribes_st)
async def test_every_subscriber_sees_exactly_the_matching_events_from_its_start(
        plans, subscribes):
    with tempfile.TemporaryDirectory() as root:
        async with otp.node():
            me = otp.self()
            await start_store(store_id="s", data_dir=root)
            got: list[list[EventRecord]] = [[] for _ in subscribes]
            for tag, plan in enumerate(plans):
                otp.spawn(_appender, me, plan, tag)
            for index, (selection, start, persistent, pause) in enumerate(subscribes):
                otp.spawn(_collector, me, index, SELECTIONS[selection], start,
                          f"p{index}" if persistent else "transient", pause, got[index])
            starts: dict[int, int] = {}
            with trio.fail_after(WAIT):
                for _ in range(len(plans) + len(subscribes)):
                    msg = await otp.receive(match=lambda m: type(m) is tuple and m[0] in (
                        "appended", "subscribed"))
                    if msg[0] == "subscribed":
                        starts[msg[1]] = msg[2]
            for index, (selection, *_) in enumerate(subscribes):
                case = SELECTIONS[selection]
                expected = await stored("s", case, starts[index])
                with trio.fail_after(3):  # short: a failing example shrinks sooner
                    while len(got[index]) < len(expected):  # noqa: ASYNC110
                        await trio.sleep(0.005)
                await trio.sleep(0.02)
                assert got[index] == expected, (case.id, starts[index])


async def test_leaving_subscribe_after_the_store_stopped_raises_nothing(tmp_path):
    async with otp.node():
        await exesdb.start_store(store_id="gone", data_dir=tmp_path)
        await gateway.append_events("gone", "x", [NewEvent("E", {})])
        async with gateway.subscribe("gone", "by_stream", "$all") as events:
            async for _event in events:
                await exesdb.stop_store("gone")
                break


async def test_after_a_node_restart_a_subscription_with_a_subscriber_waits_for_one(tmp_path):
    async with otp.node():
        me = otp.self()
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "x", [NewEvent("E", {"n": n}) for n in range(3)])
        await gateway.save_subscription("s", "by_stream", "$all", name="p", subscriber=me)
        batch = await otp.receive(match=is_events("p"), timeout=WAIT)
        await gateway.ack_event("s", "p", me, batch.events[0])
    async with otp.node():  # a new node: no process remembers the old subscriber
        me = otp.self()
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "x", [NewEvent("E", {"n": 3})])
        await trio.sleep(QUIET)  # time enough for a (wrong) broadcast to move it on
        [sub] = [s for s in await gateway.get_subscriptions("s") if s.name == "p"]
        assert (sub.subscriber, sub.position) == (None, 0)
        await gateway.save_subscription("s", "by_stream", "$all", name="p", subscriber=me)
        got: list[int] = []
        while len(got) < 3:
            batch = await otp.receive(match=is_events("p"), timeout=WAIT)
            got.extend(e.data["n"] for e in batch.events)
        assert got == [1, 2, 3]  # everything after the last ack, nothing lost


async def test_a_persistent_subscription_saved_without_subscriber_broadcasts_after_restart(
        tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.save_subscription("s", "by_stream", "$all", name="feed")
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        name = await gateway.pubsub("s")
        otp.pubsub.subscribe(name, "s:$feed")
        await gateway.append_events("s", "x", [NewEvent("E", {"n": 1})])
        batch = await otp.receive(match=is_events("feed"), timeout=WAIT)
        assert [e.data["n"] for e in batch.events] == [1]
