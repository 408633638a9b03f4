"""A lean server-side HTTP/2 connection for the gRPC server: the subset of
:class:`h2.connection.H2Connection` that :mod:`exesdb.grpc._connection` uses, with the
same method names, the same event classes (:mod:`h2.events`) and the same exceptions
(:mod:`h2.exceptions`), at a fraction of h2's CPU cost per call.

What it implements (RFC 9113, server side only):

* the client preface, then framing: 9-byte frame headers; DATA, HEADERS (+CONTINUATION),
  PRIORITY (checked, ignored), RST_STREAM, SETTINGS (+ACK), PING (+ACK), GOAWAY,
  WINDOW_UPDATE; unknown frame types are ignored; a PUSH_PROMISE is a protocol error;
  padding on DATA and HEADERS; the first frame must be SETTINGS;
* streams: client-initiated (odd, increasing ids), idle -> open -> half-closed (remote)
  -> closed, or closed at once by RST_STREAM either way; at most our
  ``MAX_CONCURRENT_STREAMS`` open, a stream beyond that is refused (RST_STREAM
  REFUSED_STREAM: h2 tears down the whole connection instead);
* flow control both ways: inbound, a frame beyond our connection or stream window is a
  FLOW_CONTROL_ERROR, windows are given back with h2's algorithm
  (:meth:`H2Connection.acknowledge_received_data`); outbound, :meth:`send_data` refuses
  more than the peer's windows allow, SETTINGS_INITIAL_WINDOW_SIZE changes adjust every
  open stream's window (which may go negative);
* frame size limits both ways (a frame header announcing more than
  ``max_inbound_frame_size`` is refused as soon as its 9 bytes arrive);
* HPACK: inbound header blocks are decoded by :class:`hpack.Decoder` (so Huffman coding
  and the dynamic table are hpack's) and validated by h2's own validator
  (:func:`h2.utilities.validate_headers`); a block whose bytes repeat a block already
  decoded, validated and found to leave the dynamic table unchanged, under the same
  dynamic table, reuses that decoding. Outbound blocks are encoded without the dynamic
  table (static-table indexes where an exact entry or the name exists, otherwise
  literals without indexing, no Huffman), so encoding has no state and constant blocks
  are encoded once.

Errors: a connection error raises :class:`h2.exceptions.ProtocolError` (or its subclass
with the matching ``error_code``) from :meth:`H2Connection.receive_data` after queueing
one GOAWAY with that code; the connection then ignores further input and every send
raises ProtocolError. Sending on a closed or unknown stream raises
:class:`h2.exceptions.StreamClosedError` (a ProtocolError). A malformed request or
trailer block (headers h2's validator refuses, trailers without END_STREAM) is a stream
error, as RFC 9113 8.1.1 asks: that stream is reset with PROTOCOL_ERROR (and a
StreamReset event, remote_reset False, when it was open), the connection goes on. HPACK
errors stay connection errors (the decoder's state is lost).

Abuse (:class:`Limits`, checked as frames are parsed, so a flood stops at its budget
even inside one read): every RST_STREAM the client sends and every stream the server
resets because of the client's frames (a stream error, a frame on a closed stream, a
window overflow, a refused stream: the "MadeYouReset" pattern), every PING, every
SETTINGS, every header block and its bytes, every CONTINUATION and every frame that
does nothing (PRIORITY, an empty DATA frame that does not end its stream, a frame of an
unknown type, a WINDOW_UPDATE of a closed stream) is taken from a budget of its kind (a
token bucket holding N, refilled at N per ``Limits.window`` seconds). A frame that finds
its budget empty, a SETTINGS frame of more than ``Limits.settings_entries`` entries or a
header block of more than ``Limits.continuations_per_block`` CONTINUATION frames is a
flood: :class:`h2.exceptions.DenialOfServiceError`, GOAWAY ENHANCE_YOUR_CALM (with what
was exceeded as its debug data). A SETTINGS frame is applied once, with the last value
of each setting (one walk of the open streams per frame at most). The decoding cache
holds at most ``Limits.decode_cache_bytes`` (blocks over 4 KiB are never cached).

Streams held by the application: with :attr:`H2Connection.release_required` set, a
stream counts against our SETTINGS_MAX_CONCURRENT_STREAMS from its RequestReceived until
:meth:`H2Connection.release_stream`, even once closed (a call cancelled by a reset still
runs until its handler has finished): so a client resetting its streams cannot have more
than that many calls in progress; a stream beyond is refused (REFUSED_STREAM, which
counts as a reset).

The ``headers`` of a RequestReceived or TrailersReceived event may be the very list of
an earlier event (a reused decoding): read them, never modify them. Outbound header names
and values must be bytes.

Only one thread may use a connection at a time; nothing here blocks or does I/O.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.utilities
import hpack
import hpack.exceptions
import hpack.table

__all__ = ["PREFACE", "H2Connection", "Limits"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What a client sends before its first frame."""

_ErrorCodes = h2.errors.ErrorCodes
_SettingCodes = h2.settings.SettingCodes
_SETTING_CODES = {int(code): code for code in _SettingCodes}
_MAX_WINDOW = (1 << 31) - 1
_DEFAULT_WINDOW = 65535
_DEFAULT_FRAME_SIZE = 16384
_MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1

# frame types
_DATA = 0x0
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PUSH_PROMISE = 0x5
_PING = 0x6
_GOAWAY = 0x7
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
# flags
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20

_HEADER = struct.Struct(">BHBBL")  # length (3 bytes: 1 + 2), type, flags, stream id
_U32 = struct.Struct(">L")
_U16_U32 = struct.Struct(">HL")
_LL = struct.Struct(">LL")

# How a closed stream ended (for the frames that may still arrive on it).
_BY_END = 1  # both sides sent END_STREAM
_BY_SENT_RESET = 2  # we sent RST_STREAM
_BY_RECEIVED_RESET = 3  # the client sent RST_STREAM
_CLOSED_MEMORY = 4096
"""How many closed streams' endings are remembered; older ones are treated as reset by
us (their late frames are ignored)."""
_CACHEABLE_BLOCK = 4096
"""Header blocks up to this size may have their decoding cached (requests' blocks are far
smaller; a larger block is decoded every time)."""
_CACHE_ENTRY_COST = 200
_CACHE_HEADER_COST = 120
"""What a cached decoding is counted to cost besides its bytes: per entry, per header."""
_ENCODE_CACHE_SIZE = 256

_REQUEST_FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
_TRAILER_FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=True, is_response_header=False, is_push_promise=False
)


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def _frame_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(length >> 16, length & 0xFFFF, ftype, flags, stream_id)


def _error_code(code: int) -> _ErrorCodes | int:
    try:
        return _ErrorCodes(code)
    except ValueError:
        return code


def _connection_error(message: str, code: _ErrorCodes) -> h2.exceptions.ProtocolError:
    error = h2.exceptions.ProtocolError(message)
    error.error_code = code
    return error


def _flood(message: str) -> h2.exceptions.DenialOfServiceError:
    return h2.exceptions.DenialOfServiceError(message)


@attrs.frozen
class Limits:
    """What one client may make one connection do (see the module doc). The budgets hold
    so many of their kind and refill at that many per :attr:`window` seconds; the
    defaults are those of :class:`exesdb.grpc.server.ServerConfig`."""

    window: float = 10.0
    """The seconds over which each budget refills completely."""
    resets: int = 1000
    """RST_STREAM frames received plus streams reset because of the client's frames."""
    pings: int = 100
    """PING frames (ACKs included)."""
    settings: int = 100
    """SETTINGS frames (ACKs included)."""
    header_blocks: int = 200_000
    """Header blocks (HEADERS frames)."""
    header_bytes: int = 16 << 20
    """Bytes of header blocks (HEADERS and CONTINUATION payloads): decoding costs CPU by
    the byte."""
    continuations: int = 1000
    """CONTINUATION frames."""
    empty_frames: int = 10_000
    """Frames that do nothing: PRIORITY, empty DATA not ending its stream, unknown types,
    WINDOW_UPDATE of a closed stream."""
    settings_entries: int = 32
    """The most entries one SETTINGS frame may carry."""
    continuations_per_block: int = 16
    """The most CONTINUATION frames one header block may take."""
    decode_cache_bytes: int = 256 << 10
    """What the cache of decoded header blocks may hold (its bytes and an estimate of
    its decodings' memory)."""


class _Budget:
    """A token bucket: holds up to ``capacity``, refilled at ``capacity / window`` per
    second; :meth:`take` raises DenialOfServiceError naming ``what`` once it is empty."""

    __slots__ = ("capacity", "rate", "stamp", "tokens", "what")

    def __init__(self, capacity: int, window: float, what: str, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window
        self.tokens = float(capacity)
        self.stamp = now
        self.what = f"too many {what} (over {capacity} in {window:g} s)"

    def take(self, now: float, n: int = 1) -> None:
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.stamp = now
        tokens -= n
        self.tokens = tokens
        if tokens < 0:
            raise _flood(self.what)


def _check_setting(code: int, value: int) -> None:
    """Raise the connection error of an invalid SETTINGS value."""
    if code == _SettingCodes.INITIAL_WINDOW_SIZE and value > _MAX_WINDOW:
        error = _ErrorCodes.FLOW_CONTROL_ERROR
    elif (code == _SettingCodes.MAX_FRAME_SIZE and not (
        _DEFAULT_FRAME_SIZE <= value <= _MAX_FRAME_SIZE_LIMIT
    )) or (
        code in (_SettingCodes.ENABLE_PUSH, _SettingCodes.ENABLE_CONNECT_PROTOCOL) and value > 1
    ):
        error = _ErrorCodes.PROTOCOL_ERROR
    else:
        return
    raise _connection_error(f"Setting {_SETTING_CODES[code]} has invalid value {value}", error)


# -- HPACK encoding without the dynamic table ------------------------------------------


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_string(value: bytes) -> bytes:
    return _hpack_int(len(value), 7, 0) + value


_STATIC_EXACT: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(hpack.table.HeaderTable.STATIC_TABLE, start=1):
    _STATIC_EXACT.setdefault((_name, _value), _index)
    _STATIC_NAME.setdefault(_name, _index)


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The HPACK block of ``headers`` (names and values as bytes), using no dynamic
    table: an exact static-table entry is indexed, a static-table name is referenced,
    everything else is a literal without indexing; no Huffman coding. Any HPACK decoder
    decodes it to exactly ``headers``, whatever its dynamic table holds."""
    out = []
    for name, value in headers:
        index = _STATIC_EXACT.get((name, value))
        if index is not None:
            out.append(_hpack_int(index, 7, 0x80))
            continue
        index = _STATIC_NAME.get(name)
        if index is not None:
            out.append(_hpack_int(index, 4, 0x00) + _hpack_string(value))
        else:
            out.append(b"\x00" + _hpack_string(name) + _hpack_string(value))
    return b"".join(out)


# -- flow control ----------------------------------------------------------------------


class _InboundWindow:
    """Our receive window of the connection or a stream: h2's WindowManager algorithm
    (a WINDOW_UPDATE once half the window is processed, or sooner when it is empty)."""

    __slots__ = ("max_size", "processed", "size")

    def __init__(self, size: int) -> None:
        self.max_size = size
        self.size = size
        self.processed = 0

    def consumed(self, n: int) -> bool:
        """``n`` flow-controlled bytes arrived; False if they overflow the window."""
        self.size -= n
        return self.size >= 0

    def opened(self, n: int) -> None:
        self.size += n
        if self.size > _MAX_WINDOW:
            raise h2.exceptions.FlowControlError(
                f"Flow control window mustn't exceed {_MAX_WINDOW}"
            )
        if self.size > self.max_size:
            self.max_size = self.size

    def process(self, n: int) -> int:
        """``n`` bytes were processed; the increment to send now (0: none)."""
        self.processed += n
        processed = self.processed
        if not processed:
            return 0
        size = self.size
        if (size == 0 and processed > min(1024, self.max_size // 4)) or (
            processed >= self.max_size // 2
        ):
            increment = min(processed, self.max_size - size)
            self.processed = 0
            self.size = size + increment
            return increment
        return 0


class _Stream:
    __slots__ = ("inbound", "local_open", "outbound", "remote_open")

    def __init__(self, inbound_window: int, outbound_window: int) -> None:
        self.remote_open = True  # the client may still send
        self.local_open = True  # we may still send
        self.inbound = _InboundWindow(inbound_window)
        self.outbound = outbound_window


# -- the connection --------------------------------------------------------------------


class H2Connection:
    """The server side of one HTTP/2 connection carrying gRPC calls (see the module doc).

    Same interface and events as :class:`h2.connection.H2Connection` for what it offers:
    feed the client's bytes to :meth:`receive_data` and handle the events it returns;
    answer with :meth:`send_headers`, :meth:`send_data`, :meth:`end_stream`,
    :meth:`reset_stream`; give back inbound window with
    :meth:`acknowledge_received_data` and :meth:`increment_flow_control_window`; take
    the bytes to write with :meth:`data_to_send`. ``local_settings`` (a
    :class:`h2.settings.Settings`) may be replaced before :meth:`initiate_connection`,
    which sends them; their values apply at once (h2 does the same with initial values).
    """

    def __init__(
        self,
        config: h2.config.H2Configuration | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config is not None and config.client_side:
            raise ValueError("_h2lite only implements the server side")
        self.config = config
        self.limits = limits = limits if limits is not None else Limits()
        """The abuse budgets and caps (see the module doc)."""
        self._clock = clock
        now = self._now = clock()
        window = limits.window
        self._resets = _Budget(limits.resets, window, "stream resets", now)
        self._pings = _Budget(limits.pings, window, "PING frames", now)
        self._settings = _Budget(limits.settings, window, "SETTINGS frames", now)
        self._header_blocks = _Budget(limits.header_blocks, window, "header blocks", now)
        self._header_bytes = _Budget(limits.header_bytes, window, "header block bytes", now)
        self._continuations = _Budget(limits.continuations, window, "CONTINUATION frames", now)
        self._empty_frames = _Budget(limits.empty_frames, window, "frames doing nothing", now)
        self.release_required = False
        """True: streams count against the concurrency limit until released (see the
        module doc and :meth:`release_stream`)."""
        self._held: set[int] = set()  # streams delivered and not yet released
        self._zombies = 0  # of those, the closed ones
        self.local_settings = h2.settings.Settings(client=False)
        self.max_inbound_frame_size = _DEFAULT_FRAME_SIZE
        """The largest frame payload accepted; a larger one is a FRAME_SIZE_ERROR."""
        self.max_outbound_frame_size = _DEFAULT_FRAME_SIZE
        """The largest DATA payload :meth:`send_data` accepts (the client's setting)."""
        self.decoder = hpack.Decoder()
        """The HPACK decoder of inbound header blocks (``max_header_list_size`` may be
        set)."""
        self.outbound_flow_control_window = _DEFAULT_WINDOW
        """The client's connection-level window: how much DATA we may still send."""
        self.highest_inbound_stream_id = 0
        self.streams: dict[int, _Stream] = {}
        self._remote_initial_window = _DEFAULT_WINDOW
        self._local_initial_window = _DEFAULT_WINDOW
        self._max_streams = 1 << 31
        self._inbound = _InboundWindow(_DEFAULT_WINDOW)
        self._closed: dict[int, int] = {}  # stream id -> _BY_*, oldest first
        self._forgotten_below = 0  # closed streams below this id are no longer in _closed
        self._out: list[bytes] = []
        self._pending = bytearray()  # the start of an incomplete frame (or the preface)
        self._need = 0  # how many bytes _pending must reach before parsing again
        self._preface = False  # the client preface arrived
        self._settings_seen = False  # the client's first SETTINGS arrived
        self._header_block: list[bytes] | None = None  # fragments awaiting CONTINUATION
        self._header_stream = 0
        self._header_end_stream = False
        self._header_block_size = 0
        self._header_frames = 0  # CONTINUATION frames of the block in progress
        self._goaway_sent = False
        self._terminated = False  # GOAWAY sent for an error, or received: input ignored
        self._decoded: dict[bytes, tuple[Any, list[tuple[bytes, bytes]], int]] = {}
        self._decoded_bytes = 0  # what the entries of _decoded are counted to cost
        self._out_size = 0  # bytes in _out
        self._encoded: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

    # -- state readers ------------------------------------------------------------------

    @property
    def inbound_flow_control_window(self) -> int:
        """Our connection-level receive window: what the client may still send."""
        return self._inbound.size

    @property
    def open_inbound_streams(self) -> int:
        """How many streams are open or half-closed."""
        return len(self.streams)

    @property
    def max_concurrent_streams(self) -> int:
        """Our SETTINGS_MAX_CONCURRENT_STREAMS (from :meth:`initiate_connection` on)."""
        return self._max_streams

    @property
    def closed_unreleased_streams(self) -> int:
        """With :attr:`release_required`: closed streams not yet released (calls still
        finishing), which count against the concurrency limit."""
        return self._zombies

    @property
    def outbound_buffered(self) -> int:
        """How many bytes are queued for :meth:`data_to_send`."""
        return self._out_size

    @property
    def incomplete_frame(self) -> bool:
        """True while part of a frame (or of a header block awaiting CONTINUATION) has
        arrived and the rest has not."""
        return bool(self._pending) or self._header_block is not None

    def release_stream(self, stream_id: int) -> None:
        """The application is done with ``stream_id`` (its call has finished): with
        :attr:`release_required`, it no longer counts against the concurrency limit.
        Releasing a stream never delivered, or twice, does nothing."""
        held = self._held
        if stream_id in held:
            held.remove(stream_id)
            if stream_id not in self.streams:
                self._zombies -= 1

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes may be sent on ``stream_id`` now (the smaller of the
        connection and stream windows; may be negative). StreamClosedError for a stream
        that is not open on our side."""
        stream = self._sendable(stream_id)
        return min(self.outbound_flow_control_window, stream.outbound)

    # -- starting and ending ------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def initiate_connection(self) -> None:
        """Queue our SETTINGS (all of ``local_settings``); their values apply now."""
        settings = self.local_settings
        payload = b"".join(_U16_U32.pack(int(code), value) for code, value in settings.items())
        self._emit(_frame(_SETTINGS, 0, 0, payload))
        self._local_initial_window = settings.initial_window_size
        self._max_streams = settings.max_concurrent_streams
        max_list = settings.max_header_list_size
        if max_list is not None:
            self.decoder.max_header_list_size = max_list

    def close_connection(
        self,
        error_code: int = 0,
        additional_data: bytes | None = None,
        last_stream_id: int | None = None,
    ) -> None:
        """Queue a GOAWAY (only the first call sends one; later calls do nothing)."""
        if self._goaway_sent:
            return
        self._goaway(error_code, additional_data, last_stream_id)

    def _goaway(
        self, error_code: int, additional_data: bytes | None = None, last: int | None = None
    ) -> None:
        self._goaway_sent = True
        last_id = self.highest_inbound_stream_id if last is None else last
        payload = _LL.pack(last_id, int(error_code)) + (additional_data or b"")
        self._emit(_frame(_GOAWAY, 0, 0, payload))

    def ping(self, opaque_data: bytes) -> None:
        """Queue a PING carrying ``opaque_data`` (8 bytes)."""
        if len(opaque_data) != 8:
            raise ValueError("PING data must be 8 bytes")
        self._check_open()
        self._emit(_frame(_PING, 0, 0, bytes(opaque_data)))

    def data_to_send(self, amount: int | None = None) -> bytes:
        """The bytes queued since the last call, in order: all of them, or at most
        ``amount`` (the rest stays queued for the next call), as h2's does."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        self._out_size = 0
        if amount is not None and len(data) > amount:
            rest = data[amount:]
            out.append(rest)
            self._out_size = len(rest)
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """Drop everything queued."""
        self._out.clear()
        self._out_size = 0

    # -- sending ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._terminated or self._goaway_sent:
            raise h2.exceptions.ProtocolError("the connection is closed")

    def _sendable(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            raise h2.exceptions.StreamClosedError(stream_id)
        return stream

    def send_headers(
        self,
        stream_id: int,
        headers: Iterable[tuple[bytes, bytes]],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        """Queue a HEADERS block (response headers or trailers) on an open stream; the
        block is split into CONTINUATION frames when over the client's frame size."""
        key = tuple(headers)
        block = self._encoded.get(key)
        if block is None:
            block = encode_headers(key)
            if len(self._encoded) >= _ENCODE_CACHE_SIZE:
                self._encoded.clear()
            self._encoded[key] = block
        self.send_header_block(stream_id, block, end_stream)

    def send_header_block(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """:meth:`send_headers` with the headers already encoded: ``block`` is
        :func:`encode_headers` of them (headers that never change, such as a call's
        response headers, are encoded once by the caller)."""
        if self._terminated or self._goaway_sent:
            raise h2.exceptions.ProtocolError("the connection is closed")
        stream = self.streams.get(stream_id)
        if stream is None or not stream.local_open:
            raise h2.exceptions.StreamClosedError(stream_id)
        flags = _END_STREAM if end_stream else 0
        limit = self.max_outbound_frame_size
        if len(block) <= limit:
            self._emit(_frame(_HEADERS, flags | _END_HEADERS, stream_id, block))
        else:
            chunks = [block[i : i + limit] for i in range(0, len(block), limit)]
            self._emit(_frame(_HEADERS, flags, stream_id, chunks[0]))
            for i, chunk in enumerate(chunks[1:], start=2):
                last = _END_HEADERS if i == len(chunks) else 0
                self._emit(_frame(_CONTINUATION, last, stream_id, chunk))
        if end_stream:
            self._local_end(stream_id, stream)

    def send_data(
        self,
        stream_id: int,
        data: bytes,
        end_stream: bool = False,
        pad_length: Any = None,
    ) -> None:
        """Queue one DATA frame. FlowControlError when ``data`` exceeds
        :meth:`local_flow_control_window`, FrameTooLargeError when it exceeds
        :attr:`max_outbound_frame_size`."""
        self._check_open()
        stream = self._sendable(stream_id)
        size = len(data)
        if size > self.max_outbound_frame_size:
            raise h2.exceptions.FrameTooLargeError(
                f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}"
            )
        if size > min(self.outbound_flow_control_window, stream.outbound):
            raise h2.exceptions.FlowControlError("Cannot send more data than the window")
        self.outbound_flow_control_window -= size
        stream.outbound -= size
        out = self._out
        out.append(_frame_header(_DATA, _END_STREAM if end_stream else 0, stream_id, size))
        out.append(bytes(data))
        self._out_size += 9 + size
        if end_stream:
            self._local_end(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        """Queue an empty DATA frame ending our side of the stream."""
        self.send_data(stream_id, b"", end_stream=True)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            self._close(stream_id, _BY_END)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Queue RST_STREAM and close the stream; StreamClosedError when it is already
        closed (or was never opened)."""
        self._check_open()
        if stream_id not in self.streams:
            raise h2.exceptions.StreamClosedError(stream_id)
        self._reset(stream_id, error_code)

    def _reset(self, stream_id: int, error_code: int) -> None:
        self._emit(_frame(_RST_STREAM, 0, stream_id, _U32.pack(int(error_code))))
        self._close(stream_id, _BY_SENT_RESET)

    def _reset_for_client(self, stream_id: int, error_code: int) -> None:
        """Reset a stream because of what the client sent: counts as one of its resets."""
        self._resets.take(self._now)
        self._reset(stream_id, error_code)

    def _close(self, stream_id: int, how: int) -> None:
        if self.streams.pop(stream_id, None) is not None and stream_id in self._held:
            self._zombies += 1
        closed = self._closed
        closed[stream_id] = how
        if len(closed) > 2 * _CLOSED_MEMORY:
            for sid in list(closed)[:_CLOSED_MEMORY]:
                del closed[sid]
                self._forgotten_below = max(self._forgotten_below, sid + 1)

    # -- inbound flow control -----------------------------------------------------------

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """``acknowledged_size`` flow-controlled bytes of ``stream_id`` were processed:
        queue WINDOW_UPDATEs as h2's window algorithm decides (nothing after GOAWAY)."""
        if stream_id <= 0:
            raise ValueError(f"Stream ID {stream_id} is not valid for acknowledge_received_data")
        if acknowledged_size < 0:
            raise ValueError("Cannot acknowledge negative data")
        if self._terminated or self._goaway_sent:
            return
        increment = self._inbound.process(acknowledged_size)
        if increment:
            self._emit(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
        stream = self.streams.get(stream_id)
        if stream is not None and stream.remote_open:
            increment = stream.inbound.process(acknowledged_size)
            if increment:
                self._emit(_frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(increment)))

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """Grow our receive window of the connection (``stream_id`` None) or a stream by
        ``increment`` and queue the WINDOW_UPDATE."""
        if not 1 <= increment <= _MAX_WINDOW:
            raise ValueError(f"Flow control increment must be between 1 and {_MAX_WINDOW}")
        self._check_open()
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is None:
                raise h2.exceptions.StreamClosedError(stream_id)
            stream.inbound.opened(increment)
        else:
            self._inbound.opened(increment)
        self._emit(_frame(_WINDOW_UPDATE, 0, stream_id or 0, _U32.pack(increment)))

    # -- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[h2.events.Event]:
        """Take the next bytes from the client; the events they complete, in order.

        Raises ProtocolError (after queueing GOAWAY with its ``error_code``) on a
        connection error; afterwards all input is ignored."""
        if self._terminated:
            return []
        self._now = self._clock()
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                if not self._preface:
                    self._check_preface_prefix(self._pending)
                return []
            data = bytes(self._pending)
            self._pending.clear()
        events: list[h2.events.Event] = []
        try:
            self._parse(data, events)
        except h2.exceptions.ProtocolError as e:
            self._terminated = True
            self._pending.clear()
            self._header_block = None
            if not self._goaway_sent:
                flood = isinstance(e, h2.exceptions.DenialOfServiceError)
                self._goaway(e.error_code, str(e).encode()[:200] if flood else None)
            raise
        return events

    def _check_preface_prefix(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[:24]) != PREFACE[: len(data)]:
            raise _connection_error("Invalid HTTP/2 preamble", _ErrorCodes.PROTOCOL_ERROR)

    def _parse(self, data: bytes | bytearray | memoryview, events: list[h2.events.Event]) -> None:
        view = memoryview(data)
        total = len(view)
        pos = 0
        if not self._preface:
            if total < 24:
                self._check_preface_prefix(view)
                self._pending += view
                self._need = 24
                return
            self._check_preface_prefix(view[:24])
            self._preface = True
            pos = 24
        max_in = self.max_inbound_frame_size
        unpack = _HEADER.unpack_from
        handlers = self._handlers
        while total - pos >= 9:
            high, low, ftype, flags, stream_id = unpack(view, pos)
            length = (high << 16) | low
            if length > max_in:
                raise _connection_error(
                    f"Received overlong frame: length {length}, max {max_in}",
                    _ErrorCodes.FRAME_SIZE_ERROR,
                )
            end = pos + 9 + length
            if end > total:
                self._pending += view[pos:]
                self._need = 9 + length
                return
            stream_id &= 0x7FFFFFFF
            payload = view[pos + 9 : end]
            pos = end
            if self._header_block is not None and ftype != _CONTINUATION:
                raise _connection_error("Expected CONTINUATION frame", _ErrorCodes.PROTOCOL_ERROR)
            if not self._settings_seen:
                if ftype != _SETTINGS or flags & _ACK:
                    raise _connection_error(
                        "The first frame must be SETTINGS", _ErrorCodes.PROTOCOL_ERROR
                    )
                self._settings_seen = True
            handler = handlers.get(ftype)
            if handler is None:
                self._empty_frames.take(self._now)  # an unknown type: ignored, but counted
            elif handler(self, flags, stream_id, payload, events):
                self._terminated = True  # GOAWAY received: ignore the rest
                return
        if pos < total:
            self._pending += view[pos:]
            self._need = 9

    # Each handler: (self, flags, stream_id, payload, events) -> True to stop reading.

    def _on_data(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if sid == 0:
            raise _connection_error("DATA on stream 0", _ErrorCodes.PROTOCOL_ERROR)
        flow_length = len(payload)
        if flags & _PADDED:
            if not payload:
                raise _connection_error("Invalid padding", _ErrorCodes.PROTOCOL_ERROR)
            pad = payload[0]
            if pad >= flow_length:
                raise _connection_error(
                    "Received frame with invalid padding.", _ErrorCodes.PROTOCOL_ERROR
                )
            data = bytes(payload[1 : flow_length - pad])
        else:
            data = bytes(payload)
        if not self._inbound.consumed(flow_length):
            raise _connection_error(
                "Flow control window shrunk below 0", _ErrorCodes.FLOW_CONTROL_ERROR
            )
        if not flow_length and not flags & _END_STREAM:
            self._empty_frames.take(self._now)
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self._frame_on_closed(sid, stream, events)
            # Nobody will process these bytes: give the connection window back.
            increment = self._inbound.process(flow_length)
            if increment:
                self._emit(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
            return False
        if not stream.inbound.consumed(flow_length):
            raise _connection_error(
                f"Flow control window of stream {sid} shrunk below 0",
                _ErrorCodes.FLOW_CONTROL_ERROR,
            )
        end = flags & _END_STREAM
        ended = h2.events.StreamEnded(stream_id=sid) if end else None
        events.append(
            h2.events.DataReceived(
                stream_id=sid, data=data, flow_controlled_length=flow_length, stream_ended=ended
            )
        )
        if ended is not None:
            events.append(ended)
            self._remote_end(sid, stream)
        return False

    def _remote_end(self, sid: int, stream: _Stream) -> None:
        stream.remote_open = False
        if not stream.local_open:
            self._close(sid, _BY_END)

    def _frame_on_closed(
        self, sid: int, stream: _Stream | None, events: list[h2.events.Event]
    ) -> None:
        """DATA or HEADERS from the client on a stream it may not send on."""
        if stream is not None:
            # Half-closed (remote): a stream error (RFC 9113 5.1).
            self._reset_for_client(sid, _ErrorCodes.STREAM_CLOSED)
            events.append(
                h2.events.StreamReset(
                    stream_id=sid, error_code=_ErrorCodes.STREAM_CLOSED, remote_reset=False
                )
            )
            return
        if sid > self.highest_inbound_stream_id:
            raise _connection_error(f"Frame on idle stream {sid}", _ErrorCodes.PROTOCOL_ERROR)
        how = self._closed.get(sid)
        if how is None:
            if sid >= self._forgotten_below:
                # Below the highest id, never opened: the client went back in its ids.
                raise _connection_error(
                    f"Stream ID {sid} is lower than a stream already opened",
                    _ErrorCodes.PROTOCOL_ERROR,
                )
            how = _BY_SENT_RESET  # long forgotten: treated as reset by us
        if how == _BY_END:
            raise _connection_error(f"Frame on closed stream {sid}", _ErrorCodes.STREAM_CLOSED)
        if how == _BY_RECEIVED_RESET:
            self._resets.take(self._now)
            self._emit(_frame(_RST_STREAM, 0, sid, _U32.pack(_ErrorCodes.STREAM_CLOSED)))
        # reset by us: the client's frames in flight are ignored (RFC 9113 5.4.2)

    def _on_headers(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if sid == 0:
            raise _connection_error("HEADERS on stream 0", _ErrorCodes.PROTOCOL_ERROR)
        start = 0
        end = len(payload)
        if flags & _PADDED:
            if not payload:
                raise _connection_error("Invalid padding", _ErrorCodes.PROTOCOL_ERROR)
            start = 1
            end -= payload[0]
        if flags & _PRIORITY_FLAG:
            if start + 5 > end:
                raise _connection_error("Invalid HEADERS priority", _ErrorCodes.PROTOCOL_ERROR)
            if _U32.unpack_from(payload, start)[0] & 0x7FFFFFFF == sid:
                raise _connection_error(
                    "Stream cannot depend on itself", _ErrorCodes.PROTOCOL_ERROR
                )
            start += 5
        if end < start:
            raise _connection_error(
                "Received frame with invalid padding.", _ErrorCodes.PROTOCOL_ERROR
            )
        fragment = bytes(payload[start:end])
        end_stream = bool(flags & _END_STREAM)
        now = self._now
        self._header_blocks.take(now)
        self._header_bytes.take(now, len(payload))
        if flags & _END_HEADERS:
            self._headers_complete(sid, end_stream, fragment, events)
        else:
            self._header_block = [fragment]
            self._header_stream = sid
            self._header_end_stream = end_stream
            self._header_block_size = len(fragment)
            self._header_frames = 0
        return False

    def _on_continuation(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        block = self._header_block
        if block is None or sid != self._header_stream:
            raise _connection_error("Unexpected CONTINUATION frame", _ErrorCodes.PROTOCOL_ERROR)
        now = self._now
        self._continuations.take(now)
        self._header_bytes.take(now, len(payload))
        self._header_frames += 1
        if self._header_frames > self.limits.continuations_per_block:
            raise _flood(
                f"too many CONTINUATION frames in one header block "
                f"(over {self.limits.continuations_per_block})"
            )
        block.append(bytes(payload))
        self._header_block_size += len(payload)
        limit = self.decoder.max_header_list_size
        if self._header_block_size > 2 * limit + 4096:
            raise _connection_error("Oversized header block", _ErrorCodes.ENHANCE_YOUR_CALM)
        if flags & _END_HEADERS:
            self._header_block = None
            self._headers_complete(sid, self._header_end_stream, b"".join(block), events)
        return False

    def _decode(self, block: bytes, trailers: bool) -> list[tuple[bytes, bytes]] | None:
        """The validated headers of ``block``, or None when they are malformed (a stream
        error; HPACK errors raise connection errors). A cached decoding is reused when
        the block and the dynamic table are the same as when it was decoded and left the
        table alone."""
        table = self.decoder.header_table
        entries = table.dynamic_entries
        state = (len(entries), id(entries[0]) if entries else 0, table.maxsize, trailers)
        cached = self._decoded.get(block)
        if cached is not None and cached[0] == state:
            return cached[1]
        headers = self._decode_quietly(block)
        flags = _TRAILER_FLAGS if trailers else _REQUEST_FLAGS
        try:
            validated: list[tuple[bytes, bytes]] = list(
                h2.utilities.validate_headers(headers, flags)
            )
        except h2.exceptions.ProtocolError:
            return None
        after = (len(entries), id(entries[0]) if entries else 0, table.maxsize, trailers)
        if after == state and len(block) <= _CACHEABLE_BLOCK:
            self._cache(block, state, validated)
        return validated

    def _cache(self, block: bytes, state: Any, validated: list[tuple[bytes, bytes]]) -> None:
        cost = _CACHE_ENTRY_COST + len(block)
        for name, value in validated:
            cost += _CACHE_HEADER_COST + len(name) + len(value)
        budget = self.limits.decode_cache_bytes
        if cost > budget:
            return
        decoded = self._decoded
        previous = decoded.pop(block, None)
        if previous is not None:
            self._decoded_bytes -= previous[2]
        while decoded and self._decoded_bytes + cost > budget:
            oldest = next(iter(decoded))
            self._decoded_bytes -= decoded.pop(oldest)[2]
        decoded[block] = (state, validated, cost)
        self._decoded_bytes += cost

    def _headers_complete(
        self, sid: int, end_stream: bool, block: bytes, events: list[h2.events.Event]
    ) -> None:
        stream = self.streams.get(sid)
        if stream is not None and stream.remote_open:
            # Trailers.
            headers = self._decode(block, trailers=True)
            if headers is None or not end_stream:
                # Malformed trailers, or trailers not ending the stream: a stream error.
                self._reset_for_client(sid, _ErrorCodes.PROTOCOL_ERROR)
                events.append(
                    h2.events.StreamReset(
                        stream_id=sid, error_code=_ErrorCodes.PROTOCOL_ERROR, remote_reset=False
                    )
                )
                return
            ended = h2.events.StreamEnded(stream_id=sid)
            events.append(
                h2.events.TrailersReceived(stream_id=sid, headers=headers, stream_ended=ended)
            )
            events.append(ended)
            self._remote_end(sid, stream)
            return
        if stream is not None or sid <= self.highest_inbound_stream_id:
            self._decode_quietly(block)  # keeps the dynamic table in step
            self._frame_on_closed(sid, stream, events)
            return
        if sid % 2 == 0:
            raise _connection_error(
                f"Invalid stream ID {sid}: clients open odd streams", _ErrorCodes.PROTOCOL_ERROR
            )
        self.highest_inbound_stream_id = sid
        headers = self._decode(block, trailers=False)
        if headers is None:
            self._reset_for_client(sid, _ErrorCodes.PROTOCOL_ERROR)  # a malformed request
            return
        open_streams = len(self.streams)
        if self.release_required:
            open_streams += self._zombies
        if self._goaway_sent or open_streams >= self._max_streams:
            self._reset_for_client(sid, _ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(self._local_initial_window, self._remote_initial_window)
        self.streams[sid] = stream
        if self.release_required:
            self._held.add(sid)
        request_ended = h2.events.StreamEnded(stream_id=sid) if end_stream else None
        events.append(
            h2.events.RequestReceived(stream_id=sid, headers=headers, stream_ended=request_ended)
        )
        if request_ended is not None:
            events.append(request_ended)
            stream.remote_open = False

    def _decode_quietly(self, block: bytes) -> Any:
        """The headers of ``block`` as HPACK decodes them (no validation); HPACK errors
        are connection errors."""
        try:
            return self.decoder.decode(block, raw=True)
        except hpack.exceptions.OversizedHeaderListError as e:
            raise h2.exceptions.DenialOfServiceError(f"Oversized header block: {e}") from e
        except (hpack.exceptions.HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise _connection_error(
                f"Error decoding header block: {e}", _ErrorCodes.COMPRESSION_ERROR
            ) from e

    def _on_priority(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if len(payload) != 5:
            raise _connection_error("PRIORITY must be 5 bytes", _ErrorCodes.FRAME_SIZE_ERROR)
        if sid == 0:
            raise _connection_error("PRIORITY on stream 0", _ErrorCodes.PROTOCOL_ERROR)
        if _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF == sid:
            raise _connection_error("Stream cannot depend on itself", _ErrorCodes.PROTOCOL_ERROR)
        self._empty_frames.take(self._now)  # priorities are ignored
        return False

    def _on_rst_stream(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if len(payload) != 4:
            raise _connection_error("RST_STREAM must be 4 bytes", _ErrorCodes.FRAME_SIZE_ERROR)
        if sid == 0:
            raise _connection_error("RST_STREAM on stream 0", _ErrorCodes.PROTOCOL_ERROR)
        self._resets.take(self._now)
        if sid in self.streams:
            code = _U32.unpack_from(payload, 0)[0]
            self._close(sid, _BY_RECEIVED_RESET)
            events.append(
                h2.events.StreamReset(
                    stream_id=sid, error_code=_error_code(code), remote_reset=True
                )
            )
        elif sid > self.highest_inbound_stream_id:
            raise _connection_error(f"RST_STREAM on idle stream {sid}", _ErrorCodes.PROTOCOL_ERROR)
        return False

    def _on_settings(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if sid != 0:
            raise _connection_error("SETTINGS on a stream", _ErrorCodes.PROTOCOL_ERROR)
        self._settings.take(self._now)
        if flags & _ACK:
            if payload:
                raise _connection_error("SETTINGS ACK with a body", _ErrorCodes.FRAME_SIZE_ERROR)
            ack = h2.events.SettingsAcknowledged()
            ack.changed_settings = {}
            events.append(ack)
            return False
        if len(payload) % 6:
            raise _connection_error(
                "SETTINGS length not a multiple of 6", _ErrorCodes.FRAME_SIZE_ERROR
            )
        if len(payload) // 6 > self.limits.settings_entries:
            raise _flood(
                f"too many entries in one SETTINGS frame (over {self.limits.settings_entries})"
            )
        # Every value is checked in order; then each setting takes its last value, once
        # (the same end state as applying them one by one, without walking the streams
        # once per entry).
        values: dict[int, int] = {}
        for offset in range(0, len(payload), 6):
            code, value = _U16_U32.unpack_from(payload, offset)
            _check_setting(code, value)
            values.pop(code, None)  # the dict's order: where each setting last appeared
            values[code] = value
        changed: dict[Any, h2.settings.ChangedSetting] = {}
        for code, value in values.items():
            setting: Any = _SETTING_CODES.get(code, code)
            original: int | None = None
            if code == _SettingCodes.INITIAL_WINDOW_SIZE:
                original = self._remote_initial_window
                delta = value - original
                self._remote_initial_window = value
                if delta:
                    for stream in self.streams.values():
                        stream.outbound += delta
                        if stream.outbound > _MAX_WINDOW:
                            raise _connection_error(
                                "Flow control window exceeds the maximum",
                                _ErrorCodes.FLOW_CONTROL_ERROR,
                            )
            elif code == _SettingCodes.MAX_FRAME_SIZE:
                original = self.max_outbound_frame_size
                self.max_outbound_frame_size = value
            changed[setting] = h2.settings.ChangedSetting(setting, original, value)
        self._emit(_frame(_SETTINGS, _ACK, 0))
        event = h2.events.RemoteSettingsChanged()
        event.changed_settings = changed
        events.append(event)
        return False

    def _on_push_promise(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        raise _connection_error("Received pushed stream", _ErrorCodes.PROTOCOL_ERROR)

    def _on_ping(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if len(payload) != 8:
            raise _connection_error("PING must be 8 bytes", _ErrorCodes.FRAME_SIZE_ERROR)
        if sid != 0:
            raise _connection_error("PING on a stream", _ErrorCodes.PROTOCOL_ERROR)
        self._pings.take(self._now)
        data = bytes(payload)
        if flags & _ACK:
            events.append(h2.events.PingAckReceived(ping_data=data))
        else:
            if not self._goaway_sent:
                self._emit(_frame(_PING, _ACK, 0, data))
            events.append(h2.events.PingReceived(ping_data=data))
        return False

    def _on_goaway(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if sid != 0:
            raise _connection_error("GOAWAY on a stream", _ErrorCodes.PROTOCOL_ERROR)
        if len(payload) < 8:
            raise _connection_error("GOAWAY too short", _ErrorCodes.FRAME_SIZE_ERROR)
        last, code = _LL.unpack_from(payload, 0)
        event = h2.events.ConnectionTerminated()
        event.error_code = _error_code(code)
        event.last_stream_id = last & 0x7FFFFFFF
        event.additional_data = bytes(payload[8:])
        events.append(event)
        self._goaway_sent = True  # nothing more may be sent (as h2: the state is CLOSED)
        return True

    def _on_window_update(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if len(payload) != 4:
            raise _connection_error("WINDOW_UPDATE must be 4 bytes", _ErrorCodes.FRAME_SIZE_ERROR)
        increment = _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF
        if not increment:
            raise _connection_error("WINDOW_UPDATE of 0", _ErrorCodes.PROTOCOL_ERROR)
        if sid == 0:
            window = self.outbound_flow_control_window + increment
            if window > _MAX_WINDOW:
                raise _connection_error(
                    "Flow control window exceeds the maximum", _ErrorCodes.FLOW_CONTROL_ERROR
                )
            self.outbound_flow_control_window = window
            events.append(h2.events.WindowUpdated(stream_id=0, delta=increment))
            return False
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.highest_inbound_stream_id:
                raise _connection_error(
                    f"WINDOW_UPDATE on idle stream {sid}", _ErrorCodes.PROTOCOL_ERROR
                )
            self._empty_frames.take(self._now)
            return False  # a closed stream: ignored
        window = stream.outbound + increment
        if window > _MAX_WINDOW:
            self._reset_for_client(sid, _ErrorCodes.FLOW_CONTROL_ERROR)
            events.append(
                h2.events.StreamReset(
                    stream_id=sid, error_code=_ErrorCodes.FLOW_CONTROL_ERROR, remote_reset=False
                )
            )
            return False
        stream.outbound = window
        events.append(h2.events.WindowUpdated(stream_id=sid, delta=increment))
        return False

    _handlers: Mapping[int, Any] = {
        _DATA: _on_data,
        _HEADERS: _on_headers,
        _PRIORITY: _on_priority,
        _RST_STREAM: _on_rst_stream,
        _SETTINGS: _on_settings,
        _PUSH_PROMISE: _on_push_promise,
        _PING: _on_ping,
        _GOAWAY: _on_goaway,
        _WINDOW_UPDATE: _on_window_update,
        _CONTINUATION: _on_continuation,
    }
