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
and is closed.

Against hostile clients (every threshold a :class:`ServerConfig` field, defaults
below): a client flooding one connection with resets, PINGs, SETTINGS, header blocks or
CONTINUATIONs is cut off with GOAWAY ``ENHANCE_YOUR_CALM``; a connection's calls count
against its stream limit until they have finished, and it is not read while finished
calls keep it at that limit, nor while it does not read its own output; memory is
bounded per connection and server-wide, outbound (unflushed output, the send buffer,
responses read only as the client's window allows) and inbound (incomplete messages);
at most :attr:`ServerConfig.max_connections` connections are open (a new one evicts the
longest idle one without calls, or is closed at once), connections idle or trickling
frames are closed, accept errors back off; failed logins back off per connection, user
name and client address, user names are locked out after repeated failures, and the
hashing queue is bounded and serves clean logins first (:mod:`exesdb.logins`).
The README's "Limits against hostile clients" lists them all.

Given :attr:`ServerConfig.counters`, it counts every call that ends by method and status
code, and its open connections (:mod:`exesdb.grpc.stats`).

Connection handling is in :mod:`exesdb.grpc._connection`, wire formats in
:mod:`exesdb.grpc._wire`, credential checks in :mod:`exesdb.logins`.
"""

from __future__ import annotations

import errno
import logging
import resource
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from exesdb.errors import TlsConfigError
from exesdb.grpc._connection import GRACE_SECONDS, Connection, ServerCall, Shared
from exesdb.grpc.rpc import Method, User
from exesdb.grpc.stats import GrpcStats
from exesdb.logins import BasicAuth, LoginLimits

__all__ = [
    "LIMIT_FIELDS",
    "ServerCall",
    "ServerConfig",
    "TlsConfigError",
    "TlsFiles",
    "default_max_connections",
    "parse_limits",
    "serve",
]

logger = logging.getLogger("exesdb.grpc")

_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_BACKOFF_MIN = 0.01
_ACCEPT_BACKOFF_MAX = 1.0
"""After an accept error the listener pauses, doubling from the first to the second
(reset by a successful accept)."""
_MiB = 1 << 20


def default_max_connections() -> int:
    """The default of :attr:`ServerConfig.max_connections`: the process's open-file
    limit (``RLIMIT_NOFILE``, soft) less what the rest of the server needs (an eighth,
    at least 64), at least 16 and at most 65,536. With the usual 1,024: 896."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        soft = 1 << 20
    return max(16, min(soft - max(64, soft // 8), 65_536))


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
    request messages still arriving (beyond the HTTP/2 stream windows), and
    ``max_inbound_buffer`` those of all connections together: once it is spoken for,
    the other incomplete messages are not acknowledged, so HTTP/2 flow control holds
    their senders back until it frees up (they are delayed, not failed); a message that
    alone is larger fails its call with ``RESOURCE_EXHAUSTED``, as does an admitted one
    whose rest does not come for ``send_stall_timeout``.

    The fields from ``max_concurrent_streams`` on bound what hostile clients can do
    (see the module doc; each is described where it is defined). Every one of them
    (:data:`LIMIT_FIELDS`) can be given as text to :func:`parse_limits`.
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

    # -- limits against hostile clients (README: "Limits against hostile clients") ------
    max_concurrent_streams: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    """Calls one connection may have in progress (SETTINGS_MAX_CONCURRENT_STREAMS); a
    call reset by the client counts until its handler has finished."""
    max_header_list_size: int = attrs.field(
        default=16 << 10, validator=[attrs.validators.ge(4096), attrs.validators.le(1 << 20)]
    )
    """The largest header block (SETTINGS_MAX_HEADER_LIST_SIZE, as HPACK counts it) a
    request may have; larger is a flood. 16 KiB, grpc-core's own hard limit on metadata."""
    flood_window: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds over which each per-connection budget below refills completely (a token
    bucket: a burst of the whole budget, then that many per window)."""
    max_resets_per_window: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    """RST_STREAM frames from the client plus streams the server resets because of it."""
    max_pings_per_window: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    """PING frames."""
    max_settings_per_window: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    """SETTINGS frames."""
    max_header_blocks_per_window: int = attrs.field(
        default=200_000, validator=attrs.validators.ge(1)
    )
    """Header blocks (requests and trailers). The default refills at 20,000 a second,
    more calls than one server process serves: a busy client is never cut off."""
    max_header_bytes_per_window: int = attrs.field(
        default=16 * _MiB, validator=attrs.validators.ge(1 << 17)
    )
    """Bytes of header blocks (decoding costs CPU by the byte; a connection that costs
    more than its share is slowed by ``reader_cpu_share`` first). The default refills at
    1.6 MiB a second: 20,000 ordinary requests (a client's HPACK-indexed block is 25-100
    bytes, ~250 the first time), or about a hundred blocks near ``max_header_list_size``."""
    max_continuations_per_window: int = attrs.field(
        default=1000, validator=attrs.validators.ge(1)
    )
    """CONTINUATION frames."""
    max_empty_frames_per_window: int = attrs.field(
        default=10_000, validator=attrs.validators.ge(1)
    )
    """Frames that do nothing (PRIORITY, empty DATA, unknown types, late WINDOW_UPDATE)."""
    max_settings_entries: int = attrs.field(default=32, validator=attrs.validators.ge(8))
    """Entries one SETTINGS frame may carry."""
    max_continuations_per_block: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    """CONTINUATION frames one header block may take."""
    reader_cpu_share: float = attrs.field(
        default=0.25, validator=[attrs.validators.gt(0), attrs.validators.le(1)]
    )
    """The share of a CPU the costly connections' frames may take to parse and dispatch,
    all together (a 10 ms burst beyond), and one connection's before it is costly. A
    costly connection (one past its share, or one of whose slices took over a
    millisecond in the last second) is parsed 4 KiB at a time in turns, one slice per
    scheduling round, the one that had the least lately first: costly clients (header
    blocks by the megabyte, on many connections) cannot make every other connection
    wait behind their turns, and well-behaved clients' frames never wait for them."""
    header_cache_bytes: int = attrs.field(default=256 << 10, validator=attrs.validators.ge(0))
    """What one connection's cache of decoded header blocks may hold."""
    max_connection_output: int = attrs.field(
        default=16 * _MiB, validator=attrs.validators.ge(1 << 16)
    )
    """Unflushed output (queued or being written) of one connection: calls wait and the
    connection is not read while it is reached."""
    max_send_buffer: int = attrs.field(default=256 * _MiB, validator=attrs.validators.ge(1))
    """Unsent output of all connections together (plus a 256 KiB fair share each)."""
    max_inbound_buffer: int = attrs.field(default=256 * _MiB, validator=attrs.validators.ge(1))
    """Incomplete request messages of all connections together."""
    send_stall_timeout: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    """A call that can send nothing for this long is reset; an admitted request message
    that does not progress for this long fails; a connection that reads nothing of its
    output for this long is closed."""
    max_connections: int = attrs.field(
        factory=default_max_connections, validator=attrs.validators.ge(1)
    )
    """Connections open at once (default: :func:`default_max_connections`). At the limit
    a new connection evicts the one idle longest without calls (GOAWAY NO_ERROR), or is
    closed at once when every connection has calls."""
    idle_timeout: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    """A connection without calls for this long gets GOAWAY NO_ERROR and is closed."""
    frame_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    """After the handshake, a frame (or header block) begun must be complete within this."""
    login_lockout_failures: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    """Failed logins of one user name within ``login_lockout_seconds`` that lock it out."""
    login_lockout_seconds: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    """The window those failures are counted in, and how long the lockout lasts."""
    max_queued_logins: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    """Password checks that may wait for a hashing thread (beyond: ``UNAVAILABLE``)."""
    max_logins_per_address: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    """Password checks one client address may have waiting or running."""


LIMIT_FIELDS: tuple[str, ...] = (
    "max_receive_message_size",
    "keepalive_interval",
    "keepalive_timeout",
    "handshake_timeout",
    "max_connection_buffer",
    *(f.name for f in attrs.fields(ServerConfig)[
        [f.name for f in attrs.fields(ServerConfig)].index("max_concurrent_streams"):]),
)
"""The :class:`ServerConfig` fields :func:`parse_limits` accepts."""


def parse_limits(text: str) -> dict[str, Any]:
    """The limits of ``text``, ``"NAME=VALUE,NAME=VALUE"`` (:data:`LIMIT_FIELDS`; sizes
    in bytes, times in seconds), as keywords of :class:`ServerConfig`. ValueError names
    what is wrong: an unknown name, a value that is not a number (or not whole for a
    count) or that the field's rule refuses."""
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in attrs.fields(ServerConfig)}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in LIMIT_FIELDS:
            raise ValueError(f"{name or item!r} is not a limit (known: {', '.join(LIMIT_FIELDS)})")
        try:
            out[name] = int(raw) if types[name] in ("int", int) else float(raw)
        except ValueError:
            raise ValueError(f"{name}: {raw.strip()!r} is not a number") from None
    ServerConfig(**out)
    return out


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
        self.auth = None
        if config.authenticator is not None:
            limits = LoginLimits(
                lockout_failures=config.login_lockout_failures,
                lockout_seconds=config.login_lockout_seconds,
                max_queued=config.max_queued_logins,
                max_per_address=config.max_logins_per_address,
            )
            self.auth = BasicAuth(config.authenticator, limits=limits)
        self.shared = Shared(config, self.auth)
        self.connections: set[Connection] = set()
        self.stopping = False
        self.no_connections = trio.Event()
        self.no_connections.set()

    async def accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections; on an error of capacity (out of files or memory), pause
        (doubling from 10 ms up to 1 s) and log once per notice interval."""
        pause = _ACCEPT_BACKOFF_MIN
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    if e.errno in _ACCEPT_CAPACITY_ERRNOS:
                        self.shared.notices.warning(
                            "accept", "cannot accept a connection: %s (pausing %.2f s)", e, pause
                        )
                        await trio.sleep(pause)
                        pause = min(pause * 2, _ACCEPT_BACKOFF_MAX)
                        continue
                    raise
                pause = _ACCEPT_BACKOFF_MIN
                if len(self.connections) >= self.config.max_connections and not self._evict():
                    self.shared.notices.warning(
                        "full",
                        "refusing a connection from %s: %d connections open, all with calls",
                        _peer_of(stream),
                        len(self.connections),
                    )
                    await trio.aclose_forcefully(stream)
                    continue
                nursery.start_soon(self.connection, stream)

    def _evict(self) -> bool:
        """Make room: close the connection idle longest without calls (False: none)."""
        idle = [c for c in self.connections if not c.calls and not c.closing]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        oldest.close_quietly("making room for a new connection")
        return True

    async def connection(self, socket_stream: trio.SocketStream) -> None:
        if self.stopping:
            await trio.aclose_forcefully(socket_stream)
            return
        peer = _peer_of(socket_stream)
        stream: trio.abc.Stream = socket_stream
        if self.ssl_context is not None:
            stream = trio.SSLStream(socket_stream, self.ssl_context, server_side=True)
        config = self.config
        conn = Connection(stream, peer, self.services, config, self.shared)
        self.connections.add(conn)
        self.no_connections = trio.Event()
        counters = config.counters
        if counters is not None:
            counters.connections += 1
            counters.connections_total += 1
        logger.debug("connection from %s opened", peer)
        try:
            await conn.run()
        finally:
            logger.debug("connection from %s closed", peer)
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
