"""exesdb: an event store on ``otp``, ported from ExESDB (Elixir).

Run stores with :func:`start_store` / :func:`stop_store` (or ``python -m exesdb start``)
and use them through :mod:`exesdb.gateway`, store id first. The event model
(:class:`NewEvent`, :class:`EventRecord`, :class:`Snapshot`, :class:`Filter`, the
expected versions ``ANY``, ``NO_STREAM`` (-1) and ``STREAM_EXISTS``, the ``END`` start)
and the errors, all subclasses of :class:`ExESDBError`. The storage engine is
:mod:`exesdb.storage`; each store's supervision tree starts at :class:`System`.
"""

from . import gateway
from .constants import ANY, END, NO_STREAM, STREAM_EXISTS, ExpectedVersion
from .errors import (
    ExESDBError,
    InvalidArgument,
    StorageError,
    StreamDeleted,
    WrongExpectedVersion,
)
from .events import EventRecord, Filter, NewEvent, Snapshot
from .options import StoreOptions
from .store import StoreInfo
from .store_errors import (
    StoreAlreadyStarted,
    StoreLocked,
    StoreNotFound,
    StoreUnavailable,
    SubscriptionNotFound,
)
from .subscriptions import Events, Subscription
from .system import System, start_store, stop_store

__all__ = [
    "ANY",
    "END",
    "NO_STREAM",
    "STREAM_EXISTS",
    "EventRecord",
    "Events",
    "ExESDBError",
    "ExpectedVersion",
    "Filter",
    "InvalidArgument",
    "NewEvent",
    "Snapshot",
    "StorageError",
    "StoreAlreadyStarted",
    "StoreInfo",
    "StoreLocked",
    "StoreNotFound",
    "StoreOptions",
    "StoreUnavailable",
    "StreamDeleted",
    "Subscription",
    "SubscriptionNotFound",
    "System",
    "WrongExpectedVersion",
    "gateway",
    "start_store",
    "stop_store",
]
