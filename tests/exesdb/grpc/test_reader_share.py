"""The turns of costly connections' readers (:class:`exesdb.grpc._connection.ReaderShare`):
one slice at a time, the waiter with the least CPU taken lately first, within the share
for all of them; a waiter cancelled before or during its turn passes it on. And
:func:`reader_cpu`, which leaves the garbage collector's time out."""

from __future__ import annotations

import gc
import time

import trio
import trio.testing

from exesdb.grpc._connection import READER_BURST, ReaderShare, reader_cpu


async def test_turns_go_one_at_a_time_least_usage_first() -> None:
    share = ReaderShare(1.0)
    order: list[str] = []
    holding = 0
    most = 0

    async def slice_(name: str, usage: float) -> None:
        nonlocal holding, most
        await share.turn(usage)
        holding += 1
        most = max(most, holding)
        order.append(name)
        await trio.lowlevel.checkpoint()  # (a slice never yields; this one lets others try)
        holding -= 1
        share.done(0.0)

    async with trio.open_nursery() as nursery:
        await share.turn(0.0)  # the first turn is taken: the others queue
        for name, usage in (("heavy", 3.0), ("light", 0.0), ("middle", 1.0)):
            nursery.start_soon(slice_, name, usage)
        await trio.testing.wait_all_tasks_blocked()
        assert share.waiting == 3
        share.done(0.0)
    assert order == ["light", "middle", "heavy"]
    assert most == 1
    assert share.waiting == 0


async def test_the_turns_take_no_more_than_the_share_of_a_cpu() -> None:
    share = ReaderShare(0.5)
    spent = 0.01
    turns = 20
    started = time.perf_counter()
    for _ in range(turns):
        await share.turn(0.0)
        share.done(spent)  # each slice "took" 10 ms of CPU
    elapsed = time.perf_counter() - started
    # 200 ms of CPU at half a CPU: 400 ms, less the burst's worth (and the last slice's)
    assert elapsed >= (turns * spent - READER_BURST - spent) / 0.5 * 0.9, elapsed


async def test_a_waiter_cancelled_before_or_in_its_turn_gives_it_on() -> None:
    share = ReaderShare(1.0)
    got: list[str] = []

    async def waiter(name: str, scope_box: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_box.append(scope)
            await share.turn(0.0)
            got.append(name)
            share.done(0.0)

    await share.turn(0.0)
    async with trio.open_nursery() as nursery:
        first: list[trio.CancelScope] = []
        second: list[trio.CancelScope] = []
        nursery.start_soon(waiter, "first", first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "second", second)
        await trio.testing.wait_all_tasks_blocked()
        first[0].cancel()  # cancelled while waiting: leaves the queue
        await trio.testing.wait_all_tasks_blocked()
        assert share.waiting == 1
        share.done(0.0)  # the turn goes to "second"
    assert got == ["second"]
    await share.turn(0.0)  # and the turns are free again (no turn was lost)
    share.done(0.0)

    # Cancelled in its turn, while it waits for the share to have room: the turn goes on.
    await share.turn(0.0)
    async with trio.open_nursery() as nursery:
        third: list[trio.CancelScope] = []
        nursery.start_soon(waiter, "third", third)
        nursery.start_soon(waiter, "fourth", [])
        await trio.testing.wait_all_tasks_blocked()
        share.done(READER_BURST + 0.05)  # given to "third", which must wait ~50 ms...
        await trio.testing.wait_all_tasks_blocked()
        assert share.waiting == 1
        third[0].cancel()  # ...and is cancelled meanwhile
    assert got == ["second", "fourth"]
    await share.turn(0.0)
    share.done(0.0)


def test_reader_cpu_leaves_out_garbage_collections() -> None:
    reader_cpu()  # (installs its gc callback)
    junk = [[i] for i in range(200_000)]  # something for a full collection to walk
    began_cpu, began = reader_cpu(), time.thread_time()
    for _ in range(5):
        gc.collect()
    collected = time.thread_time() - began
    counted = reader_cpu() - began_cpu
    del junk
    assert collected > 0.005  # the collections did take CPU...
    assert counted < collected / 4  # ...and almost none of it is counted
