"""How event data, metadata and snapshot records are encoded: JSON, or bytes kept as is.

A payload is ``None`` (metadata only), ``bytes`` (stored unchanged), or a JSON-compatible
value: what :func:`json.dumps` accepts with ``allow_nan=False`` (dicts, lists, tuples,
str, int, float, bool, None). It is stored as compact UTF-8 JSON (no spaces,
``ensure_ascii=False``), key order kept; a tuple reads back as a list and a non-str key
(int, float, bool, None) as its JSON string, as JSON does. Decoding the bytes
:func:`encode` produced gives back an equal value, so a record that passed its checksum
always decodes.

Bytes their writer says are JSON (a :class:`JsonText`, as the gRPC door makes of data sent
with content type ``application/json``) are stored unchanged too, as kind
:data:`JSON_TEXT`: they read back as the JSON value they hold, or as the bytes themselves
when they do not parse (they are never refused, and never altered).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from .errors import InvalidArgument

__all__ = ["BYTES", "JSON", "JSON_TEXT", "NONE", "JsonText", "decode", "decode_json_text",
           "encode", "kind_of"]

NONE: Final = 0
"""Kind of an absent payload (``None`` metadata)."""
JSON: Final = 1
"""Kind of a JSON payload."""
BYTES: Final = 2
"""Kind of a bytes payload."""
JSON_TEXT: Final = 3
"""Kind of bytes stored as sent that their writer said are JSON text."""


class JsonText(bytes):
    """Bytes that their writer says are JSON text (e.g. an event sent with content type
    ``application/json``): stored exactly as given, read back as the JSON value they
    hold, or as these bytes when they do not parse (see :func:`decode_json_text`)."""

    __slots__ = ()

_loads: Final = json.loads
# json.loads's decoder without its wrapping (set in JSONDecoder.__init__, so untyped)
_scan_json: Final[Callable[[str, int], tuple[Any, int]]] = (
    json.JSONDecoder().scan_once)  # type: ignore[attr-defined]


def _decode_json(raw: bytes) -> Any:
    """``json.loads(raw)``, with its result and errors; a compact document in UTF-8 (what
    :func:`encode` makes, and most JSON text) is parsed without ``json.loads``'s encoding
    detection and whitespace skipping, and anything else by ``json.loads`` itself."""
    try:
        text = raw.decode()
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration, RecursionError):  # json.loads decides, below
        pass
    return _loads(raw)


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_encoder() -> Callable[[Any], str]:
    """Compact UTF-8-friendly JSON: the C encoder when available (it skips the per-call
    setup of ``JSONEncoder.encode``; circular values end in RecursionError), else the
    pure-Python one."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                allow_nan=False).encode
    chunks = make(None, _not_serializable, json.encoder.encode_basestring, None, ":", ",",
                  False, False, False)
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


_encode_json: Final = _make_encoder()


def kind_of(value: Any, optional: bool = False) -> int:
    """The kind ``value`` is stored as: ``BYTES`` for bytes, ``NONE`` for None when
    ``optional``, else ``JSON``."""
    if isinstance(value, bytes):
        return BYTES
    if value is None and optional:
        return NONE
    return JSON


def encode(value: Any, field: str, optional: bool = False) -> tuple[int, bytes]:
    """``(kind, encoded bytes)`` of ``value``; ``optional`` makes None mean "absent".

    Raises :class:`exesdb.InvalidArgument` naming ``field`` when ``value`` is neither
    bytes nor JSON-compatible (NaN, infinities, circular references and unknown types
    included).
    """
    kind = type(value)
    if kind is bytes:
        return BYTES, value
    if value is None and optional:
        return NONE, b""
    if isinstance(value, bytes):
        return (JSON_TEXT if kind is JsonText else BYTES), bytes(value)
    try:
        return JSON, _encode_json(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(
            f"{field}: must be a JSON-compatible value or bytes ({exc})"
        ) from None


def decode(kind: int, raw: bytes) -> Any:
    """The value :func:`encode` turned into ``(kind, raw)``."""
    if kind == JSON:
        return _decode_json(raw)
    if kind == BYTES:
        return raw
    if kind == JSON_TEXT:
        return decode_json_text(raw)
    return None


def decode_json_text(raw: bytes) -> Any:
    """The JSON value ``raw`` holds, or ``raw`` itself (bytes) when it is not JSON."""
    try:
        return _decode_json(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return raw
