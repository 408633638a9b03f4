"""Persistent subscription groups across a failover: a group made on one leader is served
by the next (two nodes as OS processes, the real ``kurrentdbclient``).

Each node runs a group manager, and only the leader's serves (clients are sent there);
the groups are stored in ``$persistentSubscriptionConfig``. A manager that read them when
its node started, before the group was made on the other node, must read them again
when it is asked, or the group is unknown on the new leader and its settings are
overwritten by the next change made there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from .cluster_checker import Cluster

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
