"""The errors of networked storage backends (PostgreSQL): both subclass
:class:`exesdb.ExESDBError` and pickle with their attributes.

* :class:`StorageUnavailable`, a :class:`exesdb.StorageError`: the database could not be
  reached or did not answer in time. Retrying later may succeed: the backend reconnects
  by itself. A store maps it to :class:`exesdb.StoreUnavailable` (retryable).
* :class:`StaleEpoch`: a write fenced with a leader epoch (:class:`~exesdb.storage.fencing.
  Fenced`) carried an epoch that is no longer the store's: a newer leader was elected.
  Nothing was written by that operation; retrying cannot succeed.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExESDBError, StorageError

__all__ = ["StaleEpoch", "StorageUnavailable"]


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
