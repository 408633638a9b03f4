"""Exit reasons: the strings "normal" and "shutdown" are the reasons NORMAL and SHUTDOWN.

Python has no atoms, so a reason written as Elixir's ``:normal`` or Erlang's ``normal``
is naturally the string ``"normal"``. Wherever otp accepts or compares a reason (``Stop``,
``exit``, ``ProcessExited``, restart decisions, crash logging) the two are the same;
``Down`` and ``Exit`` messages carry the reason as it was given. The constants print as
what they are called in ``otp``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import otp
from otp import gen_server, supervisor

from .core_helpers import drain, settle, sleep_forever, wait_down

STRINGS = [("normal", otp.NORMAL), ("shutdown", otp.SHUTDOWN)]


# -- the values --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["NORMAL", "SHUTDOWN", "KILL", "KILLED", "NOPROC", "TIMEOUT"])
def test_each_constant_prints_as_its_name_in_otp(name):
    assert repr(getattr(otp, name)) == f"otp.{name}"


def test_shutdown_with_a_term_prints_as_the_call_that_makes_it():
    assert repr(otp.shutdown("bye")) == "otp.shutdown('bye')"


def test_an_atom_that_is_no_constant_prints_as_its_constructor():
    assert repr(otp.Atom("other")) == "otp.Atom('other')"


@pytest.mark.parametrize(("string", "atom"), STRINGS)
def test_the_string_equals_the_constant_and_hashes_like_it(string, atom):
    assert string == atom and atom == string
    assert hash(string) == hash(atom)
    assert {string: 1}[atom] == 1


@pytest.mark.parametrize(("string", "atom"), STRINGS)
def test_the_string_is_a_normal_exit(string, atom):
    assert otp.is_normal_exit(string)


@pytest.mark.parametrize("name", ["kill", "killed", "noproc", "timeout", "other"])
def test_no_other_string_equals_an_atom(name):
    assert otp.Atom(name) != name
    assert not otp.is_normal_exit(name)


def test_the_two_reasons_differ_from_each_other():
    assert otp.NORMAL != "shutdown" and otp.SHUTDOWN != "normal"


# -- Stop --------------------------------------------------------------------------------------


class Stopper(otp.GenServer):
    async def init(self, log: list[Any]) -> None:
        self.log = log

    async def handle_cast(self, reason: Any) -> Any:
        return otp.Stop(reason)

    async def terminate(self, reason: Any) -> None:
        self.log.append(reason)


@pytest.mark.parametrize(("string", "atom"), STRINGS)
async def test_stop_with_the_string_ends_the_server_with_the_string_as_given(string, atom):
    async with otp.node():
        log: list[Any] = []
        pid = await gen_server.start(Stopper, log)
        ref = otp.monitor(pid)
        gen_server.cast(pid, string)
        down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
        assert type(down.reason) is str and down.reason == string
        assert down == otp.Down(ref, pid, atom)
        assert log == [string]


@pytest.mark.parametrize(("string", "atom"), STRINGS)
async def test_stop_with_the_string_is_not_logged_as_a_crash(string, atom, caplog):
    caplog.set_level(logging.ERROR)
    async with otp.node():
        pid = await gen_server.start(Stopper, [])
        gen_server.cast(pid, string)
        await wait_down(pid)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_stop_normal_as_a_string_does_not_end_a_linked_process():
    async with otp.node():
        pid = await gen_server.start_link(Stopper, [])
        gen_server.cast(pid, "normal")
        await wait_down(pid)
        await settle()
        assert otp.is_alive(otp.self())


async def test_gen_server_stop_with_the_string_returns_and_terminate_gets_it():
    async with otp.node():
        log: list[Any] = []
        pid = await gen_server.start(Stopper, log)
        await gen_server.stop(pid, "shutdown")
        assert log == ["shutdown"]


# -- exit signals ------------------------------------------------------------------------------


async def test_exit_normal_as_a_string_is_ignored_by_a_process_that_does_not_trap():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.exit(pid, "normal")
        await settle()
        assert otp.is_alive(pid)


async def test_exit_normal_as_a_string_reaches_a_trapping_process_as_given():
    async def trapper(parent: otp.Pid) -> None:
        otp.trap_exits(True)
        otp.send(parent, "ready")
        otp.send(parent, await otp.receive())

    async with otp.node():
        pid = otp.spawn(trapper, otp.self())
        assert await otp.receive() == "ready"
        otp.exit(pid, "normal")
        msg = await otp.receive()
        assert msg == otp.Exit(otp.self(), "normal") and type(msg.reason) is str


async def test_exit_shutdown_as_a_string_ends_a_process_that_does_not_trap():
    async with otp.node():
        pid, ref = otp.spawn_monitor(sleep_forever)
        otp.exit(pid, "shutdown")
        assert await otp.receive() == otp.Down(ref, pid, "shutdown")


async def test_exit_normal_as_a_string_to_oneself_ends_the_process():
    async def quitter() -> None:
        otp.exit(otp.self(), "normal")
        await sleep_forever()

    async with otp.node():
        pid, ref = otp.spawn_monitor(quitter)
        assert await otp.receive() == otp.Down(ref, pid, otp.NORMAL)


# -- ProcessExited -----------------------------------------------------------------------------


@pytest.mark.parametrize(("string", "atom"), STRINGS)
async def test_process_exited_with_the_string_is_a_normal_exit(string, atom, caplog):
    async def leaver() -> None:
        raise otp.ProcessExited(string)

    caplog.set_level(logging.ERROR)
    async with otp.node():
        otp.trap_exits(True)
        pid = otp.spawn_link(leaver)
        assert await otp.receive() == otp.Exit(pid, atom)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_process_exiting_with_normal_as_a_string_does_not_end_its_links():
    async def leaver() -> None:
        raise otp.ProcessExited("normal")

    async with otp.node():
        pid = otp.spawn_link(leaver)
        await wait_down(pid)
        await settle()
        assert otp.is_alive(otp.self())


@pytest.mark.parametrize(("string", "atom"), STRINGS)
def test_run_returns_none_when_main_exits_with_the_string(string, atom):
    async def main() -> None:
        raise otp.ProcessExited(string)

    assert otp.run(main) is None


# -- restart decisions -------------------------------------------------------------------------


@pytest.mark.parametrize(("string", "atom"), STRINGS)
async def test_a_transient_child_that_stops_with_the_string_is_not_restarted(string, atom):
    async with otp.node():
        sup = await supervisor.start_link(
            [Stopper.child_spec([], id="t", name="t", restart="transient")],
            strategy="one_for_one",
        )
        pid = otp.whereis("t")
        assert pid is not None
        gen_server.cast(pid, string)
        await wait_down(pid)
        await settle()
        assert await supervisor.which_children(sup) == [("t", None, "worker")]
        assert await drain() == []
