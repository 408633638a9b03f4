"""otp.pubsub: subscribing, broadcasting, and subscribers that vanish when they exit."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server, pubsub, registry
from otp.registry import UnknownRegistry


class Subscriber(gen_server.GenServer):
    """Runs the functions it is called with; keeps every other message for ``"inbox"``."""

    async def init(self, *args: Any) -> None:
        self.inbox: list[Any] = []

    async def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "inbox":
            inbox, self.inbox = self.inbox, []
            return inbox
        return request()

    async def handle_info(self, msg: Any) -> None:
        self.inbox.append(msg)


async def subscriber(ps: Any = "ps", *topics: Any) -> otp.Pid:
    pid = await gen_server.start(Subscriber)
    assert pid is not None
    for topic in topics:
        await gen_server.call(pid, lambda t=topic: pubsub.subscribe(ps, t))
    return pid


async def inbox(pid: otp.Pid) -> list[Any]:
    """What ``pid`` received so far (every message sent before this call has arrived)."""
    result: list[Any] = await gen_server.call(pid, "inbox")
    return result


async def test_start_link_returns_the_pid_and_registers_the_name() -> None:
    async with otp.node():
        pid = await pubsub.start_link("ps")
        assert otp.whereis("ps") == pid


async def test_start_link_with_a_taken_name_raises_already_started() -> None:
    async with otp.node():
        first = await pubsub.start_link("ps")
        with pytest.raises(otp.AlreadyStarted) as info:
            await pubsub.start_link("ps")
        assert info.value.pid == first


async def test_broadcast_reaches_every_subscriber_of_the_topic() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "t")
        b = await subscriber("ps", "t")
        assert pubsub.broadcast("ps", "t", ("hello", 1)) is None
        assert await inbox(a) == [("hello", 1)]
        assert await inbox(b) == [("hello", 1)]


async def test_broadcast_reaches_the_caller_when_it_subscribed() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        pubsub.subscribe("ps", "t")
        pubsub.broadcast("ps", "t", "msg")
        assert await otp.receive(timeout=0) == "msg"


async def test_broadcast_to_a_topic_without_subscribers_does_nothing() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        pubsub.broadcast("ps", "nobody", "msg")
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0)


async def test_topics_are_separate() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "a")
        b = await subscriber("ps", "b")
        pubsub.broadcast("ps", "a", "for a")
        assert await inbox(a) == ["for a"]
        assert await inbox(b) == []


async def test_messages_arrive_in_broadcast_order() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "t")
        for i in range(10):
            pubsub.broadcast("ps", "t", i)
        assert await inbox(a) == list(range(10))


async def test_unsubscribe_stops_delivery() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        pubsub.subscribe("ps", "t")
        pubsub.subscribe("ps", "u")
        assert pubsub.unsubscribe("ps", "t") is None
        pubsub.broadcast("ps", "t", "dropped")
        pubsub.broadcast("ps", "u", "kept")
        assert await otp.receive(timeout=0) == "kept"
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0)


async def test_unsubscribe_without_a_subscription_does_nothing() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        pubsub.unsubscribe("ps", "t")


async def test_subscribing_twice_delivers_each_message_twice() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        pubsub.subscribe("ps", "t")
        pubsub.subscribe("ps", "t")
        pubsub.broadcast("ps", "t", "m")
        assert [await otp.receive(timeout=0), await otp.receive(timeout=0)] == ["m", "m"]
        pubsub.unsubscribe("ps", "t")
        assert registry.lookup("ps", "t") == []


async def test_broadcast_from_skips_the_sender() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "t")
        b = await subscriber("ps", "t")
        pubsub.broadcast_from("ps", a, "t", "from a")
        assert await inbox(a) == []
        assert await inbox(b) == ["from a"]


async def test_broadcast_from_a_non_subscriber_reaches_everyone() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "t")
        pubsub.broadcast_from("ps", otp.self(), "t", "m")
        assert await inbox(a) == ["m"]


async def test_a_dead_subscriber_vanishes_before_its_down_is_received() -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        a = await subscriber("ps", "t", "u")
        b = await subscriber("ps", "t")
        ref = otp.monitor(a)
        otp.exit(a, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        assert registry.lookup("ps", "t") == [(b, None)]
        assert registry.lookup("ps", "u") == []
        pubsub.broadcast("ps", "t", "m")
        assert await inbox(b) == ["m"]


async def test_a_pubsub_is_addressed_by_its_pid() -> None:
    async with otp.node():
        ps = await pubsub.start_link()
        pubsub.subscribe(ps, "t")
        pubsub.broadcast(ps, "t", "m")
        assert await otp.receive(timeout=0) == "m"


async def test_an_unknown_pubsub_raises_unknown_registry() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry):
            pubsub.subscribe("nope", "t")
        with pytest.raises(otp.NoProc):
            pubsub.broadcast("nope", "t", "m")
        with pytest.raises(otp.NoProc):
            pubsub.broadcast_from("nope", otp.self(), "t", "m")
        with pytest.raises(otp.NoProc):
            pubsub.unsubscribe("nope", "t")


async def test_a_unique_registry_is_not_a_pubsub() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        with pytest.raises(ValueError, match="pub/sub"):
            pubsub.subscribe("reg", "t")
        with pytest.raises(ValueError, match="pub/sub"):
            pubsub.broadcast("reg", "t", "m")


async def test_a_stopped_pubsub_drops_its_subscriptions() -> None:
    async with otp.node():
        ps = await pubsub.start_link("ps")
        pubsub.subscribe("ps", "t")
        await gen_server.stop(ps)
        await pubsub.start_link("ps")
        pubsub.broadcast("ps", "t", "m")
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0)


async def test_child_spec_starts_a_pubsub_and_defaults_the_id_to_the_name() -> None:
    pytest.importorskip("otp.supervisor")
    async with otp.node():
        spec = pubsub.child_spec("ps")
        assert spec.id == "ps"
        assert pubsub.child_spec("ps", id="other").id == "other"
        pid = await spec.start()
        assert otp.whereis("ps") == pid
        pubsub.subscribe("ps", "t")
        pubsub.broadcast("ps", "t", "m")
        assert await otp.receive(timeout=0) == "m"


_TOPICS = ("a", "b")
_SUBSCRIBERS = 3

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.integers(0, _SUBSCRIBERS - 1),
                  st.sampled_from(_TOPICS)),
        st.tuples(st.just("unsubscribe"), st.integers(0, _SUBSCRIBERS - 1),
                  st.sampled_from(_TOPICS)),
        st.tuples(st.just("broadcast"), st.sampled_from(_TOPICS)),
        st.tuples(st.just("broadcast_from"), st.integers(0, _SUBSCRIBERS - 1),
                  st.sampled_from(_TOPICS)),
        st.tuples(st.just("die"), st.integers(0, _SUBSCRIBERS - 1)),
    ),
    max_size=25,
)


@given(operations=_operations)
async def test_deliveries_match_a_model_of_subscriptions(
    operations: list[tuple[Any, ...]]
) -> None:
    async with otp.node():
        await pubsub.start_link("ps")
        subscribers = [await subscriber() for _ in range(_SUBSCRIBERS)]
        # The model: how many times each subscriber is subscribed to each topic.
        model: list[Counter[str]] = [Counter() for _ in range(_SUBSCRIBERS)]
        expected: list[list[int]] = [[] for _ in range(_SUBSCRIBERS)]
        for step, op in enumerate(operations):
            if op[0] == "subscribe":
                _, who, topic = op
                await gen_server.call(subscribers[who], lambda t=topic: pubsub.subscribe("ps", t))
                model[who][topic] += 1
            elif op[0] == "unsubscribe":
                _, who, topic = op
                await gen_server.call(subscribers[who],
                                      lambda t=topic: pubsub.unsubscribe("ps", t))
                model[who][topic] = 0
            elif op[0] == "broadcast":
                _, topic = op
                pubsub.broadcast("ps", topic, step)
                for who in range(_SUBSCRIBERS):
                    expected[who] += [step] * model[who][topic]
            elif op[0] == "broadcast_from":
                _, sender, topic = op
                pubsub.broadcast_from("ps", subscribers[sender], topic, step)
                for who in range(_SUBSCRIBERS):
                    if who != sender:
                        expected[who] += [step] * model[who][topic]
            else:
                _, who = op
                ref = otp.monitor(subscribers[who])
                otp.exit(subscribers[who], otp.KILL)
                await otp.receive(match=lambda m, r=ref: isinstance(m, otp.Down) and m.ref is r)
                subscribers[who] = await subscriber()
                model[who] = Counter()
                expected[who] = []
        for who, pid in enumerate(subscribers):
            assert await inbox(pid) == expected[who]
