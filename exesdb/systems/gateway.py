"""GatewaySystem: the pool of gateway workers that serve a store's API.

Every call of :mod:`exesdb.gateway` goes to a gateway worker of the store it names (ExESDB
defect 2: it went to a random worker of any store). A worker never waits on the storage:
it finds (or starts) the per-stream or per-snapshot worker the request is for and hands
the call on to it (``gen_server.forward``), which answers the caller directly. So a small
pool serves any number of concurrent callers, and the storage's group commit sees them all.

Appends, the hot path, skip the stream's writer worker: a gateway worker hands an
:class:`~exesdb.storage.Append` straight to the store's group-committing writer, which
writes the requests it receives in arrival order, so one stream's appends keep their
order as they did through the stream's worker (which only passed them on), one process
hop sooner. Deletes still go through the stream's writer worker. As a gateway worker
does nothing with an append but pass it on, :func:`exesdb.gateway.append_events` (like
the gRPC door) sends it to the writer itself (:func:`store_writer`), one more hop sooner
(about 3 of 17 us of the trio thread's CPU per append with 100 writers), and through a
gateway worker only when the writer is not running (its errors).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Literal, TypeAlias, assert_never, get_args

import attrs

import otp
from otp import gen_server, supervisor
from otp.lowlevel import NodeVar

from ..errors import ExESDBError, StoreUnavailable
from ..naming import child_spec_id, genserver_name, partition_name
from ..options import StoreOptions
from ..storage import Append, WriteOp
from .notification import LeaderTracker
from .notification.leader import TrackerRequest
from .persistence import (
    SnapshotRead,
    Snapshots,
    SnapshotsReaderWorker,
    SnapshotsWriterWorker,
    StreamRead,
    Streams,
    StreamsReaderWorker,
    StreamsWriterWorker,
    worker_for,
)
from .processes import StoreSupervisor
from .store import writer_name

__all__ = [
    "Frontend",
    "GatewayRequest",
    "GatewaySystem",
    "GatewayWorker",
    "Route",
    "Target",
    "ToTracker",
    "gateway_worker_name",
    "store_writer",
]

Target: TypeAlias = Literal["stream_writer", "stream_reader", "snapshot_writer",
                            "snapshot_reader"]
"""The kinds of per-key worker a gateway worker routes to."""


@attrs.frozen
class Route:
    """Hand ``payload`` on to the ``target`` worker of ``key`` (a stream id, or a (source,
    stream) uuid pair), started if it is not running; it answers the caller. ``payload``
    is what that worker serves: a write operation of the storage for a writer, a
    :data:`~exesdb.systems.persistence.StreamRead` or
    :data:`~exesdb.systems.persistence.SnapshotRead` for a reader."""

    target: Target
    key: Hashable
    payload: WriteOp | StreamRead | SnapshotRead


@attrs.frozen
class ToTracker:
    """Hand ``request`` on to the store's :class:`~exesdb.systems.notification.LeaderTracker`
    (subscriptions); it answers the caller."""

    request: TrackerRequest


GatewayRequest: TypeAlias = Route | ToTracker
"""Every request :class:`GatewayWorker` serves."""
_GATEWAY_REQUESTS: Final = get_args(GatewayRequest)  # for a fast isinstance

_NO_REPLY = otp.NoReply()
_KNOWN_LIMIT = 10_000  # workers a gateway worker remembers before it starts over

# target -> (owning supervisor, partition kind, worker class, idle option)
_TARGETS: dict[Target, tuple[type, str, type, str]] = {
    "stream_writer": (Streams, "writers", StreamsWriterWorker, "writer_idle_ms"),
    "stream_reader": (Streams, "readers", StreamsReaderWorker, "reader_idle_ms"),
    "snapshot_writer": (Snapshots, "writers", SnapshotsWriterWorker, "writer_idle_ms"),
    "snapshot_reader": (Snapshots, "readers", SnapshotsReaderWorker, "reader_idle_ms"),
}


# store id -> the store's group-committing writer, last seen (checked alive before each use)
_writers: NodeVar[dict[str, otp.Pid]] = NodeVar("exesdb.store_writers", factory=dict)


def store_writer(store_id: str) -> otp.Pid | None:
    """The pid of the store's group-committing writer on this node, None when it is not
    running (restarting, or no such store); looked up by name only when the one last
    seen has ended."""
    writers = _writers.get()
    pid = writers.get(store_id)
    if pid is not None and otp.is_alive(pid):
        return pid
    pid = otp.whereis(writer_name(store_id))
    if pid is None:
        writers.pop(store_id, None)
    else:
        writers[store_id] = pid
    return pid


def gateway_worker_name(store_id: str, index: int) -> Any:
    """The name of the store's ``index``-th gateway worker."""
    return partition_name(GatewayWorker, store_id, index)


class GatewayWorker(otp.GenServer):
    """Serves :data:`GatewayRequest`: hands a :class:`Route` on to the worker of its key (an
    append to the store's writer, a :class:`ToTracker` to the leader tracker), which
    answers the caller; answers
    :class:`exesdb.StoreUnavailable` itself when that worker cannot be started (part of
    the store is restarting)."""

    async def init(self, opts: StoreOptions, index: int) -> None:
        self.opts = opts
        self.index = index
        self.known: dict[tuple[Target, Hashable], otp.Pid] = {}  # the workers last used
        self.tracker = genserver_name(LeaderTracker, opts.store_id)
        self.writer = writer_name(opts.store_id)
        self.writer_pid: otp.Pid | None = None  # the store's writer, last seen
        self.routes = {
            target: (owner, kind, worker, getattr(opts, idle_option))
            for target, (owner, kind, worker, idle_option) in _TARGETS.items()
        }

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if type(request) is Route and type(request.payload) is Append:  # checked first:
            # the hot path goes straight to the writer (see the module docstring)
            pid = self.writer_pid
            if pid is None or not otp.is_alive(pid):
                pid = self.writer_pid = otp.whereis(self.writer)
            # Not running (restarting): the caller gets NoProc, StoreUnavailable.
            gen_server.forward(self.writer if pid is None else pid, request.payload, from_)
            return _NO_REPLY
        if not isinstance(request, _GATEWAY_REQUESTS):
            return await super().handle_call(request, from_)
        served: GatewayRequest = request
        match served:
            case Route():  # on every append and read: attributes are read directly, as
                # a positional class pattern costs ~0.35 us more (CPython 3.11)
                target, key = served.target, served.key
                known = self.known
                pid = known.get((target, key))
                if pid is None or not otp.is_alive(pid):
                    owner, kind, worker, idle_ms = self.routes[target]
                    store_id = self.opts.store_id
                    pid = otp.whereis(partition_name(worker, store_id, key))
                    if pid is None:
                        try:
                            pid = await worker_for(owner, kind, worker, store_id, key, idle_ms)
                        except (otp.OTPError, ExESDBError) as exc:
                            return StoreUnavailable(store_id,
                                                    f"no {target} for {key!r}: {exc}")
                    if len(known) >= _KNOWN_LIMIT:
                        known.clear()
                    known[(target, key)] = pid
                gen_server.forward(pid, served.payload, from_)
            case ToTracker(tracker_request):  # subscriptions: the leader tracker keeps them
                gen_server.forward(self.tracker, tracker_request, from_)
            case _:
                assert_never(served)
        return _NO_REPLY


def _worker_spec(opts: StoreOptions, index: int) -> supervisor.ChildSpec:
    name = gateway_worker_name(opts.store_id, index)

    async def start() -> otp.Pid | None:
        return await gen_server.start_link(GatewayWorker, opts, index, name=name)

    key: Hashable = (GatewayWorker, opts.store_id, index)
    return supervisor.ChildSpec(id=key, start=start, shutdown=10.0)


Frontend: TypeAlias = Callable[[StoreOptions], supervisor.ChildSpec | None]
"""A front end of the store (a network listener built on :mod:`exesdb.gateway`, such as
:func:`exesdb.grpc.listener.frontend`): given the store's options, the child spec of its
processes, or None when the options do not ask for it. The layers above the systems pass
them in (:func:`exesdb.start_store`), so the systems never import them."""


class GatewaySystem(StoreSupervisor):
    """one_for_one, 15 restarts in 60 s: ``gateway_pool_size`` gateway workers, then the
    store's front ends (:data:`Frontend`: the gRPC gateway when ``grpc_port`` is set). One
    for one: a restart of a front end leaves the gateway workers, and the other way round.
    """

    @classmethod
    async def start_link(
        cls, opts: StoreOptions, frontends: Sequence[Frontend] = ()
    ) -> otp.Pid:
        """Start the store's gateway system with ``frontends``."""
        pid = await supervisor.start_link(cls, opts, tuple(frontends),
                                          name=genserver_name(cls, opts.store_id))
        assert pid is not None
        return pid

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, opts: StoreOptions, frontends: Sequence[Frontend] = (), **overrides: Any
    ) -> supervisor.ChildSpec:
        """The child spec (type ``"supervisor"``) that starts it with ``frontends``."""

        async def start(*_extra: Any) -> otp.Pid:
            return await cls.start_link(opts, frontends)

        return supervisor.ChildSpec(id=child_spec_id(cls, opts.store_id), start=start,
                                    **{"type": "supervisor", **overrides})

    async def init(
        self, opts: StoreOptions, frontends: tuple[Frontend, ...] = ()
    ) -> supervisor.Spec:
        children = [_worker_spec(opts, i) for i in range(opts.gateway_pool_size)]
        children += [spec for make in frontends if (spec := make(opts)) is not None]
        return supervisor.Spec(children, strategy="one_for_one", intensity=15, period=60)
