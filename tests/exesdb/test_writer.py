"""The group-committing writer gen_server."""

from __future__ import annotations

import pytest
import trio

import otp
from exesdb import ANY, NO_STREAM, NewEvent, StorageError, WrongExpectedVersion
from exesdb.storage import Append, Backend, writer

from .helpers import new_events


class Gated(Backend):
    """Delegates to a real backend; records each transaction's size and, while ``gate`` is
    set, holds every transaction until the gate opens."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.sizes: list[int] = []
        self.gate: trio.Event | None = None
        self.started = trio.Event()

    async def write(self, ops):
        self.sizes.append(len(ops))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self.inner.write(ops)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    # the abstract reads, delegated
    async def read_stream(self, *args, **kwargs):
        return await self.inner.read_stream(*args, **kwargs)

    async def read_all(self, *args, **kwargs):
        return await self.inner.read_all(*args, **kwargs)

    async def stream_version(self, stream_id):
        return await self.inner.stream_version(stream_id)

    async def list_streams(self):
        return await self.inner.list_streams()

    async def head_position(self):
        return await self.inner.head_position()

    async def read_snapshot(self, *args):
        return await self.inner.read_snapshot(*args)

    async def list_snapshots(self, *args):
        return await self.inner.list_snapshots(*args)

    async def read_checkpoint(self, name):
        return await self.inner.read_checkpoint(name)

    async def stats(self):
        return await self.inner.stats()

    async def flush(self):
        return await self.inner.flush()

    async def list_checkpoints(self):
        return await self.inner.list_checkpoints()

    async def read_subscription(self, name):
        return await self.inner.read_subscription(name)

    async def list_subscriptions(self):
        return await self.inner.list_subscriptions()

    @property
    def last_position(self):
        return self.inner.last_position

    async def close(self):
        await self.inner.close()


async def _run_all(fns):
    """Run the async callables concurrently; return their results or exceptions, in order."""
    results: list = [None] * len(fns)

    async def one(i, fn):
        try:
            results[i] = await fn()
        except Exception as exc:
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i, fn in enumerate(fns):
            nursery.start_soon(one, i, fn)
    return results


async def test_concurrent_appends_with_the_same_expected_version_exactly_one_wins(backend):
    async with otp.node():
        pid = await writer.start_link(backend)
        await writer.append(pid, "s", NO_STREAM, new_events(1))
        results = await _run_all([
            lambda: writer.append(pid, "s", 0, new_events(2)) for _ in range(20)
        ])
    assert sum(1 for r in results if r == 2) == 1
    assert all(isinstance(r, WrongExpectedVersion) for r in results if r != 2)
    assert await backend.stream_version("s") == 2


async def test_concurrent_appends_to_the_backend_directly_exactly_one_wins(backend):
    results = await _run_all([
        lambda: backend.append("s", NO_STREAM, new_events(1)) for _ in range(10)
    ])
    assert results.count(0) == 1
    assert sum(isinstance(r, WrongExpectedVersion) for r in results) == 9


async def test_appends_arriving_during_a_commit_share_the_next_transaction(backend):
    gated = Gated(backend)
    gated.gate = trio.Event()
    async with otp.node():
        pid = await writer.start_link(gated)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.append, pid, "first", ANY, new_events(1))
            await gated.started.wait()
            for i in range(10):
                nursery.start_soon(writer.append, pid, f"s{i}", ANY, new_events(1))
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
    assert gated.sizes == [1, 10]
    assert len(await backend.read_all()) == 11


async def test_a_caller_is_answered_only_once_its_transaction_is_written(backend):
    gated = Gated(backend)
    gated.gate = trio.Event()
    answered = []
    async with otp.node():
        pid = await writer.start_link(gated)

        async def append():
            answered.append(await writer.append(pid, "s", ANY, new_events(1)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            await gated.started.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert answered == []
            assert await backend.stream_version("s") == -1
            gated.gate.set()
    assert answered == [0]


async def test_one_wrong_expected_version_fails_only_its_own_append(backend):
    gated = Gated(backend)
    gated.gate = trio.Event()
    async with otp.node():
        pid = await writer.start_link(gated)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.append, pid, "warmup", ANY, new_events(1))
            await gated.started.wait()
            results = []

            async def batch():
                results.extend(await _run_all([
                    lambda: writer.append(pid, "a", NO_STREAM, new_events(1)),
                    lambda: writer.append(pid, "b", 7, new_events(1)),
                    lambda: writer.append(pid, "c", NO_STREAM, new_events(2)),
                ]))

            nursery.start_soon(batch)
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
    assert gated.sizes == [1, 3]
    assert results[0] == 0 and results[2] == 1
    assert isinstance(results[1], WrongExpectedVersion)
    assert await backend.list_streams() == ["a", "c", "warmup"]


async def test_appends_in_one_transaction_see_each_other_in_arrival_order(backend):
    ops_results = await backend.write([
        Append("s", NO_STREAM, new_events(2)),
        Append("s", 1, new_events(1)),
        Append("s", NO_STREAM, new_events(1)),
    ])
    assert ops_results[:2] == [1, 2]
    assert isinstance(ops_results[2], WrongExpectedVersion)
    assert ops_results[2].actual == 2


async def test_a_resend_in_the_same_transaction_is_idempotent(backend):
    sent = new_events(2)
    results = await backend.write([
        Append("s", NO_STREAM, sent),
        Append("s", NO_STREAM, sent),
        Append("s", ANY, sent),
    ])
    assert results == [1, 1, 1]
    assert await backend.stream_version("s") == 1


async def test_max_batch_bounds_the_size_of_a_transaction(backend):
    gated = Gated(backend)
    gated.gate = trio.Event()
    async with otp.node():
        pid = await writer.start_link(gated, max_batch=4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.append, pid, "first", ANY, new_events(1))
            await gated.started.wait()
            for i in range(10):
                nursery.start_soon(writer.append, pid, f"s{i}", ANY, new_events(1))
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
    assert gated.sizes == [1, 4, 4, 2]


async def test_stopping_the_writer_answers_every_request_it_holds(backend):
    gated = Gated(backend)
    gated.gate = trio.Event()
    async with otp.node():
        pid = await writer.start_link(gated)
        results = []

        async def append(stream):
            results.append(await writer.append(pid, stream, ANY, new_events(1)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, "first")
            await gated.started.wait()
            for i in range(3):
                nursery.start_soon(append, f"s{i}")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(otp.gen_server.stop, pid)
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()
        assert not otp.is_alive(pid)
    assert results == [0, 0, 0, 0]
    assert len(await backend.read_all()) == 4


async def test_every_write_operation_goes_through_the_writer(backend):
    async with otp.node():
        pid = await writer.start_link(backend)
        await writer.append(pid, "s", NO_STREAM, [NewEvent("T", 1)])
        await writer.delete_stream(pid, "s")
        await writer.record_snapshot(pid, "src", "s", 0, {"x": 1})
        await writer.save_checkpoint(pid, "sub", 0)
        assert await writer.submit(pid, Append("t", ANY, new_events(1))) == 0
        await writer.delete_snapshot(pid, "src", "s", 0)
        await writer.delete_checkpoint(pid, "sub")
    assert await backend.stream_version("s") == -1
    assert await backend.list_snapshots() == []
    assert await backend.list_checkpoints() == {}


async def test_a_storage_error_is_raised_in_the_caller_and_the_writer_goes_on(tmp_path):
    from exesdb.storage import SQLiteBackend

    store = await SQLiteBackend.open(tmp_path / "store")
    async with otp.node():
        pid = await writer.start_link(store)
        await store.close()
        with pytest.raises(StorageError, match="closed"):
            await writer.append(pid, "s", ANY, new_events(1))
        assert otp.is_alive(pid)
