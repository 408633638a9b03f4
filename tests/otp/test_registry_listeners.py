"""otp.registry listeners: who is told of what, in which order.

Ported cases name their upstream test in Elixir's lib/elixir/test/elixir/registry/.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server, registry

from .core_helpers import drain, settle
from .registry_helpers import agent, kill, run_in


class Idle(gen_server.GenServer):
    """A server that does nothing: something to start under a via name."""


async def listening_as(name: str) -> otp.Pid:
    """Register the calling process (the test's main process) as the listener ``name``."""
    me = otp.self()
    otp.register(name, me)
    return me


# -- ported from Elixir --------------------------------------------------------------------


async def test_listeners_are_told_of_registers_and_unregisters_in_a_unique_registry() -> None:
    """registry/unique_test.exs: "allows listeners"."""
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        task = await agent()
        await run_in(task, lambda: registry.register("reg", "hello", "world"))
        assert await drain() == [("register", "reg", "hello", task, "world")]

        me = otp.self()
        registry.register("reg", "world", "value")
        assert await drain() == [("register", "reg", "world", me, "value")]

        registry.unregister("reg", "world")
        assert await drain() == [("unregister", "reg", "world", me)]


async def test_listeners_are_told_of_registers_and_unregisters_in_a_duplicate_registry() -> (
    None
):
    """registry/duplicate_test.exs: "allows listeners"."""
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="duplicate", name="reg", listeners=["listener"])
        task = await agent()
        await run_in(task, lambda: registry.register("reg", "hello", "world"))
        assert await drain() == [("register", "reg", "hello", task, "world")]

        me = otp.self()
        registry.register("reg", "hello", "value")
        assert await drain() == [("register", "reg", "hello", me, "value")]

        registry.unregister("reg", "hello")
        assert await drain() == [("unregister", "reg", "hello", me)]
        assert registry.lookup("reg", "hello") == [(task, "world")]


async def test_listeners_are_not_told_when_a_registered_process_exits() -> None:
    """Elixir's Registry docs (the :listeners option): a listener that wants to know of a
    registered process's death monitors it."""
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        task = await agent()
        await run_in(task, lambda: registry.register("reg", "k", 1))
        assert len(await drain()) == 1
        await kill(task)
        assert registry.lookup("reg", "k") == []
        assert await drain() == []


# -- what each operation sends -------------------------------------------------------------


async def test_each_entry_of_a_duplicate_key_is_one_register_message() -> None:
    async with otp.node():
        me = await listening_as("listener")
        await registry.start_link(keys="duplicate", name="reg", listeners=["listener"])
        registry.register("reg", "k", 1)
        registry.register("reg", "k", 2)
        registry.unregister("reg", "k")
        assert await drain() == [
            ("register", "reg", "k", me, 1),
            ("register", "reg", "k", me, 2),
            ("unregister", "reg", "k", me),
        ]


async def test_a_refused_registration_tells_the_listeners_nothing() -> None:
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        registry.register("reg", "k", 1)
        await drain()
        with pytest.raises(registry.AlreadyRegistered):
            registry.register("reg", "k", 2)
        assert await drain() == []


async def test_unregister_of_a_key_the_caller_does_not_hold_tells_the_listeners_nothing() -> (
    None
):
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        holder = await agent()
        await run_in(holder, lambda: registry.register("reg", "k", 1))
        await drain()
        registry.unregister("reg", "k")
        registry.unregister("reg", "never-registered")
        assert await drain() == []


async def test_unregister_match_tells_the_listeners_once_no_entry_is_left() -> None:
    async with otp.node():
        me = await listening_as("listener")
        await registry.start_link(keys="duplicate", name="reg", listeners=["listener"])
        registry.register("reg", "k", 1)
        registry.register("reg", "k", 2)
        await drain()
        registry.unregister_match("reg", "k", lambda v: v == 1)
        assert await drain() == []
        registry.unregister_match("reg", "k", lambda v: v == 1)
        assert await drain() == []
        registry.unregister_match("reg", "k", lambda v: v == 2)
        assert await drain() == [("unregister", "reg", "k", me)]


async def test_starting_under_a_via_name_tells_the_listeners() -> None:
    """Elixir's via registration goes through Registry.register, listeners included."""
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        pid = await gen_server.start_link(Idle, name=registry.via("reg", "idle", "v"))
        assert await drain() == [("register", "reg", "idle", pid, "v")]


async def test_a_via_start_whose_init_fails_tells_the_listeners_of_the_register_only() -> (
    None
):
    """The entry goes with the failed process, as with any death (a documented
    difference: Elixir's gen unregisters the name, and the listeners hear of it)."""

    class FailingInit(gen_server.GenServer):
        async def init(self, *args: Any) -> None:
            raise RuntimeError("no")

    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        with pytest.raises(otp.InitError):
            await gen_server.start(FailingInit, name=registry.via("reg", "x"))
        [(tag, reg, key, _pid, value)] = await drain()
        assert (tag, reg, key, value) == ("register", "reg", "x", None)
        assert registry.lookup("reg", "x") == []


async def test_unregister_name_of_a_via_name_tells_the_listeners() -> None:
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        name = registry.via("reg", "idle")
        pid = await gen_server.start_link(Idle, name=name)
        await drain()
        name.unregister_name()
        assert await drain() == [("unregister", "reg", "idle", pid)]


# -- who is told ---------------------------------------------------------------------------


async def test_every_listener_is_told() -> None:
    async with otp.node():
        me = await listening_as("first")

        async def forwarder() -> None:
            while True:
                otp.send(me, ("forwarded", await otp.receive()))

        otp.register("second", otp.spawn_link(forwarder))
        await registry.start_link(keys="unique", name="reg", listeners=["first", "second"])
        registry.register("reg", "k", 1)
        await settle()
        told = ("register", "reg", "k", me, 1)
        assert await drain() == [told, ("forwarded", told)]


async def test_a_listener_that_is_not_running_is_skipped() -> None:
    async with otp.node():
        me = await listening_as("listener")
        await registry.start_link(
            keys="unique", name="reg", listeners=["not-started", "listener"]
        )
        registry.register("reg", "k", 1)
        assert registry.lookup("reg", "k") == [(me, 1)]
        assert await drain() == [("register", "reg", "k", me, 1)]


async def test_a_listener_started_after_the_registry_is_told() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg", listeners=["listener"])
        registry.register("reg", "before", 1)
        me = await listening_as("listener")
        registry.register("reg", "after", 2)
        assert await drain() == [("register", "reg", "after", me, 2)]


async def test_listeners_may_be_pids_and_via_names() -> None:
    async with otp.node():
        me = otp.self()
        await registry.start_link(keys="unique", name="names")
        registry.register("names", "listener")
        await registry.start_link(
            keys="duplicate", name="reg", listeners=[me, registry.via("names", "listener")]
        )
        registry.register("reg", "k", 1)
        assert await drain() == [("register", "reg", "k", me, 1)] * 2


async def test_a_registry_without_a_name_is_named_by_its_pid_in_messages() -> None:
    async with otp.node():
        me = otp.self()
        reg = await registry.start_link(keys="unique", listeners=[me])
        registry.register(reg, "k")
        assert await drain() == [("register", reg, "k", me, None)]


async def test_a_registry_with_a_via_name_is_named_by_it_in_messages() -> None:
    async with otp.node():
        me = otp.self()
        await registry.start_link(keys="unique", name="names")
        name = registry.via("names", "reg")
        await registry.start_link(keys="duplicate", name=name, listeners=[me])
        registry.register(name, "k")
        assert await drain() == [("register", name, "k", me, None)]


@pytest.mark.parametrize("listeners", ["listener", [42], [""], None])
async def test_start_link_refuses_listeners_that_are_not_a_list_of_names(
    listeners: Any,
) -> None:
    async with otp.node():
        with pytest.raises(TypeError, match="listener"):
            await registry.start_link(keys="unique", name="reg", listeners=listeners)
        assert otp.whereis("reg") is None


def test_child_spec_refuses_listeners_that_are_not_a_list_of_names() -> None:
    with pytest.raises(TypeError, match="listeners"):
        registry.child_spec(keys="unique", name="reg", listeners="listener")


async def test_a_registry_started_by_its_child_spec_tells_its_listeners() -> None:
    async with otp.node():
        me = await listening_as("listener")
        await otp.supervisor.start_link(
            [registry.child_spec(keys="unique", name="reg", listeners=["listener"])]
        )
        registry.register("reg", "k")
        assert await drain() == [("register", "reg", "k", me, None)]


# -- the model -----------------------------------------------------------------------------

_KEYS = ("a", "b")
_AGENTS = 3

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, _AGENTS - 1), st.sampled_from(_KEYS),
                  st.integers(0, 2)),
        st.tuples(st.just("unregister"), st.integers(0, _AGENTS - 1), st.sampled_from(_KEYS)),
        st.tuples(st.just("unregister_match"), st.integers(0, _AGENTS - 1),
                  st.sampled_from(_KEYS), st.integers(0, 2)),
        st.tuples(st.just("die"), st.integers(0, _AGENTS - 1)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
@given(operations=_operations)
async def test_listeners_see_every_register_and_unregister_in_order(
    keys: Any, operations: list[tuple[Any, ...]]
) -> None:
    async with otp.node():
        await listening_as("listener")
        await registry.start_link(keys=keys, name="reg", listeners=["listener"])
        agents = [await agent() for _ in range(_AGENTS)]
        # The model: per key, the (agent index, value) of each entry; and the messages due.
        model: dict[str, list[tuple[int, int]]] = {key: [] for key in _KEYS}
        expected: list[tuple[Any, ...]] = []
        for op in operations:
            if op[0] == "register":
                _, who, key, value = op
                try:
                    await run_in(agents[who],
                                 lambda k=key, v=value: registry.register("reg", k, v))
                except registry.AlreadyRegistered:
                    assert keys == "unique" and model[key]
                else:
                    model[key].append((who, value))
                    expected.append(("register", "reg", key, agents[who], value))
            elif op[0] == "unregister":
                _, who, key = op
                await run_in(agents[who], lambda k=key: registry.unregister("reg", k))
                if any(e[0] == who for e in model[key]):
                    expected.append(("unregister", "reg", key, agents[who]))
                model[key] = [e for e in model[key] if e[0] != who]
            elif op[0] == "unregister_match":
                _, who, key, bound = op
                await run_in(agents[who], lambda k=key, b=bound: registry.unregister_match(
                    "reg", k, lambda v: v <= b))
                before = [e for e in model[key] if e[0] == who]
                model[key] = [e for e in model[key] if e[0] != who or e[1] > bound]
                if before and not any(e[0] == who for e in model[key]):
                    expected.append(("unregister", "reg", key, agents[who]))
            else:
                _, who = op
                await kill(agents[who])
                agents[who] = await agent()
                for key in _KEYS:
                    model[key] = [e for e in model[key] if e[0] != who]
        assert await drain() == expected
