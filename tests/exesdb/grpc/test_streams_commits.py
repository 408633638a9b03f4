"""exesdb.systems.commits: waiting for the store's next commit."""

from __future__ import annotations

import trio
import trio.testing

from exesdb.systems.commits import CommitSignal


async def test_wait_past_returns_at_once_when_the_head_is_already_past():
    signal = CommitSignal(head=10)
    with trio.fail_after(1):
        assert await signal.wait_past(9) == 10


async def test_wait_past_waits_for_a_commit_past_the_position():
    signal = CommitSignal()
    results = []

    async def waiter() -> None:
        results.append(await signal.wait_past(5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        signal.advance(5)  # not past 5: the waiter keeps waiting
        await trio.testing.wait_all_tasks_blocked()
        assert results == []
        signal.advance(8)
    assert results == [8]


async def test_every_waiter_wakes_on_one_advance():
    signal = CommitSignal()
    results = []

    async def waiter(position: int) -> None:
        results.append((position, await signal.wait_past(position)))

    async with trio.open_nursery() as nursery:
        for position in (-1, 0, 1):
            nursery.start_soon(waiter, position)
        await trio.testing.wait_all_tasks_blocked()
        signal.advance(2)
    assert sorted(results) == [(-1, 2), (0, 2), (1, 2)]


def test_the_head_never_moves_back():
    signal = CommitSignal()
    assert signal.head == -1
    signal.advance(7)
    signal.advance(3)
    assert signal.head == 7
