"""What a store's gRPC gateway has served, counted by its server, read by the metrics.

:class:`GrpcStats` counts the calls that ended, by method and status code, and the
connections open now. The server (:mod:`exesdb.grpc.server`) adds to it in place (a dict
update per call, an add per connection; nothing per message); the metrics front end
(:mod:`exesdb.http.metrics`) copies it when scraped.

:func:`grpc_counters` gives each store id one :class:`GrpcStats` for the life of its
node, so the counts go on across restarts of the store's listener.
"""

from __future__ import annotations

from typing import Final

from otp.lowlevel import NodeVar

from .rpc import StatusCode

__all__ = ["UNKNOWN_METHOD", "GrpcStats", "grpc_counters"]

UNKNOWN_METHOD: Final = "unknown"
"""The method label of calls to a path the server does not serve (so that arbitrary paths
never become labels)."""


class GrpcStats:
    """``calls``: ``(method path, status code) -> calls ended so``; ``connections``: the
    connections open now; ``connections_total``: every connection accepted."""

    __slots__ = ("calls", "connections", "connections_total")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, StatusCode], int] = {}
        self.connections = 0
        self.connections_total = 0

    def call_ended(self, method: str, code: StatusCode) -> None:
        """Count a call of ``method`` (a path the server serves, or
        :data:`UNKNOWN_METHOD`) that ended with ``code``."""
        key = (method, code)
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1

    def copy(self) -> GrpcStats:
        """A copy (what a scrape reads)."""
        out = GrpcStats()
        out.calls = dict(self.calls)
        out.connections = self.connections
        out.connections_total = self.connections_total
        return out


_counters: NodeVar[dict[str, GrpcStats]] = NodeVar("exesdb.grpc_counters", factory=dict)


def grpc_counters(store_id: str) -> GrpcStats:
    """The gRPC counters of ``store_id`` on this node (made the first time asked)."""
    table = _counters.get()
    counters = table.get(store_id)
    if counters is None:
        counters = table[store_id] = GrpcStats()
    return counters
