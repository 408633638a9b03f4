"""exesdb's gRPC gateway: KurrentDB's (EventStoreDB's) client protocol, so that existing
clients (``kurrentdbclient``, ``eventsourcing-kurrentdb``) use a store unchanged.

Each store with ``grpc_port`` set (``python -m exesdb start`` sets 2113, 2114, ... by
default) runs its own listener, so a client picks the store by the address it connects
to. Served: Streams (append, read, subscriptions, delete, tombstone, metadata),
persistent subscriptions, Gossip (this node, the leader; in cluster mode every member,
and calls that need the leader are sent to it: :mod:`~exesdb.grpc.cluster`) and
ServerFeatures.

Security: it listens on ``127.0.0.1`` by default; a non-loopback ``grpc_host`` needs TLS
(``tls_cert_file`` and ``tls_key_file``) or ``insecure=True``. With a ``users_file``
(:mod:`exesdb.grpc.auth`) every call needs a user's basic credentials, and a user may use
a store only as a member of ``$admins`` or of the group named after the store id.

Modules: :mod:`~exesdb.grpc.rpc` (the handler interface), :mod:`~exesdb.grpc.server`
(HTTP/2 and gRPC framing), :mod:`~exesdb.grpc.listener` (the store process),
:mod:`~exesdb.grpc.auth`, :mod:`~exesdb.grpc.gossip_service`, the Streams and persistent
subscription services, and :mod:`~exesdb.grpc.protos` (the protocol's messages).
"""

from __future__ import annotations

from .auth import ADMINS, Users, load_users, may_use
from .gossip_service import SERVER_VERSION
from .listener import GrpcGateway, GrpcListenError, GrpcSystem, address
from .rpc import RpcError, StatusCode, User

__all__ = [
    "ADMINS",
    "SERVER_VERSION",
    "GrpcGateway",
    "GrpcListenError",
    "GrpcSystem",
    "RpcError",
    "StatusCode",
    "User",
    "Users",
    "address",
    "load_users",
    "may_use",
]
