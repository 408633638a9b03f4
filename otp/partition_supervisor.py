"""partition_supervisor: N dynamic supervisors, one picked per child by hashing a key.

Like Elixir's PartitionSupervisor: it spreads children (the event store's per-stream
workers, say) over ``partitions`` dynamic supervisors so that no single supervisor is a
bottleneck. The partition of a key is :func:`partition_for`, a hash that is the same in
every process and every run (not Python's salted ``hash()``).

Elixir's PartitionSupervisor starts N copies of any child spec; this one's partitions
are always dynamic supervisors, which is Elixir's most common use
(``child_spec: DynamicSupervisor``), and :func:`start_child` routes by key. What
Elixir's ``with_arguments`` does to a partition's start arguments, ``with_arguments``
here does to each partition's ``extra_args``: the leading arguments of every child
started in that partition. :func:`which_children` and :func:`count_children` see the
partitions as the children, as Elixir's do.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeAlias

from . import dynamic_supervisor, supervisor
from ._child_spec import ChildSpec
from ._errors import NoProc
from ._names import Name, resolve
from ._process import NodeVar, Pid, current, on_exit
from .supervisor import stop

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


_WithArguments: TypeAlias = Callable[[tuple[Any, ...], int], "tuple[Any, ...] | list[Any]"]
"""``with_arguments(args, partition)``: the extra arguments of the children of one
partition, made from the ``extra_args`` every partition would otherwise get."""


async def start_link(
    *,
    partitions: int | None = None,
    name: Any = None,
    with_arguments: _WithArguments | None = None,
    **dynamic_supervisor_options: Any,
) -> Pid | None:
    """Start the partition supervisor and its partitions; return its pid.

    ``partitions`` defaults to the number of CPUs; the other keywords (``max_children``,
    ``extra_args``, ``intensity``, ``period``) configure every partition.

    ``with_arguments(args, partition)``, if given, is called once per partition, in
    order, before anything starts, with ``args`` the ``extra_args`` tuple (``()`` by
    default) and ``partition`` its index; what it returns (a tuple or list) becomes that
    partition's ``extra_args``, so every child started there receives it first:
    ``spec.start(*with_arguments(args, partition))``. A partition restarted by the
    supervisor keeps them. Elixir's ``with_arguments: fn args, partition -> ... end``;
    for instance ``with_arguments=lambda args, p: (*args, p)`` tells each child its
    partition. A ``with_arguments`` that is not callable, or returns something else than
    a tuple or list, raises ``TypeError``; what it raises propagates.
    """
    count = partitions if partitions is not None else (os.cpu_count() or 1)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    if with_arguments is not None and not callable(with_arguments):
        raise TypeError(
            "with_arguments must be a function of the arguments and the partition, "
            f"got {with_arguments!r}"
        )
    options = [dict(dynamic_supervisor_options) for _ in range(count)]
    if with_arguments is not None:
        args = tuple(dynamic_supervisor_options.get("extra_args", ()))
        for index, partition_options in enumerate(options):
            extra = with_arguments(args, index)
            if not isinstance(extra, tuple | list):
                raise TypeError(
                    f"with_arguments must return a tuple of arguments, got {extra!r} "
                    f"for partition {index}"
                )
            partition_options["extra_args"] = tuple(extra)
    children = [_partition_spec(i, count, options[i]) for i in range(count)]
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


async def which_children(ps: Name) -> list[tuple[Any, Pid | None, str]]:
    """The partitions, as ``(index, pid or None, "supervisor")`` in index order.

    The children started with :func:`start_child` are those of each partition:
    ``otp.dynamic_supervisor.which_children(pid)``. ``pid`` is None while a partition
    restarts. Raises :class:`otp.NoProc` if ``ps`` is not running.
    """
    return await supervisor.which_children(ps)


async def count_children(ps: Name) -> dict[str, int]:
    """The partitions counted as children: ``{"specs": N, "active": running partitions,
    "supervisors": N, "workers": 0}``.

    As Elixir's ``PartitionSupervisor.count_children/1``: the children started with
    :func:`start_child` are not counted here; each partition counts its own
    (``otp.dynamic_supervisor.count_children(pid)``). Raises :class:`otp.NoProc` if ``ps``
    is not running.
    """
    return await supervisor.count_children(ps)
