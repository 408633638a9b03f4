"""otp.sys: system messages to gen_servers (and supervisors): state, status, suspension,
tracing, and the errors every one of them raises as gen_server.call does."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import dynamic_supervisor, gen_server, supervisor
from otp import sys as otp_sys

from .core_helpers import settle, sleep_forever, wait_down


class Counter(otp.GenServer):
    """``count`` is its state; ``_calls`` is private. Calls: ``"get"``, ``("wait", event)``
    (counts once the event is set), ``"stop"``. Casts add to the count."""

    async def init(self, start: int = 0, log: list[Any] | None = None) -> Any:
        self.count = start
        self.log = log if log is not None else []
        self._calls = 0
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        self._calls += 1
        if isinstance(request, tuple) and request[0] == "wait":
            await request[1].wait()
            self.count += 1
        self.log.append(("call", request))
        return self.count

    async def handle_cast(self, msg: Any) -> Any:
        self.log.append(("cast", msg))
        self.count += msg
        return None

    async def handle_info(self, msg: Any) -> Any:
        self.log.append(("info", msg))
        return None

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))


class Bag(otp.GenServer):
    """No callbacks: a state and nothing else."""


class Sleepy(otp.GenServer):
    """Asks for an idle timeout of 10 s after init; logs the TIMEOUT it gets."""

    async def init(self, log: list[Any]) -> Any:
        self.log = log
        return otp.NoReply(timeout=10)

    async def handle_info(self, msg: Any) -> Any:
        self.log.append((msg, trio.current_time()))
        return None


# -- get_state and replace_state ------------------------------------------------------------


async def test_get_state_is_the_public_attributes(otp_node):
    pid = await gen_server.start_link(Counter, 3)
    assert await otp_sys.get_state(pid) == {"count": 3, "log": []}


async def test_get_state_returns_a_copy_of_the_attributes(otp_node):
    pid = await gen_server.start_link(Counter, 3)
    state = await otp_sys.get_state(pid)
    state["count"] = 100
    assert await gen_server.call(pid, "get") == 3


async def test_get_state_is_served_between_callbacks(otp_node):
    pid = await gen_server.start_link(Counter)
    event = trio.Event()
    otp.spawn(gen_server.call, pid, ("wait", event))
    await settle()  # handle_call is in progress
    async with trio.open_nursery() as nursery:
        seen: list[Any] = []

        async def read() -> None:
            seen.append((await otp_sys.get_state(pid))["count"])

        nursery.start_soon(read)
        await settle()
        assert seen == []  # it waits for the callback to end
        event.set()
    assert seen == [1]


async def test_get_state_of_a_name_reads_that_server(otp_node):
    await gen_server.start_link(Counter, 7, name="counter")
    assert (await otp_sys.get_state("counter"))["count"] == 7


async def test_replace_state_applies_what_fn_returns_and_returns_it(otp_node):
    pid = await gen_server.start_link(Counter, 1)
    new = await otp_sys.replace_state(pid, lambda s: {**s, "count": s["count"] + 10})
    assert new == {"count": 11, "log": []}
    assert await gen_server.call(pid, "get") == 11


async def test_replace_state_removes_public_attributes_left_out_and_keeps_private_ones(
        otp_node):
    pid = await gen_server.start_link(Counter, 1)
    await otp_sys.replace_state(pid, lambda s: {"count": 2, "extra": "x"})
    assert await otp_sys.get_state(pid) == {"count": 2, "extra": "x"}
    server = pid._proc.impl  # white box: the private attribute is untouched
    assert server._calls == 0 and not hasattr(server, "log")


async def test_replace_state_passes_the_state_as_get_state_gives_it(otp_node):
    pid = await gen_server.start_link(Counter, 5)
    seen: list[Any] = []
    await otp_sys.replace_state(pid, lambda s: seen.append(dict(s)) or s)
    assert seen == [{"count": 5, "log": []}]


async def test_a_replace_state_fn_that_raises_changes_nothing_and_raises_here(otp_node):
    pid = await gen_server.start_link(Counter, 5)
    boom = ValueError("no")

    def fail(state: dict[str, Any]) -> dict[str, Any]:
        state["count"] = 99
        raise boom

    with pytest.raises(ValueError) as info:
        await otp_sys.replace_state(pid, fail)
    assert info.value is boom
    assert await gen_server.call(pid, "get") == 5  # alive, and unchanged


@pytest.mark.parametrize(
    ("returned", "error"),
    [(None, TypeError), ([("count", 1)], TypeError), ({"_count": 1}, ValueError),
     ({1: "x"}, ValueError), ({"": 1}, ValueError)],
)
async def test_a_replace_state_fn_that_returns_no_state_changes_nothing(
        otp_node, returned, error):
    pid = await gen_server.start_link(Counter, 5)
    with pytest.raises(error):
        await otp_sys.replace_state(pid, lambda s: returned)
    assert await otp_sys.get_state(pid) == {"count": 5, "log": []}


async def test_an_async_replace_state_fn_is_a_type_error(otp_node):
    pid = await gen_server.start_link(Counter, 5)

    async def fn(state: dict[str, Any]) -> dict[str, Any]:
        return state

    with pytest.raises(TypeError):
        await otp_sys.replace_state(pid, fn)  # type: ignore[arg-type]
    assert await gen_server.call(pid, "get") == 5


async def test_replace_state_needs_a_function(otp_node):
    pid = await gen_server.start_link(Counter)
    with pytest.raises(TypeError):
        await otp_sys.replace_state(pid, {"count": 1})  # type: ignore[arg-type]


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                       st.integers() | st.text(max_size=5), max_size=6))
async def test_get_state_reads_back_any_state_replace_state_set(state):
    async with otp.node():
        pid = await gen_server.start_link(Bag)
        assert await otp_sys.replace_state(pid, lambda _: dict(state)) == state
        assert await otp_sys.get_state(pid) == state
        await gen_server.stop(pid)


# -- get_status -----------------------------------------------------------------------------


async def test_get_status_describes_the_server(otp_node):
    pid = await gen_server.start_link(Counter, 2, name="counter")
    status = await otp_sys.get_status("counter")
    assert status == otp_sys.Status(
        pid=pid, name="counter", behaviour=Counter, status="running", parent=otp.self(),
        trace=False, state={"count": 2, "log": []},
    )


async def test_get_status_of_a_suspended_server_says_suspended(otp_node):
    pid = await gen_server.start_link(Counter)
    await otp_sys.suspend(pid)
    assert (await otp_sys.get_status(pid)).status == "suspended"
    await otp_sys.resume(pid)
    assert (await otp_sys.get_status(pid)).status == "running"


async def test_get_status_tells_whether_tracing_is_on(otp_node):
    pid = await gen_server.start_link(Counter)
    await otp_sys.trace(pid, True)
    assert (await otp_sys.get_status(pid)).trace is True


# -- suspend and resume ---------------------------------------------------------------------


async def test_a_suspended_server_takes_no_call_until_resumed(otp_node):
    pid = await gen_server.start_link(Counter)
    await otp_sys.suspend(pid)
    answers: list[Any] = []

    async def caller() -> None:
        answers.append(await gen_server.call(pid, "get"))

    otp.spawn(caller)
    await settle()
    assert answers == []
    await otp_sys.resume(pid)
    await settle()
    assert answers == [0]


async def test_messages_that_waited_during_a_suspension_are_taken_in_order(otp_node):
    log: list[Any] = []
    pid = await gen_server.start_link(Counter, 0, log)
    await otp_sys.suspend(pid)
    gen_server.cast(pid, 1)
    otp.send(pid, "info")
    gen_server.cast(pid, 2)
    await settle()
    assert log == []
    await otp_sys.resume(pid)
    assert await gen_server.call(pid, "get") == 3
    assert log == [("cast", 1), ("info", "info"), ("cast", 2), ("call", "get")]


async def test_a_suspended_server_answers_system_messages(otp_node):
    pid = await gen_server.start_link(Counter, 4)
    await otp_sys.suspend(pid)
    assert (await otp_sys.get_state(pid))["count"] == 4
    await otp_sys.replace_state(pid, lambda s: {**s, "count": 5})
    await otp_sys.resume(pid)
    assert await gen_server.call(pid, "get") == 5


async def test_suspending_twice_and_resuming_a_running_server_do_nothing(otp_node):
    pid = await gen_server.start_link(Counter)
    await otp_sys.resume(pid)
    await otp_sys.suspend(pid)
    await otp_sys.suspend(pid)
    await otp_sys.resume(pid)
    assert await gen_server.call(pid, "get") == 0


async def test_a_suspended_server_can_be_stopped_and_runs_terminate(otp_node):
    log: list[Any] = []
    pid = await gen_server.start(Counter, 0, log)
    await otp_sys.suspend(pid)
    await gen_server.stop(pid, "bye")
    assert log == [("terminate", "bye")]
    assert not otp.is_alive(pid)


async def test_a_suspended_child_is_shut_down_by_its_supervisor(otp_node):
    sup = await supervisor.start_link([Counter.child_spec(id="c", shutdown=1.0)])
    [(_, child, _)] = await supervisor.which_children(sup)
    await otp_sys.suspend(child)
    await supervisor.stop(sup)
    assert not otp.is_alive(child)


async def test_a_suspended_trapping_server_shuts_down_on_its_parents_exit(otp_node):
    class Trapping(Counter):
        async def init(self, log: list[Any]) -> Any:
            otp.trap_exits(True)
            return await super().init(0, log)

    log: list[Any] = []
    sup = await supervisor.start_link([Trapping.child_spec(log, id="t", shutdown=60.0)])
    [(_, child, _)] = await supervisor.which_children(sup)
    await otp_sys.suspend(child)
    await supervisor.stop(sup)
    assert log == [("terminate", otp.SHUTDOWN)]


async def test_the_idle_timeout_does_not_fire_while_suspended(otp_node, autojump_clock):
    log: list[Any] = []
    pid = await gen_server.start_link(Sleepy, log)
    start = trio.current_time()
    await otp_sys.suspend(pid)
    await trio.sleep(30)
    assert log == []
    await otp_sys.resume(pid)
    await trio.sleep(11)
    assert [msg for msg, _ in log] == [otp.TIMEOUT]
    assert log[0][1] == pytest.approx(start + 40)  # it started again after the resume


async def test_a_system_message_restarts_the_idle_timeout(otp_node, autojump_clock):
    log: list[Any] = []
    pid = await gen_server.start_link(Sleepy, log)
    await trio.sleep(6)
    await otp_sys.get_state(pid)
    at = trio.current_time()
    await trio.sleep(20)
    assert [msg for msg, _ in log] == [otp.TIMEOUT]
    assert log[0][1] == pytest.approx(at + 10)


# -- trace ----------------------------------------------------------------------------------


async def test_trace_logs_each_message_in_and_each_reply_out(otp_node, caplog):
    caplog.set_level(logging.INFO, logger="otp.sys")
    pid = await gen_server.start_link(Counter, name="counter")
    await otp_sys.trace(pid, True)
    gen_server.cast(pid, 2)
    otp.send(pid, "hello")
    await gen_server.call(pid, "get")
    lines = [r.getMessage() for r in caplog.records if r.name == "otp.sys"]
    assert lines == [
        "'counter' got cast 2",
        "'counter' got 'hello'",
        "'counter' got call 'get'",
        f"'counter' sent reply 2 to <From call to {pid!r}>",
    ]


async def test_trace_off_stops_logging(otp_node, caplog):
    caplog.set_level(logging.INFO, logger="otp.sys")
    pid = await gen_server.start_link(Counter)
    await otp_sys.trace(pid, True)
    await otp_sys.trace(pid, False)
    await gen_server.call(pid, "get")
    assert [r for r in caplog.records if r.name == "otp.sys"] == []


# -- supervisors ----------------------------------------------------------------------------


async def test_the_state_of_a_supervisor_holds_its_children(otp_node):
    sup = await supervisor.start_link([Counter.child_spec(id="a")], strategy="one_for_all")
    state = await otp_sys.get_state(sup)
    assert state["strategy"] == "one_for_all"
    assert [child.spec.id for child in state["children"]] == ["a"]


async def test_get_status_of_a_dynamic_supervisor(otp_node):
    sup = await dynamic_supervisor.start_link(max_children=3)
    status = await otp_sys.get_status(sup)
    assert status.state["max_children"] == 3
    assert status.status == "running"


async def test_a_suspended_supervisor_restarts_nothing_until_resumed(otp_node):
    sup = await supervisor.start_link([Counter.child_spec(id="a")])
    [(_, child, _)] = await supervisor.which_children(sup)
    await otp_sys.suspend(sup)
    otp.exit(child, otp.KILL)
    await wait_down(child)
    await settle()
    state = await otp_sys.get_state(sup)
    assert state["children"][0].pid is child  # the exit waits in its mailbox
    await otp_sys.resume(sup)
    [(_, again, _)] = await supervisor.which_children(sup)
    assert again is not None and again != child


# -- errors ---------------------------------------------------------------------------------


async def test_a_server_that_is_not_there_is_noproc(otp_node):
    with pytest.raises(otp.NoProc):
        await otp_sys.get_state("nobody")
    pid = await gen_server.start_link(Counter)
    await gen_server.stop(pid)
    with pytest.raises(otp.NoProc):
        await otp_sys.get_status(pid)


async def test_a_plain_process_is_a_type_error_and_gets_no_message(otp_node):
    pid = otp.spawn(sleep_forever)
    with pytest.raises(TypeError):
        await otp_sys.get_state(pid)
    assert otp.process_info(pid).message_queue_len == 0


async def test_the_calling_server_itself_is_a_value_error(otp_node):
    with pytest.raises(ValueError):
        await otp_sys.get_state(otp.self())


async def test_a_busy_server_times_out_and_the_late_answer_is_dropped(otp_node, autojump_clock):
    pid = await gen_server.start_link(Counter)
    event = trio.Event()
    otp.spawn(gen_server.call, pid, ("wait", event))
    await settle()
    with pytest.raises(otp.CallTimeout):
        await otp_sys.get_state(pid, timeout=1)
    event.set()
    assert await gen_server.call(pid, "get") == 1  # it served the late request, unharmed


async def test_a_server_that_ends_before_answering_is_server_exited(otp_node):
    otp.trap_exits(True)
    pid = await gen_server.start_link(Counter)
    event = trio.Event()
    otp.spawn(gen_server.call, pid, ("wait", event))
    await settle()
    async with trio.open_nursery() as nursery:
        errors: list[Exception] = []

        async def ask() -> None:
            try:
                await otp_sys.get_state(pid)
            except otp.ServerExited as exc:
                errors.append(exc)

        nursery.start_soon(ask)
        await settle()
        otp.exit(pid, otp.KILL)
    assert [e.reason for e in errors] == [otp.KILLED]


@pytest.mark.parametrize("timeout", [-1, "soon", float("nan")])
async def test_an_invalid_timeout_is_refused_before_anything_is_sent(otp_node, timeout):
    pid = await gen_server.start_link(Counter)
    await otp_sys.suspend(pid)
    with pytest.raises((TypeError, ValueError)):
        await otp_sys.resume(pid, timeout=timeout)
    assert otp.process_info(pid).message_queue_len == 0


async def test_every_function_accepts_timeout_infinity(otp_node):
    pid = await gen_server.start_link(Counter)
    await otp_sys.trace(pid, False, timeout="infinity")
    assert await otp_sys.get_state(pid, timeout=None) == {"count": 0, "log": []}
