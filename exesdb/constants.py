"""The constants of the event model: expected versions, the END sentinel and the limits.

``NO_STREAM`` is the int -1, as in ExESDB, so an expected version is always an int or
one of the two :class:`StreamState` members. ``END`` is not an int: a negative int is
never a valid start, so ``END`` cannot be confused with one.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, TypeAlias

__all__ = [
    "ANY",
    "DEFAULT_COUNT",
    "END",
    "MAX_EVENT_SIZE",
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_STREAM_ID_LENGTH",
    "NO_STREAM",
    "STREAM_EXISTS",
    "Direction",
    "End",
    "ExpectedVersion",
    "StreamState",
]


class StreamState(enum.Enum):
    """The expected versions that are not a number: :data:`ANY` and :data:`STREAM_EXISTS`."""

    ANY = "any"
    STREAM_EXISTS = "stream_exists"

    def __repr__(self) -> str:
        return f"exesdb.{self.name}"


class End(enum.Enum):
    """The type of :data:`END`, the start that means "the end of the stream or of $all"."""

    END = "end"

    def __repr__(self) -> str:
        return "exesdb.END"


ANY: Final = StreamState.ANY
"""Expected version: append whatever the stream's state (idempotent re-sends still apply)."""
STREAM_EXISTS: Final = StreamState.STREAM_EXISTS
"""Expected version: the stream must exist (have at least one visible event)."""
NO_STREAM: Final = -1
"""Expected version: the stream must not exist (or be soft-deleted). Equal to -1."""
END: Final = End.END
"""Start of a read: backward reads start from the last event, forward reads read nothing."""

ExpectedVersion: TypeAlias = "int | StreamState"
"""An expected version: ``ANY``, ``STREAM_EXISTS``, ``NO_STREAM`` (-1) or an int >= 0,
the number of the stream's last event."""

Direction: TypeAlias = Literal["forward", "backward"]
"""The direction of a read."""

MAX_STREAM_ID_LENGTH: Final = 1024
"""A stream id has 1 to this many characters."""
MAX_EVENT_TYPE_LENGTH: Final = 256
"""An event type has 1 to this many characters."""
MAX_CONTENT_TYPE_LENGTH: Final = 256
"""A content type has 1 to this many characters."""
MAX_EVENT_SIZE: Final = 16 * 1024 * 1024
"""The encoded bytes of an event's data plus metadata are at most this many (16 MiB)."""
DEFAULT_COUNT: Final = 1000
"""How many events a read returns at most when no count is given."""
