"""A store's storage counters: what the writer and the SQLite backend count, and that a
store's counts outlive its storage."""

from __future__ import annotations

import json

import pytest
import trio

import otp
from exesdb import ANY, NO_STREAM, NewEvent, gateway, start_store, stop_store
from exesdb.storage import SQLiteBackend, writer
from exesdb.storage.stats import Histogram, StorageStats
from exesdb.systems import CoreSystem, system_name
from exesdb.systems.stats import storage_counters
from exesdb.systems.store import Store, StoreSystem

from .store_helpers import find, kill_and_wait, tree, until_available


def payload_size(data, metadata=None) -> int:
    """What an event's data plus metadata encode to (compact UTF-8 JSON)."""
    return sum(len(json.dumps(v, separators=(",", ":")).encode())
               for v in (data, metadata) if v is not None)


# -- the histogram ---------------------------------------------------------------------------


def test_a_histogram_counts_each_value_in_the_first_bucket_whose_bound_is_not_below_it():
    histogram = Histogram((1, 5, 10))
    for value in (0.5, 1, 3, 10, 11, 100):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1, 2]
    assert histogram.cumulative() == [(1, 2), (5, 3), (10, 4), (float("inf"), 6)]
    assert histogram.count == 6 and histogram.total == 125.5


def test_a_histogram_copy_does_not_move_with_the_original():
    histogram = Histogram((1,))
    copy = histogram.copy()
    histogram.observe(0)
    assert copy.count == 0 and histogram.count == 1


@pytest.mark.parametrize("bounds", [(), (2, 1), (1, 1)])
def test_a_histogram_needs_increasing_bounds(bounds):
    with pytest.raises(ValueError, match="bounds"):
        Histogram(bounds)


# -- the writer and the backend --------------------------------------------------------------


async def test_the_writer_counts_transactions_appends_events_and_bytes(tmp_path):
    backend = await SQLiteBackend.open(tmp_path)
    try:
        async with otp.node():
            pid = await writer.start_link(backend)
            async with trio.open_nursery() as nursery:
                for n in range(3):
                    nursery.start_soon(writer.append, pid, f"s-{n}", ANY,
                                       [NewEvent("One", {"n": n})])
            await writer.append(pid, "two", NO_STREAM,
                                [NewEvent("A", {"x": "y"}, metadata={"m": 1}),
                                 NewEvent("B", b"\x00\x01\x02")])
            await otp.gen_server.stop(pid)
        counters = backend.counters
        assert counters.appends == 4
        assert counters.events_appended == 5
        assert counters.bytes_appended == (sum(payload_size({"n": n}) for n in range(3))
                                           + payload_size({"x": "y"}, {"m": 1}) + 3)
        assert counters.transactions == backend.transactions
        assert counters.batch_size.count == counters.transactions
        assert counters.batch_size.total == 4  # every operation in some transaction
        assert counters.transaction_seconds.count == counters.transactions
        assert counters.fsync_seconds.count == counters.transactions
        assert counters.append_seconds.count == 4
        assert counters.append_seconds.total >= counters.fsync_seconds.total > 0
    finally:
        await backend.close()


async def test_a_resent_or_refused_append_takes_time_but_writes_no_events(tmp_path):
    backend = await SQLiteBackend.open(tmp_path)
    try:
        async with otp.node():
            pid = await writer.start_link(backend)
            event = NewEvent("Once", {})
            await writer.append(pid, "s", NO_STREAM, [event])
            await writer.append(pid, "s", NO_STREAM, [event])  # an idempotent re-send
            with pytest.raises(Exception, match="expected"):
                await writer.append(pid, "s", NO_STREAM, [NewEvent("Other", {})])
            await otp.gen_server.stop(pid)
        assert (backend.counters.appends, backend.counters.events_appended) == (1, 1)
        assert backend.counters.append_seconds.count == 3
    finally:
        await backend.close()


async def test_the_backend_counts_reads_of_streams_and_of_all_and_the_events_returned(
        tmp_path):
    backend = await SQLiteBackend.open(tmp_path)
    try:
        await backend.append("s", ANY, [NewEvent("E", {"i": i}) for i in range(5)])
        await backend.read_stream("s", 0, 2)
        await backend.read_stream("missing")
        await backend.read_all(0, 100)
        counters = backend.counters
        assert (counters.stream_reads, counters.all_reads, counters.events_read) == (2, 1, 7)
    finally:
        await backend.close()


def test_a_copy_of_the_counters_holds_their_values_then():
    counters = StorageStats()
    counters.events_appended = 3
    counters.fsync_seconds.observe(0.01)
    copy = counters.copy()
    counters.events_appended += 1
    counters.fsync_seconds.observe(0.01)
    assert copy.events_appended == 3 and copy.fsync_seconds.count == 1


# -- a store's counters ----------------------------------------------------------------------


async def test_a_stores_counters_go_on_across_a_restart_of_its_storage_and_a_restart(
        tmp_path):
    async with otp.node():
        await start_store(store_id="c", data_dir=tmp_path)
        await gateway.append_events("c", "s", [NewEvent("E", {})])
        counters = storage_counters("c")
        assert counters.events_appended == 1

        store = find(await tree(otp.whereis(system_name("c"))), CoreSystem, StoreSystem, Store)
        await kill_and_wait(store)
        await until_available("c")
        await gateway.append_events("c", "s", [NewEvent("E", {})])
        assert storage_counters("c") is counters and counters.events_appended == 2

        await stop_store("c")
        await start_store(store_id="c", data_dir=tmp_path)
        await gateway.append_events("c", "s", [NewEvent("E", {})])
        assert storage_counters("c").events_appended == 3
        assert storage_counters("other") is not counters
        await stop_store("c")

