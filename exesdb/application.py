"""The exesdb application: the node's exesdb registry, one System per store, and the
node's HTTP listener.

``python -m exesdb start`` runs it. Its top supervisor (one_for_one) starts the registry
that holds every store process's name, then each store's System in the order given, then,
when it is given HTTP options, the node's :class:`exesdb.http.HttpSystem` (the console,
``/metrics`` and the health checks for these stores); a store whose tree gives up is
restarted on its own, and the others (and the HTTP listener) are untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import otp
from otp import registry, supervisor

from .http import HttpOptions
from .http import child_spec as http_child_spec
from .naming import REGISTRY
from .options import StoreOptions, resolve_options
from .stores import FRONTENDS
from .systems import System

__all__ = ["application"]


def application(
    store_ids: Sequence[str | StoreOptions], *, http: HttpOptions | None = None,
    **options: Any,
) -> otp.application.Application:
    """The exesdb application running ``store_ids`` with ``options`` (each missing option
    from its ``EX_ESDB_<KEY>`` variable). Options are checked here, before anything starts.

    An entry of ``store_ids`` may instead be a store's resolved :class:`StoreOptions`
    (its own options, ``options`` ignored for it): stores with different settings, for
    example each its own gRPC port. With ``http``, the node's HTTP listener serves these
    stores (:mod:`exesdb.http`); without it there is none.
    """
    stores = [s if isinstance(s, StoreOptions) else resolve_options(options, store_id=s)
              for s in store_ids]
    if len({s.store_id for s in stores}) != len(stores):
        raise ValueError(f"store ids must be distinct, got {list(store_ids)!r}")

    async def start(env: Mapping[str, Any]) -> otp.Pid | None:
        children = [registry.child_spec(keys="unique", name=REGISTRY)]
        children += [System.child_spec(opts, frontends=FRONTENDS) for opts in stores]
        if http is not None:  # last: it serves the stores from its first request
            children.append(http_child_spec(http, stores=[s.store_id for s in stores]))
        return await supervisor.start_link(children, strategy="one_for_one",
                                           intensity=10, period=60, name="exesdb")

    return otp.application.Application(
        "exesdb", start, env={"store_ids": tuple(s.store_id for s in stores)},
        description="exesdb event stores",
    )
