"""Which storage a store opens: :func:`open_backend`.

* ``db_type="single"``: a :class:`~exesdb.storage.SQLiteBackend` in the store's folder,
  which the :class:`~exesdb.systems.store.Store` process holds locked
  (:func:`needs_dir_lock`), so no two OS processes open it.
* ``db_type="cluster"``: a :class:`~exesdb.storage.postgres.PostgresBackend` in the store's
  schema of the ``pg_dsn`` database, which every node of the store opens at once; no
  folder is used or locked. Its connections show as ``exesdb <store> <node> ...`` in
  ``pg_stat_activity``. A database statement may take half the store's ``timeout`` (a
  call fails before the caller gives up on it), a connection attempt as long, at most 5
  s. The store's leadership starts being tracked (:mod:`exesdb.systems.leadership`), so
  its leader-only writes are fenced from the first.
"""

from __future__ import annotations

from ..options import StoreOptions
from ..storage import Backend, SQLiteBackend
from ..storage.postgres import PostgresBackend
from .leadership import forget, track

__all__ = ["application_name", "needs_dir_lock", "open_backend"]


def needs_dir_lock(opts: StoreOptions) -> bool:
    """Whether the store keeps its data in its folder, locked while open (single mode)."""
    return opts.db_type == "single"


def application_name(opts: StoreOptions) -> str:
    """The prefix of the store's connection names in ``pg_stat_activity`` (cluster
    mode): ``"exesdb <store_id> <node>"``."""
    return f"exesdb {opts.store_id} {opts.cluster_node_name}"


async def open_backend(opts: StoreOptions) -> Backend:
    """Open the store's storage for ``opts`` (see the module docstring). Raises the
    backend's errors (:class:`exesdb.StorageError`, and
    :class:`~exesdb.errors.StorageUnavailable` for a database out of reach)."""
    if opts.db_type == "cluster":
        assert opts.pg_dsn is not None  # StoreOptions requires it in cluster mode
        backend: Backend = await PostgresBackend.open(
            opts.pg_dsn, opts.store_id, durable=opts.durable,
            connect_timeout=min(5.0, opts.timeout_s / 2),
            statement_timeout=opts.timeout_s / 2,
            application_name=application_name(opts))
        track(opts.store_id, opts.cluster_node_name)
        return backend
    forget(opts.store_id)
    return await SQLiteBackend.open(opts.store_dir, durable=opts.durable)
