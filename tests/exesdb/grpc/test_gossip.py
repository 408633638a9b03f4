"""Gossip (a one-node cluster whose leader is this node) and ServerFeatures (the methods
served), as the real clients see them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.grpc.gossip_service import SERVER_VERSION
from exesdb.grpc.protos import serverfeatures_pb2, shared_pb2

SUPPORTED_METHODS = "/event_store.client.server_features.ServerFeatures/GetSupportedMethods"


@pytest.fixture(scope="module")
def features(server) -> serverfeatures_pb2.SupportedMethods:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            SUPPORTED_METHODS, request_serializer=shared_pb2.Empty.SerializeToString,
            response_deserializer=serverfeatures_pb2.SupportedMethods.FromString)
        answer: serverfeatures_pb2.SupportedMethods = call(shared_pb2.Empty(), timeout=10)
        return answer


@pytest.fixture
def discovering(server) -> Iterator[KurrentDBClient]:
    client = KurrentDBClient(f"kurrentdb+discover://127.0.0.1:{server.port}?Tls=false")
    yield client
    client.close()


def test_gossip_shows_one_alive_leader_at_the_listening_address(client, server):
    members = client.read_gossip()
    assert [(m.state, m.address, m.port) for m in members] == [
        ("NODE_STATE_LEADER", "127.0.0.1", server.port)]


def test_a_discover_uri_connects_to_the_leader(discovering, server):
    assert discovering.connection_target == f"127.0.0.1:{server.port}"
    stream = f"gossip-{uuid.uuid4()}"
    discovering.append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                 events=[NewEvent(type="Found", data=b"{}")])
    assert [e.type for e in discovering.get_stream(stream)] == ["Found"]


def test_server_features_report_the_protocol_version(features):
    assert features.event_store_server_version == SERVER_VERSION


def test_server_features_list_the_streams_methods(features):
    methods = {(m.service_name, m.method_name) for m in features.methods}
    for method in ("append", "read", "delete", "tombstone"):
        assert ("event_store.client.streams.streams", method) in methods


def test_server_features_list_gossip_and_themselves(features):
    methods = {(m.service_name, m.method_name) for m in features.methods}
    assert ("event_store.client.gossip.gossip", "read") in methods
    assert ("event_store.client.server_features.serverfeatures",
            "getsupportedmethods") in methods


def test_server_features_list_every_persistent_subscriptions_method_on_streams_and_all(
        features):
    by_name = {(m.service_name, m.method_name): list(m.features) for m in features.methods}
    service = "event_store.client.persistent_subscriptions.persistentsubscriptions"
    for method in ("create", "update", "delete", "read", "getinfo", "list", "replayparked",
                   "restartsubsystem"):
        assert by_name[(service, method)] == ["stream", "all"], method


def test_server_features_list_the_features_kurrentdb_lists_for_the_streams_methods(features):
    by_name = {(m.service_name, m.method_name): list(m.features) for m in features.methods}
    service = "event_store.client.streams.streams"
    assert by_name[(service, "read")] == ["position", "events"]
    assert by_name[(service, "batchappend")] == ["deadline_duration"]
    assert by_name[(service, "append")] == by_name[(service, "delete")] == []
