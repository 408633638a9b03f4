"""The PostgreSQL backend's one-statement append (exesdb.storage.postgres_schema's
Queries.append): it writes only on the head its writer last committed, writes nothing
otherwise, and appends of several nodes at once keep $all gapless and in commit order."""

from __future__ import annotations

import psycopg
import pytest
import trio
from psycopg import sql

from exesdb import ANY, NO_STREAM, NewEvent, WrongExpectedVersion
from exesdb.storage import postgres
from exesdb.storage.ops import Append
from exesdb.storage.postgres import PostgresBackend
from exesdb.storage.postgres_schema import WRITER_SETTINGS, schema_name
from exesdb.storage.postgres_wire import execute

from .helpers import new_events, worker_calls


@pytest.fixture
def store(pg_backend):
    return pg_backend


async def _run_statement(backend, ops):
    """Plan ``ops`` as the one statement and send it; whether it wrote them."""
    engine = backend._engine
    call = engine.plan_append(ops)
    assert call is not None
    answer = await execute(call.conn, call.name, call.query, call.types, call.params, 10.0)
    return engine.answered(call, answer) is not None


async def test_the_write_connection_plans_once_and_never_scans_the_events(store):
    def show(conn):
        values = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                  for name, _value in WRITER_SETTINGS}
        conn.rollback()
        return values

    assert await store._writes.run(show, store._engine._conn) == dict(WRITER_SETTINGS)


async def test_a_statement_on_a_moved_head_writes_nothing_and_the_transaction_writes_it(
        pg_server, store):
    await store.append("s", NO_STREAM, new_events(1))
    other = await PostgresBackend.open(pg_server.dsn, store.store_id)
    try:
        assert await other.append("s", 0, new_events(1)) == 1
    finally:
        await other.close()
    # This writer does not know: its cached head is the one before the other's append.
    written = await _run_statement(store, [Append("s", ANY, new_events(1))])
    assert not written
    assert [e.position for e in await store.read_all()] == [0, 1]
    assert store._engine._head is None  # the cache was dropped
    calls = worker_calls(store)
    assert await store.append("s", 1, new_events(1)) == 2
    assert calls == []  # read afresh, then one statement
    assert [(e.position, e.event_number) for e in await store.read_stream("s")] == [
        (0, 0), (1, 1), (2, 2)]


async def test_a_statement_carrying_a_stored_id_writes_nothing(store):
    events = new_events(1)
    await store.append("s", NO_STREAM, events)
    # A re-send: the writer's cache does not know ids (it never looks them up), the
    # statement refuses it, and the transaction answers it idempotently.
    written = await _run_statement(store, [Append("s", ANY, events)])
    assert not written
    assert len(await store.read_all()) == 1
    assert await store.append("s", ANY, events) == 0
    assert len(await store.read_all()) == 1


async def test_a_statement_on_the_current_head_writes_once(store):
    await store.append("s", NO_STREAM, new_events(1))  # the first write: the transaction
    ops = [Append("s", 0, new_events(2)), Append("new", NO_STREAM, new_events(1)),
           Append("s", 2, new_events(1))]
    assert await store._refresh(ops)  # the writer now knows "new" is missing
    written = await _run_statement(store, ops)
    assert written
    assert [(e.stream_id, e.position, e.event_number) for e in await store.read_all()] == [
        ("s", 0, 0), ("s", 1, 1), ("s", 2, 2), ("new", 3, 0), ("s", 4, 3)]
    assert await store.list_streams() == ["new", "s"]
    calls = worker_calls(store)
    assert await store.append("new", 0, new_events(1)) == 1
    assert calls == []


async def test_nodes_appending_at_once_keep_all_gapless_and_each_stream_in_order(
        pg_server, pg_store_id):
    nodes = [await PostgresBackend.open(pg_server.dsn, pg_store_id) for _ in range(3)]
    per_task = 15
    answers: list[tuple[str, int, object]] = []
    try:
        async def appender(node: PostgresBackend, stream: str, name: str) -> None:
            for i in range(per_task):
                event = NewEvent("Happened", {"by": name, "i": i})
                version = await node.append(stream, ANY, [event])
                answers.append((stream, version, event.event_id))

        async with trio.open_nursery() as nursery:
            for n, node in enumerate(nodes):
                for stream in ("shared", f"own-{n}"):
                    nursery.start_soon(appender, node, stream, f"{n}-{stream}")
        events = await nodes[0].read_all()
    finally:
        for node in nodes:
            await node.close()
    total = len(nodes) * 2 * per_task
    assert [e.position for e in events] == list(range(total))
    by_stream: dict[str, list[int]] = {}
    for event in events:
        by_stream.setdefault(event.stream_id, []).append(event.event_number)
    for numbers in by_stream.values():
        assert numbers == list(range(len(numbers)))
    stored = {(e.stream_id, e.event_number, e.event_id) for e in events}
    assert stored == {(stream, version, eid) for stream, version, eid in answers}


def _head_constraints(server, schema):
    checks = server.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
        (sql.Identifier(schema, "head").as_string(),))
    indexes = server.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'head' "
        "ORDER BY indexname", (schema,))
    return [name for (name,) in checks], [name for (name,) in indexes]


async def test_the_head_table_holds_one_row_without_a_check_constraint(pg_server, store):
    assert _head_constraints(pg_server, store.schema) == ([], ["head_one_row", "head_pkey"])
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_server.execute(sql.SQL("INSERT INTO {}.head VALUES (2, 0, 0, 0, 0)").format(
            sql.Identifier(store.schema)).as_string())


async def test_a_store_made_by_an_older_exesdb_loses_the_heads_check_when_opened(
        pg_server, pg_store_id):
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    await backend.append("s", NO_STREAM, new_events(1))
    await backend.close()
    schema = schema_name(pg_store_id)
    head = sql.Identifier(schema, "head")
    # As exesdb made it before: a CHECK constraint, no one-row index.
    pg_server.execute(sql.SQL("DROP INDEX {}").format(
        sql.Identifier(schema, "head_one_row")).as_string())
    pg_server.execute(sql.SQL("ALTER TABLE {} ADD CHECK (id = 1)").format(head).as_string())
    assert _head_constraints(pg_server, schema) == (["head_id_check"], ["head_pkey"])
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        assert _head_constraints(pg_server, schema) == ([], ["head_one_row", "head_pkey"])
        assert await backend.append("s", 0, new_events(1)) == 1
        assert [e.position for e in await backend.read_all()] == [0, 1]
    finally:
        await backend.close()


# -- a writer whose cache is stale reads the head and streams, then sends the statement ---


async def test_appends_alternating_between_nodes_take_no_transaction(pg_server, pg_store_id):
    a = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    b = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        assert await a.append("s", NO_STREAM, new_events(1)) == 0
        assert await b.append("t", NO_STREAM, new_events(1)) == 0  # each one's first: the
        calls_a, calls_b = worker_calls(a), worker_calls(b)  # transaction
        a.saw_committed(1)
        for version in range(1, 7):
            node = b if version % 2 else a
            node.saw_committed(version)  # as the listener tells it: the head moved
            assert await node.append("s", version - 1, new_events(1)) == version
        assert calls_a == calls_b == []
        assert [e.event_number for e in await a.read_stream("s")] == list(range(7))
        # A stream new to everyone: in one statement too.
        assert await b.append("new", NO_STREAM, new_events(1)) == 0
        assert await a.append("new", 0, new_events(1)) == 1
        assert calls_a == calls_b == []
        # A refusal is the transaction's to tell (it looks the ids up: a re-send of a
        # written append is answered with its version, not refused).
        with pytest.raises(WrongExpectedVersion):
            await b.append("s", 2, new_events(1))
        assert len(calls_b) == 1
        assert await a.list_streams() == ["new", "s", "t"]
        assert [e.position for e in await b.read_all()] == list(range(10))
    finally:
        await a.close()
        await b.close()


async def test_a_statement_refused_after_a_fresh_read_sends_the_next_write_to_the_transaction(
        pg_server, pg_store_id, monkeypatch):
    a = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    b = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        await a.append("s", NO_STREAM, new_events(1))
        await b.append("s", 0, new_events(1))
        real_execute = postgres.execute
        race = {"armed": False}

        async def racing(conn, name, *args):
            answer = await real_execute(conn, name, *args)
            if name == b"exesdb_refresh" and race["armed"]:
                race["armed"] = False
                await b.append("s", ANY, new_events(1))  # between a's read and statement
            return answer

        monkeypatch.setattr(postgres, "execute", racing)
        calls = worker_calls(a)
        a.saw_committed(1)  # it knows its cache is stale: it reads afresh
        race["armed"] = True
        assert await a.append("s", ANY, new_events(1)) == 3  # refused, then the transaction
        assert len(calls) == 1
        assert await a.append("s", 3, new_events(1)) == 4  # its cache is current again
        assert len(calls) == 1
        await b.append("s", 4, new_events(1))
        a.saw_committed(5)
        assert await a.append("s", 5, new_events(1)) == 6  # no read: the transaction
        assert len(calls) == 2
        await b.append("s", 6, new_events(1))
        a.saw_committed(7)
        assert await a.append("s", 7, new_events(1)) == 8  # reads afresh again
        assert len(calls) == 2
        assert [e.event_number for e in await a.read_stream("s")] == list(range(9))
        assert [e.position for e in await a.read_all()] == list(range(9))
    finally:
        await a.close()
        await b.close()
