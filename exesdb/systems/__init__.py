"""The systems: a store's supervision tree, one module per ``*System`` with its workers.

The folders follow the tree::

    System                  rest_for_one                  (this module)
    ├─ PubSubSystem         the store's pub/subs          pubsub.py
    ├─ LoggingSystem        its log workers               pubsub.py
    ├─ CoreSystem           one_for_all, 3 in 60 s        (this module)
    │  ├─ StoreSystem       storage, writer, leadership   store.py
    │  ├─ PersistenceSystem per-stream workers            persistence.py
    │  └─ NotificationSystem                              notification/
    │     ├─ LeaderSystem   subscriptions, leadership     notification/leader.py
    │     ├─ EmitterSystem  delivery                      notification/emitters.py
    │     └─ SubscriptionHealthMonitor                    notification/health.py
    ├─ ClusterSystem        cluster mode only             cluster/
    │  ├─ Membership        this node's members row       cluster/membership.py
    │  ├─ NodeMonitor       who is alive, who leads       cluster/monitor.py
    │  ├─ PgListener        other nodes' commits          cluster/listener.py
    │  └─ LeaderElector     the leader lock and epoch     cluster/elector.py
    └─ GatewaySystem        gateway workers, front ends   gateway.py

(ClusterSystem sits between CoreSystem and GatewaySystem when ``db_type`` is
``cluster``, as ExESDB's does; the store is then in PostgreSQL.) ``CoreSystem`` starts
StoreSystem first, so the storage is open before anything that needs it starts (ExESDB
defect 6; ExESDB starts it last). Beside them: :mod:`.processes` (the base classes every
process of a store derives from), :mod:`.commits` (commit notifications),
:mod:`.backends` (which storage a store opens) and :mod:`.leadership` (whether this node
leads, and the fencing of the leader's writes).

The systems sit above the values and :mod:`exesdb.storage` and below the API
(:mod:`exesdb.gateway`); front ends built on the API (the gRPC gateway) are passed in as
:data:`Frontend` factories, never imported.

:func:`start_system` checks everything it can before it starts anything (the options, the
store id not running, the directory creatable and not locked), so a bad call changes
nothing on disk. :func:`exesdb.start_store` is the public way in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import trio

import otp
from otp import supervisor
from otp.supervisor import ChildSpec, StartChildError

from ..errors import ExESDBError, StoreAlreadyStarted, StoreNotFound
from ..naming import REGISTRY, child_spec_id, ensure_registry, genserver_name
from ..options import StoreOptions, check_grpc_files, resolve_options, validate_store_id
from .backends import needs_dir_lock
from .cluster import ClusterSystem
from .gateway import Frontend, GatewaySystem
from .notification import NotificationSystem
from .persistence import PersistenceSystem
from .processes import StoreSupervisor
from .pubsub import LoggingSystem, PubSubSystem
from .store import StoreSystem, lock_store_dir, verify_at_start

__all__ = [
    "CoreSystem",
    "Frontend",
    "System",
    "check_startable",
    "root_cause",
    "start_system",
    "stop_store",
    "system_name",
]


class CoreSystem(StoreSupervisor):
    """one_for_all, at most 3 restarts in 60 s: StoreSystem, PersistenceSystem,
    NotificationSystem."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [StoreSystem.child_spec(opts), PersistenceSystem.child_spec(opts),
             NotificationSystem.child_spec(opts)],
            strategy="one_for_all", intensity=3, period=60,
        )


class System(StoreSupervisor):
    """The top supervisor of one store (rest_for_one), with the store's front ends
    (:data:`Frontend`) under its GatewaySystem."""

    @classmethod
    async def start_link(
        cls, opts: StoreOptions, frontends: Sequence[Frontend] = ()
    ) -> otp.Pid:
        """Start the store's tree for ``opts`` with ``frontends``, under its store name."""
        pid = await supervisor.start_link(cls, opts, tuple(frontends),
                                          name=genserver_name(cls, opts.store_id))
        assert pid is not None
        return pid

    async def init(
        self, opts: StoreOptions, frontends: tuple[Frontend, ...] = ()
    ) -> supervisor.Spec:
        return supervisor.Spec(
            [PubSubSystem.child_spec(opts), LoggingSystem.child_spec(opts),
             CoreSystem.child_spec(opts),
             *([ClusterSystem.child_spec(opts)] if opts.db_type == "cluster" else []),
             GatewaySystem.child_spec(opts, frontends)],
            strategy="rest_for_one", intensity=10, period=60,
        )

    @classmethod
    def child_spec(  # type: ignore[override]
        cls, opts: StoreOptions | None = None, *, frontends: Sequence[Frontend] = (),
        **options: Any,
    ) -> ChildSpec:
        """The child spec of a store: ``System.child_spec(store_id=..., data_dir=...)``
        (missing options come from ``EX_ESDB_<KEY>``), or from a :class:`StoreOptions`.

        It runs only the ``frontends`` given; :func:`exesdb.store_child_spec` is the same
        with exesdb's own (the gRPC gateway when ``grpc_port`` is set)."""
        resolved = opts if opts is not None else resolve_options(options)
        chosen = tuple(frontends)

        async def start(*_extra: Any) -> otp.Pid:
            await ensure_registry()
            return await cls.start_link(resolved, chosen)

        return ChildSpec(id=child_spec_id(cls, resolved.store_id), start=start,
                         type="supervisor")


def system_name(store_id: str) -> Any:
    """The name of the store's System."""
    return genserver_name(System, store_id)


async def start_system(opts: StoreOptions, frontends: Sequence[Frontend] = ()) -> otp.Pid:
    """Start the store ``opts.store_id`` on this node with ``frontends``, linked to the
    caller; return the pid of its System once every process of its tree has started.

    Raises :class:`exesdb.StoreAlreadyStarted` if it runs on this node,
    :class:`exesdb.StoreLocked` if another OS process holds its directory, and the store's
    own error (for example :class:`exesdb.StorageError` for a damaged file) if it cannot
    start.
    """
    await ensure_registry()
    await check_startable(opts)
    try:
        return await System.start_link(opts, frontends)
    except otp.AlreadyStarted as exc:
        raise StoreAlreadyStarted(opts.store_id, exc.pid) from None
    except StartChildError as exc:
        raise root_cause(exc) from exc


async def check_startable(opts: StoreOptions) -> None:
    """Fail now, before anything starts, if the store cannot start: it runs on this node
    (:class:`exesdb.StoreAlreadyStarted`), a TLS or users file it names is missing or its
    directory cannot be created (:class:`exesdb.InvalidArgument`) or another store holds
    it (:class:`exesdb.StoreLocked`); with ``opts.verify``, its file is damaged
    (:class:`exesdb.errors.CorruptData`, see :func:`~exesdb.systems.store.verify_at_start`).
    """
    running = otp.whereis(system_name(opts.store_id)) if otp.whereis(REGISTRY) else None
    if running is not None:
        raise StoreAlreadyStarted(opts.store_id, running)
    await trio.to_thread.run_sync(check_grpc_files, opts)
    if needs_dir_lock(opts):  # cluster mode keeps no folder: the store is in PostgreSQL
        fd = await lock_store_dir(opts.store_id, opts.store_dir)
        try:
            if opts.verify:  # under the lock: no other process writes while it checks
                await verify_at_start(opts)
        finally:
            await trio.to_thread.run_sync(os.close, fd)


def root_cause(exc: StartChildError) -> Exception:
    """The store's own error at the bottom of nested failed starts, if there is one."""
    reason: Any = exc
    while isinstance(reason, StartChildError | otp.InitError):
        reason = reason.reason
    return reason if isinstance(reason, ExESDBError) else exc


async def stop_store(store_id: str, timeout: float | None = None) -> None:
    """Stop the store in order (reverse start order, each process per its shutdown).

    Raises :class:`exesdb.StoreNotFound` if it is not running on this node, and
    :class:`otp.CallTimeout` if it is not gone within ``timeout`` seconds.
    """
    validate_store_id(store_id)
    pid = otp.whereis(system_name(store_id)) if otp.whereis(REGISTRY) else None
    if pid is None:
        raise StoreNotFound(store_id)
    await supervisor.stop(pid, timeout=timeout)
