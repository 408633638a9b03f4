"""Bad traffic against a running ``python -m exesdb start``: malformed messages, oversize
events, unknown methods, raw garbage, and a subscriber that never reads. Each gets its
protocol error; the server stays up and other clients are served meanwhile."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import KurrentDBClientError

STREAMS = "/event_store.client.streams.Streams/"


def _raw_call(server, path: str, payload: bytes, timeout: float = 5.0) -> grpc.RpcError:
    """Send ``payload`` as the request bytes of ``path``; return the error it got."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(payload, timeout=timeout)
    return info.value


def _still_serving(client: KurrentDBClient) -> None:
    stream = f"alive-{uuid.uuid4()}"
    client.append_to_stream(stream, events=NewEvent(type="Ping", data=b"{}"),
                            current_version=StreamState.NO_STREAM)
    assert [e.type for e in client.get_stream(stream)] == ["Ping"]


def test_a_malformed_message_gets_invalid_argument(server, client):
    error = _raw_call(server, STREAMS + "Delete", b"\xff\xff\xff\xff\x0f")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    _still_serving(client)


def test_an_unknown_method_gets_unimplemented(server, client):
    error = _raw_call(server, STREAMS + "NoSuchMethod", b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    _still_serving(client)


def test_an_unserved_service_gets_unimplemented(server, client):
    error = _raw_call(server, "/event_store.client.projections.Projections/Create", b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    _still_serving(client)


def test_an_oversize_event_is_refused_and_the_stream_is_untouched(client):
    stream = f"big-{uuid.uuid4()}"
    with pytest.raises(KurrentDBClientError):
        client.append_to_stream(
            stream, events=NewEvent(type="Big", data=b"x" * (17 * 1024 * 1024)),
            current_version=StreamState.ANY)
    assert client.get_current_version(stream) is StreamState.NO_STREAM
    _still_serving(client)


def test_an_oversize_message_gets_resource_exhausted(server, client):
    error = _raw_call(server, STREAMS + "Delete", b"\x00" * (40 * 1024 * 1024), timeout=30)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _still_serving(client)


def test_raw_garbage_on_the_socket_closes_only_that_connection(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)
        sock.settimeout(10)  # the server closes it: recv ends (b"" or a reset), no timeout
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    _still_serving(client)


def test_a_catastrophic_regex_filter_does_not_hold_up_other_clients(server, client):
    victim = "a" * 40 + "b"  # ^(a+)+$ backtracks 2**40 times on this with Python's re
    client.append_to_stream(victim, events=NewEvent(type="Bait", data=b"{}"),
                            current_version=StreamState.ANY)
    subscription = client.subscribe_to_all(filter_include=[r"^(a+)+$"],
                                           filter_by_stream_name=True, timeout=10)
    try:
        for i in range(20):  # each served while the filter scans the victim's events
            client.append_to_stream(victim, events=NewEvent(type=f"More{i}", data=b"{}"),
                                    current_version=StreamState.ANY, timeout=5)
        _still_serving(client)
    finally:
        subscription.stop()


def test_a_regex_outside_re2_syntax_is_an_invalid_argument(client):
    with pytest.raises(KurrentDBClientError, match="RE2 syntax"):
        list(client.read_all(filter_include=[r"(?=lookahead)x"], limit=1, timeout=5))


def test_a_subscriber_that_never_reads_does_not_hold_up_other_clients(server, client):
    stream = f"flood-{uuid.uuid4()}"
    payload = b"y" * 8192
    for _ in range(5):  # 5 x 400 x 8 KiB: far more than the flow-control windows
        events = [NewEvent(type="Flood", data=payload) for _ in range(400)]
        client.append_to_stream(stream, events=events, current_version=StreamState.ANY)
    idle = KurrentDBClient(server.uri)
    try:
        subscription = idle.subscribe_to_stream(stream)  # opened, never iterated
        try:
            other = f"busy-{uuid.uuid4()}"
            for i in range(200):
                client.append_to_stream(other, events=NewEvent(type="Busy", data=b"{}"),
                                        current_version=i - 1 if i else StreamState.NO_STREAM,
                                        timeout=5)
            assert len(client.get_stream(other, timeout=5)) == 200
            assert len(client.get_stream(stream, timeout=10)) == 2000
        finally:
            subscription.stop()
    finally:
        idle.close()
    _still_serving(client)
