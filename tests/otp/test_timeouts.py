"""Timeouts: seconds >= 0, or None or "infinity" for no limit, wherever otp takes one.

Anything else raises TypeError or ValueError naming the argument, before anything is sent
(OTP's gen_server_SUITE:stop3: an invalid timeout fails the caller and leaves the server
running). Before, ``stop`` delivered its request and only then failed on the timeout; the
server's exit later rescheduled the failed caller's task and trio killed the whole node
("Should never have been rescheduled!").
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import application, gen_server, supervisor

from .core_helpers import drain, settle

INVALID: list[Any] = ["invalid_timeout", "inf", -1, -0.5, math.nan, True, [1], object()]


class Recorder(otp.GenServer):
    async def init(self, log: list[Any]) -> None:
        self.log = log

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        self.log.append(("call", request))
        if request == "slow":
            await trio.sleep(10)
        return "ok"

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", reason))


# -- gen_server.stop: gen_server_SUITE:stop2 and stop3 ---------------------------------------


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
async def test_stop3_an_invalid_timeout_fails_the_caller_and_the_server_keeps_running(timeout):
    """gen_server_SUITE:stop3: ``{'EXIT', _} = catch gen_server:stop(Pid, other_reason,
    invalid_timeout)``, ``true = is_process_alive(Pid)``, then a plain stop works."""
    async with otp.node():
        log: list[Any] = []
        pid = await gen_server.start(Recorder, log)
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await gen_server.stop(pid, "other_reason", timeout)
        await settle()
        assert otp.is_alive(pid)
        assert log == []  # no terminate: the stop request was never sent
        await gen_server.stop(pid)
        assert not otp.is_alive(pid)


async def test_stop3_the_node_survives_an_invalid_stop_timeout():
    """The node once died when the server, stopped anyway, woke the failed caller."""
    async with otp.node():
        pid = await gen_server.start(Recorder, [])
        with pytest.raises(TypeError):
            await gen_server.stop(pid, otp.NORMAL, timeout=object())
        await settle()
        await gen_server.stop(pid)
        await settle()
        assert await gen_server.call(await gen_server.start(Recorder, []), "after") == "ok"


async def test_stop2_stop_with_timeout_infinity_waits_until_the_server_is_gone():
    """gen_server_SUITE:stop2: ``ok = gen_server:stop(Pid, other_reason, infinity)``."""
    async with otp.node():
        log: list[Any] = []
        pid = await gen_server.start(Recorder, log)
        await gen_server.stop(pid, "other_reason", "infinity")
        assert not otp.is_alive(pid)
        assert log == [("terminate", "other_reason")]


async def test_the_error_names_the_argument():
    async with otp.node():
        pid = await gen_server.start(Recorder, [])
        with pytest.raises(ValueError, match=r"timeout must be a number of seconds >= 0"):
            await gen_server.stop(pid, timeout=-1)


# -- gen_server.call ------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
async def test_call_with_an_invalid_timeout_raises_before_the_request_is_sent(timeout):
    async with otp.node():
        log: list[Any] = []
        pid = await gen_server.start_link(Recorder, log)
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await gen_server.call(pid, "hello", timeout)
        await settle()
        assert log == []
        assert await gen_server.call(pid, "after") == "ok"


async def test_call_with_an_invalid_timeout_leaves_nothing_to_wake_the_caller_later():
    async with otp.node():
        pid = await gen_server.start(Recorder, [])
        with pytest.raises(ValueError):
            await gen_server.call(pid, "hello", timeout="5")  # type: ignore[arg-type]
        otp.exit(pid, otp.KILL)  # the server's exit must wake no one
        await settle()
        assert await drain() == []


async def test_call_with_timeout_infinity_waits_as_long_as_it_takes(autojump_clock):
    async with otp.node():
        pid = await gen_server.start_link(Recorder, [])
        assert await gen_server.call(pid, "slow", "infinity") == "ok"
        assert trio.current_time() >= 10


async def test_call_accepts_an_int_timeout(autojump_clock):
    async with otp.node():
        pid = await gen_server.start_link(Recorder, [])
        with pytest.raises(otp.CallTimeout) as info:
            await gen_server.call(pid, "slow", 1)
        assert info.value.timeout == 1


# -- gen_server.start / start_link --------------------------------------------------------------


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
async def test_start_link_with_an_invalid_timeout_raises_before_the_server_starts(timeout):
    async with otp.node():
        log: list[Any] = []
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await gen_server.start_link(Recorder, log, name="never", timeout=timeout)
        await settle()
        assert otp.whereis("never") is None
        assert len(otp.lowlevel.current_node().processes) == 1  # main only


async def test_start_link_with_timeout_infinity_waits_for_init(autojump_clock):
    class SlowInit(otp.GenServer):
        async def init(self) -> None:
            await trio.sleep(100)

    async with otp.node():
        pid = await gen_server.start_link(SlowInit, timeout="infinity")
        assert otp.is_alive(pid)


# -- receive ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
async def test_receive_with_an_invalid_timeout_raises_and_takes_no_message(timeout):
    async with otp.node():
        otp.send(otp.self(), "kept")
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await otp.receive(timeout=timeout)
        assert await otp.receive(timeout=0) == "kept"


async def test_receive_with_timeout_infinity_waits_for_a_message(autojump_clock):
    async def later(parent: otp.Pid) -> None:
        await trio.sleep(100)
        otp.send(parent, "late")

    async with otp.node():
        otp.spawn(later, otp.self())
        assert await otp.receive(timeout="infinity") == "late"


async def test_receive_with_timeout_zero_still_looks_at_the_mailbox():
    async with otp.node():
        with pytest.raises(otp.ReceiveTimeout):
            await otp.receive(timeout=0)


_SPINNER = """
import trio, otp
from otp import gen_server

class Spinner(otp.GenServer):
    async def init(self, _arg):
        return otp.NoReply(timeout=0)

    async def handle_info(self, msg):
        return otp.NoReply(timeout=0)  # asks for 0 again: it never waits

async def main():
    async with otp.node():
        pid = await gen_server.start(Spinner, None)
        await trio.sleep(0.05)  # the timer must fire although the server never waits
        assert otp.is_alive(pid)
        await gen_server.stop(pid)
        print("ran")

trio.run(main)
"""


def test_a_server_asking_for_timeout_zero_again_and_again_lets_the_node_run():
    """Trio cannot preempt a task as the BEAM preempts a process: an empty
    ``receive(timeout=0)`` is a schedule point now and then, so such a server (a busy
    loop, but a legal one) does not freeze every other process and timer of the node.
    (In a child process: a frozen node cannot fail a test from inside.)"""
    result = subprocess.run([sys.executable, "-c", _SPINNER], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr


# -- NoReply / Reply idle timeouts ----------------------------------------------------------------


def test_noreply_timeout_infinity_means_no_idle_timeout():
    assert otp.NoReply(timeout="infinity").timeout is None
    assert otp.Reply("v", timeout="infinity").timeout is None


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
def test_noreply_with_an_invalid_timeout_raises_where_it_is_built(timeout):
    with pytest.raises((TypeError, ValueError), match="timeout"):
        otp.NoReply(timeout=timeout)
    with pytest.raises((TypeError, ValueError), match="timeout"):
        otp.Reply("v", timeout=timeout)


@given(st.floats(min_value=0, allow_nan=False) | st.integers(min_value=0))
def test_any_number_of_seconds_at_least_zero_is_a_timeout(seconds):
    assert otp.NoReply(timeout=seconds).timeout == seconds


@given(st.floats(max_value=0, exclude_max=True) | st.integers(max_value=-1) | st.just(math.nan))
def test_a_negative_number_or_nan_raises_value_error(seconds):
    with pytest.raises(ValueError, match="timeout"):
        otp.NoReply(timeout=seconds)


@given(st.text().filter(lambda text: text != "infinity"))
def test_a_string_other_than_infinity_raises_value_error(text):
    with pytest.raises(ValueError, match="timeout"):
        otp.NoReply(timeout=text)


@given(st.binary() | st.booleans() | st.lists(st.integers()) | st.complex_numbers())
def test_a_value_that_is_not_a_number_raises_type_error(value):
    with pytest.raises(TypeError, match="timeout"):
        otp.NoReply(timeout=value)


# -- supervisors and applications ------------------------------------------------------------------


@pytest.mark.parametrize("timeout", INVALID, ids=repr)
async def test_supervisor_stop_with_an_invalid_timeout_leaves_the_tree_running(timeout):
    async with otp.node():
        sup = await supervisor.start_link(
            [Recorder.child_spec([], name="child")], strategy="one_for_one"
        )
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await supervisor.stop(sup, timeout=timeout)
        await settle()
        assert otp.is_alive(sup) and otp.whereis("child") is not None
        await supervisor.stop(sup, timeout="infinity")
        assert not otp.is_alive(sup)


async def test_application_stop_with_an_invalid_timeout_leaves_it_running():
    async def start(env: Any) -> otp.Pid | None:
        return await supervisor.start_link([], strategy="one_for_one")

    app = application.Application("timeouts_app", start)
    async with otp.node():
        await application.start(app)
        with pytest.raises(ValueError, match="timeout"):
            await application.stop(app, timeout=-5)
        assert app in application.which_applications()
        await application.stop(app, timeout="infinity")
        assert application.which_applications() == []
