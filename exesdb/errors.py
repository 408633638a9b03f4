"""The exceptions of ``exesdb``, in one module: every one subclasses :class:`ExESDBError`.

Each exception carries its subject as attributes, pickles with them, and has a message
that names what went wrong, so a caller can both branch on it and show it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CorruptData",
    "ExESDBError",
    "GrpcListenError",
    "HttpListenError",
    "InvalidArgument",
    "StaleEpoch",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "StoreAlreadyStarted",
    "StoreLocked",
    "StoreNotFound",
    "StoreUnavailable",
    "StreamDeleted",
    "SubscriptionNotFound",
    "TlsConfigError",
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

    ``.last_event_number`` is the number of the last event ever written to the stream, as
    the check saw it: ``.actual``, except for a soft-deleted stream (``.actual`` -1), whose
    last number it keeps (KurrentDB's clients expect that version of such a stream).
    Nothing was written by the operation that raised it.
    """

    def __init__(self, stream_id: str, expected: Any, actual: int, detail: str = "",
                 last_event_number: int | None = None) -> None:
        message = f"stream {stream_id!r}: expected version {expected!r}, actual version {actual}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        self.detail = detail
        self.last_event_number = actual if last_event_number is None else last_event_number

    @property
    def soft_deleted(self) -> bool:
        """True when the stream had events and was soft-deleted since its last one."""
        return self.actual < 0 <= self.last_event_number

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream_id, self.expected, self.actual, self.detail,
                             self.last_event_number))


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


class StorageFull(StorageError):
    """The file system holding the store is full (``.detail`` says what failed).

    The write that raised it took no effect; reads go on, and writes succeed again once
    space is freed. Retrying at once is pointless: ``retryable`` is False.
    """

    retryable = False

    def __init__(self, detail: str) -> None:
        super().__init__(f"the disk holding the store is full: {detail}")
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail,))


class CorruptData(StorageError):
    """Stored data is damaged: a record failed its checksum, or the database found its
    file malformed. The read that raised it returned nothing; undamaged records still
    read. Retrying cannot help: ``retryable`` is False.

    ``.kind`` names the record (``"event"``, ``"stream"``, ``"snapshot"``,
    ``"checkpoint"``, ``"subscription"``, ``"file"``); where known, ``.position`` (an
    event's ``$all`` position), ``.stream_id`` and ``.event_number`` locate it, ``.key``
    names any other record, and ``.reason`` says what is wrong.
    """

    retryable = False

    def __init__(self, kind: str, reason: str = "checksum mismatch", *,
                 position: int | None = None, stream_id: str | None = None,
                 event_number: int | None = None, key: str | None = None) -> None:
        super().__init__(f"corrupt {_corrupt_subject(kind, position, stream_id, event_number, key)}"
                         f": {reason}")
        self.kind = kind
        self.reason = reason
        self.position = position
        self.stream_id = stream_id
        self.event_number = event_number
        self.key = key

    @property
    def location(self) -> str:
        """Where the damage is, without the reason (``event record at $all position 4
        (stream 'b', version 1)``)."""
        return _corrupt_subject(self.kind, self.position, self.stream_id, self.event_number,
                                self.key)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_corrupt, (type(self), self.kind, self.reason, self.position,
                                   self.stream_id, self.event_number, self.key))


def _corrupt_subject(kind: str, position: int | None, stream_id: str | None,
                     event_number: int | None, key: str | None) -> str:
    if kind == "event":
        where = [f"stream {stream_id!r}"] if stream_id is not None else []
        if event_number is not None:
            where.append(f"version {event_number}")
        return (f"event record at $all position {position!r}"
                + (f" ({', '.join(where)})" if where else ""))
    if kind == "stream":
        return f"stream record {stream_id!r}"
    if kind == "subscription":
        return f"subscription definition {key!r}"
    if kind == "file":
        return f"database file{f' ({key})' if key else ''}"
    return f"{kind} record{f' {key}' if key else ''}"


def _rebuild_corrupt(cls: type[CorruptData], kind: str, reason: str, position: int | None,
                     stream_id: str | None, event_number: int | None,
                     key: str | None) -> CorruptData:
    return cls(kind, reason, position=position, stream_id=stream_id,
               event_number=event_number, key=key)


class StoreNotFound(ExESDBError, LookupError):
    """No store ``.store_id`` runs on this node."""

    def __init__(self, store_id: str) -> None:
        super().__init__(f"store {store_id!r} is not running on this node")
        self.store_id = store_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_id,))


class StoreAlreadyStarted(ExESDBError):
    """The store ``.store_id`` already runs on this node (its System is ``.pid``)."""

    def __init__(self, store_id: str, pid: Any = None) -> None:
        super().__init__(f"store {store_id!r} is already running on this node")
        self.store_id = store_id
        self.pid = pid

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_id, self.pid))


class StoreLocked(ExESDBError):
    """The store's directory (``.path``) is held by another running store."""

    def __init__(self, store_id: str, path: str) -> None:
        super().__init__(f"store {store_id!r}: its directory {path} is held by another "
                         "running store (another process, or this one)")
        self.store_id = store_id
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_id, self.path))


class StoreUnavailable(ExESDBError):
    """Part of the store ``.store_id`` is restarting: the call may be retried."""

    retryable = True

    def __init__(self, store_id: str, detail: str = "") -> None:
        message = f"store {store_id!r} is restarting; retry"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.store_id = store_id
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_id, self.detail))


class SubscriptionNotFound(ExESDBError, LookupError):
    """No persistent subscription ``.name`` in store ``.store_id``."""

    def __init__(self, store_id: str, name: str) -> None:
        super().__init__(f"store {store_id!r} has no subscription {name!r}")
        self.store_id = store_id
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_id, self.name))


class TlsConfigError(ExESDBError, ValueError):
    """The TLS certificate or key file cannot be loaded; the message names both files."""


class GrpcListenError(ExESDBError):
    """The store's gRPC listener could not listen (the port in use, not permitted, or
    the TLS files unusable); the message names the store and the address."""


class HttpListenError(ExESDBError):
    """The node's HTTP listener (:mod:`exesdb.http`) could not listen (the port in use,
    not permitted, or the TLS files unusable); the message names the option and the
    address."""


class StorageUnavailable(StorageError):
    """The database could not be reached, lost the connection or did not answer within
    the backend's timeouts (``.detail`` says which).

    A read that raises it returned nothing. A write that fails with it took no effect,
    unless ``.outcome_unknown`` is True: the connection was lost while the transaction
    was committing, so it may or may not be written (an idempotent re-send of an append
    is safe). The backend reconnects on a later call once the database answers again.
    """

    retryable = True

    def __init__(self, detail: str, outcome_unknown: bool = False) -> None:
        message = f"the database is unavailable: {detail}"
        if outcome_unknown:
            message += " (the write's outcome is unknown: it may have been committed)"
        super().__init__(message)
        self.detail = detail
        self.outcome_unknown = outcome_unknown

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail, self.outcome_unknown))


class StaleEpoch(ExESDBError):
    """A write fenced with leader epoch ``.epoch`` was refused because the store's
    leader epoch is ``.current`` (held by ``.leader``): the writer is no longer the
    leader. Nothing was written by the operation that failed with it."""

    def __init__(self, epoch: int, current: int, leader: str) -> None:
        super().__init__(
            f"epoch: the write carries leader epoch {epoch}, the store's leader epoch is "
            f"{current} (leader {leader!r}); it was refused and wrote nothing"
        )
        self.epoch = epoch
        self.current = current
        self.leader = leader

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.epoch, self.current, self.leader))
