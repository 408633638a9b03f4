"""Persistent subscription groups across a restart of the server: the groups and their
settings, the acknowledged position and the parked events survive; what was not
acknowledged is delivered again."""

from __future__ import annotations

from kurrentdbclient import KurrentDBClient

from .conftest import start_server
from .test_persistent import READ_DEADLINE, append, eventually, take


def test_groups_acks_and_parked_events_survive_a_restart(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            append(client, "orders", 4)
            client.create_subscription_to_stream("g", "orders", max_retry_count=3,
                                                 consumer_strategy="RoundRobin")
            client.create_subscription_to_all("all", from_end=True)
            sub = client.read_subscription_to_stream("g", "orders", timeout=READ_DEADLINE)
            events = take(sub, 4)
            sub.ack(events[0])
            sub.nack(events[1], "park")
            sub.ack(events[2])  # events[3] stays unacknowledged
            eventually(lambda: client.get_subscription_info("g", "orders")
                       .parked_message_count == 1)
            eventually(lambda: client.get_subscription_info("g", "orders")
                       .total_in_flight_messages == 1)
            sub.stop()
        finally:
            client.close()

        server.restart()

        client = KurrentDBClient(server.uri)
        try:
            info = client.get_subscription_info("g", "orders")
            assert (info.max_retry_count, info.consumer_strategy) == (3, "RoundRobin")
            assert info.parked_message_count == 1
            assert info.last_checkpointed_event_position == "2"
            assert {i.group_name for i in client.list_subscriptions()} >= {"g", "all"}
            with client.read_subscription_to_stream("g", "orders",
                                                    timeout=READ_DEADLINE) as sub:
                [again] = take(sub, 1)
                assert again.stream_position == 3  # only what was not acknowledged
                sub.ack(again)
                client.replay_parked_events("g", "orders")
                [replayed] = take(sub, 1)
                assert replayed.stream_position == 1
                sub.ack(replayed)
        finally:
            client.close()
