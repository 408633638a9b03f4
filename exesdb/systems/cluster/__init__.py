"""ClusterSystem: the store's cluster mode (``db_type="cluster"``), on PostgreSQL.

In cluster mode every node of a store runs the whole store (its gateway, reads, its own
writer, its clients' subscriptions) on one shared PostgreSQL schema
(:class:`~exesdb.storage.postgres.PostgresBackend`), and ``System`` runs a
``ClusterSystem`` between ``CoreSystem`` and ``GatewaySystem``, as ExESDB does (one_for_one,
10 restarts in 60 s), with one process per module:

* :class:`~.membership.Membership`: this node's ``members`` row, kept alive by a
  heartbeat (the database's clock decides who is alive);
* :class:`~.monitor.NodeMonitor`: this node's :class:`~.monitor.ClusterView` of the members
  and who leads (gossip and the gRPC gateway's leader redirects read it), node up/down
  announcements on the store's ``system`` pub/sub;
* :class:`~.listener.PgListener`: other nodes' commits, turned into this node's commit
  signal (``LISTEN``/``NOTIFY``);
* :class:`~.elector.LeaderElector`: the leader election (a PostgreSQL advisory lock with
  a lease, fenced epochs) and the activation of the store's Leader subsystem on the node
  that wins.

There is no consensus of exesdb's own: the database is the one arbiter, so the store is
as available as its PostgreSQL (see the README for what a PostgreSQL failover keeps).
Losing the database, the node's calls fail with :class:`exesdb.StoreUnavailable` within
the store's ``timeout`` and every process here retries each ``election_interval_ms``: the
node rejoins by itself when the database returns.
"""

from __future__ import annotations

from otp import supervisor

from ...options import StoreOptions
from ..processes import StoreSupervisor
from .elector import LeaderElector
from .listener import PgListener
from .membership import Membership, advertise_port
from .monitor import (
    CLUSTER_TOPIC,
    ClusterView,
    LeaderChanged,
    Member,
    NodeDown,
    NodeMonitor,
    NodeUp,
    cluster_view,
    current_view,
)

__all__ = [
    "CLUSTER_TOPIC",
    "ClusterSystem",
    "ClusterView",
    "LeaderChanged",
    "LeaderElector",
    "Member",
    "Membership",
    "NodeDown",
    "NodeMonitor",
    "NodeUp",
    "PgListener",
    "advertise_port",
    "cluster_view",
    "current_view",
]


class ClusterSystem(StoreSupervisor):
    """one_for_one, at most 10 restarts in 60 s: Membership, NodeMonitor, PgListener,
    LeaderElector (last: when it activates the leader, the rest runs)."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [Membership.child_spec(opts), NodeMonitor.child_spec(opts),
             PgListener.child_spec(opts), LeaderElector.child_spec(opts)],
            strategy="one_for_one", intensity=10, period=60,
        )
