"""Two nodes of one store in cluster mode, each a real ``python -m exesdb start --db-type
cluster`` OS process on its own port, sharing the session's PostgreSQL, seen as clients
see them: gossip, leader redirects, and failover when the leader is killed (SIGKILL) or
paused (SIGSTOP).

The nodes run with a 1 s lease and a 0.2 s election interval, so the figures asserted
here are those of the defaults (3 s and 0.5 s) scaled down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.grpc.protos import persistent_pb2, shared_pb2

from .grpc.conftest import Server

pytestmark = pytest.mark.slow

LEASE = 1.0
INTERVAL = 0.2
MARGIN = 1.5  # seconds of scheduling slack on a loaded 2-core machine
LEADER = "NODE_STATE_LEADER"
FOLLOWER = "NODE_STATE_FOLLOWER"
LIST = "/event_store.client.persistent_subscriptions.PersistentSubscriptions/List"


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class Node:
    """One node: its name, port, server process and a client connected to it alone."""

    def __init__(self, name: str, port: int, server: Server) -> None:
        self.name, self.port, self.server = name, port, server
        self.client: KurrentDBClient | None = None

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def gossip(self) -> list[tuple[str, int]]:
        """(state, port) of each member, as this node's gossip says."""
        if self.client is None:
            self.client = KurrentDBClient(f"kurrentdb://127.0.0.1:{self.port}?Tls=false")
        return [(m.state, m.port) for m in self.client.read_gossip(timeout=2)]

    def leader_in_gossip(self) -> int | None:
        """The leader's port in this node's gossip; asserts there is at most one."""
        leaders = [port for state, port in self.gossip() if state == LEADER]
        assert len(leaders) <= 1, f"gossip of {self.name} shows two leaders: {leaders}"
        return leaders[0] if leaders else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@pytest.fixture
def nodes(tmp_path: Path, pg_server, pg_store_id) -> Iterator[list[Node]]:
    """Nodes n1 and n2 of store ``pg_store_id``, started at once, stopped after."""
    ports = _free_ports(2)
    started: list[Node] = []
    for index, port in enumerate(ports, 1):
        name = f"n{index}"
        server = Server(tmp_path / name, [
            "--db-type", "cluster", "--pg-dsn", pg_server.dsn, "--node-name", name,
            "--leader-lease-ms", str(int(LEASE * 1000)),
            "--election-interval-ms", str(int(INTERVAL * 1000)),
            "--member-timeout-ms", "2000"], [pg_store_id])
        started.append(Node(name, port, server))
    threads = [threading.Thread(target=n.server.start, args=([n.port],)) for n in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for node in started:
            assert node.server.ports, f"{node.name} did not start:\n{node.server.output}"
        yield started
    finally:
        for node in started:
            node.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGCONT)
            node.server.kill()


def wait_for(check, limit: float = 15.0, every: float = 0.05):
    """Call ``check()`` until it returns something true; return it."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {limit} s: {check}")
        time.sleep(every)


def elected(nodes: list[Node]) -> Node:
    """The node both gossips name as the leader (once they agree)."""
    def agree() -> Node | None:
        leaders = {n.leader_in_gossip() for n in nodes}
        if len(leaders) == 1 and None not in leaders:
            port = leaders.pop()
            return next(n for n in nodes if n.port == port)
        return None

    return wait_for(agree)


def test_two_nodes_elect_exactly_one_leader_that_gossip_shows_with_its_endpoint(nodes):
    leader = elected(nodes)
    for node in nodes:
        members = sorted(node.gossip(), key=lambda m: m[1])
        expected = sorted([(LEADER if n is leader else FOLLOWER, n.port) for n in nodes],
                          key=lambda m: m[1])
        assert members == expected
    addresses = {(m.address, m.port) for m in nodes[0].client.read_gossip()}
    assert addresses == {("127.0.0.1", n.port) for n in nodes}


def test_a_catch_up_subscriber_on_a_follower_receives_what_the_leader_commits(nodes):
    leader = elected(nodes)
    follower = next(n for n in nodes if n is not leader)
    reader = KurrentDBClient(f"kurrentdb://127.0.0.1:{follower.port}?Tls=false"
                             "&NodePreference=follower")
    try:
        stream = f"orders-{uuid.uuid4()}"
        subscription = reader.subscribe_to_stream(stream, timeout=10)
        time.sleep(0.3)  # caught up (nothing yet) and waiting: only a notice can wake it
        assert leader.client is not None
        leader.client.append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                       events=[NewEvent(type="Placed", data=b"{}")])
        event = next(iter(subscription))
        assert (event.stream_name, event.type) == (stream, "Placed")
        subscription.stop()
    finally:
        reader.close()


def test_a_follower_sends_persistent_subscription_calls_to_the_leader(nodes):
    leader = elected(nodes)
    follower = next(n for n in nodes if n is not leader)
    with grpc.insecure_channel(f"127.0.0.1:{follower.port}") as channel:
        call = channel.unary_unary(
            LIST, request_serializer=persistent_pb2.ListReq.SerializeToString,
            response_deserializer=persistent_pb2.ListResp.FromString)
        request = persistent_pb2.ListReq(options=persistent_pb2.ListReq.Options(
            list_all_subscriptions=shared_pb2.Empty()))
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
    error = raised.value
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND,
                                               "Leader info available")
    trailers = dict(error.trailing_metadata())
    assert (trailers["exception"], trailers["leader-endpoint-host"],
            trailers["leader-endpoint-port"]) == ("not-leader", "127.0.0.1", str(leader.port))


def test_a_client_given_both_nodes_keeps_appending_across_a_sigkill_of_the_leader(nodes):
    leader = elected(nodes)
    survivor = next(n for n in nodes if n is not leader)
    client = KurrentDBClient(
        f"kurrentdb://127.0.0.1:{nodes[0].port},127.0.0.1:{nodes[1].port}?Tls=false")
    try:
        assert client.connection_target == f"127.0.0.1:{leader.port}"
        stream = f"orders-{uuid.uuid4()}"
        for n in range(3):
            client.append_to_stream(stream, events=[NewEvent(type="Placed", data=b"{}")],
                                    current_version=StreamState.ANY if n else
                                    StreamState.NO_STREAM)
        os.kill(leader.pid, signal.SIGKILL)
        killed = time.monotonic()
        # No retry of ours: the client's own (rediscovery through the other seed) suffices.
        client.append_to_stream(stream, events=[NewEvent(type="Placed", data=b"{}")],
                                current_version=2)
        took = time.monotonic() - killed
        assert client.connection_target == f"127.0.0.1:{survivor.port}"
        assert [e.stream_position for e in client.get_stream(stream)] == [0, 1, 2, 3]
    finally:
        client.close()
    assert took < LEASE + INTERVAL + MARGIN, took
    assert survivor.leader_in_gossip() == survivor.port


def test_the_other_node_leads_within_lease_and_interval_of_a_sigkill(nodes):
    leader = elected(nodes)
    survivor = next(n for n in nodes if n is not leader)
    os.kill(leader.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: survivor.leader_in_gossip() == survivor.port, every=0.02)
    took = time.monotonic() - killed
    assert took < LEASE + INTERVAL + MARGIN, took


def test_a_paused_leader_is_replaced_after_its_lease_fenced_and_steps_down_when_it_resumes(
        nodes):
    leader = elected(nodes)
    survivor = next(n for n in nodes if n is not leader)
    # An append just before the pause leaves the leader's default subscription a position
    # to store (every 0.2 s): it will try once it runs again, with its old epoch.
    assert leader.client is not None
    leader.client.append_to_stream(f"paused-{uuid.uuid4()}", current_version=StreamState.ANY,
                                   events=[NewEvent(type="Placed", data=b"{}")])
    os.kill(leader.pid, signal.SIGSTOP)
    paused = time.monotonic()
    wait_for(lambda: survivor.leader_in_gossip() == survivor.port, every=0.02)
    took = time.monotonic() - paused
    # The database ends the paused leader's session a lease after its last heartbeat.
    assert LEASE - INTERVAL - 0.1 < took < LEASE + INTERVAL + MARGIN, took
    os.kill(leader.pid, signal.SIGCONT)
    # Running again, it finds its lease expired and steps down: one leader everywhere.
    wait_for(lambda: leader.leader_in_gossip() == survivor.port)
    assert sorted(leader.gossip(), key=lambda m: m[1]) == sorted(
        [(LEADER, survivor.port), (FOLLOWER, leader.port)], key=lambda m: m[1])
    # Its late write was refused by the database (StaleEpoch), not stored.
    wait_for(lambda: "position not stored: epoch: the write carries leader epoch 1, the "
             "store's leader epoch is 2" in leader.server.output)
