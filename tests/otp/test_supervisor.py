"""otp.supervisor: start order, strategies, restart types, intensity, shutdown, the run-time
API, the class form and logging. The generated-tree tests at the end check every strategy
and restart type against the model of otp.testing."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st

import otp
from otp import gen_server, supervisor
from otp.supervisor import (
    AlreadyPresent,
    ChildSpec,
    NotFound,
    Restarting,
    Running,
    Spec,
    StartChildError,
)
from otp.testing import RESTARTS, STRATEGIES, run_supervision_machine, trees

from .supervisor_helpers import (
    Recorder,
    crash,
    pids_of,
    settle,
    spec,
    starts,
    terminates,
    wait_down,
)

# -- starting ------------------------------------------------------------------------------------


async def test_children_start_in_list_order(otp_node):
    log: list[Any] = []
    await supervisor.start_link([spec(log, t) for t in "abc"])
    assert starts(log) == ["a", "b", "c"]


async def test_start_link_returns_once_every_child_is_running(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abc"])
    children = await supervisor.which_children(sup)
    assert [(i, t) for i, _, t in children] == [("a", "worker"), ("b", "worker"), ("c", "worker")]
    assert all(pid is not None and otp.is_alive(pid) for _, pid, _ in children)


async def test_a_failed_start_stops_the_started_children_in_reverse_and_raises(otp_node):
    log: list[Any] = []
    bad = ValueError("no database")
    children = [spec(log, "a"), spec(log, "b"), spec(log, "c", {"fail": bad}), spec(log, "d")]
    with pytest.raises(StartChildError) as info:
        await supervisor.start_link(children)
    assert info.value.child_id == "c"
    assert info.value.reason is bad
    assert log == [
        ("start", "a"), ("start", "b"),
        ("terminate", "b", otp.SHUTDOWN), ("done", "b"),
        ("terminate", "a", otp.SHUTDOWN), ("done", "a"),
    ]


async def test_a_failed_start_sends_no_exit_signal_to_the_caller(otp_node):
    otp.trap_exits(True)
    with pytest.raises(StartChildError):
        await supervisor.start_link([spec([], "a", {"fail": RuntimeError("x")})])
    await settle()
    with pytest.raises(otp.ReceiveTimeout):
        await otp.receive(timeout=0)


async def test_a_start_that_raises_gives_start_child_error_with_that_exception(otp_node):
    error = KeyError("k")

    async def start() -> otp.Pid:
        raise error

    with pytest.raises(StartChildError) as info:
        await supervisor.start_link([ChildSpec("k", start)])
    assert info.value.child_id == "k" and info.value.reason is error


async def test_a_start_that_returns_no_pid_gives_start_child_error(otp_node):
    async def start() -> Any:
        return "not a pid"

    with pytest.raises(StartChildError) as info:
        await supervisor.start_link([ChildSpec("k", start)])
    assert isinstance(info.value.reason, TypeError)


async def test_a_child_that_returns_ignore_is_defined_but_not_running(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a", {"ignore": True}), spec(log, "b")])
    children = await supervisor.which_children(sup)
    assert children[0] == ("a", None, "worker")
    assert children[1][1] is not None


async def test_sup_start_ignore_temporary_child_is_not_kept(otp_node):
    """supervisor_SUITE:sup_start_ignore_temporary_child: an ignored temporary child listed
    in the supervisor's children is not saved."""
    children = [
        spec([], "child1", {"ignore": True}, restart="temporary"),
        spec([], "child2", restart="temporary"),
    ]
    sup = await supervisor.start_link(children)
    [(child_id, pid, kind)] = await supervisor.which_children(sup)
    assert (child_id, kind) == ("child2", "worker") and isinstance(pid, otp.Pid)
    assert await supervisor.count_children(sup) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1,
    }


async def test_start_link_rejects_duplicate_child_ids(otp_node):
    with pytest.raises(ValueError, match="duplicate"):
        await supervisor.start_link([spec([], "a"), spec([], "a")])


async def test_start_link_rejects_an_unknown_strategy(otp_node):
    with pytest.raises(ValueError, match="strategy"):
        await supervisor.start_link([], strategy="one_for_some")  # type: ignore[arg-type]


async def test_start_link_with_a_taken_name_raises_already_started(otp_node):
    first = await supervisor.start_link([], name="sup")
    with pytest.raises(otp.AlreadyStarted) as info:
        await supervisor.start_link([], name="sup")
    assert info.value.pid == first


async def test_child_spec_defaults_shutdown_by_type():
    async def start() -> None:
        return None

    assert ChildSpec("w", start).shutdown == 5.0
    assert ChildSpec("s", start, type="supervisor").shutdown == "infinity"
    assert ChildSpec("w", start).restart == "permanent"


async def test_child_spec_rejects_bad_fields():
    async def start() -> None:
        return None

    with pytest.raises(ValueError):
        ChildSpec("w", start, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ChildSpec("w", start, shutdown=-1)
    with pytest.raises(ValueError):
        ChildSpec("w", start, type="manager")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ChildSpec("w", "not callable")  # type: ignore[arg-type]


# -- strategies ----------------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_failed_child(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abc"])
    before = await pids_of(sup)
    await crash(sup, "b")
    after = await pids_of(sup)
    assert after["a"] is before["a"] and after["c"] is before["c"]
    assert after["b"] is not before["b"] and otp.is_alive(after["b"])
    assert terminates(log) == []


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abcd"], strategy="one_for_all")
    before = await pids_of(sup)
    log.clear()
    await crash(sup, "b")
    after = await pids_of(sup)
    assert terminates(log) == ["d", "c", "a"]
    assert starts(log) == ["a", "b", "c", "d"]
    assert all(after[t] is not before[t] for t in "abcd")


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abcd"], strategy="rest_for_one")
    before = await pids_of(sup)
    log.clear()
    await crash(sup, "b")
    after = await pids_of(sup)
    assert terminates(log) == ["d", "c"]
    assert starts(log) == ["b", "c", "d"]
    assert after["a"] is before["a"]
    assert all(after[t] is not before[t] for t in "bcd")


async def test_a_restarted_named_child_takes_its_name_again(otp_node):
    sup = await supervisor.start_link([Recorder.child_spec([], "x", name="named", id="x")])
    old = otp.whereis("named")
    await crash(sup, "x")
    new = otp.whereis("named")
    assert new is not None and new is not old
    assert await gen_server.call("named", "ping") == "x"


# -- restart types --------------------------------------------------------------------------------


async def test_a_permanent_child_is_restarted_even_after_a_normal_exit(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    old = await crash(sup, "a", otp.NORMAL)
    assert (await pids_of(sup))["a"] not in (None, old)


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown("done")])
async def test_a_transient_child_is_not_restarted_after_a_normal_exit(otp_node, reason):
    sup = await supervisor.start_link([spec([], "a", restart="transient")])
    await crash(sup, "a", reason)
    assert await supervisor.which_children(sup) == [("a", None, "worker")]


@pytest.mark.parametrize("reason", [otp.KILL, RuntimeError("crash"), "odd reason"])
async def test_a_transient_child_is_restarted_after_an_abnormal_exit(otp_node, reason):
    sup = await supervisor.start_link([spec([], "a", restart="transient")])
    old = await crash(sup, "a", reason)
    assert (await pids_of(sup))["a"] not in (None, old)


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.KILL, RuntimeError("crash")])
async def test_a_temporary_child_is_never_restarted_and_is_forgotten(otp_node, reason):
    sup = await supervisor.start_link([spec([], "a", restart="temporary"), spec([], "b")])
    await crash(sup, "a", reason)
    assert [i for i, _, _ in await supervisor.which_children(sup)] == ["b"]


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_temporary_sibling_stopped_by_a_restart_is_forgotten(otp_node, strategy):
    log: list[Any] = []
    children = [spec(log, "a"), spec(log, "t", restart="temporary"), spec(log, "c")]
    sup = await supervisor.start_link(children, strategy=strategy)
    await crash(sup, "a")
    assert [i for i, _, _ in await supervisor.which_children(sup)] == ["a", "c"]
    assert ("terminate", "t", otp.SHUTDOWN) in log


async def test_a_transient_that_ended_normally_is_started_again_by_one_for_all(otp_node):
    log: list[Any] = []
    children = [spec(log, "a"), spec(log, "t", restart="transient")]
    sup = await supervisor.start_link(children, strategy="one_for_all")
    await crash(sup, "t", otp.NORMAL)
    await crash(sup, "a")
    assert all(pid is not None for pid in (await pids_of(sup)).values())


# -- restart intensity -----------------------------------------------------------------------------


async def test_more_than_intensity_restarts_in_the_period_make_it_give_up(otp_node, autojump_clock):
    otp.trap_exits(True)
    sup = await supervisor.start_link([spec([], "a")], intensity=2, period=5.0)
    await crash(sup, "a")
    await trio.sleep(1)
    await crash(sup, "a")
    assert otp.is_alive(sup)
    await trio.sleep(1)
    pid = (await pids_of(sup))["a"]
    otp.exit(pid, otp.KILL)
    assert await wait_down(sup) is otp.SHUTDOWN


async def test_a_supervisor_that_gives_up_exits_shutdown_to_its_parent(otp_node):
    otp.trap_exits(True)
    sup = await supervisor.start_link([spec([], "a")], intensity=0)
    pid = (await pids_of(sup))["a"]
    otp.exit(pid, otp.KILL)
    msg = await otp.receive(match=lambda m: type(m) is otp.Exit and m.pid == sup)
    assert msg.reason is otp.SHUTDOWN
    assert not otp.is_alive(pid)


async def test_restarts_spread_over_more_than_the_period_do_not_add_up(otp_node, autojump_clock):
    sup = await supervisor.start_link([spec([], "a")], intensity=1, period=5.0)
    for _ in range(5):
        await crash(sup, "a")
        await trio.sleep(5.1)
    assert otp.is_alive(sup)


async def test_restarts_are_counted_over_all_children(otp_node, autojump_clock):
    otp.trap_exits(True)
    sup = await supervisor.start_link([spec([], t) for t in "abc"], intensity=2, period=5.0)
    await crash(sup, "a")
    await crash(sup, "b")
    pid = (await pids_of(sup))["c"]
    otp.exit(pid, otp.KILL)
    assert await wait_down(sup) is otp.SHUTDOWN


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_group_restart_counts_once_toward_the_intensity(otp_node, strategy):
    sup = await supervisor.start_link([spec([], t) for t in "abc"], strategy=strategy,
                                      intensity=1, period=5.0)
    await crash(sup, "a")
    assert otp.is_alive(sup)
    assert all(pid is not None for pid in (await pids_of(sup)).values())


async def test_two_children_ending_together_under_one_for_all_restart_once(otp_node):
    sup = await supervisor.start_link([spec([], t) for t in "abc"], strategy="one_for_all",
                                      intensity=1)
    before = await pids_of(sup)
    otp.exit(before["a"], otp.KILL)
    otp.exit(before["b"], otp.KILL)
    await settle()
    assert otp.is_alive(sup)  # the second exit was part of the first restart
    after = await pids_of(sup)
    assert all(after[t] is not before[t] and otp.is_alive(after[t]) for t in "abc")


async def test_two_children_ending_together_under_one_for_one_count_twice(otp_node):
    otp.trap_exits(True)
    sup = await supervisor.start_link([spec([], t) for t in "abc"], intensity=1)
    before = await pids_of(sup)
    otp.exit(before["a"], otp.KILL)
    otp.exit(before["b"], otp.KILL)
    assert await wait_down(sup) is otp.SHUTDOWN


async def test_start_link_rejects_a_bad_intensity_or_period(otp_node):
    with pytest.raises(ValueError, match="intensity"):
        await supervisor.start_link([], intensity=-1)
    with pytest.raises(ValueError, match="period"):
        await supervisor.start_link([], period=0)


async def test_giving_up_stops_the_children_in_reverse_order(otp_node):
    otp.trap_exits(True)
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abcd"], intensity=0)
    log.clear()
    await crash(sup, "b")
    assert terminates(log) == ["d", "c", "a"]
    assert not otp.is_alive(sup)


async def test_the_parent_restarts_a_child_supervisor_that_gave_up(otp_node):
    log: list[Any] = []
    inner = [spec(log, "x"), spec(log, "y")]

    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link(inner, intensity=0)

    outer = await supervisor.start_link(
        [spec(log, "a"), ChildSpec("inner", start_inner, type="supervisor")]
    )
    before = await pids_of(outer)
    inner_pid = before["inner"]
    assert inner_pid is not None
    x = (await pids_of(inner_pid))["x"]
    otp.exit(x, otp.KILL)
    assert await wait_down(inner_pid) is otp.SHUTDOWN
    await settle()
    after = await pids_of(outer)
    assert after["a"] is before["a"]
    assert after["inner"] not in (None, inner_pid)
    assert starts(log)[-2:] == ["x", "y"]


async def test_a_child_that_fails_to_restart_is_retried_until_the_supervisor_gives_up(otp_node):
    otp.trap_exits(True)
    attempts = []

    async def start() -> otp.Pid | None:
        attempts.append(1)
        if len(attempts) > 1:
            raise RuntimeError("cannot start again")
        return await gen_server.start_link(Recorder, [], "a")

    sup = await supervisor.start_link([ChildSpec("a", start)], intensity=3, period=5.0)
    pid = (await pids_of(sup))["a"]
    otp.exit(pid, otp.KILL)
    assert await wait_down(sup) is otp.SHUTDOWN
    assert len(attempts) == 1 + 3  # the first start, then one try per allowed restart


async def test_a_child_that_fails_to_restart_once_is_running_after_the_retry(otp_node):
    attempts = []

    async def start() -> otp.Pid | None:
        attempts.append(1)
        if len(attempts) == 2:
            raise RuntimeError("not yet")
        return await gen_server.start_link(Recorder, [], "a")

    sup = await supervisor.start_link([ChildSpec("a", start)])
    await crash(sup, "a")
    assert len(attempts) == 3
    assert (await pids_of(sup))["a"] is not None


# -- a restart that keeps failing (OTP-9549) ---------------------------------------------------


class FlakyStart:
    """A child's start that fails while ``failing`` is set, like supervisor_deadlock.erl:
    a failing start first takes ``delay`` seconds (upstream: 2 s, so that a restart loop
    with intensity 8 in 10 s goes on for ever instead of giving up)."""

    def __init__(self, tag: Any, delay: float = 0.0) -> None:
        self.tag = tag
        self.delay = delay
        self.failing = False
        self.attempts = 0

    async def __call__(self) -> otp.Pid | None:
        self.attempts += 1
        if self.failing:
            if self.delay:
                await trio.sleep(self.delay)
            raise RuntimeError("cannot start now")
        return await gen_server.start_link(Recorder, [], self.tag)

    def spec(self, **fields: Any) -> ChildSpec:
        return ChildSpec(self.tag, self, shutdown="brutal_kill", **fields)


async def test_hanging_restart_loop_the_child_is_restarting_and_refuses_restart_and_delete(
    otp_node, autojump_clock, caplog
):
    """supervisor_SUITE:hanging_restart_loop, first part: while a failed restart is retried,
    start_child says already present, restart_child and delete_child say restarting, and
    the child is listed and counted with no pid."""
    caplog.set_level(logging.CRITICAL)
    start = FlakyStart("child1", delay=2.0)
    sup = await supervisor.start_link([], intensity=8, period=10.0, name="sup_test")
    pid = await supervisor.start_child("sup_test", start.spec())
    start.failing = True
    await crash(sup, "child1", "error")
    await trio.sleep(2)  # let the restart fail and the retries begin
    with pytest.raises(AlreadyPresent):
        await supervisor.start_child("sup_test", start.spec())
    with pytest.raises(Restarting) as info:
        await supervisor.restart_child("sup_test", "child1")
    assert info.value.child_id == "child1"
    with pytest.raises(Restarting):
        await supervisor.delete_child("sup_test", "child1")
    assert await supervisor.which_children("sup_test") == [("child1", None, "worker")]
    assert await supervisor.count_children("sup_test") == {
        "specs": 1, "active": 0, "supervisors": 0, "workers": 1,
    }
    assert not otp.is_alive(pid) and otp.is_alive(sup)


async def test_hanging_restart_loop_terminate_child_ends_the_retries(
    otp_node, autojump_clock, caplog
):
    """supervisor_SUITE:hanging_restart_loop, second part: terminate_child of a restarting
    child marks it terminated; the pending retry does nothing, the child stays down (even
    once its start would work) and restart_child starts it again."""
    caplog.set_level(logging.CRITICAL)
    start = FlakyStart("child1", delay=2.0)
    sup = await supervisor.start_link([], intensity=8, period=10.0, name="sup_test")
    await supervisor.start_child("sup_test", start.spec())
    start.failing = True
    await crash(sup, "child1", "error")
    await trio.sleep(2)
    await supervisor.terminate_child("sup_test", "child1")
    assert await supervisor.which_children("sup_test") == [("child1", None, "worker")]
    attempts = start.attempts
    start.failing = False
    await trio.sleep(30)
    assert start.attempts == attempts  # no retry after terminate_child
    assert await supervisor.which_children("sup_test") == [("child1", None, "worker")]
    pid = await supervisor.restart_child("sup_test", "child1")
    assert pid is not None and (await pids_of(sup))["child1"] is pid


async def test_hanging_restart_loop_the_supervisor_stops_while_it_retries(
    otp_node, autojump_clock, caplog
):
    """supervisor_SUITE:hanging_restart_loop, last part (OTP-9549): a supervisor retrying a
    restart stops when asked to, and its name is free."""
    caplog.set_level(logging.CRITICAL)
    otp.trap_exits(True)
    start = FlakyStart("child1", delay=2.0)
    sup = await supervisor.start_link([], intensity=8, period=10.0, name="sup_test")
    await supervisor.start_child("sup_test", start.spec())
    start.failing = True
    await crash(sup, "child1", "error")
    await trio.sleep(2)
    with trio.fail_after(10):
        await supervisor.stop("sup_test", otp.SHUTDOWN)
    assert otp.whereis("sup_test") is None


async def test_terminate_child_of_a_restarting_child_stops_immediate_retries(otp_node, caplog):
    """A start that fails at once is retried at once; terminate_child still gets in between
    two tries (requests are served in order) and ends them: the supervisor neither brings
    the child back nor dies of the restart intensity."""
    caplog.set_level(logging.CRITICAL)
    start = FlakyStart("child1")
    sup = await supervisor.start_link([start.spec()], intensity=1000)
    start.failing = True
    pid = (await pids_of(sup))["child1"]
    assert pid is not None
    otp.exit(pid, otp.KILL)
    await wait_down(pid)  # the supervisor's EXIT is in its mailbox before this call
    await supervisor.terminate_child(sup, "child1")
    attempts = start.attempts
    start.failing = False
    await settle()
    assert start.attempts == attempts
    assert await supervisor.which_children(sup) == [("child1", None, "worker")]
    assert otp.is_alive(sup)


async def test_hanging_restart_loop_rest_for_one(otp_node, autojump_clock, caplog):
    """supervisor_SUITE:hanging_restart_loop_rest_for_one: the child that fails to restart
    is restarting, the ones after it are not running; terminating it ends the retries."""
    caplog.set_level(logging.CRITICAL)
    start = FlakyStart("child2", delay=2.0)
    sup = await supervisor.start_link(
        [spec([], "child1", shutdown="brutal_kill"), start.spec(),
         spec([], "child3", shutdown="brutal_kill")],
        strategy="rest_for_one", intensity=8, period=10.0,
    )
    child1 = (await pids_of(sup))["child1"]
    start.failing = True
    await crash(sup, "child2", "error")
    await trio.sleep(2)
    with pytest.raises(Restarting):
        await supervisor.restart_child(sup, "child2")
    with pytest.raises(Restarting):
        await supervisor.delete_child(sup, "child2")
    assert await supervisor.which_children(sup) == [
        ("child1", child1, "worker"), ("child2", None, "worker"), ("child3", None, "worker"),
    ]
    assert await supervisor.count_children(sup) == {
        "specs": 3, "active": 1, "supervisors": 0, "workers": 3,
    }
    await supervisor.terminate_child(sup, "child2")
    start.failing = False
    await trio.sleep(30)
    assert await supervisor.which_children(sup) == [
        ("child1", child1, "worker"), ("child2", None, "worker"), ("child3", None, "worker"),
    ]
    assert await supervisor.restart_child(sup, "child2") is not None


# -- shutdown --------------------------------------------------------------------------------------


async def test_stop_shuts_the_children_down_in_reverse_start_order(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abcd"])
    await supervisor.stop(sup)
    assert terminates(log) == ["d", "c", "b", "a"]
    assert not otp.is_alive(sup)


async def test_trapping_gen_server_children_run_terminate_with_shutdown(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a")])
    await supervisor.stop(sup)
    assert log[-2:] == [("terminate", "a", otp.SHUTDOWN), ("done", "a")]


async def test_non_trapping_gen_server_children_do_not_run_terminate(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a", {"trap": False})])
    pid = (await pids_of(sup))["a"]
    await supervisor.stop(sup)
    assert terminates(log) == []
    assert not otp.is_alive(pid)


async def test_brutal_kill_kills_without_terminate(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a", shutdown="brutal_kill")])
    pid = (await pids_of(sup))["a"]
    ref = otp.monitor(pid)
    await supervisor.stop(sup)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.KILLED
    assert terminates(log) == []


async def test_a_timeout_shutdown_kills_a_child_that_takes_longer(otp_node, autojump_clock):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "slow", {"delay": 10}, shutdown=2.0)])
    pid = (await pids_of(sup))["slow"]
    ref = otp.monitor(pid)
    start = trio.current_time()
    await supervisor.stop(sup)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.KILLED
    assert trio.current_time() - start == pytest.approx(2.0)
    assert log[-1] == ("terminate", "slow", otp.SHUTDOWN)  # never got to "done"


async def test_a_timeout_shutdown_lets_a_quick_child_finish(otp_node, autojump_clock):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "quick", {"delay": 1}, shutdown=2.0)])
    pid = (await pids_of(sup))["quick"]
    ref = otp.monitor(pid)
    start = trio.current_time()
    await supervisor.stop(sup)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.SHUTDOWN
    assert trio.current_time() - start == pytest.approx(1.0)
    assert log[-1] == ("done", "quick")


async def test_an_infinity_shutdown_waits_for_a_slow_terminate(otp_node, autojump_clock):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "slow", {"delay": 3600}, shutdown="infinity")])
    start = trio.current_time()
    await supervisor.stop(sup)
    assert trio.current_time() - start == pytest.approx(3600)
    assert log[-1] == ("done", "slow")


async def test_each_child_is_shut_down_per_its_own_shutdown_value(otp_node, autojump_clock):
    log: list[Any] = []
    sup = await supervisor.start_link([
        spec(log, "inf", {"delay": 4}, shutdown="infinity"),
        spec(log, "kill", {"delay": 4}, shutdown="brutal_kill"),
        spec(log, "timeout", {"delay": 4}, shutdown=1.0),
    ])
    start = trio.current_time()
    await supervisor.stop(sup)
    assert terminates(log) == ["timeout", "inf"]
    assert ("done", "timeout") not in log and ("done", "inf") in log
    assert trio.current_time() - start == pytest.approx(1.0 + 4.0)


async def test_the_default_worker_shutdown_kills_after_five_seconds(otp_node, autojump_clock):
    sup = await supervisor.start_link([spec([], "slow", {"delay": 60})])
    start = trio.current_time()
    await supervisor.stop(sup)
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_supervisor_shuts_down_in_order_when_its_parent_sends_shutdown(otp_node):
    otp.trap_exits(True)
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, t) for t in "abc"])
    otp.exit(sup, otp.SHUTDOWN)  # from the test process, its parent
    assert await wait_down(sup) is otp.SHUTDOWN
    assert terminates(log) == ["c", "b", "a"]


async def test_gen_server_stop_works_on_a_supervisor(otp_node):
    otp.trap_exits(True)  # shutdown("bye") is not NORMAL: it would end the test process
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a")])
    await gen_server.stop(sup, otp.shutdown("bye"))
    assert not otp.is_alive(sup)
    assert terminates(log) == ["a"]


async def test_nested_supervisors_shut_down_depth_first_in_reverse(otp_node):
    log: list[Any] = []
    inner = [spec(log, "x"), spec(log, "y")]

    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link(inner)

    sup = await supervisor.start_link(
        [spec(log, "a"), ChildSpec("inner", start_inner, type="supervisor"), spec(log, "b")]
    )
    await supervisor.stop(sup)
    assert terminates(log) == ["b", "y", "x", "a"]


async def test_no_child_outlives_a_killed_supervisor(otp_node):
    async def start_inner() -> otp.Pid | None:
        pid = await supervisor.start_link([spec([], "x"), spec([], "y")])
        return pid

    sup = await supervisor.start_link(
        [spec([], "a"), ChildSpec("inner", start_inner, type="supervisor")]
    )
    inner = (await pids_of(sup))["inner"]
    assert inner is not None
    inner_pids = [p for p in (await pids_of(inner)).values() if p is not None]
    every = [*inner_pids, inner, *[p for p in (await pids_of(sup)).values() if p is not None]]
    otp.trap_exits(True)
    ref = otp.monitor(sup)
    otp.exit(sup, otp.KILL)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.KILLED
    assert not any(otp.is_alive(p) for p in every)


async def test_processes_spawned_by_a_child_end_with_the_supervisor(otp_node):
    helpers: list[otp.Pid] = []

    class Spawner(otp.GenServer):
        async def init(self) -> None:
            helpers.append(otp.spawn(trio.sleep_forever))

    sup = await supervisor.start_link([Spawner.child_spec()])
    assert otp.is_alive(helpers[0])
    await supervisor.stop(sup)
    assert not otp.is_alive(helpers[0])


async def test_a_killed_nested_supervisor_ends_with_killed(otp_node):
    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link([spec([], "x"), spec([], "y")])

    async def start_middle() -> otp.Pid | None:
        return await supervisor.start_link([ChildSpec("inner", start_inner, type="supervisor")])

    top = await supervisor.start_link(
        [ChildSpec("middle", start_middle, type="supervisor", shutdown="brutal_kill")]
    )
    middle = (await pids_of(top))["middle"]
    assert middle is not None
    inner = (await pids_of(middle))["inner"]
    assert inner is not None
    ref = otp.monitor(inner)
    await supervisor.stop(top)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.KILLED


# -- the run-time API ----------------------------------------------------------------------------


async def test_start_child_adds_a_child_at_the_end_and_returns_its_pid(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a")])
    pid = await supervisor.start_child(sup, spec(log, "b"))
    assert await supervisor.which_children(sup) == [
        ("a", (await pids_of(sup))["a"], "worker"), ("b", pid, "worker")
    ]
    assert await gen_server.call(pid, "ping") == "b"


async def test_start_child_accepts_a_class_with_child_spec(otp_node):
    class Plain(otp.GenServer):
        pass

    sup = await supervisor.start_link([])
    pid = await supervisor.start_child(sup, Plain)
    assert await supervisor.which_children(sup) == [(Plain, pid, "worker")]


async def test_start_child_with_the_id_of_a_running_child_raises_already_started(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    with pytest.raises(otp.AlreadyStarted) as info:
        await supervisor.start_child(sup, spec([], "a"))
    assert info.value.pid == (await pids_of(sup))["a"]


async def test_start_child_with_the_id_of_a_stopped_child_raises_already_present(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    await supervisor.terminate_child(sup, "a")
    with pytest.raises(AlreadyPresent) as info:
        await supervisor.start_child(sup, spec([], "a"))
    assert info.value.child_id == "a"


async def test_start_child_whose_start_fails_raises_and_keeps_nothing(otp_node):
    sup = await supervisor.start_link([])
    error = RuntimeError("no")
    with pytest.raises(StartChildError) as info:
        await supervisor.start_child(sup, spec([], "a", {"fail": error}))
    assert info.value.child_id == "a" and info.value.reason is error
    assert await supervisor.which_children(sup) == []


async def test_start_child_that_ignores_is_kept_with_no_pid(otp_node):
    sup = await supervisor.start_link([])
    assert await supervisor.start_child(sup, spec([], "a", {"ignore": True})) is None
    assert await supervisor.which_children(sup) == [("a", None, "worker")]


async def test_sup_start_ignore_temporary_child_start_child_keeps_nothing(otp_node):
    """supervisor_SUITE:sup_start_ignore_temporary_child_start_child: start_child of a
    temporary child that ignores returns None and saves nothing, so the same spec can be
    started again."""
    sup = await supervisor.start_link([])
    ignoring = spec([], "child1", {"ignore": True}, restart="temporary")
    assert await supervisor.start_child(sup, ignoring) is None
    pid = await supervisor.start_child(sup, spec([], "child2", restart="temporary"))
    assert await supervisor.which_children(sup) == [("child2", pid, "worker")]
    assert await supervisor.count_children(sup) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1,
    }
    assert await supervisor.start_child(sup, ignoring) is None  # not AlreadyPresent


async def test_sup_start_ignore_child_keeps_a_permanent_child_that_ignores(otp_node):
    """supervisor_SUITE:sup_start_ignore_child: unlike a temporary one, a permanent child
    that ignores stays defined, not running."""
    sup = await supervisor.start_link([])
    assert await supervisor.start_child(sup, spec([], "child1", {"ignore": True})) is None
    pid = await supervisor.start_child(sup, spec([], "child2"))
    assert await supervisor.which_children(sup) == [
        ("child1", None, "worker"), ("child2", pid, "worker"),
    ]
    assert await supervisor.count_children(sup) == {
        "specs": 2, "active": 1, "supervisors": 0, "workers": 2,
    }


async def test_terminate_child_stops_it_and_keeps_its_spec(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link([spec(log, "a")])
    pid = (await pids_of(sup))["a"]
    await supervisor.terminate_child(sup, "a")
    assert not otp.is_alive(pid)
    assert terminates(log) == ["a"]
    assert await supervisor.which_children(sup) == [("a", None, "worker")]
    await settle()
    assert await supervisor.which_children(sup) == [("a", None, "worker")]  # not restarted


async def test_terminate_child_of_a_temporary_child_forgets_it(otp_node):
    sup = await supervisor.start_link([spec([], "a", restart="temporary")])
    await supervisor.terminate_child(sup, "a")
    assert await supervisor.which_children(sup) == []


async def test_terminate_child_of_a_stopped_child_does_nothing(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    await supervisor.terminate_child(sup, "a")
    await supervisor.terminate_child(sup, "a")
    assert await supervisor.which_children(sup) == [("a", None, "worker")]


async def test_terminate_child_of_an_unknown_id_raises_not_found(otp_node):
    sup = await supervisor.start_link([])
    with pytest.raises(NotFound) as info:
        await supervisor.terminate_child(sup, "nope")
    assert info.value.child_id == "nope"


async def test_restart_child_starts_a_stopped_child_again(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    old = (await pids_of(sup))["a"]
    await supervisor.terminate_child(sup, "a")
    pid = await supervisor.restart_child(sup, "a")
    assert pid is not None and pid is not old
    assert (await pids_of(sup))["a"] is pid


async def test_restart_child_of_a_running_child_raises_running(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    with pytest.raises(Running) as info:
        await supervisor.restart_child(sup, "a")
    assert info.value.child_id == "a"


async def test_restart_child_of_an_unknown_id_raises_not_found(otp_node):
    sup = await supervisor.start_link([])
    with pytest.raises(NotFound):
        await supervisor.restart_child(sup, "nope")


async def test_restart_child_whose_start_fails_raises_start_child_error(otp_node):
    attempts = []

    async def start() -> otp.Pid | None:
        attempts.append(1)
        if len(attempts) > 1:
            raise RuntimeError("no more")
        return await gen_server.start_link(Recorder, [], "a")

    sup = await supervisor.start_link([ChildSpec("a", start)])
    await supervisor.terminate_child(sup, "a")
    with pytest.raises(StartChildError) as info:
        await supervisor.restart_child(sup, "a")
    assert info.value.child_id == "a"
    assert await supervisor.which_children(sup) == [("a", None, "worker")]


async def test_delete_child_forgets_a_stopped_child(otp_node):
    sup = await supervisor.start_link([spec([], "a"), spec([], "b")])
    await supervisor.terminate_child(sup, "a")
    await supervisor.delete_child(sup, "a")
    assert [i for i, _, _ in await supervisor.which_children(sup)] == ["b"]
    await supervisor.start_child(sup, spec([], "a"))  # the id is free again


async def test_delete_child_of_a_running_child_raises_running(otp_node):
    sup = await supervisor.start_link([spec([], "a")])
    with pytest.raises(Running):
        await supervisor.delete_child(sup, "a")


async def test_delete_child_of_an_unknown_id_raises_not_found(otp_node):
    sup = await supervisor.start_link([])
    with pytest.raises(NotFound):
        await supervisor.delete_child(sup, "nope")


async def test_which_children_gives_id_pid_and_type_in_start_order(otp_node):
    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link([])

    sup = await supervisor.start_link(
        [spec([], "a"), ChildSpec("s", start_inner, type="supervisor")]
    )
    children = await supervisor.which_children(sup)
    assert [(i, t) for i, _, t in children] == [("a", "worker"), ("s", "supervisor")]
    assert all(isinstance(pid, otp.Pid) for _, pid, _ in children)


async def test_count_children_counts_every_spec_as_erlang_does(otp_node):
    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link([])

    sup = await supervisor.start_link([
        spec([], "a"), spec([], "b", {"ignore": True}),
        ChildSpec("s", start_inner, type="supervisor"),
    ])
    assert await supervisor.count_children(sup) == {
        "specs": 3, "active": 2, "supervisors": 1, "workers": 2,
    }


async def test_the_run_time_api_accepts_a_registered_name(otp_node):
    await supervisor.start_link([spec([], "a")], name="named_sup")
    await supervisor.terminate_child("named_sup", "a")
    assert await supervisor.restart_child("named_sup", "a") is not None
    assert (await supervisor.count_children("named_sup"))["active"] == 1


async def test_run_time_children_are_gone_after_the_supervisor_restarts(otp_node):
    log: list[Any] = []
    fixed = [spec(log, "fixed")]

    async def start_inner() -> otp.Pid | None:
        return await supervisor.start_link(fixed, name="inner")

    top = await supervisor.start_link([ChildSpec("inner", start_inner, type="supervisor")])
    await supervisor.start_child("inner", spec(log, "added"))
    assert [i for i, _, _ in await supervisor.which_children("inner")] == ["fixed", "added"]
    await crash(top, "inner")
    assert [i for i, _, _ in await supervisor.which_children("inner")] == ["fixed"]


async def test_a_call_to_a_dead_supervisor_raises_no_proc(otp_node):
    sup = await supervisor.start_link([])
    await supervisor.stop(sup)
    with pytest.raises(otp.NoProc):
        await supervisor.which_children(sup)


# -- the class form ------------------------------------------------------------------------------


class Pair(supervisor.Supervisor):
    async def init(self, log: list[Any], strategy: str = "one_for_one") -> Spec:
        return Spec([spec(log, "a"), spec(log, "b")], strategy=strategy,  # type: ignore[arg-type]
                    intensity=1, period=2.0)


async def test_the_class_form_starts_the_children_init_returns(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link(Pair, log)
    assert starts(log) == ["a", "b"]
    assert [i for i, _, _ in await supervisor.which_children(sup)] == ["a", "b"]


async def test_the_class_form_uses_the_flags_init_returns(otp_node):
    log: list[Any] = []
    sup = await supervisor.start_link(Pair, log, "one_for_all")
    before = await pids_of(sup)
    await crash(sup, "a")
    after = await pids_of(sup)
    assert after["b"] is not before["b"]  # one_for_all


async def test_the_class_form_can_be_listed_as_a_child(otp_node):
    log: list[Any] = []
    top = await supervisor.start_link([(Pair, log), Pair.child_spec(log, id="second")])
    children = await supervisor.which_children(top)
    assert [(i, t) for i, _, t in children] == [(Pair, "supervisor"), ("second", "supervisor")]
    assert starts(log) == ["a", "b", "a", "b"]


async def test_the_class_form_child_spec_waits_for_ever_on_shutdown():
    assert Pair.child_spec([]).shutdown == "infinity"
    assert Pair.child_spec([]).type == "supervisor"


async def test_the_class_form_init_returning_ignore_starts_nothing(otp_node):
    class Nothing(supervisor.Supervisor):
        async def init(self) -> Any:
            return otp.Ignore()

    assert await supervisor.start_link(Nothing) is None


class _Ignores(supervisor.Supervisor):
    async def init(self) -> Any:
        return otp.Ignore()


class _Fails(supervisor.Supervisor):
    async def init(self) -> Any:
        raise RuntimeError("cannot init")


async def test_otp_7669_the_name_is_free_once_start_link_returns_none(otp_node):
    """gen_server_SUITE:otp_7669 (local ignore), for a supervisor: 100 times in a row, as
    upstream does, since the name used to be freed after the starter woke half the time."""
    for _ in range(100):
        assert await supervisor.start_link(_Ignores, name="sup_test") is None
        assert otp.whereis("sup_test") is None


async def test_otp_7669_the_name_is_free_once_start_link_raises(otp_node, caplog):
    """gen_server_SUITE:otp_7669 (stop), for a supervisor whose init fails, and for one
    whose child fails to start."""
    caplog.set_level(logging.CRITICAL)
    for _ in range(50):
        with pytest.raises(otp.InitError):
            await supervisor.start_link(_Fails, name="sup_test")
        assert otp.whereis("sup_test") is None
        with pytest.raises(StartChildError):
            await supervisor.start_link([spec([], "a", {"fail": OSError()})], name="sup_test")
        assert otp.whereis("sup_test") is None


async def test_the_class_form_init_returning_something_else_fails(otp_node):
    class Wrong(supervisor.Supervisor):
        async def init(self) -> Any:
            return [spec([], "a")]

    with pytest.raises(TypeError, match="not a Spec"):
        await supervisor.start_link(Wrong)


async def test_a_supervisor_class_without_init_fails_to_start(otp_node):
    class Empty(supervisor.Supervisor):
        pass

    with pytest.raises(TypeError, match="override init"):
        await supervisor.start_link(Empty)


async def test_extra_positional_arguments_need_the_class_form(otp_node):
    with pytest.raises(TypeError, match="class form"):
        await supervisor.start_link([], "extra")


# -- logging --------------------------------------------------------------------------------------


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otp.supervisor"]


async def test_a_restart_is_logged_with_the_supervisor_child_and_reason(otp_node, caplog):
    caplog.set_level(logging.ERROR, logger="otp.supervisor")
    sup = await supervisor.start_link([spec([], "worker-a")], name="logged_sup")
    await crash(sup, "worker-a", RuntimeError("disk on fire"))
    [message] = _messages(caplog)
    assert "logged_sup" in message and "'worker-a'" in message
    assert "disk on fire" in message and "restarting" in message


async def test_a_give_up_is_logged_with_the_supervisor_child_and_reason(otp_node, caplog):
    caplog.set_level(logging.ERROR, logger="otp.supervisor")
    otp.trap_exits(True)
    sup = await supervisor.start_link([spec([], "worker-a")], intensity=0)
    await crash(sup, "worker-a")
    [message] = _messages(caplog)
    assert repr(sup) in message and "'worker-a'" in message and "killed" in message.lower()
    assert "shutting down" in message


async def test_a_failed_start_is_logged_with_the_supervisor_child_and_reason(otp_node, caplog):
    caplog.set_level(logging.ERROR, logger="otp.supervisor")
    with pytest.raises(StartChildError):
        await supervisor.start_link([spec([], "worker-a", {"fail": OSError("no port")})],
                                    name="failing_sup")
    [message] = _messages(caplog)
    assert "failing_sup" in message and "'worker-a'" in message and "no port" in message


async def test_a_normal_exit_of_a_transient_child_is_not_logged(otp_node, caplog):
    caplog.set_level(logging.ERROR, logger="otp.supervisor")
    sup = await supervisor.start_link([spec([], "a", restart="transient")])
    await crash(sup, "a", otp.NORMAL)
    assert _messages(caplog) == []


# -- generated trees against the model (otp.testing) -------------------------------------------

MACHINE = settings(stateful_step_count=20, deadline=None)


@pytest.mark.parametrize("restart", RESTARTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_and_restart_type_follows_the_model(strategy, restart):
    run_supervision_machine(
        trees(max_depth=1, max_width=4, strategies=st.just(strategy),
              restarts=st.just(restart)),
        settings=MACHINE,
    )


def test_generated_trees_of_mixed_strategies_follow_the_model():
    run_supervision_machine(trees(max_depth=2, max_width=3), settings=MACHINE)


def test_generated_trees_with_slow_shutdowns_follow_the_model():
    run_supervision_machine(
        trees(max_depth=2, max_width=3, trap_exits=st.just(True),
              terminate_delays=st.sampled_from([1.0, 3.0]),
              worker_shutdowns=st.sampled_from([0.5, 2.0, 5.0, "infinity"]),
              supervisor_shutdowns=st.sampled_from(["infinity", 9.7])),
        settings=MACHINE,
    )


def test_generated_trees_with_significant_children_follow_the_model():
    """Significant transient and temporary children under any_significant and
    all_significant supervisors, auto-shutdowns escalating through significant
    supervisors, against the model."""
    run_supervision_machine(
        trees(max_depth=2, max_width=3,
              auto_shutdowns=st.sampled_from(["any_significant", "all_significant"]),
              restarts=st.sampled_from(["transient", "temporary", "permanent"])),
        settings=MACHINE,
    )


def test_generated_trees_with_dynamic_supervisors_follow_the_model():
    """Dynamic supervisors (max_children, concurrent shutdown, a restarted child listed
    last) inside static ones and as the root, against the model."""
    run_supervision_machine(
        trees(max_depth=2, max_width=3, forms=st.sampled_from(["list", "class", "dynamic"])),
        settings=MACHINE,
    )


def test_generated_trees_with_restarts_that_keep_failing_follow_the_model():
    """Restarts that fail and are retried (each try counted), with run-time calls served
    while a child is restarting (terminate_child ends the retries, delete_child and
    restart_child raise Restarting, count_children and max_children count it), against
    the model. High intensities let the retries go on."""
    run_supervision_machine(
        trees(max_depth=1, max_width=3, intensities=st.integers(3, 12),
              forms=st.sampled_from(["list", "dynamic"])),
        failures=st.sampled_from([1, 2, 4, 30]),
        settings=MACHINE,
    )
