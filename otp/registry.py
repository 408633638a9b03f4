"""registry: a local key-value process registry, like Elixir's ``Registry``.

A registry is a process started with :func:`start_link` that owns a table of entries
``key -> (pid, value)``, the way an ETS table is owned by its process. Its keys are either
``"unique"`` (at most one entry per key) or ``"duplicate"`` (any number of entries per key,
several even from the same process). Every function that reads or writes the table is a
plain synchronous function that reaches the table directly from the calling process, so a
lookup costs a few dict lookups and never waits for the registry process.

Guarantees:

* :func:`register` registers the *calling* process. Its entries disappear when it exits,
  before anyone can observe the exit through a link (:class:`otp.Exit`) or a monitor
  (:class:`otp.Down`), and before a caller waiting on it (a ``call``, ``stop`` or ``start``)
  wakes up. The registry does not link to the processes it holds: their exits never
  reach it, and its exit never reaches them.
* When the registry process exits, its table goes with it (also before its links and
  monitors fire): every function given that registry then raises :class:`UnknownRegistry`
  (a :class:`otp.NoProc`), and a registry started again under the same name starts empty.
* :func:`via` builds a name (an :class:`otp.Via`) that works wherever a process name does:
  :func:`otp.send`, :func:`otp.whereis`, :func:`otp.monitor`,
  ``gen_server.start_link(name=...)``, ``call``, ``cast``, ``stop``, and supervisors. A
  via name that is taken makes a start raise :class:`otp.AlreadyStarted`.
* Listeners (``start_link(listeners=[name, ...])``) receive
  ``("register", registry_name, key, pid, value)`` for every entry added (by
  :func:`register` or by a start under a :func:`via` name) and ``("unregister",
  registry_name, key, pid)`` when :func:`unregister`, :func:`unregister_match` or
  ``unregister_name`` leaves ``pid`` with no entry under ``key`` any more. As in Elixir,
  nothing is sent when a registered process exits: a listener that wants to know
  monitors the pid it was told of. The messages are sent from the registering process,
  so one listener sees them in the order the registry changed.
* :func:`lock` runs a function with no other :func:`lock` of the same key of the same
  registry running, whatever happens to the caller (an exception, a kill, a
  cancellation releases it); waiters get the lock in the order they asked.

A registry is addressed by the local name it was started with, or by its pid. Example::

    await registry.start_link(keys="unique", name="workers")
    await gen_server.start_link(Worker, name=registry.via("workers", ("stream", 42)))
    await gen_server.call(registry.via("workers", ("stream", 42)), "ping")

Coming from Elixir's ``Registry``:

* Match specs are Python predicates. ``Registry.match(reg, key, {1, :_, :_})`` is
  ``registry.match(reg, key, lambda v: v[0] == 1)``; a guard is more of the same
  expression (``{:"$1", :_, :_}, [{:<, :"$1", 2}]`` is ``lambda v: v[0] < 2``); a
  ``select`` spec's body is a comprehension over what :func:`select` returns. There is
  no pattern language: a predicate expresses every pattern and guard, and a pattern
  argument could not be told from a value that is itself callable.
* There is no ``partitions:`` option, and ``keys`` has no ``{:duplicate, :key}`` /
  ``{:duplicate, :pid}`` forms. Elixir's partitions spread ETS writes over schedulers;
  here every table access is a plain dict operation in one trio thread, so there is
  nothing to spread. What partitions change in Elixir besides speed is that
  ``dispatch`` calls its function once per partition and that results come in no
  particular order; this registry behaves as Elixir's with one partition.
* Keys compare as dict keys do (``1 == 1.0 == True``), not with Elixir's ``===``.
* Functions that return ``:ok`` / ``{:ok, owner}`` return None; ``:error`` becomes an
  exception (:class:`NotRegistered`, ``KeyError``, :class:`AlreadyRegistered`).
* Meta keys may be any hashable value, not only atoms and tuples.
* A listener that is not running when a message is due is skipped (Elixir's ``send``
  to an unregistered atom would raise in the registering process, after it registered).
  :func:`unregister` of a key the caller does not hold tells the listeners nothing
  (Elixir's tells them of an ``unregister`` anyway). A start under a via name whose
  ``init`` fails is told as a ``register`` only: the entry goes with the failed process,
  as with any death (Elixir's ``gen`` unregisters the name itself, and its listeners
  hear of it).
* :func:`lock` waits as long as it takes (Elixir's gives up after ``GenServer.call``'s 5
  seconds); bound the wait with a trio cancel scope such as ``trio.fail_after``. A task
  that asks again for a lock it holds gets ``RuntimeError`` instead of a deadlock.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias, TypeVar

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule

from ._child_spec import ChildSpec
from ._errors import AlreadyStarted, NoProc, NotInProcess, OTPError
from ._names import Name, Via
from ._names import lookup as _lookup_process
from ._process import Pid, _current, _Process, current, current_node, on_exit
from .gen_server import GenServer
from .gen_server import start as _start_unlinked
from .gen_server import start_link as _start_server

__all__ = [
    "AlreadyRegistered",
    "Keys",
    "NotRegistered",
    "RegistryName",
    "UnknownRegistry",
    "child_spec",
    "count",
    "count_match",
    "count_select",
    "delete_meta",
    "dispatch",
    "keys",
    "lock",
    "lookup",
    "match",
    "meta",
    "put_meta",
    "register",
    "select",
    "start",
    "start_link",
    "unregister",
    "unregister_match",
    "update_value",
    "values",
    "via",
]

T = TypeVar("T")

Keys: TypeAlias = Literal["unique", "duplicate"]
"""The kind of a registry: at most one entry per key, or any number."""

Entry: TypeAlias = "tuple[Pid, Any]"
"""One registration: the process and the value it registered with."""


# -- errors ----------------------------------------------------------------------------------


class AlreadyRegistered(OTPError):
    """The unique key (``.key``) is held by a live process (``.pid``), maybe the caller."""

    def __init__(self, key: Any, pid: Pid) -> None:
        super().__init__(f"key {key!r} is already registered to {pid!r}")
        self.key = key
        self.pid = pid


class NotRegistered(OTPError, LookupError):
    """:func:`update_value`: the calling process holds no entry under ``.key``."""

    def __init__(self, key: Any) -> None:
        super().__init__(f"the calling process has no entry under {key!r}")
        self.key = key


class UnknownRegistry(NoProc):
    """No registry runs under the name or pid given (``.name``).

    A subclass of :class:`otp.NoProc`, so code that handles a missing process handles it.
    """

    def __init__(self, name: Any) -> None:
        super().__init__(name)
        self.args = (f"no registry: {name!r}",)


# -- the table -------------------------------------------------------------------------------


class _Table:
    """The entries of one registry; lives exactly as long as the registry process.

    ``unique`` maps a key to its one ``(pid, value)``; ``duplicate`` maps a key to
    ``{pid: [value, ...]}`` (a process's values in registration order). ``by_pid`` lists
    each registered process's keys, one item per entry; a pid stays in it (possibly with
    an empty list) until the process exits, which marks that its exit hook is installed.
    ``name`` is what listener messages carry as the registry (its start name, else its
    pid); ``meta`` is the registry's metadata; ``locks`` holds the :func:`lock` keys that
    are held, each with its queue of waiters.
    """

    __slots__ = (
        "by_pid", "closed", "duplicate", "is_unique", "listeners", "locks", "meta", "name",
        "owner", "size", "unique",
    )

    def __init__(
        self,
        owner: _Process,
        kind: Keys,
        name: Name,
        listeners: tuple[Name, ...],
        meta: dict[Any, Any],
    ) -> None:
        self.owner = owner
        self.is_unique = kind == "unique"
        self.unique: dict[Any, Entry] = {}
        self.duplicate: dict[Any, dict[Pid, list[Any]]] = {}
        self.by_pid: dict[Pid, list[Any]] = {}
        self.size = 0
        self.closed = False
        self.name = name
        self.listeners = listeners
        self.meta = meta
        self.locks: dict[Any, _Lock] = {}

    def track(self, proc: _Process) -> list[Any]:
        """The key list of ``proc``, installing its exit hook on first use."""
        pid = proc.pid
        owned = self.by_pid.get(pid)
        if owned is None:
            on_exit(pid, functools.partial(self.process_exited, pid))  # NoProc if dead
            owned = self.by_pid[pid] = []
        return owned

    def notify(self, msg: tuple[Any, ...]) -> None:
        """Send ``msg`` to every listener that is running (the others are skipped)."""
        for listener in self.listeners:
            proc = _lookup_process(listener)
            if proc is not None:
                proc.deliver(msg)

    def add_unique(self, proc: _Process, key: Any, value: Any) -> None:
        held = self.unique.get(key)
        if held is not None:
            raise AlreadyRegistered(key, held[0])
        self.track(proc).append(key)
        self.unique[key] = (proc.pid, value)
        self.size += 1
        if self.listeners:
            self.notify(("register", self.name, key, proc.pid, value))

    def add_duplicate(self, proc: _Process, key: Any, value: Any) -> None:
        owned = self.track(proc)
        per_pid = self.duplicate.get(key)
        if per_pid is None:
            per_pid = self.duplicate[key] = {}
        own_values = per_pid.get(proc.pid)
        if own_values is None:
            per_pid[proc.pid] = [value]
        else:
            own_values.append(value)
        owned.append(key)
        self.size += 1
        if self.listeners:
            self.notify(("register", self.name, key, proc.pid, value))

    def remove(self, pid: Pid, key: Any) -> None:
        """Drop every entry of ``pid`` under ``key``; tell the listeners if there was one."""
        if self.is_unique:
            held = self.unique.get(key)
            if held is None or held[0] is not pid:
                return
            del self.unique[key]
            removed = 1
        else:
            per_pid = self.duplicate.get(key)
            if per_pid is None:
                return
            own_values = per_pid.pop(pid, None)
            if own_values is None:
                return
            if not per_pid:
                del self.duplicate[key]
            removed = len(own_values)
        self.size -= removed
        owned = self.by_pid.get(pid)
        if owned is not None:
            owned[:] = [k for k in owned if k != key]
        if self.listeners:
            self.notify(("unregister", self.name, key, pid))

    def remove_matching(self, pid: Pid, key: Any, predicate: Callable[[Any], bool]) -> None:
        """Drop the entries of ``pid`` under ``key`` whose value passes ``predicate``.

        Every predicate call happens before anything changes, so one that raises leaves
        the table as it was. The listeners hear of it when no entry of ``pid`` is left
        under ``key``.
        """
        if self.is_unique:
            held = self.unique.get(key)
            if held is not None and held[0] is pid and predicate(held[1]):
                self.remove(pid, key)
            return
        per_pid = self.duplicate.get(key)
        own_values = per_pid.get(pid) if per_pid is not None else None
        if not own_values:
            return
        kept = [value for value in own_values if not predicate(value)]
        removed = len(own_values) - len(kept)
        if removed == 0:
            return
        if not kept:
            self.remove(pid, key)
            return
        own_values[:] = kept
        self.size -= removed
        owned = self.by_pid[pid]
        for index in range(len(owned) - 1, -1, -1):  # one key item per removed entry
            if owned[index] == key:
                del owned[index]
                removed -= 1
                if removed == 0:
                    break

    def entries(self) -> list[tuple[Any, Pid, Any]]:
        """Every entry as ``(key, pid, value)``: a fresh list, grouped by key."""
        if self.is_unique:
            return [(key, pid, value) for key, (pid, value) in self.unique.items()]
        return [
            (key, pid, value)
            for key, per_pid in self.duplicate.items()
            for pid, own_values in per_pid.items()
            for value in own_values
        ]

    def process_exited(self, pid: Pid, reason: Any) -> None:
        """The exit hook of the registered process ``pid``: drop all its entries (never
        raises). Listeners are not told, as in Elixir."""
        if self.closed:
            return
        owned = self.by_pid.pop(pid, None)
        if not owned:
            return
        if self.is_unique:
            unique = self.unique
            for key in owned:
                held = unique.get(key)
                if held is not None and held[0] is pid:
                    del unique[key]
                    self.size -= 1
        else:
            duplicate = self.duplicate
            for key in dict.fromkeys(owned):
                per_pid = duplicate.get(key)
                if per_pid is None:
                    continue
                own_values = per_pid.pop(pid, None)
                if own_values is not None:
                    self.size -= len(own_values)
                    if not per_pid:
                        del duplicate[key]

    def release(self, lock_key: Any, lock: _Lock) -> None:
        """Hand ``lock`` to its oldest waiter, or drop it when nobody waits."""
        if self.locks.get(lock_key) is not lock:  # the table was closed meanwhile
            return
        waiters = lock.waiters
        if waiters:
            waiter = waiters.popleft()
            lock.holder = waiter.task
            waiter.granted = True
            reschedule(waiter.task)
        else:
            del self.locks[lock_key]

    def close(self, reason: Any) -> None:
        """The exit hook of the registry process: forget the table, wake lock waiters
        (they raise :class:`UnknownRegistry`)."""
        self.closed = True
        _tables.pop(self.owner, None)
        self.unique.clear()
        self.duplicate.clear()
        self.by_pid.clear()
        self.size = 0
        self.meta.clear()
        locks = list(self.locks.values())
        self.locks.clear()
        for lock in locks:
            while lock.waiters:
                reschedule(lock.waiters.popleft().task)


class _Lock:
    """A held :func:`lock` key: the task holding it and the tasks waiting, oldest first."""

    __slots__ = ("holder", "waiters")

    def __init__(self, holder: Task) -> None:
        self.holder = holder
        self.waiters: deque[_LockWaiter] = deque()


class _LockWaiter:
    """A task parked in :func:`lock`; ``granted`` tells a handed-over lock from a closed
    registry when it wakes."""

    __slots__ = ("granted", "task")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.granted = False


_tables: Final[dict[_Process, _Table]] = {}
"""Every running registry's table, by the registry's process (one entry per live registry;
keyed by the process state rather than the pid so that pids of different nodes can never
collide, whatever equality pids have). Not an :class:`otp.lowlevel.NodeVar`: its entries
belong to a process, not to a node, and go with it (its exit hook, which runs however it
ends); and finding the node's table first would add a lookup to every registry call."""


def _find(reg: Name) -> _Table | None:
    """The table of the registry ``reg`` (a local name, pid or via name), or None.

    A few dict lookups: this is the hot path of every registry function and via name.
    """
    if type(reg) is Pid:
        return _tables.get(reg._proc)  # type: ignore[arg-type]
    if type(reg) is str:
        me = _current.get(None)
        node = me.node if me is not None else current_node()
        return _tables.get(node.names.get(reg))  # type: ignore[arg-type]
    return _tables.get(_lookup_process(reg))  # type: ignore[arg-type]


def _table(reg: Name) -> _Table:
    table = _find(reg)
    if table is None:
        raise UnknownRegistry(reg)
    return table


# -- the registry process --------------------------------------------------------------------


class _Registry(GenServer):
    """The process that owns a table: it creates it in ``init`` and drops it on exit."""

    async def init(self, *args: Any) -> None:
        kind, name, listeners, meta = args
        me = current()
        table = _Table(me, kind, me.pid if name is None else name, listeners, meta)
        on_exit(me.pid, table.close)
        _tables[me] = table


def _check_keys(keys: str) -> Keys:
    if keys == "unique":
        return "unique"
    if keys == "duplicate":
        return "duplicate"
    raise ValueError(f"keys must be 'unique' or 'duplicate', got {keys!r}")


def _check_listeners(listeners: Sequence[Name]) -> tuple[Name, ...]:
    if not isinstance(listeners, list | tuple):
        raise TypeError(f"listeners must be a list of process names, got {listeners!r}")
    for listener in listeners:
        if not (type(listener) is Pid or isinstance(listener, Via)
                or (isinstance(listener, str) and listener)):
            raise TypeError(f"a listener must be a process name (str, Pid or Via), "
                            f"got {listener!r}")
    return tuple(listeners)


def _check_meta(meta: Mapping[Any, Any] | None) -> dict[Any, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping, got {meta!r}")
    return dict(meta)


async def start_link(
    *,
    keys: Keys,
    name: str | Via | None = None,
    listeners: Sequence[Name] = (),
    meta: Mapping[Any, Any] | None = None,
) -> Pid:
    """Start a registry linked to the caller and return its pid once it is ready.

    ``keys`` is ``"unique"`` or ``"duplicate"`` (``ValueError`` otherwise). ``name`` is the
    local or via name to register it under; without one, address it by its pid. A taken name
    raises :class:`otp.AlreadyStarted`. Stop it with ``gen_server.stop``.

    ``listeners`` is a list of process names (local names, as in Elixir, or pids or via
    names) told of registrations: see the module docstring for the messages; each carries
    ``name`` (the registry's pid when it has none). A listener need not run yet; one that
    is not running when a message is due misses it. ``meta`` is the initial metadata
    read by :func:`meta`. Both are checked before anything starts (``TypeError``).
    """
    args = (_check_keys(keys), name, _check_listeners(listeners), _check_meta(meta))
    pid = await _start_server(_Registry, *args, name=name)
    assert pid is not None
    return pid


async def start(
    *,
    keys: Keys,
    name: str | Via | None = None,
    listeners: Sequence[Name] = (),
    meta: Mapping[Any, Any] | None = None,
) -> Pid:
    """Like :func:`start_link`, without the link: a registry that serves the whole node
    until it is stopped or the node shuts down."""
    args = (_check_keys(keys), name, _check_listeners(listeners), _check_meta(meta))
    pid = await _start_unlinked(_Registry, *args, name=name)
    assert pid is not None
    return pid


def child_spec(
    *,
    keys: Keys,
    name: str | Via,
    id: Any = None,
    listeners: Sequence[Name] = (),
    meta: Mapping[Any, Any] | None = None,
) -> ChildSpec:
    """A supervisor child spec that starts a registry with :func:`start_link`.

    The id defaults to ``name``. The registry is a ``"worker"``; a dynamic supervisor's
    extra arguments, if any, are ignored. The options are checked now, and every start
    (a restart too) begins with a copy of ``meta``.
    """
    kind = _check_keys(keys)
    listener_names = _check_listeners(listeners)
    initial_meta = _check_meta(meta)

    async def start(*_extra: Any) -> Pid:
        return await start_link(
            keys=kind, name=name, listeners=listener_names, meta=initial_meta
        )

    return ChildSpec(id=name if id is None else id, start=start)


# -- the table API ---------------------------------------------------------------------------


def register(reg: Name, key: Hashable, value: Any = None) -> None:
    """Register the calling process under ``key`` with ``value`` until it exits.

    In a unique registry a key held by a live process (the caller included) raises
    :class:`AlreadyRegistered` with the holder's pid. In a duplicate registry a process
    may register the same key any number of times, each time adding an entry. Raises
    :class:`UnknownRegistry` when ``reg`` is not a running registry. Each entry added
    sends ``("register", registry_name, key, pid, value)`` to the listeners; a refused
    one sends nothing.
    """
    table = _table(reg)
    if table.is_unique:
        table.add_unique(current(), key, value)
    else:
        table.add_duplicate(current(), key, value)


def unregister(reg: Name, key: Hashable) -> None:
    """Remove every entry of the calling process under ``key``; nothing else is touched.

    Sends ``("unregister", registry_name, key, pid)`` to the listeners when it removed
    something; does nothing at all when the caller has no such entry.
    """
    _table(reg).remove(current().pid, key)


def lookup(reg: Name, key: Hashable) -> list[tuple[Pid, Any]]:
    """The entries under ``key`` as ``(pid, value)``: at most one in a unique registry.

    A fresh list, in registration order per process; empty when nobody is registered.
    """
    table = _table(reg)
    if table.is_unique:
        held = table.unique.get(key)
        return [held] if held is not None else []
    per_pid = table.duplicate.get(key)
    if per_pid is None:
        return []
    return [(pid, value) for pid, own_values in per_pid.items() for value in own_values]


def keys(reg: Name, pid: Pid) -> list[Any]:
    """The keys ``pid`` is registered under, one item per entry (so a key it registered
    twice in a duplicate registry appears twice); empty for an unknown or dead pid."""
    return list(_table(reg).by_pid.get(pid, ()))


def values(reg: Name, key: Hashable, pid: Pid) -> list[Any]:
    """The values ``pid`` registered under ``key``, in registration order; maybe empty."""
    table = _table(reg)
    if table.is_unique:
        held = table.unique.get(key)
        return [held[1]] if held is not None and held[0] is pid else []
    per_pid = table.duplicate.get(key)
    if per_pid is None:
        return []
    return list(per_pid.get(pid, ()))


def count(reg: Name) -> int:
    """The number of entries in the registry."""
    return _table(reg).size


def match(reg: Name, key: Hashable, predicate: Callable[[Any], bool]) -> list[tuple[Pid, Any]]:
    """The entries under ``key`` whose value passes ``predicate(value)``, as ``(pid, value)``.

    Elixir's ``match/4`` with its pattern and guards written as one predicate. A fresh
    list, in :func:`lookup`'s order; empty when nothing passes. What ``predicate`` raises
    propagates.
    """
    return [entry for entry in lookup(reg, key) if predicate(entry[1])]


def count_match(reg: Name, key: Hashable, predicate: Callable[[Any], bool]) -> int:
    """How many entries under ``key`` have a value that passes ``predicate(value)``.

    Always ``len(match(reg, key, predicate))``; 0 when nobody is registered under ``key``.
    """
    return sum(1 for _, value in lookup(reg, key) if predicate(value))


def select(
    reg: Name, predicate: Callable[[Any, Pid, Any], bool]
) -> list[tuple[Any, Pid, Any]]:
    """Every entry of the registry, as ``(key, pid, value)``, for which
    ``predicate(key, pid, value)`` is true.

    Elixir's ``select/2``: its match spec's head and guards are the predicate, its body
    a comprehension over the result (``[key for key, _, _ in select(reg, ...)]``). A
    fresh list, grouped by key, in no particular order otherwise. ``predicate`` sees a
    snapshot: it may register or unregister without disturbing the walk. What it raises
    propagates.
    """
    return [entry for entry in _table(reg).entries() if predicate(*entry)]


def count_select(reg: Name, predicate: Callable[[Any, Pid, Any], bool]) -> int:
    """How many entries pass ``predicate(key, pid, value)``: ``len(select(reg, predicate))``."""
    return sum(1 for entry in _table(reg).entries() if predicate(*entry))


def unregister_match(reg: Name, key: Hashable, predicate: Callable[[Any], bool]) -> None:
    """Remove the calling process's entries under ``key`` whose value passes ``predicate``.

    Entries of other processes, and the caller's that do not pass, stay. The predicate
    sees every value before anything is removed, so one that raises removes nothing.
    The listeners get ``("unregister", registry_name, key, pid)`` when the caller is left
    with no entry under ``key`` (as :func:`unregister`), nothing when some remain.
    """
    _table(reg).remove_matching(current().pid, key, predicate)


def dispatch(
    reg: Name, key: Hashable, fn: Callable[[list[tuple[Pid, Any]]], object]
) -> None:
    """Call ``fn(entries)`` once, in the caller, with the entries under ``key``.

    ``fn`` is not called at all when there are none. What it returns is ignored; what it
    raises propagates.
    """
    entries = lookup(reg, key)
    if entries:
        fn(entries)


def update_value(reg: Name, key: Hashable, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Replace the calling process's value under ``key`` by ``fn(old)``; return ``(new, old)``.

    Unique registries only (``ValueError`` otherwise). Raises :class:`NotRegistered` when
    the caller does not hold ``key`` (nobody does, or another process does); the entry is
    unchanged if ``fn`` raises.
    """
    table = _table(reg)
    if not table.is_unique:
        raise ValueError(f"update_value needs a unique registry; {reg!r} has duplicate keys")
    pid = current().pid
    held = table.unique.get(key)
    if held is None or held[0] is not pid:
        raise NotRegistered(key)
    old = held[1]
    new = fn(old)
    table.unique[key] = (pid, new)
    return new, old


# -- metadata --------------------------------------------------------------------------------


def meta(reg: Name, key: Hashable) -> Any:
    """The registry's metadata under ``key`` (from ``start_link(meta=...)`` or
    :func:`put_meta`); raises ``KeyError`` when there is none.

    Metadata lives as long as the registry process: a registry started again starts
    with its ``meta`` option only.
    """
    return _table(reg).meta[key]


def put_meta(reg: Name, key: Hashable, value: Any) -> None:
    """Store ``value`` as the registry's metadata under ``key``, replacing any."""
    _table(reg).meta[key] = value


def delete_meta(reg: Name, key: Hashable) -> None:
    """Remove the registry's metadata under ``key``; does nothing when there is none."""
    _table(reg).meta.pop(key, None)


# -- locks -----------------------------------------------------------------------------------


async def lock(reg: Name, lock_key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``await fn()`` in the caller while no other :func:`lock` of ``lock_key`` runs
    in this registry; return what it returns, raise what it raises.

    Elixir's ``Registry.lock/3``. Lock keys have their own namespace: they never clash
    with registered keys, and the registry's kind does not matter. A caller that finds
    the key held waits; waiters get it in the order they asked. The lock is released
    however ``fn`` ends: it returns, raises, or the caller is killed or cancelled (a
    cancelled waiter just leaves the queue). Lock only what the caller's own work needs:
    the lock is not a process, and ``fn`` runs in the caller.

    Raises :class:`UnknownRegistry` when ``reg`` is not running, or stops while the caller
    waits (a running ``fn`` is not interrupted by that). Raises ``RuntimeError`` when the
    calling task already holds ``lock_key`` (it would wait for itself for ever). The
    wait has no time limit: bound it with a trio cancel scope (``trio.fail_after``).
    """
    table = _table(reg)
    await trio.lowlevel.checkpoint_if_cancelled()
    held = table.locks.get(lock_key)
    if held is None:
        held = table.locks[lock_key] = _Lock(current_task())
    else:
        await _wait_for(held, reg, lock_key)
    try:
        return await fn()
    finally:
        table.release(lock_key, held)


async def _wait_for(held: _Lock, reg: Name, lock_key: Hashable) -> None:
    """Park the calling task in ``held``'s queue until :meth:`_Table.release` hands it
    the lock; :class:`UnknownRegistry` if the registry closed instead."""
    task = current_task()
    if held.holder is task or any(waiter.task is task for waiter in held.waiters):
        raise RuntimeError(
            f"this task already holds the lock {lock_key!r} of {reg!r}: "
            "registry.lock is not reentrant"
        )
    waiter = _LockWaiter(task)
    held.waiters.append(waiter)

    def abort(_: Any) -> Abort:
        held.waiters.remove(waiter)
        return Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)
    if not waiter.granted:
        raise UnknownRegistry(reg)


def _in_node() -> bool:
    try:
        current_node()
    except NotInProcess:
        return False
    return True


# -- via names -------------------------------------------------------------------------------


class RegistryName(Via):
    """The name of the process registered under ``key`` in the unique registry ``registry``.

    Built by :func:`via`; Elixir's ``{:via, Registry, {registry, key}}``. Two of them are
    equal when they name the same registry and key (the registration value is not part of
    the name). Registering through it stores ``value`` as the entry's value.
    """

    __slots__ = ("key", "registry", "value")

    def __init__(self, registry: Name, key: Hashable, value: Any = None) -> None:
        self.registry = registry
        self.key = key
        self.value = value

    def _unique_table(self) -> _Table | None:
        table = _find(self.registry)
        if table is not None and not table.is_unique:
            raise ValueError(f"via names need a unique registry; {self.registry!r} is duplicate")
        return table

    def register_name(self, pid: Pid) -> None:
        """Register ``pid`` under the key; :class:`otp.AlreadyStarted` when it is taken.

        Raises :class:`UnknownRegistry` when the registry is not running, ``ValueError``
        when it has duplicate keys and :class:`otp.NoProc` when ``pid`` is dead.
        """
        table = self._unique_table()
        if table is None:
            raise UnknownRegistry(self.registry)
        held = table.unique.get(self.key)
        if held is not None:
            raise AlreadyStarted(self, held[0])
        proc = pid._proc
        if proc is None:
            raise NoProc(pid)
        table.add_unique(proc, self.key, self.value)

    def unregister_name(self) -> None:
        """Release the key, whoever holds it; does nothing when it is free."""
        table = self._unique_table()
        if table is None:
            return
        held = table.unique.get(self.key)
        if held is not None:
            table.remove(held[0], self.key)

    def whereis_name(self) -> Pid | None:
        """The process holding the key, or None (also when the registry is not running)."""
        reg = self.registry
        if type(reg) is str:  # _find inlined: the hot path of every call through a via name
            me = _current.get(None)
            node = me.node if me is not None else current_node()
            table = _tables.get(node.names.get(reg))  # type: ignore[arg-type]
        else:
            table = _find(reg)
        if table is None:
            return None
        held = table.unique.get(self.key)
        if held is not None:
            return held[0]
        if not table.is_unique:
            raise ValueError(f"via names need a unique registry; {reg!r} is duplicate")
        return None

    def __eq__(self, other: object) -> bool:
        if type(other) is not RegistryName:
            return NotImplemented
        return self.registry == other.registry and self.key == other.key

    def __hash__(self) -> int:
        return hash((RegistryName, self.registry, self.key))

    def __repr__(self) -> str:
        return f"registry.via({self.registry!r}, {self.key!r})"


def via(reg: Name, key: Hashable, value: Any = None) -> RegistryName:
    """A process name: the process registered under ``key`` in the unique registry ``reg``.

    Use it anywhere a name is accepted. Starting a process with it registers the new
    process under ``key`` (with ``value``); the name is free again when that process
    exits (before its exit is observable), and it is taken until then: another start
    raises :class:`otp.AlreadyStarted`. ``ValueError`` if ``reg`` is a running registry
    with duplicate keys. The registry need not be running when the name is made (a
    supervisor may start it first), only when it is used: until then the name resolves to
    no process, and starting a process under it raises :class:`UnknownRegistry`.
    """
    hash(key)  # a TypeError now rather than at first use
    name = RegistryName(reg, key, value)
    if _in_node():
        name._unique_table()
    return name
