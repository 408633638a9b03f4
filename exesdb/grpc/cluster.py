"""The gRPC gateway of a store in cluster mode: gossip of every member, and calls that
need the leader sent to it, as KurrentDB does.

* :func:`gossip_members` lists the store's members from this node's
  :class:`~exesdb.systems.cluster.ClusterView`: ``Leader`` for the one member whose elector
  session holds the leader lock (so gossip never shows two leaders), ``Follower`` for the
  other live members, ``Shutdown`` and not alive for those stopped or whose heartbeat aged
  out, each with its advertised gRPC endpoint. Clients that discover, or that were given
  several nodes as gossip seeds (``kurrentdb://n1:2113,n2:2113``), pick the leader from it.
* :func:`leader_routed` guards a service: a call that needs the leader (the client's
  ``requires-leader: true`` header, which KurrentDB's clients send with the default
  ``NodePreference=leader``; and every persistent subscription call, which only the
  leader serves) reaching a node that does not lead ends ``NOT_FOUND "Leader info
  available"`` with the trailers ``exception: not-leader``, ``leader-endpoint-host`` and
  ``leader-endpoint-port``: the clients reconnect to that endpoint and retry. With no
  leader known (an election under way, the database out of reach) it ends
  ``UNAVAILABLE``, which the clients retry after rediscovering. A persistent
  subscription's read in progress on a node that stops leading ends the same way, so its
  consumer reconnects to the new leader.

Gossip and ServerFeatures are never redirected (discovery needs them on every node).
In ``single`` mode nothing changes: the node leads.
"""

from __future__ import annotations

import time
import uuid
from typing import Final

import attrs
import trio

from ..options import StoreOptions
from ..systems.cluster import ClusterView, Member, cluster_view, current_view
from ..systems.leadership import is_leading, term_ended
from .protos import gossip_pb2, shared_pb2
from .rpc import Call, Method, RpcError, Service, StatusCode

__all__ = [
    "LEADER_INFO",
    "REQUIRES_LEADER",
    "gossip_members",
    "leader_routed",
    "not_leader",
]

REQUIRES_LEADER: Final = "requires-leader"
"""The request header by which a client asks for the leader."""
LEADER_INFO: Final = "Leader info available"
"""KurrentDB's message for a call that reached a follower (clients match it)."""

_PERSISTENT: Final = "/event_store.client.persistent_subscriptions.PersistentSubscriptions/"
_STATE = gossip_pb2.MemberInfo.VNodeState


def not_leader(store_id: str) -> RpcError:
    """The error for a call that needs the leader, on a node that does not lead (see
    the module docstring)."""
    view = cluster_view(store_id)
    leader = view.leader if view is not None else None
    if view is None or leader is None or leader.node == view.me or not leader.port:
        return RpcError(StatusCode.UNAVAILABLE,
                        f"store {store_id!r}: no leader is known yet; retry")
    return RpcError(StatusCode.NOT_FOUND, LEADER_INFO, {
        "exception": "not-leader",
        "leader-endpoint-host": leader.host,
        "leader-endpoint-port": str(leader.port),
    })


def _needs_leader(path: str, call: Call) -> bool:
    return path.startswith(_PERSISTENT) or call.metadata.get(REQUIRES_LEADER) == "true"


def leader_routed(service: Service, opts: StoreOptions) -> Service:
    """``service`` with every handler behind the leader check (see the module
    docstring); ``service`` itself in ``single`` mode."""
    if opts.db_type != "cluster":
        return service
    store_id = opts.store_id

    def guard(path: str, method: Method) -> Method:
        inner = method.handler
        watch = path.startswith(_PERSISTENT) and method.kind != "unary"

        async def handler(call: Call) -> None:
            if _needs_leader(path, call) and not is_leading(store_id):
                raise not_leader(store_id)
            if not watch:
                await inner(call)
                return
            lost = False
            async with trio.open_nursery() as nursery:
                async def serve() -> None:
                    await inner(call)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(serve)
                await term_ended(store_id)
                lost = True
                nursery.cancel_scope.cancel()
            if lost:
                raise not_leader(store_id)

        return attrs.evolve(method, handler=handler)

    return {path: guard(path, method) for path, method in service.items()}


def _member_info(member: Member, instance: uuid.UUID | None) -> gossip_pb2.MemberInfo:
    if member.leader:
        state = _STATE.Leader
    elif member.alive:
        state = _STATE.Follower
    else:
        state = _STATE.Shutdown
    try:
        member_id = uuid.UUID(hex=member.instance) if instance is None else instance
    except ValueError:
        member_id = uuid.uuid5(uuid.NAMESPACE_URL, f"exesdb:{member.node}")
    return gossip_pb2.MemberInfo(
        instance_id=shared_pb2.UUID(string=str(member_id)),
        time_stamp=time.time_ns() // 100,
        state=state,
        is_alive=member.alive,
        http_end_point=gossip_pb2.EndPoint(address=member.host, port=member.port),
    )


async def gossip_members(store_id: str, own_instance: uuid.UUID,
                         own_endpoint: tuple[str, int],
                         timeout: float) -> list[gossip_pb2.MemberInfo] | None:
    """The gossip of ``store_id`` in cluster mode (see the module docstring), read from the
    database now (:func:`~exesdb.systems.cluster.current_view`; within ``timeout``
    seconds, else from the last view, without a leader), this node (``own_instance``,
    ``own_endpoint``) included even before it appears there; None when the store does
    not run in cluster mode here."""
    view: ClusterView | None = await current_view(store_id, timeout)
    if view is None:
        last = cluster_view(store_id)
        if last is None:
            return None
        view = attrs.evolve(last, members=tuple(
            attrs.evolve(m, leader=False, alive=m.node == last.me) for m in last.members))
    out = []
    seen_me = False
    for member in view.members:
        if member.node == view.me:
            seen_me = True
            host, port = own_endpoint
            member = attrs.evolve(member, host=member.host or host, port=port,
                                  alive=True, leader=member.leader and is_leading(store_id))
            out.append(_member_info(member, own_instance))
        elif member.port:
            out.append(_member_info(member, None))
    if not seen_me:
        host, port = own_endpoint
        me = Member(view.me, own_instance.hex, host, port, True, is_leading(store_id))
        out.append(_member_info(me, own_instance))
    return out
