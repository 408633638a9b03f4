"""Write operations: the requests a backend's ``write`` runs, several in one transaction.

Each operation checks its arguments when it is built and raises
:class:`exesdb.InvalidArgument` naming the field, so a backend only ever sees valid
operations and a bad request fails in the caller before it reaches the writer. What each
one does, and returns, is described by :meth:`exesdb.storage.Backend.write`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeAlias

import attrs

from .. import payload
from ..constants import ANY, ExpectedVersion
from ..errors import InvalidArgument
from ..events import NewEvent, check_payload_size
from ..validation import (
    check_expected_version,
    check_name,
    check_position,
    check_stream_id,
    check_version,
)
from .definitions import check_selector, check_subscription_type
from .records import encode_snapshot

__all__ = [
    "Append",
    "Appended",
    "DeleteCheckpoint",
    "DeleteSnapshot",
    "DeleteStream",
    "DeleteSubscription",
    "RecordSnapshot",
    "SaveCheckpoint",
    "SaveSubscription",
    "WriteOp",
]


def _events(events: Iterable[NewEvent]) -> tuple[NewEvent, ...]:
    if type(events) is list and len(events) == 1 and type(events[0]) is NewEvent:
        return (events[0],)  # the common case, checked quickly
    if isinstance(events, NewEvent):
        return (events,)
    if isinstance(events, (str, bytes, dict)):
        raise InvalidArgument(
            f"events: must be a list of exesdb.NewEvent, got {type(events).__name__}"
        )
    try:
        result = tuple(events)
    except TypeError:
        raise InvalidArgument(
            f"events: must be a list of exesdb.NewEvent, got {type(events).__name__}"
        ) from None
    if not result:
        raise InvalidArgument("events: must not be empty")
    seen: dict[bytes, int] = {}
    for index, event in enumerate(result):
        if type(event) is not NewEvent:
            raise InvalidArgument(
                f"events[{index}]: must be an exesdb.NewEvent, got {type(event).__name__}"
            )
        # its id's 16 bytes: hashed in C, where a UUID hashes in Python
        first = seen.setdefault(event._encoded[0], index)
        if first != index:
            raise InvalidArgument(
                f"events[{index}].event_id: {event.event_id} repeats events[{first}].event_id"
            )
    return result


@attrs.frozen
class Append:
    """Append ``events`` to ``stream_id`` if ``expected_version`` holds.

    Result: the stream's new version (the number of the last event written, or of the
    original events for an idempotent re-send); an :class:`Appended` when it wrote.
    """

    stream_id: str = attrs.field(converter=check_stream_id)
    expected_version: ExpectedVersion = attrs.field(converter=check_expected_version)
    events: tuple[NewEvent, ...] = attrs.field(converter=_events)


class Appended(int):
    """The result of an :class:`Append` that wrote its events: the stream's new version
    (this int), ``position``, the ``$all`` position of the last event written, and
    ``recreated``, True when the stream was soft-deleted before these events.

    An idempotent re-send writes nothing and results in a plain int (the version)."""

    position: int
    recreated: bool

    def __new__(cls, version: int, position: int, recreated: bool = False) -> Appended:
        self = super().__new__(cls, version)
        self.position = position
        self.recreated = recreated
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Appended, (int(self), self.position, self.recreated))


@attrs.frozen
class DeleteStream:
    """Delete ``stream_id``: soft (it reads as missing, later appends continue its
    numbering) or ``hard`` (gone for good). Result: the number of the stream's last event
    ever written, soft-deleted ones included (-1 when it never had one)."""

    stream_id: str = attrs.field(converter=check_stream_id)
    expected_version: ExpectedVersion = attrs.field(
        default=ANY, converter=check_expected_version
    )
    hard: bool = attrs.field(default=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.hard, bool):
            raise InvalidArgument(f"hard: must be a bool, got {self.hard!r}")


def _source_uuid(value: object) -> str:
    return check_name(value, "source_uuid")


def _stream_uuid(value: object) -> str:
    return check_name(value, "stream_uuid")


def _checkpoint_name(value: object) -> str:
    return check_name(value, "name")


@attrs.frozen
class RecordSnapshot:
    """Record (or replace) the snapshot of ``(source_uuid, stream_uuid, version)``.

    ``data`` and ``metadata`` follow the rules of :class:`exesdb.NewEvent`'s (JSON or
    bytes, 16 MiB together). Result: None.
    """

    source_uuid: str = attrs.field(converter=_source_uuid)
    stream_uuid: str = attrs.field(converter=_stream_uuid)
    version: int = attrs.field(converter=check_version)
    data: Any = attrs.field(hash=False)
    metadata: Any = attrs.field(default=None, hash=False)
    blob: bytes = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        data_kind, data = payload.encode(self.data, "data")
        metadata_kind, metadata = payload.encode(self.metadata, "metadata", optional=True)
        check_payload_size(data, metadata)
        object.__setattr__(
            self, "blob", encode_snapshot(data_kind, data, metadata_kind, metadata)
        )


@attrs.frozen
class DeleteSnapshot:
    """Delete the snapshot of ``(source_uuid, stream_uuid, version)``, if any.
    Result: None."""

    source_uuid: str = attrs.field(converter=_source_uuid)
    stream_uuid: str = attrs.field(converter=_stream_uuid)
    version: int = attrs.field(converter=check_version)


@attrs.frozen
class SaveCheckpoint:
    """Store ``position`` as the checkpoint called ``name`` (replacing it). Result: None."""

    name: str = attrs.field(converter=_checkpoint_name)
    position: int = attrs.field(converter=check_position)


@attrs.frozen
class DeleteCheckpoint:
    """Delete the checkpoint called ``name``, if any. Result: None."""

    name: str = attrs.field(converter=_checkpoint_name)


_MAX_START: Final = (1 << 63) - 1


def _start_from(value: object) -> int:
    start_from = check_position(value, "start_from")
    if start_from > _MAX_START:
        raise InvalidArgument(f"start_from: must be at most 2**63 - 1, got {start_from!r}")
    return start_from


def _is_bool(_: Any, attribute: Any, value: Any) -> None:
    if type(value) is not bool:
        raise InvalidArgument(f"{attribute.name}: must be True or False, got {value!r}")


@attrs.frozen
class SaveSubscription:
    """Store the definition of the persistent subscription ``name`` (replacing any): its
    ``type`` (``"by_stream"``, ``"by_event_type"``, ``"by_event_pattern"`` or
    ``"by_event_payload"``), ``selector`` (a str, or a JSON-compatible mapping with str
    keys), ``start_from`` (an int >= 0) and ``with_subscriber`` (it delivers to a
    subscriber process). The checkpoint (position) of ``name`` is left as it is. Result:
    None.

    ``selector`` holds the selector as it reads back (a copy, tuples as lists) and
    ``selector_json`` its stored text (see :mod:`exesdb.storage.definitions`).
    """

    name: str = attrs.field(converter=_checkpoint_name)
    type: str = attrs.field(converter=check_subscription_type)
    selector: str | Mapping[str, Any] = attrs.field(hash=False)
    start_from: int = attrs.field(converter=_start_from)
    with_subscriber: bool = attrs.field(default=False, validator=_is_bool)
    selector_json: str = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        selector, text = check_selector(self.selector)
        object.__setattr__(self, "selector", selector)
        object.__setattr__(self, "selector_json", text)


@attrs.frozen
class DeleteSubscription:
    """Delete the definition of the persistent subscription ``name`` and its checkpoint,
    together, if they exist. Result: None."""

    name: str = attrs.field(converter=_checkpoint_name)


WriteOp: TypeAlias = (
    "Append | DeleteStream | RecordSnapshot | DeleteSnapshot | SaveCheckpoint"
    " | DeleteCheckpoint | SaveSubscription | DeleteSubscription"
)
"""Any write operation."""
