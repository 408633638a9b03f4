"""The event model: new events, stored event records, snapshots and ``$all`` filters.

All are frozen attrs classes. A :class:`NewEvent` is checked when it is built (every
rule of its fields raises :class:`exesdb.InvalidArgument` naming the field), and captures
the encoding of its data and metadata then, so what is stored is what it held when it
was built. An :class:`EventRecord` is what a read returns; records read from storage
decode their fields on first access (after their checksum was verified by the read; a
backend may decode the most used ones while reading), JSON data on the first access of
``data``, so a read costs little more than the query, and a record compares, hashes,
prints and pickles like any other.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from . import payload
from .constants import MAX_CONTENT_TYPE_LENGTH, MAX_EVENT_SIZE, MAX_EVENT_TYPE_LENGTH
from .errors import InvalidArgument

__all__ = [
    "BINARY_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "EventRecord",
    "Filter",
    "NewEvent",
    "Snapshot",
    "lazy_record",
    "raw_data",
    "set_raw_data",
    "wire_event",
]

JSON_CONTENT_TYPE: Final = "application/json"
"""The default content type of JSON data."""
BINARY_CONTENT_TYPE: Final = "application/octet-stream"
"""The default content type of bytes data."""

UTC: Final = _dt.UTC
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=UTC)


_last_utc: tuple[int, _dt.datetime] = (0, _EPOCH)  # the last one made: reads meet the
# same instant again and again (the events of one transaction share their commit time)


def utc_from_epoch_us(epoch_us: int) -> _dt.datetime:
    """The UTC datetime ``epoch_us`` microseconds after the Unix epoch."""
    global _last_utc
    last = _last_utc  # one read: another thread may replace it meanwhile
    if last[0] == epoch_us:
        return last[1]
    value = _EPOCH + _dt.timedelta(microseconds=epoch_us)
    _last_utc = (epoch_us, value)
    return value


_urandom: Final = os.urandom
_from_bytes: Final = int.from_bytes
_time_ns: Final = time.time_ns
_new: Final = object.__new__
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown
_UUID: Final = uuid.UUID
# a UUID's slots, set as object.__setattr__ would (UUIDs refuse setattr), minus its lookup
_set_uuid_int: Final[Callable[[Any, int], None]] = uuid.UUID.__dict__["int"].__set__
_set_uuid_safe: Final[Callable[[Any, Any], None]] = uuid.UUID.__dict__["is_safe"].__set__
_RAND_A_SHIFT: Final = 62
_RAND_B: Final = (1 << 62) - 1
_RAND_BITS: Final = 74  # 12 bits of rand_a, 62 of rand_b
_VARIANT: Final = 0x2 << 62
_VERSION: Final = 0x7 << 12  # above rand_a: the version nibble, below the timestamp
_STEP: Final = (1 << 16) - 1  # a repeated millisecond's id steps up 1 to 2**16
_RANDOM_BATCH: Final = 256
_random: Final[deque[int]] = deque()  # 80-bit values from os.urandom, each used once
_take_random: Final = _random.pop  # atomic: two threads never get the same value
_order_lock: Final = threading.Lock()
_lock_order: Final = _order_lock.acquire
_unlock_order: Final = _order_lock.release
_last_id = 0  # the time and random bits of the last id made (see uuid7), under the lock


def _forked() -> None:
    """In a forked child: its own random values, and ids not stepped from its parent's."""
    global _last_id
    _random.clear()
    _last_id = 0


os.register_at_fork(after_in_child=_forked)


def _refill_random() -> int:
    """One 80-bit random value; the next ones go to ``_random`` (one ``os.urandom`` call
    for :data:`_RANDOM_BATCH` ids instead of one each)."""
    raw = _urandom(10 * _RANDOM_BATCH)
    _random.extend(_from_bytes(raw[at:at + 10]) for at in range(10, len(raw), 10))
    return _from_bytes(raw[:10])


def uuid7() -> uuid.UUID:
    """A new time-ordered random UUID (version 7, RFC 9562): 48 bits of Unix time in
    milliseconds, then 74 random bits from ``os.urandom`` (fetched for many ids at once;
    a forked child fetches its own).

    Monotonic in the process (RFC 9562, 6.2, method 2): an id made in the same
    millisecond as the one before it, or while the clock is behind it, is that id plus a
    random step of 1 to 2**16 instead, so every id made later sorts later (the
    ids of a process are unique, as it makes them under a lock).

    The default ``event_id``: ids made later sort later, so the store's event-id index
    grows at its end instead of being written all over (far fewer pages per commit),
    and the store need not look up the ids of an append that are above every id it holds.
    """
    global _last_id
    try:
        rand = _take_random()
    except IndexError:
        rand = _refill_random()
    _lock_order()  # acquire and release: half the cost of ``with`` (one id per event)
    try:
        bits = (_time_ns() // 1_000_000) << _RAND_BITS | rand >> 6
        if bits <= _last_id:
            bits = _last_id + 1 + (rand & _STEP)
        _last_id = bits
    finally:
        _unlock_order()
    high = bits >> _RAND_A_SHIFT  # the time, then rand_a (12 bits)
    value: uuid.UUID = _new(_UUID)
    _set_uuid_int(value, ((high >> 12) << 16 | _VERSION | high & 0xFFF) << 64 | _VARIANT
                  | bits & _RAND_B)
    _set_uuid_safe(value, _SAFE_UNKNOWN)
    return value


def _to_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidArgument(f"event_id: must be a uuid.UUID (or its str form), got {value!r}")


def _default_content_type(event: NewEvent) -> str:
    return BINARY_CONTENT_TYPE if isinstance(event.data, bytes) else JSON_CONTENT_TYPE


def _check_text(value: object, field: str, max_length: int) -> None:
    if type(value) is not str and not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(value) > max_length:
        raise InvalidArgument(
            f"{field}: must be at most {max_length} characters, got {len(value)}"
        )


def check_payload_size(data: bytes, metadata: bytes) -> None:
    """Raise :class:`exesdb.InvalidArgument` if the encoded data plus metadata exceed
    :data:`exesdb.constants.MAX_EVENT_SIZE`."""
    size = len(data) + len(metadata)
    if size > MAX_EVENT_SIZE:
        raise InvalidArgument(
            f"event size: data plus metadata encode to {size} bytes, over the limit of "
            f"{MAX_EVENT_SIZE} bytes (16 MiB)"
        )


class _Encoded:
    """Holds the encoding a :class:`NewEvent` captured when it was built: ``(event id
    bytes, UTF-8 event type, UTF-8 content type, data kind, data bytes, metadata kind,
    metadata bytes)`` (kinds and bytes as :mod:`exesdb.payload` makes them)."""

    __slots__ = ("_encoded",)
    _encoded: tuple[bytes, bytes, bytes, int, bytes, int, bytes]


_DEFAULT: Final[Any] = attrs.NOTHING
"""An argument of :class:`NewEvent` left out (its default is made), as attrs marks it."""


@attrs.frozen(init=False)
class NewEvent(_Encoded):
    """An event to append: its type, data, metadata, id and the content type of its data.

    ``data`` and ``metadata`` are JSON-compatible values (stored as compact JSON) or
    ``bytes`` (stored as is); ``metadata=None`` reads back as None. ``event_id`` defaults
    to a new time-ordered random UUID (:func:`uuid7`; a str in UUID form is accepted and
    converted); ``content_type`` describes ``data`` and defaults to
    ``"application/json"``, or ``"application/octet-stream"`` for bytes. Building one raises
    :class:`exesdb.InvalidArgument` for an empty or over-long (256) event type or content
    type, data or metadata that is neither JSON-compatible nor bytes, or an encoded data
    plus metadata over 16 MiB.
    """

    event_type: str
    data: Any = attrs.field(hash=False)
    metadata: Any = attrs.field(default=None, hash=False)
    event_id: uuid.UUID = attrs.field(factory=uuid7, converter=_to_uuid)
    content_type: str = attrs.field(
        default=attrs.Factory(_default_content_type, takes_self=True)
    )

    def __init__(self, event_type: str, data: Any, metadata: Any = None,
                 event_id: uuid.UUID | str = _DEFAULT, content_type: str = _DEFAULT) -> None:
        """Build the event; see the class docstring. What the attrs-made ``__init__`` of
        these fields does, in its order (fields, then the event id converted, then the
        default content type, then the checks), with each slot set directly instead of
        through a looked-up ``object.__setattr__`` (built once per event appended)."""
        _set_event_type(self, event_type)
        _set_data(self, data)
        _set_metadata(self, metadata)
        if event_id is _DEFAULT:
            event_id = uuid7()
        elif type(event_id) is not _UUID:
            event_id = _to_uuid(event_id)
        _set_event_id(self, event_id)
        if content_type is _DEFAULT:
            content_type = BINARY_CONTENT_TYPE if isinstance(data, bytes) else JSON_CONTENT_TYPE
        _set_content_type(self, content_type)
        if type(event_type) is not str or not 0 < len(event_type) <= MAX_EVENT_TYPE_LENGTH:
            _check_text(event_type, "event_type", MAX_EVENT_TYPE_LENGTH)
        if (type(content_type) is not str
                or not 0 < len(content_type) <= MAX_CONTENT_TYPE_LENGTH):
            _check_text(content_type, "content_type", MAX_CONTENT_TYPE_LENGTH)
        if type(data) is bytes:  # the common cases first, as payload.encode takes them
            data_kind = _BYTES
        else:
            data_kind, data = payload.encode(data, "data")
        metadata = self.metadata
        if metadata is None:
            metadata_kind, metadata = _NONE, b""
        else:
            metadata_kind, metadata = payload.encode(metadata, "metadata", optional=True)
        if len(data) + len(metadata) > MAX_EVENT_SIZE:
            check_payload_size(data, metadata)
        _set_encoded(self, (
            event_id.int.to_bytes(16, "big"), event_type.encode(),
            content_type.encode(), data_kind, data, metadata_kind, metadata,
        ))


_set_encoded: Final[Callable[[Any, Any], None]] = _Encoded.__dict__["_encoded"].__set__
_set_event_type: Final[Callable[[Any, Any], None]] = NewEvent.__dict__["event_type"].__set__
_set_data: Final[Callable[[Any, Any], None]] = NewEvent.__dict__["data"].__set__
_set_metadata: Final[Callable[[Any, Any], None]] = NewEvent.__dict__["metadata"].__set__
_set_event_id: Final[Callable[[Any, Any], None]] = NewEvent.__dict__["event_id"].__set__
_set_content_type: Final[Callable[[Any, Any], None]] = (
    NewEvent.__dict__["content_type"].__set__)
_BYTES: Final = payload.BYTES
_NONE: Final = payload.NONE
_JSON_TEXT: Final = payload.JSON_TEXT
_JsonText: Final = payload.JsonText
_ENCODED_TEXT: Final[dict[str, bytes]] = {}  # event and content types met, UTF-8, checked
_ENCODED_TEXT_LIMIT: Final = 4096


def _encoded_text(value: str, field: str, max_length: int) -> bytes:
    """``value.encode()`` of a str :class:`NewEvent` accepts for ``field`` (else its
    InvalidArgument), remembered: an append's events mostly repeat a few types."""
    encoded = _ENCODED_TEXT.get(value)
    if encoded is None:
        if type(value) is not str or not 0 < len(value) <= max_length:
            _check_text(value, field, max_length)
        encoded = value.encode()
        if len(_ENCODED_TEXT) >= _ENCODED_TEXT_LIMIT:
            _ENCODED_TEXT.clear()
        _ENCODED_TEXT[value] = encoded
    elif len(value) > max_length:  # cached for the other field's longer limit
        _check_text(value, field, max_length)
    return encoded


def wire_event(event_type: str, data: bytes, metadata: bytes, event_id: uuid.UUID,
               raw_id: bytes, content_type: str) -> NewEvent:
    """The :class:`NewEvent` ``NewEvent(event_type, JsonText(data) if content_type is
    "application/json" else data, metadata or None, event_id, content_type)`` builds,
    for bytes as a network client sent them: ``data`` and ``metadata`` (exact
    ``bytes``) are captured without copies, ``raw_id`` is ``event_id``'s 16 bytes
    (big-endian), already at hand, and the event and content types' encodings are
    remembered across calls. Raises what that constructor raises."""
    if content_type == JSON_CONTENT_TYPE:
        value: bytes = _JsonText(data)
        data_kind = _JSON_TEXT
    else:
        value, data_kind = data, _BYTES
    encoded_type = _ENCODED_TEXT.get(event_type)
    if encoded_type is None or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        encoded_type = _encoded_text(event_type, "event_type", MAX_EVENT_TYPE_LENGTH)
    encoded_content_type = _ENCODED_TEXT.get(content_type)
    if encoded_content_type is None or len(content_type) > MAX_CONTENT_TYPE_LENGTH:
        encoded_content_type = _encoded_text(content_type, "content_type",
                                             MAX_CONTENT_TYPE_LENGTH)
    if metadata:
        metadata_value: bytes | None = metadata
        metadata_kind = _BYTES
    else:
        metadata_value, metadata, metadata_kind = None, b"", _NONE
    if len(data) + len(metadata) > MAX_EVENT_SIZE:
        check_payload_size(data, metadata)
    event: NewEvent = _new(NewEvent)
    _set_event_type(event, event_type)
    _set_data(event, value)
    _set_metadata(event, metadata_value)
    _set_event_id(event, event_id)
    _set_content_type(event, content_type)
    _set_encoded(event, (raw_id, encoded_type, encoded_content_type, data_kind, data,
                         metadata_kind, metadata))
    return event


class _Lazy:
    """Lets a record read from storage decode its fields on first access.

    ``_source`` holds ``(fill, row)``; the first access to a missing field calls
    ``fill(record, row)``, which sets every field, then drops the source. A fill may
    leave JSON ``data`` undecoded and set ``_raw_data`` to its stored bytes instead
    (:func:`set_raw_data`): ``data`` is then decoded on its own first access (JSON, or
    the bytes themselves when they do not parse), so a reader that only forwards the
    stored bytes (:func:`raw_data`) never decodes them.
    """

    __slots__ = ("_raw_data", "_source")

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            if name == "data":  # the usual first access of a filled record's JSON data
                try:
                    raw = _get_raw(self)
                except AttributeError:
                    pass  # not filled yet
                else:
                    value = payload.decode_json_text(raw)
                    object.__setattr__(self, "data", value)
                    return value
            if name in _RECORD_FIELDS:
                try:
                    fill, row = _get_source(self)
                except AttributeError:
                    pass
                else:
                    fill(self, row)
                    try:  # noqa: SIM105 - contextlib.suppress: a context manager per record
                        _del_source(self)
                    except AttributeError:  # another thread was first
                        pass
                try:
                    return object.__getattribute__(self, name)
                except AttributeError:
                    if name != "data":
                        raise
                value = payload.decode_json_text(_get_raw(self))
                object.__setattr__(self, "data", value)
                return value
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_get_source: Final[Callable[[Any], Any]] = _Lazy.__dict__["_source"].__get__
_set_source: Final[Callable[[Any, Any], None]] = _Lazy.__dict__["_source"].__set__
_del_source: Final[Callable[[Any], None]] = _Lazy.__dict__["_source"].__delete__
_get_raw: Final[Callable[[Any], bytes]] = _Lazy.__dict__["_raw_data"].__get__
set_raw_data: Final[Callable[[Any, bytes], None]] = _Lazy.__dict__["_raw_data"].__set__
"""``set_raw_data(record, raw)``: for a backend's fill function, instead of setting
``data``: the JSON bytes stored for the record's data, decoded on first access."""


def raw_data(record: EventRecord) -> bytes | None:
    """The bytes stored for ``record``'s JSON data, exactly as they were written (the
    compact JSON of a value appended in-process, or the bytes a client sent as
    ``application/json``); None for bytes data, or for a record not read from storage
    (then ``data`` is all there is)."""
    record.event_type  # noqa: B018 - fills a lazy record
    try:
        return _get_raw(record)
    except AttributeError:
        return None


@attrs.frozen
class EventRecord(_Lazy):
    """A stored event, as reads return it.

    ``event_number`` is its 0-based place in ``stream_id``; ``position`` its place in the
    store-wide ``$all`` order (strictly increasing in commit order, never reused, not
    necessarily contiguous). ``created`` is the commit time as a UTC datetime and
    ``created_epoch`` the same instant in microseconds since the Unix epoch. ``data`` and
    ``metadata`` read back as they were appended (JSON values or bytes). Records compare
    equal when every field is equal; their hash ignores data and metadata.
    """

    stream_id: str
    event_number: int
    event_id: uuid.UUID
    event_type: str
    data: Any = attrs.field(hash=False)
    metadata: Any = attrs.field(hash=False)
    content_type: str
    created: _dt.datetime
    created_epoch: int
    position: int


_RECORD_FIELDS: Final = frozenset(a.name for a in attrs.fields(EventRecord))

Fill = Callable[[EventRecord, Any], None]
"""Sets every field of a lazy record from its storage row (see :func:`lazy_record`)."""


def lazy_record(fill: Fill, row: Any) -> EventRecord:
    """A record whose fields ``fill(record, row)`` sets on first access.

    For storage backends: ``fill`` must set every field with ``object.__setattr__`` and
    must not fail (verify checksums before building the record).
    """
    record: EventRecord = _new(EventRecord)
    _set_source(record, (fill, row))
    return record


def _str_tuple(value: Iterable[str] | str, field: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    try:
        result = tuple(items)
    except TypeError:
        raise InvalidArgument(
            f"{field}: must be a sequence of str, got {type(value).__name__}"
        ) from None
    for item in result:
        if not isinstance(item, str):
            raise InvalidArgument(
                f"{field}: must contain only str, got {type(item).__name__} {item!r}"
            )
    return result


def _event_types(value: Iterable[str] | str) -> tuple[str, ...]:
    return _str_tuple(value, "filter.event_types")


def _stream_prefixes(value: Iterable[str] | str) -> tuple[str, ...]:
    return _str_tuple(value, "filter.stream_prefixes")


@attrs.frozen
class Filter:
    """Which events a ``$all`` read returns: those whose type is one of ``event_types``
    and whose stream id starts with one of ``stream_prefixes``. An empty part matches
    everything; a lone str is taken as a one-element tuple."""

    event_types: tuple[str, ...] = attrs.field(default=(), converter=_event_types)
    stream_prefixes: tuple[str, ...] = attrs.field(default=(), converter=_stream_prefixes)

    def matches(self, stream_id: str, event_type: str) -> bool:
        """True when an event of ``event_type`` in ``stream_id`` passes this filter."""
        if self.event_types and event_type not in self.event_types:
            return False
        return not self.stream_prefixes or stream_id.startswith(self.stream_prefixes)


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(UTC)


@attrs.frozen
class Snapshot:
    """A snapshot of an aggregate's state: keyed by ``(source_uuid, stream_uuid,
    version)``, as in ExESDB. ``data`` and ``metadata`` follow the rules of
    :class:`NewEvent`'s; ``created`` is when it was recorded (UTC)."""

    source_uuid: str
    stream_uuid: str
    version: int
    data: Any = attrs.field(hash=False)
    metadata: Any = attrs.field(default=None, hash=False)
    created: _dt.datetime = attrs.field(factory=_utcnow)
