"""Cluster mode's options (``db_type="cluster"``): what they require, their defaults, their
environment variables, and the command line's flags and errors."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from exesdb import InvalidArgument
from exesdb.options import redact_dsn, resolve_options

DSN = "postgresql://exesdb:s3cret@db-host/exesdb"


def cluster(**options):
    return resolve_options(store_id="orders", db_type="cluster", environ={}, **options)


def test_cluster_mode_requires_a_database():
    with pytest.raises(InvalidArgument, match=r"^pg_dsn: required with db_type='cluster'"):
        resolve_options(store_id="orders", db_type="cluster", environ={})


def test_cluster_mode_with_a_database_is_accepted():
    opts = cluster(pg_dsn=DSN)
    assert (opts.db_type, opts.pg_dsn) == ("cluster", DSN)


def test_the_cluster_options_come_from_their_environment_variables():
    opts = resolve_options(store_id="orders", environ={
        "EX_ESDB_DB_TYPE": "cluster", "EX_ESDB_PG_DSN": DSN, "EX_ESDB_NODE_NAME": "n1",
        "EX_ESDB_ADVERTISE_HOST": "node1.internal", "EX_ESDB_LEADER_LEASE_MS": "2000",
        "EX_ESDB_ELECTION_INTERVAL_MS": "250", "EX_ESDB_MEMBER_TIMEOUT_MS": "4000"})
    assert (opts.pg_dsn, opts.node_name, opts.advertise_host, opts.leader_lease_ms,
            opts.election_interval_ms, opts.member_timeout_ms) == (
        DSN, "n1", "node1.internal", 2000, 250, 4000)


def test_the_lease_defaults_to_three_seconds_polled_every_half_second():
    opts = cluster(pg_dsn=DSN)
    assert (opts.leader_lease_ms, opts.election_interval_ms, opts.member_timeout_ms) == (
        3000, 500, 5000)


def test_the_election_interval_must_fit_twice_in_the_lease():
    with pytest.raises(InvalidArgument, match=r"^election_interval_ms: must be at most half "
                                              r"of leader_lease_ms \(1000\), got 600"):
        cluster(pg_dsn=DSN, leader_lease_ms=1000, election_interval_ms=600)


def test_the_member_timeout_must_exceed_the_election_interval():
    with pytest.raises(InvalidArgument, match=r"^member_timeout_ms: must be more than "
                                              r"election_interval_ms \(500\), got 500"):
        cluster(pg_dsn=DSN, member_timeout_ms=500)


def test_dead_members_are_removed_after_thirty_minutes_as_in_kurrentdb():
    assert cluster(pg_dsn=DSN).dead_member_removal_ms == 1_800_000


def test_the_dead_member_removal_period_must_exceed_the_member_timeout():
    with pytest.raises(InvalidArgument, match=r"^dead_member_removal_ms: must be more than "
                                              r"member_timeout_ms \(5000\), got 5000"):
        cluster(pg_dsn=DSN, dead_member_removal_ms=5000)


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("pg_dsn", "", "pg_dsn: must be a non-empty string"),
    ("pg_dsn", 5, "pg_dsn: must be a non-empty string"),
    ("node_name", " n1", "node_name: must be 1 to 128 printable characters"),
    ("node_name", "n" * 129, "node_name: must be 1 to 128 printable characters"),
    ("advertise_host", "", "advertise_host: must be a non-empty string"),
    ("leader_lease_ms", 0, "leader_lease_ms: must be a whole number of milliseconds > 0"),
    ("member_timeout_ms", 1.5, "member_timeout_ms: must be a whole number of milliseconds"),
    ("dead_member_removal_ms", 0,
     "dead_member_removal_ms: must be a whole number of milliseconds > 0"),
])
def test_a_cluster_option_breaking_its_rule_names_the_field(field, value, rule):
    options = {"pg_dsn": DSN, field: value}
    with pytest.raises(InvalidArgument, match="^" + re.escape(rule)):
        cluster(**options)


def test_the_node_name_defaults_to_the_host_name_and_grpc_port():
    assert cluster(pg_dsn=DSN, grpc_port=2113).cluster_node_name == (
        f"{socket.gethostname()}:2113")


def test_a_given_node_name_is_used():
    assert cluster(pg_dsn=DSN, node_name="n1", grpc_port=2113).cluster_node_name == "n1"


def test_gossip_advertises_the_listen_host_by_default():
    assert cluster(pg_dsn=DSN, grpc_host="127.0.0.2").advertised_host == "127.0.0.2"


def test_gossip_advertises_the_host_name_for_a_wildcard_listen_address():
    opts = cluster(pg_dsn=DSN, grpc_host="0.0.0.0", insecure=True)
    assert opts.advertised_host == socket.gethostname()


def test_gossip_advertises_the_advertise_host_when_given():
    opts = cluster(pg_dsn=DSN, grpc_host="0.0.0.0", insecure=True,
                   advertise_host="node1.internal")
    assert opts.advertised_host == "node1.internal"


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://exesdb:s3cret@db/x", "postgresql://exesdb:***@db/x"),
    ("host=db user=exesdb password=s3cret", "host=db user=exesdb password=***"),
    ("host=db password='s3 cret' user=u", "host=db password=*** user=u"),
    ("postgresql://db/x?user=u&password=s3cret", "postgresql://db/x?user=u&password=***"),
    ("postgresql://exesdb@db/x", "postgresql://exesdb@db/x"),
])
def test_a_password_in_the_dsn_is_never_shown(dsn, shown):
    assert redact_dsn(dsn) == shown


def test_the_options_hide_the_password_in_their_repr_and_as_dict():
    opts = cluster(pg_dsn=DSN)
    assert "s3cret" not in repr(opts)
    assert opts.as_dict()["pg_dsn"] == "postgresql://exesdb:***@db-host/exesdb"


def exesdb(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_start_in_cluster_mode_without_a_database_is_a_one_line_error_exit_2():
    result = exesdb("start", "--store-id", "orders", "--db-type", "cluster")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "exesdb: pg_dsn: required with db_type='cluster' (the PostgreSQL database the "
        "nodes share; give pg_dsn= or set EX_ESDB_PG_DSN)"]


def test_start_help_lists_the_cluster_flags_and_their_environment_variables():
    out = exesdb("start", "--help").stdout
    for flag, variable in [("--pg-dsn", "EX_ESDB_PG_DSN"), ("--node-name", "EX_ESDB_NODE_NAME"),
                           ("--advertise-host", "EX_ESDB_ADVERTISE_HOST"),
                           ("--leader-lease-ms", "EX_ESDB_LEADER_LEASE_MS")]:
        assert flag in out
        assert variable in out
