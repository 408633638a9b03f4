"""StoreSystem: the process that opens a store's storage, its writer, and the store's
cluster membership and registration.

``StoreSystem`` (rest_for_one, 5 restarts in 30 s) starts, in order:

* :class:`Store`, which takes the store directory's lock and opens the storage engine
  (closing it when it ends, however it ends);
* the group-committing writer (:mod:`exesdb.storage.writer`) on that storage;
* :class:`StoreCluster`, which knows who leads the store (this node, in ``single`` mode);
* :class:`StoreRegistry`, which records the store's configuration for
  :func:`exesdb.gateway.list_stores`.

Being rest_for_one, a restart of the Store restarts everything after it, so nothing keeps
using a closed storage.
"""

from __future__ import annotations

import fcntl
import logging
import operator
import os
from pathlib import Path
from typing import Any, Final, TypeAlias, assert_never

import attrs
import trio

import otp
from otp import registry, supervisor
from otp.lowlevel import NodeVar, on_exit
from otp.supervisor import ChildSpec

from ..errors import CorruptData, InvalidArgument, StoreLocked, StoreUnavailable
from ..naming import REGISTRY, child_spec_id, genserver_name
from ..options import StoreOptions
from ..storage import Appended, Backend, Writer
from ..storage import writer as storage_writer
from ..storage.sqlite_schema import DB_FILE
from ..storage.verify import VerifyReport, verify_store
from .backends import needs_dir_lock, open_backend
from .commits import Committed, notify_commit, storage_opened
from .leadership import is_leading
from .processes import StoreServer, StoreSupervisor
from .pubsub import store_log
from .stats import storage_counters

__all__ = [
    "ClusterRequest",
    "IsLeader",
    "Store",
    "StoreCluster",
    "StoreInfo",
    "StoreRegistry",
    "StoreSystem",
    "backend_of",
    "is_leader",
    "lock_store_dir",
    "node_stores",
    "registered_stores",
    "verify_at_start",
    "writer_name",
]

LOCK_FILE = "LOCK"


def _open_lock(store_id: str, directory: Path) -> int:
    """Create ``directory`` and take its lock file; blocking, so run in a thread."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"data_dir: cannot create {directory}: {exc.strerror}") from None
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only mount, an immutable directory, permissions
        raise InvalidArgument(f"data_dir: {directory} is not writable: cannot open its lock "
                              f"file ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(store_id, str(directory)) from None
    return fd


_closing: trio.lowlevel.RunVar[dict[str, trio.Event]] = trio.lowlevel.RunVar("exesdb.closing")
"""The store directories (by :func:`_lock_key`) whose database a killed :class:`Store` is
still closing in the background, each with the event set once it is closed and the lock
released. A RunVar rather than a NodeVar: the flock belongs to the whole OS process, and
the close runs in a system task of the trio run, which can outlive the node."""


def _closing_stores() -> dict[str, trio.Event]:
    try:
        return _closing.get()
    except LookupError:
        table: dict[str, trio.Event] = {}
        _closing.set(table)
        return table


def _lock_key(directory: Path) -> str:
    return os.path.abspath(directory)  # string work only: no I/O on the trio thread


async def lock_store_dir(store_id: str, directory: Path) -> int:
    """Create the store's directory and lock it; return the lock's file descriptor.

    If a store of this trio run that held the lock is still closing its database in the
    background (a killed :class:`Store` keeps the lock until its database is closed),
    waits for that first, so a store can be started again right after a kill. Raises
    :class:`exesdb.StoreLocked` if another store (in this or another OS process) holds it
    and :class:`exesdb.InvalidArgument` if it cannot be created.
    """
    closing = _closing_stores()
    key = _lock_key(directory)
    while (pending := closing.get(key)) is not None:
        await pending.wait()
    return await trio.to_thread.run_sync(_open_lock, store_id, directory)


def _verify_if_present(directory: Path) -> VerifyReport | None:
    return verify_store(directory) if (directory / DB_FILE).is_file() else None


async def verify_at_start(opts: StoreOptions) -> None:
    """Check the store's file fully (:func:`exesdb.storage.verify.verify_store`) before it
    starts (single mode; a store with no file yet passes): log the outcome, and each
    damage at ERROR (logger ``exesdb.systems.store.<store_id>``), then raise
    :class:`exesdb.errors.CorruptData` with a one-line summary if anything is damaged."""
    report = await trio.to_thread.run_sync(_verify_if_present, opts.store_dir)
    if report is None:
        return
    logger = logging.getLogger(f"exesdb.systems.store.{opts.store_id}")
    if report.ok:
        logger.info("verified: %s", report.summary())
        return
    for damage in report.damage:
        logger.error("verify: %s", damage.message)
    count = len(report.damage)
    raise CorruptData(
        "file", f"--verify found {count} damaged record{'s' if count > 1 else ''}, the first: "
                f"{report.damage[0].message}; 'python -m exesdb verify --store-id "
                f"{opts.store_id}' lists them", key=str(report.path))


def backend_of(store_id: str) -> Backend:
    """The open storage of ``store_id``; :class:`StoreUnavailable` while it restarts."""
    entries = registry.lookup(REGISTRY, (store_id, Store))
    if entries and isinstance(entries[0][1], Backend):
        return entries[0][1]
    raise StoreUnavailable(store_id, "its storage is not open")


def writer_name(store_id: str) -> Any:
    """The name of the store's group-committing writer."""
    return genserver_name(Writer, store_id)


class Store(StoreServer):
    """Opens the store's storage in ``<data_dir>/<store_id>/`` and holds its lock (in
    cluster mode: its PostgreSQL schema, no folder or lock; see
    :mod:`exesdb.systems.backends`).

    The open :class:`~exesdb.storage.Backend` is published as this process's registry
    value (see :func:`backend_of`), counting into the store's counters of this node
    (:func:`~exesdb.systems.stats.storage_counters`). When the process ends, however it
    ends (killed too), the storage is closed, exactly once, and only then the lock
    released: never earlier, so no other OS process can open the database while this one
    has it open, and always, so the store can be started again (see :meth:`_release`).
    """

    async def init(self, opts: StoreOptions) -> None:
        await super().init(opts)
        otp.trap_exits(True)  # so that a supervisor's shutdown runs terminate
        self.lock_fd: int | None = (await lock_store_dir(opts.store_id, opts.store_dir)
                                    if needs_dir_lock(opts) else None)  # cluster: no folder
        self.backend: Backend | None = None
        on_exit(otp.self(), self._release)
        self.backend = await open_backend(opts)
        self.backend.counters = storage_counters(opts.store_id)  # they outlive the backend
        storage_opened(opts.store_id, self.backend.last_position)
        registry.update_value(REGISTRY, (opts.store_id, Store), lambda _: self.backend)
        store_log(opts.store_id, logging.INFO, f"storage open: {self.backend!r}")
        unclean = getattr(self.backend, "unclean_stop", None)  # SQLite's marker file
        if unclean:
            logging.getLogger(f"exesdb.systems.store.{opts.store_id}").warning(
                "store %s: %s", opts.store_id, unclean)

    async def terminate(self, reason: Any) -> None:
        if self.backend is not None:
            await self.backend.close()  # if cancelled, the close goes on: see _release
            self.backend = None  # closed: the exit hook releases the lock at once

    def _release(self, reason: Any) -> None:
        """Exit hook: runs however the process ends, before its exit is signalled.

        If the storage is closed (by :meth:`terminate`), or was never opened, releases the
        lock at once. Otherwise (the process was killed, in :meth:`terminate` or not) it
        closes the storage in a system task, which then releases the lock; until then
        :func:`lock_store_dir` in this trio run waits for it rather than failing.
        """
        fd, self.lock_fd = self.lock_fd, None
        backend, self.backend = self.backend, None
        if fd is None:  # no lock: cluster mode (the storage is in PostgreSQL), or not open
            if backend is not None:
                trio.lowlevel.spawn_system_task(_close_in_background, self.store_id, backend,
                                                name=f"closing store {self.store_id!r}")
            return
        if backend is None:
            os.close(fd)  # releases the flock; closing a lock file does not block
            return
        key = _lock_key(self.opts.store_dir)
        done = trio.Event()
        trio.lowlevel.spawn_system_task(_close_then_unlock, self.store_id, backend, fd, key,
                                        done, name=f"closing store {self.store_id!r}")
        _closing_stores()[key] = done


async def _close_in_background(store_id: str, backend: Backend) -> None:
    """Close a killed store's storage that holds no lock (cluster mode); a system task:
    it never raises (a failure is logged)."""
    try:
        with trio.CancelScope(shield=True):
            await backend.close()
    except Exception:
        logging.getLogger(f"exesdb.systems.store.{store_id}").exception(
            "closing the storage of the ended Store process failed")


async def _close_then_unlock(store_id: str, backend: Backend, fd: int, key: str,
                             done: trio.Event) -> None:
    """Close a killed store's storage, then release its lock and set ``done``.

    A system task, so it never raises: the close completes even if the run is ending
    (shielded), and the lock is released even if the close failed (which is logged).
    """
    try:
        with trio.CancelScope(shield=True):
            await backend.close()
    except Exception:
        logging.getLogger(f"exesdb.systems.store.{store_id}").exception(
            "closing the storage of the ended Store process failed")
    finally:
        os.close(fd)  # releases the flock
        closing = _closing_stores()
        if closing.get(key) is done:
            del closing[key]
        done.set()


def _writer_spec(opts: StoreOptions) -> ChildSpec:
    async def start() -> otp.Pid:
        backend = backend_of(opts.store_id)
        return await storage_writer.start_link(
            backend, name=writer_name(opts.store_id),
            on_commit=lambda ops, results: _committed(opts.store_id, backend, ops, results))

    return ChildSpec(id=child_spec_id(Writer, opts.store_id), start=start, shutdown=30.0)


_event_type: Final = operator.attrgetter("event_type")


def _committed(store_id: str, backend: Backend, ops: list[Any], results: list[Any]) -> None:
    """After each transaction: tell the store's readers what it appended."""
    streams: set[str] = set()
    types: set[str] = set()
    for op, result in zip(ops, results, strict=True):
        if type(result) is Appended:  # events were written (not a re-send)
            streams.add(op.stream_id)
            types.update(map(_event_type, op.events))
    if streams:
        notify_commit(store_id, Committed(backend.last_position, frozenset(streams),
                                          frozenset(types)))


@attrs.frozen
class IsLeader:
    """Reply: whether this node leads the store (:func:`is_leader`)."""


ClusterRequest: TypeAlias = IsLeader
"""Every request :class:`StoreCluster` serves."""


class StoreCluster(StoreServer):
    """Knows which node leads the store. In ``single`` mode this node leads from the start;
    :func:`is_leader` asks it (:data:`ClusterRequest`), as the leader worker does when it
    starts."""

    async def init(self, opts: StoreOptions) -> None:
        await super().init(opts)
        self.leader = otp.self() if opts.db_type == "single" else None

    async def handle_call(self, request: Any, from_: otp.gen_server.From) -> Any:
        if not isinstance(request, ClusterRequest):
            return await super().handle_call(request, from_)
        match request:
            case IsLeader():  # cluster mode: as the store's LeaderElector decided
                return self.leader is not None or is_leading(self.store_id)
            case _:
                assert_never(request)


async def is_leader(store_id: str, timeout: float = 5.0) -> bool:
    """Whether this node leads ``store_id`` (asks its :class:`StoreCluster`)."""
    return bool(await otp.gen_server.call(genserver_name(StoreCluster, store_id), IsLeader(),
                                          timeout))


@attrs.frozen
class StoreInfo:
    """What :func:`exesdb.gateway.list_stores` reports of a running store."""

    store_id: str
    data_dir: str
    options: dict[str, Any]
    status: str


_stores: NodeVar[dict[str, StoreOptions]] = NodeVar("exesdb.stores", factory=dict)


def node_stores() -> dict[str, StoreOptions]:
    """The options of the stores registered on this node, by store id (the gateway's
    check that a store runs)."""
    return _stores.get()


class StoreRegistry(StoreServer):
    """Records the store's configuration on this node, where
    :func:`exesdb.gateway.list_stores` finds it; the record goes when the process does."""

    async def init(self, opts: StoreOptions) -> None:
        await super().init(opts)
        table = node_stores()
        table[opts.store_id] = opts
        on_exit(otp.self(), lambda _reason: table.pop(opts.store_id, None))


def registered_stores() -> list[StoreOptions]:
    """The options of every store registered on this node, sorted by store id."""
    table = node_stores()
    return [table[k] for k in sorted(table)]


class StoreSystem(StoreSupervisor):
    """rest_for_one, at most 5 restarts in 30 s: Store, writer, StoreCluster, StoreRegistry."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [Store.child_spec(opts), _writer_spec(opts), StoreCluster.child_spec(opts),
             StoreRegistry.child_spec(opts)],
            strategy="rest_for_one", intensity=5, period=30,
        )
