"""Membership: this node's row in the store's ``members`` table, kept alive by a heartbeat.

Every ``election_interval_ms`` the :class:`Membership` process upserts the node's row
(:class:`~exesdb.storage.postgres_cluster.MembershipSession`): its name, its instance
id (new each time the node's cluster tracking starts), and the gRPC endpoint gossip
advertises for it (``advertised_host`` and the gRPC port: the configured one, or the one
the listener bound, published with :func:`advertise_port`). The row's heartbeat is the
database's clock, so liveness never depends on the nodes' clocks agreeing: a member is
alive while its heartbeat is younger than ``member_timeout_ms``. On an orderly stop the
row is marked stopped at once; a node that crashed or lost the database stops being alive
when its heartbeat ages out. A member dead or stopped for ``dead_member_removal_ms``
(KurrentDB's ``DeadMemberRemovalPeriod``, 30 minutes by default) is removed from the table
by the next heartbeat of any node, so gossip stops listing it; a node that comes back
later simply adds its row again.

A failed heartbeat (the database out of reach) is logged once and retried at the next
interval on a new session: the node rejoins by itself when the database returns.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import trio

import otp
from otp.lowlevel import NodeVar, on_exit

from ...errors import ExESDBError
from ...options import StoreOptions
from ...storage.postgres_cluster import ClusterQueries, MembershipSession, SessionConfig
from ...storage.postgres_schema import schema_name
from ..backends import application_name
from ..leadership import leadership, track
from .periodic import Periodic

__all__ = ["Membership", "advertise_port", "advertised_port", "call_bound",
           "session_config"]

log: Final = logging.getLogger("exesdb.systems.cluster")

_ports: NodeVar[dict[str, int]] = NodeVar("exesdb.cluster.ports", factory=dict)


def advertise_port(store_id: str, port: int) -> None:
    """Tell the store's membership the gRPC port this node listens on (the gRPC gateway
    calls it once bound; it matters when ``grpc_port`` is 0)."""
    _ports.get()[store_id] = port


def advertised_port(opts: StoreOptions) -> int:
    """The gRPC port gossip advertises for this node: the one the listener bound, else
    the configured one (0: none known, e.g. no gRPC listener)."""
    return _ports.get().get(opts.store_id) or opts.grpc_port or 0


def call_bound(opts: StoreOptions) -> float:
    """Seconds one call of a cluster session may take (statement, connection attempt, the
    client-side deadline): the lease, at most the store's ``timeout``."""
    return min(opts.leader_lease_ms, opts.timeout) / 1000


def session_config(opts: StoreOptions, role: str,
                   idle_session_timeout: float | None = None) -> SessionConfig:
    """The settings of one of the store's cluster sessions (``role`` names it in
    ``pg_stat_activity``): statements and connection attempts bounded by
    :func:`call_bound`."""
    assert opts.pg_dsn is not None
    bound = call_bound(opts)
    return SessionConfig(opts.pg_dsn, f"{application_name(opts)} {role}",
                         connect_timeout=bound, statement_timeout=bound,
                         idle_session_timeout=idle_session_timeout)


class Membership(Periodic):
    """Keeps this node's ``members`` row alive (see the module docstring)."""

    async def init(self, opts: StoreOptions) -> Any:
        result = await super().init(opts)
        otp.trap_exits(True)  # so that a shutdown marks the row stopped
        record = leadership(opts.store_id) or track(opts.store_id, opts.cluster_node_name)
        self.node = record.node
        self.instance = record.instance
        self.session = MembershipSession(session_config(opts, "membership"),
                                         ClusterQueries(schema_name(opts.store_id)))
        self.failing = False
        on_exit(otp.self(), self._on_exit)
        return result

    async def tick(self) -> None:
        host, port = self.opts.advertised_host, advertised_port(self.opts)
        try:
            await trio.to_thread.run_sync(self.session.heartbeat, self.node, self.instance,
                                          host, port, call_bound(self.opts),
                                          self.opts.dead_member_removal_ms / 1000)
        except ExESDBError as exc:
            if not self.failing:
                log.warning("store %r: node %s: membership heartbeat failed (retrying): %s",
                            self.store_id, self.node, exc)
            self.failing = True
            return
        if self.failing:
            log.info("store %r: node %s: membership heartbeat back", self.store_id, self.node)
        self.failing = False

    async def terminate(self, reason: Any) -> None:
        try:
            await trio.to_thread.run_sync(self.session.stop, self.node, self.instance,
                                          call_bound(self.opts))
        except ExESDBError as exc:
            log.info("store %r: node %s: not marked stopped: %s", self.store_id, self.node, exc)
        await trio.to_thread.run_sync(self.session.close)

    def _on_exit(self, reason: Any) -> None:
        """However the process ends: its session is closed (in a thread: it may be in
        use by a call the process was killed in)."""
        threading.Thread(target=self.session.close, daemon=True,
                         name=f"exesdb {self.store_id} membership close").start()
