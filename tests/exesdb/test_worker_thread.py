"""The storage's dedicated worker thread (exesdb.storage._thread.WorkerThread): calls run
off the trio thread, in order, and a cancellation never cuts a call's outcome off."""

from __future__ import annotations

import threading

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from exesdb.storage._thread import WorkerThread


@pytest.fixture
def worker() -> WorkerThread:
    return WorkerThread("test worker")


async def test_a_call_returns_its_result_and_runs_off_the_trio_thread(
        worker: WorkerThread) -> None:
    ran_on = await worker.run(threading.get_ident)
    assert ran_on != threading.get_ident()
    assert await worker.run(pow, 2, 10) == 1024
    worker.stop()


async def test_a_call_raises_its_exception_in_the_task(worker: WorkerThread) -> None:
    with pytest.raises(ZeroDivisionError):
        await worker.run(divmod, 1, 0)
    assert await worker.run(abs, -3) == 3  # the thread serves on
    worker.stop()


async def test_calls_of_concurrent_tasks_run_in_submission_order(worker: WorkerThread) -> None:
    order: list[int] = []
    release = threading.Event()
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await worker.run(lambda: (release.wait(5), order.append(i), i)[2])

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(call, i)
            await trio.lowlevel.checkpoint()  # each call queued before the next
        release.set()
    assert order == list(range(20))
    assert results == {i: i for i in range(20)}
    worker.stop()


async def test_a_cancelled_caller_still_gets_its_calls_result_then_the_cancellation(
        worker: WorkerThread) -> None:
    release = threading.Event()
    got: list[str] = []

    def slow_write() -> str:
        release.wait(5)
        return "written"

    scope = trio.CancelScope()

    async def cancel_then_release() -> None:
        await wait_all_tasks_blocked()  # the caller waits for its call
        scope.cancel()
        await wait_all_tasks_blocked()  # ... and waits on after the cancellation
        release.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_then_release)
        with scope:
            got.append(await worker.run(slow_write))
            await trio.lowlevel.checkpoint()  # the cancellation comes here
            got.append("not reached")
    assert scope.cancelled_caught
    assert got == ["written"]
    worker.stop()


async def test_a_caller_cancelled_before_submitting_runs_nothing(worker: WorkerThread) -> None:
    ran: list[bool] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await worker.run(lambda: ran.append(True))
    assert scope.cancelled_caught
    assert await worker.run(len, ran) == 0
    worker.stop()


async def test_calls_after_stop_are_refused_and_queued_ones_finish(
        worker: WorkerThread) -> None:
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        results: list[str] = []

        async def queued() -> None:
            results.append(await worker.run(lambda: (release.wait(5), "done")[1]))

        nursery.start_soon(queued)
        await wait_all_tasks_blocked()
        worker.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await worker.run(abs, 1)
        release.set()
    assert results == ["done"]
