"""otp.lowlevel: current_node, on_exit (exit hooks) and NodeVar (per-node state)."""

from __future__ import annotations

import contextvars
import gc
import logging
import weakref
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import registry
from otp.lowlevel import NodeVar, current_node, on_exit

from .core_helpers import settle, sleep_forever, wait_down


class Boom(Exception):
    """What the failing hooks and processes raise."""


def failing_hook(reason: Any) -> None:
    raise Boom("hook failed")


async def receive_all(count: int) -> list[Any]:
    return [await otp.receive(timeout=1) for _ in range(count)]


async def end(pid: otp.Pid, reason: Any) -> Any:
    """Send ``pid`` an exit signal and return once it has ended (its Down arrived)."""
    ref = otp.monitor(pid)
    otp.exit(pid, reason)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    return down.reason


# -- current_node --------------------------------------------------------------------------


async def test_current_node_in_the_node_block_is_that_node():
    async with otp.node() as the_node:
        assert current_node() is the_node


async def test_current_node_in_a_process_is_the_node_it_runs_in():
    seen = []

    async def worker():
        seen.append(current_node())

    async with otp.node() as the_node:
        await wait_down(otp.spawn(worker))
        assert seen == [the_node]


async def test_current_node_in_a_trio_task_started_inside_the_node_block_is_that_node():
    seen = []

    async def task():
        seen.append(current_node())

    async with otp.node() as the_node, trio.open_nursery() as nursery:
        nursery.start_soon(task)
    assert seen == [the_node]


async def test_current_node_outside_a_node_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        current_node()


# -- on_exit: when the hooks run -----------------------------------------------------------


async def test_on_exit_calls_fn_with_the_reason_of_a_process_that_returned():
    reasons = []
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        on_exit(pid, reasons.append)
        await end(pid, "stop now")
        assert reasons == ["stop now"]


async def test_on_exit_calls_fn_with_normal_when_the_process_function_returns():
    reasons = []

    async def worker():
        on_exit(otp.self(), reasons.append)

    async with otp.node():
        await wait_down(otp.spawn(worker))
        assert reasons == [otp.NORMAL]


async def test_on_exit_calls_fn_with_the_exception_of_a_process_that_crashed():
    reasons = []

    async def worker():
        on_exit(otp.self(), reasons.append)
        raise Boom("crash")

    async with otp.node():
        await wait_down(otp.spawn(worker))
        assert len(reasons) == 1
        assert isinstance(reasons[0], Boom)


async def test_on_exit_calls_fn_with_killed_when_the_process_is_killed():
    reasons = []
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        on_exit(pid, reasons.append)
        await end(pid, otp.KILL)
        assert reasons == [otp.KILLED]


async def test_on_exit_of_the_main_process_runs_when_the_node_block_ends():
    reasons = []
    async with otp.node():
        on_exit(otp.self(), reasons.append)
        assert reasons == []
    assert reasons == [otp.NORMAL]


async def test_on_exit_hooks_run_in_the_order_they_were_added():
    calls = []
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        for i in range(5):
            on_exit(pid, lambda reason, i=i: calls.append(i))
        await end(pid, otp.KILL)
        assert calls == [0, 1, 2, 3, 4]


async def test_on_exit_runs_after_the_local_name_is_released():
    holders = []
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("worker", pid)
        on_exit(pid, lambda reason: holders.append(otp.whereis("worker")))
        await end(pid, otp.KILL)
        assert holders == [None]


async def test_on_exit_runs_before_monitors_see_the_exit():
    async with otp.node():
        me = otp.self()
        pid = otp.spawn(sleep_forever)
        ref = otp.monitor(pid)
        on_exit(pid, lambda reason: otp.send(me, "hook ran"))
        otp.exit(pid, otp.KILL)
        assert await receive_all(2) == ["hook ran", otp.Down(ref, pid, otp.KILLED)]


async def test_on_exit_runs_before_links_see_the_exit():
    async with otp.node():
        otp.trap_exits(True)
        me = otp.self()
        pid = otp.spawn_link(sleep_forever)
        on_exit(pid, lambda reason: otp.send(me, "hook ran"))
        otp.exit(pid, otp.KILL)
        assert await receive_all(2) == ["hook ran", otp.Exit(pid, otp.KILLED)]


async def test_a_hook_runs_as_the_ending_process_in_its_node():
    seen = []
    var: NodeVar[str] = NodeVar("var")
    async with otp.node() as the_node:
        var.set("value")
        pid = otp.spawn(sleep_forever)
        on_exit(pid, lambda reason: seen.append((otp.self(), current_node(), var.get())))
        await end(pid, otp.KILL)
        assert seen == [(pid, the_node, "value")]


async def test_a_process_that_is_exiting_still_takes_hooks_and_runs_them():
    reasons = []

    async def worker():
        try:
            await trio.sleep_forever()
        finally:  # the process has accepted the exit signal and is unwinding
            on_exit(otp.self(), reasons.append)

    async with otp.node():
        pid = otp.spawn(worker)
        await settle()
        await end(pid, "go")
        assert reasons == ["go"]


# -- on_exit: dead processes ---------------------------------------------------------------


async def test_on_exit_on_a_process_that_has_ended_raises_noproc():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        await end(pid, otp.KILL)
        with pytest.raises(otp.NoProc):
            on_exit(pid, print)


async def test_on_exit_from_a_hook_of_the_same_process_raises_noproc():
    raised = []

    def hook(reason: Any) -> None:
        try:
            on_exit(pid, print)
        except otp.NoProc as exc:
            raised.append(exc)

    async with otp.node():
        pid = otp.spawn(sleep_forever)
        on_exit(pid, hook)
        await end(pid, otp.KILL)
        assert len(raised) == 1


# -- on_exit: hooks that raise -------------------------------------------------------------


async def test_a_hook_that_raises_is_logged_on_the_otp_logger_with_its_traceback(caplog):
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        on_exit(pid, failing_hook)
        with caplog.at_level(logging.ERROR, logger="otp"):
            await end(pid, otp.KILL)
    [record] = [r for r in caplog.records if r.name == "otp"]
    assert "exit hook" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


async def test_a_hook_that_raises_does_not_stop_the_hooks_after_it():
    reasons = []
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        on_exit(pid, failing_hook)
        on_exit(pid, reasons.append)
        await end(pid, otp.KILL)
        assert reasons == [otp.KILLED]


async def test_a_hook_that_raises_does_not_stop_the_exit_signal_to_links_and_monitors():
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(sleep_forever)
        ref = otp.monitor(pid)
        on_exit(pid, failing_hook)
        otp.exit(pid, "bye")
        got = await receive_all(2)
    assert otp.Exit(pid, "bye") in got
    assert otp.Down(ref, pid, "bye") in got


async def test_a_hook_that_raises_does_not_stop_the_release_of_the_monitors_the_process_held():
    async with otp.node():
        target = otp.spawn(sleep_forever)

        async def watcher():
            otp.monitor(target)
            on_exit(otp.self(), failing_hook)
            await trio.sleep_forever()

        pid = otp.spawn(watcher)
        await settle()
        await end(pid, otp.KILL)
        assert target._proc is not None
        assert not target._proc.monitors  # the watcher's monitor went with it


async def test_a_hook_that_raises_does_not_stop_the_release_of_its_via_names():
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")

        async def worker():
            on_exit(otp.self(), failing_hook)
            registry.register("reg", "key")
            await trio.sleep_forever()

        pid = otp.spawn(worker)
        await settle()
        assert registry.lookup("reg", "key") == [(pid, None)]
        await end(pid, otp.KILL)
        assert registry.lookup("reg", "key") == []


async def test_a_hook_that_raises_does_not_stop_a_stop_call_from_returning():
    class Server(otp.GenServer):
        async def init(self) -> None:
            on_exit(otp.self(), failing_hook)

    async with otp.node():
        pid = await otp.gen_server.start(Server)
        assert pid is not None
        with trio.fail_after(1):
            await otp.gen_server.stop(pid)
        assert not otp.is_alive(pid)


async def test_a_hook_that_raises_a_base_exception_lets_the_exit_finish_then_raises_it():
    class Interrupt(BaseException):
        pass

    def interrupting_hook(reason: Any) -> None:
        raise Interrupt

    reasons = []
    released = []
    with pytest.raises(BaseExceptionGroup) as raised:
        async with otp.node():
            pid = otp.spawn(sleep_forever)
            otp.register("worker", pid)
            on_exit(pid, interrupting_hook)
            on_exit(pid, reasons.append)
            on_exit(pid, lambda reason: released.append(otp.whereis("worker")))
            otp.exit(pid, otp.KILL)
            await trio.sleep_forever()
    assert raised.value.subgroup(Interrupt) is not None
    assert reasons == [otp.KILLED]
    assert released == [None]
    assert pid._proc is None  # the exit ran to its end (links, monitors) before the raise


@given(
    raising=st.lists(st.booleans(), min_size=1, max_size=8),
    registry_at=st.integers(min_value=0, max_value=8),
    how=st.sampled_from(["return", "crash", "exit", "kill"]),
)
async def test_hooks_that_raise_anywhere_never_stop_the_rest_of_the_exit(
    raising, registry_at, how
):
    """Whatever hooks raise, in whatever position: every other hook runs, in order, with
    the reason; the local name and the registry key are released; the links and monitors
    get the exit signal; each raising hook is logged once."""
    calls: list[tuple[int, Any]] = []
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("otp")
    logger.addHandler(handler)
    go = trio.Event()

    async def worker():
        me = otp.self()
        for i, raises in enumerate(raising):
            if i == registry_at:
                registry.register("reg", "key")  # installs the registry's own hook
            on_exit(me, failing_hook if raises else lambda r, i=i: calls.append((i, r)))
        if registry_at >= len(raising):
            registry.register("reg", "key")
        await go.wait()
        if how == "crash":
            raise Boom("crash")

    try:
        async with otp.node():
            otp.trap_exits(True)
            await registry.start_link(keys="unique", name="reg")
            pid = otp.spawn_link(worker)
            otp.register("worker", pid)
            ref = otp.monitor(pid)
            await settle()
            if how == "exit":
                otp.exit(pid, "bye")
            elif how == "kill":
                otp.exit(pid, otp.KILL)
            else:
                go.set()
            [first, second] = await receive_all(2)
            assert {type(first), type(second)} == {otp.Exit, otp.Down}
            exit_msg = first if type(first) is otp.Exit else second
            down = second if exit_msg is first else first
            assert exit_msg.pid is pid
            assert down.ref is ref
            assert down.reason is exit_msg.reason
            reason = down.reason
            if how == "crash":
                assert isinstance(reason, Boom)
            else:
                assert reason == {"return": otp.NORMAL, "exit": "bye", "kill": otp.KILLED}[how]
            # by the time the exit is observable, all of it has happened:
            assert calls == [(i, reason) for i, raises in enumerate(raising) if not raises]
            assert otp.whereis("worker") is None
            assert registry.lookup("reg", "key") == []
    finally:
        logger.removeHandler(handler)
    hook_errors = [r for r in records if "exit hook" in r.getMessage()]
    assert len(hook_errors) == sum(raising)


# -- NodeVar -------------------------------------------------------------------------------


async def test_get_returns_the_value_set_in_this_node():
    var: NodeVar[int] = NodeVar("var")
    async with otp.node():
        var.set(1)
        var.set(2)
        assert var.get() == 2


async def test_a_value_set_by_one_process_is_seen_by_every_process_of_the_node():
    var: NodeVar[str] = NodeVar("var")
    seen = []

    async def reader():
        seen.append(var.get())

    async with otp.node():
        await wait_down(otp.spawn(_set, var, "shared"))
        await wait_down(otp.spawn(reader))
        assert seen == ["shared"]


async def _set(var: NodeVar[Any], value: Any) -> None:
    var.set(value)


async def test_get_of_an_unset_var_without_default_or_factory_raises_lookup_error():
    var: NodeVar[int] = NodeVar("var")
    async with otp.node():
        with pytest.raises(LookupError):
            var.get()


async def test_get_of_an_unset_var_with_a_default_returns_the_default():
    var = NodeVar("var", default=7)
    async with otp.node():
        assert var.get() == 7
        var.set(8)
        assert var.get() == 8


async def test_get_of_an_unset_var_with_a_factory_stores_what_it_makes_once_per_node():
    made = []

    def factory() -> dict[str, int]:
        made.append(1)
        return {}

    var = NodeVar("table", factory=factory)
    async with otp.node():
        first = var.get()
        first["key"] = 1
        assert var.get() is first
    async with otp.node():
        assert var.get() == {}
    assert len(made) == 2


async def test_a_factory_is_used_rather_than_a_default():
    var = NodeVar("var", default=None, factory=list)
    async with otp.node():
        assert var.get() == []


async def test_a_node_never_sees_the_value_set_in_another_node():
    var: NodeVar[str] = NodeVar("var")
    async with otp.node():
        var.set("first node")
    async with otp.node():
        with pytest.raises(LookupError):
            var.get()


async def test_two_nodes_running_side_by_side_keep_their_own_values():
    var: NodeVar[str] = NodeVar("var")
    both_set = trio.Event()
    seen = {}
    arrived = 0

    async def run_node(label: str) -> None:
        nonlocal arrived
        async with otp.node():
            var.set(label)
            arrived += 1
            if arrived == 2:
                both_set.set()
            await both_set.wait()
            seen[label] = var.get()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_node, "a")
        nursery.start_soon(run_node, "b")
    assert seen == {"a": "a", "b": "b"}


async def test_the_values_go_away_with_the_node():
    class Value:
        pass

    var: NodeVar[Value] = NodeVar("var")
    async with otp.node():
        value = Value()
        var.set(value)
        alive = weakref.ref(value)
        del value
    gc.collect()
    assert alive() is None


async def test_get_and_set_outside_a_node_raise_not_in_process():
    var = NodeVar("var", default=0)
    with pytest.raises(otp.NotInProcess):
        var.get()
    with pytest.raises(otp.NotInProcess):
        var.set(1)


def test_a_node_var_shows_its_name():
    assert "pool" in repr(NodeVar("pool"))


@given(
    ops=st.lists(
        st.tuples(st.sampled_from([0, 1]), st.sampled_from(["a", "b"]),
                  st.none() | st.integers()),
        max_size=30,
    )
)
async def test_each_node_sees_exactly_the_last_value_set_in_it(ops):
    """Two live nodes, many vars, sets and gets in any order: a get returns the last value
    set for that var in that node, and raises LookupError when it was set in none of its
    sets (whatever the other node did)."""
    variables = {"a": NodeVar[Any]("a"), "b": NodeVar[Any]("b")}
    model: list[dict[str, Any]] = [{}, {}]
    async with otp.node():
        outer = contextvars.copy_context()
        async with otp.node():
            inner = contextvars.copy_context()
            contexts = [outer, inner]
            for node_index, name, value in ops:
                var, ctx = variables[name], contexts[node_index]
                if value is not None:
                    ctx.run(var.set, value)
                    model[node_index][name] = value
                elif name in model[node_index]:
                    assert ctx.run(var.get) == model[node_index][name]
                else:
                    with pytest.raises(LookupError):
                        ctx.run(var.get)
