"""Persistent subscriptions through the real kurrentdbclient: create, update, delete, info
and list (to a stream and to $all with a filter), reading with acks and every nack action,
message timeouts, retries and parking, replay of parked events, competing consumers and
the errors.

One server per module; every test uses a stream and a group of its own. Reads carry a
deadline, so that a missing event fails the test instead of hanging it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    AlreadyExistsError,
    GrpcError,
    InternalError,
    MaximumSubscriptionsReachedError,
    NotFoundError,
)
from kurrentdbclient.protos.v1 import persistent_pb2, persistent_pb2_grpc, shared_pb2

from exesdb.grpc.groups.config import BATCH_NOT_BELOW_BUFFER

READ_DEADLINE = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def append(client: KurrentDBClient, stream: str, n: int, event_type: str = "Happened") -> None:
    client.append_to_stream(
        stream, current_version=StreamState.ANY,
        events=[NewEvent(type=event_type, data=f'{{"i": {i}}}'.encode()) for i in range(n)])


def take(subscription: Any, n: int) -> list[Any]:
    events = []
    for event in subscription:
        events.append(event)
        if len(events) == n:
            break
    return events


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not become true in time"
        time.sleep(0.05)


@pytest.fixture
def stream(client: KurrentDBClient) -> str:
    return unique("orders")


# -- create, update, delete, info, list ---------------------------------------------------------


def test_a_group_on_a_stream_reports_its_settings(client, stream):
    client.create_subscription_to_stream(
        "g", stream, stream_position=3, resolve_links=True, consumer_strategy="RoundRobin",
        message_timeout=12.5, max_retry_count=4, min_checkpoint_count=2,
        max_checkpoint_count=50, checkpoint_after=1.5, max_subscriber_count=7,
        live_buffer_size=40, read_batch_size=20, history_buffer_size=60,
        extra_statistics=True)
    info = client.get_subscription_info("g", stream)
    assert (info.event_source, info.group_name, info.start_from) == (stream, "g", "3")
    assert (info.resolve_links, info.consumer_strategy, info.message_timeout) == (
        True, "RoundRobin", 12.5)
    assert (info.max_retry_count, info.min_checkpoint_count, info.max_checkpoint_count,
            info.checkpoint_after, info.max_subscriber_count) == (4, 2, 50, 1.5, 7)
    assert (info.live_buffer_size, info.read_batch_size, info.history_buffer_size,
            info.extra_statistics) == (40, 20, 60, True)
    assert info.status == "Live"


def test_a_group_on_all_reports_its_start_position(client):
    group = unique("g")
    client.create_subscription_to_all(group, commit_position=0)
    info = client.get_subscription_info(group)
    assert (info.event_source, info.start_from) == ("$all", "C:0/P:0")
    client.delete_subscription(group)


def test_update_changes_the_settings(client, stream):
    client.create_subscription_to_stream("g", stream)
    client.update_subscription_to_stream("g", stream, max_retry_count=2,
                                         consumer_strategy="RoundRobin")
    info = client.get_subscription_info("g", stream)
    assert (info.max_retry_count, info.consumer_strategy) == (2, "RoundRobin")


def test_delete_removes_the_group(client, stream):
    client.create_subscription_to_stream("g", stream)
    client.delete_subscription("g", stream)
    with pytest.raises(NotFoundError):
        client.get_subscription_info("g", stream)
    client.create_subscription_to_stream("g", stream)  # the name is free again


def test_list_shows_every_group_and_those_of_a_stream(client, stream):
    client.create_subscription_to_stream("a", stream)
    client.create_subscription_to_stream("b", stream)
    other = unique("other")
    client.create_subscription_to_stream("a", other)
    assert sorted(i.group_name for i in client.list_subscriptions_to_stream(stream)) == [
        "a", "b"]
    listed = {(i.event_source, i.group_name) for i in client.list_subscriptions()}
    assert {(stream, "a"), (stream, "b"), (other, "a")} <= listed
    assert client.list_subscriptions_to_stream(unique("none")) == []


def test_creating_a_group_twice_is_already_exists(client, stream):
    client.create_subscription_to_stream("g", stream)
    with pytest.raises(AlreadyExistsError):
        client.create_subscription_to_stream("g", stream)


def test_an_unknown_group_is_not_found_for_every_call(client, stream):
    with pytest.raises(NotFoundError):
        client.get_subscription_info("nope", stream)
    with pytest.raises(NotFoundError):
        client.update_subscription_to_stream("nope", stream)
    with pytest.raises(NotFoundError):
        client.delete_subscription("nope", stream)
    with pytest.raises(NotFoundError):
        client.replay_parked_events("nope", stream)
    with pytest.raises(NotFoundError):
        take(client.read_subscription_to_stream("nope", stream, timeout=READ_DEADLINE), 1)


# -- settings are validated as KurrentDB validates them --------------------------------------


def failure(error: BaseException) -> dict[str, str]:
    """The trailers of the gRPC error the client raised ``error`` from."""
    origin = error.__context__
    assert isinstance(origin, grpc.Call)
    return dict(origin.trailing_metadata() or ())


def test_a_read_batch_not_below_the_history_buffer_fails_the_create(client, stream):
    with pytest.raises(InternalError, match="may not be greater than or equal") as caught:
        client.create_subscription_to_stream("g", stream, read_batch_size=50,
                                             history_buffer_size=50)
    assert failure(caught.value) == {
        "exception": "persistent-subscription-failed", "stream-name": stream,
        "group-name": "g", "reason": BATCH_NOT_BELOW_BUFFER}
    with pytest.raises(NotFoundError):  # nothing was created
        client.get_subscription_info("g", stream)


def test_an_unknown_consumer_strategy_fails_the_create(client, stream):
    with pytest.raises(InternalError) as caught:
        client.persistent_subscriptions.create("g", stream_name=stream,
                                               consumer_strategy="Lottery")  # type: ignore[arg-type]
    assert failure(caught.value)["reason"] == "Consumer strategy Lottery does not exist."
    with pytest.raises(NotFoundError):
        client.get_subscription_info("g", stream)


def test_an_update_to_settings_kurrentdb_refuses_fails_and_changes_nothing(client, stream):
    client.create_subscription_to_stream("g", stream, read_batch_size=20)
    with pytest.raises(InternalError):
        client.update_subscription_to_stream("g", stream, read_batch_size=500,
                                             history_buffer_size=100)
    assert client.get_subscription_info("g", stream).read_batch_size == 20


def test_a_start_past_the_end_of_all_fails_the_create(client):
    group = unique("g")
    end = client.get_commit_position()
    with pytest.raises(InternalError, match="last commit position in the transaction file"):
        client.create_subscription_to_all(group, commit_position=end + 1000)


def test_settings_kurrentdb_accepts_are_accepted(client, stream):
    client.create_subscription_to_stream(
        "g", stream, min_checkpoint_count=100, max_checkpoint_count=5, live_buffer_size=0,
        max_retry_count=-1, message_timeout=-1.0, checkpoint_after=0)
    info = client.get_subscription_info("g", stream)
    assert (info.min_checkpoint_count, info.max_checkpoint_count, info.live_buffer_size,
            info.max_retry_count) == (100, 5, 0, -1)


def test_a_filter_regex_that_does_not_compile_is_invalid_argument(client):
    with pytest.raises(GrpcError, match="INVALID_ARGUMENT"):
        client.create_subscription_to_all(unique("g"), filter_include=["(unclosed"])


# -- reading ----------------------------------------------------------------------------------


def test_every_event_is_delivered_once_when_acked(client, stream):
    append(client, stream, 5)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    events = take(sub, 5)
    for event in events:
        sub.ack(event)
    assert [e.stream_position for e in events] == [0, 1, 2, 3, 4]
    assert {e.retry_count for e in events} == {0}
    append(client, stream, 1)
    [live] = take(sub, 1)
    sub.ack(live)
    assert live.stream_position == 5
    eventually(lambda: client.get_subscription_info("g", stream).total_in_flight_messages == 0)
    sub.stop()


def test_a_group_starts_where_it_was_told(client, stream):
    append(client, stream, 3)
    client.create_subscription_to_stream("from-end", stream, from_end=True)
    client.create_subscription_to_stream("from-1", stream, stream_position=1)
    append(client, stream, 1)
    with client.read_subscription_to_stream("from-end", stream, timeout=READ_DEADLINE) as sub:
        assert [e.stream_position for e in take(sub, 1)] == [3]
    with client.read_subscription_to_stream("from-1", stream, timeout=READ_DEADLINE) as sub:
        assert [e.stream_position for e in take(sub, 3)] == [1, 2, 3]


def test_nack_retry_delivers_the_event_again(client, stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    first, second = take(sub, 2)
    sub.nack(first, "retry")
    sub.ack(second)
    [again] = take(sub, 1)
    assert (again.id, again.retry_count) == (first.id, 1)
    sub.ack(again)
    sub.stop()


def test_nack_skip_does_not_deliver_the_event_again(client, stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    first, second = take(sub, 2)
    sub.nack(first, "skip")
    sub.ack(second)
    append(client, stream, 1)
    [next_event] = take(sub, 1)
    assert next_event.stream_position == 2
    sub.stop()


def test_nack_park_parks_the_event_and_replay_delivers_it_again(client, stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    first, second = take(sub, 2)
    sub.nack(first, "park")
    sub.ack(second)
    eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 1)
    parked = client.get_stream(f"$persistentsubscription-{stream}::g-parked")
    assert [(e.type, e.data) for e in parked] == [("$>", f"0@{stream}".encode())]
    client.replay_parked_events("g", stream)
    [replayed] = take(sub, 1)
    assert (replayed.id, replayed.stream_position) == (first.id, 0)
    assert replayed.link is not None and replayed.ack_id == replayed.link.id
    sub.ack(replayed)
    eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 0)
    sub.stop()


def test_nack_stop_ends_the_consumers_call(client, stream):
    append(client, stream, 1)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    [event] = take(sub, 1)
    sub.nack(event, "stop")
    assert list(sub) == []
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as other:
        [again] = take(other, 1)  # what the stopped consumer held goes to the next
        assert again.id == event.id


def test_an_event_not_acked_within_the_message_timeout_is_delivered_again(client, stream):
    append(client, stream, 1)
    client.create_subscription_to_stream("g", stream, message_timeout=0.3)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        first, again = take(sub, 2)
        assert (again.id, first.retry_count, again.retry_count) == (first.id, 0, 1)
        sub.ack(again)


def test_an_event_past_the_max_retry_count_is_parked(client, stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream, max_retry_count=1)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        first, second = take(sub, 2)
        sub.ack(second)
        sub.nack(first, "retry")
        [again] = take(sub, 1)
        assert (again.id, again.retry_count) == (first.id, 1)
        sub.nack(again, "retry")
        eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 1)


def test_round_robin_shares_the_events_between_consumers(client, stream):
    client.create_subscription_to_stream("g", stream, consumer_strategy="RoundRobin")
    one = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    two = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    eventually(lambda: len(client.get_subscription_info("g", stream).connections) == 2)
    append(client, stream, 6)
    got_one, got_two = take(one, 3), take(two, 3)
    for sub, events in ((one, got_one), (two, got_two)):
        for event in events:
            sub.ack(event)
    assert sorted(e.stream_position for e in got_one + got_two) == [0, 1, 2, 3, 4, 5]
    assert {e.retry_count for e in got_one + got_two} == {0}
    one.stop()
    two.stop()


def test_a_consumer_over_the_max_subscriber_count_is_refused(client, stream):
    client.create_subscription_to_stream("g", stream, max_subscriber_count=1)
    with (client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE),
          pytest.raises(MaximumSubscriptionsReachedError)):
        client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)


def test_info_reports_connections_and_the_checkpoint(client, stream):
    append(client, stream, 3)
    client.create_subscription_to_stream("g", stream, min_checkpoint_count=1,
                                         checkpoint_after=0.1)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        for event in take(sub, 3):
            sub.ack(event)

        def checkpointed() -> bool:
            info = client.get_subscription_info("g", stream)
            return info.last_checkpointed_event_position == "2"

        eventually(checkpointed)
        info = client.get_subscription_info("g", stream)
        [connection] = info.connections
        assert connection.from_.startswith("127.0.0.1:")
        assert (connection.total_items, info.last_known_event_position) == (3, "2")


def test_a_group_on_all_with_a_filter_gets_only_matching_events(client):
    group, prefix = unique("g"), unique("filtered")
    client.create_subscription_to_all(group, from_end=True, filter_include=[f"{prefix}-.*"],
                                      filter_by_stream_name=True)
    append(client, unique("noise"), 2)
    append(client, f"{prefix}-1", 2)
    with client.read_subscription_to_all(group, timeout=READ_DEADLINE) as sub:
        events = take(sub, 2)
        for event in events:
            sub.ack(event)
        assert {e.stream_name for e in events} == {f"{prefix}-1"}
    client.delete_subscription(group)


def test_deleting_a_group_drops_its_consumers_with_not_found(client, stream):
    append(client, stream, 1)
    client.create_subscription_to_stream("g", stream)
    sub = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    take(sub, 1)
    client.delete_subscription("g", stream)
    with pytest.raises(NotFoundError):
        take(sub, 1)


# -- calls the client library does not make ------------------------------------------------


@pytest.fixture
def grpc_stub(server) -> Any:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield persistent_pb2_grpc.PersistentSubscriptionsStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()


def test_restart_subsystem_keeps_the_groups(client, grpc_stub, stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        sub.ack(take(sub, 1)[0])
        eventually(lambda: client.get_subscription_info("g", stream)
                   .total_in_flight_messages == 1)
    grpc_stub.RestartSubsystem(shared_pb2.Empty(), timeout=READ_DEADLINE)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        [event] = take(sub, 1)
        assert event.stream_position == 1


def test_a_read_that_does_not_start_with_options_is_invalid_argument(grpc_stub):
    ack = persistent_pb2.ReadReq(ack=persistent_pb2.ReadReq.Ack(id=b"x"))
    with pytest.raises(grpc.RpcError) as caught:
        list(grpc_stub.Read(iter([ack]), timeout=READ_DEADLINE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_ack_with_a_malformed_id_is_invalid_argument(client, grpc_stub, stream):
    client.create_subscription_to_stream("g", stream)
    options = persistent_pb2.ReadReq.Options(
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode()),
        group_name="g", buffer_size=10)
    options.uuid_option.string.SetInParent()
    requests = [persistent_pb2.ReadReq(options=options),
                persistent_pb2.ReadReq(ack=persistent_pb2.ReadReq.Ack(
                    id=b"x", ids=[shared_pb2.UUID(string="not-a-uuid")]))]
    with pytest.raises(grpc.RpcError) as caught:
        list(grpc_stub.Read(iter(requests), timeout=READ_DEADLINE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ack.ids" in caught.value.details()


def test_a_group_on_all_with_the_default_filter_skips_system_and_config_events(client):
    group = unique("g")
    client.create_subscription_to_all(group, from_end=True)  # the client's default filter
    client.create_subscription_to_stream("other", unique("s"))  # writes the groups' settings
    stream = unique("mine")
    append(client, stream, 1)
    with client.read_subscription_to_all(group, timeout=READ_DEADLINE) as sub:
        [event] = take(sub, 1)
        assert (event.stream_name, event.type) == (stream, "Happened")
        sub.ack(event)
    client.delete_subscription(group)


def test_groups_whose_names_would_share_a_subscription_cannot_both_exist(client):
    base = unique("a")
    client.create_subscription_to_stream("b::c", base)
    with pytest.raises(AlreadyExistsError):
        client.create_subscription_to_stream("c", f"{base}::b")


def test_replayed_parked_events_stay_parked_until_done_across_restart_subsystem(client, grpc_stub,
                                                                              stream):
    append(client, stream, 2)
    client.create_subscription_to_stream("g", stream)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        first, second = take(sub, 2)
        sub.nack(first, "park")
        sub.ack(second)
        eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 1)
    client.replay_parked_events("g", stream)  # queued in the group, no consumer yet
    grpc_stub.RestartSubsystem(shared_pb2.Empty(), timeout=READ_DEADLINE)
    eventually(lambda: client.get_subscription_info("g", stream).status == "Live")
    assert client.get_subscription_info("g", stream).parked_message_count == 1
    client.replay_parked_events("g", stream)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        [replayed] = take(sub, 1)
        assert (replayed.id, replayed.stream_position) == (first.id, 0)
        sub.ack(replayed)
        eventually(lambda: client.get_subscription_info("g", stream)
                   .parked_message_count == 0)


def test_update_moves_the_start_of_a_group_with_nothing_acknowledged(client, stream):
    append(client, stream, 5)
    client.create_subscription_to_stream("g", stream)
    client.update_subscription_to_stream("g", stream, stream_position=3)
    assert client.get_subscription_info("g", stream).start_from == "3"
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        events = take(sub, 2)
        assert [e.stream_position for e in events] == [3, 4]
        for event in events:
            sub.ack(event)


def test_update_of_the_start_keeps_a_checkpointed_group_where_it_is(client, stream):
    append(client, stream, 4)
    client.create_subscription_to_stream("g", stream, min_checkpoint_count=1,
                                         checkpoint_after=0.1)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        for event in take(sub, 2):
            sub.ack(event)
        eventually(lambda: client.get_subscription_info("g", stream)
                   .last_checkpointed_event_position == "1")
    client.update_subscription_to_stream("g", stream, from_end=True)
    assert client.get_subscription_info("g", stream).start_from == "-1"
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        assert [e.stream_position for e in take(sub, 2)] == [2, 3]


def test_update_without_a_start_keeps_where_the_group_reads_from(client, stream):
    append(client, stream, 3)
    client.create_subscription_to_stream("g", stream, stream_position=1)
    client.update_subscription_to_stream("g", stream, max_retry_count=3)  # resends "1"
    info = client.get_subscription_info("g", stream)
    assert (info.start_from, info.max_retry_count) == ("1", 3)
    with client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE) as sub:
        assert [e.stream_position for e in take(sub, 2)] == [1, 2]


def test_any_consumer_may_ack_or_nack_an_event_in_flight_to_another(client, stream):
    client.create_subscription_to_stream("g", stream, consumer_strategy="RoundRobin",
                                         message_timeout=600)
    one = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    two = client.read_subscription_to_stream("g", stream, timeout=READ_DEADLINE)
    eventually(lambda: len(client.get_subscription_info("g", stream).connections) == 2)
    append(client, stream, 4)
    mine, theirs = take(one, 2), take(two, 2)
    one.ack(theirs[0])  # in flight to the other consumer: settled all the same
    one.nack(theirs[1], "park")
    one.ack(mine[0])
    one.ack(mine[1])
    eventually(lambda: client.get_subscription_info("g", stream)
               .total_in_flight_messages == 0)
    eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 1)
    one.stop()
    two.stop()


def test_a_timed_out_event_is_retried_then_parked_before_the_next_goes_out(client, stream):
    append(client, stream, 3)
    client.create_subscription_to_stream("g", stream, message_timeout=0.3, max_retry_count=2)
    with client.read_subscription_to_stream("g", stream, event_buffer_size=1,
                                            timeout=READ_DEADLINE) as sub:
        seen = []
        for event in sub:
            seen.append((event.stream_position, event.retry_count))
            if event.stream_position > 0:
                sub.ack(event)
            if len(seen) == 5:
                break
    assert seen == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)]
    eventually(lambda: client.get_subscription_info("g", stream).parked_message_count == 1)
