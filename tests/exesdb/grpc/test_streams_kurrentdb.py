"""Streams behaviours where exesdb must answer as KurrentDB 25 does, through the real
``kurrentdbclient``: positions (no event at commit position 0), JSON data whichever door it
came in by, soft deletes that keep the stream's version and write ``$tb``, deleting a stream
that never existed, link events resolved, and the progress messages of subscriptions.

Most tests share one server subprocess (the ``server`` and ``client`` fixtures of
conftest.py) and use streams of their own; the ones about a new store start their own.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from typing import Any

import grpc
import pytest
import trio
from eventsourcing.application import Application
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import NotFoundError, StreamIsDeletedError, WrongCurrentVersionError
from kurrentdbclient.protos.v1 import streams_pb2 as client_streams_pb2
from kurrentdbclient.protos.v1 import streams_pb2_grpc

import otp
from exesdb import gateway, start_store, stop_store
from exesdb.grpc import address

from .conftest import start_server

_names = itertools.count()


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses."""
    return f"{request.node.name[:40]}-{next(_names)}-{uuid.uuid4().hex[:8]}"


def events(*types: str) -> list[NewEvent]:
    return [NewEvent(type=t, data=json.dumps({"t": t}).encode()) for t in types]


# -- positions -------------------------------------------------------------------------------


def test_the_client_synopsis_runs_against_a_new_store(tmp_path):
    """kurrentdbclient's README synopsis: its subscription "from commit_position=0" (after
    0) receives the first events of a new store, since none sits at 0."""
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            stream_name1 = str(uuid.uuid4())
            event1 = NewEvent(type="OrderCreated", data=b'{"order_number": "123456"}')
            event2 = NewEvent(type="OrderSubmitted", data=b"{}")
            event3 = NewEvent(type="OrderCancelled", data=b"{}")
            commit_position1 = client.append_to_stream(
                stream_name=stream_name1, current_version=StreamState.NO_STREAM,
                events=[event1, event2])
            commit_position2 = client.append_to_stream(
                stream_name=stream_name1, current_version=1, events=[event3])
            assert commit_position2 > commit_position1
            recorded = client.get_stream(stream_name=stream_name1)
            assert [e.stream_position for e in recorded] == [0, 1, 2]
            assert recorded[0].data == b'{"order_number": "123456"}'
            received = []
            with client.subscribe_to_all(commit_position=0, timeout=10) as subscription:
                for event in subscription:
                    received.append(event)
                    if event.commit_position == commit_position2:
                        break
            assert [(e.type, e.data, e.id) for e in received[-3:]] == [
                ("OrderCreated", b'{"order_number": "123456"}', event1.id),
                ("OrderSubmitted", b"{}", event2.id),
                ("OrderCancelled", b"{}", event3.id)]
        finally:
            client.close()


def test_commit_positions_start_above_zero_and_follow_the_all_order(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            first = client.append_to_stream("a", events=events("A"),
                                            current_version=StreamState.ANY)
            client.append_to_stream("b", events=events("B", "C"),
                                    current_version=StreamState.ANY)
            read = list(client.read_all())
            positions = [e.commit_position for e in read]
            assert first == positions[0] == 1
            assert positions == sorted(set(positions))
            assert all(e.prepare_position == e.commit_position for e in read)
            # a position reads from its own event, forwards, and before it, backwards
            assert [e.type for e in client.read_all(commit_position=positions[1])] == [
                "B", "C"]
            assert [e.type for e in client.read_all(commit_position=positions[1],
                                                    backwards=True)] == ["A"]
            assert client.get_commit_position() == positions[-1]
        finally:
            client.close()


class _Notes(Application):
    """An application with no aggregates: only its recorder is used."""


def test_eventsourcing_notification_ids_start_at_one(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            client.append_to_stream("x", events=events("A", "B"),
                                    current_version=StreamState.NO_STREAM)
        finally:
            client.close()
        app = _Notes(env={"PERSISTENCE_MODULE": "eventsourcing_kurrentdb",
                          "KURRENTDB_URI": server.uri})
        try:
            assert app.recorder.max_notification_id() == 2
        finally:
            app.close()


# -- JSON ------------------------------------------------------------------------------------


def test_json_sent_over_grpc_reads_back_over_grpc_as_the_very_bytes_sent(client, stream):
    sent = [NewEvent(type="A", data=b'{ "sku" : "A-1",\n "n": 1.50 }'),
            NewEvent(type="B", data=b"{not json", content_type="application/json")]
    client.append_to_stream(stream, events=sent, current_version=StreamState.NO_STREAM)
    assert [e.data for e in client.get_stream(stream)] == [e.data for e in sent]


async def test_json_sent_over_grpc_is_a_json_value_in_process_and_bad_json_stays_bytes(
        tmp_path):
    async with otp.node():
        await start_store("j", tmp_path, grpc_port=0)
        host, port = address("j")

        def append() -> None:
            client = KurrentDBClient(f"kurrentdb://{host}:{port}?Tls=false")
            try:
                client.append_to_stream("order-1", events=[
                    NewEvent(type="Placed", data=b'{"sku": "A-1"}'),
                    NewEvent(type="Noted", data=b"{not json"),
                    NewEvent(type="Raw", data=b'{"x": 1}',
                             content_type="application/octet-stream"),
                ], current_version=StreamState.NO_STREAM)
            finally:
                client.close()

        await trio.to_thread.run_sync(append)
        read = await gateway.get_events("j", "order-1")
        assert [e.data for e in read] == [{"sku": "A-1"}, b"{not json", b'{"x": 1}']
        await stop_store("j")


def test_the_read_command_prints_json_sent_over_grpc_as_json(server, client, stream):
    client.append_to_stream(stream, events=[NewEvent(type="Placed",
                                                     data=b'{"sku": "A-1"}')],
                            current_version=StreamState.NO_STREAM)
    command = [sys.executable, "-m", "exesdb", "read", stream, "--store-id", "s",
               "--data-dir", str(server.data_dir)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert out.rstrip("\n").split("\t")[-1] == '{"sku": "A-1"}'
    out = subprocess.run([*command, "--json"], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out)["data"] == {"sku": "A-1"}


# -- soft delete -----------------------------------------------------------------------------

MAX_LONG = 9223372036854775807
"""The ``$tb`` KurrentDB writes for a soft delete (its deleted stream's number)."""


def test_a_soft_deleted_stream_can_be_deleted_again_with_its_last_version(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=1)
    client.delete_stream(stream, current_version=1)
    with pytest.raises(NotFoundError):
        client.get_stream(stream)


def test_a_soft_deleted_stream_can_be_tombstoned_with_its_last_version(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=1)
    client.tombstone_stream(stream, current_version=1)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(stream)


@pytest.mark.parametrize("operation", ["delete", "tombstone", "append"])
def test_a_soft_deleted_stream_reports_its_last_version_to_a_wrong_expectation(
        client, stream, operation):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=1)
    with pytest.raises(WrongCurrentVersionError) as info:
        if operation == "append":
            client.append_to_stream(stream, events=events("C"), current_version=0)
        else:
            getattr(client, f"{operation}_stream")(stream, current_version=0)
    assert info.value.actual_version == 1


def test_appending_with_a_soft_deleted_streams_last_version_continues_it(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=StreamState.ANY)
    client.append_to_stream(stream, events=events("C"), current_version=1)
    assert [(e.type, e.stream_position) for e in client.get_stream(stream)] == [("C", 2)]


def test_expecting_a_soft_deleted_stream_to_exist_is_the_stream_deleted_error(client, stream):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.delete_stream(stream, current_version=StreamState.EXISTS)


def test_a_soft_delete_writes_the_deleted_tb_as_the_streams_metadata(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.set_stream_metadata(stream, metadata={"owner": "me"})
    client.delete_stream(stream, current_version=1)
    # KurrentDB writes {"$tb": MAX_LONG} alone: what was set before is replaced
    assert client.get_stream_metadata(stream) == ({"$tb": MAX_LONG}, 1)


def test_appending_after_a_soft_delete_starts_after_the_deleted_events_and_moves_tb(
        client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=1)
    client.append_to_stream(stream, events=events("C", "D"),
                            current_version=StreamState.NO_STREAM)
    assert [(e.type, e.stream_position) for e in client.get_stream(stream)] == [
        ("C", 2), ("D", 3)]
    assert client.get_stream_metadata(stream) == ({"$tb": 2}, 1)
    client.append_to_stream(stream, events=events("E"), current_version=3)
    assert client.get_stream_metadata(stream) == ({"$tb": 2}, 1)


# -- deleting what never existed -------------------------------------------------------------


@pytest.mark.parametrize("expected", [StreamState.ANY, StreamState.NO_STREAM,
                                      StreamState.EXISTS, 0], ids=str)
def test_deleting_a_stream_that_never_existed_is_not_found(client, stream, expected):
    with pytest.raises(NotFoundError):
        client.delete_stream(stream, current_version=expected)
    assert client.get_stream_metadata(stream) == ({}, StreamState.NO_STREAM)  # no $tb


def test_a_stream_with_only_metadata_can_be_soft_deleted(client, stream):
    client.set_stream_metadata(stream, metadata={"owner": "me"})
    client.delete_stream(stream, current_version=StreamState.ANY)
    assert client.get_stream_metadata(stream)[0] == {"$tb": MAX_LONG}


# -- links -----------------------------------------------------------------------------------


def _link(stream_id: str, number: int) -> NewEvent:
    return NewEvent(type="$>", data=f"{number}@{stream_id}".encode(),
                    content_type="application/octet-stream")


def test_a_link_event_written_by_a_client_is_stored_as_it_was_sent(client, stream):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.append_to_stream(f"{stream}-links", events=[_link(stream, 0)],
                            current_version=StreamState.ANY)
    (read,) = client.get_stream(f"{stream}-links")
    assert (read.type, read.data, read.link) == ("$>", f"0@{stream}".encode(), None)


def test_reading_with_resolve_links_returns_the_linked_event_with_its_link(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    links = f"{stream}-links"
    client.append_to_stream(links, events=[_link(stream, 1), _link(stream, 0)],
                            current_version=StreamState.ANY)
    read = client.get_stream(links, resolve_links=True)
    assert [(e.type, e.stream_name, e.stream_position) for e in read] == [
        ("B", stream, 1), ("A", stream, 0)]
    assert [(e.link.type, e.link.stream_name, e.link.stream_position) for e in read] == [
        ("$>", links, 0), ("$>", links, 1)]
    # each carries its own position: the events were written before their links
    assert all(e.commit_position < e.link.commit_position for e in read)
    assert client.get_stream(links)[0].link is None  # not resolved unless asked


def test_an_all_read_and_a_subscription_resolve_links_too(client, stream):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    links = f"{stream}-links"
    start = client.append_to_stream(links, events=[_link(stream, 0)],
                                    current_version=StreamState.ANY)
    (read,) = client.read_all(commit_position=start, resolve_links=True, limit=1,
                              filter_exclude=())  # the default one leaves out "$>" events
    assert (read.type, read.stream_name, read.link.stream_name) == ("A", stream, links)
    with client.subscribe_to_stream(links, resolve_links=True, timeout=10) as subscription:
        got = next(iter(subscription))
    assert (got.type, got.link.type) == ("A", "$>")


def test_a_link_to_an_event_that_cannot_be_read_is_skipped_when_resolving(client, stream):
    links = f"{stream}-links"
    client.append_to_stream(links, events=[_link(stream, 5), _link("", 0)],
                            current_version=StreamState.ANY)
    assert client.get_stream(links, resolve_links=True) == ()  # the link alone: skipped
    assert len(client.get_stream(links)) == 2


# -- subscription progress -------------------------------------------------------------------


def _next_items(subscription: Any, n: int) -> list[Any]:
    """The next ``n`` items of a subscription (its client timeout bounds the wait)."""
    return [next(subscription) for _ in range(n)]


def test_a_subscription_says_caught_up_again_after_falling_behind(client, stream):
    with client.subscribe_to_stream(stream, include_caught_up=True, include_fell_behind=True,
                                    timeout=20) as subscription:
        (first,) = _next_items(subscription, 1)
        assert type(first).__name__ == "CaughtUp"
        client.append_to_stream(stream, events=events(*["Burst"] * 1200),
                                current_version=StreamState.ANY)
        items = _next_items(subscription, 1201)
    kinds = [type(i).__name__ for i in items]
    assert kinds.count("RecordedEvent") == 1200 and kinds[-1] == "CaughtUp"
    assert "FellBehind" not in kinds  # KurrentDB 25 does not send it either
    assert [i.stream_position for i in items if type(i).__name__ == "RecordedEvent"] == list(
        range(1200))


def _read_request(stream_id: str, compatibility: int, **options: Any) -> Any:
    request = client_streams_pb2.ReadReq()
    request.options.stream.stream_identifier.stream_name = stream_id.encode()
    request.options.count = 100
    request.options.uuid_option.string.SetInParent()
    request.options.no_filter.SetInParent()
    request.options.control_option.compatibility = compatibility
    for name, value in options.items():
        if name == "revision":
            request.options.stream.revision = value
        else:
            getattr(request.options.stream, name).SetInParent()
    return request


def test_a_stream_read_ends_with_its_last_position_for_a_compatible_client(server, client,
                                                                           stream):
    client.append_to_stream(stream, events=events("A", "B", "C"),
                            current_version=StreamState.ANY)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = streams_pb2_grpc.StreamsStub(channel)  # type: ignore[no-untyped-call]
        newer = list(stub.Read(_read_request(stream, 1, start=True)))
        older = list(stub.Read(_read_request(stream, 0, start=True)))
        client.set_stream_metadata(stream, metadata={"$tb": 2})
        truncated = list(stub.Read(_read_request(stream, 1, revision=0)))
        client.set_stream_metadata(stream, metadata={"$tb": 3})
        hidden = list(stub.Read(_read_request(stream, 1, revision=0)))
    finally:
        channel.close()
    assert [r.WhichOneof("content") for r in newer] == ["event"] * 3 + ["last_stream_position"]
    assert newer[-1].last_stream_position == 2
    assert [r.WhichOneof("content") for r in older] == ["event"] * 3
    assert [r.WhichOneof("content") for r in truncated] == [
        "event", "last_stream_position"]
    assert [(r.WhichOneof("content"), getattr(r, r.WhichOneof("content"))) for r in hidden] == [
        ("first_stream_position", 3), ("last_stream_position", 2)]
