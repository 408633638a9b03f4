"""The stored form of events, streams, snapshots, checkpoints and subscription definitions,
and their checksums.

Backend-neutral: a backend stores the blobs and checksums this module builds and hands
back what it read; this module verifies and decodes. Guarantees:

* Every stored row carries a CRC-32 over all of its content *and* the keys that locate
  it (an event's position, stream key and number), so a flipped byte in the content or a
  row found under the wrong key fails verification with :class:`exesdb.StorageError`;
  it never decodes into wrong data.
* An event blob holds everything a reader sees except the position and event number
  (which are row keys covered by the checksum), so a verified row decodes without
  further lookups, and never fails to decode.

Event blob layout (little-endian)::

    created_us:q  stream_len:H  stream_id  |  event_id:16s  data_kind:B  metadata_kind:B
    type_len:H  content_type_len:H  data_len:I  metadata_len:I  event_type  content_type
    data  metadata
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from .. import payload
from ..errors import CorruptData
from ..events import (
    EventRecord,
    NewEvent,
    Snapshot,
    _set_source,
    set_raw_data,
    utc_from_epoch_us,
)
from .definitions import SubscriptionDefinition

__all__ = [
    "EVENT_ROW_COLUMNS",
    "checkpoint_crc",
    "corrupt_event",
    "decode_event",
    "decode_snapshot",
    "decode_subscription",
    "encode_event",
    "encode_snapshot",
    "event_crc",
    "fill_event",
    "meta_crc",
    "pack_event_header",
    "pack_stream_prefix",
    "peek_event",
    "snapshot_crc",
    "stream_crc",
    "stream_prefix",
    "subscription_crc",
    "verify_checkpoint",
    "verify_event",
    "verify_stream",
]

_PREFIX: Final = struct.Struct("<qH")
_EVENT: Final = struct.Struct("<16sBBHHII")
_KEYS: Final = struct.Struct("<qqq")
_SNAPSHOT: Final = struct.Struct("<BBI")
_CHECKPOINT: Final = struct.Struct("<q")
_SUBSCRIPTION: Final = struct.Struct("<qII")
_type_of: Final = type  # the functions below take an argument called ``type``

_crc32: Final = zlib.crc32
_pack_keys: Final = _KEYS.pack
_pack_event: Final = _EVENT.pack
pack_event_header: Final = _pack_event
pack_stream_prefix: Final = _PREFIX.pack
"""``pack_stream_prefix(created_us, stream_id_length)``: the fixed part of
:func:`stream_prefix` (the stream id's UTF-8 bytes follow it)."""
"""``pack_event_header(event_id, data_kind, metadata_kind, type_len, content_type_len,
data_len, metadata_len)``: the fixed part of an event blob after its stream prefix (see
:func:`encode_event`, which a backend may inline)."""

EVENT_ROW_COLUMNS: Final = "pos, num, crc, rec"
"""The columns a backend selects for an event, in the order :func:`fill_event` expects:
position, event number, checksum, blob (more columns may follow)."""


def stream_prefix(created_us: int, stream_id: str) -> bytes:
    """The part of an event blob shared by all events of one append."""
    raw = stream_id.encode()
    return _PREFIX.pack(created_us, len(raw)) + raw


def encode_event(prefix: bytes, event: NewEvent) -> bytes:
    """The blob of ``event``, appended at the time and to the stream ``prefix`` names."""
    event_id, event_type, content_type, data_kind, data, metadata_kind, metadata = (
        event._encoded
    )
    return b"".join((
        prefix,
        _pack_event(event_id, data_kind, metadata_kind, len(event_type), len(content_type),
                    len(data), len(metadata)),
        event_type,
        content_type,
        data,
        metadata,
    ))


def event_crc(position: int, stream_key: int, number: int, blob: bytes) -> int:
    """The checksum of an event row: its keys and its blob."""
    return _crc32(blob, _crc32(_pack_keys(position, stream_key, number)))


def verify_event(row: Sequence[Any], stream_key: int) -> None:
    """Raise :class:`exesdb.errors.CorruptData` unless ``row`` (see
    :data:`EVENT_ROW_COLUMNS`), found under ``stream_key``, matches its checksum."""
    position, number, crc, blob = row[0], row[1], row[2], row[3]
    if type(blob) is not bytes or _crc32(blob, _crc32(_pack_keys(position, stream_key,
                                                                   number))) != crc:
        raise corrupt_event(position, number)


def corrupt_event(position: Any, event_number: Any = None,
                  stream_id: str | None = None) -> CorruptData:
    """The error for an event row that failed its checksum: its ``$all`` position, and
    its event number and stream where known (the stream id is not read from a damaged
    blob: the caller names it if it knows it from elsewhere)."""
    return CorruptData("event", position=position, stream_id=stream_id,
                       event_number=event_number if type(event_number) is int else None)


_new_uuid: Final = object.__new__
_set_raw_data: Final = set_raw_data
_from_bytes: Final = int.from_bytes
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown
_PREFIX_SIZE: Final = _PREFIX.size
_EVENT_SIZE: Final = _EVENT.size
_unpack_prefix: Final = _PREFIX.unpack_from
_unpack_event: Final = _EVENT.unpack_from
_decode: Final = payload.decode
_JSON_KINDS: Final = (payload.JSON, payload.JSON_TEXT)


def _slot(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The setter of the slot ``name`` of ``cls``: what ``object.__setattr__`` ends up
    calling, for a frozen class, without its lookup (a read sets ten per event)."""
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


_UUID: Final = uuid.UUID
_set_uuid_int: Final = _slot(uuid.UUID, "int")
_set_uuid_safe: Final = _slot(uuid.UUID, "is_safe")
_set_stream_id: Final = _slot(EventRecord, "stream_id")
_set_number: Final = _slot(EventRecord, "event_number")
_set_event_id: Final = _slot(EventRecord, "event_id")
_set_event_type: Final = _slot(EventRecord, "event_type")
_set_data: Final = _slot(EventRecord, "data")
_set_metadata: Final = _slot(EventRecord, "metadata")
_set_content_type: Final = _slot(EventRecord, "content_type")
_set_created: Final = _slot(EventRecord, "created")
_set_created_epoch: Final = _slot(EventRecord, "created_epoch")
_set_position: Final = _slot(EventRecord, "position")
_BYTES: Final = payload.BYTES
_NONE: Final = payload.NONE


def fill_event(record: EventRecord, row: Sequence[Any]) -> None:
    """Set every field of the lazy ``record`` from its verified ``row`` (JSON data: its
    stored bytes, which ``data`` decodes on first access, see
    :func:`exesdb.events.raw_data`)."""
    _fill_read(record, row)
    _fill_rest(record, row)


def decode_event(record: EventRecord, row: Sequence[Any]) -> None:
    """Set the fields of the new ``record`` that nearly every reader uses from its
    verified ``row``: ``event_number``, ``position``, ``event_type`` and ``data`` (JSON
    data: its stored bytes, decoded on the first access of ``data``); the others are set
    together on the first access of one of them (the event id alone costs, as a UUID
    object to make and for the garbage collector to track, as much as the rest)."""
    _fill_read(record, row)
    _set_source(record, (_fill_rest, row))


def _fill_read(record: EventRecord, row: Sequence[Any]) -> None:
    """The fields :func:`decode_event` sets."""
    blob = row[3]
    at = _PREFIX_SIZE + _unpack_prefix(blob)[1]
    _raw_id, data_kind, _metadata_kind, type_len, ct_len, data_len, _metadata_len = (
        _unpack_event(blob, at)
    )
    at += _EVENT_SIZE
    end = at + type_len
    _set_event_type(record, blob[at:end].decode())
    at = end + ct_len
    end = at + data_len
    if data_kind == _BYTES:
        _set_data(record, blob[at:end])
    elif data_kind in _JSON_KINDS:
        _set_raw_data(record, blob[at:end])  # decoded when data is first read; forwarded as is
    else:
        _set_data(record, _decode(data_kind, blob[at:end]))
    _set_number(record, row[1])
    _set_position(record, row[0])


def _fill_rest(record: EventRecord, row: Sequence[Any]) -> None:
    """The fields :func:`decode_event` leaves for their first access."""
    blob = row[3]
    created, stream_len = _unpack_prefix(blob)
    at = _PREFIX_SIZE + stream_len
    raw_id, _data_kind, metadata_kind, type_len, ct_len, data_len, metadata_len = (
        _unpack_event(blob, at)
    )
    _set_stream_id(record, blob[_PREFIX_SIZE:at].decode())
    at += _EVENT_SIZE + type_len
    end = at + ct_len
    _set_content_type(record, blob[at:end].decode())
    end += data_len
    _set_metadata(record, None if metadata_kind == _NONE
                  else _decode(metadata_kind, blob[end:end + metadata_len]))
    event_id = _new_uuid(_UUID)
    _set_uuid_int(event_id, _from_bytes(raw_id))
    _set_uuid_safe(event_id, _SAFE_UNKNOWN)
    _set_event_id(record, event_id)
    _set_created(record, utc_from_epoch_us(created))
    _set_created_epoch(record, created)


def peek_event(blob: bytes) -> tuple[str, str]:
    """``(stream_id, event_type)`` of a verified event blob, without decoding the rest."""
    _created, stream_len = _unpack_prefix(blob)
    at = _PREFIX_SIZE + stream_len
    stream_id = blob[_PREFIX_SIZE:at].decode()
    type_len = _unpack_event(blob, at)[3]
    at += _EVENT_SIZE
    return stream_id, blob[at:at + type_len].decode()


def stream_crc(stream_key: int, stream_id: str, first: int, state: int) -> int:
    """The checksum of a stream row."""
    return _crc32(stream_id.encode(), _crc32(_pack_keys(stream_key, first, state)))


def verify_stream(stream_key: int, stream_id: str, first: int, state: int, crc: int) -> None:
    """Raise :class:`exesdb.errors.CorruptData` unless the stream row matches its
    checksum."""
    if (type(stream_id) is not str or type(first) is not int or type(state) is not int
            or stream_crc(stream_key, stream_id, first, state) != crc):
        raise CorruptData("stream", stream_id=stream_id if type(stream_id) is str else None)


def encode_snapshot(data_kind: int, data: bytes, metadata_kind: int, metadata: bytes) -> bytes:
    """The blob of a snapshot's encoded data and metadata (see :mod:`exesdb.payload`)."""
    return b"".join((_SNAPSHOT.pack(data_kind, metadata_kind, len(data)), data, metadata))


def snapshot_crc(source_uuid: str, stream_uuid: str, version: int, created_us: int,
                 blob: bytes) -> int:
    """The checksum of a snapshot row."""
    crc = _crc32(_pack_keys(version, created_us, len(source_uuid)))
    crc = _crc32(source_uuid.encode(), crc)
    crc = _crc32(b"\0" + stream_uuid.encode(), crc)
    return _crc32(blob, crc)


def decode_snapshot(source_uuid: str, stream_uuid: str, version: int, created_us: int,
                    crc: int, blob: bytes) -> Snapshot:
    """The :class:`exesdb.Snapshot` of a row, verified against its checksum."""
    if (type(blob) is not bytes or type(source_uuid) is not str
            or type(stream_uuid) is not str
            or snapshot_crc(source_uuid, stream_uuid, version, created_us, blob) != crc):
        raise CorruptData("snapshot", key=f"({source_uuid!r}, {stream_uuid!r}, {version!r})")
    data_kind, metadata_kind, data_len = _SNAPSHOT.unpack_from(blob)
    at = _SNAPSHOT.size
    return Snapshot(
        source_uuid=source_uuid,
        stream_uuid=stream_uuid,
        version=version,
        data=payload.decode(data_kind, blob[at:at + data_len]),
        metadata=payload.decode(metadata_kind, blob[at + data_len:]),
        created=utc_from_epoch_us(created_us),
    )


def checkpoint_crc(name: str, position: int) -> int:
    """The checksum of a checkpoint row."""
    return _crc32(name.encode(), _crc32(_CHECKPOINT.pack(position)))


def verify_checkpoint(name: str, position: int, crc: int) -> None:
    """Raise :class:`exesdb.StorageError` unless the checkpoint row matches its checksum."""
    if (type(name) is not str or type(position) is not int
            or checkpoint_crc(name, position) != crc):
        raise CorruptData("checkpoint", key=repr(name))


def subscription_crc(name: str, type: str, selector: str, start_from: int,
                     with_subscriber: int = 0) -> int:
    """The checksum of a subscription definition row (``selector`` its stored JSON text,
    ``with_subscriber`` 0 or 1)."""
    raw_name = name.encode()
    raw_type = type.encode()
    crc = _crc32(_SUBSCRIPTION.pack(start_from, len(raw_name), len(raw_type)))
    crc = _crc32(selector.encode(), _crc32(raw_type, _crc32(raw_name, crc)))
    return _crc32(b"\x01" if with_subscriber else b"\x00", crc)


def decode_subscription(name: str, type: str, selector: str, start_from: int,
                        with_subscriber: int, crc: int) -> SubscriptionDefinition:
    """The :class:`~exesdb.storage.SubscriptionDefinition` of a row, verified against its
    checksum."""
    if (_type_of(name) is not str or _type_of(type) is not str
            or _type_of(selector) is not str or _type_of(start_from) is not int
            or with_subscriber not in (0, 1)
            or subscription_crc(name, type, selector, start_from, with_subscriber) != crc):
        raise CorruptData("subscription", key=name)
    try:
        decoded = json.loads(selector)
    except ValueError:
        raise CorruptData("subscription", "its selector is not JSON", key=name) from None
    return SubscriptionDefinition(name, type, decoded, start_from, bool(with_subscriber))


def meta_crc(key: str, value: str) -> int:
    """The checksum of a row of the store's meta table."""
    return _crc32(f"{key}\0{value}".encode())
