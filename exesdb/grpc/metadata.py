"""Stream metadata, as KurrentDB keeps it: the last event of stream ``$$<stream>``.

The metadata of stream ``S`` is the data of the last event of ``$$S`` (the clients write
it there with type ``$metadata``): a JSON object whose reserved keys are ``$maxCount``
(only the last that many events are visible), ``$maxAge`` (only events younger than that
many seconds are visible), ``$tb`` ("truncate before": events numbered below it are not
visible) and ``$acl`` (enforced by :mod:`exesdb.grpc.acl` when the server has users);
every other key is custom metadata.

Reads of ``S`` go through :func:`visible`; a metadata stream itself (``$$...``) is read
as it is. Metadata that is not a JSON object, or a reserved value of the wrong kind,
counts as absent: bad metadata never makes a stream unreadable.

:func:`parse`, :func:`first_visible` and :func:`visible` are pure; :func:`fetch` reads
the metadata of a stream from a running store.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from .. import gateway
from ..constants import END, MAX_STREAM_ID_LENGTH
from ..errors import StreamDeleted
from ..events import EventRecord

__all__ = [
    "METADATA_EVENT_TYPE",
    "StreamMetadata",
    "decoded",
    "fetch",
    "first_visible",
    "is_metadata_stream",
    "metadata_stream",
    "parse",
    "visible",
]

METADATA_EVENT_TYPE: Final = "$metadata"
"""The event type of a metadata event."""

_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_RESERVED: Final = frozenset({"$maxCount", "$maxAge", "$tb", "$acl"})
_DELETED_TB: Final = (1 << 63) - 1


@attrs.frozen
class StreamMetadata:
    """A stream's metadata: ``max_count`` (>= 1), ``max_age`` (seconds, >= 1) and
    ``truncate_before`` (>= 0), each None when not set; ``acl`` as stored; ``custom``
    the other keys."""

    max_count: int | None = None
    max_age: int | None = None
    truncate_before: int | None = None
    acl: Any = None
    custom: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    @property
    def restricts(self) -> bool:
        """True when some events of the stream may be hidden."""
        return (self.max_count is not None or self.max_age is not None
                or self.truncate_before is not None)


def metadata_stream(stream_id: str) -> str:
    """The stream holding the metadata of ``stream_id``: ``$$<stream_id>``."""
    return f"$${stream_id}"


def is_metadata_stream(stream_id: str) -> bool:
    """True for a metadata stream (``$$...``)."""
    return stream_id.startswith("$$")


def _int_at_least(value: Any, lowest: int) -> int | None:
    if type(value) is int and value >= lowest:
        return value
    if type(value) is float and value.is_integer() and value >= lowest:
        return int(value)
    return None


def decoded(data: Any) -> Any:
    """The JSON value of a ``$metadata`` event's data: decoded already, or bytes of JSON
    (None when they do not parse)."""
    if isinstance(data, bytes | bytearray):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None
    return data


def parse(data: Any) -> StreamMetadata:
    """The metadata that the data of a ``$metadata`` event holds: bytes of a JSON object
    (as the clients write it) or an already decoded JSON value. Anything else, or a
    reserved key with a value of the wrong kind, counts as absent. A ``$tb`` of
    ``2**63 - 1`` is the mark a soft delete writes (KurrentDB's deleted stream): the
    storage's own soft delete hides those events, so it truncates nothing more (events
    appended later, in-process too, stay visible)."""
    value = decoded(data)
    if not isinstance(value, dict):
        return StreamMetadata()
    truncate_before = _int_at_least(value.get("$tb"), 0)
    return StreamMetadata(
        max_count=_int_at_least(value.get("$maxCount"), 1),
        max_age=_int_at_least(value.get("$maxAge"), 1),
        truncate_before=None if truncate_before == _DELETED_TB else truncate_before,
        acl=value.get("$acl"),
        custom={k: v for k, v in value.items() if k not in _RESERVED},
    )


def first_visible(metadata: StreamMetadata, last_version: int) -> int:
    """The lowest event number ``$tb`` and ``$maxCount`` leave visible in a stream whose
    last event is numbered ``last_version`` (0 when they hide nothing)."""
    lowest = metadata.truncate_before or 0
    if metadata.max_count is not None:
        lowest = max(lowest, last_version - metadata.max_count + 1)
    return lowest


def visible(records: Iterable[EventRecord], metadata: StreamMetadata, now: _dt.datetime,
            last_version: int) -> list[EventRecord]:
    """The records of one stream that ``metadata`` leaves visible at time ``now`` (an
    aware datetime), in their order: numbered at least :func:`first_visible` and, with
    ``$maxAge``, created less than that many seconds before ``now``."""
    if not metadata.restricts:
        return list(records)
    lowest = first_visible(metadata, last_version)
    if metadata.max_age is None:
        return [r for r in records if r.event_number >= lowest]
    now_us = (now - _EPOCH) // _dt.timedelta(microseconds=1)
    oldest = now_us - metadata.max_age * 1_000_000
    return [r for r in records if r.event_number >= lowest and r.created_epoch > oldest]


async def fetch(store_id: str, stream_id: str) -> StreamMetadata:
    """The current metadata of ``stream_id`` in the store (none for a metadata stream,
    or when ``$$<stream_id>`` is empty or was deleted). Raises what
    :func:`exesdb.gateway.get_events` raises for an unavailable store."""
    meta_id = metadata_stream(stream_id)
    if is_metadata_stream(stream_id) or len(meta_id) > MAX_STREAM_ID_LENGTH:
        return StreamMetadata()
    try:
        last = await gateway.get_events(store_id, meta_id, END, 1, "backward")
    except StreamDeleted:
        return StreamMetadata()
    return parse(last[0].data) if last else StreamMetadata()
