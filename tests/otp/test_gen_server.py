"""gen_server: starting, the return protocol, call/cast/reply, timeouts, stop, terminate."""

from __future__ import annotations

import logging

import pytest
import trio

import otp
from otp import gen_server

from .core_helpers import drain, settle, sleep_forever, wait_down


class Recorder(otp.GenServer):
    """Records every callback in ``self.log`` (a list given to init) and answers calls.

    A call ``("do", value)`` returns ``value`` as is, so a test can have ``handle_call``
    return any directive; casts and infos ``("do", value)`` likewise.
    """

    async def init(self, log, result=None):
        self.log = log
        log.append(("init",))
        return result

    async def handle_call(self, request, from_):
        self.log.append(("call", request))
        if isinstance(request, tuple) and request[0] == "do":
            return request[1]
        if request == "state":
            return list(self.log)
        if request == "from":
            return from_
        return ("reply", request)

    async def handle_cast(self, msg):
        self.log.append(("cast", msg))
        if isinstance(msg, tuple) and msg[0] == "do":
            return msg[1]
        return None

    async def handle_info(self, msg):
        self.log.append(("info", msg))
        if isinstance(msg, tuple) and msg[0] == "do":
            return msg[1]
        return None

    async def handle_continue(self, arg):
        self.log.append(("continue", arg))
        if isinstance(arg, tuple) and arg[0] == "do":
            return arg[1]
        return None

    async def terminate(self, reason):
        self.log.append(("terminate", reason))


class Bare(otp.GenServer):
    """No callbacks at all: the defaults."""


async def start_recorder(result=None, **kwargs):
    log = []
    pid = await gen_server.start_link(Recorder, log, result, **kwargs)
    return pid, log


# -- start / start_link ----------------------------------------------------------------------


async def test_start_link_returns_the_pid_once_init_has_returned(autojump_clock):
    class SlowInit(otp.GenServer):
        async def init(self, log):
            await trio.sleep(1)
            log.append("init done")

    log = []
    async with otp.node():
        pid = await gen_server.start_link(SlowInit, log)
        assert isinstance(pid, otp.Pid)
        assert log == ["init done"]
        assert otp.is_alive(pid)


async def test_start_link_passes_the_arguments_to_init():
    class Args(otp.GenServer):
        async def init(self, *args):
            self.args = args

        async def handle_call(self, request, from_):
            return self.args

    async with otp.node():
        pid = await gen_server.start_link(Args, 1, "b", None)
        assert await gen_server.call(pid, "args") == (1, "b", None)


async def test_start_link_links_the_server_to_the_caller():
    async with otp.node():
        otp.trap_exits(True)
        pid, _ = await start_recorder()
        otp.exit(pid, otp.KILL)
        assert await otp.receive() == otp.Exit(pid, otp.KILLED)


async def test_start_does_not_link():
    async with otp.node():
        otp.trap_exits(True)
        pid = await gen_server.start(Recorder, [])
        otp.exit(pid, otp.KILL)
        await wait_down(pid)
        assert await drain() == []


async def test_start_with_a_name_registers_it():
    async with otp.node():
        pid = await gen_server.start(Recorder, [], name="rec")
        assert otp.whereis("rec") == pid
        assert await gen_server.call("rec", "x") == ("reply", "x")


async def test_start_with_a_taken_name_raises_already_started_with_the_holder():
    async with otp.node():
        holder, _ = await start_recorder(name="only")
        with pytest.raises(otp.AlreadyStarted) as info:
            await gen_server.start_link(Recorder, [], name="only")
        assert info.value.pid == holder


async def test_start_with_a_taken_name_does_not_run_init():
    async with otp.node():
        await start_recorder(name="only")
        log = []
        with pytest.raises(otp.AlreadyStarted):
            await gen_server.start(Recorder, log, name="only")
        assert log == []


async def test_start_link_with_a_taken_name_sends_the_caller_no_signal():
    async with otp.node():
        await start_recorder(name="only")
        otp.trap_exits(True)
        with pytest.raises(otp.AlreadyStarted):
            await gen_server.start_link(Recorder, [], name="only")
        await settle()
        assert await drain() == []


async def test_start_with_something_that_is_not_a_gen_server_raises_type_error():
    async with otp.node():
        with pytest.raises(TypeError):
            await gen_server.start(object)  # type: ignore[arg-type]


async def test_start_with_a_name_of_the_wrong_type_raises_type_error_in_the_caller():
    async with otp.node():
        with pytest.raises(TypeError):
            await gen_server.start_link(Recorder, [], name=42)
        assert otp.is_alive(otp.self())


async def test_init_raising_makes_start_raise_init_error_with_the_exception():
    error = ValueError("bad config")

    class Failing(otp.GenServer):
        async def init(self):
            raise error

    async with otp.node():
        with pytest.raises(otp.InitError) as info:
            await gen_server.start_link(Failing)
        assert info.value.reason is error


async def test_init_returning_stop_makes_start_raise_init_error_with_the_reason():
    async with otp.node():
        with pytest.raises(otp.InitError) as info:
            await start_recorder(otp.Stop("no thanks"))
        assert info.value.reason == "no thanks"


async def test_init_returning_something_unexpected_makes_start_raise_init_error():
    async with otp.node():
        with pytest.raises(otp.InitError) as info:
            await start_recorder("not a directive")
        assert isinstance(info.value.reason, TypeError)


async def test_a_constructor_that_raises_makes_start_raise_init_error():
    error = RuntimeError("constructor")

    class BadInit(otp.GenServer):
        def __init__(self):
            raise error

    async with otp.node():
        with pytest.raises(otp.InitError) as info:
            await gen_server.start_link(BadInit)
        assert info.value.reason is error
        assert otp.is_alive(otp.self())


class _Bailout(otp.GenServer):
    """gen_server_SUITE's ``{crash, exit, bailout}`` init: ``exit(bailout)``."""

    async def init(self) -> None:
        raise otp.ProcessExited("bailout")


@pytest.mark.parametrize("start", [gen_server.start, gen_server.start_link])
async def test_loop_start_fail_init_exiting_makes_start_raise_init_error_with_the_reason(start):
    """gen_server_SUITE:loop_start_fail, ``{crash, exit, bailout}`` gives
    ``{error, bailout}``: the reason, not the exception that carried it (five times in a
    row, as upstream)."""
    async with otp.node():
        for _ in range(5):
            with pytest.raises(otp.InitError) as info:
                await start(_Bailout)
            assert info.value.reason == "bailout"


async def test_a_failed_inits_reason_is_the_reason_a_monitor_sees():
    class Watched(otp.GenServer):
        async def init(self, watcher):
            otp.send(watcher, otp.self())
            await otp.receive()  # the watcher monitors us now
            raise otp.ProcessExited(("bailout", 1))

    async def watcher(parent):
        pid = await otp.receive()
        ref = otp.monitor(pid)
        otp.send(pid, "watching")
        down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
        otp.send(parent, ("down", down.reason))

    async with otp.node():
        watcher_pid = otp.spawn(watcher, otp.self())
        with pytest.raises(otp.InitError) as info:
            await gen_server.start(Watched, watcher_pid)
        assert await otp.receive(timeout=1) == ("down", info.value.reason)
        assert info.value.reason == ("bailout", 1)


async def test_a_constructor_exiting_with_a_reason_makes_start_raise_init_error_with_it():
    class BadInit(otp.GenServer):
        def __init__(self):
            raise otp.ProcessExited("bailout")

    async with otp.node():
        with pytest.raises(otp.InitError) as info:
            await gen_server.start_link(BadInit)
        assert info.value.reason == "bailout"


async def test_a_child_whose_init_exits_fails_to_start_with_that_reason(caplog):
    """A supervisor's StartChildError reports the reason too (OTP ``{error, bailout}``)."""
    caplog.set_level(logging.CRITICAL)
    async with otp.node():
        sup = await otp.supervisor.start_link([], strategy="one_for_one")
        with pytest.raises(otp.supervisor.StartChildError) as info:
            await otp.supervisor.start_child(sup, _Bailout.child_spec(id="b"))
        assert (info.value.child_id, info.value.reason) == ("b", "bailout")


async def test_a_dynamic_child_whose_init_exits_fails_to_start_with_that_reason(caplog):
    caplog.set_level(logging.CRITICAL)
    async with otp.node():
        sup = await otp.dynamic_supervisor.start_link()
        with pytest.raises(otp.supervisor.StartChildError) as info:
            await otp.dynamic_supervisor.start_child(sup, _Bailout.child_spec())
        assert (info.value.child_id, info.value.reason) == (None, "bailout")


@pytest.mark.parametrize("result", [otp.Stop("stopped"), "raise"])
async def test_a_failed_init_does_not_run_terminate(result):
    class Failing(Recorder):
        async def init(self, log, result):
            await super().init(log)
            if result == "raise":
                raise RuntimeError("init")
            return result

    log = []
    async with otp.node():
        with pytest.raises(otp.InitError):
            await gen_server.start_link(Failing, log, result)
        await settle()
    assert log == [("init",)]


@pytest.mark.parametrize("result", [otp.Stop("stopped"), "raise"])
async def test_a_failed_init_frees_the_name_before_start_raises(result):
    class Failing(otp.GenServer):
        async def init(self):
            if result == "raise":
                raise RuntimeError("init")
            return result

    async with otp.node():
        with pytest.raises(otp.InitError):
            await gen_server.start_link(Failing, name="retry")
        assert otp.whereis("retry") is None
        pid, _ = await start_recorder(name="retry")
        assert otp.whereis("retry") == pid


@pytest.mark.parametrize("result", [otp.Stop("stopped"), "raise"])
async def test_a_failed_init_sends_the_caller_no_exit_signal(result):
    class Failing(otp.GenServer):
        async def init(self):
            if result == "raise":
                raise RuntimeError("init")
            return result

    async with otp.node():
        otp.trap_exits(True)
        with pytest.raises(otp.InitError):
            await gen_server.start_link(Failing)
        await settle()
        assert await drain() == []


async def test_a_failed_init_does_not_kill_a_non_trapping_caller():
    class Failing(otp.GenServer):
        async def init(self):
            raise RuntimeError("init")

    async def starter(parent):
        try:
            await gen_server.start_link(Failing)
        except otp.InitError:
            await settle()
            otp.send(parent, "survived")

    async with otp.node():
        otp.spawn(starter, otp.self())
        assert await otp.receive() == "survived"


async def test_init_returning_ignore_makes_start_return_none():
    async with otp.node():
        pid, _log = await start_recorder(otp.Ignore())
        assert pid is None


async def test_init_returning_ignore_leaves_the_name_free():
    async with otp.node():
        await start_recorder(otp.Ignore(), name="ignored")
        assert otp.whereis("ignored") is None


async def test_init_returning_ignore_sends_the_caller_no_signal():
    async with otp.node():
        otp.trap_exits(True)
        await start_recorder(otp.Ignore())
        await settle()
        assert await drain() == []


async def test_init_that_takes_too_long_raises_init_error_timeout(autojump_clock):
    class Slow(otp.GenServer):
        async def init(self):
            await trio.sleep(10)

    async with otp.node():
        otp.trap_exits(True)
        with pytest.raises(otp.InitError) as info:
            await gen_server.start_link(Slow, timeout=1)
        assert info.value.reason is otp.TIMEOUT
        await settle()
        assert await drain() == []


async def test_init_that_takes_too_long_is_killed_with_its_own_links_signalled(autojump_clock):
    class Slow(otp.GenServer):
        async def init(self, parent):
            otp.send(parent, otp.spawn_link(sleep_forever))
            await trio.sleep(10)

    async with otp.node():
        with pytest.raises(otp.InitError):
            await gen_server.start_link(Slow, otp.self(), timeout=1)
        helper = await otp.receive()
        await settle()
        assert not otp.is_alive(helper)


async def test_init_that_takes_too_long_leaves_the_name_free(autojump_clock):
    class Slow(otp.GenServer):
        async def init(self):
            with trio.CancelScope(shield=True):  # dies only at its next checkpoint
                await trio.sleep(0.5)
            await trio.sleep(10)

    async with otp.node():
        with pytest.raises(otp.InitError):
            await gen_server.start_link(Slow, name="slow", timeout=0.1)
        pid, _ = await start_recorder(name="slow")
        assert otp.whereis("slow") == pid


# -- call ------------------------------------------------------------------------------------


async def test_call_returns_the_value_handle_call_returns():
    async with otp.node():
        pid, _ = await start_recorder()
        assert await gen_server.call(pid, "ping") == ("reply", "ping")


async def test_call_by_registered_name():
    async with otp.node():
        await start_recorder(name="server")
        assert await gen_server.call("server", 1) == ("reply", 1)


async def test_handle_call_gets_a_from_for_the_caller():
    async with otp.node():
        pid, _ = await start_recorder()
        assert isinstance(await gen_server.call(pid, "from"), gen_server.From)


async def test_call_to_an_unknown_name_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc):
            await gen_server.call("nobody", "x")


async def test_call_to_a_dead_pid_raises_noproc():
    async with otp.node():
        pid, _ = await start_recorder()
        await gen_server.stop(pid)
        with pytest.raises(otp.NoProc):
            await gen_server.call(pid, "x")


async def test_call_times_out_after_five_seconds_by_default(autojump_clock):
    async with otp.node():
        pid, _ = await start_recorder()
        start = trio.current_time()
        with pytest.raises(otp.CallTimeout) as info:
            await gen_server.call(pid, ("do", otp.NoReply()))
        assert trio.current_time() - start == pytest.approx(5.0)
        assert info.value.timeout == 5.0


async def test_call_times_out_after_the_timeout_given(autojump_clock):
    async with otp.node():
        pid, _ = await start_recorder()
        start = trio.current_time()
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, ("do", otp.NoReply()), timeout=0.5)
        assert trio.current_time() - start == pytest.approx(0.5)


async def test_a_shorter_call_timeout_started_later_fires_first(autojump_clock):
    times = {}

    async def caller(pid, timeout):
        start = trio.current_time()
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, ("do", otp.NoReply()), timeout=timeout)
        times[timeout] = trio.current_time() - start

    async with otp.node():
        pid, _ = await start_recorder()
        otp.spawn(caller, pid, 10)
        await trio.sleep(0.5)
        otp.spawn(caller, pid, 1)
        await trio.sleep(20)
    assert times == {10: pytest.approx(10), 1: pytest.approx(1)}


async def test_many_answered_calls_do_not_delay_a_pending_timeout(autojump_clock):
    async def pending(pid, parent):
        start = trio.current_time()
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, ("do", otp.NoReply()), timeout=2)
        otp.send(parent, trio.current_time() - start)

    async with otp.node():
        pid, _ = await start_recorder()
        otp.spawn(pending, pid, otp.self())
        await trio.lowlevel.checkpoint()
        for i in range(3000):
            await gen_server.call(pid, i, timeout=100 + i)
        assert await otp.receive() == pytest.approx(2)


async def test_call_with_no_timeout_waits_as_long_as_it_takes(autojump_clock):
    class Slow(otp.GenServer):
        async def handle_call(self, request, from_):
            await trio.sleep(1000)
            return "finally"

    async with otp.node():
        pid = await gen_server.start_link(Slow)
        assert await gen_server.call(pid, "x", timeout=None) == "finally"


async def test_a_server_that_times_out_a_call_keeps_running(autojump_clock):
    async with otp.node():
        pid, _ = await start_recorder()
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, ("do", otp.NoReply()), timeout=1)
        assert await gen_server.call(pid, "still there") == ("reply", "still there")


async def test_call_raises_server_exited_when_the_server_dies_before_replying():
    async with otp.node():
        pid, _ = await start_recorder()
        otp.unlink(pid)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(pid, ("do", otp.Stop("leaving")))
        assert info.value.reason == "leaving"


async def test_call_raises_server_exited_when_the_server_is_killed_while_waiting():
    async def killer(pid):
        await settle()
        otp.exit(pid, otp.KILL)

    async with otp.node():
        pid, _ = await start_recorder()
        otp.unlink(pid)
        otp.spawn(killer, pid)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(pid, ("do", otp.NoReply()))
        assert info.value.reason is otp.KILLED


async def test_a_call_leaves_nothing_in_the_callers_mailbox():
    async with otp.node():
        pid, _ = await start_recorder()
        otp.unlink(pid)
        await gen_server.call(pid, "x")
        with pytest.raises(otp.ServerExited):
            await gen_server.call(pid, ("do", otp.Stop("gone")))
        await settle()
        assert await drain() == []


async def test_a_late_reply_never_reaches_a_later_receive(autojump_clock):
    class Late(otp.GenServer):
        async def handle_call(self, request, from_):
            await trio.sleep(2)
            return ("late", request)

    async with otp.node():
        pid = await gen_server.start_link(Late)
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, 1, timeout=1)
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=5)


async def test_a_late_reply_is_not_taken_for_the_answer_to_a_later_call(autojump_clock):
    class Late(otp.GenServer):
        async def handle_call(self, request, from_):
            if request == "slow":
                await trio.sleep(2)
            return request

    async with otp.node():
        pid = await gen_server.start_link(Late)
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, "slow", timeout=1)
        assert await gen_server.call(pid, "fast") == "fast"


async def test_a_server_cannot_call_itself():
    class Selfish(otp.GenServer):
        async def handle_call(self, request, from_):
            try:
                await gen_server.call(otp.self(), "again")
            except ValueError:
                return "refused"
            return "called"

    async with otp.node():
        pid = await gen_server.start_link(Selfish)
        assert await gen_server.call(pid, "x") == "refused"


async def test_call_without_handle_call_crashes_the_server():
    async with otp.node():
        pid = await gen_server.start(Bare)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(pid, "anything")
        assert isinstance(info.value.reason, RuntimeError)
        assert not otp.is_alive(pid)


async def test_handle_call_returning_a_directive_it_cannot_use_crashes_the_server():
    async with otp.node():
        pid = await gen_server.start(Recorder, [])
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(pid, ("do", otp.Ignore()))
        assert isinstance(info.value.reason, TypeError)


# -- reply later -----------------------------------------------------------------------------


class Deferred(otp.GenServer):
    """Keeps the From of a call and replies when told to, itself or through a helper."""

    async def init(self):
        self.pending = None

    async def handle_call(self, request, from_):
        if request == "wait":
            self.pending = from_
            return otp.NoReply()
        if request == "delegate":
            otp.spawn(self.helper, from_)
            return otp.NoReply()
        return request

    async def handle_cast(self, msg):
        gen_server.reply(self.pending, msg)

    @staticmethod
    async def helper(from_):
        gen_server.reply(from_, "from the helper")


async def test_noreply_then_reply_from_the_server_answers_the_caller():
    async def release(pid):
        await settle()
        gen_server.cast(pid, "released")

    async with otp.node():
        pid = await gen_server.start_link(Deferred)
        otp.spawn(release, pid)
        assert await gen_server.call(pid, "wait") == "released"


async def test_noreply_then_reply_from_another_process_answers_the_caller():
    async with otp.node():
        pid = await gen_server.start_link(Deferred)
        assert await gen_server.call(pid, "delegate") == "from the helper"


async def test_the_server_serves_other_calls_while_a_reply_is_pending():
    async def caller(pid, parent):
        otp.send(parent, await gen_server.call(pid, "wait"))

    async with otp.node():
        pid = await gen_server.start_link(Deferred)
        otp.spawn(caller, pid, otp.self())
        await settle()
        assert await gen_server.call(pid, "other") == "other"
        gen_server.cast(pid, "done")
        assert await otp.receive() == "done"


async def test_a_second_reply_to_the_same_call_is_ignored():
    class Twice(otp.GenServer):
        async def handle_call(self, request, from_):
            gen_server.reply(from_, "first")
            gen_server.reply(from_, "second")
            return otp.NoReply()

    async with otp.node():
        pid = await gen_server.start_link(Twice)
        assert await gen_server.call(pid, "x") == "first"
        await settle()
        assert await drain() == []


async def test_reply_to_something_that_is_not_a_from_raises_type_error():
    async with otp.node():
        with pytest.raises(TypeError):
            gen_server.reply(otp.self(), "x")  # type: ignore[arg-type]


async def test_reply_after_the_caller_gave_up_does_nothing(autojump_clock):
    async with otp.node():
        pid = await gen_server.start_link(Deferred)
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(pid, "wait", timeout=1)
        gen_server.cast(pid, "too late")
        assert await gen_server.call(pid, "alive") == "alive"
        assert await drain() == []


# -- Reply, continue, idle timeouts ----------------------------------------------------------


async def test_reply_with_continue_replies_then_continues_before_the_next_message():
    async with otp.node():
        pid, log = await start_recorder()
        assert await gen_server.call(pid, ("do", otp.Reply("v", continue_="next"))) == "v"
        gen_server.cast(pid, "after")
        await gen_server.call(pid, "sync")
        assert log[1:4] == [
            ("call", ("do", otp.Reply("v", continue_="next"))),
            ("continue", "next"),
            ("cast", "after"),
        ]


async def test_reply_with_timeout_delivers_timeout_after_the_idle_time(autojump_clock):
    async with otp.node():
        pid, log = await start_recorder()
        start = trio.current_time()
        assert await gen_server.call(pid, ("do", otp.Reply("v", timeout=3))) == "v"
        await trio.sleep(2.9)
        assert ("info", otp.TIMEOUT) not in log
        await trio.sleep(0.2)
        assert log[-1] == ("info", otp.TIMEOUT)
        assert trio.current_time() - start == pytest.approx(3.1)


async def test_init_returning_continue_runs_handle_continue_before_any_message():
    async with otp.node():
        pid, log = await start_recorder(otp.Continue("setup"))
        await gen_server.call(pid, "first")
        assert log[:3] == [("init",), ("continue", "setup"), ("call", "first")]


async def test_init_returning_noreply_with_continue_runs_handle_continue_first():
    async with otp.node():
        pid, log = await start_recorder(otp.NoReply(continue_="setup"))
        gen_server.cast(pid, "first")
        await gen_server.call(pid, "sync")
        assert log[:3] == [("init",), ("continue", "setup"), ("cast", "first")]


async def test_a_cast_returning_noreply_with_continue_continues_before_the_next_message():
    async with otp.node():
        pid, log = await start_recorder()
        gen_server.cast(pid, ("do", otp.NoReply(continue_="more")))
        gen_server.cast(pid, "next")
        await gen_server.call(pid, "sync")
        assert log[1:4] == [
            ("cast", ("do", otp.NoReply(continue_="more"))),
            ("continue", "more"),
            ("cast", "next"),
        ]


async def test_handle_continue_can_chain_another_continue():
    async with otp.node():
        pid, log = await start_recorder(otp.Continue(("do", otp.NoReply(continue_="two"))))
        await gen_server.call(pid, "sync")
        assert log[1:4] == [
            ("continue", ("do", otp.NoReply(continue_="two"))),
            ("continue", "two"),
            ("call", "sync"),
        ]


async def test_continue_without_handle_continue_crashes_the_server():
    class NoContinue(otp.GenServer):
        async def init(self):
            return otp.Continue("x")

    async with otp.node():
        otp.trap_exits(True)
        pid = await gen_server.start_link(NoContinue)
        msg = await otp.receive()
        assert msg.pid == pid
        assert isinstance(msg.reason, RuntimeError)


async def test_init_timeout_delivers_timeout_to_handle_info(autojump_clock):
    async with otp.node():
        _pid, log = await start_recorder(otp.NoReply(timeout=2))
        await trio.sleep(1.9)
        assert log == [("init",)]
        await trio.sleep(0.2)
        assert log == [("init",), ("info", otp.TIMEOUT)]


async def test_a_message_before_the_idle_timeout_cancels_it(autojump_clock):
    async with otp.node():
        pid, log = await start_recorder(otp.NoReply(timeout=2))
        await trio.sleep(1)
        gen_server.cast(pid, "in time")
        await trio.sleep(10)
        assert log == [("init",), ("cast", "in time")]


async def test_the_idle_timeout_fires_once(autojump_clock):
    async with otp.node():
        _pid, log = await start_recorder(otp.NoReply(timeout=1))
        await trio.sleep(10)
        assert log.count(("info", otp.TIMEOUT)) == 1


async def test_a_cast_returning_noreply_with_timeout_delivers_timeout(autojump_clock):
    async with otp.node():
        pid, log = await start_recorder()
        gen_server.cast(pid, ("do", otp.NoReply(timeout=1)))
        await trio.sleep(1.5)
        assert log[-1] == ("info", otp.TIMEOUT)


async def test_handle_info_can_renew_the_idle_timeout(autojump_clock):
    async with otp.node():
        pid, log = await start_recorder()
        otp.send(pid, ("do", otp.NoReply(timeout=1)))
        await trio.sleep(1.5)
        assert log[1:] == [("info", ("do", otp.NoReply(timeout=1))), ("info", otp.TIMEOUT)]


# -- cast and info ---------------------------------------------------------------------------


async def test_cast_reaches_handle_cast():
    async with otp.node():
        pid, log = await start_recorder()
        gen_server.cast(pid, "hello")
        await gen_server.call(pid, "sync")
        assert ("cast", "hello") in log


async def test_casts_from_one_sender_are_handled_in_order():
    async with otp.node():
        pid, log = await start_recorder()
        for i in range(50):
            gen_server.cast(pid, i)
        await gen_server.call(pid, "sync")
        assert [entry[1] for entry in log if entry[0] == "cast"] == list(range(50))


async def test_cast_returns_none_at_once():
    async with otp.node():
        pid, _ = await start_recorder()
        assert gen_server.cast(pid, "x") is None


async def test_cast_to_an_unknown_name_does_not_fail():
    async with otp.node():
        gen_server.cast("nobody", "x")


async def test_cast_to_a_dead_pid_does_not_fail():
    async with otp.node():
        pid, _ = await start_recorder()
        await gen_server.stop(pid)
        gen_server.cast(pid, "x")


async def test_cast_without_handle_cast_crashes_the_server():
    async with otp.node():
        pid = await gen_server.start(Bare)
        ref = otp.monitor(pid)
        gen_server.cast(pid, "anything")
        down = await otp.receive()
        assert down.ref is ref
        assert isinstance(down.reason, RuntimeError)


async def test_other_messages_reach_handle_info():
    async with otp.node():
        pid, log = await start_recorder()
        otp.send(pid, "plain")
        await gen_server.call(pid, "sync")
        assert ("info", "plain") in log


async def test_an_unexpected_message_to_the_default_handle_info_is_logged_and_ignored(caplog):
    async with otp.node():
        pid = await gen_server.start_link(Bare)
        with caplog.at_level(logging.WARNING):
            otp.send(pid, "surprise")
            await settle()
        assert otp.is_alive(pid)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "surprise" in messages[0]
    assert repr(pid) in messages[0]


async def test_a_trapped_exit_from_another_process_reaches_handle_info():
    class Trapper(Recorder):
        async def init(self, log, result=None):
            otp.trap_exits(True)
            self.child = otp.spawn_link(sleep_forever)
            return await super().init(log, result)

        async def handle_call(self, request, from_):
            if request == "child":
                return self.child
            return await super().handle_call(request, from_)

    async with otp.node():
        log = []
        pid = await gen_server.start_link(Trapper, log)
        child = await gen_server.call(pid, "child")
        otp.exit(child, otp.KILL)
        await settle()
        assert otp.is_alive(pid)
        assert log[-1] == ("info", otp.Exit(child, otp.KILLED))


# -- Stop and terminate ----------------------------------------------------------------------


async def test_stop_with_a_reply_answers_the_caller_then_the_server_exits():
    async with otp.node():
        pid, log = await start_recorder()
        otp.unlink(pid)
        ref = otp.monitor(pid)
        assert await gen_server.call(pid, ("do", otp.Stop("done", reply="bye"))) == "bye"
        assert await otp.receive() == otp.Down(ref, pid, "done")
        assert log[-1] == ("terminate", "done")


async def test_stop_without_a_reply_runs_terminate_and_the_caller_sees_server_exited():
    async with otp.node():
        pid, log = await start_recorder()
        otp.unlink(pid)
        with pytest.raises(otp.ServerExited):
            await gen_server.call(pid, ("do", otp.Stop(otp.NORMAL)))
        assert log[-1] == ("terminate", otp.NORMAL)


async def test_stop_with_a_reply_runs_terminate_before_the_reply():
    class Ordered(otp.GenServer):
        async def init(self, log):
            self.log = log

        async def handle_call(self, request, from_):
            return otp.Stop(otp.NORMAL, reply="r")

        async def terminate(self, reason):
            self.log.append("terminate")

    log = []
    async with otp.node():
        pid = await gen_server.start_link(Ordered, log)
        assert await gen_server.call(pid, "stop") == "r"
        log.append("replied")
    assert log == ["terminate", "replied"]


async def test_stop_with_a_reply_replies_even_when_terminate_raises():
    class BadTerminate(otp.GenServer):
        async def handle_call(self, request, from_):
            return otp.Stop(otp.NORMAL, reply="still answered")

        async def terminate(self, reason):
            raise RuntimeError("terminate failed")

    async with otp.node():
        pid = await gen_server.start(BadTerminate)
        ref = otp.monitor(pid)
        assert await gen_server.call(pid, "stop") == "still answered"
        down = await otp.receive()
        assert down.ref is ref
        assert isinstance(down.reason, RuntimeError)


async def test_stop_with_a_reply_does_not_reply_when_killed_during_terminate():
    class SlowTerminate(otp.GenServer):
        async def handle_call(self, request, from_):
            return otp.Stop(otp.NORMAL, reply="never")

        async def terminate(self, reason):
            await trio.sleep_forever()

    async def killer(pid):
        await settle()
        otp.exit(pid, otp.KILL)

    async with otp.node():
        pid = await gen_server.start(SlowTerminate)
        otp.spawn(killer, pid)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(pid, "stop")
        assert info.value.reason is otp.KILLED


@pytest.mark.parametrize("callback", ["cast", "info", "continue"])
async def test_stop_from_any_callback_runs_terminate_and_exits_with_the_reason(callback):
    async with otp.node():
        pid, log = await start_recorder()
        ref = otp.monitor(pid)
        directive = ("do", otp.Stop(otp.shutdown("from " + callback)))
        if callback == "cast":
            gen_server.cast(pid, directive)
        elif callback == "info":
            otp.send(pid, directive)
        else:
            gen_server.cast(pid, ("do", otp.NoReply(continue_=directive)))
        assert await otp.receive() == otp.Down(ref, pid, otp.shutdown("from " + callback))
        assert log[-1] == ("terminate", otp.shutdown("from " + callback))


async def test_a_raising_callback_runs_terminate_with_the_exception():
    error = LookupError("bug")

    class Buggy(Recorder):
        async def handle_cast(self, msg):
            raise error

    async with otp.node():
        log = []
        pid = await gen_server.start(Buggy, log)
        gen_server.cast(pid, "x")
        assert await wait_down(pid) is error
        assert log[-1] == ("terminate", error)


async def test_a_parent_exit_signal_runs_terminate_when_the_server_traps_exits():
    class Trapper(Recorder):
        async def init(self, log, result=None):
            otp.trap_exits(True)
            return await super().init(log, result)

    log = []

    async def parent():
        await gen_server.start_link(Trapper, log)
        raise otp.ProcessExited("parent gone")

    async with otp.node():
        await wait_down(otp.spawn(parent))
        await settle()
    assert log[-1] == ("terminate", "parent gone")


async def test_a_parent_exit_ends_the_server_with_the_parents_reason():
    class Trapper(otp.GenServer):
        async def init(self, parent):
            otp.trap_exits(True)
            otp.send(parent, otp.self())

    async def parent(main):
        await gen_server.start_link(Trapper, main)
        raise otp.ProcessExited("parent gone")

    async with otp.node():
        otp.spawn(parent, otp.self())
        server = await otp.receive()
        assert await wait_down(server) == "parent gone"


async def test_an_exit_signal_does_not_run_terminate_when_the_server_does_not_trap():
    async with otp.node():
        pid, log = await start_recorder()
        otp.unlink(pid)
        otp.exit(pid, "external")
        await settle()
        assert not otp.is_alive(pid)
    assert ("terminate", "external") not in log
    assert log == [("init",)]


async def test_kill_does_not_run_terminate_even_when_trapping():
    class Trapper(Recorder):
        async def init(self, log, result=None):
            otp.trap_exits(True)
            return await super().init(log, result)

    log = []
    async with otp.node():
        pid = await gen_server.start(Trapper, log)
        otp.exit(pid, otp.KILL)
        await settle()
    assert log == [("init",)]


async def test_a_server_that_accepted_a_kill_handles_no_more_messages():
    class SelfKiller(otp.GenServer):
        async def init(self, log):
            self.log = log

        async def handle_cast(self, msg):
            self.log.append(msg)
            if msg == 3:
                otp.exit(otp.self(), otp.KILL)

    log = []
    async with otp.node():
        pid = await gen_server.start(SelfKiller, log)
        ref = otp.monitor(pid)
        for i in range(50):
            gen_server.cast(pid, i)
        assert await otp.receive() == otp.Down(ref, pid, otp.KILLED)
    assert log == [0, 1, 2, 3]


async def test_a_crashing_server_is_logged_with_its_name(caplog):
    class Buggy(otp.GenServer):
        async def handle_cast(self, msg):
            raise ValueError("oops")

    with caplog.at_level(logging.ERROR):
        async with otp.node():
            pid = await gen_server.start(Buggy, name="buggy")
            gen_server.cast(pid, "x")
            await wait_down(pid)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "buggy" in errors[0]
    assert repr(pid) in errors[0]
    assert "oops" in errors[0]


# -- stop ------------------------------------------------------------------------------------


async def test_stop_returns_once_the_server_is_gone():
    async with otp.node():
        pid, _log = await start_recorder(name="stoppable")
        await gen_server.stop(pid)
        assert not otp.is_alive(pid)
        assert otp.whereis("stoppable") is None


async def test_stop_runs_terminate_with_the_reason():
    async with otp.node():
        pid, log = await start_recorder()
        await gen_server.stop(pid, otp.SHUTDOWN)
        assert log[-1] == ("terminate", otp.SHUTDOWN)


async def test_stop_by_name():
    async with otp.node():
        pid, _log = await start_recorder(name="by-name")
        await gen_server.stop("by-name")
        assert not otp.is_alive(pid)


async def test_stop_with_the_default_reason_sends_the_linked_caller_a_normal_exit():
    async with otp.node():
        otp.trap_exits(True)
        pid, _ = await start_recorder()
        await gen_server.stop(pid)
        assert await otp.receive(timeout=0) == otp.Exit(pid, otp.NORMAL)


async def test_stop_of_a_missing_server_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc):
            await gen_server.stop("missing")


async def test_stop_that_times_out_raises_call_timeout_and_the_server_keeps_running(
    autojump_clock,
):
    class Busy(Recorder):
        async def handle_cast(self, msg):
            await trio.sleep(10)
            return await super().handle_cast(msg)

    async with otp.node():
        log = []
        pid = await gen_server.start_link(Busy, log)
        gen_server.cast(pid, "busy")
        with pytest.raises(otp.CallTimeout):
            await gen_server.stop(pid, timeout=1)
        await trio.sleep(20)
        assert otp.is_alive(pid)
        assert await gen_server.call(pid, "after") == ("reply", "after")
        assert not any(entry[0] == "terminate" for entry in log)


async def test_stop_raises_server_exited_when_terminate_fails():
    class BadTerminate(otp.GenServer):
        async def terminate(self, reason):
            raise RuntimeError("terminate failed")

    async with otp.node():
        pid = await gen_server.start(BadTerminate)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.stop(pid)
        assert isinstance(info.value.reason, RuntimeError)


class _Front(otp.GenServer):
    """Forwards every call to the server named in the request."""

    async def handle_call(self, request, from_):
        target, inner = request
        gen_server.forward(target, inner, from_)
        return otp.NoReply()


class _Back(otp.GenServer):
    async def handle_call(self, request, from_):
        if request == "crash":
            raise RuntimeError("back crashed")
        if request == "hang":
            return otp.NoReply()
        return ("back", request)


async def test_a_forwarded_call_is_answered_by_the_server_it_was_forwarded_to():
    async with otp.node():
        front = await gen_server.start_link(_Front)
        back = await gen_server.start_link(_Back)
        assert await gen_server.call(front, (back, "hi")) == ("back", "hi")


async def test_a_forwarded_call_fails_when_the_new_holder_exits():
    async with otp.node():
        otp.trap_exits(True)
        front = await gen_server.start_link(_Front)
        back = await gen_server.start_link(_Back)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.call(front, (back, "crash"))
        assert isinstance(info.value.reason, RuntimeError)
        assert otp.is_alive(front)


async def test_a_call_forwarded_to_a_missing_server_raises_noproc():
    async with otp.node():
        front = await gen_server.start_link(_Front)
        with pytest.raises(otp.NoProc):
            await gen_server.call(front, ("nobody", "hi"))


async def test_a_forwarded_call_keeps_its_timeout(autojump_clock):
    async with otp.node():
        front = await gen_server.start_link(_Front)
        back = await gen_server.start_link(_Back)
        with pytest.raises(otp.CallTimeout):
            await gen_server.call(front, (back, "hang"), timeout=1.0)
        assert otp.is_alive(back) and otp.is_alive(front)
