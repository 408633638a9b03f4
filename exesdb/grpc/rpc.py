"""What a gRPC method handler sees: the call, its status codes and its errors.

The server (:mod:`exesdb.grpc.server`) speaks HTTP/2 and gRPC's framing; the services
(:mod:`exesdb.grpc.streams_service` and the others) are written against this module
only. A service is a mapping from method paths (``"/event_store.client.streams.Streams/
Read"``) to :class:`Method` entries; a handler is ``async def handler(call) -> None``:

* it takes the request messages with :meth:`Call.receive` (None once the client has
  half-closed its side) or :meth:`Call.receive_one` (unary requests), already decoded as
  the method's request type;
* it sends response messages with :meth:`Call.send`, which waits while the client's
  HTTP/2 flow-control window is full (so a client that never reads holds up only its own
  call, never the server);
* it ends the call with status OK by returning, or with another status by raising
  :class:`RpcError`. Any other exception ends the call with ``INTERNAL`` and is logged:
  that is a bug in the handler, never an answer to bad input.

A handler runs in its own trio task, cancelled when the client cancels the call
(RST_STREAM), when its deadline (``grpc-timeout``) passes (the client then gets
``DEADLINE_EXCEEDED``), or when the server stops (``UNAVAILABLE``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

import attrs

__all__ = ["Call", "Handler", "Kind", "Method", "RpcError", "Service", "StatusCode", "User"]


class StatusCode(enum.IntEnum):
    """The gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """Ends a call with ``code`` and ``message`` (sent as ``grpc-status`` and
    ``grpc-message``). ``trailers`` are extra trailing metadata (for example KurrentDB's
    ``exception: stream-deleted``); ``details`` a serialized rich status
    (``grpc-status-details-bin``), for clients that unpack one."""

    def __init__(
        self,
        code: StatusCode,
        message: str,
        trailers: Mapping[str, str] | None = None,
        details: bytes | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.trailers = dict(trailers or {})
        self.details = details


@attrs.frozen
class User:
    """An authenticated user: its name and the groups it belongs to (``$admins`` may do
    everything; see :mod:`exesdb.grpc.auth`)."""

    name: str
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        """True for a member of ``$admins``."""
        return "$admins" in self.groups


class Call(Protocol):
    """One RPC, as its handler sees it."""

    @property
    def method(self) -> str:
        """The method path, e.g. ``"/event_store.client.streams.Streams/Append"``."""

    @property
    def metadata(self) -> Mapping[str, str]:
        """The request's custom headers (lower-case names; pseudo-headers, ``te``,
        ``content-type``, ``grpc-*`` and ``authorization`` left out)."""

    @property
    def user(self) -> User | None:
        """Who made the call: None when the server has no users file (everyone may do
        everything) ; otherwise the authenticated user (the server refuses calls with
        missing or wrong credentials before the handler runs), or None for a call without
        credentials to an anonymous :class:`Method`."""

    @property
    def peer(self) -> str:
        """The client's address, ``"host:port"``."""

    async def receive(self) -> Any | None:
        """The next request message, or None once the client has half-closed. Raises
        :class:`RpcError` (``INVALID_ARGUMENT``) for a message that does not decode,
        (``RESOURCE_EXHAUSTED``) for one over the server's maximum message size."""

    async def receive_one(self) -> Any:
        """The single request message of a unary or server-streaming call (raises
        :class:`RpcError` ``INVALID_ARGUMENT`` if there is none)."""

    async def send(self, message: Any) -> None:
        """Send one response message (headers go out before the first); waits while the
        client's flow-control window is full."""

    async def send_many(self, messages: Iterable[Any]) -> None:
        """Send several response messages in order, as :meth:`send` would one by one,
        but in few writes of about 1 MiB each (for the many small messages of reads and
        subscriptions). An item may be a message's serialized bytes instead of the
        message."""

    async def writable(self, at_most: int | None = None) -> int:
        """Wait until the client can take more responses (its flow-control windows are
        open and the server has room to send), then return about how many bytes it can
        take now (at least 1; at most ``at_most``, at least 1, when given): a handler
        that reads and encodes responses in batches reads no more than this, so a client
        that does not read holds nothing of the server's. The room returned is held for
        this call until it is sent (the other calls on the same connection see
        what is left), so a handler should give ``at_most``, what its next batch needs
        at most. Raises :class:`RpcError` ``CANCELLED`` once the call is over, and
        when nothing could be sent for the server's stall timeout (the call is then
        reset)."""

    def idle(self) -> None:
        """Say that the handler now waits for something other than the client (e.g. a
        subscription for new events): the room :meth:`writable` returned is no longer
        counted as about to be sent, so the connection's other calls may use it."""


Handler = Callable[[Call], Awaitable[None]]
Kind = Literal["unary", "client_stream", "server_stream", "bidi"]


@attrs.frozen
class Method:
    """A method a service serves: request and response message classes, its kind (for
    documentation and the server features service) and its handler.

    ``anonymous`` True: with a users file, a call that carries no credentials is served
    anyway (its :attr:`Call.user` is None), as KurrentDB serves the calls clients make
    before they log in (ServerFeatures, Gossip); credentials it does carry are still
    checked (wrong ones are ``UNAUTHENTICATED``)."""

    request_type: type[Any]
    response_type: type[Any]
    kind: Kind
    handler: Handler
    anonymous: bool = False


Service = Mapping[str, Method]
"""Method path -> :class:`Method`."""
