"""GatewaySystem: the pool of gateway workers that serve a store's API.

Every call of :mod:`exesdb.gateway` goes to a gateway worker of the store it names (ExESDB
defect 2: it went to a random worker of any store). A worker never waits on the storage:
it finds (or starts) the per-stream or per-snapshot worker the request is for and hands
the call on to it (``gen_server.forward``), which answers the caller directly. So a small
pool serves any number of concurrent callers, and the storage's group commit sees them all.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import otp
from otp import gen_server, supervisor

from .errors import ExESDBError
from .naming import genserver_name, partition_name
from .notification import LeaderTracker
from .options import StoreOptions
from .persistence import (
    Snapshots,
    SnapshotsReaderWorker,
    SnapshotsWriterWorker,
    Streams,
    StreamsReaderWorker,
    StreamsWriterWorker,
    worker_for,
)
from .processes import StoreSupervisor
from .store_errors import StoreUnavailable

__all__ = ["GatewaySystem", "GatewayWorker", "gateway_worker_name"]

_NO_REPLY = otp.NoReply()
_KNOWN_LIMIT = 10_000  # workers a gateway worker remembers before it starts over

# target -> (owning supervisor, partition kind, worker class, idle option)
_TARGETS: dict[str, tuple[type, str, type, str]] = {
    "stream_writer": (Streams, "writers", StreamsWriterWorker, "writer_idle_ms"),
    "stream_reader": (Streams, "readers", StreamsReaderWorker, "reader_idle_ms"),
    "snapshot_writer": (Snapshots, "writers", SnapshotsWriterWorker, "writer_idle_ms"),
    "snapshot_reader": (Snapshots, "readers", SnapshotsReaderWorker, "reader_idle_ms"),
}


def gateway_worker_name(store_id: str, index: int) -> Any:
    """The name of the store's ``index``-th gateway worker."""
    return partition_name(GatewayWorker, store_id, index)


class GatewayWorker(otp.GenServer):
    """Routes a request ``(target, key, payload)`` to the worker of ``key`` and hands the
    call on to it; answers :class:`exesdb.StoreUnavailable` itself when that worker cannot
    be started (part of the store is restarting)."""

    async def init(self, opts: StoreOptions, index: int) -> None:
        self.opts = opts
        self.index = index
        self.known: dict[tuple[str, Hashable], otp.Pid] = {}  # the workers last used
        self.tracker = genserver_name(LeaderTracker, opts.store_id)
        self.routes = {
            target: (owner, kind, worker, getattr(opts, idle_option))
            for target, (owner, kind, worker, idle_option) in _TARGETS.items()
        }

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        target, key, payload = request
        if target == "tracker":  # subscriptions: the leader tracker keeps them
            gen_server.forward(self.tracker, payload, from_)
            return _NO_REPLY
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
                    return StoreUnavailable(store_id, f"no {target} for {key!r}: {exc}")
            if len(known) >= _KNOWN_LIMIT:
                known.clear()
            known[(target, key)] = pid
        gen_server.forward(pid, payload, from_)
        return _NO_REPLY


def _worker_spec(opts: StoreOptions, index: int) -> supervisor.ChildSpec:
    name = gateway_worker_name(opts.store_id, index)

    async def start() -> otp.Pid | None:
        return await gen_server.start_link(GatewayWorker, opts, index, name=name)

    key: Hashable = (GatewayWorker, opts.store_id, index)
    return supervisor.ChildSpec(id=key, start=start, shutdown=10.0)


class GatewaySystem(StoreSupervisor):
    """one_for_one, 15 restarts in 60 s: ``gateway_pool_size`` gateway workers, then, when
    ``grpc_port`` is set, the store's gRPC gateway (:class:`exesdb.grpc.listener.GrpcSystem`:
    the persistent subscription groups and the listener). One for one: a restart of the
    gRPC gateway leaves the gateway workers, and the other way round."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        children = [_worker_spec(opts, i) for i in range(opts.gateway_pool_size)]
        if opts.grpc_port is not None:
            from .grpc.listener import GrpcSystem  # here: the gRPC services import the gateway

            children.append(GrpcSystem.child_spec(opts))
        return supervisor.Spec(children, strategy="one_for_one", intensity=15, period=60)
