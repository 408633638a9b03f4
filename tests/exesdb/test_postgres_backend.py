"""PostgresBackend: what only the PostgreSQL backend has (its schema per store, several
nodes on one store, leader fencing), on the session's PostgreSQL server. The Backend
interface itself is tested on both backends by the storage suites."""

from __future__ import annotations

import psycopg
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from exesdb import (
    ANY,
    NO_STREAM,
    InvalidArgument,
    NewEvent,
    StorageError,
    StreamDeleted,
    WrongExpectedVersion,
)
from exesdb.errors import StaleEpoch
from exesdb.storage import Append, SaveCheckpoint, SaveSubscription
from exesdb.storage.fencing import Fenced
from exesdb.storage.postgres import PostgresBackend
from exesdb.storage.postgres_schema import APPEND_FUNCTION, schema_name

from .helpers import new_events, worker_calls

STORE_IDS = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}", fullmatch=True)


@pytest.fixture
def store(pg_backend):
    return pg_backend


def _query(server, query, params=()):
    return server.execute(query, params)


# -- the schema of a store ----------------------------------------------------------------


@given(STORE_IDS)
def test_a_schema_name_is_a_postgresql_identifier_derived_from_the_store_id(store_id):
    name = schema_name(store_id)
    assert name.startswith("exesdb_")
    assert len(name.encode()) <= 63
    assert name == schema_name(store_id)


@given(STORE_IDS, STORE_IDS)
def test_different_store_ids_of_up_to_56_characters_get_different_schemas(first, second):
    if first != second and len(first) <= 56 and len(second) <= 56:
        assert schema_name(first) != schema_name(second)


def test_a_long_store_id_gets_a_shortened_name_with_a_hash_of_the_whole_id():
    base = "a" * 60
    assert schema_name(base + "1") != schema_name(base + "2")
    assert len(schema_name(base + "1")) == 63


async def test_opening_a_store_creates_its_schema_and_tables(pg_server, store):
    tables = _query(pg_server, "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = %s ORDER BY table_name", (store.schema,))
    assert [name for (name,) in tables] == [
        "checkpoints", "events", "head", "leader_epoch", "members", "meta", "snapshots",
        "streams", "subscriptions",
    ]


async def test_a_store_id_with_dots_dashes_and_capitals_is_quoted_not_spliced(pg_server):
    store = await PostgresBackend.open(pg_server.dsn, "Odd.Store-Id_1")
    try:
        await store.append("s", NO_STREAM, new_events(1))
        assert store.schema == "exesdb_Odd.Store-Id_1"
        assert [e.event_number for e in await store.read_stream("s")] == [0]
    finally:
        await store.close()


async def test_several_nodes_opening_a_new_store_at_once_create_it_once(pg_server, pg_store_id):
    opened = []

    async def open_one():
        opened.append(await PostgresBackend.open(pg_server.dsn, pg_store_id))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(open_one)
    try:
        await opened[0].append("s", NO_STREAM, new_events(1))
        for backend in opened:
            assert await backend.stream_version("s") == 0
    finally:
        for backend in opened:
            await backend.close()


async def test_a_schema_of_another_application_is_refused_and_left_alone(pg_server):
    pg_server.execute('CREATE SCHEMA "exesdb_foreign"')
    pg_server.execute('CREATE TABLE "exesdb_foreign".data(x int)')
    with pytest.raises(StorageError, match="not an exesdb store"):
        await PostgresBackend.open(pg_server.dsn, "foreign")
    tables = _query(pg_server, "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'exesdb_foreign'")
    assert tables == [("data",)]


async def test_the_schema_of_another_store_is_refused(pg_server, store):
    with pytest.raises(StorageError, match="holds store"):
        await PostgresBackend.open(pg_server.dsn, "another", schema=store.schema)


async def test_a_damaged_meta_table_is_refused(pg_server, pg_store_id):
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    await backend.close()
    pg_server.execute(sql.SQL("UPDATE {}.meta SET value = '9' WHERE key = 'schema_version'")
                      .format(sql.Identifier(schema_name(pg_store_id))).as_string())
    with pytest.raises(StorageError, match="meta table is corrupt"):
        await PostgresBackend.open(pg_server.dsn, pg_store_id)


async def test_an_unreachable_database_fails_the_open_promptly(pg_server):
    from exesdb.errors import StorageUnavailable

    with trio.fail_after(10):
        with pytest.raises(StorageUnavailable, match="connecting to the database failed"):
            await PostgresBackend.open("host=127.0.0.1 port=1 user=postgres", "s",
                                       connect_timeout=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"durable": 1}, "durable: must be True or False"),
    ({"statement_timeout": 0}, "statement_timeout: must be a number of seconds > 0"),
    ({"connect_timeout": "5"}, "connect_timeout: must be a number of seconds > 0"),
    ({"max_readers": 0}, "max_readers: must be an int >= 1"),
    ({"schema": ""}, "schema: must be a str of 1 to 63 bytes"),
])
async def test_open_rejects_bad_settings_naming_the_field(pg_server, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        await PostgresBackend.open(pg_server.dsn, "s", **kwargs)


async def test_open_rejects_a_bad_store_id(pg_server):
    with pytest.raises(InvalidArgument, match="store_id"):
        await PostgresBackend.open(pg_server.dsn, "../x")


# -- what a store keeps ----------------------------------------------------------------------


async def test_everything_written_is_there_after_reopening(pg_server, pg_store_id):
    store = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    await store.append("s", NO_STREAM, new_events(3))
    await store.delete_stream("gone", hard=True)
    await store.record_snapshot("src", "s", 2, {"state": 1})
    await store.save_checkpoint("c", 2)
    await store.save_subscription("sub", "by_stream", "s", 0)
    await store.close()
    store = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        assert [e.data for e in await store.read_stream("s")] == [{"i": i} for i in range(3)]
        assert store.last_position == 2
        with pytest.raises(StreamDeleted):
            await store.stream_version("gone")
        assert (await store.read_snapshot("src", "s")).data == {"state": 1}
        assert await store.read_checkpoint("c") == 2
        assert (await store.read_subscription("sub")).selector == "s"
    finally:
        await store.close()


_examples = iter(range(10**9))


@settings(max_examples=10)
@given(names=st.lists(st.text(min_size=1, max_size=8).filter(lambda name: name != "$all"),
                     min_size=1, max_size=6, unique=True))
async def test_any_names_round_trip_and_streams_list_in_python_order(pg_server, names):
    store = await PostgresBackend.open(pg_server.dsn, f"names{next(_examples)}")
    try:
        for name in names:
            await store.append(name, ANY, new_events(1))
            await store.save_checkpoint(name, 7)
            await store.record_snapshot(name, name, 0, name)
        assert await store.list_streams() == sorted(names)
        assert await store.list_checkpoints() == dict.fromkeys(names, 7)
        snapshots = await store.list_snapshots(names[0])
        assert [(s.stream_uuid, s.data) for s in snapshots] == [(names[0], names[0])]
    finally:
        await store.close()


async def test_the_selector_is_stored_as_compact_sorted_json(pg_server, store):
    await store.save_subscription("sub", "by_event_pattern", {"b": 1, "a": "é"}, 0)
    rows = _query(pg_server, sql.SQL("SELECT selector FROM {}.subscriptions")
                  .format(sql.Identifier(store.schema)).as_string())
    assert rows == [('{"a":"é","b":1}',)]


async def test_numbers_beyond_a_bigint_are_refused_naming_the_field(store):
    with pytest.raises(InvalidArgument, match=r"position: must be at most 2\*\*63 - 1"):
        await store.save_checkpoint("c", 2**63)
    with pytest.raises(InvalidArgument, match=r"version: must be at most 2\*\*63 - 1"):
        await store.record_snapshot("src", "s", 2**63, {})
    assert await store.read_snapshot("src", "s", 2**64) is None
    assert await store.read_all(2**70) == []


async def test_a_flipped_byte_in_an_event_fails_its_reads_and_nothing_else(pg_server, store):
    await store.append("s", NO_STREAM, new_events(3))
    pg_server.execute(
        sql.SQL("UPDATE {}.events SET rec = set_byte(rec, 20, get_byte(rec, 20) # 1) "
                "WHERE pos = 1").format(sql.Identifier(store.schema)).as_string()
    )
    with pytest.raises(StorageError, match="corrupt event record at \\$all position 1"):
        await store.read_stream("s")
    with pytest.raises(StorageError, match="checksum mismatch"):
        await store.read_all()
    assert [e.position for e in await store.read_all(2)] == [2]
    assert [e.event_number for e in await store.read_stream("s", 0, 1)] == [0]


async def test_an_edited_stream_row_fails_verification(pg_server, store):
    await store.append("s", NO_STREAM, new_events(2))
    pg_server.execute(sql.SQL("UPDATE {}.streams SET first = 1")
                      .format(sql.Identifier(store.schema)).as_string())
    with pytest.raises(StorageError, match="corrupt stream record 's'"):
        await store.stream_version("s")


async def test_an_edited_head_row_fails_the_next_append(pg_server, store):
    await store.append("s", NO_STREAM, new_events(1))
    pg_server.execute(sql.SQL("UPDATE {}.head SET last_pos = 100")
                      .format(sql.Identifier(store.schema)).as_string())
    with pytest.raises(StorageError, match="corrupt head record"):
        await store.append("s", ANY, new_events(1))
    with pytest.raises(StorageError, match="corrupt head record"):
        await store.head_position()


# -- several nodes -------------------------------------------------------------------------


async def test_a_write_on_one_node_is_read_on_another(pg_server, pg_store_id):
    first = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    second = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        await first.append("s", NO_STREAM, new_events(2))
        assert [e.event_number for e in await second.read_stream("s")] == [0, 1]
        assert await second.stream_version("s") == 1
    finally:
        await first.close()
        await second.close()


async def test_each_node_checks_expected_versions_against_the_others_writes(pg_server,
                                                                            pg_store_id):
    first = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    second = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        await first.append("s", NO_STREAM, new_events(1))
        await second.append("s", 0, new_events(1))  # second caches s at version 1
        await first.append("s", 1, new_events(1))  # first's cache of s was at 0
        assert await second.append("s", 2, new_events(1)) == 3
        await first.delete_stream("s")
        assert await second.stream_version("s") == -1
        assert await second.append("s", NO_STREAM, new_events(1)) == 4
    finally:
        await first.close()
        await second.close()


async def test_last_position_follows_own_writes_and_refresh_reads_other_nodes(pg_server,
                                                                              pg_store_id):
    first = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    second = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        await first.append("s", NO_STREAM, new_events(3))
        assert first.last_position == 2
        assert second.last_position == -1  # no I/O: it has not looked
        assert await second.refresh_last_position() == 2
        assert second.last_position == 2
    finally:
        await first.close()
        await second.close()


# -- appends decided from the writer's cache, in one statement -----------------------------


async def test_an_append_to_a_stream_the_writer_knows_is_one_statement(store):
    await store.append("s", NO_STREAM, new_events(1))
    calls = worker_calls(store)
    assert await store.append("s", 0, new_events(2)) == 2
    assert await store.append("s", ANY, new_events(1)) == 3
    assert calls == []
    assert [e.event_number for e in await store.read_stream("s")] == [0, 1, 2, 3]
    assert [e.position for e in await store.read_all()] == [0, 1, 2, 3]
    with pytest.raises(WrongExpectedVersion):
        await store.append("s", 1, new_events(1))
    assert await store.stream_version("s") == 3


async def test_a_retried_append_whose_ids_are_stored_answers_its_version_again(store):
    await store.append("s", NO_STREAM, new_events(1))
    events = new_events(2)
    assert await store.append("s", 0, events) == 2
    assert await store.append("s", 0, events) == 2
    assert await store.append("s", ANY, events) == 2
    assert await store.append("s", 2, new_events(1)) == 3
    assert await store.stream_version("s") == 3
    assert len(await store.read_all()) == 4


async def test_a_stream_the_writer_knows_is_missing_is_created_in_one_statement(pg_server,
                                                                                 store):
    await store.append("s", NO_STREAM, new_events(1))
    with pytest.raises(WrongExpectedVersion):
        await store.append("new", 5, new_events(1))  # the writer now knows "new" is missing
    calls = worker_calls(store)
    assert await store.append("new", NO_STREAM, new_events(2)) == 1
    assert calls == []
    other = await PostgresBackend.open(pg_server.dsn, store.store_id)
    try:
        assert await other.list_streams() == ["new", "s"]
        assert [e.event_number for e in await other.read_stream("new")] == [0, 1]
        assert await other.append("new", 1, new_events(1)) == 2
    finally:
        await other.close()
    assert await store.append("new", 2, new_events(1)) == 3


async def test_statements_the_server_forgot_are_prepared_again(store):
    await store.append("s", NO_STREAM, new_events(1))
    await store.append("s", 0, new_events(1))
    assert len(await store.read_stream("s")) == 2

    def forget(conn):
        conn.execute("DEALLOCATE ALL")
        if not conn.autocommit:
            conn.commit()

    await store._writes.run(forget, store._engine._conn)
    for conn in list(store._readers._idle):
        await trio.to_thread.run_sync(forget, conn)
    assert await store.append("s", 1, new_events(1)) == 2
    assert [e.event_number for e in await store.read_stream("s")] == [0, 1, 2]
    assert [e.position for e in await store.read_all()] == [0, 1, 2]


async def test_a_store_without_the_append_function_gets_it_when_opened(pg_server,
                                                                      pg_store_id):
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    await backend.append("s", NO_STREAM, new_events(1))
    await backend.close()
    pg_server.execute(sql.SQL("DROP FUNCTION {}").format(
        sql.Identifier(schema_name(pg_store_id), APPEND_FUNCTION)).as_string())
    backend = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        await backend.append("s", 0, new_events(1))
        calls = worker_calls(backend)
        assert await backend.append("s", 1, new_events(1)) == 2
        assert calls == []
    finally:
        await backend.close()


# -- leader fencing ------------------------------------------------------------------------


async def test_the_leader_epoch_starts_at_zero_with_no_leader(store):
    assert await store.leader_epoch() == (0, "")


async def test_advancing_the_epoch_names_the_new_leader(store):
    assert await store.advance_epoch("node-a") == 1
    assert await store.advance_epoch("node-b") == 2
    assert await store.leader_epoch() == (2, "node-b")


async def test_advancing_from_an_epoch_that_is_no_longer_current_is_refused(store):
    await store.advance_epoch("node-a")
    with pytest.raises(StaleEpoch) as caught:
        await store.advance_epoch("node-b", expected=0)
    assert (caught.value.epoch, caught.value.current, caught.value.leader) == (0, 1, "node-a")
    assert await store.leader_epoch() == (1, "node-a")


async def test_a_fenced_write_with_the_current_epoch_is_written(store):
    epoch = await store.advance_epoch("node-a")
    assert await store.write([Fenced(SaveCheckpoint("sub", 5), epoch)]) == [None]
    assert await store.read_checkpoint("sub") == 5


async def test_a_fenced_write_with_a_stale_epoch_is_refused_and_changes_nothing(pg_server,
                                                                                pg_store_id):
    old_leader = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    new_leader = await PostgresBackend.open(pg_server.dsn, pg_store_id)
    try:
        epoch = await old_leader.advance_epoch("node-a")
        await old_leader.write([Fenced(SaveCheckpoint("sub", 5), epoch)])
        await new_leader.advance_epoch("node-b")
        results = await old_leader.write([
            Fenced(SaveCheckpoint("sub", 9), epoch),
            Fenced(Append("s", NO_STREAM, new_events(1)), epoch),
            Fenced(SaveSubscription("other", "by_stream", "s", 0), epoch),
        ])
        assert all(isinstance(result, StaleEpoch) for result in results)
        assert "leader epoch 1, the store's leader epoch is 2" in str(results[0])
        assert await old_leader.read_checkpoint("sub") == 5
        assert await old_leader.stream_version("s") == -1
        assert await old_leader.read_subscription("other") is None
    finally:
        await old_leader.close()
        await new_leader.close()


async def test_a_stale_fenced_operation_fails_alone_in_a_shared_transaction(store):
    await store.advance_epoch("node-a")
    results = await store.write([
        Fenced(SaveCheckpoint("fenced", 1), 0),
        Append("s", NO_STREAM, new_events(1)),
        SaveCheckpoint("plain", 2),
    ])
    assert isinstance(results[0], StaleEpoch)
    assert results[1:] == [0, None]
    assert await store.list_checkpoints() == {"plain": 2}


async def test_an_election_waits_for_a_fenced_write_in_flight(pg_server, store):
    """The fenced write share-locks the epoch row until it commits: an election that
    starts meanwhile waits, then wins; the write committed under the old epoch."""
    epoch = await store.advance_epoch("node-a")
    holder = await trio.to_thread.run_sync(lambda: psycopg.connect(pg_server.dsn))
    try:
        # Hold the checkpoints table so the fenced write stops after its epoch check.
        await trio.to_thread.run_sync(holder.execute, sql.SQL(
            "LOCK TABLE {}.checkpoints IN EXCLUSIVE MODE").format(
                sql.Identifier(store.schema)))
        other = await PostgresBackend.open(pg_server.dsn, store.store_id)
        order = []
        async with trio.open_nursery() as nursery:
            async def fenced_write():
                result = await store.write([Fenced(SaveCheckpoint("sub", 3), epoch)])
                order.append(("write", result))

            async def election():
                order.append(("elected", await other.advance_epoch("node-b")))

            nursery.start_soon(fenced_write)
            await trio.sleep(0.3)
            nursery.start_soon(election)
            await trio.sleep(0.3)
            assert order == []  # both wait: the write on the table, the election on it
            await trio.to_thread.run_sync(holder.rollback)
        assert order == [("write", [None]), ("elected", 2)]
        await other.close()
    finally:
        await trio.to_thread.run_sync(holder.close)
    assert await store.read_checkpoint("sub") == 3


def test_a_fenced_operation_needs_a_write_operation_and_an_epoch():
    with pytest.raises(InvalidArgument, match="op: must be a write operation"):
        Fenced("checkpoint", 1)
    with pytest.raises(InvalidArgument, match="epoch: must be an int from 0 to 2\\*\\*63 - 1"):
        Fenced(SaveCheckpoint("c", 1), -1)
    with pytest.raises(InvalidArgument, match="epoch"):
        Fenced(SaveCheckpoint("c", 1), True)


async def test_a_closed_store_refuses_calls_with_storage_error(store):
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.append("s", ANY, [NewEvent("T", 1)])
    with pytest.raises(StorageError, match="closed"):
        await store.read_all()
    with pytest.raises(StorageError, match="closed"):
        await store.advance_epoch("x")
