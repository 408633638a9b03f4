"""Argument checks shared by every layer, and the limits they enforce.

Each ``check_*`` function returns the value it accepted (normalised where said) or raises
:class:`exesdb.InvalidArgument` with a message that starts with the field's name and
states the rule, e.g. ``"count: must be an int >= 1, got 0"``. ``bool`` is never
accepted where an int is expected.
"""

from __future__ import annotations

import re
from typing import Final

from .constants import (
    ANY,
    END,
    MAX_STREAM_ID_LENGTH,
    NO_STREAM,
    STREAM_EXISTS,
    Direction,
    End,
    ExpectedVersion,
)
from .errors import InvalidArgument
from .events import Filter

__all__ = [
    "check_count",
    "check_direction",
    "check_expected_version",
    "check_filter",
    "check_name",
    "check_position",
    "check_snapshot_key",
    "check_snapshot_keys",
    "check_start",
    "check_store_id",
    "check_stream_id",
    "check_version",
]

_STORE_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


def _kind(value: object) -> str:
    return type(value).__name__


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def check_stream_id(stream_id: object, field: str = "stream_id") -> str:
    """A stream id: a str of 1 to 1024 characters other than ``$all`` (the name of the
    store-wide stream). Ids starting with ``$`` are system streams, as in KurrentDB:
    ``$$<id>`` holds the metadata of stream ``<id>`` (see :mod:`exesdb.grpc.metadata`)."""
    if type(stream_id) is not str:
        if not isinstance(stream_id, str):
            raise InvalidArgument(f"{field}: must be a str, got {_kind(stream_id)}")
        stream_id = str(stream_id)
    if not stream_id:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidArgument(
            f"{field}: must be at most {MAX_STREAM_ID_LENGTH} characters, got {len(stream_id)}"
        )
    if stream_id == "$all":
        raise InvalidArgument(
            f"{field}: must not be '$all' (the store-wide stream: read it with read_all)"
        )
    return stream_id


def check_expected_version(expected: object, field: str = "expected_version") -> ExpectedVersion:
    """An expected version: ``ANY``, ``STREAM_EXISTS``, ``NO_STREAM`` (-1) or an int >= 0."""
    if expected is ANY or expected is STREAM_EXISTS:
        return expected
    if _is_int(expected) and expected >= NO_STREAM:  # type: ignore[operator]
        return int(expected)  # type: ignore[call-overload, no-any-return]
    raise InvalidArgument(
        f"{field}: must be exesdb.ANY, exesdb.NO_STREAM (-1), exesdb.STREAM_EXISTS or an "
        f"int >= 0, got {expected!r}"
    )


def check_start(start: object, field: str = "start_version") -> int | End:
    """Where a read starts: an int >= 0 or :data:`exesdb.END`."""
    if start is END:
        return END
    if _is_int(start) and start >= 0:  # type: ignore[operator]
        return int(start)  # type: ignore[call-overload, no-any-return]
    raise InvalidArgument(f"{field}: must be an int >= 0 or exesdb.END, got {start!r}")


def check_count(count: object, field: str = "count") -> int:
    """How many events a read returns at most: an int >= 1."""
    if _is_int(count) and count >= 1:  # type: ignore[operator]
        return int(count)  # type: ignore[call-overload, no-any-return]
    raise InvalidArgument(f"{field}: must be an int >= 1, got {count!r}")


def check_direction(direction: object, field: str = "direction") -> Direction:
    """A read direction: ``"forward"`` or ``"backward"``."""
    if direction == "forward":
        return "forward"
    if direction == "backward":
        return "backward"
    raise InvalidArgument(f"{field}: must be 'forward' or 'backward', got {direction!r}")


def check_version(version: object, field: str = "version") -> int:
    """A version or event number: an int >= 0."""
    if _is_int(version) and version >= 0:  # type: ignore[operator]
        return int(version)  # type: ignore[call-overload, no-any-return]
    raise InvalidArgument(f"{field}: must be an int >= 0, got {version!r}")


def check_position(position: object, field: str = "position") -> int:
    """A ``$all`` position: an int >= 0."""
    return check_version(position, field)


def check_name(name: object, field: str, max_length: int = 1024) -> str:
    """A name or key (snapshot uuid, checkpoint name): a non-empty str of at most
    ``max_length`` characters."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{field}: must be a str, got {_kind(name)}")
    if not name:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(name) > max_length:
        raise InvalidArgument(
            f"{field}: must be at most {max_length} characters, got {len(name)}"
        )
    return str(name)


def check_snapshot_key(source_uuid: object, stream_uuid: object,
                       version: object = None) -> tuple[str, str, int | None]:
    """The key of one snapshot: ``(source_uuid, stream_uuid, version)``, the uuids as
    :func:`check_name` takes them, ``version`` None (the highest) or an int >= 0."""
    return (check_name(source_uuid, "source_uuid"), check_name(stream_uuid, "stream_uuid"),
            None if version is None else check_version(version))


def check_snapshot_keys(source_uuid: object,
                        stream_uuid: object) -> tuple[str | None, str | None]:
    """The keys a listing of snapshots matches: each None (any) or as :func:`check_name`
    takes it."""
    return (None if source_uuid is None else check_name(source_uuid, "source_uuid"),
            None if stream_uuid is None else check_name(stream_uuid, "stream_uuid"))


def check_filter(filter: object, field: str = "filter") -> Filter | None:
    """A read's filter: an :class:`exesdb.Filter`, or None for none."""
    if filter is None or isinstance(filter, Filter):
        return filter
    raise InvalidArgument(f"{field}: must be an exesdb.Filter or None, got {filter!r}")


def check_store_id(store_id: object, field: str = "store_id") -> str:
    """A store id: 1 to 64 ASCII letters, digits, ``_``, ``-`` and ``.``, not starting
    with ``.`` or ``-``."""
    if not isinstance(store_id, str):
        raise InvalidArgument(f"{field}: must be a str, got {_kind(store_id)}")
    if not store_id:
        raise InvalidArgument(f"{field}: must not be empty")
    if _STORE_ID.fullmatch(store_id) is None:
        raise InvalidArgument(
            f"{field}: must be 1 to 64 ASCII letters, digits, '_', '-' and '.', not starting "
            f"with '.' or '-', got {store_id[:80]!r}"
        )
    return store_id
