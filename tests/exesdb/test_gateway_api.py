"""exesdb.gateway: the store API through a running store's tree, and its errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import trio

import otp
from exesdb import (
    ANY,
    END,
    NO_STREAM,
    Filter,
    InvalidArgument,
    NewEvent,
    StreamDeleted,
    WrongExpectedVersion,
    gateway,
    start_store,
)
from exesdb.errors import StoreAlreadyStarted, StoreLocked, StoreNotFound


@pytest.fixture
async def store(tmp_path):
    """A running store "s" in a node, for the test's body."""
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        yield "s"


def events(*types):
    return [NewEvent(t, {"t": t}) for t in types]


async def test_append_returns_the_new_version_and_events_read_back_in_order(store):
    assert await gateway.append_events(store, "orders", events("A", "B")) == 1
    assert await gateway.append_events(store, "orders", events("C"), expected_version=1) == 2
    read = await gateway.get_events(store, "orders")
    assert [(e.event_number, e.event_type) for e in read] == [(0, "A"), (1, "B"), (2, "C")]


async def test_a_wrong_expected_version_raises_with_the_actual_version(store):
    await gateway.append_events(store, "orders", events("A"))
    with pytest.raises(WrongExpectedVersion) as info:
        await gateway.append_events(store, "orders", events("B"), expected_version=NO_STREAM)
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("orders", -1, 0)


async def test_an_idempotent_resend_writes_nothing(store):
    batch = events("A", "B")
    assert await gateway.append_events(store, "orders", batch, expected_version=NO_STREAM) == 1
    assert await gateway.append_events(store, "orders", batch, expected_version=NO_STREAM) == 1
    assert await gateway.get_version(store, "orders") == 1


async def test_get_events_reads_backward_from_the_end(store):
    await gateway.append_events(store, "orders", events("A", "B", "C"))
    read = await gateway.get_events(store, "orders", END, 2, "backward")
    assert [e.event_type for e in read] == ["C", "B"]


async def test_stream_forward_and_backward_read_in_batches(store):
    await gateway.append_events(store, "orders", events(*"ABCDE"))
    forward = [e.event_type async for e in gateway.stream_forward(store, "orders",
                                                                 batch_size=2)]
    backward = [e.event_type async for e in gateway.stream_backward(store, "orders",
                                                                   batch_size=2)]
    assert forward == list("ABCDE")
    assert backward == list("EDCBA")


async def test_read_all_orders_events_of_every_stream_and_filters(store):
    await gateway.append_events(store, "orders-1", events("Placed"))
    await gateway.append_events(store, "users-1", events("Joined"))
    await gateway.append_events(store, "orders-2", events("Placed"))
    everything = await gateway.read_all(store)
    assert [e.stream_id for e in everything] == ["orders-1", "users-1", "orders-2"]
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == 3
    placed = await gateway.read_all(store, filter=Filter(event_types=("Placed",)))
    assert [e.stream_id for e in placed] == ["orders-1", "orders-2"]
    users = await gateway.read_all(store, filter=Filter(stream_prefixes=("users",)))
    assert [e.stream_id for e in users] == ["users-1"]


async def test_get_streams_and_get_version(store):
    assert await gateway.get_streams(store) == []
    assert await gateway.get_version(store, "orders") == -1
    await gateway.append_events(store, "orders", events("A", "B"))
    assert await gateway.get_streams(store) == ["orders"]
    assert await gateway.get_version(store, "orders") == 1


async def test_soft_delete_hides_the_stream_and_numbering_continues(store):
    await gateway.append_events(store, "orders", events("A"))
    await gateway.delete_stream(store, "orders")
    assert await gateway.get_events(store, "orders") == []
    assert await gateway.get_streams(store) == []
    assert await gateway.append_events(store, "orders", events("B"), ANY) == 1


async def test_hard_delete_makes_the_stream_unusable(store):
    await gateway.append_events(store, "orders", events("A"))
    await gateway.delete_stream(store, "orders", hard=True)
    with pytest.raises(StreamDeleted):
        await gateway.get_events(store, "orders")
    with pytest.raises(StreamDeleted):
        await gateway.append_events(store, "orders", events("B"))


async def test_snapshots_record_read_list_and_delete(store):
    await gateway.record_snapshot(store, "src", "s1", 1, {"v": 1})
    await gateway.record_snapshot(store, "src", "s1", 5, {"v": 5}, metadata={"m": True})
    latest = await gateway.read_snapshot(store, "src", "s1")
    assert latest is not None and (latest.version, latest.data) == (5, {"v": 5})
    exact = await gateway.read_snapshot(store, "src", "s1", 1)
    assert exact is not None and exact.data == {"v": 1}
    assert [s.version for s in await gateway.list_snapshots(store, "src")] == [1, 5]
    await gateway.delete_snapshot(store, "src", "s1", 5)
    assert [s.version for s in await gateway.list_snapshots(store)] == [1]
    assert await gateway.read_snapshot(store, "src", "nothing") is None


async def test_list_stores_reports_the_running_store(store, tmp_path):
    [info] = await gateway.list_stores()
    assert (info.store_id, info.status) == ("s", "running")
    assert info.data_dir == str(tmp_path / "s")
    assert info.options["timeout"] == 10_000


async def test_the_events_pubsub_is_named_per_store(store):
    name = await gateway.pubsub(store)
    assert otp.whereis(name) is not None


async def test_a_store_that_is_not_running_raises_store_not_found(store):
    with pytest.raises(StoreNotFound) as info:
        await gateway.get_streams("other")
    assert info.value.store_id == "other"


async def test_invalid_arguments_raise_before_anything_is_sent(store):
    with pytest.raises(InvalidArgument, match=r"^stream_id"):
        await gateway.append_events(store, "", events("A"))
    with pytest.raises(InvalidArgument, match=r"^count"):
        await gateway.get_events(store, "orders", 0, 0)
    with pytest.raises(InvalidArgument, match=r"^direction"):
        await gateway.get_events(store, "orders", 0, 10, "sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^store_id"):
        await gateway.get_streams("../escape")
    assert await gateway.get_streams(store) == []


async def test_starting_a_running_store_raises_store_already_started(store, tmp_path):
    with pytest.raises(StoreAlreadyStarted):
        await start_store(store_id="s", data_dir=tmp_path)


async def test_a_data_dir_that_cannot_be_created_is_refused_before_anything_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    async with otp.node():
        with pytest.raises(InvalidArgument, match=r"^data_dir: cannot create"):
            await start_store(store_id="s", data_dir=blocker)
        assert await gateway.list_stores() == []


async def test_a_store_directory_held_by_another_os_process_raises_store_locked(tmp_path):
    holder = subprocess.Popen(  # noqa: ASYNC220 (started once, before the node runs)
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            os.makedirs({str(tmp_path / 's')!r}, exist_ok=True)
            fd = os.open({str(tmp_path / 's' / 'LOCK')!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        async with otp.node():
            with pytest.raises(StoreLocked):
                await start_store(store_id="s", data_dir=tmp_path)
    finally:
        holder.kill()
        holder.wait()


async def test_calls_during_a_restart_complete_or_raise_a_retryable_error(tmp_path):
    """Appends retried after StoreUnavailable (same event ids) land exactly once."""
    from exesdb.errors import StoreUnavailable
    from exesdb.systems import CoreSystem

    from .store_helpers import find, kill_and_wait, tree

    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path, timeout=2000)
        sent = [NewEvent("E", {"i": i}) for i in range(100)]
        unavailable = 0

        async def client():
            nonlocal unavailable
            for event in sent:
                while True:
                    try:
                        await gateway.append_events("s", "x", [event])
                        break
                    except StoreUnavailable as exc:
                        assert exc.retryable
                        unavailable += 1
                        await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.sleep(0.01)
            await kill_and_wait(find(await tree(sup), CoreSystem))
        stored = await gateway.get_events("s", "x")
        assert [e.event_id for e in stored] == [e.event_id for e in sent]
