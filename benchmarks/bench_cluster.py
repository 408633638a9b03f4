"""Cluster mode's costs (``db_type="cluster"``, on PostgreSQL), each beside its floor
measured in the same run on the same PostgreSQL server (a throw-away one of its own,
:class:`exesdb.pgserver.PostgresServer`: ``fsync=on``, ``synchronous_commit=on``).

The floor of the appends is plain psycopg: ``INSERT`` into a table with a ``bigserial``
key (stream, number, event id, type, data), one row per autocommit transaction, in a
loop, with no framework; measured alternately with the figure it floors (best of
:data:`REPEATS` each). The appends go through the whole path: a cluster node in this
process (its elector, membership, listener and monitor running), events built as
:class:`exesdb.NewEvent`, ``exesdb.gateway.append_events``, the group-committing writer,
records checksummed, a commit notice sent in the transaction.

* single-event appends by one writer (floor: the ``INSERT`` loop; target >= 0.7x);
* 100-event appends (floor: 100 rows per transaction; target >= 0.7x);
* :data:`WRITERS` concurrent writers, single events each to its own stream (floor:
  :data:`WRITERS` threads with a connection each running the ``INSERT`` loop; target
  >= 0.6x, and >= 1.5x our own single-writer rate: group commit at work);
* (informational) single-event appends through the gateway, each right after another
  node's append to the same stream (a second backend of the store in this process), the
  time of ours only, against our single-writer rate: what a node pays when its cache of
  the head is stale;
* live delivery to a subscriber on another node: three nodes of another store as
  ``python -m exesdb start --db-type cluster`` processes, and a fourth in this process;
  the fourth appends through ``exesdb.gateway``, one event at a time (as the append
  figures above), and a ``kurrentdbclient`` catch-up subscription on one of the others
  receives; the figure is the 99th percentile from the append's call to the event's
  arrival at the subscriber (so it includes the append's own commit), against three
  commit round trips (the median ``INSERT`` commit of the floor) plus 1 ms. Informational
  beside it: its median, and the median and 99th percentile from the append's return
  (the receiving side's share: the append's commit notice reaches the other node about
  when the append returns); and the same with ``kurrentdbclient`` appending to the
  leader, from its call (which alone takes longer than the floor: the client library's
  own gRPC call) and from its acknowledgement;
* (informational) the same live delivery done with plain psycopg in this process, the
  appends spaced the same way: ``INSERT`` with a ``NOTIFY`` in one statement, a
  ``LISTEN`` session in a thread that reads the row on its notice; its 99th percentile
  is how much of the target's budget this machine spends before any framework does
  anything (the budget's unit is the commit of a tight loop, and a commit after a pause
  takes longer: also shown);
* (informational) single-event appends straight to a backend of a store no node runs, in
  this process (no writer process, commit signal or listener): the most the one-writer
  figure can reach;
* a new leader in gossip after the leader is killed (SIGKILL), from the kill to the
  first gossip of a surviving node naming another leader (polled every 5 ms), worst of
  :data:`TRIALS`, against the election interval plus 100 ms (the defaults: 500 ms
  interval, 3 s lease);
* the same after the leader hangs (SIGSTOP), against 1.25 leases.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import grpc  # type: ignore[import-untyped]
import psycopg
import trio

import exesdb
import otp
from exesdb import ANY, NewEvent, gateway
from exesdb.grpc.protos import gossip_pb2, shared_pb2
from exesdb.options import ENV_PREFIX
from exesdb.pgserver import PostgresServer
from exesdb.storage.postgres import PostgresBackend
from exesdb.systems.store import is_leader

from ._report import Result, now

__all__ = ["run"]

REPEATS: Final = 3
SINGLE_APPENDS: Final = 300
BATCHES: Final = 40
BATCH: Final = 100
WRITERS: Final = 16
APPENDS_PER_WRITER: Final = 40
DELIVERIES: Final = 300
ALTERNATING: Final = 200
TRIALS: Final = 3
LEASE_MS: Final = 3000
INTERVAL_MS: Final = 500
"""The cluster options of the failover figures (the defaults)."""
START_TIMEOUT: Final = 60.0
GOSSIP_READ: Final = "/event_store.client.gossip.Gossip/Read"
LEADER: Final = gossip_pb2.MemberInfo.VNodeState.Leader


def _data(i: int) -> dict[str, Any]:
    return {"order_id": i, "customer": "c-42", "amount": 12.5, "currency": "EUR",
            "lines": [{"sku": "A-1", "qty": 2}]}


def _rate(events: int, seconds: float) -> float:
    return events / seconds


# -- the floor ---------------------------------------------------------------------------
class _Floor:
    """Plain psycopg on the same server: a table with a bigserial key, ``INSERT`` s."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(
            "CREATE TABLE floor_events(id bigserial PRIMARY KEY, stream text NOT NULL, "
            "num bigint NOT NULL, eid uuid NOT NULL, type text NOT NULL, data bytea)")
        self.commits: list[float] = []  # seconds of each single-row INSERT commit
        self.numbers: dict[str, int] = {}

    def row(self, stream: str, i: int) -> tuple[Any, ...]:
        number = self.numbers.get(stream, -1) + 1
        self.numbers[stream] = number
        return (stream, number, uuid.uuid4(), "Placed",
                json.dumps(_data(i), separators=(",", ":")).encode())

    def single(self, conn: psycopg.Connection[Any] | None = None, stream: str = "single",
               count: int = SINGLE_APPENDS, keep: bool = True) -> float:
        """``count`` one-row autocommit INSERTs; events/s."""
        conn = conn or self.conn
        insert = ("INSERT INTO floor_events(stream, num, eid, type, data) "
                  "VALUES (%s, %s, %s, %s, %s)")
        start = now()
        for i in range(count):
            began = now()
            conn.execute(insert, self.row(stream, i))
            if keep:
                self.commits.append(now() - began)
        return _rate(count, now() - start)

    def batches(self) -> float:
        """:data:`BATCHES` transactions of :data:`BATCH` rows; events/s."""
        start = now()
        for _ in range(BATCHES):
            rows = [self.row("batches", i) for i in range(BATCH)]
            with self.conn.transaction(), self.conn.cursor() as cursor:
                cursor.executemany("INSERT INTO floor_events(stream, num, eid, type, data) "
                                   "VALUES (%s, %s, %s, %s, %s)", rows)
        return _rate(BATCHES * BATCH, now() - start)

    def concurrent(self) -> float:
        """:data:`WRITERS` threads, a connection each, one-row INSERTs; events/s."""
        conns = [psycopg.connect(self.dsn, autocommit=True) for _ in range(WRITERS)]
        try:
            barrier = threading.Barrier(WRITERS + 1)

            def writer(w: int) -> None:
                barrier.wait()
                self.single(conns[w], f"writer-{w}", APPENDS_PER_WRITER, keep=False)

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
            for thread in threads:
                thread.start()
            barrier.wait()
            start = now()
            for thread in threads:
                thread.join()
            return _rate(WRITERS * APPENDS_PER_WRITER, now() - start)
        finally:
            for conn in conns:
                conn.close()

    @property
    def commit_round_trip(self) -> float:
        """The median single-row commit, in seconds."""
        return statistics.median(self.commits)

    def close(self) -> None:
        self.conn.close()


async def _best_pair(measure: Callable[[], Awaitable[float]],
                     floor: Callable[[], float]) -> tuple[float, float]:
    """Best events/s of REPEATS runs each, measured alternately (the floor in a worker
    thread, so the node's processes keep running meanwhile)."""
    values: list[float] = []
    floors: list[float] = []
    for _ in range(REPEATS):
        floors.append(await trio.to_thread.run_sync(floor))
        values.append(await measure())
    return max(values), max(floors)


# -- appends through a node in this process ----------------------------------------------
async def _bench_appends(server: PostgresServer) -> list[Result]:
    floor = _Floor(server.dsn)
    store = "bench"
    try:
        async with otp.node():
            await exesdb.start_store(store_id=store, db_type="cluster", pg_dsn=server.dsn,
                                     node_name="bench-1")
            with trio.fail_after(START_TIMEOUT):
                while not await is_leader(store):  # noqa: ASYNC110 (decided in PostgreSQL)
                    await trio.sleep(0.05)
            await gateway.append_events(store, "warm-up", [NewEvent("Placed", _data(0))])

            async def single() -> float:
                start = now()
                for i in range(SINGLE_APPENDS):
                    await gateway.append_events(store, "single", [NewEvent("Placed", _data(i))])
                return _rate(SINGLE_APPENDS, now() - start)

            async def batches() -> float:
                start = now()
                for _ in range(BATCHES):
                    await gateway.append_events(
                        store, "batches", [NewEvent("Placed", _data(i)) for i in range(BATCH)])
                return _rate(BATCHES * BATCH, now() - start)

            async def concurrent() -> float:
                async def one_writer(w: int) -> None:
                    for i in range(APPENDS_PER_WRITER):
                        await gateway.append_events(store, f"writer-{w}",
                                                    [NewEvent("Placed", _data(i))])

                start = now()
                async with trio.open_nursery() as nursery:
                    for w in range(WRITERS):
                        nursery.start_soon(one_writer, w)
                return _rate(WRITERS * APPENDS_PER_WRITER, now() - start)

            alone = await PostgresBackend.open(server.dsn, "bench-alone")
            try:
                await alone.append("single", ANY, [NewEvent("Placed", _data(0))])

                async def storage_alone() -> float:
                    """Single-event appends straight to a backend of a store no node runs
                    (no writer, no commit signal, no node listening to its notices)."""
                    start = now()
                    for i in range(SINGLE_APPENDS):
                        await alone.append("single", ANY, [NewEvent("Placed", _data(i))])
                    return _rate(SINGLE_APPENDS, now() - start)

                bare, bare_floor = await _best_pair(storage_alone,
                                                    lambda: floor.single(keep=False))
            finally:
                await alone.close()
            other = await PostgresBackend.open(server.dsn, store)

            async def after_another() -> float:
                """Single-event appends through the gateway, each right after another
                node's append to the same stream (the time of ours only)."""
                spent = 0.0
                for i in range(ALTERNATING):
                    await other.append("alternating", ANY, [NewEvent("Placed", _data(i))])
                    began = now()
                    await gateway.append_events(store, "alternating",
                                                [NewEvent("Placed", _data(i))])
                    spent += now() - began
                return _rate(ALTERNATING, spent)

            one, one_floor = await _best_pair(single, floor.single)
            many_batches, batch_floor = await _best_pair(batches, floor.batches)
            many, many_floor = await _best_pair(concurrent, floor.concurrent)
            try:
                alternating = max([await after_another() for _ in range(REPEATS)])
            finally:
                await other.close()
    finally:
        floor.close()
    rtt = floor.commit_round_trip
    return [
        Result("cluster: commit round trip (plain INSERT, median)", rtt * 1000, "ms", None,
               "(informational: the delivery floor's unit)"),
        Result("cluster: append 1 event, 1 writer, durable", one, "events/s", one_floor,
               ">= 0.7x floor"),
        Result(f"cluster: append {BATCH}-event batches, durable", many_batches, "events/s",
               batch_floor, ">= 0.7x floor"),
        Result(f"cluster: append 1 event, {WRITERS} writers, durable", many, "events/s",
               many_floor, ">= 0.6x floor"),
        Result(f"cluster: {WRITERS} writers against our 1 writer", many, "events/s", one,
               ">= 1.5x floor"),
        Result("cluster: append 1 event right after another node's, against our 1 writer",
               alternating, "events/s", one, "(informational)"),
        Result("cluster: append 1 event, the storage alone (no node: no writer process, "
               "commit signal or listener)", bare, "events/s", bare_floor,
               "(informational: the most the 1-writer figure can reach)"),
    ]


# -- node processes ----------------------------------------------------------------------
def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class _Node:
    """One ``python -m exesdb start --db-type cluster`` process, its log in a file."""

    def __init__(self, name: str, port: int, dsn: str, store: str, folder: Path) -> None:
        self.name, self.port = name, port
        self.command = [
            sys.executable, "-m", "exesdb", "start", "--store-id", store, "--db-type",
            "cluster", "--pg-dsn", dsn, "--node-name", name, "--grpc-port", str(port),
            "--no-http", "--log-level", "WARNING", "--leader-lease-ms", str(LEASE_MS),
            "--election-interval-ms", str(INTERVAL_MS)]
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.read = self.channel.unary_unary(
            GOSSIP_READ, request_serializer=shared_pb2.Empty.SerializeToString,
            response_deserializer=gossip_pb2.ClusterInfo.FromString)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=log, env=env)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.5):
                return
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not start: "
                                   f"{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def leaders(self, timeout: float = 0.5) -> list[int] | None:
        """The leader ports this node's gossip names (None: no answer)."""
        try:
            info = self.read(shared_pb2.Empty(), timeout=timeout)
        except grpc.RpcError:
            return None
        return [m.http_end_point.port for m in info.members if m.state == LEADER]

    def stop(self) -> None:
        self.channel.close()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait()


def _agreed(nodes: list[_Node], limit: float = START_TIMEOUT) -> _Node:
    """The node every one of ``nodes`` names as the leader, once they agree."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        views = {tuple(node.leaders() or ()) for node in nodes}
        if len(views) == 1 and len(view := views.pop()) == 1:
            return next(n for n in nodes if n.port == view[0])
        time.sleep(0.05)
    raise RuntimeError("the nodes did not agree on a leader")


def _until_new_leader(survivors: list[_Node], old: _Node, since: float) -> float:
    """Seconds from ``since`` until a survivor's gossip names a leader other than
    ``old`` (polled every 5 ms)."""
    deadline = since + START_TIMEOUT
    while now() < deadline:
        for node in survivors:
            leaders = node.leaders()
            if leaders and leaders[0] != old.port:
                return now() - since
        time.sleep(0.005)
    raise RuntimeError("no new leader")


def _record_arrivals(subscription: Any, arrived: dict[uuid.UUID, float]) -> threading.Thread:
    """A started thread that notes when each event of ``subscription`` arrives, until
    more than :data:`DELIVERIES` did."""

    def receive() -> None:
        for event in subscription:
            arrived[event.id] = now()
            if len(arrived) > DELIVERIES:
                break

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread


def _delivery(nodes: list[_Node]) -> tuple[list[float], list[float], list[float]]:
    """Seconds from each append's call (and from its acknowledgement) to its arrival at
    a catch-up subscriber on a follower, and from each call to its acknowledgement."""
    from kurrentdbclient import KurrentDBClient, StreamState
    from kurrentdbclient import NewEvent as ClientEvent

    leader = _agreed(nodes)
    follower = next(n for n in nodes if n is not leader)
    writer = KurrentDBClient(f"kurrentdb://127.0.0.1:{leader.port}?Tls=false")
    reader = KurrentDBClient(f"kurrentdb://127.0.0.1:{follower.port}?Tls=false"
                             "&NodePreference=follower")
    stream = f"live-{uuid.uuid4()}"
    arrived: dict[uuid.UUID, float] = {}
    try:
        writer.append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                events=ClientEvent(type="Placed", data=b"{}"))
        subscription = reader.subscribe_to_stream(stream, timeout=120)

        thread = _record_arrivals(subscription, arrived)
        time.sleep(0.5)  # caught up and waiting live
        sent: dict[uuid.UUID, tuple[float, float]] = {}
        for i in range(DELIVERIES):
            event = ClientEvent(type="Placed", data=b"{}", id=uuid.uuid4())
            began = now()
            writer.append_to_stream(stream, current_version=i, events=event)
            sent[event.id] = (began, now())
            time.sleep(0.005)
        thread.join(timeout=30)
        subscription.stop()
        missing = [eid for eid in sent if eid not in arrived]
        if missing:
            raise RuntimeError(f"{len(missing)} events never arrived at the subscriber")
        return ([arrived[eid] - began for eid, (began, _) in sent.items()],
                [arrived[eid] - acked for eid, (_, acked) in sent.items()],
                [acked - began for began, acked in sent.values()])
    finally:
        writer.close()
        reader.close()


async def _delivery_from_a_node(dsn: str,
                                nodes: list[_Node]) -> tuple[list[float], list[float]]:
    """Seconds from each append's call, made through ``exesdb.gateway`` by a node of the
    store in this process, to its arrival at a catch-up subscriber on another node; and
    from the append's return to the arrival (informational: the receiving side's share,
    negative when the event arrived before the append returned)."""
    from kurrentdbclient import KurrentDBClient

    follower = next(n for n in nodes if n is not _agreed(nodes))
    reader = KurrentDBClient(f"kurrentdb://127.0.0.1:{follower.port}?Tls=false"
                             "&NodePreference=follower")
    stream = f"live-in-process-{uuid.uuid4()}"
    arrived: dict[uuid.UUID, float] = {}
    try:
        async with otp.node():
            await exesdb.start_store(store_id="live", db_type="cluster", pg_dsn=dsn,
                                     node_name="bench-appender")
            await gateway.append_events("live", stream, [NewEvent("Placed", b"{}")])
            subscription = reader.subscribe_to_stream(stream, timeout=120)
            thread = _record_arrivals(subscription, arrived)
            await trio.sleep(0.5)  # caught up and waiting live
            sent: dict[uuid.UUID, tuple[float, float]] = {}
            for _ in range(DELIVERIES):
                event = NewEvent("Placed", b"{}", event_id=uuid.uuid4())
                began = now()
                await gateway.append_events("live", stream, [event])
                sent[event.event_id] = (began, now())
                await trio.sleep(0.005)
            await trio.to_thread.run_sync(thread.join, 30.0)
            subscription.stop()
            await exesdb.stop_store("live")
        missing = [eid for eid in sent if eid not in arrived]
        if missing:
            raise RuntimeError(f"{len(missing)} events never arrived at the subscriber")
        return ([arrived[eid] - began for eid, (began, _) in sent.items()],
                [arrived[eid] - returned for eid, (_, returned) in sent.items()])
    finally:
        reader.close()


def _plain_delivery(dsn: str) -> tuple[list[float], list[float]]:
    """The live delivery of the figure above done with plain psycopg in this process, no
    framework and no gRPC: each event ``INSERT`` ed with a ``NOTIFY`` of its key in the
    same autocommit statement, a thread's ``LISTEN`` session receiving the notice and
    reading the row on a third connection, the appends spaced as the figure's; seconds
    from each call to the row read, and of each call."""
    with (psycopg.connect(dsn, autocommit=True) as writer,
          psycopg.connect(dsn, autocommit=True) as listener,
          psycopg.connect(dsn, autocommit=True) as reader):
        writer.execute("CREATE TABLE plain_live(id bigserial PRIMARY KEY, stream text NOT "
                       "NULL, num bigint NOT NULL, eid uuid NOT NULL, type text NOT NULL, "
                       "data bytea)")
        listener.execute("LISTEN plain_live")
        arrived: dict[uuid.UUID, float] = {}

        def receive() -> None:
            for notice in listener.notifies(timeout=30.0, stop_after=DELIVERIES):
                row = reader.execute("SELECT eid FROM plain_live WHERE id = %s",
                                     (int(notice.payload),)).fetchone()
                if row is not None:
                    arrived[row[0]] = now()

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        time.sleep(0.2)  # listening
        sent: dict[uuid.UUID, tuple[float, float]] = {}
        for i in range(DELIVERIES):
            eid = uuid.uuid4()
            began = now()
            writer.execute("WITH i AS (INSERT INTO plain_live(stream, num, eid, type, data) "
                           "VALUES ('live', %s, %s, 'Placed', '{}') RETURNING id) "
                           "SELECT pg_notify('plain_live', id::text) FROM i", (i, eid))
            sent[eid] = (began, now())
            time.sleep(0.005)
        thread.join(30.0)
    if len(arrived) < len(sent):
        raise RuntimeError(f"{len(sent) - len(arrived)} plain notices never arrived")
    return ([arrived[eid] - began for eid, (began, _) in sent.items()],
            [acked - began for began, acked in sent.values()])


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _bench_nodes(server: PostgresServer, folder: Path) -> list[Result]:
    ports = _free_ports(3)
    nodes = [_Node(f"n{i}", port, server.uri, "live", folder)
             for i, port in enumerate(ports, 1)]
    results: list[Result] = []
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_listening()
        _agreed(nodes)
        from_node, from_return = trio.run(_delivery_from_a_node, server.dsn, nodes)
        _agreed(nodes)  # the node in this process may have led: it stopped
        results.append(Result("cluster: live delivery to another node, p99 (from the call)",
                              _p99(from_node) * 1000, "ms", None, "<= 3x commit + 1 ms"))
        results.append(Result("cluster: live delivery to another node, p50 (from the call)",
                              statistics.median(from_node) * 1000, "ms", None,
                              "(informational)"))
        results.append(Result("cluster: live delivery to another node, p50 (from the "
                              "append's return)", statistics.median(from_return) * 1000, "ms",
                              None, "(informational: the receiving side's share)"))
        results.append(Result("cluster: live delivery to another node, p99 (from the "
                              "append's return)", _p99(from_return) * 1000, "ms", None,
                              "(informational)"))
        plain, plain_commits = _plain_delivery(server.dsn)
        results.append(Result("cluster: live delivery with plain psycopg (INSERT + NOTIFY, "
                              "LISTEN, SELECT; one process), p99", _p99(plain) * 1000, "ms",
                              None, "(informational: the delivery's own floor on this "
                              "machine; p50 " f"{statistics.median(plain) * 1000:.3f} ms)"))
        results.append(Result("cluster: plain INSERT + NOTIFY spaced as the deliveries, p99",
                              _p99(plain_commits) * 1000, "ms", None,
                              "(informational: a commit after the 5 ms pauses; p50 "
                              f"{statistics.median(plain_commits) * 1000:.3f} ms)"))
        from_call, from_ack, calls = _delivery(nodes)
        results.append(Result("cluster: live delivery, kurrentdbclient appending, p99 "
                              "(from its call)", _p99(from_call) * 1000, "ms", None,
                              "(informational)"))
        results.append(Result("cluster: live delivery, kurrentdbclient appending, p99 "
                              "(from its ack)", _p99(from_ack) * 1000, "ms", None,
                              "(informational)"))
        results.append(Result("cluster: the append call itself (kurrentdbclient), p50",
                              statistics.median(calls) * 1000, "ms", None,
                              "(informational: part of the delivery from the call)"))
        results.append(Result("cluster: the append call itself (kurrentdbclient), p99",
                              _p99(calls) * 1000, "ms", None, "(informational)"))

        hangs = []
        for _ in range(TRIALS):
            leader = _agreed(nodes)
            os.kill(leader.pid, signal.SIGSTOP)
            since = now()
            hangs.append(_until_new_leader([n for n in nodes if n is not leader], leader, since))
            os.kill(leader.pid, signal.SIGCONT)
            _agreed(nodes)
        kills = []
        for _ in range(TRIALS):
            leader = _agreed(nodes)
            assert leader.process is not None
            os.kill(leader.pid, signal.SIGKILL)
            since = now()
            kills.append(_until_new_leader([n for n in nodes if n is not leader], leader, since))
            leader.process.wait()
            leader.start()
            leader.wait_listening()
            _agreed(nodes)
        results.append(Result(f"cluster: new leader in gossip after SIGKILL (worst of {TRIALS})",
                              max(kills) * 1000, "ms", INTERVAL_MS + 100.0,
                              "<= 1.0x floor (interval + 100 ms); trials "
                              + ", ".join(f"{k * 1000:.0f}" for k in kills)))
        results.append(Result(f"cluster: new leader in gossip after SIGSTOP (worst of {TRIALS})",
                              max(hangs) * 1000, "ms", 1.25 * LEASE_MS,
                              "<= 1.0x floor (1.25 leases); trials "
                              + ", ".join(f"{h * 1000:.0f}" for h in hangs)))
    finally:
        for node in nodes:
            node.stop()
    return results


def run() -> list[Result]:
    """Measure every figure (see the module docstring) on a throw-away PostgreSQL."""
    folder = Path(tempfile.mkdtemp(prefix="exesdb-bench-cluster-"))
    server = PostgresServer()
    try:
        server.start()
        results = trio.run(_bench_appends, server)
        rtt = results[0].value
        nodes = _bench_nodes(server, folder)
        for i, result in enumerate(nodes):
            if result.name.endswith("p99 (from the call)"):
                floor = 3 * rtt + 1.0
                verdict = "met" if result.value <= floor else "NOT MET"
                nodes[i] = Result(result.name, result.value, result.unit, floor,
                                  f"<= 1.0x floor (3x commit round trip + 1 ms): {verdict}")
        return results + nodes
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
