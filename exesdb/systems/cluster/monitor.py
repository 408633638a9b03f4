"""NodeMonitor: this node's view of the store's cluster, and node up/down announcements.

Every ``election_interval_ms`` (and at once when the elector asks, :class:`Refresh`) the
:class:`NodeMonitor` reads the members from the database in one statement
(:meth:`~exesdb.storage.postgres_cluster.MembershipSession.members`) and keeps the
result as the node's :class:`ClusterView` of the store (:func:`cluster_view`, read
without a call by the gRPC gateway's leader redirects). :func:`current_view` asks for a
view read from the database just now (:class:`ReadView`), as gossip does: a client that
discovers right after the leader died is never sent to it. Such reads are shared: every
request that was waiting while a read ran is answered by the next read that starts after
it was made, so a burst of gossip (or a backlog of requests whose callers gave up) costs
one statement, not one each. A view names at
most one leader: the member whose elector session holds the leader lock at that moment.
When the database cannot be read, the view keeps the members last seen, none of them
alive but this node, and no leader (``ok`` False): a client asking this node finds no
leader and tries another.

Changes are published on the store's ``system`` pub/sub, topic :data:`CLUSTER_TOPIC`, as
:class:`NodeUp`, :class:`NodeDown` and :class:`LeaderChanged` (and logged), ExESDB's
NodeMonitor announcements; a member whose heartbeat ages out is down, as is one that
stopped in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Final, TypeAlias, assert_never

import attrs
import trio

import otp
from otp import gen_server, pubsub
from otp.lowlevel import NodeVar, on_exit

from ...errors import ExESDBError
from ...naming import genserver_name
from ...options import StoreOptions
from ...storage.postgres_cluster import ClusterQueries, MemberRow, MembershipSession
from ...storage.postgres_schema import schema_name
from ..leadership import leadership, track
from ..pubsub import pubsub_name, store_log
from .membership import advertised_port, call_bound, session_config
from .periodic import Periodic

__all__ = [
    "CLUSTER_TOPIC",
    "ClusterView",
    "LeaderChanged",
    "Member",
    "MonitorRequest",
    "NodeDown",
    "NodeMonitor",
    "NodeUp",
    "ReadView",
    "Refresh",
    "cluster_view",
    "current_view",
    "refresh",
]

log: Final = logging.getLogger("exesdb.systems.cluster")

CLUSTER_TOPIC: Final = "$cluster"
"""The topic, on the store's ``system`` pub/sub, of the cluster announcements."""


@attrs.frozen
class Member:
    """A member of the store's cluster: its ``node`` name, ``instance`` id, advertised
    gRPC ``host`` and ``port``, whether it is ``alive`` and whether it is the ``leader``."""

    node: str
    instance: str
    host: str
    port: int
    alive: bool
    leader: bool


@attrs.frozen
class ClusterView:
    """The store's members as this node last saw them (see the module docstring):
    ``members`` by node name, ``me`` (this node's name), ``ok`` (read from the database
    by a statement sent at ``as_of``, trio time; False when the last read failed)."""

    members: tuple[Member, ...]
    me: str
    ok: bool
    as_of: float

    @property
    def leader(self) -> Member | None:
        """The leader, if the view knows one."""
        return next((m for m in self.members if m.leader), None)


@attrs.frozen
class NodeUp:
    """Published when ``node`` of store ``store_id`` becomes alive (or is first seen
    alive), advertising ``host``:``port``."""

    store_id: str
    node: str
    host: str
    port: int


@attrs.frozen
class NodeDown:
    """Published when ``node`` of store ``store_id`` stops being alive (stopped, or its
    heartbeat aged out)."""

    store_id: str
    node: str


@attrs.frozen
class LeaderChanged:
    """Published when the store's leader, as the database shows it, becomes ``node``
    (None: no node holds the leader lock)."""

    store_id: str
    node: str | None


@attrs.frozen
class Refresh:
    """Read the members again now (cast by the elector when leadership changes)."""


@attrs.frozen
class ReadView:
    """Reply: the :class:`ClusterView` read by a statement sent after the request was
    made (``asked``, trio time; or at most ``max_age`` seconds before), or None when the
    database cannot be read. Gossip asks for a view read after it asked (the default):
    one read even 50 ms earlier named a leader killed in between, which no longer held
    the lock when a client was sent to it."""

    max_age: float = 0.0
    asked: float = attrs.field(factory=trio.current_time)


MonitorRequest: TypeAlias = Refresh | ReadView
"""Every message :class:`NodeMonitor` serves (:class:`Refresh` as a cast, :class:`ReadView`
as a call)."""

_views: NodeVar[dict[str, ClusterView]] = NodeVar("exesdb.cluster.views", factory=dict)


def cluster_view(store_id: str) -> ClusterView | None:
    """This node's latest :class:`ClusterView` of ``store_id``; None when the store does
    not run in cluster mode here (or its monitor has not read the members yet)."""
    return _views.get().get(store_id)


async def current_view(store_id: str, timeout: float) -> ClusterView | None:
    """The store's :class:`ClusterView` as the database shows it now (see
    :class:`ReadView`); None when it cannot be read or the store's NodeMonitor does not
    run (not cluster mode), within ``timeout`` seconds."""
    try:
        view: ClusterView | None = await gen_server.call(
            genserver_name(NodeMonitor, store_id), ReadView(), timeout)
    except otp.OTPError:
        return None
    return view


def refresh(store_id: str) -> None:
    """Ask the store's NodeMonitor to read the members now (nothing if it is not
    running)."""
    with contextlib.suppress(otp.NoProc):
        gen_server.cast(genserver_name(NodeMonitor, store_id), Refresh())


class NodeMonitor(Periodic):
    """Keeps the node's :class:`ClusterView` of the store and announces the changes (see
    the module docstring)."""

    async def init(self, opts: StoreOptions) -> Any:
        result = await super().init(opts)
        record = leadership(opts.store_id) or track(opts.store_id, opts.cluster_node_name)
        self.node = record.node
        self.session = MembershipSession(session_config(opts, "monitor"),
                                         ClusterQueries(schema_name(opts.store_id)))
        self.timeout = opts.member_timeout_ms / 1000
        self.alive: set[str] = set()
        self.leader: str | None = None
        self.failing = False
        table = _views.get()
        on_exit(otp.self(), lambda _reason: self._on_exit(table))
        return result

    async def handle_cast(self, msg: Any) -> Any:
        if not isinstance(msg, Refresh):
            return await super().handle_cast(msg)
        self.soon()
        await self.tick_if_due()
        return self.idle()

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, MonitorRequest):
            return await super().handle_call(request, from_)
        match request:
            case ReadView(max_age, asked):
                view = _views.get().get(self.store_id)
                if view is None or not view.ok or view.as_of < asked - max_age:
                    self.soon()
                    await self.tick_if_due()
                    view = _views.get().get(self.store_id)
                return otp.Reply(view if view is not None and view.ok else None,
                                 timeout=self.idle().timeout)
            case Refresh():
                self.soon()
                await self.tick_if_due()
                return otp.Reply(None, timeout=self.idle().timeout)
            case _:
                assert_never(request)

    async def tick(self) -> None:
        sent = trio.current_time()
        try:
            rows = await trio.to_thread.run_sync(self.session.members, self.timeout,
                                                 call_bound(self.opts))
        except ExESDBError as exc:
            if not self.failing:
                log.warning("store %r: node %s: cannot read the cluster's members "
                            "(retrying): %s", self.store_id, self.node, exc)
            self.failing = True
            self._unreachable()
            return
        self.failing = False
        self._publish(rows, sent)

    def _publish(self, rows: list[MemberRow], sent: float) -> None:
        members = tuple(Member(r.node, r.instance, r.host, r.port, r.alive or r.leader,
                               r.leader) for r in rows)
        _views.get()[self.store_id] = ClusterView(members, self.node, True, sent)
        alive = {m.node: m for m in members if m.alive}
        for node in sorted(alive.keys() - self.alive):
            m = alive[node]
            self._announce(NodeUp(self.store_id, node, m.host, m.port),
                           f"node {node} is up ({m.host}:{m.port})")
        for node in sorted(self.alive - alive.keys()):
            self._announce(NodeDown(self.store_id, node), f"node {node} is down")
        self.alive = set(alive)
        leader = next((m.node for m in members if m.leader), None)
        if leader != self.leader:
            self.leader = leader
            self._announce(LeaderChanged(self.store_id, leader),
                           f"the leader is {leader}" if leader else "no node leads")

    def _unreachable(self) -> None:
        """The database cannot be read: no leader known, only this node alive."""
        old = _views.get().get(self.store_id)
        me = Member(self.node, "", self.opts.advertised_host, advertised_port(self.opts),
                    True, False)
        members = tuple(me if m.node == self.node else attrs.evolve(m, alive=False,
                                                                    leader=False)
                        for m in (old.members if old is not None else ()))
        if all(m.node != self.node for m in members):
            members = (*members, me)
        _views.get()[self.store_id] = ClusterView(members, self.node, False,
                                                  trio.current_time())
        for node in sorted(self.alive - {self.node}):
            self._announce(NodeDown(self.store_id, node), f"node {node} is unreachable")
        self.alive &= {self.node}
        if self.leader is not None:
            self.leader = None
            self._announce(LeaderChanged(self.store_id, None), "no leader known")

    def _announce(self, msg: NodeUp | NodeDown | LeaderChanged, text: str) -> None:
        log.info("store %r: node %s: %s", self.store_id, self.node, text)
        store_log(self.store_id, logging.INFO, text)
        with contextlib.suppress(otp.NoProc):
            pubsub.broadcast(pubsub_name(self.store_id, "system"), CLUSTER_TOPIC, msg)

    async def terminate(self, reason: Any) -> None:
        await trio.to_thread.run_sync(self.session.close)

    def _on_exit(self, table: dict[str, ClusterView]) -> None:
        """However the process ends: its view goes (nothing stale is served) and its
        session is closed (in a thread)."""
        table.pop(self.store_id, None)
        threading.Thread(target=self.session.close, daemon=True,
                         name=f"exesdb {self.store_id} monitor close").start()
