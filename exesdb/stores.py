"""Starting stores with their front ends: the public way in for an embedding program.

:func:`start_store` and :func:`store_child_spec` run a store's tree
(:class:`exesdb.systems.System`) with exesdb's own front ends (:data:`FRONTENDS`: the gRPC
gateway, when the options set ``grpc_port``). They live above the API and the gRPC
gateway so that the systems never import what is built on them.
"""

from __future__ import annotations

import os
from typing import Any, Final

import otp
from otp.supervisor import ChildSpec

from .grpc.listener import frontend as grpc_frontend
from .options import resolve_options
from .systems import Frontend, System, start_system, stop_store

__all__ = ["FRONTENDS", "start_store", "stop_store", "store_child_spec"]

FRONTENDS: Final[tuple[Frontend, ...]] = (grpc_frontend,)
"""The front ends every store started here runs when its options ask for them."""


async def start_store(
    store_id: str | None = None, data_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> otp.Pid:
    """Start the store ``store_id`` on this node, linked to the caller; return the pid of
    its System once every process of its tree (and its gRPC gateway, when ``grpc_port``
    is set) has started.

    Options are ExESDB's (see :mod:`exesdb.options`); each missing one is read from its
    ``EX_ESDB_<KEY>`` variable. Raises :class:`exesdb.InvalidArgument` for bad options,
    :class:`exesdb.StoreAlreadyStarted` if it runs on this node, :class:`exesdb.StoreLocked`
    if another OS process holds its directory, and the store's own error (for example
    :class:`exesdb.StorageError` for a damaged file) if it cannot start.
    """
    opts = resolve_options(options, store_id=store_id, data_dir=data_dir)
    return await start_system(opts, FRONTENDS)


def store_child_spec(**options: Any) -> ChildSpec:
    """The child spec of a store with exesdb's front ends, to run it in your own
    supervision tree: ``store_child_spec(store_id=..., data_dir=..., grpc_port=...)``
    (missing options come from ``EX_ESDB_<KEY>``; bad ones raise
    :class:`exesdb.InvalidArgument` here)."""
    return System.child_spec(resolve_options(options), frontends=FRONTENDS)
