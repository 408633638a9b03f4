"""exesdb: an event store on ``otp``, ported from ExESDB (Elixir).

Run stores with :func:`start_store` / :func:`stop_store` (or ``python -m exesdb start``)
and use them through :mod:`exesdb.gateway`, store id first. The event model
(:class:`NewEvent`, :class:`EventRecord`, :class:`Snapshot`, :class:`Filter`, the
expected versions ``ANY``, ``NO_STREAM`` (-1) and ``STREAM_EXISTS``, the ``END`` start)
and the errors, all subclasses of :class:`ExESDBError`. The storage engine is
:mod:`exesdb.storage`; each store's supervision tree starts at :class:`System`.

The package is built in layers, each importing only from its own layer or those below
(``otp`` is below them all, and never imports ``exesdb``); a test enforces it:

1. **values**: :mod:`.constants`, :mod:`.errors` (every exception), :mod:`.events`,
   :mod:`.options`, :mod:`.naming`, :mod:`.validation`, :mod:`.payload`,
   :mod:`.subscriptions`: plain data and rules, no processes;
2. **storage**: :mod:`exesdb.storage`, the engine and its group-committing writer;
3. **systems**: :mod:`exesdb.systems`, the processes of a store's supervision tree, its
   folders laid out as the tree;
4. **API**: :mod:`exesdb.gateway`, what a program calls;
5. **front ends**: :mod:`exesdb.grpc` (KurrentDB's protocol), :mod:`exesdb.http` (the
   node's web console, metrics and health checks), :mod:`.stores` (starting a
   store with its front ends), :mod:`.application`, :mod:`.cli` (the command line) and
   :mod:`.oplog` (what the command logs for its operator),
   :mod:`.devcluster` and :mod:`.pgserver` (a throw-away local cluster on its own
   PostgreSQL), and :mod:`.logins` (the credential checks both network front ends share).
"""

from . import gateway
from .constants import ANY, END, NO_STREAM, STREAM_EXISTS, ExpectedVersion
from .errors import (
    ExESDBError,
    InvalidArgument,
    StorageError,
    StoreAlreadyStarted,
    StoreLocked,
    StoreNotFound,
    StoreUnavailable,
    StreamDeleted,
    SubscriptionNotFound,
    WrongExpectedVersion,
)
from .events import EventRecord, Filter, NewEvent, Snapshot
from .options import StoreOptions
from .stores import start_store, stop_store, store_child_spec
from .subscriptions import Events, Subscription, SubscriptionLost
from .systems import System
from .systems.store import StoreInfo

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
    "SubscriptionLost",
    "SubscriptionNotFound",
    "System",
    "WrongExpectedVersion",
    "gateway",
    "start_store",
    "stop_store",
    "store_child_spec",
]
