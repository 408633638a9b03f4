"""The exceptions of ``exesdb``: every one subclasses :class:`ExESDBError`.

Each exception carries its subject as attributes, pickles with them, and has a message
that names what went wrong, so a caller can both branch on it and show it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExESDBError",
    "InvalidArgument",
    "StorageError",
    "StreamDeleted",
    "WrongExpectedVersion",
]


class ExESDBError(Exception):
    """Base class of every error ``exesdb`` raises on purpose."""


class InvalidArgument(ExESDBError, ValueError):
    """An argument broke a rule; the message starts with the field's name, then the rule.

    Raised before anything is written: an operation that raises it has no effect.
    """


class WrongExpectedVersion(ExESDBError):
    """The stream's version (``.actual``, -1 for a missing stream) did not satisfy the
    expected version (``.expected``) of an append or delete on ``.stream_id``.

    Nothing was written by the operation that raised it.
    """

    def __init__(self, stream_id: str, expected: Any, actual: int, detail: str = "") -> None:
        message = f"stream {stream_id!r}: expected version {expected!r}, actual version {actual}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream_id, self.expected, self.actual, self.detail))


class StreamDeleted(ExESDBError):
    """The stream ``.stream_id`` was hard-deleted: it can never be read or written again."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} was hard-deleted")
        self.stream_id = stream_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream_id,))


class StorageError(ExESDBError):
    """The storage failed: an I/O error, a corrupt record (checksum mismatch), a file that
    is not an exesdb store, a schema version this code does not know, or a closed store.

    A read that raises it returns no data. A write that raises it took no effect, unless
    its message says the outcome is unknown (the disk failed while making it durable).
    """
