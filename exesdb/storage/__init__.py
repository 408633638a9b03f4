"""exesdb.storage: the event storage engine.

* :class:`Backend`, the interface every backend implements (guarantees in
  :mod:`exesdb.storage.backend`), and :class:`SQLiteBackend`, the embedded default: one
  WAL-mode SQLite file per store, durable (fsynced) writes unless opened
  ``durable=False``.
* The write operations of :mod:`exesdb.storage.ops`, run several per transaction by
  :meth:`Backend.write`, and :class:`SubscriptionDefinition`, a stored persistent
  subscription (:mod:`exesdb.storage.definitions`).
* :mod:`exesdb.storage.writer`: the group-committing writer process (a gen_server).
* :mod:`exesdb.storage.rules`: the expected-version and idempotence rules.
"""

from . import writer
from .backend import Backend
from .definitions import SubscriptionDefinition
from .ops import (
    Append,
    Appended,
    DeleteCheckpoint,
    DeleteSnapshot,
    DeleteStream,
    DeleteSubscription,
    RecordSnapshot,
    SaveCheckpoint,
    SaveSubscription,
    WriteOp,
)
from .sqlite import SQLiteBackend
from .writer import Writer

__all__ = [
    "Append",
    "Appended",
    "Backend",
    "DeleteCheckpoint",
    "DeleteSnapshot",
    "DeleteStream",
    "DeleteSubscription",
    "RecordSnapshot",
    "SQLiteBackend",
    "SaveCheckpoint",
    "SaveSubscription",
    "SubscriptionDefinition",
    "WriteOp",
    "Writer",
    "writer",
]
