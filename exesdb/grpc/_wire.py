"""gRPC-over-HTTP/2 wire details for :mod:`exesdb.grpc.server`: header values, the
``grpc-timeout`` format, ``grpc-message`` percent-encoding and the trailers of a status.

Pure functions, no I/O; everything here follows https://github.com/grpc/grpc/blob/master/
doc/PROTOCOL-HTTP2.md.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping

from exesdb.grpc.rpc import StatusCode

__all__ = [
    "MAX_MESSAGE_CHARS",
    "RESPONSE_HEADERS",
    "Headers",
    "parse_timeout",
    "percent_encode",
    "status_trailers",
]

logger = logging.getLogger("exesdb.grpc")

Headers = list[tuple[bytes, bytes]]

RESPONSE_HEADERS: Headers = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity"),
]
"""The response headers of every call (we do not compress: identity only)."""

MAX_MESSAGE_CHARS = 4096
"""Longer status messages are cut (clients refuse oversized trailers)."""

_TIMEOUT_UNITS = {
    "H": 3600.0,
    "M": 60.0,
    "S": 1.0,
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
}
_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")


def parse_timeout(value: str) -> float:
    """The number of seconds of a ``grpc-timeout`` header value (``"100m"``: 0.1 s).

    Raises ValueError for a value that is not 1-8 digits and a unit (H M S m u n).
    """
    match = _TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"invalid grpc-timeout {value!r}")
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def percent_encode(message: str) -> bytes:
    """``message`` percent-encoded as ``grpc-message`` wants: its UTF-8 bytes, with
    every byte outside printable ASCII (and ``%`` itself, and a space at either end)
    written ``%XX``."""
    raw = message.encode("utf-8")
    if all(b in _UNRESERVED for b in raw) and raw[:1] != b" " and raw[-1:] != b" ":
        return raw
    encoded = b"".join(bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b for b in raw)
    # HTTP/2 field values may not begin or end with whitespace.
    if encoded.startswith(b" "):
        encoded = b"%20" + encoded[1:]
    if encoded.endswith(b" "):
        encoded = encoded[:-1] + b"%20"
    return encoded


_METADATA_NAME = re.compile(rb"[0-9a-z_.\-]+")
_RESERVED_NAMES = frozenset(
    {b"content-type", b"te", b"user-agent", b"authorization", b"connection", b"host"}
)


def _valid_value(value: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in value)


def status_trailers(
    code: StatusCode,
    message: str,
    extra: Mapping[str, str] | None = None,
    details: bytes | None = None,
) -> Headers:
    """The trailing headers ending a call with ``code``: ``grpc-status``,
    ``grpc-message`` (if any; cut at :data:`MAX_MESSAGE_CHARS`), the ``extra`` custom
    trailers and, when ``details`` is given, ``grpc-status-details-bin`` (unpadded
    base64).

    An extra trailer whose name or value HTTP/2 cannot carry (or a reserved ``grpc-*``
    name) is left out and logged: it is a bug in the handler, and the status must still
    reach the client.
    """
    trailers: Headers = [(b"grpc-status", b"%d" % int(code))]
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    if message:
        trailers.append((b"grpc-message", percent_encode(message)))
    if extra:
        for name, value in extra.items():
            key = name.lower().encode("ascii", "replace")
            raw = value.strip().encode("utf-8", "replace")
            if (
                _METADATA_NAME.fullmatch(key) is None
                or key.startswith(b"grpc-")
                or key in _RESERVED_NAMES
                or not _valid_value(raw)
            ):
                logger.warning("dropping invalid trailer %r: %r", name, value)
                continue
            trailers.append((key, raw))
    if details is not None:
        trailers.append((b"grpc-status-details-bin", base64.b64encode(details).rstrip(b"=")))
    return trailers
