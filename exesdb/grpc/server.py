"""The gRPC server of the network gateway: gRPC over HTTP/2 on trio (HTTP/2 by
:mod:`exesdb.grpc._h2lite`, a lean server-side subset of ``h2``'s state machine).

:func:`serve` listens on one address and serves a mapping of method paths to
:class:`exesdb.grpc.rpc.Method` entries the way grpcio clients expect (HTTP/2 with
length-prefixed protobuf messages, status in trailers, ``grpc-timeout`` deadlines,
cancellation by RST_STREAM). Options (:class:`ServerConfig`): TLS from PEM files, HTTP
basic credentials checked by an authenticator on every call, the largest request message
accepted.

Guarantees: one connection or one call can never take the server down (a handler's bug
ends its call with ``INTERNAL`` and is logged; a broken connection ends its calls); a
client that does not read holds up only its own call (HTTP/2 flow control per stream);
a client that sends faster than its handler reads is throttled, not buffered without
bound (per connection: at most :attr:`ServerConfig.max_connection_buffer` in incomplete
messages plus a stream window for each of its at most 100 calls); a peer that never
completes its handshake, sends garbage or stops answering PINGs is disconnected (its
calls cancelled); password checks run on a few threads of their own, and a connection
whose logins fail waits longer and longer between checks; when :func:`serve` is
cancelled, every in-flight call ends with ``UNAVAILABLE``, every connection gets GOAWAY
and is closed. Given :attr:`ServerConfig.counters`, it counts every call that ends by
method and status code, and its open connections (:mod:`exesdb.grpc.stats`).

Connection handling is in :mod:`exesdb.grpc._connection`, wire formats in
:mod:`exesdb.grpc._wire`, credential checks in :mod:`exesdb.grpc._auth_cache`.
"""

from __future__ import annotations

import errno
import logging
import ssl
from collections.abc import Callable, Mapping

import attrs
import trio

from exesdb.errors import TlsConfigError
from exesdb.grpc._auth_cache import BasicAuth
from exesdb.grpc._connection import GRACE_SECONDS, Connection, ServerCall
from exesdb.grpc.rpc import Method, User
from exesdb.grpc.stats import GrpcStats

__all__ = ["ServerCall", "ServerConfig", "TlsConfigError", "TlsFiles", "serve"]

logger = logging.getLogger("exesdb.grpc")

_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@attrs.frozen
class TlsFiles:
    """The server's TLS certificate chain and private key, as PEM files."""

    cert_file: str
    key_file: str


@attrs.frozen
class ServerConfig:
    """Where and how :func:`serve` listens.

    ``port`` 0 picks a free port (reported through ``task_status``); ``tls`` switches on
    TLS (HTTP/2 negotiated by ALPN, TLS 1.2 at least); ``max_receive_message_size`` is
    the largest request message accepted (larger ones end their call with
    ``RESOURCE_EXHAUSTED``); ``authenticator`` (username, password -> User, or None for
    wrong credentials), when set, makes every call need ``authorization: Basic ...``.

    Dead and idle peers: a connection that has not completed its TLS handshake and sent
    the HTTP/2 preface and SETTINGS within ``handshake_timeout`` seconds is closed; once
    a connection has received nothing for ``keepalive_interval`` seconds the server
    sends it a PING (one at a time, only after such silence), and if neither the PING's
    ACK nor anything else arrives within ``keepalive_timeout`` seconds the connection is
    closed and its calls cancelled.

    Memory: ``max_connection_buffer`` bounds the bytes one connection may hold in
    request messages still arriving (beyond the HTTP/2 stream windows): once it is
    spoken for, the connection's other incomplete messages are not acknowledged, so
    HTTP/2 flow control holds their senders back until it frees up (they are delayed,
    not failed); a message that alone is larger fails its call with
    ``RESOURCE_EXHAUSTED``. Other connections are never affected.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(
        default=2113, validator=[attrs.validators.ge(0), attrs.validators.le(65535)]
    )
    tls: TlsFiles | None = None
    max_receive_message_size: int = attrs.field(
        default=32 * 1024 * 1024, validator=attrs.validators.ge(1)
    )
    authenticator: Callable[[str, str], User | None] | None = None
    keepalive_interval: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    keepalive_timeout: float = attrs.field(default=20.0, validator=attrs.validators.gt(0))
    handshake_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    max_connection_buffer: int = attrs.field(
        default=64 * 1024 * 1024, validator=attrs.validators.ge(1)
    )
    counters: GrpcStats | None = attrs.field(default=None, eq=False)
    """Where the server counts its calls by method and status, and its open connections
    (:mod:`exesdb.grpc.stats`); None: nowhere."""


def _ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError(
            f"cannot load the TLS certificate {tls.cert_file!r} and key {tls.key_file!r}: {e}"
        ) from e
    context.set_alpn_protocols(["h2"])
    return context


def _peer_of(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "unknown"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Server:
    def __init__(
        self,
        services: Mapping[str, Method],
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.services = services
        self.config = config
        self.ssl_context = ssl_context
        self.auth = BasicAuth(config.authenticator) if config.authenticator else None
        self.connections: set[Connection] = set()
        self.stopping = False
        self.no_connections = trio.Event()
        self.no_connections.set()

    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    if e.errno in _ACCEPT_CAPACITY_ERRNOS:
                        logger.error("cannot accept a connection: %s", e)
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(self.connection, stream)

    async def connection(self, socket_stream: trio.SocketStream) -> None:
        if self.stopping:
            await trio.aclose_forcefully(socket_stream)
            return
        peer = _peer_of(socket_stream)
        stream: trio.abc.Stream = socket_stream
        if self.ssl_context is not None:
            stream = trio.SSLStream(socket_stream, self.ssl_context, server_side=True)
        config = self.config
        conn = Connection(
            stream,
            peer,
            self.services,
            config.max_receive_message_size,
            self.auth,
            keepalive_interval=config.keepalive_interval,
            keepalive_timeout=config.keepalive_timeout,
            handshake_timeout=config.handshake_timeout,
            max_buffer=config.max_connection_buffer,
            counters=config.counters,
        )
        self.connections.add(conn)
        self.no_connections = trio.Event()
        counters = config.counters
        if counters is not None:
            counters.connections += 1
            counters.connections_total += 1
        try:
            await conn.run()
        finally:
            if counters is not None:
                counters.connections -= 1
            self.connections.discard(conn)
            if not self.connections:
                self.no_connections.set()

    async def shutdown(self) -> None:
        self.stopping = True
        for conn in list(self.connections):
            conn.shutdown()
        with trio.move_on_after(GRACE_SECONDS * 2):
            await self.no_connections.wait()
        for conn in list(self.connections):
            conn.scope.cancel()


async def serve(
    services: Mapping[str, Method],
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``services`` (method path -> :class:`Method`) as ``config`` says, until
    cancelled.

    Binds first (raising :class:`TlsConfigError` for unusable TLS files, OSError for an
    address that cannot be bound), then reports the bound ``(host, port)`` through
    ``task_status``. On cancellation: stops listening, ends in-flight calls with
    ``UNAVAILABLE`` ("server shutting down"), sends GOAWAY and closes every connection
    (giving up on clients that do not take their last frames after a few seconds).
    """
    ssl_context = None
    if config.tls is not None:
        ssl_context = await trio.to_thread.run_sync(_ssl_context, config.tls)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    port = listeners[0].socket.getsockname()[1]
    server = _Server(services, config, ssl_context)
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(server.accept_loop, listener, nursery)
            task_status.started((config.host, port))
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await server.shutdown()
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
