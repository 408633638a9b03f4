"""otp.registry: unique and duplicate keys, clean-up on exit, the table's life, via names."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server, registry
from otp.registry import AlreadyRegistered, NotRegistered, UnknownRegistry

from .registry_helpers import agent, kill, run_in

# -- helpers -------------------------------------------------------------------------------


class Echo(gen_server.GenServer):
    """Replies with the request; keeps casts and other messages for ``"seen"``."""

    async def init(self, *args: Any) -> None:
        self.seen: list[Any] = []

    async def handle_call(self, request: Any, from_: Any) -> Any:
        if request == "seen":
            return self.seen
        if request == "crash":
            raise RuntimeError("asked to crash")
        return request

    async def handle_cast(self, msg: Any) -> None:
        self.seen.append(("cast", msg))

    async def handle_info(self, msg: Any) -> None:
        self.seen.append(("info", msg))


class FailingInit(gen_server.GenServer):
    async def init(self, *args: Any) -> None:
        raise RuntimeError("no")


# -- starting ------------------------------------------------------------------------------


async def test_start_link_returns_the_pid_and_registers_the_name() -> None:
    async with otp.node():
        pid = await registry.start_link(keys="unique", name="reg")
        assert isinstance(pid, otp.Pid)
        assert otp.whereis("reg") == pid
        assert registry.count("reg") == 0


async def test_start_link_rejects_an_unknown_kind_of_keys() -> None:
    async with otp.node():
        with pytest.raises(ValueError, match="unique"):
            await registry.start_link(keys="many", name="reg")  # type: ignore[arg-type]
        assert otp.whereis("reg") is None


async def test_start_link_with_a_taken_name_raises_already_started() -> None:
    async with otp.node():
        first = await registry.start_link(keys="unique", name="reg")
        with pytest.raises(otp.AlreadyStarted) as info:
            await registry.start_link(keys="duplicate", name="reg")
        assert info.value.pid == first


async def test_a_registry_is_addressed_by_its_pid() -> None:
    async with otp.node():
        reg = await registry.start_link(keys="unique")
        registry.register(reg, "k", 1)
        assert registry.lookup(reg, "k") == [(otp.self(), 1)]


async def test_an_unknown_registry_raises_unknown_registry_a_noproc() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry) as info:
            registry.lookup("nope", "k")
        assert isinstance(info.value, otp.NoProc)
        assert info.value.name == "nope"
        with pytest.raises(UnknownRegistry):
            registry.register("nope", "k")


async def test_a_pid_that_is_not_a_registry_raises_unknown_registry() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry):
            registry.count(otp.self())


# -- unique keys ---------------------------------------------------------------------------


async def test_register_and_lookup_in_a_unique_registry() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        assert registry.register("reg", "k", {"v": 1}) is None
        assert registry.lookup("reg", "k") == [(otp.self(), {"v": 1})]
        assert registry.lookup("reg", "other") == []


async def test_register_defaults_the_value_to_none() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k")
        assert registry.lookup("reg", "k") == [(otp.self(), None)]


async def test_a_unique_key_held_by_another_process_raises_already_registered() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        holder = await agent()
        await run_in(holder, lambda: registry.register("reg", "k", 1))
        with pytest.raises(AlreadyRegistered) as info:
            registry.register("reg", "k", 2)
        assert info.value.pid == holder
        assert info.value.key == "k"
        assert registry.lookup("reg", "k") == [(holder, 1)]


async def test_a_unique_key_registered_twice_by_the_caller_raises_with_its_own_pid() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        with pytest.raises(AlreadyRegistered) as info:
            registry.register("reg", "k", 2)
        assert info.value.pid == otp.self()
        assert registry.count("reg") == 1


async def test_one_process_may_hold_several_unique_keys() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "a", 1)
        registry.register("reg", "b", 2)
        assert registry.keys("reg", otp.self()) == ["a", "b"]
        assert registry.count("reg") == 2


async def test_unregister_frees_a_unique_key() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        assert registry.unregister("reg", "k") is None
        assert registry.lookup("reg", "k") == []
        assert registry.keys("reg", otp.self()) == []
        registry.register("reg", "k", 2)
        assert registry.lookup("reg", "k") == [(otp.self(), 2)]


async def test_unregister_leaves_another_process_s_entry_alone() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        holder = await agent()
        await run_in(holder, lambda: registry.register("reg", "k", 1))
        registry.unregister("reg", "k")
        registry.unregister("reg", "never-registered")
        assert registry.lookup("reg", "k") == [(holder, 1)]


async def test_values_of_a_unique_key_are_the_holder_s_only() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        other = await agent()
        assert registry.values("reg", "k", otp.self()) == [1]
        assert registry.values("reg", "k", other) == []
        assert registry.values("reg", "missing", otp.self()) == []


# -- duplicate keys ------------------------------------------------------------------------


async def test_a_duplicate_key_holds_entries_of_several_processes() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        other = await agent()
        registry.register("reg", "k", 1)
        await run_in(other, lambda: registry.register("reg", "k", 2))
        assert sorted(registry.lookup("reg", "k"), key=lambda e: e[1]) == [
            (otp.self(), 1),
            (other, 2),
        ]
        assert registry.count("reg") == 2


async def test_one_process_may_register_a_duplicate_key_several_times() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        registry.register("reg", "k", 2)
        me = otp.self()
        assert registry.lookup("reg", "k") == [(me, 1), (me, 2)]
        assert registry.keys("reg", me) == ["k", "k"]
        assert registry.values("reg", "k", me) == [1, 2]
        assert registry.count("reg") == 2


async def test_unregister_of_a_duplicate_key_removes_all_the_caller_s_entries_only() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        other = await agent()
        registry.register("reg", "k", 1)
        registry.register("reg", "k", 2)
        registry.register("reg", "j", 3)
        await run_in(other, lambda: registry.register("reg", "k", 4))
        registry.unregister("reg", "k")
        assert registry.lookup("reg", "k") == [(other, 4)]
        assert registry.keys("reg", otp.self()) == ["j"]
        assert registry.count("reg") == 2


async def test_keys_of_an_unregistered_pid_is_empty() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        assert registry.keys("reg", otp.self()) == []


async def test_lookup_returns_a_fresh_list() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        registry.lookup("reg", "k").clear()
        assert registry.lookup("reg", "k") == [(otp.self(), 1)]


# -- match, dispatch, update_value ---------------------------------------------------------


async def test_match_returns_the_entries_whose_value_passes_the_predicate() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        for value in range(5):
            registry.register("reg", "k", value)
        me = otp.self()
        assert registry.match("reg", "k", lambda v: v % 2 == 0) == [(me, 0), (me, 2), (me, 4)]
        assert registry.match("reg", "missing", lambda v: True) == []


async def test_dispatch_calls_fn_once_with_all_the_entries() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        registry.register("reg", "k", 2)
        calls: list[list[tuple[otp.Pid, Any]]] = []
        assert registry.dispatch("reg", "k", calls.append) is None
        assert calls == [[(otp.self(), 1), (otp.self(), 2)]]


async def test_dispatch_does_not_call_fn_when_there_are_no_entries() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        calls: list[Any] = []
        registry.dispatch("reg", "k", calls.append)
        assert calls == []


async def test_dispatch_propagates_what_fn_raises() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k")

        def boom(entries: Any) -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            registry.dispatch("reg", "k", boom)


async def test_update_value_returns_new_and_old_and_stores_new() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        assert registry.update_value("reg", "k", lambda v: v + 1) == (2, 1)
        assert registry.lookup("reg", "k") == [(otp.self(), 2)]


async def test_update_value_of_a_free_key_raises_not_registered() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        with pytest.raises(NotRegistered) as info:
            registry.update_value("reg", "k", lambda v: v)
        assert info.value.key == "k"


async def test_update_value_of_another_process_s_key_raises_not_registered() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        holder = await agent()
        await run_in(holder, lambda: registry.register("reg", "k", 1))
        with pytest.raises(NotRegistered):
            registry.update_value("reg", "k", lambda v: v + 1)
        assert registry.lookup("reg", "k") == [(holder, 1)]


async def test_update_value_leaves_the_entry_unchanged_when_fn_raises() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        with pytest.raises(ZeroDivisionError):
            registry.update_value("reg", "k", lambda v: v / 0)
        assert registry.lookup("reg", "k") == [(otp.self(), 1)]


async def test_update_value_on_a_duplicate_registry_raises_value_error() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        with pytest.raises(ValueError, match="unique"):
            registry.update_value("reg", "k", lambda v: v)


# -- metadata ------------------------------------------------------------------------------


async def test_meta_reads_the_metadata_given_at_start() -> None:
    """The doctest of Registry.meta/2."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg", meta={"custom_key": "custom_value"})
        assert registry.meta("reg", "custom_key") == "custom_value"
        with pytest.raises(KeyError):
            registry.meta("reg", "unknown_key")


async def test_put_meta_stores_metadata_under_any_hashable_key() -> None:
    """The doctest of Registry.put_meta/3."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        assert registry.put_meta("reg", "custom_key", "custom_value") is None
        assert registry.meta("reg", "custom_key") == "custom_value"
        registry.put_meta("reg", ("tuple", "key"), "tuple_value")
        assert registry.meta("reg", ("tuple", "key")) == "tuple_value"
        registry.put_meta("reg", "custom_key", "replaced")
        assert registry.meta("reg", "custom_key") == "replaced"


async def test_delete_meta_removes_metadata() -> None:
    """The doctest of Registry.delete_meta/2."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.put_meta("reg", "custom_key", "custom_value")
        assert registry.delete_meta("reg", "custom_key") is None
        with pytest.raises(KeyError):
            registry.meta("reg", "custom_key")
        registry.delete_meta("reg", "custom_key")  # already gone: nothing happens


async def test_metadata_is_the_registry_s_own_copy() -> None:
    async with otp.node():
        initial = {"k": 1}
        await registry.start_link(keys="unique", name="reg", meta=initial)
        registry.put_meta("reg", "k", 2)
        assert initial == {"k": 1}
        assert registry.meta("reg", "k") == 2


async def test_a_registry_started_again_has_only_its_start_metadata() -> None:
    async with otp.node():
        spec = registry.child_spec(keys="unique", name="reg", meta={"k": "start"})
        sup = await otp.supervisor.start_link([spec])
        registry.put_meta("reg", "k", "changed")
        registry.put_meta("reg", "extra", 1)
        old = otp.whereis("reg")
        assert old is not None
        ref = otp.monitor(old)
        otp.exit(old, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        await otp.supervisor.which_children(sup)  # the supervisor has restarted it
        assert registry.meta("reg", "k") == "start"
        with pytest.raises(KeyError):
            registry.meta("reg", "extra")


async def test_meta_of_an_unknown_registry_raises_unknown_registry() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry):
            registry.meta("nobody", "k")
        with pytest.raises(UnknownRegistry):
            registry.put_meta("nobody", "k", 1)


async def test_start_link_refuses_metadata_that_is_not_a_mapping() -> None:
    async with otp.node():
        with pytest.raises(TypeError, match="meta"):
            await registry.start_link(keys="unique", name="reg", meta=[("k", 1)])  # type: ignore[arg-type]
        assert otp.whereis("reg") is None


# -- clean-up when a process exits ---------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_the_entries_of_a_dead_process_disappear(keys: Any) -> None:
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        worker = await agent()
        await run_in(worker, lambda: registry.register("reg", "a", 1))
        await run_in(worker, lambda: registry.register("reg", "b", 2))
        registry.register("reg", "c", 3)
        await kill(worker)
        assert registry.lookup("reg", "a") == []
        assert registry.lookup("reg", "b") == []
        assert registry.keys("reg", worker) == []
        assert registry.count("reg") == 1


async def test_the_entries_of_a_process_that_ends_normally_disappear() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")

        async def body() -> None:
            registry.register("reg", "k")

        pid, ref = otp.spawn_monitor(body)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        assert registry.lookup("reg", "k") == []
        assert registry.keys("reg", pid) == []


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_entries_are_gone_when_a_monitor_s_down_is_received(keys: Any) -> None:
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")

        async def watcher(target: otp.Pid, report_to: otp.Pid) -> None:
            otp.monitor(target)
            otp.send(report_to, "watching")
            down = await otp.receive()
            otp.send(report_to, (down.reason, registry.lookup("reg", "k"),
                                 registry.count("reg")))

        worker = await agent()
        await run_in(worker, lambda: registry.register("reg", "k", 1))
        otp.spawn(watcher, worker, otp.self())
        assert await otp.receive() == "watching"
        otp.exit(worker, otp.KILL)
        assert await otp.receive(timeout=5) == (otp.KILLED, [], 0)


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_entries_are_gone_when_a_link_s_exit_is_received(keys: Any) -> None:
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")

        async def linked_worker(report_to: otp.Pid) -> None:
            registry.register("reg", "k", 1)
            otp.send(report_to, "registered")
            raise RuntimeError("crash")

        otp.trap_exits(True)
        pid = otp.spawn_link(linked_worker, otp.self())
        assert await otp.receive() == "registered"
        exit_msg = await otp.receive(match=lambda m: isinstance(m, otp.Exit))
        assert exit_msg.pid == pid
        assert isinstance(exit_msg.reason, RuntimeError)
        assert registry.lookup("reg", "k") == []


async def test_a_via_name_is_free_when_a_call_sees_the_server_exit() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "echo")
        await gen_server.start(Echo, name=name)
        with pytest.raises(otp.ServerExited):
            await gen_server.call(name, "crash")
        assert otp.whereis(name) is None
        assert await gen_server.start(Echo, name=name) is not None


# -- the table lives as long as the registry -----------------------------------------------


async def test_a_stopped_registry_drops_its_table() -> None:
    async with otp.node():
        reg = await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        await gen_server.stop(reg)
        with pytest.raises(UnknownRegistry):
            registry.lookup("reg", "k")
        with pytest.raises(UnknownRegistry):
            registry.lookup(reg, "k")


async def test_a_registry_is_gone_when_its_down_is_received() -> None:
    async with otp.node():
        otp.trap_exits(True)
        reg = await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        ref = otp.monitor(reg)
        otp.exit(reg, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        with pytest.raises(UnknownRegistry):
            registry.count(reg)


async def test_a_registry_started_again_under_the_same_name_is_empty() -> None:
    async with otp.node():
        reg = await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)
        await gen_server.stop(reg)
        await registry.start_link(keys="unique", name="reg")
        assert registry.lookup("reg", "k") == []
        assert registry.count("reg") == 0
        registry.register("reg", "k", 2)
        assert registry.lookup("reg", "k") == [(otp.self(), 2)]


async def test_a_process_of_a_dropped_table_exits_without_touching_the_new_one() -> None:
    async with otp.node():
        old_reg = await registry.start_link(keys="unique", name="reg")
        old_holder = await agent()
        await run_in(old_holder, lambda: registry.register("reg", "k", "old"))
        await gen_server.stop(old_reg)
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", "new")
        await kill(old_holder)
        assert registry.lookup("reg", "k") == [(otp.self(), "new")]
        assert registry.count("reg") == 1


async def test_registered_processes_do_not_die_with_the_registry() -> None:
    async with otp.node():
        otp.trap_exits(True)
        reg = await registry.start_link(keys="unique", name="reg")
        worker = await agent()
        await run_in(worker, lambda: registry.register("reg", "k"))
        otp.exit(reg, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Exit) and m.pid == reg)
        assert otp.is_alive(worker)
        assert await run_in(worker, lambda: 42) == 42


# -- via names -----------------------------------------------------------------------------


async def test_via_names_a_server_for_call_cast_and_send() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", ("echo", 1))
        pid = await gen_server.start_link(Echo, name=name)
        assert registry.lookup("reg", ("echo", 1)) == [(pid, None)]
        assert await gen_server.call(name, "hello") == "hello"
        gen_server.cast(name, "c")
        otp.send(name, "m")
        assert await gen_server.call(name, "seen") == [("cast", "c"), ("info", "m")]


async def test_whereis_resolves_a_via_name() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "echo")
        assert otp.whereis(name) is None
        pid = await gen_server.start_link(Echo, name=name)
        assert otp.whereis(name) == pid


async def test_monitor_of_a_via_name_reports_the_pid_it_resolved_to() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "echo")
        pid = await gen_server.start(Echo, name=name)
        ref = otp.monitor(name)
        otp.exit(pid, otp.KILL)
        down = await otp.receive()
        assert down == otp.Down(ref, pid, otp.KILLED)


async def test_monitor_of_a_free_via_name_reports_noproc() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "nobody")
        ref = otp.monitor(name)
        assert await otp.receive(timeout=0) == otp.Down(ref, name, otp.NOPROC)


async def test_stop_through_a_via_name_frees_it() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "echo")
        await gen_server.start_link(Echo, name=name)
        await gen_server.stop(name)
        assert otp.whereis(name) is None
        assert registry.count("reg") == 0


async def test_a_taken_via_name_raises_already_started() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "echo")
        first = await gen_server.start_link(Echo, name=name)
        with pytest.raises(otp.AlreadyStarted) as info:
            await gen_server.start_link(Echo, name=name)
        assert info.value.pid == first
        assert info.value.name == name
        assert otp.whereis(name) == first


async def test_a_via_name_held_by_register_raises_already_started() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "echo")
        with pytest.raises(otp.AlreadyStarted) as info:
            await gen_server.start(Echo, name=registry.via("reg", "echo"))
        assert info.value.pid == otp.self()


async def test_a_via_name_is_free_after_a_failed_init() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "server")
        with pytest.raises(otp.InitError):
            await gen_server.start_link(FailingInit, name=name)
        assert otp.whereis(name) is None
        assert registry.count("reg") == 0


async def test_a_via_name_registers_its_value() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        pid = await gen_server.start_link(Echo, name=registry.via("reg", "echo", {"role": 1}))
        assert registry.lookup("reg", "echo") == [(pid, {"role": 1})]


async def test_call_through_a_free_via_name_raises_noproc() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        with pytest.raises(otp.NoProc):
            await gen_server.call(registry.via("reg", "nobody"), "hello")
        with pytest.raises(otp.NoProc):
            otp.send(registry.via("reg", "nobody"), "hello")
        gen_server.cast(registry.via("reg", "nobody"), "dropped")


async def test_a_via_name_of_a_missing_registry_resolves_to_nothing() -> None:
    async with otp.node():
        name = registry.via("no-registry", "k")
        assert otp.whereis(name) is None
        with pytest.raises(otp.NoProc):
            await gen_server.call(name, "hello")


async def test_starting_under_a_via_name_of_a_missing_registry_fails() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry):
            await gen_server.start_link(Echo, name=registry.via("no-registry", "k"))
        assert otp.is_alive(otp.self())


async def test_via_on_a_duplicate_registry_raises_value_error() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="dups")
        with pytest.raises(ValueError, match="unique"):
            registry.via("dups", "k")


async def test_a_via_name_made_before_a_duplicate_registry_started_fails_on_use() -> None:
    async with otp.node():
        name = registry.via("dups", "k")
        await registry.start_link(keys="duplicate", name="dups")
        with pytest.raises(ValueError):
            otp.whereis(name)
        with pytest.raises(ValueError, match="unique"):
            await gen_server.start_link(Echo, name=name)


def test_via_names_can_be_made_outside_a_node() -> None:
    name = registry.via("reg", "k")
    assert name.registry == "reg"
    assert name.key == "k"


def test_via_names_compare_and_hash_by_registry_and_key() -> None:
    assert registry.via("reg", "k") == registry.via("reg", "k", value=1)
    assert hash(registry.via("reg", "k")) == hash(registry.via("reg", "k", value=1))
    assert registry.via("reg", "k") != registry.via("reg", "j")
    assert registry.via("reg", "k") != registry.via("other", "k")
    assert registry.via("reg", "k") != ("reg", "k")
    assert isinstance(registry.via("reg", "k"), otp.Via)
    assert repr(registry.via("reg", ("s", 1))) == "registry.via('reg', ('s', 1))"


def test_via_rejects_an_unhashable_key() -> None:
    with pytest.raises(TypeError):
        registry.via("reg", ["not", "hashable"])


async def test_unregister_name_releases_a_via_name() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        name = registry.via("reg", "k")
        holder = await agent()
        name.register_name(holder)
        assert otp.whereis(name) == holder
        name.unregister_name()
        name.unregister_name()
        assert otp.whereis(name) is None
        assert registry.keys("reg", holder) == []


async def test_via_through_a_registry_addressed_by_pid() -> None:
    async with otp.node():
        reg = await registry.start_link(keys="unique")
        name = registry.via(reg, "echo")
        pid = await gen_server.start_link(Echo, name=name)
        assert otp.whereis(name) == pid
        assert await gen_server.call(name, 7) == 7


# -- child spec ----------------------------------------------------------------------------


async def test_child_spec_starts_a_registry_and_defaults_the_id_to_the_name() -> None:
    pytest.importorskip("otp.supervisor")
    async with otp.node():
        spec = registry.child_spec(keys="unique", name="reg")
        assert spec.id == "reg"
        assert spec.type == "worker"
        pid = await spec.start()
        assert otp.whereis("reg") == pid
        registry.register("reg", "k")
        assert registry.count("reg") == 1


async def test_child_spec_takes_an_explicit_id_and_checks_the_keys() -> None:
    pytest.importorskip("otp.supervisor")
    assert registry.child_spec(keys="duplicate", name="reg", id="the-id").id == "the-id"
    with pytest.raises(ValueError):
        registry.child_spec(keys="both", name="reg")  # type: ignore[arg-type]


async def test_a_supervisor_starts_a_registry_before_servers_named_through_it() -> None:
    supervisor = pytest.importorskip("otp.supervisor")
    async with otp.node():
        name = registry.via("reg", "echo")
        sup = await supervisor.start_link(
            [registry.child_spec(keys="unique", name="reg"), Echo.child_spec(name=name)]
        )
        assert await gen_server.call(name, "hi") == "hi"
        first = otp.whereis(name)
        assert first is not None
        ref = otp.monitor(first)
        otp.exit(first, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        # The supervisor got the exit before this call, so it has restarted the child.
        await supervisor.which_children(sup)
        assert otp.whereis(name) not in (None, first)
        assert await gen_server.call(name, "again") == "again"
        await supervisor.stop(sup)


# -- the model -----------------------------------------------------------------------------

_KEYS = ("a", "b", "c")
_AGENTS = 3

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, _AGENTS - 1), st.sampled_from(_KEYS),
                  st.integers(0, 3)),
        st.tuples(st.just("unregister"), st.integers(0, _AGENTS - 1), st.sampled_from(_KEYS)),
        st.tuples(st.just("die"), st.integers(0, _AGENTS - 1)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
@given(operations=_operations)
async def test_register_unregister_and_exits_match_a_dict_model(
    keys: Any, operations: list[tuple[Any, ...]]
) -> None:
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        agents = [await agent() for _ in range(_AGENTS)]
        # The model: for each key, the list of (agent index, value) in registration order.
        model: dict[str, list[tuple[int, int]]] = {key: [] for key in _KEYS}
        for op in operations:
            if op[0] == "register":
                _, who, key, value = op
                holder = model[key][0][0] if keys == "unique" and model[key] else None
                if holder is not None:
                    with pytest.raises(AlreadyRegistered) as info:
                        await run_in(agents[who],
                                     lambda k=key, v=value: registry.register("reg", k, v))
                    assert info.value.pid == agents[holder]
                else:
                    await run_in(agents[who],
                                 lambda k=key, v=value: registry.register("reg", k, v))
                    model[key].append((who, value))
            elif op[0] == "unregister":
                _, who, key = op
                await run_in(agents[who], lambda k=key: registry.unregister("reg", k))
                model[key] = [entry for entry in model[key] if entry[0] != who]
            else:
                _, who = op
                await kill(agents[who])
                agents[who] = await agent()
                for key in _KEYS:
                    model[key] = [entry for entry in model[key] if entry[0] != who]
            for key in _KEYS:
                expected = Counter((agents[who], value) for who, value in model[key])
                assert Counter(registry.lookup("reg", key)) == expected
            for who, pid in enumerate(agents):
                expected_keys = Counter(k for k in _KEYS for w, _ in model[k] if w == who)
                assert Counter(registry.keys("reg", pid)) == expected_keys
            assert registry.count("reg") == sum(len(entries) for entries in model.values())


async def test_start_runs_a_registry_that_outlives_its_starter():
    async with otp.node():
        async def starter():
            await registry.start(keys="unique", name="node.reg")
            raise RuntimeError("the starter crashes")

        _pid, ref = otp.spawn_monitor(starter)
        down = await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        assert isinstance(down.reason, RuntimeError)
        reg = otp.whereis("node.reg")
        assert reg is not None and otp.is_alive(reg)
        registry.register("node.reg", "k")
        assert registry.lookup("node.reg", "k") == [(otp.self(), None)]
