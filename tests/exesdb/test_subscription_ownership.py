"""Whose a subscription is: only its subscriber acknowledges its events, and the subscriber
of a transient subscription is told when the subscription ends with the store's core (a
restart of the core, a killed leader tracker, a stopped store) instead of waiting forever;
it can then subscribe again from where it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

import otp
from exesdb import (
    Events,
    InvalidArgument,
    NewEvent,
    StoreUnavailable,
    SubscriptionLost,
    gateway,
    start_store,
    stop_store,
)
from exesdb.naming import genserver_name
from exesdb.systems import CoreSystem
from exesdb.systems.notification import LeaderTracker, NotificationSystem

from .store_helpers import kill_and_wait, until_available

WAIT = 10.0
QUIET = 0.2  # how long "nothing more arrives" is watched for


@pytest.fixture
async def store(tmp_path):
    """A running store "s" in a node, for the test's body."""
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        yield "s"


def is_events(name: str) -> Callable[[Any], bool]:
    return lambda m: type(m) is Events and m.subscription == name


def is_lost(m: Any) -> bool:
    return type(m) is SubscriptionLost


async def take(n: int, name: str = "transient") -> list[Any]:
    """The next ``n`` events of the subscription ``name`` received by this process."""
    out: list[Any] = []
    with trio.fail_after(WAIT):
        while len(out) < n:
            out.extend((await otp.receive(match=is_events(name))).events)
    assert len(out) == n
    return out


async def kill(cls: type, store: str) -> None:
    """Kill the store's process of class ``cls`` and wait until it is gone."""
    pid = otp.whereis(genserver_name(cls, store))
    assert pid is not None
    await kill_and_wait(pid)


async def position_of(store: str, name: str) -> int | None:
    [sub] = [s for s in await gateway.get_subscriptions(store) if s.name == name]
    return sub.position


# -- acknowledgements -------------------------------------------------------------------------


async def test_an_ack_from_a_process_that_is_not_the_subscriber_is_refused(store):
    me, other = otp.self(), otp.spawn(otp.receive)
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=me)
    [event] = await take(1, "p")
    with pytest.raises(InvalidArgument, match=r"^subscriber: only the subscriber"):
        await gateway.ack_event(store, "p", other, event)
    assert await position_of(store, "p") is None


async def test_an_ack_without_subscriber_is_refused_when_the_subscription_has_one(store):
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    await gateway.save_subscription(store, "by_stream", "$all", name="p",
                                    subscriber=otp.self())
    [event] = await take(1, "p")
    with pytest.raises(InvalidArgument, match=r"^subscriber: "):
        await gateway.ack_event(store, "p", None, event)
    assert await position_of(store, "p") is None


async def test_an_ack_from_a_subscriber_that_was_replaced_is_refused(store):
    old = otp.spawn(otp.receive)
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    await gateway.save_subscription(store, "by_stream", "$all", name="p", subscriber=old)
    await gateway.save_subscription(store, "by_stream", "$all", name="p",
                                    subscriber=otp.self())
    [event] = await take(1, "p")
    with pytest.raises(InvalidArgument, match=r"^subscriber: "):
        await gateway.ack_event(store, "p", old, event)


async def test_an_ack_whose_subscriber_is_not_a_pid_is_refused_before_it_is_sent(store):
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    [event] = await gateway.read_all(store)
    with pytest.raises(InvalidArgument, match=r"^subscriber: must be a pid or None"):
        await gateway.ack_event(store, "all-events", "me", event)  # type: ignore[arg-type]


# -- transient subscriptions that end with the store's core -----------------------------------


async def test_a_subscribe_loop_raises_store_unavailable_when_the_store_core_restarts(store):
    await gateway.append_events(store, "x", [NewEvent("E", {})])
    seen = []
    with pytest.raises(StoreUnavailable), trio.fail_after(WAIT):
        async with gateway.subscribe(store, "by_stream", "$all") as events:
            async for event in events:
                seen.append(event)
                await kill(CoreSystem, store)
    assert len(seen) == 1


@pytest.mark.parametrize("ending", [CoreSystem, NotificationSystem, LeaderTracker],
                         ids=["core", "notification", "tracker"])
async def test_a_process_subscriber_is_sent_subscription_lost_however_its_tracker_ends(
        store, ending):
    await gateway.save_subscription(store, "by_event_type", "Paid", subscriber=otp.self())
    await kill(ending, store)
    lost = await otp.receive(match=is_lost, timeout=WAIT)
    assert (lost.store_id, lost.type, lost.selector, lost.name) == (
        store, "by_event_type", "Paid", "transient")


async def test_a_stopped_store_sends_subscription_lost_with_the_reason(store):
    await gateway.save_subscription(store, "by_stream", "$x", subscriber=otp.self())
    await stop_store(store)
    lost = await otp.receive(match=is_lost, timeout=0)
    assert (lost.selector, lost.reason) == ("$x", otp.SHUTDOWN)


async def test_nothing_of_a_lost_subscription_is_delivered_after_the_message(store):
    await gateway.save_subscription(store, "by_stream", "$all", subscriber=otp.self())
    await kill(LeaderTracker, store)  # its emitters would outlive it: they end with it
    await otp.receive(match=is_lost, timeout=WAIT)
    await until_available(store)
    await gateway.append_events(store, "x", [NewEvent("After", {})])
    with pytest.raises(otp.ReceiveTimeout):
        await otp.receive(match=is_events("transient"), timeout=QUIET)
    assert not [s for s in await gateway.get_subscriptions(store) if s.name == "transient"]


async def test_a_subscriber_told_of_the_loss_resubscribes_from_its_last_position(store):
    me = otp.self()
    await gateway.append_events(store, "x", [NewEvent("Before", {"n": n}) for n in range(3)])
    await gateway.save_subscription(store, "by_stream", "$all", subscriber=me)
    before = await take(3)
    await kill(CoreSystem, store)
    await otp.receive(match=is_lost, timeout=WAIT)
    await until_available(store)
    await gateway.append_events(store, "x", [NewEvent("After", {"n": n}) for n in range(2)])
    with trio.fail_after(WAIT):
        while True:  # the store's core may still be restarting its subscriptions
            try:
                await gateway.save_subscription(store, "by_stream", "$all",
                                                start_from=before[-1].position + 1,
                                                subscriber=me)
                break
            except StoreUnavailable:
                await trio.sleep(0.01)
    after = await take(2)
    assert [(e.event_type, e.data["n"]) for e in after] == [("After", 0), ("After", 1)]
    with pytest.raises(otp.ReceiveTimeout):
        await otp.receive(match=is_events("transient"), timeout=QUIET)
