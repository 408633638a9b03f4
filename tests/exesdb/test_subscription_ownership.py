"""Whose a subscription is: only its subscriber acknowledges its events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

import otp
from exesdb import Events, InvalidArgument, NewEvent, gateway, start_store

WAIT = 10.0


@pytest.fixture
async def store(tmp_path):
    """A running store "s" in a node, for the test's body."""
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        yield "s"


def is_events(name: str) -> Callable[[Any], bool]:
    return lambda m: type(m) is Events and m.subscription == name


async def take(n: int, name: str = "transient") -> list[Any]:
    """The next ``n`` events of the subscription ``name`` received by this process."""
    out: list[Any] = []
    with trio.fail_after(WAIT):
        while len(out) < n:
            out.extend((await otp.receive(match=is_events(name))).events)
    assert len(out) == n
    return out


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
