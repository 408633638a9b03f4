"""``GET /metrics``: the node and its stores in Prometheus's text format, by
``prometheus-client``.

Each :class:`Metrics` (one per HTTP listener, so one per node) has a
:class:`prometheus_client.CollectorRegistry` of its own, never the library's global one,
so several nodes in one OS process do not collide. It holds ``prometheus-client``'s
process collector (``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
open file descriptors, ...) and :class:`SampleCollector`, which turns a
:class:`~.sample.NodeSample` into the ``exesdb_*`` families (:data:`METRICS` lists them).

Cheap by construction: the counters are counted where the work happens (the writer, the
SQLite backend, the gRPC server) and only copied here; a scrape gathers the sample on the
trio thread (a health check and a subscription listing per store), then renders it, and
reads ``/proc``, on a worker thread. Scrapes render one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Final

import trio
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..storage.stats import Histogram
from .sample import QUEUE_THRESHOLD, NodeSample, StoreSample, sample_node

__all__ = ["CONTENT_TYPE", "METRICS", "Metrics", "SampleCollector"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of the exposition: Prometheus's text format 0.0.4, which every
Prometheus reads (``generate_latest`` writes it with the names escaped to underscores, and
every name here is already plain)."""

METRICS: Final[dict[str, tuple[str, str]]] = {
    # name (without _total): (type, help)
    "exesdb_store_up": ("gauge", "1 while the store runs, 0 while it restarts or is stopped"),
    "exesdb_head_position": ("gauge", "The $all position of the store's last event "
                             "(-1 when empty)"),
    "exesdb_appends": ("counter", "Append operations that wrote events"),
    "exesdb_events_appended": ("counter", "Events appended"),
    "exesdb_appended_bytes": ("counter", "Encoded data plus metadata bytes of the events "
                              "appended"),
    "exesdb_append_duration_seconds": ("histogram", "An append's wait at the store's "
                                       "writer, from its arrival until it is durable and "
                                       "answered"),
    "exesdb_transactions": ("counter", "Write transactions committed by the store's writer"),
    "exesdb_group_commit_batch_size": ("histogram", "Write operations per transaction "
                                       "(group commit)"),
    "exesdb_transaction_duration_seconds": ("histogram", "The storage's write of one "
                                            "transaction"),
    "exesdb_storage_fsync_duration_seconds": ("histogram", "SQLite's COMMIT of a "
                                              "transaction: the WAL written and, when "
                                              "durable, fsynced"),
    "exesdb_reads": ("counter", "Reads of the storage, by target (stream or all)"),
    "exesdb_events_read": ("counter", "Events returned by the storage's reads"),
    "exesdb_subscriptions": ("gauge", "Subscriptions, by type and kind (persistent or "
                             "transient)"),
    "exesdb_subscription_lag_events": ("gauge", "How far a subscription is behind the head "
                                       "of $all (of its stream, for a single-stream "
                                       "subscription), in positions"),
    "exesdb_subscription_in_flight_events": ("gauge", "Events delivered to a subscription's "
                                             "subscriber and not yet acknowledged"),
    "exesdb_persistent_group_consumers": ("gauge", "Consumers connected to a gRPC "
                                          "persistent subscription group"),
    "exesdb_persistent_group_in_flight_messages": ("gauge", "Messages a gRPC persistent "
                                                   "subscription group has in flight"),
    "exesdb_persistent_group_parked_messages": ("gauge", "Parked messages of a gRPC "
                                                "persistent subscription group"),
    "exesdb_grpc_calls": ("counter", "gRPC calls ended, by method and status code"),
    "exesdb_grpc_open_connections": ("gauge", "gRPC connections open now"),
    "exesdb_grpc_connections": ("counter", "gRPC connections accepted"),
    "exesdb_node_processes": ("gauge", "otp processes running on the node"),
    "exesdb_supervisor_restarts_observed": ("counter", "Children of a supervisor seen "
                                            "restarting (a new pid) by the console's tree "
                                            "watcher"),
    "exesdb_process_message_queue_length": ("gauge", "Messages waiting in the mailbox of a "
                                            "process of the tree, for mailboxes holding "
                                            f"{QUEUE_THRESHOLD} or more"),
}
"""Every ``exesdb_*`` family: its type and help (counters are exposed with ``_total``)."""


def _scalar(name: str, labels: Sequence[str]) -> CounterMetricFamily | GaugeMetricFamily:
    kind, documentation = METRICS[name]
    assert kind in ("counter", "gauge"), name
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=labels)
    return GaugeMetricFamily(name, documentation, labels=labels)


def _histogram(name: str, labels: Sequence[str]) -> HistogramMetricFamily:
    kind, documentation = METRICS[name]
    assert kind == "histogram", name
    return HistogramMetricFamily(name, documentation, labels=labels)


def _le(bound: float) -> str:
    """A bucket's upper bound as the exposition writes it (``0.005``, ``+Inf``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _add_histogram(family: HistogramMetricFamily, labels: list[str],
                   histogram: Histogram) -> None:
    buckets = [(_le(bound), float(count)) for bound, count in histogram.cumulative()]
    family.add_metric(labels, buckets, histogram.total)


def _store_metrics(stores: Sequence[StoreSample]) -> Iterator[Metric]:
    up = _scalar("exesdb_store_up", ["store"])
    head = _scalar("exesdb_head_position", ["store"])
    scalars = {name: _scalar(name, ["store"]) for name in (
        "exesdb_appends", "exesdb_events_appended", "exesdb_appended_bytes",
        "exesdb_transactions", "exesdb_events_read", "exesdb_grpc_open_connections",
        "exesdb_grpc_connections")}
    histograms = {name: _histogram(name, ["store"]) for name in (
        "exesdb_append_duration_seconds", "exesdb_group_commit_batch_size",
        "exesdb_transaction_duration_seconds", "exesdb_storage_fsync_duration_seconds")}
    reads = _scalar("exesdb_reads", ["store", "target"])
    subscriptions = _scalar("exesdb_subscriptions", ["store", "type", "kind"])
    lag = _scalar("exesdb_subscription_lag_events", ["store", "subscription", "type"])
    in_flight = _scalar("exesdb_subscription_in_flight_events", ["store", "subscription"])
    group_labels = ["store", "stream", "group"]
    consumers = _scalar("exesdb_persistent_group_consumers", group_labels)
    group_in_flight = _scalar("exesdb_persistent_group_in_flight_messages", group_labels)
    parked = _scalar("exesdb_persistent_group_parked_messages", group_labels)
    calls = _scalar("exesdb_grpc_calls", ["store", "method", "code"])
    for store in stores:
        sid = store.store_id
        up.add_metric([sid], 1.0 if store.status == "running" else 0.0)
        if store.head is not None:
            head.add_metric([sid], float(store.head))
        storage, grpc = store.storage, store.grpc
        for name, value in (("exesdb_appends", storage.appends),
                            ("exesdb_events_appended", storage.events_appended),
                            ("exesdb_appended_bytes", storage.bytes_appended),
                            ("exesdb_transactions", storage.transactions),
                            ("exesdb_events_read", storage.events_read),
                            ("exesdb_grpc_open_connections", grpc.connections),
                            ("exesdb_grpc_connections", grpc.connections_total)):
            scalars[name].add_metric([sid], float(value))
        for name, histogram in (("exesdb_append_duration_seconds", storage.append_seconds),
                                ("exesdb_group_commit_batch_size", storage.batch_size),
                                ("exesdb_transaction_duration_seconds",
                                 storage.transaction_seconds),
                                ("exesdb_storage_fsync_duration_seconds",
                                 storage.fsync_seconds)):
            _add_histogram(histograms[name], [sid], histogram)
        reads.add_metric([sid, "stream"], float(storage.stream_reads))
        reads.add_metric([sid, "all"], float(storage.all_reads))
        for (method, code), count in sorted(grpc.calls.items()):
            calls.add_metric([sid, method, code.name], float(count))
        if store.subscriptions is not None:
            counts: dict[tuple[str, str], int] = {}
            for sub in store.subscriptions:
                counts[(sub.type, sub.kind)] = counts.get((sub.type, sub.kind), 0) + 1
                if sub.lag is not None:
                    lag.add_metric([sid, sub.key, sub.type], float(sub.lag))
                if sub.in_flight is not None:
                    in_flight.add_metric([sid, sub.key], float(sub.in_flight))
            for (sub_type, kind), count in sorted(counts.items()):
                subscriptions.add_metric([sid, sub_type, kind], float(count))
        for group in store.groups or ():
            labels = [sid, group.stream, group.group]
            consumers.add_metric(labels, float(group.consumers))
            group_in_flight.add_metric(labels, float(group.in_flight))
            parked.add_metric(labels, float(group.parked))
    yield from (up, head, *scalars.values(), *histograms.values(), reads, subscriptions,
                lag, in_flight, consumers, group_in_flight, parked, calls)


class SampleCollector:
    """A ``prometheus-client`` collector of the ``exesdb_*`` families of :attr:`sample`
    (set before each collection; nothing while it is None)."""

    def __init__(self) -> None:
        self.sample: NodeSample | None = None

    def collect(self) -> Iterator[Metric]:
        """The families of :attr:`sample`."""
        sample = self.sample
        if sample is None:
            return
        yield from _store_metrics(sample.stores)
        processes = _scalar("exesdb_node_processes", [])
        processes.add_metric([], float(sample.processes))
        yield processes
        restarts = _scalar("exesdb_supervisor_restarts_observed", ["supervisor"])
        for path, count in sorted(sample.tree_restarts.items()):
            restarts.add_metric([path], float(count))
        yield restarts
        queues = _scalar("exesdb_process_message_queue_length", ["process"])
        for path, length in sorted(sample.long_queues.items()):
            queues.add_metric([path], float(length))
        yield queues


class Metrics:
    """The metrics of a node's stores (``stores``; None: every store running): see the
    module docstring. Making one reads ``/proc`` (the process collector): do it in a
    thread."""

    def __init__(self, stores: Sequence[str] | None = None, timeout: float = 5.0) -> None:
        self.stores = None if stores is None else tuple(stores)
        self.timeout = timeout
        self.registry = CollectorRegistry()
        self.collector = SampleCollector()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        self._lock = trio.Lock()

    async def render(self) -> bytes:
        """The exposition of the node now (Prometheus text format, :data:`CONTENT_TYPE`)."""
        sample = await sample_node(self.stores, self.timeout)
        async with self._lock:
            self.collector.sample = sample
            return await trio.to_thread.run_sync(generate_latest, self.registry)
