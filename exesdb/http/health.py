"""``GET /health/live`` and ``GET /health/ready``: for load balancers and orchestrators.

* **live**: 200 ``{"status": "live"}`` whenever the node's HTTP listener answers (so
  while the node runs).
* **ready**: 200 when every store the listener was configured with (by default every store
  running on the node) answers a call within its ``timeout`` option: a read of the last
  event of ``$all`` through :mod:`exesdb.gateway`, which crosses a gateway worker, the
  ``$all`` reader and the storage. Otherwise 503. The body names each store and whether it
  is ready: ``{"status": "ready" | "not ready", "stores": {"<id>": "ready" | "<why not>"}}``.

Neither needs credentials (probes rarely have them); they tell which stores run and
nothing of their data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from ..constants import END
from ..errors import ExESDBError, StoreNotFound
from ..gateway import list_stores, read_all

__all__ = ["liveness", "readiness"]


def liveness() -> dict[str, Any]:
    """The body of a live answer."""
    return {"status": "live"}


async def readiness(stores: Sequence[str] | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether every store of ``stores`` (None: every store running) answers within its
    timeout, and the body to answer with (see the module docstring)."""
    ids = [info.store_id for info in await list_stores()] if stores is None else list(stores)
    verdicts: dict[str, str] = dict.fromkeys(ids, "ready")

    async def check(store_id: str) -> None:
        try:
            await read_all(store_id, END, 1, "backward")
        except StoreNotFound:
            verdicts[store_id] = "not running"
        except ExESDBError as exc:
            verdicts[store_id] = f"not ready: {exc}"

    async with trio.open_nursery() as nursery:
        for store_id in ids:
            nursery.start_soon(check, store_id)
    ready = all(v == "ready" for v in verdicts.values())
    return ready, {"status": "ready" if ready else "not ready", "stores": verdicts}
