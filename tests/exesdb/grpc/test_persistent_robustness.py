"""Persistent subscription groups against hostile or unlucky clients: a filter regex
that would backtrack exponentially, patterns that do not compile, a client that vanishes
with events in flight, a non-admin asking for RestartSubsystem.

One server per module (plus one with users for the permission test); every test uses
streams and groups of its own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import GrpcError
from kurrentdbclient.protos.v1 import persistent_pb2_grpc, shared_pb2

from exesdb.grpc import auth

from .conftest import Server, start_server
from .test_persistent import READ_DEADLINE, append, eventually, take, unique

HANG_LIMIT = 2.0
"""Seconds an append may take while a group matches a hostile pattern: a functional
check that the node is not frozen, not a benchmark."""


# -- the filter regex ------------------------------------------------------------------------


def test_a_backtracking_filter_regex_does_not_freeze_the_node(server, client):
    group, victim = unique("g"), "a" * 40 + "b"
    # the client sends "^(a+)+$": exponential for a backtracking engine on "a" * 40 + "b"
    client.create_subscription_to_all(group, from_end=True, filter_include=["(a+)+"],
                                      filter_by_stream_name=True)
    client.append_to_stream(victim, current_version=StreamState.ANY,
                            events=[NewEvent(type="Happened", data=b"{}")])
    other = KurrentDBClient(server.uri)
    try:
        other.append_to_stream(unique("bystander"), current_version=StreamState.ANY,
                               events=[NewEvent(type="Happened", data=b"{}")],
                               timeout=HANG_LIMIT)
    finally:
        other.close()
    append(client, "a" * 12, 1)  # the filter still lets through what matches
    with client.read_subscription_to_all(group, timeout=READ_DEADLINE) as sub:
        [event] = take(sub, 1)
        assert event.stream_name == "a" * 12
        sub.ack(event)
    client.delete_subscription(group)


@pytest.mark.parametrize("pattern", ["(?=x)", "(a)\\1"])
def test_a_filter_regex_outside_re2_syntax_is_invalid_argument_naming_the_field(client,
                                                                                pattern):
    with pytest.raises(GrpcError, match="INVALID_ARGUMENT") as caught:
        client.create_subscription_to_all(unique("g"), filter_include=[pattern])
    assert "filter" in str(caught.value) and "regex" in str(caught.value)


@pytest.mark.parametrize("pattern", ["(" * 2000 + ")" * 2000, "a{99999999999999999999}",
                                     "x" * 5000, "(?!" * 2000 + ")" * 2000])
def test_a_pathological_filter_regex_is_accepted_or_invalid_argument_never_internal(
        client, pattern):
    group = unique("g")
    try:
        client.create_subscription_to_all(group, filter_include=[pattern])
    except GrpcError as exc:
        assert "INVALID_ARGUMENT" in str(exc) and "INTERNAL" not in str(exc)
    else:
        client.delete_subscription(group)


def test_the_clients_default_exclude_filter_is_still_accepted(client):
    group = unique("g")
    client.create_subscription_to_all(group, from_end=True)  # "^(?!(\$.+$|...))"
    stream = unique("plain")
    append(client, stream, 1)
    with client.read_subscription_to_all(group, timeout=READ_DEADLINE) as sub:
        [event] = take(sub, 1)
        assert event.stream_name == stream
        sub.ack(event)
    client.delete_subscription(group)


# -- consumers that vanish -------------------------------------------------------------------


def test_a_consumer_whose_connection_closes_frees_its_slot_and_events_at_once(server,
                                                                               client):
    stream = unique("orders")
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream, max_subscriber_count=1,
                                         message_timeout=600)
    gone = KurrentDBClient(server.uri)
    sub = gone.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    held = take(sub, 2)  # in flight, never acked
    eventually(lambda: client.get_subscription_info("g", stream)
               .total_in_flight_messages == 2)
    gone.close()  # the connection goes, the subscription was never stopped
    eventually(lambda: not client.get_subscription_info("g", stream).connections)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as again:
        events = take(again, 2)  # the one slot is free, and the events come back
        assert [(e.id, e.retry_count) for e in events] == [(e.id, 1) for e in held]
        for event in events:
            again.ack(event)


# -- RestartSubsystem ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("users")
    users = folder / "users"
    auth.add_user(users, "admin", "admin-pw", ["$admins"])
    auth.add_user(users, "alice", "alice-pw", ["s"])
    with start_server(Path(folder) / "data", "--users-file", str(users)) as running:
        yield running


def restart_subsystem(server: Server, user: str, password: str) -> Any:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        grpc_stub = persistent_pb2_grpc.PersistentSubscriptionsStub(channel)  # type: ignore[no-untyped-call]
        return grpc_stub.RestartSubsystem(shared_pb2.Empty(), timeout=READ_DEADLINE,
                                     metadata=[("authorization", f"Basic {token}")])


def test_restart_subsystem_is_for_admins_only(with_users):
    with pytest.raises(grpc.RpcError) as caught:
        restart_subsystem(with_users, "alice", "alice-pw")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "Access Denied"  # KurrentDB's, with its trailer
    assert dict(caught.value.trailing_metadata()) == {"exception": "access-denied"}
    assert restart_subsystem(with_users, "admin", "admin-pw") == shared_pb2.Empty()
