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
:class:`h2.exceptions.StreamClosedError` (a ProtocolError).

The ``headers`` of a RequestReceived or TrailersReceived event may be the very list of
an earlier event (a reused decoding): read them, never modify them. Outbound header names
and values must be bytes.

Only one thread may use a connection at a time; nothing here blocks or does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.utilities
import hpack
import hpack.exceptions
import hpack.table

__all__ = ["PREFACE", "H2Connection"]

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
_DECODE_CACHE_SIZE = 256
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

    def __init__(self, config: h2.config.H2Configuration | None = None) -> None:
        if config is not None and config.client_side:
            raise ValueError("_h2lite only implements the server side")
        self.config = config
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
        self._goaway_sent = False
        self._terminated = False  # GOAWAY sent for an error, or received: input ignored
        self._decoded: dict[bytes, tuple[Any, list[tuple[bytes, bytes]]]] = {}
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

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes may be sent on ``stream_id`` now (the smaller of the
        connection and stream windows; may be negative). StreamClosedError for a stream
        that is not open on our side."""
        stream = self._sendable(stream_id)
        return min(self.outbound_flow_control_window, stream.outbound)

    # -- starting and ending ------------------------------------------------------------

    def initiate_connection(self) -> None:
        """Queue our SETTINGS (all of ``local_settings``); their values apply now."""
        settings = self.local_settings
        payload = b"".join(_U16_U32.pack(int(code), value) for code, value in settings.items())
        self._out.append(_frame(_SETTINGS, 0, 0, payload))
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
        self._out.append(_frame(_GOAWAY, 0, 0, payload))

    def ping(self, opaque_data: bytes) -> None:
        """Queue a PING carrying ``opaque_data`` (8 bytes)."""
        if len(opaque_data) != 8:
            raise ValueError("PING data must be 8 bytes")
        self._check_open()
        self._out.append(_frame(_PING, 0, 0, bytes(opaque_data)))

    def data_to_send(self, amount: int | None = None) -> bytes:
        """The bytes queued since the last call, in order: all of them, or at most
        ``amount`` (the rest stays queued for the next call), as h2's does."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        if amount is not None and len(data) > amount:
            out.append(data[amount:])
            data = data[:amount]
        return data

    def clear_outbound_data_buffer(self) -> None:
        """Drop everything queued."""
        self._out.clear()

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
        self._check_open()
        stream = self._sendable(stream_id)
        key = tuple(headers)
        block = self._encoded.get(key)
        if block is None:
            block = encode_headers(key)
            if len(self._encoded) >= _ENCODE_CACHE_SIZE:
                self._encoded.clear()
            self._encoded[key] = block
        flags = _END_STREAM if end_stream else 0
        limit = self.max_outbound_frame_size
        if len(block) <= limit:
            self._out.append(_frame(_HEADERS, flags | _END_HEADERS, stream_id, block))
        else:
            chunks = [block[i : i + limit] for i in range(0, len(block), limit)]
            self._out.append(_frame(_HEADERS, flags, stream_id, chunks[0]))
            for i, chunk in enumerate(chunks[1:], start=2):
                last = _END_HEADERS if i == len(chunks) else 0
                self._out.append(_frame(_CONTINUATION, last, stream_id, chunk))
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
        self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(int(error_code))))
        self._close(stream_id, _BY_SENT_RESET)

    def _close(self, stream_id: int, how: int) -> None:
        self.streams.pop(stream_id, None)
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
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
        stream = self.streams.get(stream_id)
        if stream is not None and stream.remote_open:
            increment = stream.inbound.process(acknowledged_size)
            if increment:
                self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(increment)))

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
        self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id or 0, _U32.pack(increment)))

    # -- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[h2.events.Event]:
        """Take the next bytes from the client; the events they complete, in order.

        Raises ProtocolError (after queueing GOAWAY with its ``error_code``) on a
        connection error; afterwards all input is ignored."""
        if self._terminated:
            return []
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
            if not self._goaway_sent:
                self._goaway(e.error_code)
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
            if handler is not None and handler(self, flags, stream_id, payload, events):
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
        stream = self.streams.get(sid)
        if stream is None or not stream.remote_open:
            self._frame_on_closed(sid, stream, events)
            # Nobody will process these bytes: give the connection window back.
            increment = self._inbound.process(flow_length)
            if increment:
                self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
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
            self._reset(sid, _ErrorCodes.STREAM_CLOSED)
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
            self._out.append(_frame(_RST_STREAM, 0, sid, _U32.pack(_ErrorCodes.STREAM_CLOSED)))
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
        if flags & _END_HEADERS:
            self._headers_complete(sid, end_stream, fragment, events)
        else:
            self._header_block = [fragment]
            self._header_stream = sid
            self._header_end_stream = end_stream
            self._header_block_size = len(fragment)
        return False

    def _on_continuation(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        block = self._header_block
        if block is None or sid != self._header_stream:
            raise _connection_error("Unexpected CONTINUATION frame", _ErrorCodes.PROTOCOL_ERROR)
        block.append(bytes(payload))
        self._header_block_size += len(payload)
        limit = self.decoder.max_header_list_size
        if self._header_block_size > 2 * limit + 4096:
            raise _connection_error("Oversized header block", _ErrorCodes.ENHANCE_YOUR_CALM)
        if flags & _END_HEADERS:
            self._header_block = None
            self._headers_complete(sid, self._header_end_stream, b"".join(block), events)
        return False

    def _decode(self, block: bytes, trailers: bool) -> list[tuple[bytes, bytes]]:
        """The validated headers of ``block`` (a cached decoding when the block and the
        dynamic table are the same as when it was decoded and left the table alone)."""
        table = self.decoder.header_table
        entries = table.dynamic_entries
        state = (len(entries), id(entries[0]) if entries else 0, table.maxsize, trailers)
        cached = self._decoded.get(block)
        if cached is not None and cached[0] == state:
            return cached[1]
        try:
            headers = self.decoder.decode(block, raw=True)
        except hpack.exceptions.OversizedHeaderListError as e:
            raise h2.exceptions.DenialOfServiceError(f"Oversized header block: {e}") from e
        except (hpack.exceptions.HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise _connection_error(
                f"Error decoding header block: {e}", _ErrorCodes.COMPRESSION_ERROR
            ) from e
        flags = _TRAILER_FLAGS if trailers else _REQUEST_FLAGS
        validated: list[tuple[bytes, bytes]] = list(h2.utilities.validate_headers(headers, flags))
        after = (len(entries), id(entries[0]) if entries else 0, table.maxsize, trailers)
        if after == state:
            if len(self._decoded) >= _DECODE_CACHE_SIZE:
                self._decoded.clear()
            self._decoded[block] = (state, validated)
        return validated

    def _headers_complete(
        self, sid: int, end_stream: bool, block: bytes, events: list[h2.events.Event]
    ) -> None:
        stream = self.streams.get(sid)
        if stream is not None and stream.remote_open:
            # Trailers.
            headers = self._decode(block, trailers=True)
            if not end_stream:
                raise _connection_error(
                    "Trailers must have END_STREAM set", _ErrorCodes.PROTOCOL_ERROR
                )
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
        if self._goaway_sent or len(self.streams) >= self._max_streams:
            self._reset(sid, _ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(self._local_initial_window, self._remote_initial_window)
        self.streams[sid] = stream
        request_ended = h2.events.StreamEnded(stream_id=sid) if end_stream else None
        events.append(
            h2.events.RequestReceived(stream_id=sid, headers=headers, stream_ended=request_ended)
        )
        if request_ended is not None:
            events.append(request_ended)
            stream.remote_open = False

    def _decode_quietly(self, block: bytes) -> None:
        try:
            self.decoder.decode(block, raw=True)
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
        return False

    def _on_rst_stream(
        self, flags: int, sid: int, payload: memoryview, events: list[h2.events.Event]
    ) -> bool:
        if len(payload) != 4:
            raise _connection_error("RST_STREAM must be 4 bytes", _ErrorCodes.FRAME_SIZE_ERROR)
        if sid == 0:
            raise _connection_error("RST_STREAM on stream 0", _ErrorCodes.PROTOCOL_ERROR)
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
        changed: dict[Any, h2.settings.ChangedSetting] = {}
        for offset in range(0, len(payload), 6):
            code, value = _U16_U32.unpack_from(payload, offset)
            setting: Any = _SETTING_CODES.get(code, code)
            original: int | None
            if code == _SettingCodes.INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _connection_error(
                        f"Setting {setting} has invalid value {value}",
                        _ErrorCodes.FLOW_CONTROL_ERROR,
                    )
                original = self._remote_initial_window
                delta = value - original
                self._remote_initial_window = value
                for stream in self.streams.values():
                    stream.outbound += delta
                    if stream.outbound > _MAX_WINDOW:
                        raise _connection_error(
                            "Flow control window exceeds the maximum",
                            _ErrorCodes.FLOW_CONTROL_ERROR,
                        )
            elif code == _SettingCodes.MAX_FRAME_SIZE:
                if not _DEFAULT_FRAME_SIZE <= value <= _MAX_FRAME_SIZE_LIMIT:
                    raise _connection_error(
                        f"Setting {setting} has invalid value {value}",
                        _ErrorCodes.PROTOCOL_ERROR,
                    )
                original = self.max_outbound_frame_size
                self.max_outbound_frame_size = value
            elif code in (_SettingCodes.ENABLE_PUSH, _SettingCodes.ENABLE_CONNECT_PROTOCOL):
                if value > 1:
                    raise _connection_error(
                        f"Setting {setting} has invalid value {value}",
                        _ErrorCodes.PROTOCOL_ERROR,
                    )
                original = None
            else:
                original = None
            previous = changed.get(setting)
            if previous is not None:
                original = previous.original_value
            changed[setting] = h2.settings.ChangedSetting(setting, original, value)
        self._out.append(_frame(_SETTINGS, _ACK, 0))
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
        data = bytes(payload)
        if flags & _ACK:
            events.append(h2.events.PingAckReceived(ping_data=data))
        else:
            if not self._goaway_sent:
                self._out.append(_frame(_PING, _ACK, 0, data))
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
            return False  # a closed stream: ignored
        window = stream.outbound + increment
        if window > _MAX_WINDOW:
            self._reset(sid, _ErrorCodes.FLOW_CONTROL_ERROR)
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
