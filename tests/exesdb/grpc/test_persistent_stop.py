"""A persistent subscription group's orderly stop: it stores the checkpoint of what its
consumers finished even when it cannot park what it should, and says so in the log.

The store runs in this process (with its gRPC front end, so that its groups run) and the
tests drive a group through :mod:`exesdb.grpc.groups.client`, as the ``Read`` calls do. A
group with ``max_retry_count=0`` hands the event in flight to a consumer that leaves
straight back to be parked, so stopping the store with one event in flight makes the
group park it while it stops; checkpoints are rare, so that only the stop stores one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import otp
from exesdb import NewEvent, gateway, start_store, stop_store
from exesdb.errors import StorageUnavailable
from exesdb.grpc.groups import client
from exesdb.grpc.groups.config import (
    GroupConfig,
    GroupSettings,
    parked_stream,
    subscription_name,
)
from exesdb.grpc.groups.messages import Connection, DeliveredEvent

STORE = "s"
STREAM = "orders"
GROUP = "g"
PARKED = parked_stream(STREAM, GROUP)
WAIT = 10.0


@pytest.fixture
async def node() -> AsyncIterator[None]:
    async with otp.node():
        yield


async def start(data_dir: Any) -> None:
    await start_store(store_id=STORE, data_dir=data_dir, grpc_port=0)


async def take(consumer: client.Consumer, n: int) -> list[DeliveredEvent]:
    events: list[DeliveredEvent] = []
    with trio.fail_after(WAIT):
        while len(events) < n:
            batch = await consumer.pull()
            assert batch is not None
            events += batch
    return events


async def consumer_holding_the_last_of_four_events() -> client.Consumer:
    """A consumer of group ``g`` on ``orders`` (4 events) that acked the first three and
    holds the fourth; no checkpoint stored yet."""
    await gateway.append_events(STORE, STREAM, [NewEvent("Placed", {"i": i}) for i in range(4)])
    settings = GroupSettings(max_retry_count=0, min_checkpoint_count=1_000,
                             max_checkpoint_count=1_000, checkpoint_after_ms=3_600_000)
    await client.create_group(STORE, GroupConfig(STREAM, GROUP, settings))
    consumer = await client.connect(STORE, STREAM, GROUP, Connection(), buffer_size=10)
    events = await take(consumer, 4)
    assert [event.event_number for event, _, _ in events] == [0, 1, 2, 3]
    await consumer.ack([event.event_id for event, _, _ in events[:3]])
    return consumer


async def stored_checkpoint(data_dir: Any) -> int | None:
    """The group's checkpoint as the store keeps it, read after a restart of the store."""
    await start(data_dir)
    name = subscription_name(STREAM, GROUP)
    [position] = [s.position for s in await gateway.get_subscriptions(STORE) if s.name == name]
    return position


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "exesdb.grpc.groups" and text in r.getMessage()]


async def test_a_group_stopping_with_an_event_it_cannot_park_stores_its_checkpoint(
        node, tmp_path, caplog):
    """The parked stream was hard-deleted (a program on the node can do that; the gRPC
    clients cannot), so parking fails for real."""
    await start(tmp_path)
    await consumer_holding_the_last_of_four_events()
    await gateway.delete_stream(STORE, PARKED, hard=True)

    await stop_store(STORE)  # the consumer leaves: its event is to be parked

    assert logged(caplog, "not parked")
    assert await stored_checkpoint(tmp_path) == 2
    await stop_store(STORE)


async def test_a_stop_stores_the_checkpoint_even_when_parking_fails_unexpectedly(
        node, tmp_path, caplog, monkeypatch):
    """Through the store's API every failure is an ``ExESDBError``, which the group
    expects (the test above); this one is injected at that boundary: appends to the
    parked stream raise an error nothing expects (a bug below the API). The group logs
    it, stores the checkpoint all the same, and after a restart delivers only the event
    it could not park."""
    await start(tmp_path)
    await consumer_holding_the_last_of_four_events()
    append_events = gateway.append_events

    async def failing_parked_appends(store_id: str, stream_id: str, *args: Any,
                                     **kwargs: Any) -> int:
        if stream_id == PARKED:
            raise RuntimeError("injected: the parked stream cannot be written")
        return await append_events(store_id, stream_id, *args, **kwargs)

    monkeypatch.setattr(gateway, "append_events", failing_parked_appends)

    await stop_store(STORE)

    [record] = logged(caplog, "not parked")
    assert record.exc_info is not None and "injected" in str(record.exc_info[1])
    monkeypatch.undo()
    assert await stored_checkpoint(tmp_path) == 2
    consumer = await client.connect(STORE, STREAM, GROUP, Connection(), buffer_size=10)
    [(again, _, retry_count)] = await take(consumer, 1)
    assert (again.event_number, retry_count) == (3, 0)
    await stop_store(STORE)


async def test_parking_that_keeps_failing_is_retried_and_logged_once(node, tmp_path, caplog,
                                                                     monkeypatch):
    """A group whose parked stream was hard-deleted tries to park again every
    ``RETRY`` seconds while it runs, and says so once, not on every try."""
    await start(tmp_path)
    consumer = await consumer_holding_the_last_of_four_events()
    await gateway.delete_stream(STORE, PARKED, hard=True)
    tries = 0
    append_events = gateway.append_events

    async def counted(store_id: str, stream_id: str, *args: Any, **kwargs: Any) -> int:
        nonlocal tries
        if stream_id == PARKED:
            tries += 1
        return await append_events(store_id, stream_id, *args, **kwargs)

    monkeypatch.setattr(gateway, "append_events", counted)

    consumer.close()  # its event in flight is to be parked (max_retry_count=0)
    with trio.fail_after(WAIT):
        while tries < 4:  # noqa: ASYNC110 (the group's own retry timer)
            await trio.sleep(0.05)

    assert len(logged(caplog, "not parked yet")) == 1
    await stop_store(STORE)


async def test_a_group_waiting_to_retry_a_failed_checkpoint_does_not_spin(node, tmp_path,
                                                                        monkeypatch):
    """A time-based checkpoint that fails is tried again every ``RETRY`` seconds; in
    between, the group's process sleeps. (Its wake-up was the overdue checkpoint time: a
    busy loop that starved a node whose every checkpoint failed, a deposed cluster
    leader.) Measured as this process's CPU time over one second of waiting."""
    await start(tmp_path)
    await gateway.append_events(STORE, STREAM, [NewEvent("Placed", {"i": i}) for i in range(3)])
    settings = GroupSettings(min_checkpoint_count=1, max_checkpoint_count=1_000,
                             checkpoint_after_ms=100)
    await client.create_group(STORE, GroupConfig(STREAM, GROUP, settings))
    tries = 0

    async def failing_ack(*args: Any, **kwargs: Any) -> None:
        nonlocal tries
        tries += 1
        raise StorageUnavailable("injected: the checkpoint cannot be stored")

    monkeypatch.setattr(gateway, "ack_event", failing_ack)
    consumer = await client.connect(STORE, STREAM, GROUP, Connection(), buffer_size=10)
    events = await take(consumer, 3)
    await consumer.ack([event.event_id for event, _, _ in events])
    with trio.fail_after(WAIT):
        while tries < 1:  # noqa: ASYNC110 (the group's own checkpoint timer)
            await trio.sleep(0.01)

    cpu = time.process_time()
    await trio.sleep(1.0)
    cpu = time.process_time() - cpu

    assert 3 <= tries <= 8  # every RETRY (0.2 s), not more often
    assert cpu < 0.5, f"{cpu:.2f} s of CPU in 1 s of waiting"
    monkeypatch.undo()
    await stop_store(STORE)
