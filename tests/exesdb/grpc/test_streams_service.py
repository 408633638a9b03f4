"""The Streams service through the real kurrentdbclient against ``python -m exesdb
start``: append in every expected state, reads of streams and of $all, filters, catch-up
subscriptions, deletes, stream metadata and bad input.

One server subprocess per module (the ``server`` and ``client`` fixtures of conftest.py);
every test uses streams of its own (``stream`` fixture) and, in ``$all``, only looks at
the events it wrote.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from kurrentdbclient import NewEvent, StreamState
from kurrentdbclient.exceptions import (
    BadRequestError,
    FailedPreconditionError,
    GrpcError,
    MaximumAppendSizeExceededError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)
from kurrentdbclient.protos.v1 import streams_pb2 as client_streams_pb2
from kurrentdbclient.protos.v1 import streams_pb2_grpc

from exesdb.constants import MAX_EVENT_SIZE

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def grpc_stub(server: Any) -> Iterator[streams_pb2_grpc.StreamsStub]:
    """A raw grpc_stub, for requests the client library never makes."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield streams_pb2_grpc.StreamsStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()


_names = itertools.count()


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses."""
    return f"{request.node.name[:40]}-{next(_names)}-{uuid.uuid4().hex[:8]}"


def events(*types: str) -> list[NewEvent]:
    return [NewEvent(type=t, data=json.dumps({"t": t}).encode()) for t in types]


def types_of(recorded: Any) -> list[str]:
    return [e.type for e in recorded]


# -- append ----------------------------------------------------------------------------------


def test_append_returns_the_position_of_the_last_event_and_reads_back_the_bytes(client,
                                                                               stream):
    event = NewEvent(type="Made", data=b"\x00raw", metadata=b"{\"m\": 1}",
                     content_type="application/octet-stream")
    position = client.append_to_stream(stream, events=[event],
                                       current_version=StreamState.NO_STREAM)
    (read,) = client.get_stream(stream)
    assert (read.id, read.type, read.data, read.metadata, read.content_type) == (
        event.id, "Made", b"\x00raw", b"{\"m\": 1}", "application/octet-stream")
    assert (read.stream_name, read.stream_position) == (stream, 0)
    assert read.commit_position == read.prepare_position == position


def test_a_single_event_append_uses_append_and_a_batch_uses_batch_append(client, stream):
    client.append_event(stream, event=events("A")[0], current_version=StreamState.NO_STREAM)
    client.append_to_stream(stream, events=events("B", "C"), current_version=0)
    assert types_of(client.get_stream(stream)) == ["A", "B", "C"]


def test_the_recorded_time_is_the_commit_time(client, stream):
    before = time.time()
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    (read,) = client.get_stream(stream)
    assert before - 1 <= read.recorded_at.timestamp() <= time.time() + 1


@pytest.mark.parametrize("single", [True, False], ids=["append", "batch_append"])
def test_no_stream_fails_on_an_existing_stream_with_its_current_version(client, stream,
                                                                        single):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    new = events("C")[0] if single else events("C")
    with pytest.raises(WrongCurrentVersionError) as info:
        client.append_to_stream(stream, events=new, current_version=StreamState.NO_STREAM)
    assert info.value.actual_version == 1


@pytest.mark.parametrize("single", [True, False], ids=["append", "batch_append"])
def test_stream_exists_fails_on_a_missing_stream_saying_no_stream(client, stream, single):
    new = events("A")[0] if single else events("A")
    with pytest.raises(WrongCurrentVersionError) as info:
        client.append_to_stream(stream, events=new, current_version=StreamState.EXISTS)
    assert info.value.actual_version is StreamState.NO_STREAM


@pytest.mark.parametrize("single", [True, False], ids=["append", "batch_append"])
def test_a_revision_must_be_the_current_one(client, stream, single):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.NO_STREAM)
    new = events("B")[0] if single else events("B")
    with pytest.raises(WrongCurrentVersionError) as info:
        client.append_to_stream(stream, events=new, current_version=5)
    assert info.value.actual_version == 0
    client.append_to_stream(stream, events=new, current_version=0)
    client.append_to_stream(stream, events=events("C"), current_version=StreamState.EXISTS)
    assert types_of(client.get_stream(stream)) == ["A", "B", "C"]


def test_a_resent_append_is_idempotent_by_event_id(client, stream):
    batch = events("A", "B")
    first = client.append_to_stream(stream, events=batch, current_version=StreamState.NO_STREAM)
    again = client.append_to_stream(stream, events=batch, current_version=StreamState.NO_STREAM)
    assert again == first
    assert types_of(client.get_stream(stream)) == ["A", "B"]


def test_an_event_over_the_maximum_size_is_refused_as_invalid(client, stream):
    big = NewEvent(type="Big", data=b"x" * (MAX_EVENT_SIZE + 1))
    with pytest.raises(GrpcError, match=r"INVALID_ARGUMENT.*Maximum Append Size"):
        client.append_to_stream(stream, events=big, current_version=StreamState.ANY)
    with pytest.raises(MaximumAppendSizeExceededError):
        client.append_to_stream(stream, events=[big], current_version=StreamState.ANY)
    assert client.get_current_version(stream) is StreamState.NO_STREAM


# -- read streams ----------------------------------------------------------------------------


def test_a_stream_reads_forwards_backwards_with_a_limit_and_from_a_revision(client, stream):
    client.append_to_stream(stream, events=events(*"ABCDE"), current_version=StreamState.ANY)
    assert types_of(client.get_stream(stream)) == list("ABCDE")
    assert types_of(client.get_stream(stream, backwards=True)) == list("EDCBA")
    assert types_of(client.get_stream(stream, limit=2)) == ["A", "B"]
    assert types_of(client.get_stream(stream, stream_position=2)) == ["C", "D", "E"]
    assert types_of(client.get_stream(stream, stream_position=2, backwards=True)) == [
        "C", "B", "A"]
    assert types_of(client.get_stream(stream, stream_position=3, backwards=True,
                                      limit=2)) == ["D", "C"]
    assert client.get_stream(stream, stream_position=9) == ()
    assert client.get_current_version(stream) == 4


def test_a_missing_stream_is_not_found(client, stream):
    with pytest.raises(NotFoundError):
        client.get_stream(stream)
    assert client.get_current_version(stream) is StreamState.NO_STREAM


# -- read $all -------------------------------------------------------------------------------


def test_all_reads_forwards_from_a_position_included_and_backwards_excluded(client, stream):
    first = client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.append_to_stream(stream, events=events("B"), current_version=StreamState.ANY)
    last = client.append_to_stream(stream, events=events("C"), current_version=StreamState.ANY)
    forwards = [e for e in client.read_all(commit_position=first) if e.stream_name == stream]
    assert types_of(forwards) == ["A", "B", "C"]
    backwards = [e for e in client.read_all(commit_position=last, backwards=True)
                 if e.stream_name == stream]
    assert types_of(backwards) == ["B", "A"]
    assert types_of(client.read_all(commit_position=first, limit=1)) == ["A"]
    assert client.get_commit_position() >= last
    (newest,) = client.read_all(backwards=True, limit=1)
    assert newest.commit_position >= last


def test_all_filters_by_event_type_and_stream_name_with_regexes_and_prefixes(client, stream):
    tag = uuid.uuid4().hex[:8]
    start = client.append_to_stream(f"{stream}-x", events=[
        NewEvent(type=f"Order{tag}Placed", data=b"{}")], current_version=StreamState.ANY)
    client.append_to_stream(f"{stream}-y", events=[
        NewEvent(type=f"Order{tag}Paid", data=b"{}"),
        NewEvent(type=f"Invoice{tag}", data=b"{}")], current_version=StreamState.ANY)

    def read(**kwargs: Any) -> list[str]:
        return types_of(client.read_all(commit_position=start, **kwargs))

    assert read(filter_include=[f"Order{tag}.*"]) == [f"Order{tag}Placed", f"Order{tag}Paid"]
    assert read(filter_include=[f"Order{tag}"], filter_by_prefix=True) == [
        f"Order{tag}Placed", f"Order{tag}Paid"]
    assert read(filter_include=[f"{stream}-y"], filter_by_stream_name=True) == [
        f"Order{tag}Paid", f"Invoice{tag}"]
    assert read(filter_include=[f"{stream}-x"], filter_by_stream_name=True,
                filter_by_prefix=True) == [f"Order{tag}Placed"]
    excluded = read(filter_exclude=[f"Order{tag}.*"])
    assert f"Invoice{tag}" in excluded and not [t for t in excluded if t.startswith("Order")]
    assert types_of(client.read_all(commit_position=start, filter_include=[f"Invoice{tag}"],
                                    backwards=True)) == []


# -- catch-up subscriptions ------------------------------------------------------------------


def _collect(subscription: Any, n: int) -> list[Any]:
    """The next ``n`` items of a subscription, read on a thread (a test never hangs)."""
    out: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for _ in range(n):
                out.put(next(subscription))
        except Exception as exc:  # reported to the test
            out.put(exc)

    threading.Thread(target=read, daemon=True).start()
    items = []
    for _ in range(n):
        item = out.get(timeout=TIMEOUT)
        if isinstance(item, Exception):
            raise item
        items.append(item)
    return items


def test_a_stream_subscription_gets_old_then_new_events_without_gap_or_duplicate(client,
                                                                                 stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    with client.subscribe_to_stream(stream, include_caught_up=True) as subscription:
        old = _collect(subscription, 3)
        assert [type(e).__name__ for e in old] == ["RecordedEvent", "RecordedEvent", "CaughtUp"]
        assert types_of(old[:2]) == ["A", "B"]
        for t in "CDE":
            client.append_to_stream(stream, events=events(t), current_version=StreamState.ANY)
        new = _collect(subscription, 3)
    assert types_of(new) == ["C", "D", "E"]
    assert [e.stream_position for e in old[:2] + new] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("to_all", [False, True], ids=["stream", "all"])
def test_a_subscription_catching_up_while_appends_go_on_misses_and_repeats_nothing(
        client, stream, to_all):
    client.append_to_stream(stream, events=events(*["Old"] * 30),
                            current_version=StreamState.ANY)

    def append_more() -> None:
        for _ in range(60):
            client.append_to_stream(stream, events=events("New"),
                                    current_version=StreamState.ANY)

    subscribe = (client.subscribe_to_all(filter_include=[stream], filter_by_stream_name=True)
                 if to_all else client.subscribe_to_stream(stream))
    with subscribe as subscription:
        appender = threading.Thread(target=append_more)
        appender.start()
        received = _collect(subscription, 90)
        appender.join(TIMEOUT)
    assert [e.stream_position for e in received] == list(range(90))


def test_a_stream_subscription_from_a_revision_starts_after_it(client, stream):
    client.append_to_stream(stream, events=events(*"ABC"), current_version=StreamState.ANY)
    with client.subscribe_to_stream(stream, stream_position=0) as subscription:
        assert types_of(_collect(subscription, 2)) == ["B", "C"]


def test_a_stream_subscription_from_the_end_gets_only_new_events(client, stream):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    with client.subscribe_to_stream(stream, from_end=True) as subscription:
        client.append_to_stream(stream, events=events("B"), current_version=StreamState.ANY)
        assert types_of(_collect(subscription, 1)) == ["B"]


def test_an_all_subscription_gets_old_then_new_events_in_order(client, stream):
    start = client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.append_to_stream(stream, events=events("B"), current_version=StreamState.ANY)
    with client.subscribe_to_all(commit_position=start - 1 if start else None,
                                 filter_include=[stream], filter_by_stream_name=True,
                                 ) as subscription:
        assert types_of(_collect(subscription, 2)) == ["A", "B"]
        client.append_to_stream(stream, events=events("C", "D"),
                                current_version=StreamState.ANY)
        assert types_of(_collect(subscription, 2)) == ["C", "D"]


def test_an_all_subscription_from_a_position_starts_after_it(client, stream):
    first = client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.append_to_stream(stream, events=events("B"), current_version=StreamState.ANY)
    with client.subscribe_to_all(commit_position=first) as subscription:
        assert types_of(_collect(subscription, 1)) == ["B"]


def test_a_filtered_all_subscription_sends_checkpoints_while_it_skips(client, stream):
    start = client.append_to_stream(stream, events=events("Skip"),
                                    current_version=StreamState.ANY)
    client.append_to_stream(stream, events=events("Skip", "Skip", "Keep"),
                            current_version=StreamState.ANY)
    with client.subscribe_to_all(commit_position=start, filter_include=["Keep"],
                                 include_checkpoints=True, window_size=1,
                                 checkpoint_interval_multiplier=2) as subscription:
        items = _collect(subscription, 2)
    assert [type(i).__name__ for i in items] == ["Checkpoint", "RecordedEvent"]
    checkpoint, kept = items
    assert start < checkpoint.commit_position < kept.commit_position
    assert kept.type == "Keep"


# -- delete and tombstone --------------------------------------------------------------------


def test_a_deleted_stream_reads_as_not_found_and_continues_its_numbering(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=1)
    with pytest.raises(NotFoundError):
        client.get_stream(stream)
    client.append_to_stream(stream, events=events("C"), current_version=StreamState.ANY)
    (read,) = client.get_stream(stream)
    assert (read.type, read.stream_position) == ("C", 2)


def test_a_delete_with_a_wrong_version_fails_with_the_current_version(client, stream):
    client.append_to_stream(stream, events=events("A", "B"), current_version=StreamState.ANY)
    with pytest.raises(WrongCurrentVersionError) as info:
        client.delete_stream(stream, current_version=0)
    assert info.value.actual_version == 1
    with pytest.raises(NotFoundError):
        client.delete_stream(f"{stream}-missing", current_version=0)


def test_a_tombstoned_stream_cannot_be_read_or_written(client, stream):
    client.append_to_stream(stream, events=events("A"), current_version=StreamState.ANY)
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError):
        client.get_stream(stream)
    with pytest.raises(StreamIsDeletedError):
        client.append_to_stream(stream, events=events("B"), current_version=StreamState.ANY)
    with pytest.raises(FailedPreconditionError, match="is deleted"):
        client.append_to_stream(stream, events=events("B")[0], current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeletedError), client.subscribe_to_stream(stream) as sub:
        next(sub)
    with pytest.raises(StreamIsDeletedError):
        client.tombstone_stream(stream, current_version=StreamState.ANY)


# -- stream metadata -------------------------------------------------------------------------


def test_stream_metadata_round_trips_through_the_metadata_stream(client, stream):
    assert client.get_stream_metadata(stream) == ({}, StreamState.NO_STREAM)
    client.set_stream_metadata(stream, metadata={"$maxCount": 2, "owner": "me"})
    assert client.get_stream_metadata(stream) == ({"$maxCount": 2, "owner": "me"}, 0)


def test_max_count_shows_only_the_last_events(client, stream):
    client.append_to_stream(stream, events=events(*"ABCD"), current_version=StreamState.ANY)
    client.set_stream_metadata(stream, metadata={"$maxCount": 2})
    assert types_of(client.get_stream(stream)) == ["C", "D"]
    assert types_of(client.get_stream(stream, backwards=True)) == ["D", "C"]
    assert types_of(client.get_stream(stream, limit=1)) == ["C"]


def test_truncate_before_hides_the_earlier_events(client, stream):
    client.append_to_stream(stream, events=events(*"ABCD"), current_version=StreamState.ANY)
    client.set_stream_metadata(stream, metadata={"$tb": 3})
    assert types_of(client.get_stream(stream)) == ["D"]
    assert types_of(client.get_stream(stream, stream_position=1, backwards=True)) == []
    with client.subscribe_to_stream(stream) as subscription:
        assert types_of(_collect(subscription, 1)) == ["D"]


def test_max_age_hides_the_older_events(server, client, stream):
    client.append_to_stream(stream, events=events("Old"), current_version=StreamState.ANY)
    time.sleep(1.1)
    client.set_stream_metadata(stream, metadata={"$maxAge": 1})
    assert client.get_stream(stream) == ()
    client.append_to_stream(stream, events=events("New"), current_version=StreamState.ANY)
    assert types_of(client.get_stream(stream)) == ["New"]


def test_delete_and_tombstone_answer_the_all_position_at_the_delete(client, grpc_stub, stream):
    position = client.append_to_stream(stream, events=events("A"),
                                       current_version=StreamState.ANY)
    delete = client_streams_pb2.DeleteReq()
    delete.options.stream_identifier.stream_name = stream.encode()
    delete.options.revision = 0
    response = grpc_stub.Delete(delete)
    assert response.position.commit_position >= position
    tombstone = client_streams_pb2.TombstoneReq()
    tombstone.options.stream_identifier.stream_name = stream.encode()
    tombstone.options.no_stream.SetInParent()
    assert grpc_stub.Tombstone(tombstone).position.commit_position >= position


# -- the raw protocol ------------------------------------------------------------------------


def test_batch_append_takes_interleaved_chunks_and_answers_each_correlation_id(grpc_stub, stream):
    def chunk(correlation: str, name: str, final: bool, *types: str,
              options: bool = False) -> client_streams_pb2.BatchAppendReq:
        request = client_streams_pb2.BatchAppendReq(is_final=final)
        request.correlation_id.string = correlation
        if options:
            request.options.stream_identifier.stream_name = name.encode()
            request.options.any.SetInParent()
        for t in types:
            proposed = request.proposed_messages.add(
                data=b"{}", metadata={"type": t, "content-type": "application/json"})
            proposed.id.string = str(uuid.uuid4())
        return request

    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    responses = list(grpc_stub.BatchAppend(iter([
        chunk(one, f"{stream}-1", False, "A", options=True),
        chunk(two, f"{stream}-2", False, "X", options=True),
        chunk(one, "", True, "B"),
        chunk(two, "", True, "Y", "Z"),
    ])))
    assert [(r.correlation_id.string, r.success.current_revision) for r in responses] == [
        (one, 1), (two, 2)]
    assert responses[0].stream_identifier.stream_name == f"{stream}-1".encode()


def test_the_structured_uuid_option_reads_structured_event_ids(client, grpc_stub, stream):
    event = events("A")[0]
    client.append_to_stream(stream, events=[event], current_version=StreamState.ANY)
    req = _options(count=10)
    req.options.stream.stream_identifier.stream_name = stream.encode()
    req.options.stream.start.SetInParent()
    req.options.uuid_option.structured.SetInParent()
    (response,) = list(grpc_stub.Read(req))
    structured = response.event.event.id.structured
    value = ((structured.most_significant_bits & (2**64 - 1)) << 64
             | structured.least_significant_bits & (2**64 - 1))
    assert uuid.UUID(int=value) == event.id


# -- bad input -------------------------------------------------------------------------------


def _options(**fields: Any) -> client_streams_pb2.ReadReq:
    return client_streams_pb2.ReadReq(options=client_streams_pb2.ReadReq.Options(**fields))


def _invalid(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if not isinstance(result, client_streams_pb2.AppendResp):
            list(result)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    return info.value.details()


def test_a_read_without_a_stream_option_is_invalid(grpc_stub):
    assert "stream or all" in _invalid(lambda: grpc_stub.Read(_options(count=1)))


def test_a_backwards_subscription_is_invalid(grpc_stub, stream):
    req = _options(read_direction=client_streams_pb2.ReadReq.Options.Backwards,
                   subscription=client_streams_pb2.ReadReq.Options.SubscriptionOptions())
    req.options.stream.stream_identifier.stream_name = stream.encode()
    req.options.stream.start.SetInParent()
    assert "forwards" in _invalid(lambda: grpc_stub.Read(req))


def test_a_bad_filter_regex_is_invalid(grpc_stub):
    req = _options(count=1)
    req.options.all.start.SetInParent()
    req.options.filter.event_type.regex = "(unclosed"
    assert "regular expression" in _invalid(lambda: grpc_stub.Read(req))


def test_reading_the_name_all_as_a_stream_is_invalid(grpc_stub):
    req = _options(count=1)
    req.options.stream.stream_identifier.stream_name = b"$all"
    req.options.stream.start.SetInParent()
    assert "$all" in _invalid(lambda: grpc_stub.Read(req))


def test_an_append_without_options_or_event_type_is_invalid(grpc_stub, stream):
    proposed = client_streams_pb2.AppendReq.ProposedMessage(
        data=b"{}", metadata={"content-type": "application/json"})
    proposed.id.string = str(uuid.uuid4())
    assert "options" in _invalid(lambda: grpc_stub.Append(iter([
        client_streams_pb2.AppendReq(proposed_message=proposed)])))
    options = client_streams_pb2.AppendReq.Options()
    options.stream_identifier.stream_name = stream.encode()
    options.any.SetInParent()
    assert "'type'" in _invalid(lambda: grpc_stub.Append(iter([
        client_streams_pb2.AppendReq(options=options),
        client_streams_pb2.AppendReq(proposed_message=proposed)])))


def test_an_append_over_the_maximum_total_size_is_invalid_and_writes_nothing(client, grpc_stub,
                                                                          stream):
    options = client_streams_pb2.AppendReq.Options()
    options.stream_identifier.stream_name = stream.encode()
    options.any.SetInParent()
    chunk = b"x" * (15 * 1024 * 1024)

    def requests() -> Iterator[client_streams_pb2.AppendReq]:
        yield client_streams_pb2.AppendReq(options=options)
        for _ in range(5):
            proposed = client_streams_pb2.AppendReq.ProposedMessage(
                data=chunk, metadata={"type": "Big", "content-type": "application/octet-stream"})
            proposed.id.string = str(uuid.uuid4())
            yield client_streams_pb2.AppendReq(proposed_message=proposed)

    assert "Maximum Append Size of 67108864" in _invalid(lambda: grpc_stub.Append(requests()))
    assert client.get_current_version(stream) is StreamState.NO_STREAM


def test_an_event_id_that_is_not_a_uuid_is_a_bad_request(client, stream):
    bad = NewEvent(type="A", data=b"{}")
    object.__setattr__(bad, "id", "not-a-uuid")
    with pytest.raises(GrpcError, match=r"INVALID_ARGUMENT.*not a UUID"):
        client.append_to_stream(stream, events=bad, current_version=StreamState.ANY)
    with pytest.raises(BadRequestError, match="not a UUID"):
        client.append_to_stream(stream, events=[bad, *events("B")],
                                current_version=StreamState.ANY)
    assert client.get_current_version(stream) is StreamState.NO_STREAM



def test_large_events_are_read_and_subscribed_in_smaller_batches_without_loss(client, stream):
    big = [bytes([i]) * (1024 * 1024) for i in range(12)]  # 12 MiB: batches of about 4
    for chunk in (big[:4], big[4:8], big[8:]):
        client.append_to_stream(stream, events=[NewEvent(type="Big", data=d) for d in chunk],
                                current_version=StreamState.ANY)
    assert [e.data for e in client.get_stream(stream)] == big
    assert [e.data for e in client.get_stream(stream, backwards=True)] == big[::-1]
    subscription = client.subscribe_to_stream(stream, timeout=10)
    try:
        received = [next(subscription).data for _ in range(12)]
    finally:
        subscription.stop()
    assert received == big
