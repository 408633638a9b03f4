"""The errors of running stores: every one subclasses :class:`exesdb.ExESDBError`."""

from __future__ import annotations

from typing import Any

from .errors import ExESDBError

__all__ = [
    "StoreAlreadyStarted",
    "StoreLocked",
    "StoreNotFound",
    "StoreUnavailable",
    "SubscriptionNotFound",
]


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
