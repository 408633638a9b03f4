"""Links, exit signals, trap_exits and monitors, as otp-semantics.md describes them."""

from __future__ import annotations

import trio

import otp

from .core_helpers import drain, settle, sleep_forever, wait_down


async def exits_with(reason):
    raise otp.ProcessExited(reason)


async def link_then_sleep(pid):
    otp.link(pid)
    await trio.sleep_forever()


async def crash_after_linking(pid, reason):
    otp.link(pid)
    await trio.lowlevel.checkpoint()
    raise otp.ProcessExited(reason)


# -- links -----------------------------------------------------------------------------------


async def test_a_linked_crash_kills_a_non_trapping_peer_with_the_same_reason():
    error = RuntimeError("crash")

    async def crasher():
        await trio.lowlevel.checkpoint()
        raise error

    async def peer():
        otp.spawn_link(crasher)
        await trio.sleep_forever()

    async with otp.node():
        pid = otp.spawn(peer)
        assert await wait_down(pid) is error


async def test_links_are_bidirectional():
    async with otp.node():
        sleeper = otp.spawn(sleep_forever)
        otp.spawn(crash_after_linking, sleeper, "bye")
        assert await wait_down(sleeper) == "bye"


async def test_a_normal_exit_of_a_linked_process_is_ignored_by_a_non_trapping_peer():
    async def peer():
        otp.spawn_link(exits_with, otp.NORMAL)
        await trio.sleep_forever()

    async with otp.node():
        pid = otp.spawn(peer)
        await settle()
        assert otp.is_alive(pid)


async def test_a_trapping_process_gets_a_normal_exit_as_an_exit_message():
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(exits_with, otp.NORMAL)
        assert await otp.receive() == otp.Exit(pid, otp.NORMAL)


async def test_a_trapping_process_gets_a_crash_as_an_exit_message_and_survives():
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(exits_with, "crash")
        assert await otp.receive() == otp.Exit(pid, "crash")
        assert otp.is_alive(otp.self())


async def test_trap_exits_returns_the_previous_setting():
    async with otp.node():
        assert otp.trap_exits(True) is False
        assert otp.trap_exits(False) is True
        assert otp.trap_exits(False) is False


async def test_linking_twice_gives_one_link():
    async def worker(parent):
        otp.link(parent)
        otp.link(parent)
        await trio.lowlevel.checkpoint()
        raise otp.ProcessExited("once")

    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn(worker, otp.self())
        await wait_down(pid)
        assert await drain() == [otp.Exit(pid, "once")]


async def test_linking_to_oneself_does_nothing():
    async with otp.node():
        otp.link(otp.self())
        otp.trap_exits(True)
        assert await drain() == []


async def test_unlink_removes_the_link_in_both_directions():
    async def worker(parent):
        otp.link(parent)
        otp.unlink(parent)
        await trio.lowlevel.checkpoint()
        raise otp.ProcessExited("not seen")

    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn(worker, otp.self())
        await wait_down(pid)
        assert await drain() == []


async def test_unlink_from_the_other_side_removes_the_link():
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(sleep_forever)
        otp.unlink(pid)
        otp.exit(pid, "gone")
        await wait_down(pid)
        assert await drain() == []


async def test_unlink_of_a_process_not_linked_does_nothing():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.unlink(pid)
        await settle()
        assert otp.is_alive(pid)


async def test_unlink_of_a_dead_process_does_nothing():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        await wait_down(pid)
        otp.unlink(pid)


async def test_linking_to_a_dead_pid_kills_a_non_trapping_caller_with_noproc():
    async def worker(dead):
        otp.link(dead)
        await trio.sleep_forever()

    async with otp.node():
        dead = otp.spawn(exits_with, otp.NORMAL)
        await wait_down(dead)
        assert await wait_down(otp.spawn(worker, dead)) is otp.NOPROC


async def test_linking_to_a_dead_pid_gives_a_trapping_caller_an_exit_with_noproc():
    async with otp.node():
        dead = otp.spawn(exits_with, otp.NORMAL)
        await wait_down(dead)
        otp.trap_exits(True)
        otp.link(dead)
        assert await otp.receive() == otp.Exit(dead, otp.NOPROC)


# -- exit ------------------------------------------------------------------------------------


async def test_exit_normal_from_another_process_is_ignored_when_not_trapping():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.exit(pid, otp.NORMAL)
        await settle()
        assert otp.is_alive(pid)


async def test_exit_normal_reaches_a_trapping_process_as_an_exit_message():
    async def trapper(parent):
        otp.trap_exits(True)
        otp.send(parent, "ready")
        otp.send(parent, await otp.receive())

    async with otp.node():
        pid = otp.spawn(trapper, otp.self())
        assert await otp.receive() == "ready"
        otp.exit(pid, otp.NORMAL)
        assert await otp.receive() == otp.Exit(otp.self(), otp.NORMAL)


async def test_exit_with_another_reason_ends_a_non_trapping_process_with_it():
    async with otp.node():
        pid, ref = otp.spawn_monitor(sleep_forever)
        otp.exit(pid, "stop now")
        assert await otp.receive() == otp.Down(ref, pid, "stop now")


async def test_exit_with_another_reason_reaches_a_trapping_process_as_a_message():
    async def trapper(parent):
        otp.trap_exits(True)
        otp.send(parent, "ready")
        otp.send(parent, await otp.receive())

    async with otp.node():
        pid = otp.spawn(trapper, otp.self())
        assert await otp.receive() == "ready"
        otp.exit(pid, "please")
        assert await otp.receive() == otp.Exit(otp.self(), "please")


async def test_exit_kill_ends_a_trapping_process_with_killed():
    async def trapper(parent):
        otp.trap_exits(True)
        otp.send(parent, "ready")
        await trio.sleep_forever()

    async with otp.node():
        pid, ref = otp.spawn_monitor(trapper, otp.self())
        assert await otp.receive() == "ready"
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)


async def test_killed_travels_on_through_links_to_a_trapping_peer():
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(sleep_forever)
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Exit(pid, otp.KILLED)


async def test_killed_kills_a_non_trapping_linked_peer():
    async def peer(parent):
        victim = otp.spawn_link(sleep_forever)
        otp.send(parent, victim)
        await trio.sleep_forever()

    async with otp.node():
        pid, ref = otp.spawn_monitor(peer, otp.self())
        victim = await otp.receive()
        otp.exit(victim, otp.KILL)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)


async def test_an_exception_reason_reaches_links_as_the_same_object():
    error = KeyError("k")

    async def crasher():
        raise error

    async with otp.node():
        otp.trap_exits(True)
        otp.spawn_link(crasher)
        msg = await otp.receive()
        assert msg.reason is error


async def test_exit_to_oneself_with_normal_ends_a_non_trapping_process():
    async def worker():
        otp.exit(otp.self(), otp.NORMAL)
        await trio.sleep_forever()

    async with otp.node():
        assert await wait_down(otp.spawn(worker)) is otp.NORMAL


async def test_exit_to_oneself_reaches_a_trapping_process_as_an_exit_from_itself():
    async with otp.node():
        otp.trap_exits(True)
        otp.exit(otp.self(), "note to self")
        assert await otp.receive() == otp.Exit(otp.self(), "note to self")


async def test_exit_kill_to_oneself_kills_even_when_trapping():
    async def worker():
        otp.trap_exits(True)
        otp.exit(otp.self(), otp.KILL)
        await trio.sleep_forever()

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)


async def test_exit_on_a_dead_pid_does_nothing():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        await wait_down(pid)
        otp.exit(pid, "late")
        otp.exit(pid, otp.KILL)


async def test_a_process_ended_by_an_exit_signal_is_no_longer_alive_at_once():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.exit(pid, "bye")
        assert not otp.is_alive(pid)


# -- monitors --------------------------------------------------------------------------------


async def test_monitor_delivers_down_with_ref_pid_and_reason():
    async with otp.node():
        pid = otp.spawn(exits_with, "why")
        ref = otp.monitor(pid)
        assert await otp.receive() == otp.Down(ref, pid, "why")


async def test_monitor_reports_a_normal_exit():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        ref = otp.monitor(pid)
        assert await otp.receive() == otp.Down(ref, pid, otp.NORMAL)


async def test_monitor_of_a_dead_pid_delivers_down_with_noproc_at_once():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        await wait_down(pid)
        ref = otp.monitor(pid)
        assert await otp.receive(timeout=0) == otp.Down(ref, pid, otp.NOPROC)


async def test_monitors_stack_with_distinct_refs():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        ref1 = otp.monitor(pid)
        ref2 = otp.monitor(pid)
        assert ref1 != ref2
        otp.exit(pid, "twice")
        assert await otp.receive() == otp.Down(ref1, pid, "twice")
        assert await otp.receive() == otp.Down(ref2, pid, "twice")


async def test_a_monitor_is_one_way():
    async def watcher(target):
        otp.monitor(target)
        await trio.lowlevel.checkpoint()
        raise otp.ProcessExited("watcher crash")

    async with otp.node():
        target = otp.spawn(sleep_forever)
        await wait_down(otp.spawn(watcher, target))
        assert otp.is_alive(target)


async def test_a_monitor_does_not_kill_the_monitoring_process():
    async with otp.node():
        pid = otp.spawn(exits_with, "crash")
        ref = otp.monitor(pid)
        assert (await otp.receive()).ref is ref
        assert otp.is_alive(otp.self())


async def test_demonitor_stops_the_down():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        ref = otp.monitor(pid)
        otp.demonitor(ref)
        otp.exit(pid, "quiet")
        await wait_down(pid)
        assert await drain() == []


async def test_demonitor_returns_whether_the_monitor_was_active():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        ref = otp.monitor(pid)
        assert otp.demonitor(ref) is True
        assert otp.demonitor(ref) is False


async def test_demonitor_after_the_down_returns_false():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        ref = otp.monitor(pid)
        await settle()
        assert otp.demonitor(ref) is False


async def test_demonitor_without_flush_keeps_a_down_already_delivered():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        ref = otp.monitor(pid)
        await settle()
        otp.demonitor(ref)
        assert await drain() == [otp.Down(ref, pid, otp.NORMAL)]


async def test_demonitor_with_flush_removes_a_down_already_delivered():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        otp.send(otp.self(), "before")
        ref = otp.monitor(pid)
        await settle()
        otp.send(otp.self(), "after")
        otp.demonitor(ref, flush=True)
        assert await drain() == ["before", "after"]


async def test_demonitor_with_flush_keeps_downs_of_other_monitors():
    async with otp.node():
        pid = otp.spawn(exits_with, otp.NORMAL)
        ref1 = otp.monitor(pid)
        ref2 = otp.monitor(pid)
        await settle()
        otp.demonitor(ref1, flush=True)
        assert await drain() == [otp.Down(ref2, pid, otp.NORMAL)]


async def test_monitor_of_a_name_reports_the_pid_it_resolved_to():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("named", pid)
        ref = otp.monitor("named")
        otp.exit(pid, "end")
        assert await otp.receive() == otp.Down(ref, pid, "end")


async def test_monitor_of_an_unregistered_name_reports_the_name_with_noproc():
    async with otp.node():
        ref = otp.monitor("nobody")
        assert await otp.receive(timeout=0) == otp.Down(ref, "nobody", otp.NOPROC)


# -- names and signals -----------------------------------------------------------------------


async def test_names_are_released_before_link_signals_go_out():
    seen = []

    async def named():
        otp.register("the_name", otp.self())
        await trio.lowlevel.checkpoint()
        raise otp.ProcessExited("restart me")

    async with otp.node():
        otp.trap_exits(True)
        otp.spawn_link(named)
        await otp.receive()
        seen.append(otp.whereis("the_name"))
        otp.register("the_name", otp.spawn(sleep_forever))
    assert seen == [None]


async def test_names_are_released_before_monitor_signals_go_out():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("watched", pid)
        ref = otp.monitor(pid)
        otp.exit(pid, "gone")
        assert await otp.receive() == otp.Down(ref, pid, "gone")
        assert otp.whereis("watched") is None


async def test_a_name_is_released_synchronously_with_the_signals():
    """A trapping peer acting on the Exit at once, with no checkpoint, finds the name free."""
    got = []

    async def watcher(target):
        otp.trap_exits(True)
        otp.link(target)
        msg = await otp.receive()
        got.append((msg.reason, otp.whereis("svc")))

    async with otp.node():
        target = otp.spawn(sleep_forever)
        otp.register("svc", target)
        w = otp.spawn(watcher, target)
        await settle()
        otp.exit(target, "x")
        await wait_down(w)
    assert got == [("x", None)]
