"""Snapshots (keyed by source uuid, stream uuid, version) and subscription checkpoints."""

from __future__ import annotations

import datetime

from exesdb import Snapshot
from exesdb.storage import SQLiteBackend


async def test_read_snapshot_returns_the_recorded_snapshot(backend):
    await backend.record_snapshot("src", "stream", 3, {"state": [1, 2]}, metadata={"m": 1})
    snapshot = await backend.read_snapshot("src", "stream", 3)
    assert isinstance(snapshot, Snapshot)
    assert (snapshot.source_uuid, snapshot.stream_uuid, snapshot.version) == ("src", "stream", 3)
    assert (snapshot.data, snapshot.metadata) == ({"state": [1, 2]}, {"m": 1})
    assert snapshot.created.tzinfo == datetime.UTC


async def test_read_snapshot_without_a_version_returns_the_highest(backend):
    for version in (2, 10, 5):
        await backend.record_snapshot("src", "stream", version, {"v": version})
    assert (await backend.read_snapshot("src", "stream")).version == 10


async def test_read_snapshot_returns_none_when_there_is_none(backend):
    assert await backend.read_snapshot("src", "stream") is None
    await backend.record_snapshot("src", "stream", 1, {})
    assert await backend.read_snapshot("src", "stream", 2) is None
    assert await backend.read_snapshot("src", "other") is None


async def test_recording_a_version_again_replaces_it(backend):
    await backend.record_snapshot("src", "stream", 1, {"old": True})
    await backend.record_snapshot("src", "stream", 1, b"new", metadata=b"m")
    snapshot = await backend.read_snapshot("src", "stream", 1)
    assert (snapshot.data, snapshot.metadata) == (b"new", b"m")
    assert len(await backend.list_snapshots()) == 1


async def test_delete_snapshot_removes_one_version(backend):
    await backend.record_snapshot("src", "stream", 1, {})
    await backend.record_snapshot("src", "stream", 2, {})
    await backend.delete_snapshot("src", "stream", 2)
    await backend.delete_snapshot("src", "stream", 99)  # missing: nothing happens
    assert [s.version for s in await backend.list_snapshots()] == [1]


async def test_list_snapshots_is_sorted_and_filtered_by_key(backend):
    for source, stream, version in [("b", "x", 1), ("a", "y", 2), ("a", "x", 3), ("a", "x", 1)]:
        await backend.record_snapshot(source, stream, version, {})
    keys = [(s.source_uuid, s.stream_uuid, s.version) for s in await backend.list_snapshots()]
    assert keys == [("a", "x", 1), ("a", "x", 3), ("a", "y", 2), ("b", "x", 1)]
    assert len(await backend.list_snapshots(source_uuid="a")) == 3
    assert len(await backend.list_snapshots(stream_uuid="x")) == 3
    assert len(await backend.list_snapshots("a", "x")) == 2


async def test_checkpoints_map_names_to_positions(backend):
    assert await backend.read_checkpoint("sub") is None
    await backend.save_checkpoint("sub", 10)
    await backend.save_checkpoint("sub", 12)
    await backend.save_checkpoint("other", 0)
    assert await backend.read_checkpoint("sub") == 12
    assert await backend.list_checkpoints() == {"other": 0, "sub": 12}
    await backend.delete_checkpoint("sub")
    await backend.delete_checkpoint("missing")
    assert await backend.list_checkpoints() == {"other": 0}


async def test_snapshots_and_checkpoints_are_durable_across_reopening(tmp_path):
    store = await SQLiteBackend.open(tmp_path / "store")
    await store.record_snapshot("src", "stream", 4, {"s": 1})
    await store.save_checkpoint("sub", 7)
    await store.close()
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        assert (await store.read_snapshot("src", "stream")).data == {"s": 1}
        assert await store.read_checkpoint("sub") == 7
    finally:
        await store.close()
