"""Each store's storage counters, kept per node for as long as the node runs.

:func:`storage_counters` gives the :class:`~exesdb.storage.stats.StorageStats` of a store
id, the same object every time in a node: the store's :class:`~exesdb.systems.store.Store`
hands it to the storage it opens (:attr:`exesdb.storage.Backend.counters`), so the counts
go on across restarts of the store's processes, and across a stop and a start of the
store, as Prometheus counters should; the metrics read it (:mod:`exesdb.http.metrics`).
"""

from __future__ import annotations

from otp.lowlevel import NodeVar

from ..storage.stats import StorageStats

__all__ = ["storage_counters"]

_counters: NodeVar[dict[str, StorageStats]] = NodeVar("exesdb.storage_counters",
                                                      factory=dict)


def storage_counters(store_id: str) -> StorageStats:
    """The storage counters of ``store_id`` on this node (made the first time asked)."""
    table = _counters.get()
    counters = table.get(store_id)
    if counters is None:
        counters = table[store_id] = StorageStats()
    return counters
