"""The Gossip and ServerFeatures services: a one-node cluster and the methods it serves.

* ``Gossip.Read`` answers one member, this node: alive, in state ``Leader``, with the
  address and port it listens on and an instance id (a fresh UUID per listener). Clients
  that discover (``kurrentdb+discover://``, ``esdb+discover://``) connect to the leader;
  a single member is never redirected, so a wildcard listening address (``0.0.0.0``,
  ``::``) is advertised as the loopback address. In cluster mode it answers every member
  of the store's cluster instead (``members``, see :func:`exesdb.grpc.cluster.gossip_members`).
* ``ServerFeatures.GetSupportedMethods`` lists every method the listener serves, service
  and method names lower-cased as KurrentDB lists them (``event_store.client.streams.
  streams`` / ``read``), with the server version :data:`SERVER_VERSION`, the KurrentDB
  protocol level this gateway matches, and the features KurrentDB lists for each
  (:func:`features`): every persistent subscriptions method ``stream`` and ``all``
  (groups on a stream and on ``$all``), Streams ``Read`` ``position`` and ``events``,
  ``BatchAppend`` ``deadline_duration``. The clients decide from it which calls exist.

Neither service touches a store's data, so they need no store permission, and both are
anonymous methods (:attr:`exesdb.grpc.rpc.Method.anonymous`): with a users file they answer
a call without credentials, as KurrentDB does (clients ask for the server features before
anything else, without credentials; gossip is anonymous by KurrentDB's default), while
wrong credentials are still refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from .protos import gossip_pb2, serverfeatures_pb2, shared_pb2
from .rpc import Call, Method, Service

__all__ = [
    "GOSSIP_READ",
    "SERVER_FEATURES",
    "SERVER_VERSION",
    "advertised_host",
    "features",
    "gossip",
    "server_features",
]

SERVER_VERSION: Final = "24.10.0"
"""The KurrentDB version whose client protocol this gateway serves."""

GOSSIP_READ: Final = "/event_store.client.gossip.Gossip/Read"
SERVER_FEATURES: Final = (
    "/event_store.client.server_features.ServerFeatures/GetSupportedMethods")

_PERSISTENT_SERVICE: Final = "event_store.client.persistent_subscriptions.persistentsubscriptions"
_STREAMS_SERVICE: Final = "event_store.client.streams.streams"


def advertised_host(host: str) -> str:
    """The address gossip advertises for a listener on ``host`` (loopback for a
    wildcard address)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def gossip(endpoint: Callable[[], tuple[str, int]], instance_id: uuid.UUID,
           members: Callable[[], Awaitable[list[gossip_pb2.MemberInfo] | None]] | None = None,
           ) -> Service:
    """The Gossip service of one node; ``endpoint()`` gives the listening address, and
    ``members()``, when given and not None, the members to answer (cluster mode)."""

    async def read(call: Call) -> None:
        await call.receive_one()
        cluster = await members() if members is not None else None
        if cluster is not None:
            await call.send(gossip_pb2.ClusterInfo(members=cluster))
            return
        host, port = endpoint()
        member = gossip_pb2.MemberInfo(
            instance_id=shared_pb2.UUID(string=str(instance_id)),
            time_stamp=time.time_ns() // 100,
            state=gossip_pb2.MemberInfo.VNodeState.Leader,
            is_alive=True,
            http_end_point=gossip_pb2.EndPoint(address=advertised_host(host), port=port),
        )
        await call.send(gossip_pb2.ClusterInfo(members=[member]))

    return {GOSSIP_READ: Method(shared_pb2.Empty, gossip_pb2.ClusterInfo, "unary", read,
                                anonymous=True)}


def _split(path: str) -> tuple[str, str]:
    service, _, method = path.lstrip("/").partition("/")
    return service.lower(), method.lower()


def features(service: str, method: str) -> list[str]:
    """The features KurrentDB's ServerFeatures lists for a method (names lower-cased):
    ``stream`` and ``all`` for every PersistentSubscriptions method, ``position`` and
    ``events`` for Streams ``Read``, ``deadline_duration`` for ``BatchAppend``."""
    if service == _PERSISTENT_SERVICE:
        return ["stream", "all"]
    if service == _STREAMS_SERVICE and "read" in method:
        return ["position", "events"]
    if service == _STREAMS_SERVICE and "batchappend" in method:
        return ["deadline_duration"]
    return []


def server_features(paths: Iterable[str]) -> Service:
    """The ServerFeatures service listing the methods ``paths`` (``"/package.Service/
    Method"``) and itself."""
    listed = sorted({_split(p) for p in [*paths, SERVER_FEATURES]})
    answer = serverfeatures_pb2.SupportedMethods(
        methods=[
            serverfeatures_pb2.SupportedMethod(
                service_name=service, method_name=method, features=features(service, method))
            for service, method in listed
        ],
        event_store_server_version=SERVER_VERSION,
    )

    async def get_supported_methods(call: Call) -> None:
        await call.receive_one()
        await call.send(answer)

    return {SERVER_FEATURES: Method(shared_pb2.Empty, serverfeatures_pb2.SupportedMethods,
                                    "unary", get_supported_methods, anonymous=True)}
