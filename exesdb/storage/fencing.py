"""Leader fencing: a write that only the store's current leader may make.

In cluster mode several nodes share one PostgreSQL store, and some writes belong to one
leader at a time (persistent subscriptions' checkpoints and acknowledgements). Each
election advances the store's *leader epoch*, a single row (``leader_epoch``: ``epoch``,
``leader``, ``crc``) in the store's schema. A leader wraps its writes in
:class:`Fenced` with the epoch it was elected in; the backend checks that epoch against
the row **in the same transaction** as the write, holding a share lock on the row until
commit, so:

* a fenced write commits only if its epoch is the store's epoch at commit time: an
  election (which updates the row) waits for fenced writes in flight and every fenced
  write after it sees the new epoch;
* a fenced write whose epoch is not the store's fails with
  :class:`~exesdb.errors.StaleEpoch` and changes nothing; the other operations of
  the same ``write`` are not affected.

Epochs start at 0 (no leader, ``leader`` empty) and only grow; see
:meth:`exesdb.storage.postgres.PostgresBackend.advance_epoch`.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final

import attrs

from ..errors import InvalidArgument, StaleEpoch, StorageError
from .ops import (
    Append,
    DeleteCheckpoint,
    DeleteSnapshot,
    DeleteStream,
    DeleteSubscription,
    RecordSnapshot,
    SaveCheckpoint,
    SaveSubscription,
    WriteOp,
)

__all__ = ["MAX_EPOCH", "Fenced", "check_epoch", "epoch_crc", "verify_epoch"]

MAX_EPOCH: Final = (1 << 63) - 1
"""The largest epoch (a PostgreSQL bigint)."""

_OPS: Final = (Append, DeleteStream, RecordSnapshot, DeleteSnapshot, SaveCheckpoint,
               DeleteCheckpoint, SaveSubscription, DeleteSubscription)
_EPOCH: Final = struct.Struct("<q")


def _check_op(_: object, attribute: object, value: Any) -> None:
    if type(value) not in _OPS:
        raise InvalidArgument(f"op: must be a write operation, got {value!r}")


def _check_epoch_value(_: object, attribute: object, value: Any) -> None:
    if type(value) is not int or not 0 <= value <= MAX_EPOCH:
        raise InvalidArgument(f"epoch: must be an int from 0 to 2**63 - 1, got {value!r}")


@attrs.frozen
class Fenced:
    """Write ``op`` only if the store's leader epoch is ``epoch`` (see the module
    docstring). Its result is ``op``'s, or :class:`~exesdb.errors.StaleEpoch`."""

    op: WriteOp = attrs.field(validator=_check_op)
    epoch: int = attrs.field(validator=_check_epoch_value)


def check_epoch(epoch: int, current: int, leader: str) -> None:
    """Raise :class:`~exesdb.errors.StaleEpoch` unless ``epoch`` is ``current``."""
    if epoch != current:
        raise StaleEpoch(epoch, current, leader)


def epoch_crc(epoch: int, leader: str) -> int:
    """The checksum of the ``leader_epoch`` row."""
    return zlib.crc32(leader.encode(), zlib.crc32(_EPOCH.pack(epoch)))


def verify_epoch(epoch: object, leader: object, crc: object) -> tuple[int, str]:
    """``(epoch, leader)`` of the ``leader_epoch`` row; raises :class:`exesdb.StorageError`
    unless it matches its checksum."""
    if type(epoch) is not int or type(leader) is not str or epoch_crc(epoch, leader) != crc:
        raise StorageError("corrupt leader epoch record: checksum mismatch")
    return epoch, leader
