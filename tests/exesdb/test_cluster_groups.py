"""Persistent subscription groups across a failover (two nodes as OS processes, the real
``kurrentdbclient``): a group made on one leader is served by the next, and a node that
leads again serves its groups from the checkpoint stored meanwhile.

Each node runs a group manager, and only the leader's serves (clients are sent there);
the groups are stored in ``$persistentSubscriptionConfig``. A manager that read them when
its node started, before the group was made on the other node, must read them again
when it is asked, or the group is unknown on the new leader and its settings are
overwritten by the next change made there. And a group process kept from an earlier
term holds what it knew then (its events in flight, its ledger) while another leader
moved on: it must start afresh, or it delivers again what was acknowledged since."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.storage.postgres_schema import schema_name

from .cluster_checker import Cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, pg_server, pg_store_id) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, pg_server.dsn, pg_store_id, names=("n1", "n2"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.close()


def test_a_group_made_on_the_leader_is_served_by_the_next_leader_after_a_sigkill(cluster):
    old = cluster.leader()
    stream = f"orders-{uuid.uuid4()}"
    client = KurrentDBClient(cluster.uri())
    try:
        client.create_subscription_to_stream("billing", stream, timeout=10)
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                events=[NewEvent(type="Placed", data=b"{}")])
        old.kill()
        cluster.leader(other_than=old)
        # The client follows the leader by itself; the new one knows the group.
        subscription = client.read_subscription_to_stream("billing", stream, timeout=30)
        event = next(iter(subscription))
        assert (event.stream_name, event.type) == (stream, "Placed")
        subscription.ack(event)
        subscription.stop()
        # A group made on the new leader does not erase the one made on the old.
        client.create_subscription_to_stream("shipping", stream, timeout=10)
        groups = {info.group_name for info in client.list_subscriptions_to_stream(stream)}
        assert groups == {"billing", "shipping"}
    finally:
        client.close()


def test_a_node_leading_again_serves_a_group_from_the_checkpoint_stored_meanwhile(
        cluster, pg_server, pg_store_id):
    first = cluster.leader()
    second = next(n for n in cluster.nodes if n is not first)
    stream = f"orders-{uuid.uuid4()}"
    client = KurrentDBClient(cluster.uri())
    try:
        client.create_subscription_to_stream("billing", stream, min_checkpoint_count=1,
                                             max_checkpoint_count=1, timeout=10)
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[
            NewEvent(type="Placed", data=b"{}") for _ in range(5)])
        # On the first leader, all five are delivered and left in flight (not acked).
        subscription = client.read_subscription_to_stream("billing", stream, timeout=30)
        received = iter(subscription)
        assert [next(received).stream_position for _ in range(5)] == [0, 1, 2, 3, 4]
        # The first leader loses its lock (its elector's session ends), and runs on.
        pg_server.terminate(f"exesdb {pg_store_id} {first.name} elector")
        cluster.leader(other_than=first)
        subscription.stop()
        # The second leader delivers them again; acked, and the checkpoint stored past them.
        subscription = client.read_subscription_to_stream("billing", stream, timeout=30)
        received = iter(subscription)
        for _ in range(5):
            subscription.ack(next(received))
        checkpoint = psycopg.sql.Identifier(schema_name(pg_store_id)).as_string(None)
        wait_for(lambda: pg_server.execute(
            f"SELECT position FROM {checkpoint}.checkpoints WHERE name = %s",
            (f"grpc:{stream}::billing".encode(),)) == [(4,)], 15,
            what="the checkpoint stored past the five events")
        subscription.stop()
        # The first node leads again: its group does not deliver them a third time.
        second.kill()
        cluster.leader(other_than=second)
        client.append_to_stream(stream, current_version=4,
                                events=NewEvent(type="Shipped", data=b"{}"))
        subscription = client.read_subscription_to_stream("billing", stream, timeout=30)
        event = next(iter(subscription))
        assert (event.stream_position, event.type) == (5, "Shipped")
        subscription.stop()
    finally:
        client.close()
