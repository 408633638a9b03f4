"""Persistent subscription settings take effect as in KurrentDB: the history buffer bounds
the events waiting for a consumer, filled by reads of ``read_batch_size`` while a whole
batch fits; a live group takes events as they come until its buffer is full, then falls
behind; the live buffer counts the last live events; and subscription info reports the
rates of events sent since the last measurement. Through the real ``kurrentdbclient``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.grpc.groups.buffer import can_read, read_count

READ_DEADLINE = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def append(client: KurrentDBClient, stream: str, n: int) -> None:
    client.append_to_stream(stream, current_version=StreamState.ANY,
                            events=[NewEvent(type="Happened", data=b"{}") for _ in range(n)])


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "the condition did not become true in time"
        time.sleep(0.05)
    return result


def test_a_group_behind_reads_a_batch_at_a_time_while_a_whole_batch_fits(client):
    stream = unique("history")
    append(client, stream, 100)
    client.create_subscription_to_stream("g", stream, history_buffer_size=50,
                                         read_batch_size=10)
    # reads of 10 at 0, 10, 20 and 30 waiting; at 40, 50 - 40 > 10 no longer holds
    info = eventually(lambda: (i := client.get_subscription_info("g", stream))
                      .read_buffer_count == 40 and i)
    assert (info.status, info.last_known_event_position) == ("Behind", "39")
    time.sleep(0.3)
    assert client.get_subscription_info("g", stream).read_buffer_count == 40


def test_a_consumer_drains_a_group_behind_until_it_is_live(client):
    stream = unique("drain")
    append(client, stream, 100)
    client.create_subscription_to_stream("g", stream, history_buffer_size=50,
                                         read_batch_size=10)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        positions = []
        for event in sub:
            positions.append(event.stream_position)
            sub.ack(event)
            if len(positions) == 100:
                break
    assert positions == list(range(100))
    eventually(lambda: client.get_subscription_info("g", stream).status == "Live")


def test_a_live_group_takes_events_as_they_come_until_its_buffer_is_full(client):
    stream = unique("live")
    client.create_subscription_to_stream("g", stream, history_buffer_size=20,
                                         read_batch_size=5)
    eventually(lambda: client.get_subscription_info("g", stream).status == "Live")
    append(client, stream, 12)
    eventually(lambda: client.get_subscription_info("g", stream).read_buffer_count == 12)
    assert client.get_subscription_info("g", stream).status == "Live"
    append(client, stream, 18)  # the 21st waiting event finds no room: behind
    info = eventually(lambda: (i := client.get_subscription_info("g", stream))
                      .status == "Behind" and i)
    assert info.read_buffer_count == 20


def test_the_live_buffer_counts_the_last_live_events_up_to_its_size(client):
    stream = unique("live-buffer")
    client.create_subscription_to_stream("g", stream, live_buffer_size=5)
    eventually(lambda: client.get_subscription_info("g", stream).status == "Live")
    append(client, stream, 3)
    eventually(lambda: client.get_subscription_info("g", stream).live_buffer_count == 3)
    append(client, stream, 5)
    eventually(lambda: client.get_subscription_info("g", stream).read_buffer_count == 8)
    assert client.get_subscription_info("g", stream).live_buffer_count == 5


def test_info_reports_the_rates_of_events_sent_since_the_last_measurement(client):
    stream = unique("rates")
    append(client, stream, 20)
    client.create_subscription_to_stream("g", stream)
    client.get_subscription_info("g", stream)  # a measurement: the rates start from here
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        for event in [next(iter(sub)) for _ in range(20)]:
            sub.ack(event)
        info = client.get_subscription_info("g", stream)
        [connection] = info.connections
        assert (info.count_since_last_measurement, connection.count_since_last_measurement) \
            == (20, 20)
        assert info.average_per_second > 0 and connection.average_items_per_second > 0
        again = client.get_subscription_info("g", stream)
        assert (again.count_since_last_measurement, again.average_per_second) == (0, 0)
        assert again.total_items == 20


# -- KurrentDB's arithmetic -------------------------------------------------------------------


def test_a_read_takes_kurrentdbs_count_for_the_batch_size():
    assert [read_count(b) for b in (1, 5, 10, 20, 200, 0, 1000, -3)] == [
        1, 5, 10, 20, 200, 10, 500, 1]


def test_a_read_starts_only_while_a_whole_batch_fits_in_the_history_buffer():
    assert can_read(39, 50, 10) and not can_read(40, 50, 10)
