"""Catch-up subscriptions across a restart of the server: a client that resumes from the
last event it saw gets every later event once, those appended while the server was
down included, and nothing acknowledged by an append is lost."""

from __future__ import annotations

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from .conftest import start_server

DEADLINE = 10


def _append(client: KurrentDBClient, stream: str, n: int, tag: str) -> None:
    for i in range(n):
        client.append_to_stream(stream, events=NewEvent(type=f"{tag}{i}", data=b"{}"),
                                current_version=StreamState.ANY)


def _take(subscription, n: int, stream: str | None = None) -> list:
    out = []
    for event in subscription:
        if stream is None or event.stream_name == stream:
            out.append(event)
        if len(out) == n:
            return out
    raise AssertionError("the subscription ended early")


def test_a_stream_subscription_resumes_after_a_restart_without_gap_or_duplicate(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            _append(client, "orders", 3, "before")
            subscription = client.subscribe_to_stream("orders", timeout=DEADLINE)
            seen = _take(subscription, 3)
            subscription.stop()
        finally:
            client.close()

        server.restart()

        client = KurrentDBClient(server.uri)
        try:
            _append(client, "orders", 2, "after")
            subscription = client.subscribe_to_stream(
                "orders", stream_position=seen[-1].stream_position, timeout=DEADLINE)
            seen += _take(subscription, 2)
            subscription.stop()
        finally:
            client.close()
    assert [e.type for e in seen] == ["before0", "before1", "before2", "after0", "after1"]
    assert [e.stream_position for e in seen] == [0, 1, 2, 3, 4]


def test_an_all_subscription_resumes_from_its_commit_position_after_a_restart(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            _append(client, "a", 2, "before")
            subscription = client.subscribe_to_all(timeout=DEADLINE)
            seen = _take(subscription, 2, stream="a")
            subscription.stop()
        finally:
            client.close()

        server.restart()

        client = KurrentDBClient(server.uri)
        try:
            _append(client, "a", 2, "after")
            subscription = client.subscribe_to_all(commit_position=seen[-1].commit_position,
                                                   timeout=DEADLINE)
            seen += _take(subscription, 2, stream="a")
            subscription.stop()
        finally:
            client.close()
    assert [e.type for e in seen] == ["before0", "before1", "after0", "after1"]
    positions = [e.commit_position for e in seen]
    assert positions == sorted(set(positions))
