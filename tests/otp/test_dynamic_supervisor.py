"""otp.dynamic_supervisor: children added at run time, max_children, extra_args, restart
types, restart intensity, terminate_child, which_children / count_children, shutdown."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import dynamic_supervisor as dynsup
from otp import gen_server, supervisor
from otp.supervisor import ChildSpec, NotFound, StartChildError
from otp.testing import NodeDriver

from .supervisor_helpers import end, settle, wait_down


class Worker(otp.GenServer):
    """Logs ("start", args) and ("terminate", args, reason); answers calls with its args.

    The last argument may be a dict of options: ``trap`` (default True), ``delay`` (seconds
    terminate takes), ``fail`` (init raises it), ``ignore`` (init returns Ignore)."""

    async def init(self, log: list[Any], *args: Any) -> Any:
        opts = args[-1] if args and isinstance(args[-1], dict) else {}
        if "fail" in opts:
            raise opts["fail"]
        if opts.get("ignore"):
            return otp.Ignore()
        if opts.get("trap", True):
            otp.trap_exits(True)
        self.log, self.args, self.delay = log, args, opts.get("delay", 0)
        log.append(("start", args))
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return self.args

    async def handle_cast(self, msg: Any) -> Any:
        return otp.Stop(msg)

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", self.args, reason))
        if self.delay:
            await trio.sleep(self.delay)


async def end_without_settling(pid: otp.Pid, reason: Any) -> None:
    """Like :func:`end`, for a supervisor that may retry a restart for ever (it never
    settles): return once the child is gone, its EXIT already with its supervisor."""
    gen_server.cast(pid, reason)
    await wait_down(pid)


async def pids(sup: Any) -> list[otp.Pid]:
    return [pid for _, pid, _ in await dynsup.which_children(sup)]


def child(log: list[Any], *args: Any, **fields: Any) -> ChildSpec:
    return ChildSpec(fields.pop("id", "w"), _starter(log, args), **fields)


def _starter(log: list[Any], args: tuple[Any, ...]) -> Any:
    async def start(*extra: Any) -> otp.Pid | None:
        return await gen_server.start_link(Worker, log, *extra, *args)

    return start


class _Empty(supervisor.Supervisor):
    async def init(self) -> supervisor.Spec:
        return supervisor.Spec([])


# -- starting children ---------------------------------------------------------------------------


async def test_a_dynamic_supervisor_starts_with_no_children(otp_node):
    sup = await dynsup.start_link()
    assert await dynsup.which_children(sup) == []
    assert await dynsup.count_children(sup) == {
        "specs": 0, "active": 0, "supervisors": 0, "workers": 0,
    }


async def test_start_child_returns_the_pid_of_the_running_child(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child(log, "a"))
    assert isinstance(pid, otp.Pid) and otp.is_alive(pid)
    assert await gen_server.call(pid, "args") == ("a",)


async def test_which_children_lists_none_pid_and_type(otp_node):
    sup = await dynsup.start_link()
    a = await dynsup.start_child(sup, child([], "a"))
    s = await dynsup.start_child(sup, _Empty.child_spec(id="s"))
    assert await dynsup.which_children(sup) == [(None, a, "worker"), (None, s, "supervisor")]


async def test_count_children_counts_workers_and_supervisors(otp_node):
    sup = await dynsup.start_link()
    await dynsup.start_child(sup, child([], "a"))
    await dynsup.start_child(sup, child([], "b"))
    await dynsup.start_child(sup, _Empty.child_spec())
    assert await dynsup.count_children(sup) == {
        "specs": 3, "active": 3, "supervisors": 1, "workers": 2,
    }


async def test_children_may_share_an_id(otp_node):
    sup = await dynsup.start_link()
    a = await dynsup.start_child(sup, child([], "a", id="same"))
    b = await dynsup.start_child(sup, child([], "b", id="same"))
    assert a is not b and await pids(sup) == [a, b]


async def test_start_child_accepts_a_class_with_child_spec(otp_node):
    class Plain(otp.GenServer):
        pass

    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, Plain)
    assert await pids(sup) == [pid]


async def test_a_start_that_fails_raises_start_child_error_with_no_child_id(otp_node):
    sup = await dynsup.start_link()
    error = RuntimeError("cannot")
    with pytest.raises(StartChildError) as info:
        await dynsup.start_child(sup, child([], {"fail": error}))
    assert info.value.child_id is None and info.value.reason is error
    assert await dynsup.which_children(sup) == []


async def test_a_start_that_returns_ignore_returns_none_and_keeps_nothing(otp_node):
    sup = await dynsup.start_link()
    assert await dynsup.start_child(sup, child([], {"ignore": True})) is None
    assert await dynsup.which_children(sup) == []


async def test_extra_args_come_first_in_every_childs_start(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link(extra_args=("x", 1))
    pid = await dynsup.start_child(sup, child(log, "a"))
    assert await gen_server.call(pid, "args") == ("x", 1, "a")


async def test_extra_args_work_with_gen_server_child_spec(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link(extra_args=(log, "x"))
    pid = await dynsup.start_child(sup, Worker.child_spec("a"))
    assert await gen_server.call(pid, "args") == ("x", "a")


async def test_a_restarted_child_gets_the_extra_args_again(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link(extra_args=("x",))
    pid = await dynsup.start_child(sup, child(log, "a"))
    await end(pid)
    [new] = await pids(sup)
    assert await gen_server.call(new, "args") == ("x", "a")


# -- max_children ----------------------------------------------------------------------------------


async def test_max_children_refuses_a_child_over_the_limit(otp_node):
    sup = await dynsup.start_link(max_children=2)
    await dynsup.start_child(sup, child([], "a"))
    await dynsup.start_child(sup, child([], "b"))
    with pytest.raises(dynsup.MaxChildren) as info:
        await dynsup.start_child(sup, child([], "c"))
    assert info.value.max_children == 2
    assert len(await pids(sup)) == 2


async def test_a_child_that_ends_frees_its_place(otp_node):
    sup = await dynsup.start_link(max_children=1)
    pid = await dynsup.start_child(sup, child([], "a", restart="temporary"))
    await end(pid)
    assert await dynsup.start_child(sup, child([], "b")) is not None


async def test_terminate_child_frees_its_place(otp_node):
    sup = await dynsup.start_link(max_children=1)
    pid = await dynsup.start_child(sup, child([], "a"))
    await dynsup.terminate_child(sup, pid)
    assert await dynsup.start_child(sup, child([], "b")) is not None


async def test_max_children_zero_refuses_every_child(otp_node):
    sup = await dynsup.start_link(max_children=0)
    with pytest.raises(dynsup.MaxChildren):
        await dynsup.start_child(sup, child([], "a"))


async def test_start_link_validates_its_options(otp_node):
    with pytest.raises(ValueError):
        await dynsup.start_link(max_children=-1)
    with pytest.raises(ValueError):
        await dynsup.start_link(intensity=-1)
    with pytest.raises(ValueError):
        await dynsup.start_link(period=0)


# -- restart types and intensity -------------------------------------------------------------------


async def test_a_permanent_child_is_restarted_with_a_new_pid(otp_node):
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child([], "a"))
    await end(pid, otp.NORMAL)
    [new] = await pids(sup)
    assert new is not pid and otp.is_alive(new)


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown(1)])
async def test_a_transient_child_is_not_restarted_after_a_normal_exit(otp_node, reason):
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child([], "a", restart="transient"))
    await end(pid, reason)
    assert await dynsup.which_children(sup) == []


async def test_a_transient_child_is_restarted_after_a_crash(otp_node):
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child([], "a", restart="transient"))
    await end(pid, RuntimeError("crash"))
    [new] = await pids(sup)
    assert new is not pid


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.KILL])
async def test_a_temporary_child_is_never_restarted(otp_node, reason):
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child([], "a", restart="temporary"))
    await end(pid, reason)
    assert await dynsup.which_children(sup) == []


async def test_too_many_restarts_make_it_give_up_with_shutdown(otp_node, autojump_clock):
    otp.trap_exits(True)
    log: list[Any] = []
    sup = await dynsup.start_link(intensity=1, period=5.0)
    first = await dynsup.start_child(sup, child(log, "a"))
    other = await dynsup.start_child(sup, child(log, "b"))
    await end(first)
    [_, again] = await pids(sup)
    assert other in await pids(sup)
    await trio.sleep(1)
    otp.exit(again, otp.KILL)
    msg = await otp.receive(match=lambda m: type(m) is otp.Exit and m.pid == sup)
    assert msg.reason is otp.SHUTDOWN
    assert not otp.is_alive(other)
    assert ("terminate", ("b",), otp.SHUTDOWN) in log


async def test_restarts_outside_the_period_do_not_add_up(otp_node, autojump_clock):
    sup = await dynsup.start_link(intensity=1, period=5.0)
    await dynsup.start_child(sup, child([], "a"))
    for _ in range(4):
        [pid] = await pids(sup)
        await end(pid)
        await trio.sleep(6)
    assert otp.is_alive(sup)


async def test_a_child_that_fails_to_restart_is_retried_until_it_gives_up(otp_node):
    otp.trap_exits(True)
    attempts = []

    async def start(*extra: Any) -> otp.Pid | None:
        attempts.append(1)
        if len(attempts) > 1:
            raise RuntimeError("cannot start again")
        return await gen_server.start_link(Worker, [], "a")

    sup = await dynsup.start_link(intensity=2)
    pid = await dynsup.start_child(sup, ChildSpec("a", start))
    otp.exit(pid, otp.KILL)
    assert await wait_down(sup) is otp.SHUTDOWN
    assert len(attempts) == 1 + 2


# -- a child whose restart fails stays a child while it is restarting ---------------------------


class RestartWith:
    """The start of Elixir's ``current_module_worker([:restart, value])``: the first start
    succeeds, every later one does ``value``: ``"ok"`` (a new pid), ``"ignore"`` (None) or
    ``"error"`` (raises, so the supervisor keeps retrying)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.starts = 0

    async def __call__(self, *extra: Any) -> otp.Pid | None:
        self.starts += 1
        if self.starts > 1 and self.value == "ignore":
            return None
        if self.starts > 1 and self.value == "error":
            raise RuntimeError("found")
        return await gen_server.start_link(Worker, [], *extra, self.value)

    def spec(self, **fields: Any) -> ChildSpec:
        return ChildSpec("w", self, **fields)


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A supervisor retrying a restart for ever logs every try."""
    caplog.set_level(logging.CRITICAL, logger="otp")


async def test_restarting_on_init_children_counted_in_max_children(otp_node, quiet):
    """dynamic_supervisor_test "restarting on init children counted in max_children": a child
    whose restart fails still takes its place (count_children: a worker, not active)."""
    sup = await dynsup.start_link(max_children=1, intensity=100_000)
    pid = await dynsup.start_child(sup, RestartWith("error").spec())
    assert pid is not None
    await end_without_settling(pid, otp.SHUTDOWN)
    assert await dynsup.count_children(sup) == {
        "specs": 1, "active": 0, "supervisors": 0, "workers": 1,
    }
    with pytest.raises(dynsup.MaxChildren):
        await dynsup.start_child(sup, RestartWith("ok").spec())


async def test_restarting_on_exit_children_counted_in_max_children(otp_node):
    """dynamic_supervisor_test "restarting on exit children counted in max_children"."""
    sup = await dynsup.start_link(max_children=1, intensity=100_000)
    pid = await dynsup.start_child(sup, RestartWith("ok").spec())
    assert pid is not None
    await end(pid, otp.SHUTDOWN)
    assert await dynsup.count_children(sup) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1,
    }
    with pytest.raises(dynsup.MaxChildren):
        await dynsup.start_child(sup, RestartWith("ok").spec())


async def test_terminates_restarting_child(otp_node, quiet):
    """dynamic_supervisor_test "terminates restarting child": terminate_child with the old
    pid of a restarting child removes it and ends the retries; a second call says not
    found."""
    sup = await dynsup.start_link(intensity=100_000)
    start = RestartWith("error")
    pid = await dynsup.start_child(sup, start.spec())
    assert pid is not None
    await end_without_settling(pid, otp.SHUTDOWN)
    await dynsup.terminate_child(sup, pid)
    with pytest.raises(NotFound):
        await dynsup.terminate_child(sup, pid)
    assert await dynsup.count_children(sup) == {
        "specs": 0, "active": 0, "supervisors": 0, "workers": 0,
    }
    tries = start.starts
    await settle()  # would never return if the supervisor still retried
    assert start.starts == tries and otp.is_alive(sup)


async def test_child_is_restarted_with_different_values(otp_node, quiet):
    """dynamic_supervisor_test "child is restarted with different values": a restart that
    gives a pid replaces the child, one that ignores removes it, one that fails keeps it,
    restarting (listed with pid None, counted as a worker but not active)."""
    sup = await dynsup.start_link(intensity=100_000)
    child1 = await dynsup.start_child(sup, RestartWith("ok").spec())
    assert await dynsup.which_children(sup) == [(None, child1, "worker")]
    assert child1 is not None
    await end(child1, otp.SHUTDOWN)
    assert (await dynsup.count_children(sup))["active"] == 1

    child3 = await dynsup.start_child(sup, RestartWith("ignore").spec())
    assert child3 is not None
    assert len(await dynsup.which_children(sup)) == 2
    await end(child3, otp.SHUTDOWN)
    assert await dynsup.count_children(sup) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1,
    }

    child4 = await dynsup.start_child(sup, RestartWith("error").spec())
    assert child4 is not None
    await end_without_settling(child4, otp.SHUTDOWN)
    assert await dynsup.count_children(sup) == {
        "specs": 2, "active": 1, "supervisors": 0, "workers": 2,
    }
    children = await dynsup.which_children(sup)
    assert [pid is None for _, pid, _ in children] == [False, True]
    assert all(kind == "worker" for _, _, kind in children)


async def test_a_restarting_child_comes_back_when_its_start_works_again(otp_node, quiet):
    """dynamic_supervisor_test "child is restarted when trying again": the retry that
    succeeds replaces the restarting entry by the new child."""
    failing = [False]

    async def start(*extra: Any) -> otp.Pid | None:
        if failing[0]:
            failing[0] = False  # fails once, then works
            raise RuntimeError("try again")
        return await gen_server.start_link(Worker, [], "a")

    sup = await dynsup.start_link(intensity=2)
    pid = await dynsup.start_child(sup, ChildSpec("a", start))
    assert pid is not None
    failing[0] = True
    await end(pid, otp.SHUTDOWN)
    [(_, new, _)] = await dynsup.which_children(sup)
    assert new is not None and new is not pid and otp.is_alive(new)
    assert await dynsup.count_children(sup) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1,
    }


async def test_child_triggers_maximum_intensity_when_trying_again(otp_node, quiet):
    """dynamic_supervisor_test "child triggers maximum intensity when trying again": every
    failed try counts, so a restart that never works makes it give up."""
    otp.trap_exits(True)
    sup = await dynsup.start_link(intensity=10)
    pid = await dynsup.start_child(sup, RestartWith("error").spec())
    assert pid is not None
    await end_without_settling(pid, otp.SHUTDOWN)
    msg = await otp.receive(match=lambda m: type(m) is otp.Exit and m.pid == sup)
    assert msg.reason is otp.SHUTDOWN


# -- terminate_child and shutdown ----------------------------------------------------------------


async def test_terminate_child_stops_the_child_and_forgets_it(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child(log, "a"))
    await dynsup.terminate_child(sup, pid)
    assert not otp.is_alive(pid)
    assert log[-1] == ("terminate", ("a",), otp.SHUTDOWN)
    await settle()
    assert await dynsup.which_children(sup) == []


async def test_terminate_child_of_an_unknown_pid_raises_not_found(otp_node):
    sup = await dynsup.start_link()
    stranger = otp.spawn(trio.sleep_forever)
    with pytest.raises(NotFound) as info:
        await dynsup.terminate_child(sup, stranger)
    assert info.value.child_id == stranger


async def test_terminate_child_uses_the_childs_shutdown(otp_node, autojump_clock):
    sup = await dynsup.start_link()
    pid = await dynsup.start_child(sup, child([], {"delay": 60}, shutdown=2.0))
    start = trio.current_time()
    ref = otp.monitor(pid)
    await dynsup.terminate_child(sup, pid)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason is otp.KILLED
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_stop_shuts_every_child_down_and_runs_their_terminate(otp_node):
    log: list[Any] = []
    sup = await dynsup.start_link()
    children = [await dynsup.start_child(sup, child(log, t)) for t in "abc"]
    await dynsup.stop(sup)
    assert not any(otp.is_alive(p) for p in children)
    assert sorted(e[1] for e in log if e[0] == "terminate") == [("a",), ("b",), ("c",)]


async def test_shutdown_waits_for_each_child_at_most_its_own_time(otp_node, autojump_clock):
    log: list[Any] = []
    sup = await dynsup.start_link()
    await dynsup.start_child(sup, child(log, "slow", {"delay": 60}, shutdown=3.0))
    await dynsup.start_child(sup, child(log, "quick", {"delay": 1}, shutdown=10.0))
    await dynsup.start_child(sup, child(log, "brutal", {"delay": 1}, shutdown="brutal_kill"))
    start = trio.current_time()
    await otp.supervisor.stop(sup)
    assert trio.current_time() - start == pytest.approx(3.0)  # together, not one by one
    assert ("terminate", ("brutal", {"delay": 1}), otp.SHUTDOWN) not in log


async def test_terminates_children_with_expired_integer_shutdown(otp_node, autojump_clock):
    """dynamic_supervisor_test "terminates children with expired integer shutdown": each
    child that outlasts its own shutdown time is killed then, not when the supervisor gets
    round to it."""
    log: list[Any] = []
    sup = await dynsup.start_link()
    slow = await dynsup.start_child(sup, child(log, "slow", {"delay": 60}, shutdown=5.0))
    slower = await dynsup.start_child(sup, child(log, "slower", {"delay": 60}, shutdown=2.0))
    assert slow is not None and slower is not None
    refs = {otp.monitor(slow): "slow", otp.monitor(slower): "slower"}
    start = trio.current_time()
    await otp.supervisor.stop(sup)
    ended = []
    for _ in range(2):
        down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref in refs)
        ended.append((refs[down.ref], down.reason))
    assert ended == [("slower", otp.KILLED), ("slow", otp.KILLED)]
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_no_child_outlives_a_killed_dynamic_supervisor(otp_node):
    otp.trap_exits(True)
    sup = await dynsup.start_link()
    children = [await dynsup.start_child(sup, child([], t)) for t in "abc"]
    ref = otp.monitor(sup)
    otp.exit(sup, otp.KILL)
    await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert not any(otp.is_alive(p) for p in children)


async def test_a_dynamic_supervisor_works_under_a_static_one(otp_node):
    async def start_dyn() -> otp.Pid | None:
        return await dynsup.start_link(name="pool")

    top = await supervisor.start_link([ChildSpec("pool", start_dyn, type="supervisor")])
    pid = await dynsup.start_child("pool", child([], "a"))
    await supervisor.terminate_child(top, "pool")
    assert not otp.is_alive(pid)
    await supervisor.restart_child(top, "pool")
    assert await dynsup.which_children("pool") == []  # its children were run-time ones


async def test_the_run_time_api_accepts_a_registered_name(otp_node):
    await dynsup.start_link(name="dyn")
    pid = await dynsup.start_child("dyn", child([], "a"))
    assert await dynsup.which_children("dyn") == [(None, pid, "worker")]
    await dynsup.terminate_child("dyn", pid)
    assert (await dynsup.count_children("dyn"))["active"] == 0


# -- a property: live children after any sequence of starts, crashes and terminations -----------

ops = st.lists(
    st.tuples(st.sampled_from(["start", "crash", "normal", "terminate"]),
              st.sampled_from(["permanent", "transient", "temporary"]),
              st.integers(0, 5)),
    max_size=15,
)


@given(ops, st.one_of(st.none(), st.integers(0, 4)))
def test_children_follow_their_restart_types_under_any_sequence(sequence, max_children):
    async def scenario() -> None:
        sup = await dynsup.start_link(max_children=max_children, intensity=1000)
        expected: dict[otp.Pid, str] = {}  # live child -> restart type
        for op, restart, index in sequence:
            live = await pids(sup)
            assert sorted(live) == sorted(expected)
            if op == "start":
                if max_children is not None and len(live) >= max_children:
                    with pytest.raises(dynsup.MaxChildren):
                        await dynsup.start_child(sup, child([], restart=restart))
                else:
                    pid = await dynsup.start_child(sup, child([], restart=restart))
                    assert pid is not None
                    expected[pid] = restart
                continue
            if not live:
                continue
            pid = live[index % len(live)]
            kind = expected.pop(pid)
            if op == "terminate":
                await dynsup.terminate_child(sup, pid)
                continue
            await end(pid, otp.KILL if op == "crash" else otp.NORMAL)
            restarted = kind == "permanent" or (kind == "transient" and op == "crash")
            now = await pids(sup)
            new = [p for p in now if p not in expected]
            assert len(new) == (1 if restarted else 0)
            if new:
                expected[new[0]] = kind
        assert (await dynsup.count_children(sup))["active"] == len(expected)

    with NodeDriver() as driver:
        driver.run(scenario)
