"""Durable subscription definitions, the schema migration that adds them, and
``Backend.last_position``."""

from __future__ import annotations

import re
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from exesdb import ANY, NO_STREAM, InvalidArgument, StorageError, WrongExpectedVersion
from exesdb.storage import (
    DeleteSubscription,
    SaveCheckpoint,
    SaveSubscription,
    SQLiteBackend,
    SubscriptionDefinition,
    writer,
)
from exesdb.storage.definitions import SUBSCRIPTION_TYPES, selector_json
from exesdb.storage.records import meta_crc
from exesdb.storage.sqlite_schema import _SCHEMA_V1, DB_FILE, SCHEMA_VERSION

from .helpers import new_events

PATTERN = {"event_type": "Paid", "data": {"currency": "EUR", "tags": ["a", "b"]}}


def raises(message: str):
    """pytest.raises(InvalidArgument) whose message starts with ``message``."""
    return pytest.raises(InvalidArgument, match="^" + re.escape(message))


# -- save, read, list, replace, delete -----------------------------------------------------


async def test_a_saved_definition_reads_back(backend):
    assert await backend.read_subscription("orders") is None
    assert await backend.list_subscriptions() == []
    await backend.save_subscription("orders", "by_stream", "$orders-1", 3)
    definition = await backend.read_subscription("orders")
    assert definition == SubscriptionDefinition("orders", "by_stream", "$orders-1", 3)
    assert (definition.name, definition.type, definition.selector, definition.start_from) == (
        "orders", "by_stream", "$orders-1", 3)
    assert await backend.list_subscriptions() == [definition]


async def test_list_subscriptions_is_sorted_by_name(backend):
    for name in ("m", "b", "z", "a"):
        await backend.save_subscription(name, "by_event_type", f"T{name}", 0)
    assert [d.name for d in await backend.list_subscriptions()] == ["a", "b", "m", "z"]


async def test_saving_again_replaces_the_definition_and_keeps_the_checkpoint(backend):
    await backend.save_subscription("sub", "by_stream", "$all", 0)
    await backend.save_checkpoint("sub", 41)
    await backend.save_subscription("sub", "by_event_pattern", PATTERN, 7)
    assert await backend.list_subscriptions() == [
        SubscriptionDefinition("sub", "by_event_pattern", PATTERN, 7)
    ]
    assert await backend.read_checkpoint("sub") == 41


async def test_saving_a_definition_creates_no_checkpoint(backend):
    await backend.save_subscription("sub", "by_stream", "$all", 5)
    assert await backend.read_checkpoint("sub") is None
    assert await backend.list_checkpoints() == {}


async def test_delete_removes_the_definition_and_its_checkpoint_only(backend):
    await backend.save_subscription("sub", "by_stream", "$all", 0)
    await backend.save_subscription("other", "by_event_type", "T", 0)
    await backend.save_checkpoint("sub", 10)
    await backend.save_checkpoint("other", 20)
    await backend.save_checkpoint("plain", 30)
    await backend.delete_subscription("sub")
    assert await backend.read_subscription("sub") is None
    assert await backend.read_checkpoint("sub") is None
    assert [d.name for d in await backend.list_subscriptions()] == ["other"]
    assert await backend.list_checkpoints() == {"other": 20, "plain": 30}


async def test_delete_of_a_missing_subscription_is_not_an_error(backend):
    await backend.delete_subscription("missing")
    await backend.save_checkpoint("only-a-checkpoint", 3)
    await backend.delete_subscription("only-a-checkpoint")  # no definition: its checkpoint goes
    assert await backend.list_checkpoints() == {}


async def test_every_type_is_accepted(backend):
    for index, kind in enumerate(SUBSCRIPTION_TYPES):
        await backend.save_subscription(f"s{index}", kind, "x", index)
    assert [d.type for d in await backend.list_subscriptions()] == list(SUBSCRIPTION_TYPES)


async def test_definitions_and_checkpoints_share_one_transaction(backend):
    results = await backend.write([
        SaveSubscription("sub", "by_stream", "$all", 0),
        SaveCheckpoint("sub", 9),
        DeleteSubscription("gone"),
    ])
    assert results == [None, None, None]
    assert backend.transactions == 1
    assert await backend.read_checkpoint("sub") == 9
    await backend.write([SaveCheckpoint("sub", 12), DeleteSubscription("sub")])
    assert await backend.read_checkpoint("sub") is None
    assert await backend.read_subscription("sub") is None


async def test_the_writer_saves_and_deletes_definitions(backend):
    async with otp.node():
        pid = await writer.start_link(backend)
        await writer.save_subscription(pid, "sub", "by_event_payload", {"k": 1}, 2)
        await writer.save_checkpoint(pid, "sub", 5)
        assert await backend.read_subscription("sub") == SubscriptionDefinition(
            "sub", "by_event_payload", {"k": 1}, 2)
        await writer.delete_subscription(pid, "sub")
        with raises("type: must be one of"):
            await writer.save_subscription(pid, "sub", "by_nothing", "x", 0)
    assert await backend.list_subscriptions() == []
    assert await backend.list_checkpoints() == {}


# -- selectors ---------------------------------------------------------------------------


async def test_a_mapping_selector_round_trips(backend):
    selector = {"z": [1, 2.5, None, True], "a": {"nested": {"ü": "ß"}}, "": "empty key"}
    await backend.save_subscription("sub", "by_event_payload", selector, 0)
    definition = await backend.read_subscription("sub")
    assert definition.selector == selector
    assert isinstance(definition.selector, dict)


async def test_a_tuple_in_a_selector_reads_back_as_a_list(backend):
    await backend.save_subscription("sub", "by_event_pattern", {"data": {"t": (1, 2)}}, 0)
    assert (await backend.read_subscription("sub")).selector == {"data": {"t": [1, 2]}}


async def test_a_str_selector_stays_a_str_even_when_it_looks_like_json(backend):
    for index, selector in enumerate(['{"a": 1}', "1", "null", "", "$all"]):
        await backend.save_subscription(f"s{index}", "by_event_type", selector, 0)
        assert (await backend.read_subscription(f"s{index}")).selector == selector


@pytest.mark.parametrize("open_backend", ["sqlite"], indirect=True)  # reads the file
async def test_the_selector_is_stored_as_compact_sorted_json(backend):
    await backend.save_subscription("sub", "by_event_pattern", {"b": 1, "a": "é"}, 0)
    conn = sqlite3.connect(backend.path)
    try:
        stored = conn.execute("SELECT selector FROM subscriptions").fetchone()[0]
    finally:
        conn.close()
    assert stored == '{"a":"é","b":1}' == selector_json({"b": 1, "a": "é"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8,
)


@given(selector=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_any_json_mapping_selector_is_kept_as_it_reads_back(selector):
    op = SaveSubscription("sub", "by_event_payload", selector, 0)
    assert op.selector == selector
    assert op.selector_json == selector_json(selector)


async def test_mapping_selectors_of_many_shapes_round_trip_through_the_store(backend):
    selectors = [{}, {"a": []}, {"a": {}}, {"x": -(2**63)}, {"f": 1e300, "g": -0.0},
                 {"deep": {"er": {"est": [{"k": "v"}]}}}, {"\x00": "nul", "e": "😀"}]
    for index, selector in enumerate(selectors):
        await backend.save_subscription(f"s{index:02}", "by_event_pattern", selector, index)
    assert [d.selector for d in await backend.list_subscriptions()] == selectors


# -- invalid arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (("", "by_stream", "$all", 0), "name: must not be empty"),
    (("x" * 1025, "by_stream", "$all", 0), "name: must be at most 1024 characters, got 1025"),
    ((7, "by_stream", "$all", 0), "name: must be a str, got int"),
    (("s", "by_nothing", "$all", 0),
     "type: must be one of 'by_stream', 'by_event_type', 'by_event_pattern', "
     "'by_event_payload', got 'by_nothing'"),
    (("s", None, "$all", 0), "type: must be one of"),
    (("s", "by_stream", 42, 0),
     "selector: must be a str or a JSON-compatible mapping, got int"),
    (("s", "by_stream", ["$all"], 0),
     "selector: must be a str or a JSON-compatible mapping, got list"),
    (("s", "by_stream", None, 0),
     "selector: must be a str or a JSON-compatible mapping, got NoneType"),
    (("s", "by_event_payload", {"a": {1, 2}}, 0),
     "selector: must be a str or a JSON-compatible mapping (Object of type set"),
    (("s", "by_event_payload", {"a": float("nan")}, 0),
     "selector: must be a str or a JSON-compatible mapping (Out of range float"),
    (("s", "by_event_payload", {1: "a"}, 0), "selector: mapping keys must be str, got int"),
    (("s", "by_event_payload", {"a": [{"b": {2: 0}}]}, 0),
     "selector['a'][0]['b']: mapping keys must be str, got int"),
    (("s", "by_event_payload", {"a": 1, 2: 0}, 0),
     "selector: must be a str or a JSON-compatible mapping"),
    (("s", "by_stream", "$all", -1), "start_from: must be an int >= 0, got -1"),
    (("s", "by_stream", "$all", True), "start_from: must be an int >= 0, got True"),
    (("s", "by_stream", "$all", 1.0), "start_from: must be an int >= 0, got 1.0"),
    (("s", "by_stream", "$all", 2**63), "start_from: must be at most 2**63 - 1"),
])
async def test_save_subscription_rejects_bad_arguments(backend, args, message):
    with raises(message):
        SaveSubscription(*args)
    with raises(message):
        await backend.save_subscription(*args)
    assert await backend.list_subscriptions() == []


async def test_a_circular_selector_is_rejected(backend):
    selector: dict = {}
    selector["self"] = selector
    with raises("selector: must be a str or a JSON-compatible mapping (Circular reference"):
        await backend.save_subscription("s", "by_event_payload", selector, 0)


@pytest.mark.parametrize(("name", "message"), [
    ("", "name: must not be empty"),
    (None, "name: must be a str, got NoneType"),
])
async def test_delete_and_read_reject_bad_names(backend, name, message):
    with raises(message):
        await backend.delete_subscription(name)
    with raises(message):
        await backend.read_subscription(name)


async def test_the_selector_is_copied_when_the_operation_is_built(backend):
    selector = {"a": [1]}
    op = SaveSubscription("sub", "by_event_payload", selector, 0)
    selector["a"].append(2)
    await backend.write([op])
    assert (await backend.read_subscription("sub")).selector == {"a": [1]}


def test_definitions_are_hashable_and_compare_by_value():
    one = SubscriptionDefinition("s", "by_event_pattern", {"a": 1}, 0)
    assert one == SubscriptionDefinition("s", "by_event_pattern", {"a": 1}, 0)
    assert one != SubscriptionDefinition("s", "by_event_pattern", {"a": 2}, 0)
    assert hash(one) == hash(SubscriptionDefinition("s", "by_event_pattern", {"a": 2}, 0))


# -- durability and corruption ---------------------------------------------------------------


async def test_definitions_are_durable_across_reopening(tmp_path):
    store = await SQLiteBackend.open(tmp_path / "store")
    await store.save_subscription("a", "by_stream", "$all", 0)
    await store.save_subscription("b", "by_event_pattern", PATTERN, 12)
    await store.save_checkpoint("b", 15)
    await store.delete_subscription("a")
    await store.close()
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        assert await store.list_subscriptions() == [
            SubscriptionDefinition("b", "by_event_pattern", PATTERN, 12)
        ]
        assert await store.list_checkpoints() == {"b": 15}
    finally:
        await store.close()
    store = await SQLiteBackend.open(tmp_path / "store", read_only=True)
    try:
        assert await store.read_subscription("b") == SubscriptionDefinition(
            "b", "by_event_pattern", PATTERN, 12)
    finally:
        await store.close()


MARKER = "sub-marker-0123456789"


async def _store_with_a_marked_definition(directory):
    store = await SQLiteBackend.open(directory)
    await store.append("s", NO_STREAM, new_events(3))
    await store.save_subscription("bad", "by_event_payload", {"m": MARKER}, 1)
    await store.save_subscription("good", "by_stream", "$all", 2)
    await store.save_checkpoint("bad", 1)
    await store.save_checkpoint("good", 2)
    everything = await store.read_all()
    await store.close()
    return everything


def _flip_marker(path):
    data = path.read_bytes()
    assert data.count(MARKER.encode()) == 1
    offset = data.index(MARKER.encode()) + 4
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(bytes([data[offset] ^ 0x5A]))


async def test_a_flipped_byte_in_a_definition_fails_its_reads_and_loses_nothing_else(tmp_path):
    directory = tmp_path / "store"
    everything = await _store_with_a_marked_definition(directory)
    _flip_marker(directory / DB_FILE)
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError, match="corrupt subscription definition 'bad'"):
            await store.read_subscription("bad")
        with pytest.raises(StorageError, match="corrupt subscription definition 'bad'"):
            await store.list_subscriptions()
        assert await store.read_subscription("good") == SubscriptionDefinition(
            "good", "by_stream", "$all", 2)
        assert await store.list_checkpoints() == {"bad": 1, "good": 2}
        assert await store.read_all() == everything
        assert await store.append("s", 2, new_events(1)) == 3
        # the damaged definition can be replaced, or deleted
        await store.save_subscription("bad", "by_event_type", "T", 0)
        assert len(await store.list_subscriptions()) == 2
    finally:
        await store.close()


@pytest.mark.parametrize(("column", "value"), [
    ("start_from", 99), ("type", "'by_event_type'"), ("selector", "'\"$other\"'"),
    ("name", "'moved'"), ("crc", "crc + 1"),
])
async def test_an_edited_definition_row_fails_verification(tmp_path, column, value):
    directory = tmp_path / "store"
    await _store_with_a_marked_definition(directory)
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute(f"UPDATE subscriptions SET {column} = {value} WHERE name = 'good'")
    conn.commit()
    conn.close()
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError, match="corrupt subscription definition"):
            await store.list_subscriptions()
        assert (await store.read_subscription("bad")).selector == {"m": MARKER}
    finally:
        await store.close()


async def test_a_definition_row_whose_selector_is_not_text_fails_verification(tmp_path):
    directory = tmp_path / "store"
    await _store_with_a_marked_definition(directory)
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("UPDATE subscriptions SET selector = CAST(selector AS BLOB)")
    conn.commit()
    conn.close()
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError, match="corrupt subscription definition"):
            await store.read_subscription("good")
    finally:
        await store.close()


# -- migration from schema version 1 --------------------------------------------------------


def _user_version(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def _schema(path):
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"))
    finally:
        conn.close()


def _meta(path):
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT key, value, crc FROM meta").fetchall()
    finally:
        conn.close()
    assert all(crc == meta_crc(key, value) for key, value, crc in rows)
    return {key: value for key, value, _crc in rows}


def _make_version_1(path):
    """Turn the closed store at ``path`` into what schema version 1 wrote."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("DROP TABLE subscriptions")
        conn.execute("UPDATE meta SET value = '1', crc = ? WHERE key = 'schema_version'",
                     (meta_crc("schema_version", "1"),))
        conn.execute("PRAGMA user_version=1")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _fresh_version_1_schema(tmp_path):
    """The sqlite_master of a file made by schema version 1's statements."""
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in _SCHEMA_V1:
            conn.execute(statement)
    finally:
        conn.close()
    return _schema(path)


async def _version_1_store(directory):
    store = await SQLiteBackend.open(directory)
    await store.append("a", NO_STREAM, new_events(3))
    await store.append("b", NO_STREAM, new_events(2))
    await store.delete_stream("b")
    await store.record_snapshot("src", "a", 2, {"state": 1})
    await store.save_checkpoint("sub", 4)
    everything = await store.read_all()
    await store.close()
    _make_version_1(directory / DB_FILE)
    return everything


async def test_a_version_1_store_is_migrated_and_keeps_its_data(tmp_path):
    directory = tmp_path / "store"
    everything = await _version_1_store(directory)
    path = directory / DB_FILE
    assert SCHEMA_VERSION == 2
    assert _user_version(path) == 1
    assert _schema(path) == _fresh_version_1_schema(tmp_path)
    assert _meta(path)["schema_version"] == "1"
    store = await SQLiteBackend.open(directory)
    try:
        assert _user_version(path) == 2
        assert _meta(path) == {"format": "exesdb-sqlite", "schema_version": "2",
                               "encoding": "UTF-8"}
        assert await store.read_all() == everything
        assert await store.list_streams() == ["a"]
        assert await store.stream_version("b") == -1
        assert (await store.read_snapshot("src", "a")).data == {"state": 1}
        assert await store.list_checkpoints() == {"sub": 4}
        assert store.last_position == 4
        assert await store.list_subscriptions() == []
        await store.save_subscription("sub", "by_stream", "$all", 0)
        assert await store.append("a", 2, new_events(1)) == 3
    finally:
        await store.close()
    store = await SQLiteBackend.open(directory)  # a migrated store opens as it is
    try:
        assert await store.read_subscription("sub") == SubscriptionDefinition(
            "sub", "by_stream", "$all", 0)
        assert await store.list_checkpoints() == {"sub": 4}
        assert len(await store.read_all()) == 6
    finally:
        await store.close()


async def test_a_version_1_store_opened_read_only_is_read_without_migrating(tmp_path):
    directory = tmp_path / "store"
    everything = await _version_1_store(directory)
    path = directory / DB_FILE
    before = path.read_bytes()
    store = await SQLiteBackend.open(directory, read_only=True)
    try:
        assert await store.read_all() == everything
        assert await store.list_subscriptions() == []
        assert await store.read_subscription("sub") is None
        assert store.last_position == 4
    finally:
        await store.close()
    assert path.read_bytes() == before
    assert _user_version(path) == 1


async def test_a_failed_migration_changes_nothing(tmp_path):
    directory = tmp_path / "store"
    await _version_1_store(directory)
    path = directory / DB_FILE
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE subscriptions(x)")  # in the way of the migration
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="subscriptions already exists"):
        await SQLiteBackend.open(directory)
    assert path.read_bytes() == before
    assert _user_version(path) == 1
    assert _meta(path)["schema_version"] == "1"


async def test_a_version_1_store_with_a_damaged_meta_table_is_not_migrated(tmp_path):
    directory = tmp_path / "store"
    await _version_1_store(directory)
    path = directory / DB_FILE
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 'UTF-16' WHERE key = 'encoding'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="meta table is corrupt"):
        await SQLiteBackend.open(directory)
    assert path.read_bytes() == before


# -- last_position -----------------------------------------------------------------------------


async def test_last_position_follows_the_writes(backend):
    assert backend.last_position == -1
    await backend.append("a", NO_STREAM, new_events(3))
    assert backend.last_position == 2
    await backend.append("b", NO_STREAM, new_events(2))
    assert backend.last_position == 4 == await backend.head_position()
    await backend.delete_stream("a")
    await backend.delete_stream("b", hard=True)
    await backend.save_checkpoint("sub", 1)
    await backend.save_subscription("sub", "by_stream", "$all", 0)
    assert backend.last_position == 4
    with pytest.raises(WrongExpectedVersion):
        await backend.append("a", 7, new_events(1))
    assert backend.last_position == 4
    await backend.append("a", ANY, new_events(1))
    assert backend.last_position == 5 == await backend.head_position()
    await backend.append("a", ANY, new_events(1))  # a new event, not a re-send
    assert backend.last_position == 6


async def test_last_position_after_an_idempotent_resend_is_unchanged(backend):
    events = new_events(2)
    await backend.append("a", NO_STREAM, events)
    await backend.append("a", NO_STREAM, events)
    assert backend.last_position == 1


async def test_last_position_counts_every_operation_of_a_shared_transaction(backend):
    from exesdb.storage import Append

    results = await backend.write([Append("a", NO_STREAM, new_events(2)),
                                   Append("a", NO_STREAM, new_events(1)),  # fails
                                   Append("b", ANY, new_events(3))])
    assert isinstance(results[1], WrongExpectedVersion)
    assert backend.last_position == 4 == await backend.head_position()


async def test_last_position_of_an_empty_store_survives_reopening(tmp_path):
    store = await SQLiteBackend.open(tmp_path / "store")
    await store.save_checkpoint("sub", 3)
    await store.close()
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        assert store.last_position == -1
    finally:
        await store.close()


async def test_last_position_is_read_from_the_store_when_it_is_opened(tmp_path):
    store = await SQLiteBackend.open(tmp_path / "store")
    await store.append("a", NO_STREAM, new_events(4))
    await store.close()
    assert store.last_position == 3  # no I/O: still answers after close
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        assert store.last_position == 3
        reader = await SQLiteBackend.open(tmp_path / "store", read_only=True)
        try:
            assert reader.last_position == 3
            await store.append("a", 3, new_events(1))
            assert store.last_position == 4
            assert reader.last_position == 3  # as it was opened
        finally:
            await reader.close()
    finally:
        await store.close()


async def test_last_position_through_the_writer(backend):
    async with otp.node():
        pid = await writer.start_link(backend)
        await writer.append(pid, "a", NO_STREAM, new_events(2))
        assert backend.last_position == 1
        await writer.append(pid, "b", NO_STREAM, new_events(1))
        assert backend.last_position == 2


async def test_with_subscriber_is_stored_and_part_of_the_checksum(backend):
    await backend.save_subscription("p", "by_stream", "$all", 0, with_subscriber=True)
    await backend.save_subscription("q", "by_stream", "$all", 0)
    stored = {d.name: d.with_subscriber for d in await backend.list_subscriptions()}
    assert stored == {"p": True, "q": False}
    assert (await backend.read_subscription("p")).with_subscriber is True


def test_with_subscriber_must_be_a_bool():
    from exesdb import InvalidArgument
    from exesdb.storage import SaveSubscription

    with pytest.raises(InvalidArgument, match=r"^with_subscriber: must be True or False"):
        SaveSubscription("p", "by_stream", "$all", 0, with_subscriber=1)  # type: ignore[arg-type]
