"""The lock of one side of a server call (exesdb.grpc._connection._SideLock): free, taken
without yielding; held, taken in turn, first come first served; a waiter cancelled
leaves the line, and one cancelled as it was handed the lock passes it on."""

from __future__ import annotations

import trio
import trio.testing

from exesdb.grpc._connection import _SideLock


async def _take(lock: _SideLock) -> None:
    if lock.held:
        await lock.wait_turn()
    else:
        lock.held = True


async def test_a_free_lock_is_taken_at_once_and_freed_by_release():
    lock = _SideLock()
    await _take(lock)
    assert lock.held
    lock.release()
    assert not lock.held


async def test_waiters_take_the_lock_in_turn():
    lock = _SideLock()
    await _take(lock)
    order: list[int] = []

    async def waiter(i: int) -> None:
        await _take(lock)
        order.append(i)
        await trio.lowlevel.checkpoint()
        lock.release()

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert order == [0, 1, 2]
    assert not lock.held


async def test_a_cancelled_waiter_leaves_the_line():
    lock = _SideLock()
    await _take(lock)
    got: list[str] = []

    async def waiter(name: str, scope_out: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_out.append(scope)
            await _take(lock)
            got.append(name)
            lock.release()

    scopes: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "first", scopes)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "second", scopes)
        await trio.testing.wait_all_tasks_blocked()
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert got == ["second"]
    assert not lock.held
