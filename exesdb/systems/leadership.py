"""Whether this node leads a store, and the fencing of the leader's writes.

One :class:`Leadership` record per store on the node (a :class:`otp.lowlevel.NodeVar`
table), in cluster mode only: the store's LeaderElector
(:mod:`exesdb.systems.cluster.elector`) keeps it, and everything that must know reads it
without a call: :class:`~exesdb.systems.store.StoreCluster` (``is_leader``), the gRPC
gateway (which sends clients to the leader), and the writes only the leader may make.

Those writes (a subscription's stored position: acknowledgements and broadcasts) go
through :func:`fence`, which wraps them in a :class:`~exesdb.storage.fencing.Fenced`
operation carrying the epoch of the node's last term as leader. The storage refuses it
(:class:`~exesdb.errors.StaleEpoch`) once another node has been elected, in the same
transaction as the write: a leader that lost its lease without noticing (paused,
partitioned) cannot overwrite what the new leader stores. A store in ``single`` mode has
no record: its writes are not fenced.

Guarantees: :func:`is_leading` is true only between the elector's
:func:`begin_term` and :func:`end_term`; the term only grows; every function here is
synchronous and must run on the node's trio thread.
"""

from __future__ import annotations

import uuid

import attrs
import trio

from otp.lowlevel import NodeVar

from ..storage import WriteOp
from ..storage.fencing import Fenced

__all__ = [
    "Leadership",
    "begin_term",
    "end_term",
    "fence",
    "forget",
    "is_leading",
    "leadership",
    "term_ended",
    "track",
]


@attrs.define
class Leadership:
    """This node's leadership of one store: ``node`` (its name in the cluster), ``term``
    (the epoch of its last term as leader, 0 if it never led), ``leading`` (whether
    that term is running) and ``instance`` (an id new with each record: it tells this
    run of the node from an earlier one under the same name)."""

    node: str
    term: int = 0
    leading: bool = False
    instance: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    ended: trio.Event = attrs.field(factory=trio.Event, repr=False)
    """Set when the running term ends (a new one is made for each term)."""


_table: NodeVar[dict[str, Leadership]] = NodeVar("exesdb.leadership", factory=dict)


def track(store_id: str, node: str) -> Leadership:
    """Track the leadership of ``store_id`` (cluster mode: called when its storage
    opens), as ``node``. A record of the same node is kept as it is (the storage
    restarted under a running elector); from then on the store's leader-only writes are
    fenced, until :func:`forget`."""
    table = _table.get()
    record = table.get(store_id)
    if record is None or record.node != node:
        record = table[store_id] = Leadership(node)
    return record


def forget(store_id: str) -> None:
    """Stop tracking ``store_id`` (it runs in ``single`` mode now): its writes are no
    longer fenced."""
    _table.get().pop(store_id, None)


def leadership(store_id: str) -> Leadership | None:
    """The record of ``store_id``; None in ``single`` mode (or not running)."""
    return _table.get().get(store_id)


def is_leading(store_id: str) -> bool:
    """Whether this node runs a term as leader of ``store_id`` (cluster mode)."""
    record = _table.get().get(store_id)
    return record is not None and record.leading


def begin_term(store_id: str, epoch: int) -> None:
    """This node leads ``store_id`` from now on, elected in ``epoch``."""
    record = _table.get()[store_id]
    if epoch < record.term:
        raise ValueError(f"epoch: terms only grow: {epoch} after {record.term}")
    record.term = epoch
    record.leading = True
    record.ended = trio.Event()


def end_term(store_id: str) -> None:
    """This node stops leading ``store_id`` (its fenced writes keep the last term's
    epoch, and fail once another node is elected)."""
    record = _table.get().get(store_id)
    if record is not None:
        record.leading = False
        record.ended.set()


async def term_ended(store_id: str) -> None:
    """Wait until this node's running term as leader of ``store_id`` ends (at once if it
    does not lead)."""
    record = _table.get().get(store_id)
    if record is not None and record.leading:
        await record.ended.wait()


def fence(store_id: str, op: WriteOp) -> WriteOp | Fenced:
    """``op`` as a leader-only write: :class:`~exesdb.storage.fencing.Fenced` with the
    epoch of this node's last term in cluster mode, ``op`` itself in ``single`` mode."""
    record = _table.get().get(store_id)
    return op if record is None else Fenced(op, record.term)
