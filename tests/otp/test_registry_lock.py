"""otp.registry.lock: one function at a time per lock key, released however it ends.

The ported cases name their upstream test in Elixir's registry_test.exs (Registry.LockTest,
run there for unique and duplicate registries, as here) or the doctest of Registry.lock/3.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import registry
from otp.registry import UnknownRegistry

from .core_helpers import drain, settle, wait_down

KINDS = pytest.mark.parametrize("keys", ["unique", "duplicate"])


def locker(reg: Any, lock_key: Any, tag: str, *, hold: bool, raises: bool = False) -> otp.Pid:
    """Spawn a process that takes ``lock_key`` and tells the caller ``(tag, "locked")``.

    With ``hold`` it then keeps the lock until it receives ``"unlock"``. Its function
    returns ``"done"`` (or raises ``RuntimeError("oops")`` with ``raises``), and the process
    sends ``(tag, "result", value)`` once :func:`registry.lock` has returned.
    """
    parent = otp.self()

    async def body() -> None:
        async def fn() -> str:
            otp.send(parent, (tag, "locked"))
            if hold:
                await otp.receive(match=lambda m: m == "unlock")
            if raises:
                raise RuntimeError("oops")
            return "done"

        otp.send(parent, (tag, "result", await registry.lock(reg, lock_key, fn)))

    return otp.spawn(body)


async def kill_and_assert_down(pid: otp.Pid) -> None:
    """Kill ``pid`` and wait for its Down (upstream's helper of the same name)."""
    ref = otp.monitor(pid)
    otp.exit(pid, otp.KILL)
    down = await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
    assert down.reason == otp.KILLED


async def expect(msg: Any) -> None:
    """Wait for ``msg`` in the caller's mailbox (a test that never gets it hangs)."""
    await otp.receive(match=lambda m: m == msg)


async def got(msg: Any) -> bool:
    """Whether ``msg`` is already in the caller's mailbox (taking it if so)."""
    await settle()
    try:
        await otp.receive(timeout=0, match=lambda m: m == msg)
    except otp.ReceiveTimeout:
        return False
    return True


async def just_done() -> str:
    return "done"


# -- ported from Elixir --------------------------------------------------------------------


@KINDS
async def test_does_not_lock_when_using_different_keys(keys: Any) -> None:
    """registry_test.exs, Registry.LockTest: "does not lock when using different keys"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        task1 = locker("reg", 1, "task1", hold=True)
        await expect(("task1", "locked"))
        task2 = locker("reg", 2, "task2", hold=True)
        await expect(("task2", "locked"))

        otp.send(task1, "unlock")
        otp.send(task2, "unlock")
        await expect(("task1", "result", "done"))
        await expect(("task2", "result", "done"))
        assert await registry.lock("reg", 1, just_done) == "done"
        assert await registry.lock("reg", 2, just_done) == "done"


@KINDS
async def test_locks_when_using_the_same_key(keys: Any) -> None:
    """registry_test.exs, Registry.LockTest: "locks when using the same key"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        task1 = locker("reg", "ok", "task1", hold=True)
        await expect(("task1", "locked"))
        locker("reg", "ok", "task2", hold=False)
        assert not await got(("task2", "locked"))

        otp.send(task1, "unlock")
        await expect(("task1", "result", "done"))
        await expect(("task2", "locked"))
        await expect(("task2", "result", "done"))
        assert await registry.lock("reg", "ok", just_done) == "done"


@KINDS
async def test_locks_when_the_one_holding_the_lock_raises(keys: Any) -> None:
    """registry_test.exs, Registry.LockTest: "locks when the one holding the lock
    raises"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        task1 = locker("reg", "ok", "task1", hold=True, raises=True)
        await expect(("task1", "locked"))
        locker("reg", "ok", "task2", hold=False)

        ref = otp.monitor(task1)
        otp.send(task1, "unlock")
        down = await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        assert isinstance(down.reason, RuntimeError) and str(down.reason) == "oops"
        await expect(("task2", "result", "done"))
        assert await registry.lock("reg", "ok", just_done) == "done"


@KINDS
async def test_locks_when_the_one_holding_the_lock_terminates(keys: Any) -> None:
    """registry_test.exs, Registry.LockTest: "locks when the one holding the lock
    terminates"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        task1 = locker("reg", "ok", "task1", hold=True)
        await expect(("task1", "locked"))
        locker("reg", "ok", "task2", hold=False)

        await kill_and_assert_down(task1)
        await expect(("task2", "result", "done"))
        assert await registry.lock("reg", "ok", just_done) == "done"


@KINDS
async def test_locks_when_the_one_waiting_for_the_lock_terminates(keys: Any) -> None:
    """registry_test.exs, Registry.LockTest: "locks when the one waiting for the lock
    terminates"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        task1 = locker("reg", "ok", "task1", hold=True)
        await expect(("task1", "locked"))
        task2 = locker("reg", "ok", "task2", hold=False)
        await settle()
        await kill_and_assert_down(task2)

        otp.send(task1, "unlock")
        await expect(("task1", "result", "done"))
        assert not await got(("task2", "locked"))
        assert await registry.lock("reg", "ok", just_done) == "done"


async def test_lock_returns_what_the_function_returns() -> None:
    """The doctest of Registry.lock/3."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")

        async def me() -> otp.Pid:
            return otp.self()

        assert await registry.lock("reg", "hello", just_done) == "done"
        assert await registry.lock("reg", "world", me) == otp.self()


# -- what else the lock promises -----------------------------------------------------------


async def test_lock_propagates_what_the_function_raises_and_releases_the_key() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")

        async def boom() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            await registry.lock("reg", "k", boom)
        assert await registry.lock("reg", "k", just_done) == "done"


async def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        holder = locker("reg", "k", "holder", hold=True)
        await expect(("holder", "locked"))
        for tag in ("w1", "w2", "w3"):
            locker("reg", "k", tag, hold=False)
            await settle()
        otp.send(holder, "unlock")
        for tag in ("w1", "w2", "w3"):
            await expect((tag, "result", "done"))
        locked = [m for m in await drain() if m[1] == "locked"]
        assert locked == [("w1", "locked"), ("w2", "locked"), ("w3", "locked")]


async def test_lock_keys_do_not_clash_with_registered_keys() -> None:
    """Registry.lock/3's docs: "The lock_key has its own namespace"."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", 1)

        async def inside() -> Any:
            registry.unregister("reg", "k")
            registry.register("reg", "k", 2)
            return registry.lookup("reg", "k")

        assert await registry.lock("reg", "k", inside) == [(otp.self(), 2)]


async def test_a_task_asking_again_for_a_lock_it_holds_gets_runtime_error() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")

        async def again() -> Any:
            return await registry.lock("reg", "k", just_done)

        with pytest.raises(RuntimeError, match="not reentrant"):
            await registry.lock("reg", "k", again)
        assert await registry.lock("reg", "k", just_done) == "done"


async def test_two_tasks_of_one_process_exclude_each_other() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        inside: list[str] = []
        overlaps: list[list[str]] = []

        async def hold(tag: str) -> None:
            inside.append(tag)
            overlaps.append(list(inside))
            await trio.sleep(0.01)
            inside.remove(tag)

        async with trio.open_nursery() as nursery:
            for tag in ("a", "b"):
                nursery.start_soon(registry.lock, "reg", "k", lambda t=tag: hold(t))
        assert [len(seen) for seen in overlaps] == [1, 1]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        holder = locker("reg", "k", "holder", hold=True)
        await expect(("holder", "locked"))
        with trio.move_on_after(0.01) as scope:
            await registry.lock("reg", "k", just_done)
        assert scope.cancelled_caught
        otp.send(holder, "unlock")
        await expect(("holder", "result", "done"))
        assert await registry.lock("reg", "k", just_done) == "done"


async def test_a_waiter_raises_unknown_registry_when_the_registry_stops() -> None:
    async with otp.node():
        reg = await registry.start(keys="unique", name="reg")
        holder = locker("reg", "k", "holder", hold=True)
        await expect(("holder", "locked"))
        otp.spawn(otp.gen_server.stop, reg)
        with pytest.raises(UnknownRegistry):
            await registry.lock("reg", "k", just_done)
        otp.send(holder, "unlock")
        await expect(("holder", "result", "done"))  # the holder's function ran to its end


async def test_lock_on_an_unknown_registry_raises_unknown_registry() -> None:
    async with otp.node():
        with pytest.raises(UnknownRegistry):
            await registry.lock("nobody", "k", just_done)


# -- the model -----------------------------------------------------------------------------

_requests = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.sampled_from(["ok", "raise",
                                                                              "killed"])),
    min_size=1,
    max_size=8,
)


@given(requests=_requests)
async def test_one_holder_per_key_at_a_time_served_in_order(
    requests: list[tuple[str, int, str]],
) -> None:
    """Processes lock keys, hold them over a few checkpoints, and return, raise or get
    killed while holding: at most one of them is inside per key at any time, and each key
    is granted in the order it was asked for."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        inside: dict[str, int] = defaultdict(int)
        asked: dict[str, list[int]] = defaultdict(list)
        granted: dict[str, list[int]] = defaultdict(list)
        most_inside: dict[str, int] = defaultdict(int)

        def requester(index: int, key: str, checkpoints: int, ending: str) -> Any:
            async def fn() -> None:
                granted[key].append(index)
                inside[key] += 1
                most_inside[key] = max(most_inside[key], inside[key])
                try:
                    for _ in range(checkpoints):
                        await trio.lowlevel.checkpoint()
                    if ending == "raise":
                        raise RuntimeError("oops")
                    if ending == "killed":
                        otp.exit(otp.self(), otp.KILL)
                        await trio.lowlevel.checkpoint()
                finally:
                    inside[key] -= 1

            async def body() -> None:
                asked[key].append(index)
                await registry.lock("reg", key, fn)

            return body

        pids = [otp.spawn(requester(i, *request)) for i, request in enumerate(requests)]
        for pid in pids:
            await wait_down(pid)
        await settle()  # a process that killed itself may still be unwinding
        assert all(n <= 1 for n in most_inside.values())
        assert dict(granted) == dict(asked)
        assert all(n == 0 for n in inside.values())
        assert await registry.lock("reg", "a", just_done) == "done"
