"""What a store's storage has done, counted where the work happens, read by the metrics.

:class:`StorageStats` holds plain counters and :class:`Histogram`\\ s. The code that does
the work adds to them in place (an integer or float add, a bisect per histogram
observation; no lock, no allocation per event): the writer (:mod:`.writer`) per
transaction and per append, the SQLite backend per commit and per read. The metrics
front end (:mod:`exesdb.http.metrics`) copies them when scraped (:meth:`StorageStats.copy`).

Guarantees: counters only grow (for the life of the object: a store keeps one per store id
for the life of its node, see :func:`exesdb.systems.stats.storage_stats`); every field is
written by one task at a time (the writer's, or the backend's write thread) and an int or
float attribute read is atomic, so a reader on another thread sees each value whole,
though a copy taken while a transaction is being counted may hold some of its counts and
not others.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "Histogram",
    "StorageStats",
]

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                          1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the latency histograms' buckets."""
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
"""Upper bounds of the group-commit batch size histogram's buckets (operations)."""


class Histogram:
    """Observations counted into fixed buckets: ``bounds`` the upper bounds (increasing),
    ``counts`` the observations per bucket (not cumulative; one more entry than
    ``bounds``, the last for values above every bound), ``total`` their sum.

    :meth:`observe` costs a bisect and two adds. Each histogram has one writer at a time.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"bounds: must be increasing and distinct, got {bounds!r}")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts: list[int] = [0] * (len(self.bounds) + 1)
        self.total: float = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is >= it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        """How many observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` per bucket, +Inf last, as Prometheus
        exposes a histogram."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def copy(self) -> Histogram:
        """A copy of the current values."""
        out = Histogram.__new__(Histogram)
        out.bounds, out.counts, out.total = self.bounds, list(self.counts), self.total
        return out


class StorageStats:
    """The counters of one store's storage (see the module docstring).

    Writes, counted by the writer once a transaction is durable: ``transactions``,
    ``appends`` (append operations that wrote events; an idempotent re-send writes
    nothing and is not counted), ``events_appended``, ``bytes_appended`` (the events'
    encoded data plus metadata), ``batch_size`` (operations per transaction),
    ``transaction_seconds`` (the backend's write of a batch), ``append_seconds`` (an
    append's wait at the writer: from its arrival until it is durable and answered).

    The backend's commit: ``fsync_seconds`` (SQLite: the ``COMMIT`` statement, which writes
    the WAL and, when durable, fsyncs it).

    Reads, counted by the backend: ``stream_reads``, ``all_reads`` (reads of one stream,
    of ``$all``) and ``events_read`` (the events they returned).
    """

    __slots__ = ("all_reads", "append_seconds", "appends", "batch_size", "bytes_appended",
                 "events_appended", "events_read", "fsync_seconds", "stream_reads",
                 "transaction_seconds", "transactions")

    def __init__(self) -> None:
        self.transactions = 0
        self.appends = 0
        self.events_appended = 0
        self.bytes_appended = 0
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.transaction_seconds = Histogram(LATENCY_BUCKETS)
        self.append_seconds = Histogram(LATENCY_BUCKETS)
        self.fsync_seconds = Histogram(LATENCY_BUCKETS)
        self.stream_reads = 0
        self.all_reads = 0
        self.events_read = 0

    def copy(self) -> StorageStats:
        """A copy whose histograms are copies too (what a scrape reads)."""
        out = StorageStats()
        for name in ("transactions", "appends", "events_appended", "bytes_appended",
                     "stream_reads", "all_reads", "events_read"):
            setattr(out, name, getattr(self, name))
        for name in ("batch_size", "transaction_seconds", "append_seconds", "fsync_seconds"):
            setattr(out, name, getattr(self, name).copy())
        return out
