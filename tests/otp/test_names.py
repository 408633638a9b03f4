"""Local names (register, unregister, whereis) and via names plugged into name resolution."""

from __future__ import annotations

import pytest

import otp

from .core_helpers import settle, sleep_forever, wait_down


class DictVia(otp.Via):
    """A minimal via name: a shared dict, forgetting a name when its holder is gone."""

    table: dict[str, otp.Pid] = {}

    def __init__(self, key: str) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictVia) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("DictVia", self.key))

    def register_name(self, pid: otp.Pid) -> None:
        holder = self.whereis_name()
        if holder is not None:
            raise otp.AlreadyStarted(self, holder)
        self.table[self.key] = pid

    def unregister_name(self) -> None:
        self.table.pop(self.key, None)

    def whereis_name(self) -> otp.Pid | None:
        pid = self.table.get(self.key)
        return pid if pid is not None and otp.is_alive(pid) else None


async def test_whereis_finds_a_registered_process():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("worker", pid)
        assert otp.whereis("worker") == pid


async def test_whereis_of_an_unknown_name_is_none():
    async with otp.node():
        assert otp.whereis("unknown") is None


async def test_whereis_of_a_live_pid_is_that_pid():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        assert otp.whereis(pid) == pid


async def test_whereis_of_a_dead_pid_is_none():
    async def quick():
        pass

    async with otp.node():
        pid = otp.spawn(quick)
        await wait_down(pid)
        assert otp.whereis(pid) is None


async def test_whereis_of_something_that_is_not_a_name_raises_type_error():
    async with otp.node():
        with pytest.raises(TypeError):
            otp.whereis(42)  # type: ignore[arg-type]


async def test_register_a_taken_name_raises_already_started_with_the_holder():
    async with otp.node():
        first = otp.spawn(sleep_forever)
        otp.register("taken", first)
        with pytest.raises(otp.AlreadyStarted) as info:
            otp.register("taken", otp.spawn(sleep_forever))
        assert info.value.pid == first
        assert info.value.name == "taken"


async def test_register_a_dead_pid_raises_noproc():
    async def quick():
        pass

    async with otp.node():
        pid = otp.spawn(quick)
        await wait_down(pid)
        with pytest.raises(otp.NoProc):
            otp.register("late", pid)
        assert otp.whereis("late") is None


async def test_register_a_process_that_already_has_a_name_raises_value_error():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("one", pid)
        with pytest.raises(ValueError):
            otp.register("two", pid)
        assert otp.whereis("two") is None


@pytest.mark.parametrize("name", ["", 42, None])
async def test_register_a_name_that_is_not_a_non_empty_string_raises_type_error(name):
    async with otp.node():
        with pytest.raises(TypeError):
            otp.register(name, otp.self())


async def test_unregister_frees_the_name():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("free me", pid)
        otp.unregister("free me")
        assert otp.whereis("free me") is None


async def test_an_unregistered_process_can_take_a_new_name():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("old", pid)
        otp.unregister("old")
        otp.register("new", pid)
        assert otp.whereis("new") == pid


async def test_an_unregistered_name_can_be_taken_by_another_process():
    async with otp.node():
        otp.register("shared", otp.spawn(sleep_forever))
        otp.unregister("shared")
        other = otp.spawn(sleep_forever)
        otp.register("shared", other)
        assert otp.whereis("shared") == other


async def test_unregister_an_unknown_name_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc):
            otp.unregister("never registered")


async def test_a_name_is_released_when_its_process_exits():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("temp", pid)
        otp.exit(pid, otp.KILL)
        await settle()
        assert otp.whereis("temp") is None


async def test_a_name_is_not_found_once_its_process_accepted_an_exit_signal():
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        otp.register("exiting", pid)
        otp.exit(pid, "bye")
        assert otp.whereis("exiting") is None
        with pytest.raises(otp.NoProc):
            otp.send("exiting", "msg")


async def test_names_belong_to_their_node():
    async with otp.node():
        otp.register("per-node", otp.self())
    async with otp.node():
        assert otp.whereis("per-node") is None


def test_whereis_outside_a_node_raises_not_in_process():
    with pytest.raises(otp.NotInProcess):
        otp.whereis("anything")


# -- via names -------------------------------------------------------------------------------


async def test_a_via_name_resolves_through_its_module():
    DictVia.table.clear()
    async with otp.node():
        pid = otp.spawn(sleep_forever)
        DictVia("a").register_name(pid)
        assert otp.whereis(DictVia("a")) == pid


async def test_send_to_a_via_name_delivers():
    DictVia.table.clear()
    async with otp.node():
        DictVia("me").register_name(otp.self())
        otp.send(DictVia("me"), "via")
        assert await otp.receive() == "via"


async def test_send_to_an_unbound_via_name_raises_noproc():
    DictVia.table.clear()
    async with otp.node():
        with pytest.raises(otp.NoProc):
            otp.send(DictVia("missing"), "x")


async def test_a_gen_server_can_be_started_and_called_by_a_via_name():
    DictVia.table.clear()

    class Echo(otp.GenServer):
        async def handle_call(self, request, from_):
            return request

    async with otp.node():
        pid = await otp.gen_server.start_link(Echo, name=DictVia("echo"))
        assert otp.whereis(DictVia("echo")) == pid
        assert await otp.gen_server.call(DictVia("echo"), "hi") == "hi"


async def test_a_taken_via_name_makes_start_raise_already_started():
    DictVia.table.clear()

    class Idle(otp.GenServer):
        pass

    async with otp.node():
        first = await otp.gen_server.start_link(Idle, name=DictVia("once"))
        with pytest.raises(otp.AlreadyStarted) as info:
            await otp.gen_server.start_link(Idle, name=DictVia("once"))
        assert info.value.pid == first
