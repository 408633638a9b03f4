"""Several nodes appending to one PostgreSQL store at once: ``$all`` stays gapless and in
commit order, and a transaction that fails gives its positions back."""

from __future__ import annotations

import random

import psycopg
import pytest
import trio
from psycopg import sql

from exesdb import ANY, NO_STREAM, NewEvent, WrongExpectedVersion
from exesdb.errors import StorageUnavailable
from exesdb.storage import Append
from exesdb.storage.postgres import PostgresBackend

from .helpers import new_events

NODES = 3
APPENDERS_PER_NODE = 2
WRITES_PER_APPENDER = 40
STREAMS = [f"s{i}" for i in range(6)]


async def _open_nodes(server, store_id, count, **kwargs):
    return [await PostgresBackend.open(server.dsn, store_id, **kwargs) for _ in range(count)]


async def _close(nodes):
    for node in nodes:
        await node.close()


async def test_concurrent_appenders_on_several_nodes_give_a_gapless_all_no_reader_skips(
        pg_server, pg_store_id):
    """Appenders on three nodes write single and grouped appends while pollers on two
    more nodes follow ``$all``: every page a poller reads starts exactly where it stopped
    and has no gap, so no position is ever seen before a lower one. At the end ``$all``
    holds every event once, at positions 0..N-1, and every stream numbers its events
    without gaps in ``$all`` order."""
    writers = await _open_nodes(pg_server, pg_store_id, NODES)
    readers = await _open_nodes(pg_server, pg_store_id, 2)
    rng = random.Random(7)
    written: list[NewEvent] = []
    finished = trio.Event()
    pages = [0, 0]

    async def appender(node):
        for _ in range(WRITES_PER_APPENDER):
            if rng.random() < 0.3:
                ops = [Append(rng.choice(STREAMS), ANY, [NewEvent("T", rng.random())])
                       for _ in range(rng.randint(2, 5))]
            else:
                ops = [Append(rng.choice(STREAMS), ANY,
                              [NewEvent("T", rng.random()) for _ in range(rng.randint(1, 3))])]
            results = await node.write(ops)
            assert all(isinstance(result, int) for result in results), results
            written.extend(event for op in ops for event in op.events)

    async def poller(index, node):
        next_position = 0
        while True:
            done = finished.is_set()
            page = await node.read_all(next_position, 50)
            assert [e.position for e in page] == list(range(next_position,
                                                            next_position + len(page)))
            next_position += len(page)
            pages[index] += 1
            if done and not page:
                return

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index, node in enumerate(readers):
                nursery.start_soon(poller, index, node)
            async with trio.open_nursery() as appenders:
                for node in writers:
                    for _ in range(APPENDERS_PER_NODE):
                        appenders.start_soon(appender, node)
            finished.set()
    try:
        everything = await readers[0].read_all(0, 100_000)
        assert [e.position for e in everything] == list(range(len(written)))
        assert sorted(e.event_id for e in everything) == sorted(e.event_id for e in written)
        numbers: dict[str, list[int]] = {}
        for event in everything:
            numbers.setdefault(event.stream_id, []).append(event.event_number)
        assert all(found == list(range(len(found))) for found in numbers.values())
        assert min(pages) > 2  # the pollers really ran alongside the appenders
    finally:
        await _close(writers + readers)


async def test_the_same_expected_version_from_several_nodes_succeeds_once(pg_server,
                                                                          pg_store_id):
    nodes = await _open_nodes(pg_server, pg_store_id, NODES)
    try:
        await nodes[0].append("s", NO_STREAM, new_events(1))
        results: list[object] = []  # versions and WrongExpectedVersion errors

        async def attempt(node):
            try:
                results.append(await node.append("s", 0, new_events(1)))
            except WrongExpectedVersion as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                for _ in range(3):
                    nursery.start_soon(attempt, node)
        assert results.count(1) == 1
        assert await nodes[1].stream_version("s") == 1
    finally:
        await _close(nodes)


@pytest.fixture
def events_locked(pg_server):
    """Lock a store's events table from another session (``lock(schema)``) until the
    test releases it (``release()``) or ends."""
    conn = psycopg.connect(pg_server.dsn)

    class Lock:
        def lock(self, schema):
            conn.execute(sql.SQL("LOCK TABLE {}.events IN EXCLUSIVE MODE")
                         .format(sql.Identifier(schema)))

        def release(self):
            conn.rollback()

    try:
        yield Lock()
    finally:
        conn.close()


async def test_an_append_whose_transaction_fails_gives_its_positions_back(
        pg_server, pg_store_id, events_locked):
    store = await PostgresBackend.open(pg_server.dsn, pg_store_id, statement_timeout=0.5)
    try:
        await store.append("s", NO_STREAM, new_events(2))
        events_locked.lock(store.schema)
        # The append takes positions 2..4 from the head, then cannot insert its events
        # and fails: its transaction rolls back, the head with it.
        with pytest.raises(StorageUnavailable, match="statement timeout"):
            await store.append("s", 1, new_events(3))
        events_locked.release()
        assert await store.append("t", NO_STREAM, new_events(1)) == 0
        assert [(e.stream_id, e.position) for e in await store.read_all()] == [
            ("s", 0), ("s", 1), ("t", 2)]
        assert store.last_position == 2
        assert await store.stream_version("s") == 1
    finally:
        await store.close()


async def test_a_write_waiting_on_the_database_does_not_block_the_trio_thread(
        pg_server, pg_store_id, events_locked):
    store = await PostgresBackend.open(pg_server.dsn, pg_store_id, statement_timeout=1)
    ticks = 0
    try:
        events_locked.lock(store.schema)
        async with trio.open_nursery() as nursery:
            async def tick():
                nonlocal ticks
                while True:
                    await trio.sleep(0.01)
                    ticks += 1

            nursery.start_soon(tick)
            with pytest.raises(StorageUnavailable):
                await store.append("s", ANY, new_events(1))
            nursery.cancel_scope.cancel()
        assert ticks > 30  # the trio thread ran on during the write's second of waiting
    finally:
        events_locked.release()
        await store.close()
