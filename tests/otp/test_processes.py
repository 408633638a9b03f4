"""Processes: spawn, self, is_alive, send and receive (selective, with timeouts)."""

from __future__ import annotations

import pytest
import trio

import otp

from .core_helpers import drain, settle, sleep_forever, wait_down

# -- spawn -----------------------------------------------------------------------------------


async def test_spawn_returns_a_pid_before_the_process_runs():
    ran = []

    async def worker():
        ran.append(True)

    async with otp.node():
        pid = otp.spawn(worker)
        assert isinstance(pid, otp.Pid)
        assert ran == []
        await settle()
        assert ran == [True]


async def test_spawn_passes_the_arguments():
    got = []

    async def worker(a, b, *, c=None):
        got.append((a, b, c))

    async with otp.node():
        pid = otp.spawn(worker, 1, "two")
        await wait_down(pid)
    assert got == [(1, "two", None)]


async def test_each_spawn_gives_a_distinct_pid():
    async with otp.node():
        pids = {otp.spawn(sleep_forever) for _ in range(10)}
        assert len(pids) == 10


async def test_self_is_the_pid_of_the_running_process():
    seen = []

    async def worker():
        seen.append(otp.self())

    async with otp.node():
        pid = otp.spawn(worker)
        await wait_down(pid)
        assert seen == [pid]


async def test_self_of_the_node_block_is_the_main_pid():
    async with otp.node() as the_node:
        assert otp.self() == the_node.main


def test_self_outside_a_process_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        otp.self()


async def test_self_in_a_trio_task_outside_a_node_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        otp.self()


async def test_spawn_outside_a_node_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        otp.spawn(sleep_forever)


async def test_is_alive_is_true_while_the_process_runs():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        await settle()
        assert otp.is_alive(pid)


async def test_is_alive_is_false_once_the_process_ended():
    async def worker():
        pass

    async with otp.node():
        pid = otp.spawn(worker)
        await wait_down(pid)
        assert not otp.is_alive(pid)


async def test_a_returning_process_exits_normal():
    async def worker():
        return 42

    async with otp.node():
        assert await wait_down(otp.spawn(worker)) is otp.NORMAL


async def test_a_raising_process_exits_with_the_very_exception_raised():
    error = ValueError("boom")

    async def worker():
        raise error

    async with otp.node():
        assert await wait_down(otp.spawn(worker)) is error


async def test_raising_process_exited_ends_the_process_with_its_reason():
    async def worker():
        raise otp.ProcessExited("custom")

    async with otp.node():
        assert await wait_down(otp.spawn(worker)) == "custom"


async def test_spawn_monitor_returns_the_pid_and_a_ref_that_reports_the_exit():
    async def worker():
        raise otp.ProcessExited("done")

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        assert isinstance(ref, otp.Ref)
        assert await otp.receive() == otp.Down(ref, pid, "done")


async def test_spawn_link_links_the_new_process_to_the_caller():
    async def worker():
        raise otp.ProcessExited("linked")

    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(worker)
        assert await otp.receive() == otp.Exit(pid, "linked")


async def test_spawn_does_not_link():
    async def worker():
        raise otp.ProcessExited("unlinked")

    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn(worker)
        await wait_down(pid)
        assert await drain() == []


async def test_killing_a_process_cancels_its_task():
    cleaned = []

    async def worker():
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append(True)

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        await settle()
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)
        assert cleaned == [True]


async def test_a_process_killed_before_it_ever_ran_never_runs():
    ran = []

    async def worker():
        ran.append(True)

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)
    assert ran == []


# -- send ------------------------------------------------------------------------------------


async def test_send_to_a_pid_puts_the_message_in_its_mailbox():
    async with otp.node():
        otp.send(otp.self(), "hello")
        assert await otp.receive() == "hello"


async def test_send_returns_at_once_without_a_receiver():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        for i in range(10_000):
            otp.send(pid, i)


async def test_send_to_a_dead_pid_is_dropped_silently():
    async def worker():
        pass

    async with otp.node():
        pid = otp.spawn(worker)
        await wait_down(pid)
        otp.send(pid, "into the void")


async def test_send_to_a_registered_name_delivers():
    async with otp.node():
        otp.register("me", otp.self())
        otp.send("me", "by name")
        assert await otp.receive() == "by name"


async def test_send_to_an_unregistered_name_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc) as info:
            otp.send("nobody", "msg")
        assert info.value.name == "nobody"


async def test_messages_from_one_sender_arrive_in_order():
    async def sender(dest):
        for i in range(100):
            otp.send(dest, i)
            if i % 7 == 0:
                await trio.lowlevel.checkpoint()

    async with otp.node():
        otp.spawn(sender, otp.self())
        got = [await otp.receive() for _ in range(100)]
        assert got == list(range(100))


# -- receive ---------------------------------------------------------------------------------


async def test_receive_returns_the_oldest_message():
    async with otp.node():
        for msg in ("a", "b", "c"):
            otp.send(otp.self(), msg)
        assert await otp.receive() == "a"
        assert await otp.receive() == "b"


async def test_receive_waits_for_a_message(autojump_clock):
    async def later(dest):
        await trio.sleep(1)
        otp.send(dest, "late")

    async with otp.node():
        otp.spawn(later, otp.self())
        assert await otp.receive() == "late"


async def test_receive_outside_a_process_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        await otp.receive(timeout=0)


async def test_selective_receive_returns_the_oldest_matching_message():
    async with otp.node():
        for msg in (1, "x", 2, "y"):
            otp.send(otp.self(), msg)
        assert await otp.receive(match=lambda m: isinstance(m, str)) == "x"


async def test_selective_receive_leaves_the_other_messages_in_order():
    async with otp.node():
        for msg in (1, "x", 2, "y", 3):
            otp.send(otp.self(), msg)
        await otp.receive(match=lambda m: m == "y")
        assert await drain() == [1, "x", 2, 3]


async def test_selective_receive_waits_for_a_matching_message_that_arrives_later(
    autojump_clock,
):
    async def sender(dest):
        for msg in ("a", "b", "wanted", "c"):
            await trio.sleep(0.1)
            otp.send(dest, msg)

    async with otp.node():
        otp.spawn(sender, otp.self())
        assert await otp.receive(match=lambda m: m == "wanted") == "wanted"
        assert await otp.receive() == "a"
        assert await otp.receive() == "b"
        assert await otp.receive() == "c"


async def test_receive_timeout_raises_receive_timeout_after_the_timeout(autojump_clock):
    async with otp.node():
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=2.5)
        assert trio.current_time() - start == pytest.approx(2.5)


def test_receive_timeout_is_a_timeout_error():
    assert issubclass(otp.ReceiveTimeout, TimeoutError)
    assert issubclass(otp.CallTimeout, TimeoutError)


async def test_receive_with_timeout_returns_a_message_that_arrives_in_time(autojump_clock):
    async def later(dest):
        await trio.sleep(1)
        otp.send(dest, "in time")

    async with otp.node():
        otp.spawn(later, otp.self())
        assert await otp.receive(timeout=2) == "in time"


async def test_selective_receive_timeout_keeps_the_unmatched_messages(autojump_clock):
    async with otp.node():
        otp.send(otp.self(), "other")
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=1, match=lambda m: m == "never")
        assert await drain() == ["other"]


async def test_receive_timeout_zero_returns_a_message_already_there(autojump_clock):
    async with otp.node():
        otp.send(otp.self(), "ready")
        start = trio.current_time()
        assert await otp.receive(timeout=0) == "ready"
        assert trio.current_time() == start


async def test_receive_timeout_zero_raises_at_once_on_an_empty_mailbox(autojump_clock):
    async with otp.node():
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0)
        assert trio.current_time() == start


async def test_receive_timeout_zero_with_match_raises_at_once_when_nothing_matches(
    autojump_clock,
):
    async with otp.node():
        otp.send(otp.self(), "no")
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0, match=lambda m: m == "yes")
        assert trio.current_time() == start
        assert await drain() == ["no"]


async def test_receive_timeout_zero_with_match_takes_a_match_already_there():
    async with otp.node():
        otp.send(otp.self(), "no")
        otp.send(otp.self(), "yes")
        assert await otp.receive(timeout=0, match=lambda m: m == "yes") == "yes"
        assert await drain() == ["no"]


async def test_a_process_killed_while_receiving_ends_with_killed():
    async def worker():
        await otp.receive()

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        await settle()
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)


async def test_a_process_that_accepted_an_exit_signal_takes_no_more_messages():
    taken = []

    async def worker():
        otp.send(otp.self(), "queued")
        otp.exit(otp.self(), "leaving")
        taken.append(await otp.receive())

    async with otp.node():
        assert await wait_down(otp.spawn(worker)) == "leaving"
    assert taken == []


async def test_a_process_woken_in_receive_after_a_kill_does_not_take_the_message():
    taken = []

    async def worker():
        taken.append(await otp.receive())

    async def sender_then_killer(target):
        otp.send(target, "wake up")  # reschedules the target ...
        otp.exit(target, otp.KILL)  # ... which is killed before it runs

    async with otp.node():
        pid, ref = otp.spawn_monitor(worker)
        await settle()
        otp.spawn(sender_then_killer, pid)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)
    assert taken == []


async def test_a_shorter_timeout_after_a_longer_one_still_fires_on_time(autojump_clock):
    async with otp.node():
        me = otp.self()
        otp.send(me, "first")
        assert await otp.receive(timeout=100) == "first"  # arms a deadline 100 s away
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=1)
        assert trio.current_time() - start == pytest.approx(1)


async def test_messages_that_do_not_match_do_not_extend_a_timeout(autojump_clock):
    async with otp.node():
        me = otp.self()

        async def chatter():
            for _ in range(20):
                await trio.sleep(0.1)
                otp.send(me, "noise")

        otp.spawn(chatter)
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=1, match=lambda m: m == "wanted")
        assert trio.current_time() - start == pytest.approx(1, abs=0.11)


async def test_each_timed_receive_counts_from_its_own_start(autojump_clock):
    async with otp.node():
        me = otp.self()
        for _ in range(5):
            otp.send(me, "tick")
            assert await otp.receive(timeout=1) == "tick"
            await trio.sleep(0.9)
        start = trio.current_time()
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=1)
        assert trio.current_time() - start == pytest.approx(1)
