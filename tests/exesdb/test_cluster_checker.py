"""The cluster checker's scenarios (:mod:`tests.exesdb.cluster_checker`): three nodes of
one store as OS processes on a PostgreSQL of this module's own, three appender processes
(and a fourth through a proxy where a reply is lost), a catch-up subscriber on a follower
and a persistent subscriber on the leader, and gossip watched throughout, while one
fault strikes:

* the leader is killed (SIGKILL);
* the leader is paused (SIGSTOP) past its lease, then resumed: it steps down, and the
  database refuses its late leader-only writes (fenced);
* the leader's database sessions are all terminated (``pg_terminate_backend``);
* the ``LISTEN`` session of the catch-up subscriber's node alone is terminated, twice,
  under load;
* PostgreSQL crashes and restarts (``pg_ctl restart -m immediate``);
* the replies of some appends are lost after the server acknowledged them: the client
  retries them with the same event ids, and nothing is stored twice.

After each: every acknowledged event present exactly once, ``$all`` and every stream
gapless, each subscriber's view a prefix of ``$all`` (at least once for the persistent
one, never again once its checkpoint passed it), at most one leader in any gossip and
that leader holding the lock. The figures of each scenario are printed in the pytest
summary. The nodes run with a 1 s lease and a 0.2 s election interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exesdb.pgserver import PostgresServer

from .cluster_checker import Cluster, Scenario, fenced_writes, wait_for
from .h2_proxy import ReplyDroppingProxy

pytestmark = pytest.mark.slow

STORE = "checker"
APPENDERS = 3
APPENDS = 150
"""Appends per appender: 450 a scenario (the proxied appender's come on top)."""


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own: its scenarios crash and restart it."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(database: PostgresServer, tmp_path_factory) -> Iterator[Cluster]:
    """Nodes n1, n2, n3 of store ``checker``, kept across the scenarios."""
    nodes = Cluster(tmp_path_factory.mktemp("cluster"), database.dsn, STORE)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def healthy(cluster: Cluster) -> Cluster:
    """The cluster with every node running (again) and one leader agreed."""
    cluster.start()
    cluster.leader()
    return cluster


def scenario(cluster: Cluster, tmp_path: Path, name: str, **kwargs) -> Scenario:
    return Scenario(cluster, name, tmp_path, appenders=APPENDERS, appends=APPENDS, **kwargs)


def passed(run: Scenario) -> None:
    """Check the scenario; fail with its figures when a promise was broken."""
    figures = run.check()
    assert not figures.violations(), f"{figures.violations()}\n{figures.line()}"


def test_sigkill_of_the_leader_loses_no_acknowledged_event(healthy, tmp_path):
    run = scenario(healthy, tmp_path, "kill")
    with run.running():
        run.wait_acked(APPENDERS * APPENDS // 3)
        old = healthy.leader()
        old.kill()
        new = healthy.leader(other_than=old)
    passed(run)
    assert run.figures.leaders[-1] == new.name


def test_a_leader_paused_past_its_lease_steps_down_and_its_late_writes_are_fenced(
        healthy, tmp_path):
    run = scenario(healthy, tmp_path, "pause")
    with run.running():
        run.wait_acked(APPENDERS * APPENDS // 3)
        old = healthy.leader()
        fenced_before = fenced_writes(old)
        old.pause()
        others = [n for n in healthy.nodes if n is not old]
        new = healthy.leader(among=others, other_than=old)
        run.wait_acked(run.acked() + 30)  # the others go on appending without it
        old.resume()
        # Running again, it finds its lease expired and steps down: one leader everywhere.
        assert healthy.leader(other_than=old) is new
        wait_for(lambda: fenced_writes(old) > fenced_before, 15,
                 what="the resumed leader's late write is refused (StaleEpoch)")
    run.figures.notes.append(f"late writes of {old.name} fenced: "
                             f"{fenced_writes(old) - fenced_before}")
    passed(run)
    # Its persistent group, left from its term, stops storing checkpoints (the leader's
    # group does): no retry every 0.2 s, and no warning line for each.
    retries = old.server.output.count("checkpoint not stored yet")
    assert retries <= 2, f"{old.name} retried a checkpoint it cannot store {retries} times"


def test_terminating_the_leaders_database_sessions_loses_nothing(healthy, database, tmp_path):
    run = scenario(healthy, tmp_path, "terminate")
    with run.running():
        run.wait_acked(APPENDERS * APPENDS // 3)
        leader = healthy.leader()
        killed = database.terminate(f"exesdb {STORE} {leader.name} %")
        assert killed >= 4  # elector, membership, monitor, listener, writer, readers
        run.figures.notes.append(f"{killed} sessions of {leader.name} terminated")
        healthy.leader()
    passed(run)


def test_the_listen_session_killed_under_load_costs_subscribers_nothing(
        healthy, database, tmp_path):
    run = scenario(healthy, tmp_path, "listen")
    with run.running():
        ready = next(line for line in run.lines("catchup") if line["kind"] == "ready")
        node = healthy.by_port(int(ready["node"].rsplit(":", 1)[1]))
        for third in (1, 2):
            run.wait_acked(APPENDERS * APPENDS * third // 3)
            # (the second time, once the listener has listened again)
            wait_for(lambda: database.terminate(f"exesdb {STORE} {node.name} listener") == 1,
                     15, what=f"the LISTEN session of {node.name} terminated")
        run.figures.notes.append(f"the LISTEN session of {node.name} terminated twice")
    passed(run)


def test_an_append_whose_reply_is_lost_is_retried_with_the_same_ids_and_stored_once(
        healthy, tmp_path):
    leader = healthy.leader()
    proxy = ReplyDroppingProxy(leader.port, drop={5, 25, 50, 75, 100})
    try:
        run = scenario(healthy, tmp_path, "lostreply", extra=(
            ("proxied", f"kurrentdb://127.0.0.1:{proxy.port}?Tls=false"),))
        with run.running():
            pass
        assert proxy.dropped == 5, (proxy.calls, proxy.dropped)
    finally:
        proxy.close()
    run.figures.notes.append(f"{proxy.dropped} acknowledged replies lost of "
                             f"{proxy.calls} appends through the proxy")
    passed(run)
    proxied = [line for line in run.lines("lostreply-proxied") if line["kind"] == "append"]
    assert [line["outcome"] for line in proxied] == ["ack"] * APPENDS


# Last in the module: when it fails, the cluster it leaves behind is not reused.
def test_a_postgresql_crash_and_restart_loses_no_acknowledged_event(
        healthy, database, tmp_path):
    run = scenario(healthy, tmp_path, "pgcrash")
    with run.running():
        run.wait_acked(APPENDERS * APPENDS // 3)
        started = time.monotonic()
        database.restart("immediate")
        run.figures.notes.append(f"PostgreSQL down and up in "
                                 f"{time.monotonic() - started:.1f} s")
        healthy.leader()
    passed(run)
