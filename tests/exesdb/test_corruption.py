"""Damaged and foreign files: opening or reading reports StorageError, nothing else is lost."""

from __future__ import annotations

import sqlite3

import pytest

from exesdb import ANY, END, NO_STREAM, NewEvent, StorageError
from exesdb.storage import SQLiteBackend
from exesdb.storage.sqlite_schema import DB_FILE, SCHEMA_VERSION

from .helpers import new_events

MARKER = b"corrupt-me-0123456789"


async def _store_with_a_marked_event(directory):
    """A closed store: streams a, b (with one marked event at b/1) and c, a snapshot."""
    store = await SQLiteBackend.open(directory)
    await store.append("a", NO_STREAM, new_events(3))
    await store.append("b", NO_STREAM, [NewEvent("T", {"n": 0}),
                                        NewEvent("T", {"marker": MARKER.decode()}),
                                        NewEvent("T", {"n": 2})])
    await store.append("c", NO_STREAM, new_events(2))
    await store.record_snapshot("src", "b", 1, {"snapshot": "snap-marker-987654321"})
    everything = await store.read_all()
    await store.close()
    assert not (directory / f"{DB_FILE}-wal").exists() or (
        (directory / f"{DB_FILE}-wal").stat().st_size == 0
    )
    return everything


def _flip(path, offset):
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x5A]))


def _flip_marker(path, marker=MARKER):
    data = path.read_bytes()
    assert data.count(marker) == 1
    _flip(path, data.index(marker) + 5)


async def test_a_flipped_byte_in_a_record_fails_its_reads_with_storage_error(tmp_path):
    directory = tmp_path / "store"
    everything = await _store_with_a_marked_event(directory)
    _flip_marker(directory / DB_FILE)
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError, match="checksum mismatch"):
            await store.read_stream("b")
        with pytest.raises(StorageError, match="checksum mismatch"):
            await store.read_stream("b", 1, 1)
        with pytest.raises(StorageError, match="checksum mismatch"):
            await store.read_all()
    finally:
        await store.close()
    assert everything[4].stream_id == "b" and everything[4].event_number == 1


async def test_nothing_but_the_damaged_record_is_lost(tmp_path):
    directory = tmp_path / "store"
    everything = await _store_with_a_marked_event(directory)
    _flip_marker(directory / DB_FILE)
    store = await SQLiteBackend.open(directory)
    try:
        assert await store.read_stream("a") == everything[0:3]
        assert await store.read_stream("c") == everything[6:8]
        assert await store.read_stream("b", 0, 1) == everything[3:4]
        assert await store.read_stream("b", 2) == everything[5:6]
        bad = everything[4].position
        assert await store.read_all(0, 4) == everything[:4]
        assert await store.read_all(bad + 1, 100) == everything[5:]
        assert await store.read_all(bad - 1, 100, "backward") == everything[3::-1]
        assert await store.stream_version("b") == 2
        assert await store.list_streams() == ["a", "b", "c"]
        assert (await store.read_snapshot("src", "b")).version == 1
        assert await store.append("c", 1, new_events(1)) == 2
        assert await store.append("b", 2, new_events(1)) == 3
    finally:
        await store.close()


async def test_a_flipped_byte_in_a_snapshot_fails_its_read(tmp_path):
    directory = tmp_path / "store"
    await _store_with_a_marked_event(directory)
    _flip_marker(directory / DB_FILE, b"snap-marker-987654321")
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError, match="corrupt snapshot"):
            await store.read_snapshot("src", "b")
        assert len(await store.read_all()) == 8
    finally:
        await store.close()


@pytest.mark.parametrize(("offset", "what"), [
    (0, "magic string"),
    (5, "magic string"),
    (16, "page size"),
    (18, "write version"),
    (19, "read version"),
    (20, "reserved space"),
    (21, "payload fraction"),
    (44, "schema format"),
    (47, "schema format"),
    (50, "default cache size"),
    (56, "text encoding"),
    (59, "text encoding"),
    (60, "user version (schema version)"),
    (63, "user version (schema version)"),
    (64, "incremental vacuum"),
    (68, "application id"),
    (71, "application id"),
    (80, "reserved"),
])
async def test_a_flipped_byte_in_the_file_header_fails_the_open(tmp_path, offset, what):
    directory = tmp_path / "store"
    everything = await _store_with_a_marked_event(directory)
    path = directory / DB_FILE
    original = path.read_bytes()
    _flip(path, offset)
    damaged = path.read_bytes()
    with pytest.raises(StorageError):
        store = await SQLiteBackend.open(directory)
        try:
            await store.read_all()
            await store.list_streams()
        finally:
            await store.close()
    assert path.read_bytes() == damaged, f"the damaged file was written to ({what})"
    _flip(path, offset)
    assert path.read_bytes() == original
    store = await SQLiteBackend.open(directory)
    try:
        assert await store.read_all() == everything
    finally:
        await store.close()


async def test_a_file_that_is_not_sqlite_is_not_opened(tmp_path):
    directory = tmp_path / "store"
    directory.mkdir()
    (directory / DB_FILE).write_bytes(b"hello, this is not a database" * 100)
    with pytest.raises(StorageError, match="not a readable exesdb store"):
        await SQLiteBackend.open(directory)
    assert (directory / DB_FILE).read_bytes() == b"hello, this is not a database" * 100


async def test_a_sqlite_file_of_another_application_is_not_opened(tmp_path):
    directory = tmp_path / "store"
    directory.mkdir()
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("CREATE TABLE mine(x)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not an exesdb store"):
        await SQLiteBackend.open(directory)


async def test_a_store_of_a_newer_schema_version_is_not_opened(tmp_path):
    directory = tmp_path / "store"
    await (await SQLiteBackend.open(directory)).close()
    newer = SCHEMA_VERSION + 1
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute(f"PRAGMA user_version={newer}")
    conn.close()
    before = (directory / DB_FILE).read_bytes()
    with pytest.raises(StorageError,
                       match=f"schema version {newer}, newer than this exesdb supports"):
        await SQLiteBackend.open(directory)
    with pytest.raises(StorageError, match=f"schema version {newer}, newer"):
        await SQLiteBackend.open(directory, read_only=True)
    assert (directory / DB_FILE).read_bytes() == before


async def test_a_store_of_an_unknown_older_schema_version_is_not_opened(tmp_path):
    directory = tmp_path / "store"
    await (await SQLiteBackend.open(directory)).close()
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("PRAGMA user_version=0")
    conn.close()
    before = (directory / DB_FILE).read_bytes()
    with pytest.raises(StorageError, match="unknown schema version 0"):
        await SQLiteBackend.open(directory)
    assert (directory / DB_FILE).read_bytes() == before


async def test_a_schema_version_that_disagrees_with_the_meta_table_is_not_migrated(tmp_path):
    directory = tmp_path / "store"
    await (await SQLiteBackend.open(directory)).close()
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("PRAGMA user_version=1")  # a damaged version: the meta table still says 2
    conn.close()
    before = (directory / DB_FILE).read_bytes()
    with pytest.raises(StorageError, match="meta table does not match schema version 1"):
        await SQLiteBackend.open(directory)
    assert (directory / DB_FILE).read_bytes() == before


async def test_a_damaged_meta_table_is_reported(tmp_path):
    directory = tmp_path / "store"
    await (await SQLiteBackend.open(directory)).close()
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("UPDATE meta SET value = 'other' WHERE key = 'format'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="meta table is corrupt"):
        await SQLiteBackend.open(directory)


async def test_a_row_moved_to_another_stream_fails_verification(tmp_path):
    directory = tmp_path / "store"
    store = await SQLiteBackend.open(directory)
    await store.append("a", NO_STREAM, new_events(2))
    await store.append("b", NO_STREAM, new_events(2))
    await store.close()
    conn = sqlite3.connect(directory / DB_FILE)
    conn.execute("UPDATE events SET skey = (SELECT skey FROM streams WHERE stream_id = 'a'), "
                 "num = 2 WHERE num = 0 AND skey = (SELECT skey FROM streams "
                 "WHERE stream_id = 'b')")
    conn.commit()
    conn.close()
    store = await SQLiteBackend.open(directory)
    try:
        with pytest.raises(StorageError):
            await store.read_stream("a")
        with pytest.raises(StorageError):
            await store.read_all()
        with pytest.raises(StorageError):
            await store.read_stream("b")  # event 0 is gone: the gap is reported
        assert len(await store.read_stream("a", 0, 2)) == 2
    finally:
        await store.close()


async def test_operations_on_a_closed_store_raise_storage_error(tmp_path):
    store = await SQLiteBackend.open(tmp_path / "store")
    await store.close()
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.append("s", ANY, new_events(1))
    with pytest.raises(StorageError, match="closed"):
        await store.read_stream("s", END, 1, "backward")
