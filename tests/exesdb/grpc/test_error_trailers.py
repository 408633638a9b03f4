"""Errors carry KurrentDB's ``exception`` trailers, and the extra trailers KurrentDB sends
with each (``stream-name``, ``expected-version``, ``actual-version``, ``group-name``, ...),
so that every client maps them to its own error classes.

The Python client maps most errors by their status code: each test checks the class it
raises, then the trailers of the gRPC error it raised that from, which are what the
Node.js client maps by (``convertToCommandError`` in ``@kurrent/kurrentdb-client``
switches on the ``exception`` trailer and reads the others: a permission failure without
``exception: access-denied`` is an unknown error there).
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    AlreadyExistsError,
    CancelledError,
    MaximumSubscriptionsReachedError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)
from kurrentdbclient.protos.v1 import (
    persistent_pb2_grpc,
    shared_pb2,
    streams_pb2,
    streams_pb2_grpc,
)

READ_DEADLINE = 20.0


def trailers(error: BaseException) -> dict[str, Any]:
    """The trailing metadata of the gRPC error a client exception was raised from (the
    client may re-raise its exception on the way: the first gRPC error in the chain)."""
    origin: BaseException | None = error
    seen: set[int] = set()
    while origin is not None and not isinstance(origin, grpc.Call) and id(origin) not in seen:
        seen.add(id(origin))
        origin = origin.__cause__ or origin.__context__
    assert isinstance(origin, grpc.Call), f"{error!r} was not raised from a gRPC error"
    return dict(origin.trailing_metadata() or ())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event() -> NewEvent:
    return NewEvent(type="Happened", data=b"{}")


def test_a_read_of_a_tombstoned_stream_carries_stream_deleted_and_its_name(client, server):
    stream = unique("deleted")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[event()])
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(stream)
    # the client drops the gRPC error on the way (it re-raises its exception from itself):
    # read its trailers from the same request made with the client's own stubs
    options = streams_pb2.ReadReq.Options(
        stream=streams_pb2.ReadReq.Options.StreamOptions(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode())),
        count=10, read_direction=streams_pb2.ReadReq.Options.Forwards)
    options.stream.start.SetInParent()
    options.no_filter.SetInParent()
    options.uuid_option.string.SetInParent()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = streams_pb2_grpc.StreamsStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Read(streams_pb2.ReadReq(options=options), timeout=READ_DEADLINE))
    assert trailers(caught.value) == {"exception": "stream-deleted", "stream-name": stream}


def test_a_delete_at_a_wrong_version_carries_both_versions_and_the_stream_name(client):
    stream = unique("versions")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[event()])
    with pytest.raises(WrongCurrentVersionError) as caught:
        client.delete_stream(stream, current_version=5)
    assert trailers(caught.value) == {
        "exception": "wrong-expected-version", "stream-name": stream,
        "expected-version": "5", "actual-version": "0"}


def test_a_delete_of_a_stream_only_the_server_writes_carries_access_denied(client):
    with pytest.raises(AccessDeniedError) as caught:
        client.delete_stream("$persistentSubscriptionConfig", current_version=StreamState.ANY)
    assert trailers(caught.value) == {"exception": "access-denied"}


def test_an_unknown_group_carries_does_not_exist_with_the_stream_and_group(client):
    stream = unique("orders")
    with pytest.raises(NotFoundError) as caught:
        client.get_subscription_info("nope", stream)
    assert trailers(caught.value) == {
        "exception": "persistent-subscription-does-not-exist", "stream-name": stream,
        "group-name": "nope"}


def test_a_group_created_twice_carries_exists_with_the_stream_and_group(client):
    stream = unique("orders")
    client.create_subscription_to_stream("g", stream)
    with pytest.raises(AlreadyExistsError) as caught:
        client.create_subscription_to_stream("g", stream)
    assert trailers(caught.value) == {
        "exception": "persistent-subscription-exists", "stream-name": stream,
        "group-name": "g"}


def test_a_consumer_over_the_maximum_carries_maximum_subscribers_reached(client):
    stream = unique("orders")
    client.create_subscription_to_stream("g", stream, max_subscriber_count=1)
    with (client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE),
          pytest.raises(MaximumSubscriptionsReachedError) as caught):
        client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    assert trailers(caught.value) == {
        "exception": "maximum-subscribers-reached", "stream-name": stream,
        "group-name": "g"}


def test_a_consumer_dropped_by_a_subsystem_restart_carries_persistent_subscription_dropped(
        client: KurrentDBClient, server: Any) -> None:
    stream = unique("orders")
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[event()])
    client.create_subscription_to_stream("g", stream)
    subscription = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    next(iter(subscription))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = persistent_pb2_grpc.PersistentSubscriptionsStub(channel)  # type: ignore[no-untyped-call]
        stub.RestartSubsystem(shared_pb2.Empty(), timeout=READ_DEADLINE)
    with pytest.raises(CancelledError) as caught:
        next(iter(subscription))
    assert trailers(caught.value) == {
        "exception": "persistent-subscription-dropped", "stream-name": stream,
        "group-name": "g"}
