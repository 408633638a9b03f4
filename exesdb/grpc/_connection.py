"""One HTTP/2 connection of the gRPC server (:mod:`exesdb.grpc.server`) and its calls.

A :class:`Connection` owns one accepted byte stream and an HTTP/2 state machine
(:class:`exesdb.grpc._h2lite.H2Connection`, with ``h2``'s interface and events). Its
task reads the socket and feeds h2; a writer task flushes whatever h2 has buffered, once
per wakeup (so the output of many calls goes out in one socket write, always in h2's
order); every call runs its handler in one task of the connection's nursery. h2 itself
is only touched from the trio thread, between awaits, so it needs no lock.

Flow control: outbound, :meth:`ServerCall.send` waits on its own stream's window (a
client that never reads blocks only that call); inbound, a stream's received bytes are
acknowledged only as the handler consumes messages, so a client sending faster than its
handler reads is held back by its stream window, not buffered without limit. The
connection-level window is given back as soon as data arrives (as grpc-go does): the
stream windows do the throttling, and a stream held back can never starve the
connection's other streams of window.

Memory, inbound: a message larger than what is already buffered needs its bytes
acknowledged before they all arrive; a handler waiting for the rest of one first
reserves the whole message from the connection's budget (``max_connection_buffer``) and
then from the server's (``max_inbound_buffer``, shared by every connection), in arrival
order, and only then acknowledges. So one connection holds at most its budget in
incomplete messages plus a stream window per stream, all connections together at most
the server's budget, and admitted messages always complete (no two half-admitted
messages wait on each other); an admitted message whose rest does not come for
``send_stall_timeout`` fails its call (``RESOURCE_EXHAUSTED``) and frees its share.

Memory, outbound: a call hands h2 no more than the client's flow-control windows allow,
nor more than keeps the connection's unflushed output (queued in h2 or being written)
within ``max_connection_output``, nor (beyond a small fair share per connection) more
than keeps the server's unsent output (every connection's, plus messages half sent and
waiting for window) within ``max_send_buffer``; it waits otherwise.
:meth:`ServerCall.writable` lets a handler wait for that room *before* it reads and
encodes responses, and tells how much there is, promising it to that call (the other
calls of the connection see only what is left), so a client that does not read makes
the server read nothing more for it. A call that cannot send anything for
``send_stall_timeout`` is reset (RST_STREAM CANCEL) and its handler ends.

Abuse: the HTTP/2 layer's budgets (:class:`exesdb.grpc._h2lite.Limits`) cut a flooding
client off with GOAWAY ENHANCE_YOUR_CALM; streams count against
``max_concurrent_streams`` until their call's task has finished (a reset call still
running counts), and while such finished-but-running calls keep the connection at its
limit the connection is not read (the client's next requests wait in its socket, not in
the server). Reading also stops while the connection's unflushed output is over its
budget (a client that sends without reading what it is sent); if that lasts
``send_stall_timeout`` the connection is closed. Each read is parsed in slices of
:data:`FEED_SIZE`, yielding to other connections between them, and a connection whose
frames are costly (a slice of them took over :data:`COSTLY_SLICE` of CPU in the last
:data:`COSTLY_FOR` seconds, or they took more than ``reader_cpu_share`` of a CPU) parses
its slices, of :data:`COSTLY_FEED_SIZE`, only in its turn (:class:`ReaderShare`): one
costly slice per scheduling round, all costly connections
together within ``reader_cpu_share`` of a CPU, the one that had the least of it lately
first. Well-behaved clients' slices (a tenth of a millisecond or so) never wait
for those turns. The CPU counted is the reader thread's own, less the garbage
collector's (:func:`reader_cpu`). A cut-off connection's
calls are cancelled at once and its GOAWAY gets at most :data:`CUT_OFF_GRACE` seconds to
be written. Cut-offs are logged at WARNING, at most once per
:data:`NOTICE_INTERVAL` seconds per kind (with the count of those not logged).

Liveness: a connection must finish its TLS handshake and send the HTTP/2 preface and
SETTINGS within ``handshake_timeout``; then a frame (or a header block) once begun must
be complete within ``frame_timeout``; after ``keepalive_interval`` seconds without
receiving anything it is sent a PING, and is closed (its calls cancelled) when nothing
comes back within ``keepalive_timeout``; a connection with no call in progress for
``idle_timeout`` gets GOAWAY NO_ERROR and is closed (clients reconnect when they next
need to).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import heapq
import logging
import math
import os
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from exesdb.grpc._h2lite import H2Connection, Limits, encode_headers
from exesdb.grpc._wire import RESPONSE_HEADERS, Headers, parse_timeout, status_trailers
from exesdb.grpc.rpc import Method, RpcError, StatusCode, User
from exesdb.grpc.stats import UNKNOWN_METHOD, GrpcStats
from exesdb.logins import BasicAuth, LoginBackoff

if TYPE_CHECKING:
    from exesdb.grpc.server import ServerConfig

__all__ = ["ByteBudget", "Connection", "LogLimiter", "SendBuffer", "ServerCall", "Shared"]

logger = logging.getLogger("exesdb.grpc")

STREAM_WINDOW = 1 << 20
"""Our initial per-stream receive window (HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE)."""
CONNECTION_WINDOW = 8 << 20
"""Our connection-level receive window."""
MAX_FRAME_SIZE = 1 << 20
"""The largest frame the client may send us."""
MAX_CONCURRENT_STREAMS = 100
"""The default of ``ServerConfig.max_concurrent_streams``."""
READ_SIZE = 256 << 10
WRITE_SIZE = 256 << 10
"""The writer writes in pieces of this size; a piece not written within
``send_stall_timeout`` (a watchdog looks every quarter of it) means the client reads
nothing: the connection is closed."""
FEED_SIZE = 16 << 10
"""A read is handed to h2 in slices of this size, yielding between slices (header
blocks cost CPU by the byte: one read's worth must not hold up the other connections;
with blocks of at most ``max_header_list_size`` a turn of the reader takes a few ms)."""
READER_BURST = 0.01
"""Seconds of CPU a connection's reader may spend at once beyond its share (and the
costly connections together beyond theirs)."""
COSTLY_SLICE = 0.001
"""A connection one of whose slices took more CPU than this in the last
:data:`COSTLY_FOR` seconds is costly (see :class:`ReaderShare`); a well-behaved client's
slice takes a tenth of this or so, a slice of header blocks by the kilobyte several
times this."""
COSTLY_FOR = 1.0
"""See :data:`COSTLY_SLICE`."""
COSTLY_FEED_SIZE = 4 << 10
"""A costly connection's reads are parsed in slices of this size, a turn each (a slice
then completes one header block at most: a scheduling round holds a millisecond or two
of a costly client's frames, not several)."""
POOL_MEMORY = 1.0
"""Seconds over which a connection's CPU taken in :class:`ReaderShare` is remembered
(halved each this many seconds), to order the turns."""
YIELD_BYTES = 64 << 10
"""A sending handler yields to the other tasks once this much output awaits the writer."""
SEND_MANY_CHUNK = 1 << 20
""":meth:`ServerCall.send_many` serializes and sends this much at a time (at least one
message)."""
FAIR_SHARE = 256 << 10
"""A connection with less than this unflushed may send this much even when the server's
send buffer is full (so well-behaved connections are not held up by the ones that fill
it; the buffer may thus exceed its budget by at most this much per connection)."""
GRACE_SECONDS = 2.0
"""How long a closing connection waits to flush its last frames."""
CUT_OFF_GRACE = 1.0
"""How long a connection cut off for abuse waits for its calls to end and its GOAWAY to
be written."""
NOTICE_INTERVAL = 10.0
"""Seconds between two WARNING lines of the same kind (cut-offs, refused connections)."""

_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=True,
)
_EXPECTED_ERRORS = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
    ssl.SSLError,
)
_OK_TRAILERS = status_trailers(StatusCode.OK, "")
# Every call's response headers and most calls' trailers, encoded once.
_RESPONSE_BLOCK = encode_headers(RESPONSE_HEADERS)
_OK_TRAILERS_BLOCK = encode_headers(_OK_TRAILERS)
_OK_ONLY_BLOCK = encode_headers(RESPONSE_HEADERS + _OK_TRAILERS)  # a Trailers-Only OK
_SKIPPED_METADATA = frozenset({b"te", b"content-type", b"authorization"})
_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
_READINGS = 64  # request header lists whose reading a connection remembers
_READING_SIZE = 2048  # the most header bytes of a request whose reading is remembered
_READING_ENTRY_COST = 200
_READING_HEADER_COST = 120  # (h2lite's estimates of a decoding's memory)


# -- what the connections of one server share ------------------------------------------


class LogLimiter:
    """Logs a WARNING of each kind at most once per ``interval`` seconds (trio time),
    telling how many of that kind were not logged in between."""

    def __init__(self, interval: float = NOTICE_INTERVAL) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._skipped: collections.Counter[str] = collections.Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = trio.current_time()
        if now < self._next.get(kind, -math.inf):
            self._skipped[kind] += 1
            return
        self._next[kind] = now + self.interval
        skipped = self._skipped.pop(kind, 0)
        if skipped:
            message += f" (and {skipped} more in the last {self.interval:g} s)"
        logger.warning(message, *args)


class ByteBudget:
    """Bytes handed out first come, first served: :meth:`take` waits until ``size``
    fits beside what is taken (never more than ``limit`` at once)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: collections.deque[_Reservation] = collections.deque()

    async def take(self, size: int) -> None:
        """Take ``size`` bytes, waiting (in order) until they are free."""
        if not self._waiting and self.used + size <= self.limit:
            self.used += size
            return
        entry = _Reservation(size)
        self._waiting.append(entry)
        try:
            await entry.event.wait()
        except BaseException:
            if entry.granted:
                self.release(size)
            else:
                self._waiting.remove(entry)
                self._grant()
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` bytes (to the waiters, in order)."""
        self.used -= size
        self._grant()

    def _grant(self) -> None:
        waiting = self._waiting
        while waiting and self.used + waiting[0].size <= self.limit:
            entry = waiting.popleft()
            entry.granted = True
            self.used += entry.size
            entry.event.set()


class SendBuffer:
    """The server's unsent output: every connection's bytes queued or being written,
    plus the messages half sent and waiting for window. Connections report their part
    (:meth:`Connection.report_output`); calls blocked on it are woken once it is back
    under ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.waiting: set[Connection] = set()

    @property
    def room(self) -> int:
        return self.limit - self.used

    def add(self, delta: int) -> None:
        self.used += delta
        if delta < 0 and self.waiting and self.used < self.limit:
            waiting, self.waiting = self.waiting, set()
            for conn in waiting:
                conn.wake_blocked()


class _CollectorClock(threading.local):
    """The CPU seconds the garbage collector has taken in this thread so far."""

    started = 0.0
    seconds = 0.0


_collector = _CollectorClock()


def _time_collections(phase: str, info: dict[str, int]) -> None:  # a gc callback
    if phase == "start":
        _collector.started = time.thread_time()
    else:
        _collector.seconds += time.thread_time() - _collector.started


def reader_cpu() -> float:
    """The CPU seconds this thread has taken, less those of garbage collections (a
    full collection takes tens of milliseconds in whichever code allocates: a
    well-behaved client whose frames happen to trigger one must not be charged as if
    its frames had cost that much)."""
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)
    return time.thread_time() - _collector.seconds


class ReaderShare:
    """The turns of costly connections' slices (see the module doc): one at a time, the
    waiter that had the least CPU here lately first, one slice per scheduling round
    (so costly slices never pile up in a round ahead of every other task), within
    ``share`` seconds of CPU per second for them all (beyond :data:`READER_BURST`)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._tokens = READER_BURST
        self._stamp = time.perf_counter()
        self._busy = False  # a turn is given and its slice not yet done
        self._waiting: list[tuple[float, int, trio.Event]] = []  # a heap
        self._arrivals = 0

    @property
    def waiting(self) -> int:
        """How many connections wait for a turn."""
        return len(self._waiting)

    async def turn(self, usage: float) -> None:
        """Wait for a turn (before waiters with more ``usage``); the caller then parses
        one slice and must call :meth:`done`, also when it fails."""
        if self._busy or self._waiting:
            self._arrivals += 1
            entry = (usage, self._arrivals, trio.Event())
            heapq.heappush(self._waiting, entry)
            try:
                await entry[2].wait()
            except BaseException:
                if entry[2].is_set():
                    self.done(0.0)  # the turn was given to us: give it on
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        else:
            self._busy = True
            try:
                await trio.lowlevel.checkpoint()
            except BaseException:
                self.done(0.0)
                raise
        now = time.perf_counter()
        tokens = self._tokens + (now - self._stamp) * self.share
        self._tokens = tokens = min(tokens, READER_BURST)
        self._stamp = now
        if tokens < 0:
            try:
                await trio.sleep(-tokens / self.share)
            except BaseException:
                self.done(0.0)
                raise

    def done(self, spent: float) -> None:
        """The slice of the turn took ``spent`` seconds of CPU; the next waiter's turn."""
        self._tokens -= spent
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()
        else:
            self._busy = False


class Shared:
    """What the connections of one server share: the inbound and send budgets, the
    authenticator and the log limiter."""

    def __init__(self, config: ServerConfig, auth: BasicAuth | None) -> None:
        self.inbound = ByteBudget(config.max_inbound_buffer)
        self.send = SendBuffer(config.max_send_buffer)
        self.auth = auth
        self.notices = LogLimiter()
        self.readers = ReaderShare(config.reader_cpu_share)
        """Where costly connections' slices take turns (see :class:`ReaderShare`)."""
        self.limits = Limits(
            window=config.flood_window,
            resets=config.max_resets_per_window,
            pings=config.max_pings_per_window,
            settings=config.max_settings_per_window,
            header_blocks=config.max_header_blocks_per_window,
            header_bytes=config.max_header_bytes_per_window,
            continuations=config.max_continuations_per_window,
            empty_frames=config.max_empty_frames_per_window,
            settings_entries=config.max_settings_entries,
            continuations_per_block=config.max_continuations_per_block,
            decode_cache_bytes=config.header_cache_bytes,
        )


class _CallEnded(Exception):
    """The stream is gone (reset by the client or closed); the handler is being
    cancelled."""


class ServerCall:
    """One RPC as its handler sees it: implements :class:`exesdb.grpc.rpc.Call`.

    Messages are framed as gRPC length-prefixed messages over the stream's DATA; the
    response headers go out before the first message (or, for a call that fails before
    any, a Trailers-Only response ends it). Sending waits for room (see the module doc
    and :meth:`writable`).
    """

    def __init__(
        self,
        connection: Connection,
        stream_id: int,
        method_path: str,
        method: Method,
        metadata: dict[str, str],
        authorization: str | None,
        deadline: float,
    ) -> None:
        self._conn = connection
        self._stream_id = stream_id
        self._method_path = method_path
        self._method = method
        self._metadata = metadata
        self._authorization = authorization
        self._user: User | None = None
        self.scope = trio.CancelScope(deadline=deadline)
        # inbound
        self._buf = bytearray()
        self._pos = 0
        self._acked_ahead = 0  # bytes at the front of the buffer already acknowledged
        self._reserved = 0  # the connection budget held for the incomplete next message
        self._remote_ended = False
        self._recv_event = trio.Event()
        self._recv_lock = _SideLock()
        # outbound
        self._send_lock = _SideLock()
        self._window_event = trio.Event()
        self._headers_sent = False
        self._partial = False  # a message is half sent (waiting for window, or cancelled)
        self._sent = 0  # how much of the half-sent message went out
        self._promised = 0  # room writable() promised this call, not yet sent
        # state
        self._reset = False  # the client reset the stream
        self._closed = False  # we sent the trailers (or gave up on the stream)
        self._shutdown = False  # the server is stopping

    # -- the Call protocol --------------------------------------------------------------

    @property
    def method(self) -> str:
        """The method path, e.g. ``"/event_store.client.streams.Streams/Append"``."""
        return self._method_path

    @property
    def metadata(self) -> Mapping[str, str]:
        """The request's custom headers (see :class:`exesdb.grpc.rpc.Call`)."""
        return self._metadata

    @property
    def user(self) -> User | None:
        """The authenticated user, None when the server has no authenticator."""
        return self._user

    @property
    def peer(self) -> str:
        """The client's address, ``"host:port"``."""
        return self._conn.peer

    async def receive(self) -> Any | None:
        """The next request message, or None once the client has half-closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._recv_lock
        if lock.held:
            await lock.wait_turn()
        else:
            lock.held = True
        try:
            while True:
                payload = self._next_payload()
                if payload is not None:
                    return self._decode(payload)
                if self._reset:
                    await trio.lowlevel.checkpoint()
                    raise RpcError(StatusCode.CANCELLED, "call cancelled by the client")
                if self._remote_ended:
                    if self._pos < len(self._buf):
                        raise RpcError(
                            StatusCode.INVALID_ARGUMENT,
                            "the request ended inside a message "
                            f"({self._method.request_type.__name__})",
                        )
                    return None
                # The next message is incomplete: let the rest of it in. (A fresh event
                # first: data arriving while _make_room waits must wake the wait below.)
                self._recv_event = trio.Event()
                await self._make_room()
                self._ack_buffered()
                if not self._reserved:
                    await self._recv_event.wait()
                    continue
                # An admitted message holds budget others may wait for: it must progress.
                with trio.move_on_after(self._conn.stall_timeout):
                    await self._recv_event.wait()
                if not self._recv_event.is_set():
                    raise RpcError(
                        StatusCode.RESOURCE_EXHAUSTED,
                        f"the request message stalled for {self._conn.stall_timeout:g} s",
                    )
        finally:
            self._recv_lock.release()

    async def receive_one(self) -> Any:
        """The single request message of a unary or server-streaming call."""
        message = await self.receive()
        if message is None:
            raise RpcError(
                StatusCode.INVALID_ARGUMENT,
                f"missing request message ({self._method.request_type.__name__})",
            )
        return message

    async def send(self, message: Any) -> None:
        """Send one response message; waits while the stream's window is full."""
        data: bytes = message.SerializeToString()
        await self._send_bytes(b"\x00" + len(data).to_bytes(4, "big") + data)

    async def send_many(self, messages: Iterable[Any]) -> None:
        """Send several response messages (or their serialized bytes), in order, in
        writes of about :data:`SEND_MANY_CHUNK` bytes: far cheaper per message than
        :meth:`send` for the many small messages of a read, and never more than about a
        chunk (or one larger message) serialized at once."""
        parts: list[bytes] = []
        size = 0
        for message in messages:
            data = message if type(message) is bytes else message.SerializeToString()
            parts += (_message_prefix(0, len(data)), data)
            size += 5 + len(data)
            if size >= SEND_MANY_CHUNK:
                chunk = b"".join(parts)
                parts.clear()
                size = 0
                await self._send_bytes(chunk)
        if parts:
            await self._send_bytes(b"".join(parts))

    async def writable(self, at_most: int | None = None) -> int:
        """Wait until this call may send (the client's flow-control windows are open,
        the connection's unflushed output and the server's send buffer have room), then
        return about how many bytes it may send now without waiting (at least 1), no
        more than ``at_most`` (at least 1) when given.

        For handlers that read and encode their responses in batches: read no more
        than this, so a client that does not read holds nothing of the server's. The
        room returned is promised to this call (until it is sent, or the call asks
        again, or ends): the connection's other calls are told only what is left, so
        calls sharing one connection window do not each read a window's worth. A call
        that says how much it means to send (``at_most``) is promised only that, so the
        others need not wait for room it will not use. A call that cannot send for
        ``send_stall_timeout`` is reset (RST_STREAM CANCEL); this then raises
        :class:`RpcError` ``CANCELLED``, as it does once the call is over.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._unpromise()
        try:
            room = await self._wait_to_send(promised=True)
        except (h2.exceptions.ProtocolError, _CallEnded):
            raise RpcError(StatusCode.CANCELLED, "the call is over") from None
        if at_most is not None and room > at_most:
            room = max(at_most, 1)
        self._promised = room
        self._conn.promised += room
        return room

    def idle(self) -> None:
        """The handler waits for something other than the client next (a subscription
        for new events): the room :meth:`writable` promised it goes back to the
        connection's other calls (which would otherwise wait as long as it does)."""
        self._unpromise()

    def _unpromise(self, used: int | None = None) -> None:
        """Give back the room promised by :meth:`writable` (``used`` bytes of it, once
        sent; all of it by default)."""
        promised = self._promised
        if promised:
            back = promised if used is None else min(used, promised)
            self._promised = promised - back
            conn = self._conn
            conn.promised -= back
            if used is None and conn.blocked:
                conn.wake_blocked()  # (room sent leaves the others' room as it was)

    async def _wait_to_send(self, promised: bool = False) -> int:
        """The room :meth:`_send_frame` has now (less what is promised to the
        connection's other calls, with ``promised``), once there is some (see
        :meth:`writable`); _CallEnded when the call is over or stalled."""
        room = self._room(promised)
        if room > 0:
            return room
        conn = self._conn
        # One cancel scope for the whole wait (woken calls that find no room wait again:
        # a scope each time cost more than the rest of a turn, 50 reads on a connection)
        with trio.move_on_after(conn.stall_timeout):
            while True:
                conn.kick()
                self._window_event = trio.Event()
                conn.blocked.add(self)
                try:
                    await self._window_event.wait()
                finally:
                    conn.blocked.discard(self)
                room = self._room(promised)
                if room > 0:
                    return room
        room = self._room(promised)  # the stall timeout passed: a last look
        if room > 0:
            return room
        self._stalled()
        raise _CallEnded

    def _room(self, promised: bool) -> int:
        """The room :meth:`_wait_to_send` looks for now (<= 0: none); _CallEnded when
        the call is over."""
        if self._reset or self._closed:
            raise _CallEnded
        conn = self._conn
        return conn.send_room(self._stream_id, conn.promised if promised else 0)

    def _stalled(self) -> None:
        """Nothing could be sent for the stall timeout: reset the stream, end the call."""
        logger.debug(
            "resetting %s on %s: nothing could be sent for %g s",
            self._method_path,
            self._conn.peer,
            self._conn.stall_timeout,
        )
        self._reset = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.h2.reset_stream(self._stream_id, h2.errors.ErrorCodes.CANCEL)
        self._conn.kick()

    async def _send_bytes(self, frame: bytes) -> None:
        """Send length-prefixed messages; waits while there is no room (see
        :meth:`writable`)."""
        conn = self._conn
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._send_lock
        if lock.held:
            await lock.wait_turn()
        else:
            lock.held = True
        try:
            if self._reset or self._closed:
                await trio.lowlevel.checkpoint()
                raise RpcError(StatusCode.CANCELLED, "the call is over")
            held = 0
            try:
                self._send_frame(frame)
                while self._partial:
                    # The rest waits in this call: it counts as the server's send buffer.
                    rest = len(frame) - self._sent
                    conn.held += rest - held
                    held = rest
                    conn.report_output()
                    await self._wait_to_send()
                    self._send_frame(frame)
            except (h2.exceptions.ProtocolError, _CallEnded):
                await trio.lowlevel.checkpoint()
                raise RpcError(StatusCode.CANCELLED, "the call is over") from None
            finally:
                conn.held -= held
        finally:
            self._send_lock.release()
        conn.unflushed += len(frame)
        conn.report_output()
        conn.kick()
        if conn.unflushed >= YIELD_BYTES:
            # A handler sending fast must not starve the connection's reader and writer.
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _send_frame(self, frame: bytes) -> None:
        """Hand as much of ``frame`` (from ``self._sent``) to h2 as there is room for
        (:meth:`Connection.send_room`); ``self._partial`` stays True while some of it is
        left."""
        conn = self._conn
        h2conn = conn.h2
        sid = self._stream_id
        if not self._headers_sent:
            self._headers_sent = True
            h2conn.send_header_block(sid, _RESPONSE_BLOCK)
        total = len(frame)
        pos = self._sent if self._partial else 0
        self._partial = True
        while pos < total:
            room = conn.send_room(sid)
            if room <= 0:
                self._sent = pos
                return
            size = min(room, h2conn.max_outbound_frame_size, total - pos)
            if size == total:
                h2conn.send_data(sid, frame)
            else:
                h2conn.send_data(sid, frame[pos : pos + size])
            pos += size
            if self._promised:
                self._unpromise(size)
        self._partial = False

    # -- inbound ------------------------------------------------------------------------

    def _next_payload(self) -> bytearray | None:
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < 5:
            return None
        flag = buf[pos]
        if flag:
            if flag == 1:
                raise RpcError(StatusCode.UNIMPLEMENTED, "compression not supported")
            raise RpcError(StatusCode.INTERNAL, f"invalid message flag {flag}")
        length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
        limit = self._conn.max_message_size
        if length > limit:
            raise RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"request message larger than max ({length} vs. {limit})",
            )
        end = pos + 5 + length
        if len(buf) < end:
            return None
        payload = buf[pos + 5 : end]
        self._consumed(5 + length)
        if self._reserved:
            self._conn.release(self._reserved)
            self._reserved = 0
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536 and end > len(buf) // 2:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return payload

    def _decode(self, payload: bytearray) -> Any:
        request_type = self._method.request_type
        try:
            return request_type.FromString(payload)
        except Exception as e:
            name = getattr(getattr(request_type, "DESCRIPTOR", None), "full_name", None)
            raise RpcError(
                StatusCode.INVALID_ARGUMENT,
                f"cannot decode the request message ({name or request_type.__name__}): {e}",
            ) from None

    async def _make_room(self) -> None:
        """Before acknowledging ahead of the handler for an incomplete message: reserve
        the whole message from the connection's budget (waiting, unacknowledged, while
        other messages hold it), or fail the call when it alone cannot fit."""
        if self._reserved:
            return
        available = len(self._buf) - self._pos
        if available < 5:
            return  # a few bytes of a message's prefix: nothing worth reserving
        size = 5 + int.from_bytes(self._buf[self._pos + 1 : self._pos + 5], "big")
        budget = min(self._conn.inbound.limit, self._conn.shared.inbound.limit)
        if size > budget:
            raise RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"request message larger than the connection's buffer ({size} vs. {budget})",
            )
        await self._conn.reserve(size)
        self._reserved = size

    def _consumed(self, size: int) -> None:
        if self._acked_ahead >= size:
            self._acked_ahead -= size
        else:
            self._conn.acknowledge(self._stream_id, size - self._acked_ahead)
            self._acked_ahead = 0

    def _ack_buffered(self) -> None:
        unacked = len(self._buf) - self._pos - self._acked_ahead
        if unacked > 0:
            self._conn.acknowledge(self._stream_id, unacked)
            self._acked_ahead += unacked

    def data_received(self, data: bytes, flow_controlled_length: int) -> None:
        """Reader: DATA arrived for this call."""
        if self._closed:
            self._conn.acknowledge(self._stream_id, flow_controlled_length)
            return
        self._buf += data
        padding = flow_controlled_length - len(data)
        if padding:
            self._conn.acknowledge(self._stream_id, padding)
        self._recv_event.set()

    def remote_ended(self) -> None:
        """Reader: the client half-closed the stream."""
        self._remote_ended = True
        self._recv_event.set()

    def reset(self) -> None:
        """Reader: the client reset the stream (or the connection is gone)."""
        self._reset = True
        self._recv_event.set()
        self._window_event.set()
        self.scope.cancel()

    def window_opened(self) -> None:
        """Reader: the peer granted more send window."""
        self._window_event.set()

    def shutdown(self) -> None:
        """The server is stopping: cancel the handler; the call ends with UNAVAILABLE."""
        self._shutdown = True
        self.scope.cancel()

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the handler (after authentication) and end the call with its status."""
        try:
            await self._run()
        finally:
            self._release()

    async def _run(self) -> None:
        code = StatusCode.OK
        message = ""
        trailers: Mapping[str, str] | None = None
        details: bytes | None = None
        with self.scope:
            try:
                auth = self._conn.auth
                if auth is not None and not (self._method.anonymous
                                             and self._authorization is None):
                    self._user = await auth.user(
                        self._authorization, self._conn.login_backoff, self._conn.address
                    )
                    if self._user is None:
                        raise RpcError(StatusCode.UNAUTHENTICATED, "invalid credentials")
                await self._method.handler(self)
            except RpcError as e:
                code, message, trailers, details = e.code, e.message, e.trailers, e.details
            except Exception as e:
                rpc_error = _rpc_error_in(e)
                if rpc_error is not None:
                    code, message = rpc_error.code, rpc_error.message
                    trailers, details = rpc_error.trailers, rpc_error.details
                else:
                    logger.exception("handler of %s failed", self._method_path)
                    code, message = StatusCode.INTERNAL, "internal error"
        if self._reset:  # the client reset the stream: it gets no status
            self._count(StatusCode.CANCELLED)
            return
        if self.scope.cancelled_caught:
            if self._shutdown:
                code, message = StatusCode.UNAVAILABLE, "server shutting down"
            else:
                code, message = StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
            trailers = details = None
        self._count(code)
        if code is StatusCode.OK and not message and not trailers and details is None:
            self._finish(None)
        else:
            self._finish(status_trailers(code, message, trailers, details))

    def _finish(self, trailers: Headers | None) -> None:
        """Send the trailers (None: status OK alone), after the response headers if
        none went out (a Trailers-Only response)."""
        if self._closed:
            return
        self._closed = True
        h2conn = self._conn.h2
        try:
            if self._partial:
                # A status after half a message would be read as a broken message.
                h2conn.reset_stream(self._stream_id, h2.errors.ErrorCodes.CANCEL)
            else:
                if trailers is None:
                    block = _OK_TRAILERS_BLOCK if self._headers_sent else _OK_ONLY_BLOCK
                    h2conn.send_header_block(self._stream_id, block, end_stream=True)
                elif self._headers_sent:
                    h2conn.send_headers(self._stream_id, trailers, end_stream=True)
                else:
                    headers = RESPONSE_HEADERS + trailers
                    h2conn.send_headers(self._stream_id, headers, end_stream=True)
                if not self._remote_ended:
                    # The client is still sending: tell it to stop (HTTP/2 8.1).
                    h2conn.reset_stream(self._stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass  # the stream or the connection is already gone
        self._conn.kick()

    def fail_early(self, code: StatusCode, message: str, status: bytes = b"200") -> None:
        """End a call that never ran (bad request) with a Trailers-Only response."""
        headers: Headers = [(b":status", status), *RESPONSE_HEADERS[1:]]
        self._closed = True
        self._count(code)
        try:
            self._conn.h2.send_headers(
                self._stream_id, headers + status_trailers(code, message), end_stream=True
            )
            if not self._remote_ended:
                self._conn.h2.reset_stream(self._stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            pass
        self._conn.kick()

    def _count(self, code: StatusCode) -> None:
        """Count the call's end with ``code`` in the server's counters, if it has them."""
        counters = self._conn.counters
        if counters is not None:
            known = self._method is not _NO_METHOD
            counters.call_ended(self._method_path if known else UNKNOWN_METHOD, code)

    def _release(self) -> None:
        self._closed = True
        self._unpromise()
        if self._reserved:
            self._conn.release(self._reserved)
            self._reserved = 0
        # Give back the connection window held by data nobody will read.
        unacked = len(self._buf) - self._pos - self._acked_ahead
        self._buf.clear()
        self._pos = 0
        self._acked_ahead = 0
        if unacked > 0:
            self._conn.acknowledge(self._stream_id, unacked)
        self._conn.call_finished(self._stream_id)


_RequestHeaders = tuple[str, bytes, bytes, bytes | None, str | None, dict[str, str]]
"""What a request's headers say: path, HTTP method, content type, grpc-timeout,
authorization and the custom metadata."""


_message_prefix = struct.Struct(">BI").pack
"""A gRPC message's prefix: its compressed flag (0) and its length."""


class _SideLock:
    """The lock of one side of a call (receiving, or sending), cheaper than a trio.Lock
    (a call made two): free, the usual case, it is taken by setting :attr:`held`
    (without yielding); held, the taker waits its turn with :meth:`wait_turn` (first
    come, first served), and :meth:`release` hands it to the next in line."""

    __slots__ = ("_waiting", "held")

    def __init__(self) -> None:
        self.held = False
        self._waiting: collections.deque[trio.Event] | None = None

    async def wait_turn(self) -> None:
        """Wait until the held lock is handed to the caller."""
        event = trio.Event()
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = collections.deque()
        waiting.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # handed over just as the wait ended: pass it on
                self.release()
            else:
                waiting.remove(event)
            raise

    def release(self) -> None:
        """Hand the lock to the next waiter, or free it."""
        waiting = self._waiting
        if waiting:
            waiting.popleft().set()
        else:
            self.held = False


def _rpc_error_in(error: BaseException) -> RpcError | None:
    """The first RpcError inside an exception group (a handler's nursery), if any."""
    if isinstance(error, RpcError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _rpc_error_in(inner)
            if found is not None:
                return found
    return None


class _Reservation:
    """A call waiting for room in a :class:`ByteBudget`."""

    __slots__ = ("event", "granted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.granted = False
        self.event = trio.Event()


def address_of(peer: str) -> str:
    """The client address of a ``host:port`` peer, for per-address login throttling:
    an IPv4 address as is, an IPv6 address cut to its /64 (one host's usual share)."""
    host = peer.rsplit(":", 1)[0].strip("[]")
    if ":" in host:
        return ":".join(host.split(":")[:4]) + "::/64"
    return host


class Connection:
    """One client connection: reads, dispatches calls, writes. See the module doc."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        peer: str,
        services: Mapping[str, Method],
        config: ServerConfig,
        shared: Shared,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.address = address_of(peer)
        self.services = services
        self.shared = shared
        self.max_message_size = config.max_receive_message_size
        self.auth = shared.auth
        self.counters: GrpcStats | None = config.counters
        self.login_backoff = LoginBackoff()
        self.inbound = ByteBudget(config.max_connection_buffer)
        """Bytes of incomplete messages admitted (see ServerCall._make_room)."""
        self.stall_timeout = config.send_stall_timeout
        self._max_output = config.max_connection_output
        self._max_streams = config.max_concurrent_streams
        self._max_header_list = config.max_header_list_size
        self._keepalive_interval = config.keepalive_interval
        self._keepalive_timeout = config.keepalive_timeout
        self._idle_timeout = config.idle_timeout
        self._frame_timeout = config.frame_timeout
        self._cpu_share = config.reader_cpu_share
        self._cpu_tokens = READER_BURST
        self._cpu_stamp = time.perf_counter()
        # Costly until then (see COSTLY_SLICE). A new connection's first read is parsed
        # in slices of COSTLY_FEED_SIZE, all but the first in turns, until it has shown
        # them cheap: twenty new connections' header blocks by the kilobyte would
        # otherwise all be parsed in the same round (and a new client's first request,
        # in its first slice, waits for no turn behind hundreds of new connections).
        self._costly_until = math.inf
        self._pooled = 0.0  # CPU taken in shared.readers, halved each POOL_MEMORY seconds
        self._pooled_stamp = self._cpu_stamp
        now = trio.current_time()
        self._handshake_deadline = now + config.handshake_timeout
        self._handshake_done = False  # the client's preface and SETTINGS arrived
        self._last_received = now
        self.idle_since = now
        """When the connection last had no call in progress (see :attr:`calls`)."""
        self._partial_since: float | None = None  # when the frame now arriving began
        self._ping_data = b""
        self._ping_ack: trio.Event | None = None
        self.h2 = H2Connection(config=_H2_CONFIG, limits=shared.limits, clock=trio.current_time)
        self.h2.release_required = True
        self.calls: dict[int, ServerCall] = {}
        # id(header list) -> (the list, its reading, its cost), see _request
        self._readings: dict[int, tuple[Any, _RequestHeaders, int]] = {}
        self._readings_cost = 0
        self._readings_budget = shared.limits.decode_cache_bytes
        self.blocked: set[ServerCall] = set()
        self.unflushed = 0  # bytes of messages handed to h2 since the writer last took them
        self.held = 0  # bytes of half-sent messages waiting in their calls for room
        self.promised = 0  # room promised to calls by ServerCall.writable, not yet sent
        self._writing = 0  # bytes the writer is writing now
        self._write_began: float | None = None  # when the write in progress began
        self._reported = 0  # this connection's part of the server's send buffer
        self.scope = trio.CancelScope(shield=True)
        self._reader_scope = trio.CancelScope()
        self._wake = trio.Event()
        self._resume = trio.Event()  # the reader may read again (see _may_read)
        self._idle = trio.Event()
        self._idle.set()
        self._writer_stop = False
        self._writer_done = trio.Event()
        self._shutting_down = False
        self._ending = False  # closing on our side: idle, evicted or cut off
        self._cut_off = False  # ending because of abuse: calls cancelled, short grace
        self._broken = False
        self._started = False
        self._nursery: trio.Nursery | None = None
        self.closed = trio.Event()

    # -- helpers used by calls ----------------------------------------------------------

    def kick(self) -> None:
        """Ask the writer to flush what h2 has buffered."""
        self._wake.set()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Give ``size`` consumed bytes back to the client's windows."""
        h2conn = self.h2
        try:
            h2conn.acknowledge_received_data(size, stream_id)
        except h2.exceptions.ProtocolError:
            return
        if h2conn.outbound_buffered:  # (a WINDOW_UPDATE was queued: most acks queue none)
            self._wake.set()

    async def reserve(self, size: int) -> None:
        """Take ``size`` bytes of the connection's inbound budget, then of the server's,
        waiting (first come, first served) until they are free."""
        await self.inbound.take(size)
        try:
            await self.shared.inbound.take(size)
        except BaseException:
            self.inbound.release(size)
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` bytes taken with :meth:`reserve`."""
        self.shared.inbound.release(size)
        self.inbound.release(size)

    @property
    def output_pending(self) -> int:
        """Bytes queued in h2 or being written: the connection's unflushed output."""
        return self.h2.outbound_buffered + self._writing

    def send_room(self, stream_id: int, promised: int = 0) -> int:
        """How many DATA bytes a call on ``stream_id`` may hand h2 now: the client's
        windows, within the connection's output budget and the server's send buffer
        (of which a connection with little queued may always use :data:`FAIR_SHARE`).
        ``promised`` bytes of what the stream shares with the connection's other streams
        (all but its own window) are taken as spoken for. StreamClosedError when the
        stream is closed."""
        h2conn = self.h2
        window = h2conn.local_flow_control_window(stream_id)
        pending = self.output_pending
        room = min(h2conn.outbound_flow_control_window, self._max_output - pending)
        send = self.shared.send
        shared_room = max(send.room, FAIR_SHARE - pending)
        if shared_room < room:
            room = shared_room
            if room <= 0:
                send.waiting.add(self)
        room -= promised
        return window if window < room else room

    def report_output(self) -> None:
        """Bring this connection's part of the server's send buffer up to date."""
        part = self.output_pending + self.held
        delta = part - self._reported
        if delta:
            self._reported = part
            self.shared.send.add(delta)

    def wake_blocked(self) -> None:
        """Let every call waiting for room look again."""
        for call in list(self.blocked):
            call.window_opened()

    def call_finished(self, stream_id: int) -> None:
        """A call's task is over: its stream stops counting against the limit."""
        self.calls.pop(stream_id, None)
        self.h2.release_stream(stream_id)
        self._resume.set()
        if not self.calls:
            self.idle_since = trio.current_time()
            self._idle.set()

    # -- lifecycle ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: end every call with UNAVAILABLE, send GOAWAY, close."""
        self._shutting_down = True
        if not self._started:
            self.scope.cancel()  # still in the TLS handshake: nothing to say goodbye to
        self._reader_scope.cancel()
        for call in list(self.calls.values()):
            call.shutdown()

    @property
    def closing(self) -> bool:
        """True once the connection is being closed on our side."""
        return self._ending or self._shutting_down

    def close_quietly(self, reason: str) -> None:
        """Close the connection as if idle (GOAWAY NO_ERROR, calls in progress let
        finish for a grace period): for a connection evicted to make room."""
        logger.debug("closing connection from %s: %s", self.peer, reason)
        self._ending = True
        if not self._started:
            self.scope.cancel()
        self._reader_scope.cancel()

    def _cut(self, kind: str, reason: str, goaway: bool = True) -> None:
        """End the connection for abuse: a WARNING (rate limited), GOAWAY
        ENHANCE_YOUR_CALM (unless h2 queued one already), calls cancelled."""
        self.shared.notices.warning(
            kind, "closing connection from %s: %s (GOAWAY ENHANCE_YOUR_CALM)", self.peer, reason
        )
        self._ending = True
        self._cut_off = True
        if goaway:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(error_code=_CALM, additional_data=reason.encode()[:200])
        self._wake.set()

    async def run(self) -> None:
        """Serve the connection until the client closes it, it breaks, or shutdown."""
        try:
            with self.scope:
                await self._run()
        except _EXPECTED_ERRORS:
            logger.debug("connection from %s failed", self.peer, exc_info=True)
        except Exception:
            logger.exception("connection from %s failed unexpectedly", self.peer)
        finally:
            self.shared.send.add(-self._reported)
            self._reported = 0
            self.shared.send.waiting.discard(self)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(GRACE_SECONDS):
                    await trio.aclose_forcefully(self.stream)
            self.closed.set()

    async def _run(self) -> None:
        if isinstance(self.stream, trio.SSLStream):
            with trio.move_on_at(self._handshake_deadline) as handshake:
                await self.stream.do_handshake()
            if handshake.cancelled_caught:
                logger.debug("closing connection from %s: no TLS handshake in time", self.peer)
                return
        self._started = True
        # Our settings from the first SETTINGS frame on (h2 applies initial values at
        # once, except the frame and header size limits, set by hand).
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self._max_header_list,
            },
        )
        self.h2.max_inbound_frame_size = MAX_FRAME_SIZE
        self.h2.decoder.max_header_list_size = self._max_header_list
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._write_loop)
            nursery.start_soon(self._keepalive_loop)
            nursery.start_soon(self._idle_loop)
            nursery.start_soon(self._watchdog)
            self._wake.set()
            if not self._handshake_done:
                self._reader_scope.deadline = self._handshake_deadline
            with self._reader_scope:
                await self._read_loop()
            if (
                self._reader_scope.cancelled_caught
                and not self._handshake_done
                and not self._shutting_down
                and not self._ending
            ):
                logger.debug("closing connection from %s: no HTTP/2 preface in time", self.peer)
                self._broken = True
            if self._broken:
                nursery.cancel_scope.cancel()
                return
            # Orderly end (shutdown, GOAWAY, a protocol error, idle, cut off): let the
            # calls queue their trailers, then GOAWAY and flush. A connection cut off for
            # abuse has its calls cancelled and little time.
            for call in list(self.calls.values()):
                if self._shutting_down:
                    call.shutdown()
                else:
                    call.reset()
            grace = CUT_OFF_GRACE if self._cut_off else GRACE_SECONDS
            with trio.move_on_after(grace):
                await self._idle.wait()
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
            self._writer_stop = True
            self._wake.set()
            with trio.move_on_after(grace):
                await self._writer_done.wait()
            nursery.cancel_scope.cancel()

    async def _may_read(self) -> bool:
        """Wait while the connection must not be read: its unflushed output is over its
        budget, or calls reset but still running keep it at its stream limit. False
        when the output stayed over budget for the stall timeout (the connection is
        then being cut off)."""
        h2conn = self.h2
        paused_at: float | None = None
        while True:
            over = self.output_pending > self._max_output
            zombies = h2conn.closed_unreleased_streams
            if not over and not (
                zombies and len(h2conn.streams) + zombies >= h2conn.max_concurrent_streams
            ):
                if paused_at is not None and self._partial_since is not None:
                    self._partial_since = trio.current_time()  # our pause is not its delay
                return True
            now = trio.current_time()
            if paused_at is None:
                paused_at = now
            if over and now >= paused_at + self.stall_timeout:
                self._cut("stalled", f"it read nothing of {self.output_pending} bytes sent to it "
                          f"for {self.stall_timeout:g} s")
                return False
            self._resume = trio.Event()
            with trio.move_on_at(paused_at + self.stall_timeout):
                await self._resume.wait()

    @property
    def _costly(self) -> bool:
        """Whether the next slice must wait for its turn (see the module doc)."""
        return self._cpu_tokens < 0 or time.perf_counter() < self._costly_until

    def _charge(self, spent: float) -> None:
        """The reader spent ``spent`` seconds of CPU on a slice of the client's frames:
        take them from its share (``reader_cpu_share`` of a second each second, up to
        :data:`READER_BURST`)."""
        now = time.perf_counter()
        tokens = self._cpu_tokens + (now - self._cpu_stamp) * self._cpu_share
        self._cpu_tokens = min(tokens, READER_BURST) - spent
        self._cpu_stamp = now
        if spent > COSTLY_SLICE:
            self._costly_until = now + COSTLY_FOR

    def _charge_turn(self, spent: float) -> None:
        """The slice parsed in a turn of shared.readers took ``spent``: the turn is over."""
        now = time.perf_counter()
        self._pooled = self._pooled * 0.5 ** ((now - self._pooled_stamp) / POOL_MEMORY) + spent
        self._pooled_stamp = now
        self.shared.readers.done(spent)

    async def _take_turn(self) -> bool:  # before a slice (a cheap connection's first: not)
        """Let the other tasks run; when this connection's frames are costly, wait for
        its turn among the costly connections' (True: then :meth:`_charge_turn` must
        follow)."""
        if self._costly:
            await self.shared.readers.turn(self._pooled)
            return True
        await trio.lowlevel.checkpoint()
        return False

    async def _read_loop(self) -> None:
        stream = self.stream
        h2conn = self.h2
        while True:
            if not await self._may_read():
                return
            try:
                if self._partial_since is None or not self._handshake_done:
                    data = await stream.receive_some(READ_SIZE)
                else:
                    with trio.move_on_at(self._partial_since + self._frame_timeout):
                        data = await stream.receive_some(READ_SIZE)
                    if self._partial_since + self._frame_timeout <= trio.current_time():
                        self._cut("slow-frame",
                                  f"a frame took over {self._frame_timeout:g} s to arrive")
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                logger.debug("connection from %s broken", self.peer, exc_info=True)
                self._broken = True
                return
            if not data:
                self._broken = True
                return
            now = self._last_received = trio.current_time()
            start = 0
            while start < len(data):
                in_turn = False
                fresh = self._costly_until == math.inf  # the connection's first read
                if start or (self._costly and not fresh):
                    in_turn = await self._take_turn()
                end = start + (COSTLY_FEED_SIZE if in_turn or fresh else FEED_SIZE)
                began = reader_cpu()
                try:
                    try:
                        events = h2conn.receive_data(data[start:end])
                    except h2.exceptions.DenialOfServiceError as e:
                        self._cut("flood", str(e), goaway=False)
                        return
                    except h2.exceptions.ProtocolError as e:
                        logger.debug("HTTP/2 protocol error from %s: %s", self.peer, e)
                        self._wake.set()
                        return
                    for event in events:
                        if self._dispatch(event):
                            self._wake.set()
                            return
                finally:
                    spent = reader_cpu() - began
                    self._charge(spent)
                    if in_turn:
                        self._charge_turn(spent)
                start = end
            if self._costly_until == math.inf:
                self._costly_until = 0.0  # its first read was cheap
            if h2conn.incomplete_frame:
                if self._partial_since is None:
                    self._partial_since = now
            else:
                self._partial_since = None
            # The connection window comes back at once: the stream windows throttle.
            deficit = CONNECTION_WINDOW - h2conn.inbound_flow_control_window
            if deficit >= CONNECTION_WINDOW // 8:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    h2conn.increment_flow_control_window(deficit)
            self.report_output()
            if h2conn.outbound_buffered:  # (a writer woken for nothing costs a task switch)
                self._wake.set()

    def _dispatch(self, event: h2.events.Event) -> bool:
        """Handle one h2 event; True when the connection is over."""
        if isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            call = self.calls.get(sid)
            if call is not None:
                call.data_received(event.data, event.flow_controlled_length)
            else:
                self.acknowledge(sid, event.flow_controlled_length)
        elif isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.StreamEnded):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.remote_ended()
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                call = self.calls.get(event.stream_id)
                if call is not None:
                    call.window_opened()
            else:
                self.wake_blocked()
        elif isinstance(event, h2.events.StreamReset):
            call = self.calls.get(event.stream_id)
            if call is not None:
                call.reset()
        elif isinstance(event, h2.events.PingAckReceived):
            if self._ping_ack is not None and event.ping_data == self._ping_data:
                self._ping_ack.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self._handshake_done:
                self._handshake_done = True
                self._reader_scope.deadline = math.inf
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self.wake_blocked()
        elif isinstance(event, h2.events.ConnectionTerminated):
            logger.debug("GOAWAY from %s: %s", self.peer, event.error_code)
            return True
        return False

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        headers = event.headers
        known = self._readings.get(id(headers))
        if known is not None and known[0] is headers:
            # The same header list as an earlier request's (h2 reuses its decoding of an
            # identical block; clients sharing a connection each send their own, e.g.
            # their connection-name): the same reading of it.
            path, http_method, content_type, timeout, authorization, metadata = known[1]
            metadata = dict(metadata)
        else:
            path = ""
            http_method = b""
            content_type = b""
            timeout = None
            authorization = None
            metadata = {}
            size = 0
            for name, value in headers or ():
                size += len(name) + len(value)
                if name[:1] == b":":
                    if name == b":path":
                        path = bytes(value).decode("utf-8", "replace")
                    elif name == b":method":
                        http_method = bytes(value)
                elif name == b"content-type":
                    content_type = bytes(value)
                elif name == b"grpc-timeout":
                    timeout = bytes(value)
                elif name == b"authorization":
                    authorization = bytes(value).decode("latin-1")
                elif name[:5] == b"grpc-" or name in _SKIPPED_METADATA:
                    continue
                else:
                    key = bytes(name).decode("latin-1")
                    text = bytes(value).decode("latin-1")
                    metadata[key] = f"{metadata[key]},{text}" if key in metadata else text
            if headers is not None and size <= _READING_SIZE:
                self._remember(headers, (path, http_method, content_type, timeout,
                                         authorization, dict(metadata)), size)
        method = self.services.get(path)
        deadline = math.inf
        error: tuple[StatusCode, str, bytes] | None = None
        if http_method != b"POST":
            error = (StatusCode.INTERNAL, f"HTTP method {http_method!r} not allowed", b"405")
        elif not (
            content_type == b"application/grpc"
            or content_type.startswith((b"application/grpc+proto", b"application/grpc;"))
        ):
            error = (StatusCode.INTERNAL, f"invalid content-type {content_type!r}", b"415")
        elif method is None:
            error = (StatusCode.UNIMPLEMENTED, f"unknown method {path}", b"200")
        elif timeout is not None:
            try:
                deadline = trio.current_time() + parse_timeout(timeout.decode("latin-1"))
            except ValueError as e:
                error = (StatusCode.INVALID_ARGUMENT, str(e), b"200")
        call = ServerCall(
            self,
            sid,
            path,
            method if method is not None else _NO_METHOD,
            metadata,
            authorization,
            deadline,
        )
        if event.stream_ended is not None:
            call.remote_ended()
        if error is not None or self._shutting_down or self._nursery is None:
            if error is None:
                error = (StatusCode.UNAVAILABLE, "server shutting down", b"200")
            call.fail_early(*error)
            self.h2.release_stream(sid)
            return
        self.calls[sid] = call
        if self._idle.is_set():  # (a fresh one only then: _idle_loop may wait on this one)
            self._idle = trio.Event()
        self._nursery.start_soon(call.run)

    def _remember(self, headers: Any, reading: _RequestHeaders, size: int) -> None:
        """Keep the reading of a request's header list (see :meth:`_request`): at most
        :data:`_READINGS` of them, within the connection's header decoding cache
        budget (counted as h2lite counts its decodings, twice: the list and the
        metadata), the oldest dropped first. Only small lists are kept: a large one is
        never a decoding h2lite hands back again, and would hold memory for nothing."""
        cost = 2 * (_READING_ENTRY_COST + size + _READING_HEADER_COST * len(headers))
        if cost > self._readings_budget:
            return
        readings = self._readings
        while readings and (len(readings) >= _READINGS
                            or self._readings_cost + cost > self._readings_budget):
            self._readings_cost -= readings.pop(next(iter(readings)))[2]  # the oldest
        readings[id(headers)] = (headers, reading, cost)
        self._readings_cost += cost

    async def _watchdog(self) -> None:
        """Close the connection when a write of :data:`WRITE_SIZE` bytes at most has not
        completed within ``send_stall_timeout`` (checked every quarter of it)."""
        stall = self.stall_timeout
        while True:
            await trio.sleep(stall / 4)
            began = self._write_began
            if began is not None and trio.current_time() - began >= stall:
                self._write_stalled()
                return

    async def _idle_loop(self) -> None:
        """Close the connection (GOAWAY NO_ERROR) once it has had no call in progress for
        ``idle_timeout`` seconds."""
        timeout = self._idle_timeout
        while True:
            if self.calls:
                await self._idle.wait()  # (a call's start made it a fresh Event)
                continue
            deadline = self.idle_since + timeout
            if trio.current_time() >= deadline:
                self.close_quietly(f"no call for {timeout:g} s")
                return
            await trio.sleep_until(deadline)

    async def _keepalive_loop(self) -> None:
        """After ``keepalive_interval`` seconds of receiving nothing, PING the client;
        when nothing at all (neither the ACK nor anything else) arrives within
        ``keepalive_timeout`` seconds, close the connection. One PING at a time."""
        interval = self._keepalive_interval
        timeout = self._keepalive_timeout
        while True:
            while True:
                quiet_until = self._last_received + interval
                if quiet_until <= trio.current_time():
                    break
                await trio.sleep_until(quiet_until)
            ack = self._ping_ack = trio.Event()
            self._ping_data = os.urandom(8)
            try:
                self.h2.ping(self._ping_data)
            except h2.exceptions.ProtocolError:
                return  # the connection is closing
            self._wake.set()
            sent = trio.current_time()
            while not ack.is_set():
                with trio.move_on_at(max(sent, self._last_received) + timeout):
                    await ack.wait()
                if not ack.is_set() and self._last_received + timeout <= trio.current_time():
                    logger.debug(
                        "closing connection from %s: no answer to PING in %s s",
                        self.peer,
                        timeout,
                    )
                    self._broken = True
                    self._reader_scope.cancel()
                    for call in list(self.calls.values()):
                        call.reset()
                    return
            self._ping_ack = None

    async def _write_loop(self) -> None:
        stream = self.stream
        h2conn = self.h2
        try:
            while True:
                if not self._writer_stop:
                    await self._wake.wait()
                self._wake = trio.Event()
                data = h2conn.data_to_send()
                self.unflushed = 0
                if data:
                    self._writing = len(data)
                    if len(data) <= WRITE_SIZE:
                        self._write_began = trio.current_time()
                        await stream.send_all(data)
                    else:
                        view = memoryview(data)
                        for start in range(0, len(data), WRITE_SIZE):
                            self._write_began = trio.current_time()
                            await stream.send_all(view[start : start + WRITE_SIZE])
                            self._writing = max(0, len(data) - start - WRITE_SIZE)
                    self._write_began = None
                    self._writing = 0
                    self.report_output()
                    # Room again for calls and for reading.
                    self.wake_blocked()
                    self._resume.set()
                elif self._writer_stop:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            logger.debug("cannot write to %s", self.peer, exc_info=True)
            self._give_up()
        finally:
            self._writer_done.set()

    def _give_up(self) -> None:
        """The socket cannot be written to: end everything, say nothing more."""
        self._broken = True
        self._reader_scope.cancel()
        for call in list(self.calls.values()):
            call.reset()

    def _write_stalled(self) -> None:
        """Nothing could be written for the stall timeout: the client reads nothing."""
        self.shared.notices.warning(
            "stalled",
            "closing connection from %s: it read nothing of its output for %g s",
            self.peer,
            self.stall_timeout,
        )
        self._give_up()


async def _no_handler(call: Any) -> None:  # pragma: no cover - never run
    raise RpcError(StatusCode.UNIMPLEMENTED, "no handler")


_NO_METHOD = Method(object, object, "unary", _no_handler)
