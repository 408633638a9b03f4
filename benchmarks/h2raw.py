"""Hand-made HTTP/2 for hostile clients: frames, HPACK blocks of literals and gRPC
requests, built byte by byte (no h2 state machine: an attacker does not play by the
rules). Shared by the hostile-traffic benchmark (:mod:`benchmarks.bench_hostile`) and
tests (``tests/exesdb/grpc/hostile_helpers.py``)."""

from __future__ import annotations

import struct

__all__ = [
    "ACK",
    "CANCEL",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "ENHANCE_YOUR_CALM",
    "FRAME_HEADER",
    "GOAWAY",
    "HEADERS",
    "NO_ERROR",
    "PING",
    "PREFACE",
    "PROTOCOL_ERROR",
    "READ",
    "RST_STREAM",
    "SETTINGS",
    "WINDOW_UPDATE",
    "frame",
    "header_block",
    "hpack_int",
    "read_all_request",
    "request_block",
    "request_headers",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface."""
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
NO_ERROR, PROTOCOL_ERROR, CANCEL, ENHANCE_YOUR_CALM = 0, 1, 8, 11
READ = "/event_store.client.streams.Streams/Read"
"""The path of the Streams Read call."""
FRAME_HEADER = struct.Struct(">BHBBL")
"""A frame header: length (high byte, low 16 bits), type, flags, stream id."""


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    n = len(payload)
    return FRAME_HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """``value`` as an HPACK integer with a ``prefix_bits`` prefix, the first byte's other
    bits from ``first``."""
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


def header_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of literals without indexing (the dynamic table is left alone)."""
    out = bytearray()
    for name, value in headers:
        out += b"\x00" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0)
        out += value
    return bytes(out)


def request_headers(path: str = READ, extra: list[tuple[bytes, bytes]] | None = None
                    ) -> list[tuple[bytes, bytes]]:
    """The headers of a gRPC request to ``path`` (then ``extra``)."""
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
            (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), *(extra or [])]


def request_block(path: str = READ, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """The header block of a gRPC request to ``path`` (see :func:`request_headers`)."""
    return header_block(request_headers(path, extra))


def read_all_request(count: int = 1 << 40) -> bytes:
    """A length-prefixed ``ReadReq``: ``$all`` forwards from the start, ``count`` events."""
    from exesdb.grpc.protos import streams_pb2

    message = streams_pb2.ReadReq()
    message.options.all.start.SetInParent()
    message.options.count = count
    message.options.no_filter.SetInParent()
    message.options.uuid_option.string.SetInParent()
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data
