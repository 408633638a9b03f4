"""Appends and reads on the SQLite backend: numbering, positions, directions, END."""

from __future__ import annotations

import trio

from exesdb import ANY, END, NO_STREAM, EventRecord, Filter, NewEvent

from .helpers import new_events


async def test_append_returns_the_number_of_the_last_event_written(backend):
    assert await backend.append("s", NO_STREAM, new_events(3)) == 2
    assert await backend.append("s", 2, new_events(1)) == 3


async def test_a_stream_reads_back_what_was_appended_in_order(backend):
    sent = [NewEvent("A", {"k": [1, "two", None, True, 2.5]}, metadata={"m": 1}),
            NewEvent("B", b"\x00\xffbinary", metadata=b"raw"),
            NewEvent("C", "just a string", content_type="text/plain")]
    await backend.append("s", NO_STREAM, sent)
    records = await backend.read_stream("s")
    assert [type(r) for r in records] == [EventRecord] * 3
    assert [(r.event_id, r.event_type, r.data, r.metadata, r.content_type) for r in records] == [
        (e.event_id, e.event_type, e.data, e.metadata, e.content_type) for e in sent
    ]
    assert [r.event_number for r in records] == [0, 1, 2]
    assert {r.stream_id for r in records} == {"s"}


async def test_positions_increase_strictly_across_streams_in_commit_order(backend):
    await backend.append("a", ANY, new_events(2))
    await backend.append("b", ANY, new_events(2))
    await backend.append("a", ANY, new_events(1))
    everything = await backend.read_all()
    assert [(r.stream_id, r.event_number) for r in everything] == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2)
    ]
    positions = [r.position for r in everything]
    assert positions == sorted(set(positions))
    assert positions[0] >= 0


async def test_an_append_of_any_size_stores_each_event_once_in_order(backend):
    # sizes around the SQLite backend's rows per INSERT statement (64, 16, 4, 1)
    sizes = [1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 100, 149]
    for size in sizes:
        events = new_events(size)
        await backend.append(f"s-{size}", NO_STREAM, events)
        records = await backend.read_stream(f"s-{size}", 0, 1000)
        assert [r.event_id for r in records] == [e.event_id for e in events]
        assert [r.event_number for r in records] == list(range(size))
    positions = [r.position for r in await backend.read_all(0, 10_000)]
    assert positions == list(range(positions[0], positions[0] + sum(sizes)))


async def test_read_stream_forward_from_a_version_with_a_count(backend):
    await backend.append("s", ANY, new_events(10))
    records = await backend.read_stream("s", 3, 4)
    assert [r.event_number for r in records] == [3, 4, 5, 6]


async def test_read_stream_backward_from_a_version(backend):
    await backend.append("s", ANY, new_events(10))
    records = await backend.read_stream("s", 5, 3, "backward")
    assert [r.event_number for r in records] == [5, 4, 3]


async def test_read_stream_backward_from_end_starts_at_the_last_event(backend):
    await backend.append("s", ANY, new_events(10))
    records = await backend.read_stream("s", END, 2, "backward")
    assert [r.event_number for r in records] == [9, 8]


async def test_read_stream_forward_from_end_reads_nothing(backend):
    await backend.append("s", ANY, new_events(3))
    assert await backend.read_stream("s", END) == []


async def test_read_stream_backward_past_the_end_starts_at_the_end(backend):
    await backend.append("s", ANY, new_events(3))
    records = await backend.read_stream("s", 100, 10, "backward")
    assert [r.event_number for r in records] == [2, 1, 0]


async def test_read_stream_forward_past_the_end_reads_nothing(backend):
    await backend.append("s", ANY, new_events(3))
    assert await backend.read_stream("s", 3) == []
    assert await backend.read_stream("s", 100) == []


async def test_a_missing_stream_reads_as_empty_with_version_minus_one(backend):
    assert await backend.read_stream("nope") == []
    assert await backend.read_stream("nope", END, 5, "backward") == []
    assert await backend.stream_version("nope") == -1


async def test_read_all_from_a_position_includes_that_position(backend):
    await backend.append("s", ANY, new_events(5))
    positions = [r.position for r in await backend.read_all()]
    forward = await backend.read_all(positions[2], 10)
    backward = await backend.read_all(positions[2], 10, "backward")
    assert [r.position for r in forward] == positions[2:]
    assert [r.position for r in backward] == positions[2::-1]


async def test_read_all_backward_from_end_starts_at_the_last_event(backend):
    await backend.append("s", ANY, new_events(5))
    records = await backend.read_all(END, 2, "backward")
    assert [r.event_number for r in records] == [4, 3]
    assert await backend.read_all(END) == []


async def test_read_all_counts_events_after_filtering(backend):
    for i in range(30):
        await backend.append(f"order-{i % 3}", ANY, [NewEvent("Placed" if i % 2 else "Paid", i)])
        await backend.append(f"user-{i % 2}", ANY, [NewEvent("Placed", i)])
    only = Filter(event_types=["Placed"], stream_prefixes=["order-"])
    records = await backend.read_all(0, 7, "forward", only)
    assert len(records) == 7
    assert all(r.event_type == "Placed" and r.stream_id.startswith("order-") for r in records)
    every = [r for r in await backend.read_all(0, 1000)
             if r.event_type == "Placed" and r.stream_id.startswith("order-")]
    assert [r.position for r in records] == [r.position for r in every[:7]]
    backward = await backend.read_all(END, 1000, "backward", only)
    assert [r.position for r in backward] == [r.position for r in reversed(every)]


async def test_read_all_with_a_filter_that_matches_nothing_reads_nothing(backend):
    await backend.append("s", ANY, new_events(3000))
    assert await backend.read_all(0, 10, "forward", Filter(event_types=["Nope"])) == []


async def test_list_streams_returns_the_streams_with_events_sorted(backend):
    for stream in ("b", "a", "c"):
        await backend.append(stream, ANY, new_events(1))
    assert await backend.list_streams() == ["a", "b", "c"]


async def test_head_position_is_the_last_position_or_minus_one(backend):
    assert await backend.head_position() == -1
    await backend.append("s", ANY, new_events(3))
    assert await backend.head_position() == (await backend.read_all(END, 1, "backward"))[0].position


async def test_reads_run_concurrently_with_writes(backend):
    await backend.append("s", ANY, new_events(1))

    async def reader():
        for _ in range(20):
            records = await backend.read_stream("s")
            assert [r.event_number for r in records] == list(range(len(records)))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(reader)
        for _ in range(20):
            await backend.append("s", ANY, new_events(2))
    assert await backend.stream_version("s") == 40


async def test_a_store_keeps_its_events_across_reopening(tmp_path):
    from exesdb.storage import SQLiteBackend

    store = await SQLiteBackend.open(tmp_path / "store")
    await store.append("s", NO_STREAM, new_events(3))
    before = await store.read_all()
    await store.close()
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        assert await store.read_all() == before
        assert await store.append("s", 2, new_events(1)) == 3
        assert (await store.read_all(END, 1, "backward"))[0].position > before[-1].position
    finally:
        await store.close()


async def test_a_durable_store_fsyncs_every_commit_and_the_option_relaxes_it(tmp_path):
    from exesdb.storage import SQLiteBackend

    durable = await SQLiteBackend.open(tmp_path / "durable")
    relaxed = await SQLiteBackend.open(tmp_path / "relaxed", durable=False)
    try:
        assert durable.durable and not relaxed.durable
        # White-box: SQLite's synchronous level on the write connection (2 FULL, 1 NORMAL)
        # and WAL mode.
        for store, level in ((durable, 2), (relaxed, 1)):
            conn = store._engine._writer
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert await relaxed.append("s", NO_STREAM, new_events(2)) == 1
    finally:
        await durable.close()
        await relaxed.close()
    relaxed = await SQLiteBackend.open(tmp_path / "relaxed", durable=False)
    try:
        assert await relaxed.stream_version("s") == 1
    finally:
        await relaxed.close()
