"""A PostgreSQL failover under the cluster checker (:mod:`tests.exesdb.cluster_checker`):
the nodes write to a primary with a synchronous streaming standby
(``synchronous_standby_names``: every commit is on the standby before the nodes
acknowledge it), the primary crashes under load, the standby is promoted
(``pg_ctl promote``), and the nodes, given both servers in one DSN with
``target_session_attrs=read-write``, carry on against the new primary by themselves. No
acknowledged event is lost, and everything the checker checks holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exesdb.pgserver import PostgresServer

from .cluster_checker import Cluster, Scenario, standby_of, wait_for

pytestmark = pytest.mark.slow

APPENDERS = 3
APPENDS = 120


@pytest.fixture
def replicated() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and its synchronous streaming standby."""
    with PostgresServer() as primary:
        standby = standby_of(primary)
        try:
            primary.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.execute("SELECT pg_reload_conf()")
            wait_for(lambda: primary.execute(
                "SELECT sync_state FROM pg_stat_replication") == [("sync",)], 30,
                what="the standby replicates synchronously")
            yield primary, standby
        finally:
            standby.stop()


def test_promoting_a_synchronous_standby_after_the_primary_crashes_loses_nothing(
        replicated, tmp_path):
    primary, standby = replicated
    dsn = (f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres "
           "dbname=postgres target_session_attrs=read-write")
    cluster = Cluster(tmp_path / "nodes", dsn, "replica")
    try:
        cluster.start()
        cluster.leader()
        run = Scenario(cluster, "failover", tmp_path, appenders=APPENDERS, appends=APPENDS)
        with run.running():
            run.wait_acked(APPENDERS * APPENDS // 3)
            primary.stop_server("immediate")  # a crash: no shutdown checkpoint
            crashed = time.monotonic()
            standby._pg_ctl("promote")
            promoted = time.monotonic()
            cluster.leader()
            run.figures.notes.append(
                f"primary crashed, standby promoted in {promoted - crashed:.1f} s, a leader "
                f"agreed on it {time.monotonic() - promoted:.1f} s later")
        figures = run.check()
        assert not figures.violations(), f"{figures.violations()}\n{figures.line()}"
        assert standby.execute("SELECT pg_is_in_recovery()") == [(False,)]
    finally:
        cluster.close()
