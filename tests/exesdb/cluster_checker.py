"""The cluster checker: a store served by several nodes (real ``python -m exesdb start
--db-type cluster`` OS processes on one real PostgreSQL), loaded by client OS processes
(:mod:`tests.exesdb.cluster_clients`, the real ``kurrentdbclient``), a fault injected, and
then everything that was promised checked against what the database holds.

A :class:`Scenario` runs, on a :class:`Cluster`:

* appender processes (``kurrentdb://n1,n2,n3?Tls=false``: the leader, found through
  gossip) recording each append's outcome: acknowledged, failed or unknown;
* a catch-up subscriber to ``$all`` on a follower and a persistent subscriber (a group on
  ``$all``, checkpointing at every ack) on the leader, recording what they received;
* a :class:`GossipWatch` thread in this process that, every 0.1 s, reads the gossip of
  every node (plain gRPC, 0.5 s deadline) between two reads of ``pg_locks``: which
  session holds the store's leader lock, named by its ``application_name`` (``exesdb
  <store> <node> elector``), independently of the members table gossip reads;
* the fault, by the test, while the appenders run.

:meth:`Scenario.check` then reads the store straight from PostgreSQL (every event's
checksum verified) and returns the :class:`Figures`, whose :meth:`~Figures.violations`
must be empty:

* every acknowledged event is present exactly once, in the stream and at the number its
  client expected; a refused one is absent; an unknown one is present at most once (no
  event id of the store appears twice);
* ``$all`` is gapless (positions 0 .. head) and every stream is gapless and in ``$all``
  order;
* the catch-up subscriber received exactly ``$all``'s events of the scenario, in order
  (an in-order prefix of ``$all`` that, once it caught up, is all of it);
* the persistent subscriber received every event of the scenario at least once and
  nothing else; within one read no event came twice; and no event came again after the
  checkpoint stored in the database had passed it (its ack was recorded: it is not
  delivered, and acknowledged, twice);
* no gossip showed two leaders, and a leader gossip showed held the lock (by
  ``pg_locks``) just before or just after that gossip was read.

Each scenario's figures are kept in :data:`REPORTS`, printed at the end of the pytest
run by the terminal summary hook of ``tests/exesdb/conftest.py``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import psycopg

from exesdb.grpc.groups.config import ALL, subscription_name
from exesdb.grpc.protos import gossip_pb2, shared_pb2
from exesdb.pgserver import PostgresServer
from exesdb.storage import records
from exesdb.storage.postgres_cluster import ClusterQueries
from exesdb.storage.postgres_schema import schema_name

from .cluster_clients import EVENT_TYPE
from .grpc.conftest import Server

__all__ = ["REPORTS", "Cluster", "Figures", "GossipWatch", "Node", "Scenario",
           "StoreContents", "fenced_writes", "free_ports", "read_store", "standby_of",
           "wait_for"]

REPORTS: list[str] = []
"""One line of figures per scenario checked in this run (printed by the summary hook)."""

ROOT = Path(__file__).resolve().parents[2]
GOSSIP_READ = "/event_store.client.gossip.Gossip/Read"
LEADER = gossip_pb2.MemberInfo.VNodeState.Leader
FENCED = "the write carries leader epoch"
"""What a node logs when the database refuses one of its leader-only writes (StaleEpoch)."""


def wait_for(check: Callable[[], Any], limit: float = 30.0, every: float = 0.05,
             what: str = "") -> Any:
    """Call ``check()`` until it returns something true; return it (AssertionError after
    ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {limit} s: {what or check}")
        time.sleep(every)


def free_ports(count: int) -> list[int]:
    """``count`` free TCP ports of 127.0.0.1."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON Lines file (a line cut short by a kill is ignored)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            out.append(json.loads(line))
    return out


# -- the nodes ---------------------------------------------------------------------------
class Node:
    """One node of the cluster: ``name``, gRPC ``port``, its :class:`Server` process."""

    def __init__(self, name: str, port: int, server: Server) -> None:
        self.name, self.port, self.server = name, port, server
        self.paused = False
        self._channel: grpc.Channel | None = None

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    @property
    def running(self) -> bool:
        process = self.server.process
        return process is not None and process.poll() is None

    def start(self) -> None:
        self.paused = False
        self.server.start([self.port])

    def kill(self) -> None:
        """SIGKILL, and wait for the exit."""
        os.kill(self.pid, signal.SIGKILL)
        self.paused = False
        assert self.server.process is not None
        self.server.process.wait(timeout=30)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def gossip_leaders(self, timeout: float = 0.5) -> list[int]:
        """The ports of the members this node's gossip shows as leader."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        read = self._channel.unary_unary(
            GOSSIP_READ, request_serializer=shared_pb2.Empty.SerializeToString,
            response_deserializer=gossip_pb2.ClusterInfo.FromString)
        info = read(shared_pb2.Empty(), timeout=timeout)
        return [m.http_end_point.port for m in info.members if m.state == LEADER]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class Cluster:
    """Nodes ``names`` of store ``store_id`` on the database ``dsn``, each a ``python -m
    exesdb start --db-type cluster`` process with a ``lease`` and an election
    ``interval`` (seconds) in folders under ``root``."""

    def __init__(self, root: Path, dsn: str, store_id: str,
                 names: tuple[str, ...] = ("n1", "n2", "n3"), lease: float = 1.0,
                 interval: float = 0.2, member_timeout: float = 2.0) -> None:
        self.dsn, self.store_id = dsn, store_id
        self.nodes = [
            Node(name, port, Server(root / name, [
                "--db-type", "cluster", "--pg-dsn", dsn, "--node-name", name,
                "--leader-lease-ms", str(round(lease * 1000)),
                "--election-interval-ms", str(round(interval * 1000)),
                "--member-timeout-ms", str(round(member_timeout * 1000))], [store_id]))
            for name, port in zip(names, free_ports(len(names)), strict=True)]

    def uri(self, **options: str) -> str:
        """The ``kurrentdb://`` URI with every node as a gossip seed."""
        query = "&".join(["Tls=false", *(f"{k}={v}" for k, v in options.items())])
        return f"kurrentdb://{','.join(f'127.0.0.1:{n.port}' for n in self.nodes)}?{query}"

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def by_name(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        """Start every node that does not run (at once), resume the paused ones."""
        for node in self.nodes:
            if node.running and node.paused:
                node.resume()
        down = [n for n in self.nodes if not n.running]
        threads = [threading.Thread(target=n.start) for n in down]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for node in down:
            assert node.running, f"{node.name} did not start:\n{node.server.output}"

    def leader(self, limit: float = 30.0, among: list[Node] | None = None,
               other_than: Node | None = None) -> Node:
        """The node that every running, unpaused node (or those ``among``) names as the
        leader in its gossip, once they agree (on another node than ``other_than``)."""
        def agreed() -> Node | None:
            views = set()
            for node in among or [n for n in self.nodes if n.running and not n.paused]:
                try:
                    leaders = node.gossip_leaders()
                except grpc.RpcError:
                    return None
                views.add(tuple(leaders))
            if len(views) == 1 and len(leaders := views.pop()) == 1:
                node = self.by_port(leaders[0])
                return None if node is other_than else node
            return None

        leader: Node = wait_for(agreed, limit, 0.05, "the nodes agree on one leader")
        return leader

    def close(self) -> None:
        for node in self.nodes:
            node.close()
            if node.running and node.paused:
                with contextlib.suppress(ProcessLookupError):
                    node.resume()
            node.server.kill()


# -- gossip and the lock -----------------------------------------------------------------
@attrs.frozen
class Sample:
    """One gossip read of ``node`` at ``t`` (``time.time()``): the ``leaders`` it showed
    (node names; None when the read failed), and the node whose session held the lock
    just ``before`` and just ``after`` it ("" none; None the database could not say)."""

    t: float
    node: str
    leaders: tuple[str, ...] | None
    before: str | None
    after: str | None


class GossipWatch:
    """Samples every node's gossip and the lock's holder (see the module docstring), and
    the checkpoint of the persistent group ``group``, until :meth:`stop`."""

    def __init__(self, cluster: Cluster, group: str, every: float = 0.1) -> None:
        self.cluster = cluster
        self.every = every
        self.samples: list[Sample] = []
        self.checkpoints: list[tuple[float, int]] = []  # (time.time(), stored position)
        queries = ClusterQueries(schema_name(cluster.store_id))
        self.lock_oids = queries.lock_oids
        self.schema = schema_name(cluster.store_id)
        self.group = subscription_name(ALL, group).encode()
        self.conn: psycopg.Connection[Any] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="gossip watch")

    def start(self) -> GossipWatch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        if self.conn is not None:
            self.conn.close()

    def _query(self, query: str, params: Any) -> list[tuple[Any, ...]] | None:
        try:
            if self.conn is None or self.conn.closed or self.conn.broken:
                self.conn = psycopg.connect(self.cluster.dsn, autocommit=True, connect_timeout=2,
                                            options="-c statement_timeout=1000")
            return self.conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None

    def holder(self) -> str | None:
        """The node whose session holds the leader lock ("" none, None unknown)."""
        rows = self._query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2",
            self.lock_oids)
        if rows is None:
            return None
        names = [str(r[0]).split()[2] for r in rows if len(str(r[0]).split()) >= 3]
        assert len(names) <= 1, f"two sessions hold the leader lock: {rows}"
        return names[0] if names else ""

    def _run(self) -> None:
        schema = psycopg.sql.Identifier(self.schema).as_string(None)
        while not self.stopping.is_set():
            for node in list(self.cluster.nodes):
                if not node.running:
                    continue
                before = self.holder()
                try:
                    leaders: tuple[str, ...] | None = tuple(
                        self.cluster.by_port(p).name for p in node.gossip_leaders())
                except grpc.RpcError:
                    leaders = None
                after = self.holder()
                self.samples.append(Sample(time.time(), node.name, leaders, before, after))
            rows = self._query(f"SELECT position FROM {schema}.checkpoints WHERE name = %s",
                               (self.group,))
            if rows:
                self.checkpoints.append((time.time(), int(rows[0][0])))
            self.stopping.wait(self.every)


# -- the store as PostgreSQL holds it ----------------------------------------------------
@attrs.frozen
class Stored:
    """One stored event: ``pos`` in ``$all``, ``stream``, ``num``, ``id``, ``type``."""

    pos: int
    stream: str
    num: int
    id: str
    type: str


@attrs.frozen
class StoreContents:
    """Every event of the store in ``$all`` order, and the head row's last position."""

    events: tuple[Stored, ...]
    head: int


def read_store(dsn: str, store_id: str) -> StoreContents:
    """Read the whole store from PostgreSQL, verifying every event's checksum."""
    ident = psycopg.sql.Identifier(schema_name(store_id)).as_string(None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        head = conn.execute(f"SELECT last_pos FROM {ident}.head WHERE id = 1").fetchone()
        assert head is not None
        rows = conn.execute(f"SELECT pos, num, crc, rec, skey, eid FROM {ident}.events "
                            "ORDER BY pos", binary=True).fetchall()
    out = []
    for row in rows:
        records.verify_event(row, row[4])
        stream, event_type = records.peek_event(bytes(row[3]))
        out.append(Stored(row[0], stream, row[1], str(uuid.UUID(bytes=bytes(row[5]))),
                          event_type))
    return StoreContents(tuple(out), int(head[0]))


# -- the figures -------------------------------------------------------------------------
@attrs.define
class Figures:
    """What the checker found in one scenario (see the module docstring)."""

    scenario: str
    acknowledged: int = 0
    present: int = 0
    lost: int = 0
    duplicated: int = 0
    unknown: int = 0
    unknown_present: int = 0
    failed: int = 0
    failed_present: int = 0
    misplaced: int = 0
    retried: int = 0
    all_events: int = 0
    all_gapless: bool = True
    streams: int = 0
    streams_gapless: bool = True
    store_duplicates: int = 0
    catchup_received: int = 0
    catchup_expected: int = 0
    catchup_in_order: bool = True
    catchup_resubscribed: int = 0
    persistent_unique: int = 0
    persistent_missing: int = 0
    persistent_foreign: int = 0
    persistent_redelivered: int = 0
    persistent_repeated_in_read: int = 0
    persistent_after_checkpoint: int = 0
    persistent_reads: int = 0
    checkpoint_samples: int = 0
    gossip_samples: int = 0
    gossip_failed: int = 0
    gossip_max_leaders: int = 0
    gossip_leaders_shown: int = 0
    lock_confirmed: int = 0
    lock_unknown: int = 0
    lock_contradicted: int = 0
    leaders: tuple[str, ...] = ()
    notes: list[str] = attrs.field(factory=list)

    def violations(self) -> list[str]:
        """Every broken promise, in words (empty: the scenario passed)."""
        bad = []
        checks = [
            (self.acknowledged > 0, "nothing was acknowledged"),
            (self.lost == 0, f"{self.lost} acknowledged events lost"),
            (self.duplicated == 0, f"{self.duplicated} events stored twice"),
            (self.store_duplicates == 0, f"{self.store_duplicates} event ids twice in store"),
            (self.failed == 0, f"{self.failed} appends refused"),
            (self.failed_present == 0, f"{self.failed_present} refused events present"),
            (self.misplaced == 0, f"{self.misplaced} acknowledged events misplaced"),
            (self.all_gapless, "$all has a gap or is out of order"),
            (self.streams_gapless, "a stream has a gap or is out of order"),
            (self.catchup_in_order, "the catch-up subscriber's events are not $all's, in "
                                    "order"),
            (self.catchup_received == self.catchup_expected,
             f"the catch-up subscriber received {self.catchup_received} of "
             f"{self.catchup_expected}"),
            (self.persistent_missing == 0,
             f"the persistent subscriber missed {self.persistent_missing} events"),
            (self.persistent_foreign == 0,
             f"the persistent subscriber received {self.persistent_foreign} unknown events"),
            (self.persistent_repeated_in_read == 0,
             f"{self.persistent_repeated_in_read} events came twice in one read"),
            (self.persistent_after_checkpoint == 0,
             f"{self.persistent_after_checkpoint} events came again after their checkpoint"),
            (self.gossip_max_leaders <= 1, "a gossip showed two leaders"),
            (self.lock_contradicted == 0,
             f"{self.lock_contradicted} gossips showed a leader not holding the lock"),
        ]
        bad += [message for ok, message in checks if not ok]
        return bad

    def line(self) -> str:
        """The figures in one line, as the summary prints them."""
        return (
            f"{self.scenario}: acknowledged {self.acknowledged}, present {self.present}, "
            f"lost {self.lost}, duplicated {self.duplicated}, unknown {self.unknown} "
            f"(present {self.unknown_present}), failed {self.failed}, retried "
            f"{self.retried}; $all {self.all_events} events "
            f"{'gapless' if self.all_gapless else 'WITH GAPS'}, {self.streams} streams "
            f"{'gapless' if self.streams_gapless else 'WITH GAPS'}; catch-up "
            f"{self.catchup_received}/{self.catchup_expected} "
            f"{'in order' if self.catchup_in_order else 'OUT OF ORDER'} (resubscribed "
            f"{self.catchup_resubscribed}); persistent {self.persistent_unique} delivered, "
            f"missing {self.persistent_missing}, redelivered {self.persistent_redelivered}, "
            f"after checkpoint {self.persistent_after_checkpoint} (of "
            f"{self.checkpoint_samples} checkpoint reads), reads "
            f"{self.persistent_reads}; gossip {self.gossip_samples} reads "
            f"({self.gossip_failed} failed), max leaders {self.gossip_max_leaders}, leader "
            f"held the lock {self.lock_confirmed}/{self.gossip_leaders_shown} (unknown "
            f"{self.lock_unknown}, contradicted {self.lock_contradicted}), leaders "
            f"{'>'.join(self.leaders) or '-'}"
            + "".join(f"; {note}" for note in self.notes))


# -- a scenario --------------------------------------------------------------------------
class Scenario:
    """One run of the checker on ``cluster`` (see the module docstring): ``appenders``
    client processes of ``appends`` appends each (and ``extra`` appenders: (name, uri)),
    files under ``root``."""

    def __init__(self, cluster: Cluster, name: str, root: Path, appenders: int = 3,
                 appends: int = 150, extra: tuple[tuple[str, str], ...] = (),
                 give_up: float = 30.0) -> None:
        self.cluster, self.name = cluster, name
        self.root = root / name
        self.root.mkdir(parents=True)
        self.group = f"checker-{name}"
        self.appenders = [(f"{name}-a{i}", cluster.uri()) for i in range(appenders)]
        self.appenders += [(f"{name}-{suffix}", uri) for suffix, uri in extra]
        self.appends, self.give_up = appends, give_up
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.watch = GossipWatch(cluster, self.group)
        self.start_after = -1  # the $all head before the scenario
        self.figures = Figures(name)

    def _spawn(self, label: str, role: str, uri: str, *args: str) -> None:
        out = self.root / f"{label}.jsonl"
        err = open(self.root / f"{label}.stderr", "wb")  # noqa: SIM115 (the child's)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes[label] = subprocess.Popen(
            [sys.executable, "-m", "tests.exesdb.cluster_clients", role, "--uri", uri,
             "--out", str(out), *args], cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, env=env)
        err.close()

    def lines(self, label: str) -> list[dict[str, Any]]:
        return read_jsonl(self.root / f"{label}.jsonl")

    def _stderr(self, label: str) -> str:
        return (self.root / f"{label}.stderr").read_text(errors="replace")[-3000:]

    def acked(self) -> int:
        """Appends acknowledged so far, by every appender."""
        return sum(1 for label, _ in self.appenders for line in self.lines(label)
                   if line.get("outcome") == "ack")

    def wait_acked(self, count: int, limit: float = 60.0) -> None:
        wait_for(lambda: self.acked() >= count, limit, 0.05,
                 f"{count} appends acknowledged in {self.name}")

    @contextlib.contextmanager
    def running(self) -> Iterator[Scenario]:
        """Start the subscribers, the gossip watch and the appenders; on leaving, wait for
        the appenders to finish and the subscribers to catch up, then stop them all."""
        self.start_after = read_store(self.cluster.dsn, self.cluster.store_id).head
        commit = self.start_after + 1 if self.start_after >= 0 else 0  # wire: pos + 1
        self.watch.start()
        try:
            self._spawn("catchup", "catchup", self.cluster.uri(NodePreference="follower"),
                        "--start", str(commit))
            self._spawn("persistent", "persistent", self.cluster.uri(), "--start",
                        str(commit), "--group", self.group)
            for label in ("catchup", "persistent"):
                wait_for(lambda label=label: any(
                    line["kind"] == "ready" for line in self.lines(label))
                    or self.processes[label].poll() is not None, 60, 0.05,
                    f"the {label} subscriber is ready")
                assert self.processes[label].poll() is None, self._stderr(label)
            for label, uri in self.appenders:
                self._spawn(label, "append", uri, "--name", label, "--count",
                            str(self.appends), "--give-up", str(self.give_up))
            yield self
            self._finish()
        except BaseException:
            self.dump()
            raise
        finally:
            for process in self.processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
            self.watch.stop()

    def dump(self) -> None:
        """Write what is needed to tell what happened into the scenario's folder: each
        node's log so far and the gossip watch's samples."""
        for node in self.cluster.nodes:
            (self.root / f"node-{node.name}.log").write_text(node.server.output)
        with open(self.root / "gossip.jsonl", "w") as out:
            for sample in list(self.watch.samples):
                out.write(json.dumps(attrs.asdict(sample)) + "\n")

    def _finish(self) -> None:
        for label, _ in self.appenders:
            process = self.processes[label]
            try:
                process.wait(timeout=self.give_up + 60)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"appender {label} did not finish: "
                                     f"{self._stderr(label)}") from None
            assert process.returncode == 0, f"appender {label}: {self._stderr(label)}"
        store = read_store(self.cluster.dsn, self.cluster.store_id)
        mine = {e.id for e in store.events if self._ours(e.stream)}

        def caught_up() -> bool:
            seen = {line["id"] for line in self.lines("catchup")
                    if line["kind"] == "delivered"}
            done = {line["id"] for line in self.lines("persistent")
                    if line["kind"] == "acked"}
            return seen >= mine and done >= mine

        with contextlib.suppress(AssertionError):  # what is missing, the check says
            wait_for(caught_up, 30, 0.1)
        time.sleep(0.3)  # the last acks reach the leader's checkpoint

    def _ours(self, stream: str) -> bool:
        return stream.startswith(f"{self.name}-")

    # -- the check -----------------------------------------------------------------------
    def check(self) -> Figures:
        """Read the store from the database and :meth:`evaluate` it; the figures are kept
        in :data:`REPORTS` too."""
        figures = self.evaluate(read_store(self.cluster.dsn, self.cluster.store_id))
        REPORTS.append(figures.line())
        if figures.violations():
            self.dump()
        return figures

    def evaluate(self, store: StoreContents) -> Figures:
        """The figures of this scenario against ``store``: what its clients recorded and
        the gossip watch sampled."""
        f = self.figures
        self._check_store(f, store)
        self._check_appends(f, store)
        ours = [e for e in store.events if self._ours(e.stream) and e.type == EVENT_TYPE]
        self._check_catchup(f, ours)
        self._check_persistent(f, store, ours)
        self._check_gossip(f)
        return f

    def _check_store(self, f: Figures, store: StoreContents) -> None:
        positions = [e.pos for e in store.events]
        f.all_events = len(positions)
        f.all_gapless = positions == list(range(store.head + 1))
        by_stream: dict[str, list[int]] = collections.defaultdict(list)
        for event in store.events:
            by_stream[event.stream].append(event.num)
        f.streams = len(by_stream)
        f.streams_gapless = all(
            nums == list(range(nums[0], nums[0] + len(nums)))
            and (nums[0] == 0 or stream.startswith("$"))
            for stream, nums in by_stream.items())
        counts = collections.Counter(e.id for e in store.events)
        f.store_duplicates = sum(1 for c in counts.values() if c > 1)

    def _check_appends(self, f: Figures, store: StoreContents) -> None:
        stored: dict[str, list[Stored]] = collections.defaultdict(list)
        for event in store.events:
            stored[event.id].append(event)
        outcomes = [line for label, _ in self.appenders for line in self.lines(label)
                    if line["kind"] == "append"]
        for line in outcomes:
            found = stored.get(line["id"], [])
            f.retried += line["attempts"] > 1
            if len(found) > 1:
                f.duplicated += 1
            if line["outcome"] == "ack":
                f.acknowledged += 1
                if found:
                    f.present += 1
                    if (found[0].stream, found[0].num) != (line["stream"], line["num"]):
                        f.misplaced += 1
                else:
                    f.lost += 1
            elif line["outcome"] == "failed":
                f.failed += 1
                f.failed_present += bool(found)
                f.notes.append(f"refused: {line['errors'][-1:]}")
            else:
                f.unknown += 1
                f.unknown_present += bool(found)
        expected = self.appends * len(self.appenders)
        if len(outcomes) != expected:
            f.notes.append(f"only {len(outcomes)} of {expected} appends recorded")
            f.lost += expected - len(outcomes)  # an appender that died: counted as lost

    def _check_catchup(self, f: Figures, ours: list[Stored]) -> None:
        lines = self.lines("catchup")
        got = [(line["pos"] - 1, line["id"]) for line in lines
               if line["kind"] == "delivered" and self._ours(line["stream"])
               and line["type"] == EVENT_TYPE]
        want = [(e.pos, e.id) for e in ours]
        f.catchup_received, f.catchup_expected = len(got), len(want)
        f.catchup_in_order = got == want[:len(got)]
        f.catchup_resubscribed = max(0, sum(1 for ln in lines if ln["kind"] == "ready") - 1)

    def _check_persistent(self, f: Figures, store: StoreContents, ours: list[Stored]) -> None:
        lines = self.lines("persistent")
        position = {e.id: e.pos for e in store.events}
        wanted = {e.id for e in ours}
        read = 0
        in_read: set[str] = set()
        delivered: set[str] = set()
        acked: set[str] = set()
        checkpoints = self.watch.checkpoints
        for line in lines:
            if line["kind"] == "session":
                read += 1
                in_read = set()
            elif line["kind"] == "delivered" and self._ours(line["stream"]):
                event = line["id"]
                if event not in wanted:
                    f.persistent_foreign += 1
                if event in in_read:
                    f.persistent_repeated_in_read += 1
                if event in delivered:
                    f.persistent_redelivered += 1
                    pos = position.get(event, -1)
                    # Came again although the stored checkpoint had passed it: its ack was
                    # recorded by the store (conservative by one event, and by half a
                    # second for a delivery already on its way).
                    if event in acked and any(t < line["t"] - 0.5 and cp > pos
                                              for t, cp in checkpoints):
                        f.persistent_after_checkpoint += 1
                in_read.add(event)
                delivered.add(event)
            elif line["kind"] == "acked":
                acked.add(line["id"])
        f.persistent_reads = read
        f.checkpoint_samples = len(checkpoints)
        f.persistent_unique = len(delivered & wanted)
        f.persistent_missing = len(wanted - delivered)

    def _check_gossip(self, f: Figures) -> None:
        samples = self.watch.samples
        f.gossip_samples = len(samples)
        leaders: list[str] = []
        for sample in samples:
            if sample.leaders is None:
                f.gossip_failed += 1
                continue
            f.gossip_max_leaders = max(f.gossip_max_leaders, len(sample.leaders))
            if len(sample.leaders) != 1:
                continue
            leader = sample.leaders[0]
            f.gossip_leaders_shown += 1
            if not leaders or leaders[-1] != leader:
                leaders.append(leader)
            known = [h for h in (sample.before, sample.after) if h is not None]
            if leader in known:
                f.lock_confirmed += 1
            elif not known:
                f.lock_unknown += 1
            else:
                f.lock_contradicted += 1
        f.leaders = tuple(leaders)


def fenced_writes(node: Node) -> int:
    """How many of ``node``'s leader-only writes the database refused (StaleEpoch), by its
    log."""
    return node.server.output.count(FENCED)


def standby_of(primary: PostgresServer) -> PostgresServer:
    """A streaming replica of ``primary`` (``pg_basebackup -R`` as the server's OS user,
    into a temporary folder of its own), started on a port of its own; ``primary`` must
    allow replication connections (``initdb --auth=trust`` does, from 127.0.0.1).
    :meth:`PostgresServer.stop` stops it and removes its folder."""
    standby = PostgresServer()
    folder = Path(tempfile.mkdtemp(prefix="exesdb-pg-standby-"))
    if primary._owner is not None:
        os.chown(folder, primary._owner.pw_uid, primary._owner.pw_gid)
    standby.folder = folder
    standby.port = free_ports(1)[0]
    standby._run(standby.bindir / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                 "-U", "postgres", "-D", standby.data, "-R", "-X", "stream", "-c", "fast",
                 "--no-sync")
    with open(standby.data / "postgresql.conf", "a") as conf:
        conf.write(f"\n# the standby\nport = {standby.port}\n"
                   f"unix_socket_directories = '{folder}'\n")
    standby.start()
    return standby
