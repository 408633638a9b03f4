"""otp.process_info: what a process is and does, read at once, None once it has ended."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server, registry, supervisor
from otp.observer import ProcessInfo

from .core_helpers import settle, sleep_forever


async def end(pid: otp.Pid, reason: Any = otp.KILL) -> Any:
    """Send ``pid`` an exit signal and return the reason it ended with, once it has."""
    ref = otp.monitor(pid)
    otp.exit(pid, reason)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    return down.reason


class Idle(otp.GenServer):
    """Answers every call with None."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return None


class Blocked(otp.GenServer):
    """A call with a ``trio.Event`` makes it wait for the event inside handle_call."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if isinstance(request, trio.Event):
            await request.wait()
        return None

    async def handle_cast(self, msg: Any) -> Any:
        return None


class Tree(otp.Supervisor):
    async def init(self) -> supervisor.Spec:
        return supervisor.Spec([Idle.child_spec(id="idle")])


# -- alive or not ---------------------------------------------------------------------------


async def test_a_live_process_has_an_info_with_its_pid(otp_node):
    pid = otp.spawn(sleep_forever)
    info = otp.process_info(pid)
    assert isinstance(info, ProcessInfo)
    assert info.pid == pid


async def test_a_process_that_has_ended_has_no_info(otp_node):
    pid = otp.spawn(sleep_forever)
    await end(pid)
    assert otp.process_info(pid) is None


async def test_something_else_than_a_pid_is_a_type_error(otp_node):
    with pytest.raises(TypeError):
        otp.process_info("a name")  # type: ignore[arg-type]


def test_a_process_that_has_ended_is_freed_at_once_not_by_the_cycle_collector():
    """Its state keeps its trio task for process_info while it runs, and lets go of it
    when it ends: no reference cycle keeps it for the gc."""
    from otp._process import _Process

    async def noop() -> None:
        return None

    async def main() -> int:
        for _ in range(20):
            otp.spawn_monitor(noop)
        for _ in range(20):
            await otp.receive()
        return sum(1 for obj in gc.get_objects() if type(obj) is _Process)

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        assert otp.run(main) == 1  # main itself
    finally:
        if enabled:
            gc.enable()


# -- name -----------------------------------------------------------------------------------


async def test_name_is_the_local_name(otp_node):
    pid = await gen_server.start_link(Idle, name="idle")
    assert otp.process_info(pid).name == "idle"


async def test_name_is_the_via_name_the_server_was_started_with(otp_node):
    await registry.start_link(keys="unique", name="reg")
    via = registry.via("reg", "key")
    pid = await gen_server.start_link(Idle, name=via)
    assert otp.process_info(pid).name == via


async def test_name_is_none_without_a_name_and_once_unregistered(otp_node):
    pid = otp.spawn(sleep_forever)
    assert otp.process_info(pid).name is None
    otp.register("p", pid)
    otp.unregister("p")
    assert otp.process_info(pid).name is None


# -- status ---------------------------------------------------------------------------------


async def test_a_process_waiting_in_receive_is_waiting(otp_node):
    pid = otp.spawn(otp.receive)
    await settle()
    assert otp.process_info(pid).status == "waiting"


async def test_a_process_waiting_for_a_reply_is_waiting(otp_node):
    server = await gen_server.start_link(Blocked)
    event = trio.Event()
    caller = otp.spawn(gen_server.call, server, event)
    await settle()
    assert otp.process_info(caller).status == "waiting"
    assert otp.process_info(server).status == "waiting"  # in handle_call, on the event
    event.set()


async def test_a_process_spawned_and_not_yet_run_is_running(otp_node):
    pid = otp.spawn(sleep_forever)
    assert otp.process_info(pid).status == "running"


async def test_the_calling_process_is_running(otp_node):
    async def report(parent: otp.Pid) -> None:
        otp.send(parent, otp.process_info(otp.self()).status)

    otp.spawn(report, otp.self())
    assert await otp.receive() == "running"


def test_a_nodes_main_process_has_a_status_too():
    async def main() -> tuple[str, str]:
        me = otp.self()

        async def look(parent: otp.Pid) -> None:
            otp.send(parent, otp.process_info(parent).status)

        otp.spawn(look, me)
        seen_from_outside = await otp.receive()
        return otp.process_info(me).status, seen_from_outside

    assert otp.run(main) == ("running", "waiting")


async def test_a_process_unwinding_after_an_exit_signal_is_exiting(otp_node):
    release = trio.Event()

    async def slow_to_end() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await release.wait()

    pid = otp.spawn(slow_to_end)
    ref = otp.monitor(pid)
    await settle()
    otp.exit(pid, "stop")
    await settle()
    assert otp.process_info(pid).status == "exiting"
    release.set()
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    assert down.reason == "stop"
    assert otp.process_info(pid) is None


# -- mailbox, links, monitors ---------------------------------------------------------------


async def test_message_queue_len_counts_the_messages_not_yet_taken(otp_node):
    pid = otp.spawn(sleep_forever)
    for n in range(3):
        otp.send(pid, n)
    assert otp.process_info(pid).message_queue_len == 3


async def test_a_servers_queue_counts_its_waiting_calls_and_casts(otp_node):
    server = await gen_server.start_link(Blocked)
    event = trio.Event()
    otp.spawn(gen_server.call, server, event)
    await settle()  # handle_call now waits on the event
    gen_server.cast(server, "a")
    otp.spawn(gen_server.call, server, "b")
    await settle()
    assert otp.process_info(server).message_queue_len == 2
    event.set()


async def test_links_lists_the_linked_pids_in_pid_order(otp_node):
    me = otp.self()
    first = otp.spawn(sleep_forever)
    second = otp.spawn(sleep_forever)
    otp.link(second)
    otp.link(first)
    assert otp.process_info(me).links == (first, second)
    assert otp.process_info(first).links == (me,)


async def test_monitors_and_monitored_by_list_one_pid_per_monitor_in_order(otp_node):
    me = otp.self()
    first = otp.spawn(sleep_forever)
    second = otp.spawn(sleep_forever)
    otp.monitor(second)
    otp.monitor(first)
    otp.monitor(second)
    assert otp.process_info(me).monitors == (second, first, second)
    assert otp.process_info(second).monitored_by == (me, me)
    assert otp.process_info(first).monitored_by == (me,)


async def test_a_caller_waiting_for_a_reply_is_not_listed_as_monitoring(otp_node):
    server = await gen_server.start_link(Blocked)
    event = trio.Event()
    otp.spawn(gen_server.call, server, event)
    await settle()
    assert otp.process_info(server).monitored_by == ()
    event.set()


async def test_trap_exits_tells_whether_the_process_traps_exits(otp_node):
    me = otp.self()
    otp.trap_exits(True)
    assert otp.process_info(me).trap_exits is True
    otp.trap_exits(False)
    assert otp.process_info(me).trap_exits is False


# -- parent and behaviour -------------------------------------------------------------------


async def test_parent_is_the_spawner(otp_node):
    pid = otp.spawn(sleep_forever)
    assert otp.process_info(pid).parent == otp.self()


async def test_a_supervised_childs_parent_is_its_supervisor(otp_node):
    sup = await supervisor.start_link([Idle.child_spec(id="idle")])
    [(_, child, _)] = await supervisor.which_children(sup)
    assert otp.process_info(child).parent == sup


async def test_the_main_process_has_no_parent_and_no_behaviour(otp_node):
    info = otp.process_info(otp.self())
    assert info.parent is None
    assert info.behaviour is None


async def test_the_behaviour_of_a_plain_process_is_its_function(otp_node):
    pid = otp.spawn(sleep_forever)
    assert otp.process_info(pid).behaviour is sleep_forever


async def test_the_behaviour_of_a_gen_server_is_its_class(otp_node):
    pid = await gen_server.start_link(Idle)
    assert otp.process_info(pid).behaviour is Idle


async def test_the_behaviour_of_a_class_form_supervisor_is_its_class(otp_node):
    sup = await supervisor.start_link(Tree)
    assert otp.process_info(sup).behaviour is Tree


async def test_the_behaviour_of_a_list_form_supervisor_is_a_gen_server_class(otp_node):
    sup = await supervisor.start_link([])
    behaviour = otp.process_info(sup).behaviour
    assert isinstance(behaviour, type) and issubclass(behaviour, otp.GenServer)


# -- against a model ------------------------------------------------------------------------

ops_st = st.lists(
    st.tuples(
        st.sampled_from(["link", "unlink", "monitor", "demonitor", "send", "kill"]),
        st.integers(0, 3),
    ),
    max_size=30,
)


@given(ops=ops_st)
async def test_links_monitors_and_queues_follow_a_model(ops):
    """Random links, monitors, messages and kills from the main process to four idle
    processes: each info says what the model says."""
    async with otp.node():
        me = otp.self()
        otp.trap_exits(True)  # a killed link is a message, not the end of main
        pids = [otp.spawn(sleep_forever) for _ in range(4)]
        linked: set[int] = set()
        refs: dict[int, list[Any]] = {i: [] for i in range(4)}
        queued = [0] * 4
        alive = [True] * 4
        for op, i in ops:
            pid = pids[i]
            if op == "link":
                otp.link(pid)
                if alive[i]:
                    linked.add(i)
            elif op == "unlink":
                otp.unlink(pid)
                linked.discard(i)
            elif op == "monitor":
                ref = otp.monitor(pid)
                if alive[i]:
                    refs[i].append(ref)
            elif op == "demonitor" and refs[i]:
                otp.demonitor(refs[i].pop(0), flush=True)
            elif op == "send":
                otp.send(pid, "msg")
                queued[i] += alive[i]
            elif op == "kill":
                await end(pid)
                alive[i] = False
                linked.discard(i)
                refs[i] = []
        mine = otp.process_info(me)
        assert mine.links == tuple(pids[i] for i in sorted(linked))
        assert sorted(mine.monitors) == sorted(pids[i] for i in range(4) for _ in refs[i])
        for i, pid in enumerate(pids):
            info = otp.process_info(pid)
            if not alive[i]:
                assert info is None
                continue
            assert info.links == ((me,) if i in linked else ())
            assert info.monitored_by == (me,) * len(refs[i])
            assert info.message_queue_len == queued[i]
            assert info.status in ("running", "waiting")
