"""Persistent delivery under faults: while events are appended, the emitter, its pool, the
leader worker and tracker, the subscriber and the store's CoreSystem are killed at random
(targets and moments picked by hypothesis, reasons by the otp.testing harness). After
recovery every event was delivered at least once, in order once re-deliveries are
removed, and no event came again after its acknowledgement had returned."""

from __future__ import annotations

import tempfile
from typing import Any

import attrs
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import otp
from exesdb import Events, ExESDBError, NewEvent, gateway, start_store
from exesdb.naming import genserver_name
from exesdb.systems import CoreSystem, system_name
from exesdb.systems.notification import LeaderTracker, LeaderWorker
from exesdb.systems.notification.emitters import emitter_name, pool_name
from otp.testing import Worker, fault_reasons, reasons_for

STORE = "f"
NAME = "p"
APPENDS = 40
WAIT = 15.0


async def _own() -> Any:
    """Marks a description as a process of our own: the harness only reads from it which
    reasons can be injected (whether it traps exits); nothing ever starts it."""
    raise AssertionError("a fault description is never started")


# name -> whether the process traps exits (then only KILL takes it down)
TARGETS: dict[str, bool] = {
    "emitter": True, "pool": True, "leader_worker": False, "tracker": True,
    "subscriber": False, "core": True,
}


@st.composite
def faults(draw: st.DrawFn) -> tuple[str, Any, int]:
    """(target, reason, after how many appends)."""
    target = draw(st.sampled_from(sorted(TARGETS)))
    desc = Worker(target, trap_exit=TARGETS[target], start=_own)
    return target, draw(reasons_for(desc, fault_reasons())), draw(st.integers(0, APPENDS))


@attrs.define
class Seen:
    """What the subscribers saw, in the order they saw it."""

    log: list[int] = attrs.field(factory=list)  # positions, as delivered
    acked: int = -1  # the highest position whose ack_event returned
    violations: list[str] = attrs.field(factory=list)
    appended: int = 0  # appends acknowledged so far
    consumer: otp.Pid | None = None


async def consumer(seen: Seen) -> None:
    """Records each event and acknowledges each batch; after an ack returns, nothing it
    covers may come again. Messages sent before the ack was processed may still be in
    the mailbox then: a marker sent to itself after the ack separates them."""
    me = otp.self()
    floor = seen.acked  # acks that returned before this subscriber was saved
    while True:
        msg = await otp.receive()
        if type(msg) is Events and msg.subscription == NAME:
            for event in msg.events:
                if event.position <= floor:
                    seen.violations.append(f"{event.position} came after ack {floor}")
                seen.log.append(event.position)
            last = msg.events[-1]
            try:
                await gateway.ack_event(STORE, NAME, me, last)
            except ExESDBError:
                continue  # not acknowledged: it may come again
            seen.acked = max(seen.acked, last.position)
            otp.send(me, ("acked", last.position))
        elif type(msg) is tuple and msg[0] == "acked":
            floor = max(floor, msg[1])


async def retry(fn: Any, *args: Any) -> Any:
    """Call until the store answers (it may be restarting)."""
    with trio.fail_after(WAIT):
        while True:
            try:
                return await fn(*args)
            except ExESDBError:
                await trio.sleep(0.01)


async def new_consumer(seen: Seen) -> None:
    seen.consumer = otp.spawn(consumer, seen)
    await retry(lambda: gateway.save_subscription(STORE, "by_stream", "$all", name=NAME,
                                                  subscriber=seen.consumer))


async def appender(parent: otp.Pid, seen: Seen) -> None:
    for i in range(APPENDS):
        await retry(gateway.append_events, STORE, f"s{i % 3}", [NewEvent("E", {"i": i})])
        seen.appended += 1
        await trio.sleep(0.003)
    otp.send(parent, "appended")


def target_pid(target: str, seen: Seen) -> otp.Pid | None:
    if target == "subscriber":
        return seen.consumer
    name = {
        "emitter": emitter_name(STORE, NAME), "pool": pool_name(STORE, NAME),
        "leader_worker": genserver_name(LeaderWorker, STORE),
        "tracker": genserver_name(LeaderTracker, STORE),
        "core": genserver_name(CoreSystem, STORE),
    }[target]
    return otp.whereis(name)


async def ensure_store(root: str) -> None:
    """Start the store again if its System gave up."""
    if otp.whereis(system_name(STORE)) is None:
        await start_store(store_id=STORE, data_dir=root)


def check(seen: Seen, expected: list[int]) -> None:
    assert not seen.violations, seen.violations[:5]
    assert set(seen.log) == set(expected), sorted(set(expected) - set(seen.log))
    index = {p: i for i, p in enumerate(expected)}
    previous = -1
    for position in seen.log:  # each event follows the one before, or delivery went back
        i = index[position]
        assert i == previous + 1 or i <= previous, f"gap before {position}"
        previous = i
    first: list[int] = []
    for position in seen.log:
        if position not in first:
            first.append(position)
    assert first == expected


@settings(max_examples=20)
@given(schedule=st.lists(faults(), min_size=1, max_size=4))
async def test_persistent_delivery_survives_faults_with_nothing_lost(schedule):
    schedule = sorted(schedule, key=lambda f: f[2])
    with tempfile.TemporaryDirectory() as root:
        async with otp.node():
            otp.trap_exits(True)  # the store may give up: its exit must not end us
            await start_store(store_id=STORE, data_dir=root)
            seen = Seen()
            await new_consumer(seen)
            otp.spawn(appender, otp.self(), seen)
            for target, reason, at in schedule:
                with trio.fail_after(WAIT):
                    while seen.appended < at:  # noqa: ASYNC110 (another process counts)
                        await trio.sleep(0.001)
                pid = target_pid(target, seen)
                if pid is None:
                    continue  # not running at this moment
                otp.exit(pid, reason)
                await trio.lowlevel.checkpoint()
                if target == "subscriber" and not otp.is_alive(pid):
                    await ensure_store(root)
                    await new_consumer(seen)
            with trio.fail_after(WAIT):
                while True:
                    await ensure_store(root)
                    try:
                        await otp.receive(match=lambda m: m == "appended", timeout=0.05)
                        break
                    except otp.ReceiveTimeout:
                        pass
            assert seen.consumer is not None and otp.is_alive(seen.consumer)
            events = await retry(gateway.read_all, STORE, 0, 10_000)
            expected = [e.position for e in events]
            assert len(expected) >= APPENDS
            with trio.fail_after(WAIT):
                while not set(expected) <= set(seen.log):  # noqa: ASYNC110
                    await trio.sleep(0.01)
            await trio.sleep(0.05)
            check(seen, expected)
