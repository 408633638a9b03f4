"""Persistent subscription groups across a restart of the server: the groups and their
settings, the acknowledged position and the parked events survive (parked events being
replayed included); what was not acknowledged is delivered again; stored settings that
no longer read never cost a group its checkpoint.

Some tests write to the store directly while the server is stopped (what a client may
not write through the server: the groups' settings stream, data that is JSON ``null``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from kurrentdbclient import KurrentDBClient
from kurrentdbclient.exceptions import NotFoundError

from exesdb.constants import ANY
from exesdb.events import NewEvent
from exesdb.grpc.groups.config import CONFIG_EVENT_TYPE, CONFIG_STREAM
from exesdb.storage import SQLiteBackend

from .conftest import Server, start_server
from .test_persistent import READ_DEADLINE, append, eventually, take


def write_while_stopped(server: Server, stream: str, *events: NewEvent) -> None:
    """Stop the server, append ``events`` to ``stream`` of store ``s`` directly, start
    the server again on the same ports."""
    ports = [server.ports[s] for s in server.store_ids]
    server.stop()

    async def write() -> None:
        backend = await SQLiteBackend.open(server.data_dir / "s")
        try:
            await backend.append(stream, ANY, events)
        finally:
            await backend.close()

    trio.run(write)
    server.start(ports)


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


def test_replayed_parked_events_not_yet_done_are_still_parked_after_a_restart(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            append(client, "orders", 2)
            client.create_subscription_to_stream("g", "orders")
            with client.read_subscription_to_stream("g", "orders",
                                                    timeout=READ_DEADLINE) as sub:
                first, second = take(sub, 2)
                sub.nack(first, "park")
                sub.ack(second)
                eventually(lambda: client.get_subscription_info("g", "orders")
                           .parked_message_count == 1)
            client.replay_parked_events("g", "orders")  # no consumer takes it yet
        finally:
            client.close()

        server.restart()

        client = KurrentDBClient(server.uri)
        try:
            assert client.get_subscription_info("g", "orders").parked_message_count == 1
            client.replay_parked_events("g", "orders")
            with client.read_subscription_to_stream("g", "orders",
                                                    timeout=READ_DEADLINE) as sub:
                [replayed] = take(sub, 1)
                assert (replayed.id, replayed.stream_position) == (first.id, 0)
                sub.ack(replayed)
        finally:
            client.close()


def checkpointed_groups(client: KurrentDBClient) -> None:
    """Groups ``g`` and ``h`` on ``orders`` (4 events), both acknowledged up to 1."""
    append(client, "orders", 4)
    for group in ("g", "h"):
        client.create_subscription_to_stream(group, "orders", max_retry_count=3,
                                             min_checkpoint_count=1, checkpoint_after=0.1)
        with client.read_subscription_to_stream(group, "orders",
                                                timeout=READ_DEADLINE) as sub:
            for event in take(sub, 2):
                sub.ack(event)
            eventually(lambda g=group: client.get_subscription_info(g, "orders")
                       .last_checkpointed_event_position == "1")


def reads_on_from_its_checkpoint(client: KurrentDBClient, group: str) -> None:
    with client.read_subscription_to_stream(group, "orders", timeout=READ_DEADLINE) as sub:
        event = take(sub, 1)[0]
        assert event.stream_position == 2
        sub.ack(event)


@pytest.mark.parametrize("last", [
    NewEvent(CONFIG_EVENT_TYPE, b'{"groups": []}'),  # as a client would have written it
    NewEvent(CONFIG_EVENT_TYPE, b"not json"),
    NewEvent(CONFIG_EVENT_TYPE, {"version": 1, "groups": "none"}),
    NewEvent("Something", [1, 2]),
], ids=["empty-as-bytes", "garbage", "wrong-type", "not-an-object"])
def test_settings_that_do_not_read_never_remove_a_group_or_its_checkpoint(tmp_path, last):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            checkpointed_groups(client)
        finally:
            client.close()

        write_while_stopped(server, CONFIG_STREAM, last)

        client = KurrentDBClient(server.uri)
        try:
            for group in ("g", "h"):  # taken from the settings before
                info = client.get_subscription_info(group, "orders")
                assert (info.max_retry_count, info.last_checkpointed_event_position) == (
                    3, "1")
                reads_on_from_its_checkpoint(client, group)
        finally:
            client.close()
        assert "not in the last settings" in server.output or (  # logged
            "does not read as persistent subscription settings" in server.output)
        server.restart()  # the repaired settings were written back
        client = KurrentDBClient(server.uri)
        try:
            assert {i.group_name for i in client.list_subscriptions()} == {"g", "h"}
        finally:
            client.close()
        assert "persistent subscription settings" not in server.output
        assert "not in the last settings" not in server.output


def test_a_stored_group_whose_settings_are_wrongly_typed_is_kept_not_started(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            checkpointed_groups(client)
            config: Any = None
            for event in client.get_stream(CONFIG_STREAM):
                config = event.data
        finally:
            client.close()

        stored = json.loads(config)
        for raw in stored["groups"]:
            if raw["group"] == "g":
                raw["settings"]["max_retry_count"] = "ten"
        write_while_stopped(server, CONFIG_STREAM, NewEvent(CONFIG_EVENT_TYPE, stored))

        client = KurrentDBClient(server.uri)
        try:
            reads_on_from_its_checkpoint(client, "h")  # the others run
            assert "settings.max_retry_count" in server.output  # logged, naming the field
            with pytest.raises(NotFoundError):
                client.get_subscription_info("g", "orders")
            client.create_subscription_to_stream("h2", "orders")  # saving keeps g's raw
        finally:
            client.close()

        server.restart()  # g is still not started, and still not removed
        client = KurrentDBClient(server.uri)
        try:
            with pytest.raises(NotFoundError):
                client.get_subscription_info("g", "orders")
            client.create_subscription_to_stream("g", "orders")  # again: its checkpoint
            reads_on_from_its_checkpoint(client, "g")
        finally:
            client.close()


def test_event_data_that_is_json_null_is_delivered_as_null(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        try:
            client.create_subscription_to_stream("g", "nulls")
        finally:
            client.close()

        write_while_stopped(server, "nulls", NewEvent("Nothing", None))

        client = KurrentDBClient(server.uri)
        try:
            with client.read_subscription_to_stream("g", "nulls",
                                                    timeout=READ_DEADLINE) as sub:
                [event] = take(sub, 1)
                assert (event.type, event.data) == ("Nothing", b"null")
                sub.ack(event)
        finally:
            client.close()
