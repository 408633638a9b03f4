"""Property tests: message order, link/monitor signals against a model, selective receive,
and supervision trees under fault schedules against the model of otp.testing."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp.testing import NodeDriver, check_schedule, fault_schedules, trees

from .core_helpers import drain

# -- per-sender FIFO order -------------------------------------------------------------------

# For each sender: how many checkpoints it takes before each of its messages. Random
# checkpoints make trio interleave the senders (and the receiver) differently.
senders_st = st.lists(
    st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=20),
    min_size=1,
    max_size=5,
)


async def _sender(dest: otp.Pid, index: int, pauses: list[int]) -> None:
    for seq, pause in enumerate(pauses):
        for _ in range(pause):
            await trio.lowlevel.checkpoint()
        otp.send(dest, (index, seq))


@given(senders=senders_st, receiver_pauses=st.lists(st.booleans(), max_size=100))
async def test_messages_from_each_sender_arrive_in_the_order_sent(senders, receiver_pauses):
    total = sum(len(p) for p in senders)
    async with otp.node():
        me = otp.self()
        for index, pauses in enumerate(senders):
            otp.spawn(_sender, me, index, pauses)
        got = []
        for i in range(total):
            if i < len(receiver_pauses) and receiver_pauses[i]:
                await trio.lowlevel.checkpoint()
            got.append(await otp.receive())
    for index, pauses in enumerate(senders):
        assert [seq for (i, seq) in got if i == index] == list(range(len(pauses)))


@given(senders=senders_st, picks=st.lists(st.integers(min_value=0, max_value=4), max_size=30))
async def test_selective_receive_by_sender_keeps_each_senders_order(senders, picks):
    """Taking messages of one sender at a time still yields that sender's FIFO order."""
    async with otp.node():
        me = otp.self()
        for index, pauses in enumerate(senders):
            otp.spawn(_sender, me, index, pauses)
        expected_next = [0] * len(senders)
        for pick in picks:
            index = pick % len(senders)
            if expected_next[index] == len(senders[index]):
                continue
            msg = await otp.receive(match=lambda m, index=index: m[0] == index)
            assert msg == (index, expected_next[index])
            expected_next[index] += 1


# -- link and monitor signals against a model ------------------------------------------------


class Boom(Exception):
    """An exception used as an exit reason."""


REASONS = [
    otp.NORMAL,
    otp.SHUTDOWN,
    otp.shutdown("term"),
    otp.KILL,
    otp.KILLED,
    "custom",
    ("tuple", 1),
    "exception",  # replaced by a fresh Boom instance
]


def _model(
    method: str, reason: Any, t_trap: bool, o_trap: bool, o_monitors: bool, main: otp.Pid,
    target: otp.Pid, ref: otp.Ref | None,
) -> tuple[Any, list[Any], Any, list[Any]]:
    """What otp-semantics.md says happens: (target's reason, target's messages,
    observer's reason, observer's messages)."""
    t_msgs: list[Any] = []
    if method == "end":  # the target ends itself with the reason
        t_reason = reason
    elif reason is otp.KILL:  # exit(target, KILL) from main: untrappable
        t_reason = otp.KILLED
    elif t_trap:
        t_msgs.append(otp.Exit(main, reason))
        t_reason = otp.NORMAL  # it then finishes normally
    elif reason is otp.NORMAL:
        t_reason = otp.NORMAL  # ignored; it then finishes normally
    else:
        t_reason = reason

    o_msgs: list[Any] = []
    o_reason: Any = otp.NORMAL
    if o_trap:
        o_msgs.append(otp.Exit(target, t_reason))
    elif t_reason is not otp.NORMAL:
        o_reason = t_reason
    if o_monitors:
        o_msgs.append(otp.Down(ref, target, t_reason))
    if o_reason is not otp.NORMAL:
        o_msgs = []  # it died before it could report
    return t_reason, t_msgs, o_reason, o_msgs


async def _target(main: otp.Pid, trap: bool) -> None:
    otp.trap_exits(trap)
    otp.send(main, ("ready", otp.self()))
    seen = []
    while True:
        msg = await otp.receive()
        if msg == "finish":
            otp.send(main, ("target saw", seen))
            return
        if isinstance(msg, tuple) and msg[0] == "end":
            reason = msg[1]
            if isinstance(reason, BaseException):
                raise reason
            if reason is otp.NORMAL:
                return
            raise otp.ProcessExited(reason)
        seen.append(msg)


async def _observer(main: otp.Pid, target: otp.Pid, trap: bool, monitors: bool) -> None:
    otp.trap_exits(trap)
    otp.link(target)
    ref = otp.monitor(target) if monitors else None
    otp.send(main, ("ready", otp.self(), ref))
    seen = []
    while True:
        msg = await otp.receive()
        if msg == "report":
            otp.send(main, ("observer saw", seen))
            return
        seen.append(msg)


@given(
    method=st.sampled_from(["end", "signal"]),
    reason=st.sampled_from(REASONS),
    t_trap=st.booleans(),
    o_trap=st.booleans(),
    o_monitors=st.booleans(),
)
async def test_link_and_monitor_signals_follow_the_model(method, reason, t_trap, o_trap,
                                                         o_monitors):
    if reason == "exception":
        reason = Boom("crash")
    if method == "end" and reason is otp.KILL:
        reason = otp.KILLED  # a process cannot end itself with the instruction KILL
    async with otp.node():
        main = otp.self()
        target = otp.spawn(_target, main, t_trap)
        t_ref = otp.monitor(target)
        await otp.receive(match=lambda m: m == ("ready", target))
        observer = otp.spawn(_observer, main, target, o_trap, o_monitors)
        o_ref = otp.monitor(observer)
        ready = await otp.receive(match=lambda m: m[:2] == ("ready", observer))
        ref = ready[2]

        if method == "end":
            otp.send(target, ("end", reason))
        else:
            otp.exit(target, reason)
            otp.send(target, "finish")

        t_down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is t_ref)
        t_seen = await otp.receive(
            timeout=0, match=lambda m: isinstance(m, tuple) and m[0] == "target saw"
        ) if t_down.reason is otp.NORMAL and method == "signal" else None
        otp.send(observer, "report")
        o_down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is o_ref)
        o_seen: list[Any] = []
        if o_down.reason is otp.NORMAL:
            o_seen = (await otp.receive(
                timeout=0, match=lambda m: isinstance(m, tuple) and m[0] == "observer saw"
            ))[1]

    t_reason, t_msgs, o_reason, o_msgs = _model(
        method, reason, t_trap, o_trap, o_monitors, main, target, ref
    )
    assert t_down.reason == t_reason
    if t_seen is not None:
        assert t_seen[1] == t_msgs
    assert o_down.reason == o_reason
    assert o_seen == o_msgs


@given(
    reasons=st.lists(st.sampled_from(REASONS[:-1]), min_size=1, max_size=4),
    trap=st.booleans(),
)
async def test_every_stacked_monitor_reports_the_same_reason(reasons, trap):
    async def target():
        otp.trap_exits(trap)
        await trio.sleep_forever()

    reason = reasons[0]
    async with otp.node():
        pid = otp.spawn(target)
        refs = [otp.monitor(pid) for _ in reasons]
        await trio.testing.wait_all_tasks_blocked()
        otp.exit(pid, reason)
        otp.exit(pid, otp.KILL)  # whatever the first signal did, this one ends it
        downs = [await otp.receive() for _ in refs]
    expected = otp.KILLED
    if not trap and reason is not otp.NORMAL:
        expected = otp.KILLED if reason is otp.KILL else reason
    assert [d.ref for d in downs] == refs
    assert all(d.reason == expected for d in downs)


# -- selective receive never reorders --------------------------------------------------------

ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(min_value=0, max_value=9)),
        st.tuples(st.just("take"), st.integers(min_value=0, max_value=9)),
        st.tuples(st.just("take_odd"), st.none()),
        st.tuples(st.just("take_any"), st.none()),
    ),
    max_size=60,
)


def _predicate(op: str, arg: Any) -> Any:
    if op == "take":
        return lambda m: m == arg
    if op == "take_odd":
        return lambda m: m % 2 == 1
    return None


@given(ops=ops_st)
async def test_selective_receive_takes_the_oldest_match_and_keeps_the_rest_in_order(ops):
    model: list[int] = []
    async with otp.node():
        me = otp.self()
        for op, arg in ops:
            if op == "send":
                otp.send(me, arg)
                model.append(arg)
                continue
            pred = _predicate(op, arg)
            expected = next((m for m in model if pred is None or pred(m)), None)
            if expected is None:
                try:
                    got = await otp.receive(timeout=0, match=pred)
                except otp.ReceiveTimeout:
                    continue
                raise AssertionError(f"received {got!r}, expected nothing")
            got = await otp.receive(timeout=0, match=pred)
            assert got == expected
            model.remove(expected)  # removes the first occurrence: the oldest
        assert await drain() == model


@given(
    values=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=40),
    wanted=st.integers(min_value=0, max_value=20),
    pauses=st.lists(st.integers(min_value=0, max_value=2), max_size=40),
)
async def test_waiting_for_a_match_keeps_the_messages_that_arrive_meanwhile_in_order(
    values, wanted, pauses
):
    values = [*values, wanted]  # the match arrives at the latest at the end

    async def sender(dest):
        for i, value in enumerate(values):
            for _ in range(pauses[i] if i < len(pauses) else 0):
                await trio.lowlevel.checkpoint()
            otp.send(dest, value)

    async with otp.node():
        otp.spawn(sender, otp.self())
        assert await otp.receive(match=lambda m: m == wanted) == wanted
        rest = [await otp.receive() for _ in range(len(values) - 1)]
    expected = list(values)
    expected.remove(wanted)
    assert rest == expected


# -- supervision trees under fault schedules -------------------------------------------------

significant_or_dynamic_trees = trees(
    max_depth=2, max_width=3, intensities=st.integers(0, 8),
    forms=st.sampled_from(["list", "class", "dynamic"]),
    restarts=st.sampled_from(["permanent", "transient", "temporary"]),
)


@given(st.data())
def test_any_fault_schedule_follows_the_model_with_significant_and_dynamic_supervisors(data):
    """Random trees mixing static supervisors (auto_shutdown and significant children) and
    dynamic ones, under random schedules of faults whose targets may then fail to
    start again: the live tree does what the model predicts, step by step."""
    tree = data.draw(significant_or_dynamic_trees, label="tree")
    schedule = data.draw(fault_schedules(tree, max_size=8), label="schedule")
    with NodeDriver() as driver:
        driver.run(check_schedule, tree, schedule)
