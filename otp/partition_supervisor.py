"""partition_supervisor: N dynamic supervisors, one picked per child by hashing a key.

Like Elixir's PartitionSupervisor: it spreads children (the event store's per-stream
workers, say) over ``partitions`` dynamic supervisors so that no single supervisor is a
bottleneck. The partition of a key is :func:`partition_for`, a hash that is the same in
every process and every run (not Python's salted ``hash()``).
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from typing import Any

from . import dynamic_supervisor, supervisor
from ._child_spec import ChildSpec
from ._errors import NoProc
from ._names import Name, resolve
from ._process import NodeVar, Pid, current, on_exit
from .supervisor import count_children, stop, which_children

__all__ = [
    "count_children",
    "partition_for",
    "partitions",
    "start_child",
    "start_link",
    "stop",
    "which_children",
]

_partitions: NodeVar[dict[Pid, list[Pid | None]]] = NodeVar(
    "otp.partition_supervisor.partitions", factory=dict
)
"""Per node: partition supervisor pid -> the pid of each partition (None while it
restarts). An entry lives as long as its partition supervisor."""


def partition_for(key: Any, partitions: int) -> int:
    """The partition (0 .. partitions-1) of ``key``; stable across processes and runs.

    Keys are hashed by value for str, bytes, int, bool, None and tuples of these, and by
    ``repr`` otherwise (so give other types a stable repr).
    """
    if not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    return zlib.crc32(_encode(key)) % partitions


def _encode(key: Any) -> bytes:
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, bool) or key is None:
        return b"a" + repr(key).encode()
    if isinstance(key, int):
        return b"i" + str(key).encode()
    if isinstance(key, tuple):
        parts = [_encode(item) for item in key]
        return b"t" + b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return b"r" + repr(key).encode("utf-8", "surrogatepass")


async def start_link(
    *, partitions: int | None = None, name: Any = None, **dynamic_supervisor_options: Any
) -> Pid | None:
    """Start the partition supervisor and its partitions; return its pid.

    ``partitions`` defaults to the number of CPUs; the other keywords (``max_children``,
    ``extra_args``, ``intensity``, ``period``) configure every partition.
    """
    count = partitions if partitions is not None else (os.cpu_count() or 1)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    children = [_partition_spec(i, count, dynamic_supervisor_options) for i in range(count)]
    return await supervisor.start_link(children, strategy="one_for_one", name=name)


def _partition_spec(index: int, count: int, options: dict[str, Any]) -> ChildSpec:
    async def start() -> Pid | None:
        me = current()
        tables = _partitions.get()
        table = tables.get(me.pid)
        if table is None:
            table = tables[me.pid] = [None] * count
            on_exit(me.pid, functools.partial(_forget, tables, me.pid))
        pid = await dynamic_supervisor.start_link(**options)
        table[index] = pid
        return pid

    return ChildSpec(id=index, start=start, type="supervisor")


def _forget(tables: dict[Pid, list[Pid | None]], pid: Pid, _reason: Any) -> None:
    tables.pop(pid, None)


def _table_of(ps: Name) -> list[Pid | None]:
    proc = resolve(ps)
    table = _partitions._get_in(proc.node).get(proc.pid)
    if table is None:
        raise NoProc(ps)
    return table


async def start_child(ps: Name, key: Any, spec: Any) -> Pid | None:
    """Start ``spec`` under the partition of ``key``.

    Returns and raises as :func:`otp.dynamic_supervisor.start_child`; raises
    :class:`otp.NoProc` if ``ps`` is not running or that partition is restarting.
    """
    table = _table_of(ps)
    partition = table[partition_for(key, len(table))]
    if partition is None or partition._proc is None:
        raise NoProc(f"partition {partition_for(key, len(table))} of {ps!r} is restarting")
    return await dynamic_supervisor.start_child(partition, spec)


def partitions(ps: Name) -> list[Pid | None]:
    """The pid of each partition, in order (None for one that is restarting)."""
    return list(_table_of(ps))
