"""Running a node: otp.run and otp.node, ordered shutdown, crash reports, no orphan tasks."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

import otp

from .core_helpers import settle, sleep_forever, wait_down

# -- otp.run ---------------------------------------------------------------------------------


def test_run_returns_the_result_of_main():
    async def main():
        return "result"

    assert otp.run(main) == "result"


def test_run_passes_the_arguments_to_main():
    async def main(a, b):
        return a + b

    assert otp.run(main, 2, 3) == 5


def test_run_reraises_the_exception_main_raised():
    error = ValueError("main failed")

    async def main():
        raise error

    with pytest.raises(ValueError) as info:
        otp.run(main)
    assert info.value is error


def test_run_raises_process_exited_when_main_is_ended_by_another_reason():
    async def main():
        otp.exit(otp.self(), "odd reason")
        await trio.sleep_forever()

    with pytest.raises(otp.ProcessExited) as info:
        otp.run(main)
    assert info.value.reason == "odd reason"


def test_run_raises_process_exited_killed_when_main_is_killed():
    async def main():
        otp.exit(otp.self(), otp.KILL)
        await trio.sleep_forever()

    with pytest.raises(otp.ProcessExited) as info:
        otp.run(main)
    assert info.value.reason is otp.KILLED


def test_run_raises_the_exception_of_a_linked_crash_that_ended_main():
    error = RuntimeError("child crash")

    async def child():
        raise error

    async def main():
        otp.spawn_link(child)
        await trio.sleep_forever()

    with pytest.raises(RuntimeError) as info:
        otp.run(main)
    assert info.value is error


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown("bye")])
def test_run_returns_none_when_main_exits_with_a_normal_reason(reason):
    async def main():
        otp.exit(otp.self(), reason)
        await trio.sleep_forever()

    assert otp.run(main) is None


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown("bye")])
def test_run_returns_none_when_main_raises_process_exited_with_a_normal_reason(reason):
    async def main():
        raise otp.ProcessExited(reason)

    assert otp.run(main) is None


def test_run_raises_process_exited_when_main_raises_it_with_another_reason():
    async def main():
        raise otp.ProcessExited("abnormal")

    with pytest.raises(otp.ProcessExited) as info:
        otp.run(main)
    assert info.value.reason == "abnormal"


def test_run_uses_the_clock_given():
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main():
        await trio.sleep(1000)
        return trio.current_time()

    assert otp.run(main, clock=clock) == pytest.approx(1000)


def test_run_gives_main_the_first_pid_of_a_fresh_node():
    async def main():
        return otp.self()

    assert repr(otp.run(main)) == "<0.0.0>"


# -- otp.node --------------------------------------------------------------------------------


async def test_node_makes_the_current_task_a_process():
    async with otp.node() as the_node:
        assert isinstance(the_node, otp.Node)
        assert otp.is_alive(otp.self())


async def test_node_reraises_an_exception_from_its_block():
    with pytest.raises(KeyError):
        async with otp.node():
            raise KeyError("inside")


async def test_node_raises_process_exited_when_main_is_killed():
    with pytest.raises(otp.ProcessExited) as info:
        async with otp.node():
            otp.exit(otp.self(), otp.KILL)
            await trio.sleep_forever()
    assert info.value.reason is otp.KILLED


async def test_main_is_dead_after_the_node_block():
    async with otp.node():
        main = otp.self()
    assert not otp.is_alive(main)


async def test_two_nodes_can_run_one_after_the_other():
    for _ in range(2):
        async with otp.node():
            otp.send(otp.self(), "x")
            assert await otp.receive() == "x"


# -- ordered shutdown ------------------------------------------------------------------------


async def trapping_recorder(log, label):
    otp.trap_exits(True)
    msg = await otp.receive()
    log.append((label, msg.reason))


async def test_main_children_are_stopped_in_reverse_start_order():
    log = []
    async with otp.node():
        for label in ("first", "second", "third"):
            otp.spawn(trapping_recorder, log, label)
        await settle()
    assert log == [("third", otp.SHUTDOWN), ("second", otp.SHUTDOWN), ("first", otp.SHUTDOWN)]


async def test_each_child_is_gone_before_the_next_is_signalled(autojump_clock):
    log = []

    async def slow_stopper(label):
        otp.trap_exits(True)
        await otp.receive()
        log.append(("stopping", label))
        await trio.sleep(1)
        log.append(("stopped", label))

    async with otp.node():
        otp.spawn(slow_stopper, "a")
        otp.spawn(slow_stopper, "b")
        await settle()
    assert log == [("stopping", "b"), ("stopped", "b"), ("stopping", "a"), ("stopped", "a")]


async def test_a_non_trapping_child_is_stopped_with_shutdown():
    log = []

    async def watcher(target):
        otp.trap_exits(True)  # the node's own SHUTDOWN to it must not beat the DOWN
        otp.monitor(target)
        log.append((await otp.receive()).reason)

    async def helper(target):
        otp.spawn(watcher, target)  # a grandchild of main: stopped after main's children
        await trio.sleep_forever()

    async with otp.node():
        target = otp.spawn(sleep_forever)
        otp.spawn(helper, target)
        await settle()
    assert log == [otp.SHUTDOWN]


async def test_children_are_stopped_before_main_exit_reaches_its_links():
    log = []

    async def outsider(main):
        # not a child of main: started by a child, then linked to main
        otp.trap_exits(True)
        otp.link(main)
        msg = await otp.receive()
        log.append(("outsider", msg.reason))

    async def child(main):
        otp.spawn(outsider, main)
        await trapping_recorder(log, "child")

    async with otp.node():
        otp.spawn(child, otp.self())
        await settle()
    assert log == [("child", otp.SHUTDOWN), ("outsider", otp.NORMAL)]


async def test_a_trapping_gen_server_child_runs_terminate_on_node_shutdown():
    log = []

    class Server(otp.GenServer):
        async def init(self):
            otp.trap_exits(True)

        async def terminate(self, reason):
            log.append(reason)

    async with otp.node():
        await otp.gen_server.start_link(Server)
    assert log == [otp.SHUTDOWN]


async def test_a_non_trapping_gen_server_child_does_not_run_terminate_on_shutdown():
    log = []

    class Server(otp.GenServer):
        async def terminate(self, reason):
            log.append(reason)

    async with otp.node():
        await otp.gen_server.start_link(Server)
    assert log == []


async def test_a_child_that_ignores_shutdown_is_killed_after_five_seconds(autojump_clock):
    log = []

    async def stubborn():
        otp.trap_exits(True)
        try:
            await trio.sleep_forever()
        finally:
            log.append(trio.current_time())

    async with otp.node():
        otp.spawn(stubborn)
        await settle()
        start = trio.current_time()
    assert log == [pytest.approx(start + 5.0)]


async def test_processes_not_started_by_main_are_shut_down_too():
    pids = []

    async def grandchild():
        await trio.sleep_forever()

    async def child():
        pids.append(otp.spawn(grandchild))
        await trio.sleep_forever()

    async with otp.node():
        otp.spawn(child)
        await settle()
    assert len(pids) == 1
    assert not otp.is_alive(pids[0])


async def test_no_task_outlives_the_node():
    async def spawner():
        for _ in range(5):
            otp.spawn(sleep_forever)
        await trio.sleep_forever()

    class Echo(otp.GenServer):
        async def handle_call(self, request, from_):
            return request

    before = all_tasks()
    async with otp.node():
        for _ in range(3):
            otp.spawn(spawner)
        await settle()
        assert len(all_tasks()) == len(before) + 18
        server = await otp.gen_server.start(Echo)
        assert await otp.gen_server.call(server, "x") == "x"  # arms the node's timers
    assert all_tasks() == before


def all_tasks():
    tasks = set()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


async def test_an_exception_from_the_node_block_still_shuts_the_children_down():
    log = []
    with pytest.raises(ZeroDivisionError):
        async with otp.node():
            otp.spawn(trapping_recorder, log, "child")
            await settle()
            1 / 0  # noqa: B018
    assert log == [("child", otp.SHUTDOWN)]


# -- crash reports ---------------------------------------------------------------------------


async def test_a_crash_is_logged_with_pid_name_and_reason(caplog):
    async def crasher():
        otp.register("crashy", otp.self())
        await trio.lowlevel.checkpoint()
        raise ValueError("kaboom")

    with caplog.at_level(logging.ERROR, logger="otp"):
        async with otp.node():
            pid = otp.spawn(crasher)
            await wait_down(pid)
    records = [r for r in caplog.records if r.name == "otp"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert records[0].levelno == logging.ERROR
    assert repr(pid) in text
    assert "crashy" in text
    assert "kaboom" in text
    assert records[0].exc_info is not None


async def test_an_abnormal_non_exception_exit_is_logged(caplog):
    async def quitter():
        raise otp.ProcessExited("bad state")

    with caplog.at_level(logging.ERROR, logger="otp"):
        async with otp.node():
            pid = otp.spawn(quitter)
            await wait_down(pid)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(messages) == 1
    assert repr(pid) in messages[0]
    assert "bad state" in messages[0]


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown("done")])
async def test_a_normal_or_shutdown_exit_is_not_logged(caplog, reason):
    async def ender():
        raise otp.ProcessExited(reason)

    with caplog.at_level(logging.DEBUG, logger="otp"):
        async with otp.node():
            await wait_down(otp.spawn(ender))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_process_that_returns_is_not_logged(caplog):
    async def quick():
        return 1

    with caplog.at_level(logging.DEBUG, logger="otp"):
        async with otp.node():
            await wait_down(otp.spawn(quick))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_process_stopped_by_the_node_shutdown_is_not_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="otp"):
        async with otp.node():
            otp.spawn(sleep_forever)
            await settle()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_main_forgets_children_that_have_ended():
    """White box: a long-running main that spawns many short processes does not leak."""

    async def quick():
        pass

    async with otp.node() as the_node:
        for _ in range(100):
            await wait_down(otp.spawn(quick))
        live = otp.spawn(sleep_forever)
        main = the_node.main._proc
        assert list(main.children) == [live]


async def test_a_trapping_server_not_started_by_main_terminates_promptly_at_node_exit(
        autojump_clock):
    terminated = []

    class Keeper(otp.GenServer):
        async def init(self):
            otp.trap_exits(True)

        async def terminate(self, reason):
            terminated.append((reason, trio.current_time()))

    async def starter():
        await otp.gen_server.start(Keeper)  # unlinked, and its parent ends at once

    start = None
    async with otp.node():
        _pid, ref = otp.spawn_monitor(starter)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        start = trio.current_time()
    assert terminated and terminated[0][0] is otp.SHUTDOWN
    assert terminated[0][1] - start < 1  # not the 5 s grace and a kill
