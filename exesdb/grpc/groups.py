"""Persistent subscription groups (KurrentDB's competing consumers) on exesdb's persistent
subscriptions.

A group ``G`` on stream ``S`` (or on ``$all``) is:

* an exesdb persistent subscription named :func:`subscription_name` (``grpc:<S>::<G>``),
  of type ``by_stream`` on ``$<S>`` (or ``$all``), whose subscriber is the group's process;
  its stored position is the group's checkpoint;
* a :class:`PersistentGroup` process (a gen_server, one per group, registered per store
  under :func:`group_name`) that receives the subscription's events in order, dispatches
  them to the connected consumers (the ``Read`` calls), tracks each event in flight with
  its retry count and message timeout, handles acks and nacks, parks events, and moves the
  checkpoint (``exesdb.gateway.ack_event``, cumulative) only up to the last event before
  which everything is acked, skipped, filtered out or parked (:class:`Ledger`);
* its settings, kept durably with every other group's as the last event (type
  ``PersistentConfig1``, JSON) of the system stream :data:`CONFIG_STREAM`; settings that
  do not read never make the manager remove a group or its checkpoint (see
  :class:`GroupManager`);
* its parked events: links (type ``$>``, data ``"<number>@<stream>"``) appended to
  ``$persistentsubscription-<S>::<G>-parked``; how far they were replayed is that
  stream's truncate-before (``{"$tb": n}`` in ``$$$persistentsubscription-<S>::<G>-parked``),
  as KurrentDB keeps it. A replayed parked event leaves the parked stream (the
  truncate-before passes it) only once it is acked, skipped or parked again, so a stop
  or a crash during a replay loses none: they are still parked, to be replayed again;
* its filter (``$all`` only): a regex matched in time linear in the subject (RE2, see
  :mod:`exesdb.grpc.patterns`), or prefixes.

A consumer acks and nacks only the events in flight to itself: other ids are ignored (so
one consumer cannot settle what another holds). A consumer whose call ends, however it
ends, leaves at once: its slot is free and its events in flight go to the others.

:class:`PersistentGroups` (a store supervisor, rest_for_one: a dynamic supervisor of the
group processes, then :class:`GroupManager`) runs them; the manager serialises creations,
updates and deletions and, when it starts, starts a process for every stored group, so
groups survive a restart of the store or of the node. The functions at the end
(:func:`create_group`, :func:`connect`, ...) are what the gRPC service calls; they raise
:class:`exesdb.grpc.rpc.RpcError` with the protocol's status for every error.

Delivery is at least once: after a crash, what was not checkpointed is delivered again; on
an orderly stop a group checkpoints everything acknowledged first.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import itertools
import json
import logging
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, Literal

import attrs
import trio

import otp
from otp import dynamic_supervisor, gen_server, supervisor
from otp.supervisor import ChildSpec

from .. import gateway
from ..constants import END
from ..errors import ExESDBError, InvalidArgument, StreamDeleted, SubscriptionNotFound
from ..events import EventRecord, NewEvent
from ..naming import child_spec_id, genserver_name, partition_name
from ..options import StoreOptions
from ..subscriptions import Events
from ..systems.processes import StoreServer, StoreSupervisor
from .convert import rpc_error
from .patterns import compile_filter
from .rpc import RpcError, StatusCode

__all__ = [
    "ALL",
    "CONFIG_EVENT_TYPE",
    "CONFIG_STREAM",
    "NACK_ACTIONS",
    "STRATEGIES",
    "Connection",
    "Consumer",
    "ConsumerInfo",
    "GroupConfig",
    "GroupFilter",
    "GroupInfo",
    "GroupManager",
    "GroupSettings",
    "Ledger",
    "PersistentGroup",
    "PersistentGroups",
    "connect",
    "create_group",
    "delete_group",
    "group_info",
    "group_name",
    "list_groups",
    "parked_stream",
    "replay_parked",
    "restart_groups",
    "subscription_name",
    "update_group",
]

log: Final = logging.getLogger("exesdb.grpc.groups")

ALL: Final = "$all"
"""The event source of a group on every stream."""
CONFIG_STREAM: Final = "$persistentSubscriptionConfig"
"""The system stream whose last event holds every group's settings."""
CONFIG_EVENT_TYPE: Final = "PersistentConfig1"
"""The type of its events (excluded by the clients' default ``$all`` filters)."""
PREFIX: Final = "grpc:"
"""The prefix of the exesdb subscriptions that are groups."""
STRATEGIES: Final = ("DispatchToSingle", "RoundRobin", "Pinned", "PinnedByCorrelation")
"""The consumer strategies (the pinned ones pin by stream, falling back to round robin)."""
NACK_ACTIONS: Final = ("unknown", "park", "retry", "skip", "stop")
HARD_CHECKPOINT: Final = 500
"""Events done since the last checkpoint that force one whatever the settings say: the
exesdb subscription delivers at most 1000 events past its stored position."""
RETRY: Final = 0.2
"""Seconds before a group tries again what the store could not do yet."""
CALL_TIMEOUT: Final = 30.0
"""Seconds a request to the manager or a group may take."""

NackAction = Literal["unknown", "park", "retry", "skip", "stop"]


# -- names -----------------------------------------------------------------------------------


def subscription_name(stream: str, group: str) -> str:
    """The exesdb persistent subscription of group ``group`` on ``stream`` (or ``$all``)."""
    return f"{PREFIX}{stream}::{group}"


def parked_stream(stream: str, group: str) -> str:
    """The stream a group parks its events in (KurrentDB's name)."""
    return f"$persistentsubscription-{stream}::{group}-parked"


def group_name(store_id: str, stream: str, group: str) -> Any:
    """The registered name of the group's process in ``store_id``."""
    return partition_name(PersistentGroup, store_id, stream, group)


def _manager_name(store_id: str) -> Any:
    return genserver_name(GroupManager, store_id)


def _groups_sup_name(store_id: str) -> Any:
    return partition_name(PersistentGroups, store_id, "groups")


# -- settings --------------------------------------------------------------------------------


@attrs.frozen
class GroupSettings:
    """A group's settings, with KurrentDB's names and defaults (times in milliseconds).

    Behaviour follows ``message_timeout_ms`` (0: no timeout), ``max_retry_count``,
    ``max_subscriber_count`` (0: no limit), ``consumer_strategy``, ``resolve_links``,
    ``checkpoint_after_ms``, ``min_checkpoint_count`` and ``max_checkpoint_count``; the
    buffer and batch sizes and ``extra_statistics`` are kept and reported.
    """

    resolve_links: bool = False
    extra_statistics: bool = False
    message_timeout_ms: int = 30_000
    max_retry_count: int = 10
    live_buffer_size: int = 500
    read_batch_size: int = 200
    history_buffer_size: int = 500
    checkpoint_after_ms: int = 2_000
    min_checkpoint_count: int = 10
    max_checkpoint_count: int = 1_000
    max_subscriber_count: int = 5
    consumer_strategy: str = "DispatchToSingle"

    def check(self) -> GroupSettings:
        """Return self, or raise ``RpcError(INVALID_ARGUMENT)`` naming the bad field."""
        for field in ("message_timeout_ms", "max_retry_count", "checkpoint_after_ms",
                      "min_checkpoint_count", "max_subscriber_count"):
            value = getattr(self, field)
            if value < 0:
                raise _invalid(f"{field}: must be >= 0, got {value}")
        for field in ("live_buffer_size", "read_batch_size", "history_buffer_size",
                      "max_checkpoint_count"):
            value = getattr(self, field)
            if value <= 0:
                raise _invalid(f"{field}: must be > 0, got {value}")
        if self.max_checkpoint_count < self.min_checkpoint_count:
            raise _invalid(f"max_checkpoint_count: must be >= min_checkpoint_count "
                           f"({self.min_checkpoint_count}), got {self.max_checkpoint_count}")
        if self.consumer_strategy not in STRATEGIES:
            raise _invalid(f"consumer_strategy: must be one of {', '.join(STRATEGIES)}, "
                           f"got {self.consumer_strategy!r}")
        return self

    @classmethod
    def from_json(cls, data: Any, field: str = "settings") -> GroupSettings:
        """The settings stored as ``attrs.asdict`` made them: every field type-checked
        (bools bool, numbers int, the strategy a str; a missing one takes its default,
        an unknown one is ignored) and in range. Raises ``ValueError`` naming the field
        (``settings.<name>``) otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{field}: must be an object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for attribute in attrs.fields(cls):
            if attribute.name not in data:
                continue
            value = data[attribute.name]
            expected = type(attribute.default)
            if expected is bool:
                ok = type(value) is bool
            elif expected is int:
                ok = type(value) is int and -2**63 <= value < 2**63
            else:
                ok = type(value) is str
            if not ok:
                raise ValueError(f"{field}.{attribute.name}: must be {expected.__name__}, "
                                 f"got {value!r}")
            values[attribute.name] = value
        try:
            return cls(**values).check()
        except RpcError as exc:
            raise ValueError(f"{field}.{exc.message}") from None


@attrs.frozen
class GroupFilter:
    """A ``$all`` group's server-side filter: on the stream id or the event type, by
    regular expression (RE2 syntax, searched as .NET's ``Regex.IsMatch`` does, in time
    linear in the subject: see :mod:`exesdb.grpc.patterns`) or by prefixes. Building one
    raises ``RpcError(INVALID_ARGUMENT)`` naming ``filter.regex`` for a pattern RE2 does
    not take, ``filter`` when it has neither a regex nor prefixes."""

    on: Literal["stream", "event_type"]
    regex: str = ""
    prefixes: tuple[str, ...] = ()
    window: int = 0
    checkpoint_multiplier: int = 0
    _compiled: Callable[[str], bool] | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.regex:
            try:
                object.__setattr__(self, "_compiled",
                                   compile_filter(self.regex, "filter.regex"))
            except InvalidArgument as exc:
                raise _invalid(str(exc)) from None
        elif not self.prefixes:
            raise _invalid("filter: needs a regex or at least one prefix")

    def matches(self, event: EventRecord) -> bool:
        """True when ``event`` passes the filter (in time linear in the subject)."""
        value = event.stream_id if self.on == "stream" else event.event_type
        if self._compiled is not None:
            return self._compiled(value)
        return value.startswith(self.prefixes)

    def as_json(self) -> dict[str, Any]:
        """The filter as stored."""
        return {"on": self.on, "regex": self.regex, "prefixes": list(self.prefixes),
                "window": self.window, "checkpoint_multiplier": self.checkpoint_multiplier}

    @classmethod
    def from_json(cls, data: Any, field: str = "filter") -> GroupFilter:
        """The filter stored as :meth:`as_json` made it, every field type-checked; raises
        ``ValueError`` naming the field (``filter.<name>``) otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{field}: must be an object, got {type(data).__name__}")
        on = data.get("on")
        if on not in ("stream", "event_type"):
            raise ValueError(f"{field}.on: must be 'stream' or 'event_type', got {on!r}")
        regex = data.get("regex", "")
        if type(regex) is not str:
            raise ValueError(f"{field}.regex: must be str, got {regex!r}")
        prefixes = data.get("prefixes", [])
        if not isinstance(prefixes, list) or not all(type(p) is str for p in prefixes):
            raise ValueError(f"{field}.prefixes: must be a list of str, got {prefixes!r}")
        window, multiplier = data.get("window", 0), data.get("checkpoint_multiplier", 0)
        for name, value in (("window", window), ("checkpoint_multiplier", multiplier)):
            if type(value) is not int:
                raise ValueError(f"{field}.{name}: must be int, got {value!r}")
        try:
            return cls(on, regex, tuple(prefixes), window, multiplier)
        except RpcError as exc:
            raise ValueError(exc.message) from None


StartSpec = Literal["start", "end"] | int


@attrs.frozen
class GroupConfig:
    """A group as stored: its stream (or ``$all``), name, settings, where it starts
    (``"start"``, ``"end"`` or a revision / ``$all`` position, as given) and the exesdb
    start that was resolved from it at creation, and its filter (``$all`` only)."""

    stream: str
    group: str
    settings: GroupSettings
    start: StartSpec = "start"
    start_from: int = 0
    filter: GroupFilter | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(stream, group)``."""
        return (self.stream, self.group)

    @property
    def is_all(self) -> bool:
        """True for a group on ``$all``."""
        return self.stream == ALL

    def as_json(self) -> dict[str, Any]:
        """The group as stored in the config stream."""
        return {"stream": self.stream, "group": self.group,
                "settings": attrs.asdict(self.settings), "start": self.start,
                "start_from": self.start_from,
                "filter": self.filter.as_json() if self.filter is not None else None}

    @classmethod
    def from_json(cls, data: Any) -> GroupConfig:
        """The group stored as :meth:`as_json` made it (a decoded JSON value), every
        field type-checked, so that a group that reads is one its process can run.
        Raises ``ValueError`` naming the bad field otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"group: must be an object, got {type(data).__name__}")
        stream, group = data.get("stream"), data.get("group")
        if type(stream) is not str or not stream:
            raise ValueError(f"stream: must be a non-empty str, got {stream!r}")
        if type(group) is not str or not group:
            raise ValueError(f"group: must be a non-empty str, got {group!r}")
        settings = GroupSettings.from_json(data.get("settings", {}))
        start = data.get("start", "start")
        if not (start in ("start", "end") or (type(start) is int and 0 <= start < 2**63)):
            raise ValueError(f"start: must be 'start', 'end' or an int >= 0, got {start!r}")
        start_from = data.get("start_from", 0)
        if type(start_from) is not int or not 0 <= start_from < 2**63:
            raise ValueError(f"start_from: must be an int >= 0, got {start_from!r}")
        raw_filter = data.get("filter")
        if raw_filter is not None and stream != ALL:
            raise ValueError("filter: only a group on $all has one")
        return cls(stream, group, settings, start, start_from,
                   GroupFilter.from_json(raw_filter) if raw_filter is not None else None)


def _read_config_event(event: EventRecord) -> tuple[list[Any], set[str]]:
    """The stored groups (raw) of a :data:`CONFIG_STREAM` event, and the exesdb
    subscriptions it records as being deleted (only from an event the server wrote: a
    decoded JSON value, where a client's event reads as bytes). Raises ``ValueError``
    naming what does not read."""
    data = event.data
    written_here = not isinstance(data, bytes | bytearray)
    if not written_here:
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"data: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"data: must be an object, got {type(data).__name__}")
    raws = data.get("groups")
    if not isinstance(raws, list):
        raise ValueError(f"groups: must be a list, got {type(raws).__name__}")
    deleted = data.get("deleted", [])
    if not written_here or not isinstance(deleted, list):
        deleted = []
    return raws, {name for name in deleted if isinstance(name, str)
                  and name.startswith(PREFIX)}


def _raw_name(raw: Any) -> str | None:
    """The exesdb subscription a stored group that does not read names, if it does."""
    if isinstance(raw, dict) and type(raw.get("stream")) is str \
            and type(raw.get("group")) is str:
        return subscription_name(raw["stream"], raw["group"])
    return None


def _describe(raw: Any) -> str:
    name = _raw_name(raw)
    return repr(name) if name is not None else repr(raw)[:200]


def _same_start(a: StartSpec, b: StartSpec) -> bool:
    """True when two start positions are the same (``"start"`` is position 0)."""
    return (0 if a == "start" else a) == (0 if b == "start" else b)


def _invalid(message: str) -> RpcError:
    return RpcError(StatusCode.INVALID_ARGUMENT, message)


def _not_found(stream: str, group: str) -> RpcError:
    return RpcError(StatusCode.NOT_FOUND,
                    f"Subscription group {group} on stream {stream} does not exist.",
                    {"exception": "persistent-subscription-does-not-exist",
                     "stream-name": stream, "group-name": group})


def _exists(stream: str, group: str) -> RpcError:
    return RpcError(StatusCode.ALREADY_EXISTS,
                    f"Subscription group {group} on stream {stream} exists.",
                    {"exception": "persistent-subscription-exists",
                     "stream-name": stream, "group-name": group})


def _unavailable(detail: str) -> RpcError:
    return RpcError(StatusCode.UNAVAILABLE, f"Server Is Not Ready: {detail}")


# -- the bookkeeping -------------------------------------------------------------------------


@attrs.define(eq=False)
class Entry:
    """One event of a group, from its arrival until it is done.

    ``key`` is its place in the subscription's order (None for a replayed parked event,
    which is behind the checkpoint already); ``anchor`` what a checkpoint at it
    acknowledges; ``item`` what a consumer receives. ``state`` is ``"ready"`` (waiting for
    a consumer), ``"flight"`` (sent to ``consumer``, due back by ``deadline``),
    ``"parking"`` (to be written to the parked stream, with ``reason``) or ``"done"``.
    """

    ack_id: Hashable
    key: int | None
    item: Any
    stream_id: str
    anchor: Any = None
    retry_count: int = 0
    state: str = "ready"
    consumer: int | None = None
    deadline: float | None = None
    reason: str = ""


@attrs.define(eq=False)
class _Slot:
    buffer_size: int
    in_flight: dict[Hashable, Entry] = attrs.Factory(dict)
    total: int = 0


class Ledger:
    """A group's bookkeeping, free of I/O and of the clock (times are given): the events
    waiting for a consumer (retries first), the events in flight per consumer with their
    retry counts and deadlines, and the checkpoint it may move to.

    Guarantees: the checkpoint candidate (:attr:`safe_key`) never passes an event that is
    not done (acked, skipped, filtered out or parked); an event goes to at most one
    consumer at a time, to a consumer with a free slot (``buffer_size`` in flight at most);
    an event that fails (nack retry, timeout, its consumer leaving) more than
    ``max_retry_count`` times is handed back to be parked.
    """

    def __init__(self, max_retry_count: int, message_timeout: float, strategy: str) -> None:
        self.max_retry_count = max_retry_count
        self.message_timeout = message_timeout  # seconds; 0: no timeout
        self.strategy = strategy
        self.consumers: dict[int, _Slot] = {}
        self.ready: deque[Entry] = deque()
        self.retry: deque[Entry] = deque()
        self.flight: dict[Hashable, Entry] = {}
        self.parking: list[Entry] = []
        self.window: deque[Entry] = deque()  # arrived since the safe key, in key order
        self.last_key: int | None = None  # the last key that arrived
        self.safe_key: int | None = None  # everything up to it is done
        self.safe_anchor: Any = None
        self.since_checkpoint = 0  # events that became safe since the last checkpoint
        self._rotation = 0
        self._deadlines: list[tuple[float, int, Entry]] = []  # a heap; stale items skipped
        self._sequence = itertools.count()

    # -- arrivals ------------------------------------------------------------------------------
    def receive(self, key: int, ack_id: Hashable, item: Any, stream_id: str, wanted: bool,
                anchor: Any = None) -> bool:
        """An event of the subscription arrived (keys increase); ``wanted`` False for one
        the filter leaves out (done at once). Returns False for a key already seen."""
        if self.last_key is not None and key <= self.last_key:
            return False
        self.last_key = key
        entry = Entry(ack_id, key, item, stream_id, anchor, state="ready" if wanted else "done")
        self.window.append(entry)
        if wanted:
            self.ready.append(entry)
        else:
            self._advance()
        return True

    def add_replayed(self, ack_id: Hashable, item: Any, stream_id: str) -> Entry:
        """A parked event to deliver again, ahead of new events; returns its entry, whose
        state becomes ``"done"`` once it is acked, skipped or parked again."""
        entry = Entry(ack_id, None, item, stream_id)
        self.retry.append(entry)
        return entry

    # -- consumers -----------------------------------------------------------------------------
    def connect(self, cid: int, buffer_size: int) -> None:
        """A consumer joins, with room for ``buffer_size`` events in flight."""
        self.consumers[cid] = _Slot(buffer_size)

    def disconnect(self, cid: int) -> list[Entry]:
        """A consumer leaves: its events in flight are retried; returns those to park."""
        slot = self.consumers.pop(cid, None)
        if slot is None:
            return []
        to_park: list[Entry] = []
        for entry in list(slot.in_flight.values()):
            self.flight.pop(entry.ack_id, None)
            self._fail(entry, "Client disconnected and max retry count reached", to_park)
        return to_park

    def free(self, cid: int) -> int:
        """How many more events consumer ``cid`` may have in flight."""
        slot = self.consumers.get(cid)
        return 0 if slot is None else slot.buffer_size - len(slot.in_flight)

    def dispatch(self, now: float) -> list[tuple[int, Entry]]:
        """Give waiting events (retries first) to consumers with free slots, per the
        strategy; returns ``(consumer, entry)`` in the order to send them."""
        out: list[tuple[int, Entry]] = []
        for queue in (self.retry, self.ready):
            while queue:
                entry = queue[0]
                if entry.state != "ready":
                    queue.popleft()
                    continue
                if entry.ack_id in self.flight:
                    break  # the same id is in flight: wait until it is done
                cid = self._choose(entry)
                if cid is None:
                    return out
                queue.popleft()
                slot = self.consumers[cid]
                entry.state, entry.consumer = "flight", cid
                entry.deadline = now + self.message_timeout if self.message_timeout > 0 else None
                if entry.deadline is not None:
                    heapq.heappush(self._deadlines,
                                   (entry.deadline, next(self._sequence), entry))
                slot.in_flight[entry.ack_id] = entry
                slot.total += 1
                self.flight[entry.ack_id] = entry
                out.append((cid, entry))
        return out

    def _choose(self, entry: Entry) -> int | None:
        cids = list(self.consumers)
        if not cids:
            return None
        if self.strategy == "DispatchToSingle":
            return next((c for c in cids if self.free(c) > 0), None)
        if self.strategy in ("Pinned", "PinnedByCorrelation"):
            pinned = cids[zlib.crc32(entry.stream_id.encode()) % len(cids)]
            if self.free(pinned) > 0:
                return pinned
        for i in range(len(cids)):
            cid = cids[(self._rotation + i) % len(cids)]
            if self.free(cid) > 0:
                self._rotation = (self._rotation + i + 1) % len(cids)
                return cid
        return None

    # -- outcomes ------------------------------------------------------------------------------
    def ack(self, ids: Iterable[Hashable], cid: int | None = None) -> None:
        """The events with these ids are processed. Only ids in flight count (to consumer
        ``cid`` when given): others are ignored, so a consumer cannot settle an event it
        does not hold (one waiting, or in flight to another consumer)."""
        for ack_id in ids:
            entry = self._take(ack_id, cid)
            if entry is not None:
                self._done(entry)

    def nack(self, ids: Iterable[Hashable], action: NackAction, reason: str = "",
             cid: int | None = None) -> list[Entry]:
        """The events with these ids failed: ``park`` (returned, to be parked), ``skip``
        (done), ``retry`` or ``unknown`` (sent again, or parked once over the retry
        count). ``stop`` changes nothing here (the group ends that consumer). As for
        :meth:`ack`, ids not in flight (to ``cid`` when given) are ignored."""
        to_park: list[Entry] = []
        if action == "stop":
            return to_park
        for ack_id in ids:
            entry = self._take(ack_id, cid)
            if entry is None:
                continue
            if action == "skip":
                self._done(entry)
            elif action == "park":
                entry.state, entry.reason = "parking", reason or "Client nak"
                self.parking.append(entry)
                to_park.append(entry)
            else:
                self._fail(entry, reason or "Max retry count reached", to_park)
        return to_park

    def expire(self, now: float) -> list[Entry]:
        """Events in flight past their deadline are retried; returns those to park."""
        to_park: list[Entry] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, entry = heapq.heappop(heap)
            if entry.state == "flight" and entry.deadline == deadline:
                self._take(entry.ack_id)
                self._fail(entry, "Message timed out and max retry count reached", to_park)
        return to_park

    def parked(self, entry: Entry) -> None:
        """``entry`` was written to the parked stream: it is done."""
        if entry.state == "parking":
            with contextlib.suppress(ValueError):
                self.parking.remove(entry)
            self._done(entry)

    def checkpointed(self) -> None:
        """The safe key was stored as the checkpoint."""
        self.since_checkpoint = 0

    def next_deadline(self) -> float | None:
        """The earliest deadline of an event in flight."""
        heap = self._deadlines
        while heap and not (heap[0][2].state == "flight" and heap[0][2].deadline == heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _take(self, ack_id: Hashable, cid: int | None = None) -> Entry | None:
        entry = self.flight.get(ack_id)
        if entry is None or (cid is not None and entry.consumer != cid):
            return None
        del self.flight[ack_id]
        slot = self.consumers.get(entry.consumer) if entry.consumer is not None else None
        if slot is not None:
            slot.in_flight.pop(ack_id, None)
        entry.consumer = entry.deadline = None
        return entry

    def _fail(self, entry: Entry, reason: str, to_park: list[Entry]) -> None:
        entry.consumer = entry.deadline = None
        if entry.retry_count >= self.max_retry_count:
            entry.state, entry.reason = "parking", reason
            self.parking.append(entry)
            to_park.append(entry)
        else:
            entry.retry_count += 1
            entry.state = "ready"
            self.retry.append(entry)

    def _done(self, entry: Entry) -> None:
        entry.state = "done"
        if entry.key is not None:
            self._advance()

    def _advance(self) -> None:
        window = self.window
        while window and window[0].state == "done":
            entry = window.popleft()
            self.safe_key, self.safe_anchor = entry.key, entry.anchor
            self.since_checkpoint += 1

    # -- stats ---------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Events waiting for a consumer (first deliveries)."""
        return sum(1 for e in self.ready if e.state == "ready")

    @property
    def retrying(self) -> int:
        """Events waiting to be sent again."""
        return sum(1 for e in self.retry if e.state == "ready")


# -- what the group reports ------------------------------------------------------------------


@attrs.frozen
class Connection:
    """Who a consumer is: its peer address, user name and connection name."""

    peer: str = ""
    username: str = ""
    name: str = "<unknown>"


@attrs.frozen
class ConsumerInfo:
    """A connected consumer's statistics."""

    connection: Connection
    total_items: int
    in_flight: int
    available_slots: int


@attrs.frozen
class GroupInfo:
    """A group's settings and live statistics, as GetInfo and List report them.

    Positions are keys of the subscription's order (stream revisions, or ``$all``
    positions); None when there is none yet.
    """

    config: GroupConfig
    status: str
    connections: tuple[ConsumerInfo, ...] = ()
    total_items: int = 0
    last_checkpoint: int | None = None
    last_known: int | None = None
    waiting: int = 0
    retrying: int = 0
    in_flight: int = 0
    parked: int = 0


# -- the group process -----------------------------------------------------------------------


@attrs.define(eq=False)
class _Consumer:
    connection: Connection
    outbox: list[tuple[Any, Any, int]] = attrs.Factory(list)
    waiting: gen_server.From | None = None


_STOP: Final = ("stop",)


class PersistentGroup(otp.GenServer):
    """One group: see the module docstring. Requests (``gen_server.call``):
    ``("connect", connection, buffer_size)`` -> consumer id (or an :class:`RpcError`),
    ``("pull", cid)`` -> ``("events", [(event, link, retry_count), ...])``, ``("stop",)``
    or ``("drop", RpcError)`` once there is something (held until then),
    ``("ack", cid, ids)``, ``("nack", cid, ids, action, reason)``, ``("info",)``,
    ``("settings", settings)``, ``("replay", stop_at)``, ``("drop",)``; cast
    ``("disconnect", cid)``.
    """

    child_shutdown: Final = 10.0  # type: ignore[misc]

    async def init(self, opts: StoreOptions, config: GroupConfig) -> Any:
        otp.trap_exits(True)  # so that an orderly stop checkpoints (terminate)
        self.opts = opts
        self.store_id = opts.store_id
        self.config = config
        self.name = subscription_name(config.stream, config.group)
        self.parked_stream = parked_stream(config.stream, config.group)
        self.ledger = self._new_ledger(config.settings)
        self.consumers: dict[int, _Consumer] = {}
        self.ended: dict[int, Any] = {}  # consumers ended by the group: what their pull gets
        self.ids = itertools.count(1)
        self.started = False
        self.start_retry_at: float | None = None
        self.checkpoint: int | None = None
        self.checkpoint_at = trio.current_time()
        self.checkpoint_retry_at: float | None = None
        self.park_retry_at: float | None = None
        self.parked_last = -1  # the last event number of the parked stream
        self.replayed_before = 0  # the parked stream's truncate-before
        self.replay_next = 0  # the next parked event to queue for a replay
        # the parked events queued for a replay, in order, with their entries (None for a
        # link whose event is gone): the truncate-before passes one once it is done
        self.replaying: deque[tuple[int, Entry | None]] = deque()
        self.replay_done_before = 0  # the truncate-before the replayed events done allow
        self.replay_retry_at: float | None = None
        self.deleted = False
        self.total = 0
        return otp.Continue("start")

    @staticmethod
    def _new_ledger(settings: GroupSettings) -> Ledger:
        return Ledger(settings.max_retry_count, settings.message_timeout_ms / 1000,
                      settings.consumer_strategy)

    # -- start -------------------------------------------------------------------------------
    async def handle_continue(self, arg: Any) -> Any:
        await self._start()
        return await self._settle(no_reply=True)

    async def _start(self) -> None:
        """Load the checkpoint and the parked stream's state, then subscribe (again after
        :data:`RETRY` s while the store is not ready)."""
        config = self.config
        selector = ALL if config.is_all else f"${config.stream}"
        try:
            for sub in await gateway.get_subscriptions(self.store_id):
                if sub.name == self.name:
                    self.checkpoint = sub.position
            self.parked_last = await gateway.get_version(self.store_id, self.parked_stream)
            self.replayed_before = await self._read_truncate_before()
            self.replay_next = self.replayed_before
            await gateway.save_subscription(self.store_id, "by_stream", selector, self.name,
                                            config.start_from, otp.self())
        except ExESDBError as exc:
            log.debug("store %r: group %r not started yet: %s", self.store_id, self.name, exc)
            self.start_retry_at = trio.current_time() + RETRY
            return
        self.started = True
        self.start_retry_at = None

    async def _read_truncate_before(self) -> int:
        events = await gateway.get_events(self.store_id, f"${self.parked_stream}", END, 1,
                                          "backward")
        data = events[0].data if events else None
        if isinstance(data, bytes):  # written by a client: JSON bytes
            try:
                data = json.loads(data)
            except ValueError:
                return 0
        value = data.get("$tb") if isinstance(data, dict) else None
        return value if isinstance(value, int) and value >= 0 else 0

    # -- messages ----------------------------------------------------------------------------
    async def handle_info(self, msg: Any) -> Any:
        if type(msg) is Events and msg.subscription == self.name:
            await self._receive(msg.events)
        elif msg is not otp.TIMEOUT and type(msg) is not otp.Exit:
            return await super().handle_info(msg)
        return await self._settle(no_reply=True)

    async def _receive(self, events: Iterable[EventRecord]) -> None:
        config = self.config
        for record in events:
            key = record.position if config.is_all else record.event_number
            if self.ledger.last_key is not None and key <= self.ledger.last_key:
                continue
            event, link = record, None
            if config.settings.resolve_links and record.event_type == "$>":
                target = await self._resolve(record)
                if target is not None:
                    event, link = target, record
            wanted = config.filter is None or config.filter.matches(record)
            ack_id = (link or event).event_id
            self.ledger.receive(key, ack_id, (event, link), event.stream_id, wanted, record)

    async def _resolve(self, link: EventRecord) -> EventRecord | None:
        """The event a link (``"<number>@<stream>"``) points to, None if it is gone."""
        data = link.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        number, sep, stream = text.partition("@")
        if not sep or not number.isdigit() or not stream:
            return None
        try:
            found = await gateway.get_events(self.store_id, stream, int(number), 1)
        except (StreamDeleted, ExESDBError):
            return None
        return found[0] if found and found[0].event_number == int(number) else None

    async def handle_cast(self, msg: Any) -> Any:
        if msg[0] == "disconnect":
            await self._drop_consumer(msg[1], None)
        else:
            return await super().handle_cast(msg)
        return await self._settle(no_reply=True)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        op = request[0]
        reply: Any = None
        if op == "pull":
            cid = request[1]
            consumer = self.consumers.get(cid)
            if consumer is None:
                reply = self.ended.pop(cid, ("drop", RpcError(
                    StatusCode.CANCELLED, f"Subscription group {self.config.group} on stream "
                    f"{self.config.stream} was dropped.")))
            elif consumer.outbox:
                reply = ("events", consumer.outbox)
                consumer.outbox = []
            else:
                consumer.waiting = from_
                return await self._settle(no_reply=True)
        elif op == "ack":
            self.ledger.ack(request[2], request[1])
        elif op == "nack":
            _, cid, ids, action, reason = request
            self.ledger.nack(ids, action, reason, cid)
            if action == "stop":
                await self._drop_consumer(cid, _STOP)
        elif op == "connect":
            reply = self._connect(request[1], request[2])
        elif op == "info":
            reply = self._info()
        elif op == "settings":
            self._apply(request[1])
        elif op == "replay":
            reply = await self._replay(request[1])
        elif op == "drop":  # the group is being deleted
            self.deleted = True
            for cid in list(self.consumers):
                await self._drop_consumer(cid, ("drop", _not_found(*self.config.key)))
        else:
            raise ValueError(f"PersistentGroup: unknown request {request!r}")
        return await self._settle(reply=reply)

    def _connect(self, connection: Connection, buffer_size: int) -> Any:
        limit = self.config.settings.max_subscriber_count
        if limit and len(self.consumers) >= limit:
            stream, group = self.config.key
            return RpcError(
                StatusCode.FAILED_PRECONDITION,
                f"Maximum subscriptions reached for subscription group {group} on stream "
                f"{stream}.", {"exception": "maximum-subscribers-reached",
                               "stream-name": stream, "group-name": group})
        cid = next(self.ids)
        self.consumers[cid] = _Consumer(connection)
        self.ledger.connect(cid, buffer_size)
        return cid

    async def _drop_consumer(self, cid: int, ending: Any) -> None:
        """End consumer ``cid``: its events in flight are retried; its pull gets
        ``ending`` (None: it left by itself)."""
        consumer = self.consumers.pop(cid, None)
        if consumer is None:
            return
        self.ledger.disconnect(cid)
        if ending is None:
            return
        if consumer.waiting is not None:
            gen_server.reply(consumer.waiting, ending)
        else:
            self.ended[cid] = ending

    def _apply(self, settings: GroupSettings) -> None:
        self.config = attrs.evolve(self.config, settings=settings)
        ledger = self.ledger
        ledger.max_retry_count = settings.max_retry_count
        ledger.message_timeout = settings.message_timeout_ms / 1000
        ledger.strategy = settings.consumer_strategy

    # -- replay of parked events --------------------------------------------------------------
    async def _replay(self, stop_at: int | None) -> Any:
        """Queue the parked events not queued yet (at most ``stop_at`` of them) ahead of
        new ones. They stay in the parked stream: its truncate-before passes each only once
        it is acked, skipped or parked again (:meth:`_pass_replayed`), so that a stop or a
        crash before then leaves it parked, to be replayed again."""
        start = self.replay_next
        queued = 0
        try:
            while stop_at is None or queued < stop_at:
                count = 500 if stop_at is None else min(500, stop_at - queued)
                batch = await gateway.get_events(self.store_id, self.parked_stream, start,
                                                 count)
                for link in batch:
                    if link.event_number < self.replay_next:
                        continue
                    target = await self._resolve(link)
                    entry = None
                    if target is not None:
                        entry = self.ledger.add_replayed(link.event_id, (target, link),
                                                         target.stream_id)
                    self.replaying.append((link.event_number, entry))
                    self.replay_next = link.event_number + 1
                    queued += 1
                    if stop_at is not None and queued >= stop_at:
                        break
                if len(batch) < count:
                    break
                start = batch[-1].event_number + 1
        except ExESDBError as exc:
            return _unavailable(str(exc))
        return None

    async def _pass_replayed(self) -> None:
        """Move the parked stream's truncate-before past the replayed events that are
        done (up to the first that is not)."""
        replaying = self.replaying
        while replaying and (replaying[0][1] is None or replaying[0][1].state == "done"):
            self.replay_done_before = replaying.popleft()[0] + 1
        before = self.replay_done_before
        if before <= self.replayed_before or self.deleted or (
                self.replay_retry_at is not None
                and trio.current_time() < self.replay_retry_at):
            return
        try:
            await gateway.append_events(self.store_id, f"${self.parked_stream}",
                                        [NewEvent("$metadata", {"$tb": before})])
        except ExESDBError as exc:
            log.warning("store %r: group %r: replayed parked events not marked yet: %s",
                        self.store_id, self.name, exc)
            self.replay_retry_at = trio.current_time() + RETRY
            return
        self.replay_retry_at = None
        self.replayed_before = before

    # -- the loop ----------------------------------------------------------------------------
    async def _settle(self, reply: Any = None, no_reply: bool = False) -> Any:
        """Run what is due (timeouts, parking, dispatch, checkpoint), answer the waiting
        consumers, and return the directive with the time until the next due work."""
        now = trio.current_time()
        if not self.started and self.start_retry_at is not None and now >= self.start_retry_at:
            await self._start()
        self.ledger.expire(now)
        await self._park()
        await self._pass_replayed()
        for cid, entry in self.ledger.dispatch(now):
            event, link = entry.item
            self.consumers[cid].outbox.append((event, link, entry.retry_count))
            self.total += 1
        for consumer in self.consumers.values():
            if consumer.waiting is not None and consumer.outbox:
                gen_server.reply(consumer.waiting, ("events", consumer.outbox))
                consumer.waiting, consumer.outbox = None, []
        await self._checkpoint(now)
        timeout = self._timeout()
        if no_reply:
            return otp.NoReply(timeout=timeout)
        return otp.Reply(reply, timeout=timeout)

    def _timeout(self) -> float | None:
        now = trio.current_time()
        due = [t for t in (self.ledger.next_deadline(), self.start_retry_at,
                           self.checkpoint_retry_at, self.park_retry_at,
                           self.replay_retry_at) if t is not None]
        settings = self.config.settings
        if self.ledger.since_checkpoint and self.ledger.since_checkpoint >= max(
                1, settings.min_checkpoint_count):
            due.append(self.checkpoint_at + settings.checkpoint_after_ms / 1000)
        return max(min(due) - now, 0.0) if due else None

    async def _park(self) -> None:
        """Write the events to park as links to the parked stream (in one append)."""
        entries = list(self.ledger.parking)
        if not entries or (self.park_retry_at is not None
                           and trio.current_time() < self.park_retry_at):
            return
        added = _dt.datetime.now(_dt.UTC).isoformat()
        links = []
        for entry in entries:
            event = entry.item[0]
            links.append(NewEvent("$>", f"{event.event_number}@{event.stream_id}".encode(),
                                  {"Added": added, "Reason": entry.reason,
                                   "SubscriptionEventNumber": entry.key}))
        try:
            self.parked_last = await gateway.append_events(self.store_id, self.parked_stream,
                                                           links)
        except ExESDBError as exc:
            log.warning("store %r: group %r: events not parked yet: %s", self.store_id,
                        self.name, exc)
            self.park_retry_at = trio.current_time() + RETRY
            return
        self.park_retry_at = None
        for entry in entries:
            self.ledger.parked(entry)

    async def _checkpoint(self, now: float, force: bool = False) -> None:
        """Acknowledge the safe key to exesdb when the checkpoint settings say so."""
        ledger = self.ledger
        count = ledger.since_checkpoint
        if not count or ledger.safe_anchor is None or not self.started or self.deleted:
            return
        if self.checkpoint_retry_at is not None and now < self.checkpoint_retry_at and not force:
            return
        settings = self.config.settings
        due = (force or count >= min(settings.max_checkpoint_count, HARD_CHECKPOINT)
               or (count >= max(1, settings.min_checkpoint_count)
                   and now - self.checkpoint_at >= settings.checkpoint_after_ms / 1000))
        if not due:
            return
        try:
            await gateway.ack_event(self.store_id, self.name, otp.self(), ledger.safe_anchor)
        except (ExESDBError, otp.OTPError) as exc:
            log.warning("store %r: group %r: checkpoint not stored yet: %s", self.store_id,
                        self.name, exc)
            self.checkpoint_retry_at = now + RETRY
            return
        self.checkpoint_retry_at = None
        self.checkpoint = ledger.safe_key
        self.checkpoint_at = now
        ledger.checkpointed()

    def _info(self) -> GroupInfo:
        ledger = self.ledger
        connections = tuple(
            ConsumerInfo(c.connection, ledger.consumers[cid].total,
                         len(ledger.consumers[cid].in_flight), ledger.free(cid))
            for cid, c in self.consumers.items() if cid in ledger.consumers)
        if not self.started:
            status = "NotReady"
        elif ledger.retry and any(e.key is None for e in ledger.retry):
            status = "ReplayingParkedMessages"
        else:
            status = "Live"
        return GroupInfo(self.config, status, connections, self.total, self.checkpoint,
                         ledger.last_key, ledger.waiting, ledger.retrying, len(ledger.flight),
                         max(self.parked_last - self.replayed_before + 1, 0))

    async def terminate(self, reason: Any) -> None:
        for cid in list(self.consumers):
            await self._drop_consumer(cid, ("drop", RpcError(
                StatusCode.UNAVAILABLE, f"Subscription group {self.config.group} on stream "
                f"{self.config.stream} is restarting.")))
        with contextlib.suppress(Exception):  # best effort: the next start delivers again
            await self._park()
            await self._checkpoint(trio.current_time(), force=True)


# -- the manager and the supervisor ----------------------------------------------------------


class GroupManager(StoreServer):
    """Keeps the store's groups: creates, updates and deletes them one at a time (the
    settings durably in :data:`CONFIG_STREAM` first), and starts a :class:`PersistentGroup`
    for each stored group when it starts. Replies are values or :class:`RpcError`
    instances.

    What it reads at start never removes anything it cannot account for: the settings are
    the last event of :data:`CONFIG_STREAM` that reads (events that do not, or groups in it
    that do not, are logged as errors and skipped; a group it skips is not started but its
    settings are written back with every later change, its exesdb subscription, checkpoint
    and parked events kept). An exesdb subscription of a group those settings do not name
    is looked for in earlier settings (and restarted from them, logged), or else kept
    untouched and logged; the only ones removed are those the server itself recorded as
    being deleted (a deletion interrupted between its two steps)."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.groups: dict[tuple[str, str], GroupConfig] = {}
        self.unreadable: list[Any] = []  # stored groups that do not read: kept as they are
        self.loaded = False
        return otp.Continue("load")

    async def handle_continue(self, arg: Any) -> Any:
        return await self._load()

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT and not self.loaded:
            return await self._load()
        if msg is otp.TIMEOUT:
            return None
        return await super().handle_info(msg)

    async def _load(self) -> Any:
        store_id = self.store_id
        try:
            groups, unreadable, deleting, recovered = await self._read_config()
            for sub in await gateway.get_subscriptions(store_id):
                if sub.name in deleting:  # the deletion was interrupted: finish it
                    with contextlib.suppress(SubscriptionNotFound):
                        await gateway.remove_subscription(store_id, sub.type, sub.selector,
                                                          sub.name)
            self.groups, self.unreadable = groups, unreadable
            if recovered:  # write the repaired settings, so that the next start reads them
                await self._save(groups)
        except ExESDBError as exc:
            log.debug("store %r: persistent subscription groups not loaded yet: %s",
                      store_id, exc)
            return otp.NoReply(timeout=RETRY)
        for config in groups.values():
            await self._start_group(config)
        self.loaded = True
        return None

    async def _config_events(self) -> Any:
        """The events of :data:`CONFIG_STREAM`, newest first (none when it is deleted)."""
        position: Any = END
        while True:
            try:
                batch = await gateway.get_events(self.store_id, CONFIG_STREAM, position, 100,
                                                 "backward")
            except StreamDeleted:
                log.error("store %r: %s is deleted: no persistent subscription settings "
                          "read", self.store_id, CONFIG_STREAM)
                return
            for event in batch:
                yield event
            if len(batch) < 100 or batch[-1].event_number <= 0:
                return
            position = batch[-1].event_number - 1

    async def _read_config(self) -> tuple[dict[tuple[str, str], GroupConfig], list[Any],
                                          set[str], bool]:
        """``(groups, unreadable, deleting, recovered)``: the groups of the last settings
        that read, the stored groups in them that do not (raw), the exesdb subscriptions
        whose deletion the server recorded, and whether the settings must be written
        again (events after the last that reads, or groups taken from earlier ones)."""
        store_id = self.store_id
        pending = {sub.name for sub in await gateway.get_subscriptions(store_id)
                   if sub.name.startswith(PREFIX)}
        groups: dict[tuple[str, str], GroupConfig] = {}
        unreadable: list[Any] = []
        deleting: set[str] = set()
        current = True  # still looking for the current settings
        recovered = False
        async for event in self._config_events():
            try:
                raws, deleted = _read_config_event(event)
            except ValueError as exc:
                log.error("store %r: event %d of %s does not read as persistent subscription "
                          "settings (%s): skipped", store_id, event.event_number,
                          CONFIG_STREAM, exc)
                recovered = recovered or current  # the settings read are written again
                continue
            for raw in raws:
                try:
                    config = GroupConfig.from_json(raw)
                except ValueError as exc:
                    if current:
                        log.error("store %r: the settings of group %s in %s do not read "
                                  "(%s): it is not started; its subscription, checkpoint "
                                  "and parked events are kept", store_id, _describe(raw),
                                  CONFIG_STREAM, exc)
                        unreadable.append(raw)
                        pending.discard(_raw_name(raw))
                    continue
                name = subscription_name(*config.key)
                if current:
                    groups[config.key] = config
                elif name in pending and config.key not in groups:
                    log.warning("store %r: group %r is not in the last settings of %s but "
                                "its subscription exists: started with its settings of "
                                "event %d", store_id, name, CONFIG_STREAM, event.event_number)
                    groups[config.key] = config
                    recovered = True
                pending.discard(name)
            if current:
                deleting = deleted & pending
                pending -= deleting
                current = False
            if not pending:
                break
        for name in sorted(pending):
            log.error("store %r: no settings of group %r read from %s: it is not started; "
                      "its subscription and checkpoint are kept", store_id, name,
                      CONFIG_STREAM)
        return groups, unreadable, deleting, recovered

    async def _start_group(self, config: GroupConfig) -> None:
        name = group_name(self.store_id, *config.key)
        if otp.whereis(name) is not None:
            return
        opts = self.opts

        async def start(*_extra: Any) -> otp.Pid | None:
            return await gen_server.start_link(PersistentGroup, opts, config, name=name)

        spec = ChildSpec(id=("group", *config.key), start=start, shutdown=10.0)
        with contextlib.suppress(otp.AlreadyStarted):
            await dynamic_supervisor.start_child(_groups_sup_name(self.store_id), spec)

    async def _stop_group(self, key: tuple[str, str]) -> None:
        pid = otp.whereis(group_name(self.store_id, *key))
        if pid is None:
            return
        with contextlib.suppress(otp.OTPError):
            await dynamic_supervisor.terminate_child(_groups_sup_name(self.store_id), pid)

    async def _save(self, groups: dict[tuple[str, str], GroupConfig],
                    deleting: Iterable[str] = ()) -> None:
        """Store ``groups`` (with the stored groups that do not read, as they are) and
        the exesdb subscriptions about to be removed (so that a start finishes that)."""
        names = {subscription_name(*key) for key in groups}
        self.unreadable = [raw for raw in self.unreadable if _raw_name(raw) not in names]
        data = {"version": 1, "groups": [c.as_json() for c in groups.values()]
                + self.unreadable, "deleted": sorted(deleting)}
        await gateway.append_events(self.store_id, CONFIG_STREAM,
                                    [NewEvent(CONFIG_EVENT_TYPE, data)])
        self.groups = groups

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not self.loaded:
            return _unavailable("persistent subscriptions are loading")
        try:
            return await self._handle(request)
        except RpcError as exc:
            return exc
        except ExESDBError as exc:
            return rpc_error(exc)
        except otp.OTPError as exc:
            return _unavailable(str(exc))

    async def _handle(self, request: Any) -> Any:
        op = request[0]
        if op == "create":
            new: GroupConfig = request[1]
            name = subscription_name(*new.key)
            if any(subscription_name(*key) == name for key in self.groups):
                raise _exists(*new.key)  # or another group of the same exesdb name
            new = attrs.evolve(new, start_from=await self._resolve_start(new))
            await self._save({**self.groups, new.key: new})
            await self._start_group(new)
            return None
        if op == "list":
            stream = request[1]
            return [await self._info(c) for c in self.groups.values()
                    if stream is None or c.stream == stream]
        if op == "restart":
            for key in list(self.groups):
                await self._stop_group(key)
            for each in self.groups.values():
                await self._start_group(each)
            return None
        key = request[1]
        config = self.groups.get(key)
        if config is None:
            raise _not_found(*key)
        if op == "update":
            return await self._update(config, request[2], request[3])
        if op == "delete":
            await self._call_group(key, ("drop",))
            await self._stop_group(key)
            await self._save({k: c for k, c in self.groups.items() if k != key},
                             deleting=[subscription_name(*key)])
            with contextlib.suppress(SubscriptionNotFound):
                await gateway.remove_subscription(
                    self.store_id, "by_stream", ALL if config.is_all else f"${config.stream}",
                    subscription_name(*key))
            parked = parked_stream(*key)
            last = await gateway.get_version(self.store_id, parked)
            if last >= 0:  # a group created again later starts with no parked events
                await gateway.append_events(self.store_id, f"${parked}",
                                            [NewEvent("$metadata", {"$tb": last + 1})])
            return None
        if op == "info":
            return await self._info(config)
        if op == "group":  # where a consumer connects
            pid = otp.whereis(group_name(self.store_id, *key))
            if pid is None:
                await self._start_group(config)
                pid = otp.whereis(group_name(self.store_id, *key))
            if pid is None:
                raise _unavailable("the group is restarting")
            return pid
        if op == "replay":
            return await self._call_group(key, ("replay", request[2]))
        raise ValueError(f"GroupManager: unknown request {request!r}")

    async def _update(self, config: GroupConfig, settings: GroupSettings,
                      start: StartSpec | None) -> None:
        key = config.key
        config = attrs.evolve(config, settings=settings)
        if start is None or _same_start(start, config.start):
            await self._save({**self.groups, key: config})
            await self._call_group(key, ("settings", config.settings))
            return
        moved = attrs.evolve(config, start=start)
        if await self._position(key) is not None:  # it goes on from its checkpoint
            await self._save({**self.groups, key: moved})
            await self._call_group(key, ("settings", moved.settings))
            return
        moved = attrs.evolve(moved, start_from=await self._resolve_start(moved))
        await self._stop_group(key)  # an orderly stop checkpoints what was acknowledged
        if await self._position(key) is not None:
            moved = attrs.evolve(moved, start_from=config.start_from)
        else:  # nothing acknowledged: the group starts over from the new position
            with contextlib.suppress(SubscriptionNotFound):
                await gateway.remove_subscription(
                    self.store_id, "by_stream", ALL if config.is_all else f"${config.stream}",
                    subscription_name(*key))
        await self._save({**self.groups, key: moved})
        await self._start_group(moved)

    async def _position(self, key: tuple[str, str]) -> int | None:
        """The stored position (checkpoint) of a group's exesdb subscription, if any."""
        name = subscription_name(*key)
        for sub in await gateway.get_subscriptions(self.store_id):
            if sub.name == name:
                return sub.position
        return None

    async def _resolve_start(self, config: GroupConfig) -> int:
        """The exesdb start (inclusive) of a new group."""
        store_id = self.store_id
        if config.is_all:
            last = await gateway.read_all(store_id, END, 1, "backward")
            head = last[0].position if last else -1
            if config.start == "start":
                return 0
            if config.start == "end":
                return head + 1
            if config.start > head + 1:
                raise _invalid(f"start position: commit position {config.start} is past the "
                               f"end of $all ({head})")
            return config.start
        if config.start == "start":
            return 0
        if config.start == "end":
            return await gateway.get_version(store_id, config.stream) + 1
        return config.start

    async def _call_group(self, key: tuple[str, str], request: Any) -> Any:
        try:
            return await gen_server.call(group_name(self.store_id, *key), request,
                                         CALL_TIMEOUT)
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            if request[0] in ("settings", "drop"):
                return None  # it reads its settings when it starts again
            raise _unavailable("the group is restarting") from None

    async def _info(self, config: GroupConfig) -> GroupInfo:
        try:
            info: GroupInfo = await gen_server.call(group_name(self.store_id, *config.key),
                                                    ("info",), CALL_TIMEOUT)
            return attrs.evolve(info, config=config)  # the settings as stored
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            return GroupInfo(config, "NotReady")


class PersistentGroups(StoreSupervisor):
    """A store's groups, rest_for_one: the dynamic supervisor of the
    :class:`PersistentGroup` processes, then the :class:`GroupManager`."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        name = _groups_sup_name(opts.store_id)

        async def start() -> otp.Pid | None:
            return await dynamic_supervisor.start_link(name=name, intensity=20, period=10)

        sup_spec = ChildSpec(id=(child_spec_id(PersistentGroups, opts.store_id), "groups"),
                             start=start, type="supervisor")
        return supervisor.Spec([sup_spec, GroupManager.child_spec(opts)],
                               strategy="rest_for_one", intensity=10, period=30)


# -- the API the service calls ---------------------------------------------------------------


async def _manager(store_id: str, request: Any) -> Any:
    try:
        result = await gen_server.call(_manager_name(store_id), request, CALL_TIMEOUT)
    except (otp.NoProc, otp.ServerExited, otp.CallTimeout) as exc:
        raise _unavailable(f"persistent subscriptions of store {store_id!r} are not "
                           f"running ({exc})") from None
    if isinstance(result, RpcError):
        raise result
    return result


async def create_group(store_id: str, config: GroupConfig) -> None:
    """Create a group (``ALREADY_EXISTS`` if it does)."""
    await _manager(store_id, ("create", config))


async def update_group(store_id: str, stream: str, group: str, settings: GroupSettings,
                       start: StartSpec | None = None) -> None:
    """Change a group's settings (``NOT_FOUND`` if there is no such group); its
    consumers stay connected and the new settings apply from the next event.

    ``start`` (None: unchanged) is stored and reported, and, as KurrentDB does (a group
    starts from its start position only when it has no checkpoint), it moves where the
    group reads from only while nothing of it was acknowledged yet: then the group
    restarts there (its consumers are dropped, ``UNAVAILABLE``); once it has a checkpoint
    it goes on from that."""
    await _manager(store_id, ("update", (stream, group), settings, start))


async def delete_group(store_id: str, stream: str, group: str) -> None:
    """Delete a group: its consumers are dropped (``NOT_FOUND``), its checkpoint and
    settings removed, its parked events truncated away."""
    await _manager(store_id, ("delete", (stream, group)))


async def group_info(store_id: str, stream: str, group: str) -> GroupInfo:
    """A group's settings and statistics."""
    info: GroupInfo = await _manager(store_id, ("info", (stream, group)))
    return info


async def list_groups(store_id: str, stream: str | None = None) -> list[GroupInfo]:
    """Every group, or those on ``stream`` (``$all`` included as a stream name)."""
    infos: list[GroupInfo] = await _manager(store_id, ("list", stream))
    return infos


async def replay_parked(store_id: str, stream: str, group: str, stop_at: int | None) -> None:
    """Deliver the group's parked events again (at most ``stop_at``), ahead of new ones."""
    await _manager(store_id, ("replay", (stream, group), stop_at))


async def restart_groups(store_id: str) -> None:
    """Restart every group's process (their consumers are dropped)."""
    await _manager(store_id, ("restart",))


class Consumer:
    """A connected consumer of a group, as a ``Read`` call holds it (usable from any trio
    task of the node): :meth:`pull` the next events, :meth:`ack` / :meth:`nack` them,
    :meth:`close` when the call ends."""

    def __init__(self, pid: otp.Pid, cid: int, stream: str, group: str) -> None:
        self.pid = pid
        self.cid = cid
        self.stream = stream
        self.group = group

    async def _call(self, request: Any, timeout: float | None = CALL_TIMEOUT) -> Any:
        try:
            return await gen_server.call(self.pid, request, timeout)
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            raise RpcError(StatusCode.UNAVAILABLE,
                           f"Subscription group {self.group} on stream {self.stream} is "
                           "restarting.") from None

    async def pull(self) -> list[tuple[EventRecord, EventRecord | None, int]] | None:
        """The next events ``(event, link, retry_count)`` for this consumer (waits for
        some); None once the consumer was stopped (nack ``stop``). Raises
        :class:`RpcError` when the group drops it (deleted, restarting)."""
        result = await self._call(("pull", self.cid), None)
        if result[0] == "events":
            events: list[tuple[EventRecord, EventRecord | None, int]] = result[1]
            return events
        if result[0] == "stop":
            return None
        raise result[1]

    async def ack(self, ids: list[uuid.UUID]) -> None:
        """These events are processed."""
        await self._call(("ack", self.cid, ids))

    async def nack(self, ids: list[uuid.UUID], action: NackAction, reason: str = "") -> None:
        """These events failed; see :meth:`Ledger.nack`."""
        await self._call(("nack", self.cid, ids, action, reason))

    def close(self) -> None:
        """The consumer leaves: its events in flight go to the others (never blocks)."""
        gen_server.cast(self.pid, ("disconnect", self.cid))


async def connect(store_id: str, stream: str, group: str, connection: Connection,
                  buffer_size: int) -> Consumer:
    """Join group ``group`` on ``stream`` as a consumer allowed ``buffer_size`` events in
    flight (``NOT_FOUND``; ``FAILED_PRECONDITION`` when it has its maximum of consumers)."""
    pid = await _manager(store_id, ("group", (stream, group)))
    consumer = Consumer(pid, 0, stream, group)
    result = await consumer._call(("connect", connection, buffer_size))
    if isinstance(result, RpcError):
        raise result
    consumer.cid = result
    return consumer
