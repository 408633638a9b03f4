"""A persistent subscription group's configuration, and how it is stored.

:class:`GroupConfig` is a group as KurrentDB's clients define it: its event source (a
stream, or :data:`ALL`), its name, its :class:`GroupSettings`, where it starts and, on
``$all``, its :class:`GroupFilter`. Every group's configuration is kept durably, with
every other group's, as the last event (type :data:`CONFIG_EVENT_TYPE`, JSON) of the
system stream :data:`CONFIG_STREAM`: :func:`config_event_data` is what is written there,
:func:`read_config_event` and :meth:`GroupConfig.from_json` read it back, type-checking
every field so that a group that reads is one its process can run (``ValueError`` naming
the field otherwise).

Also here, the names a group is known by in the store: its exesdb subscription
(:func:`subscription_name`) and its parked-event stream (:func:`parked_stream`).

Values only: no processes, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

from ...errors import InvalidArgument
from ...events import EventRecord
from ..patterns import compile_filter
from ..rpc import RpcError
from .rpc_errors import invalid

__all__ = [
    "ALL",
    "BATCH_NOT_BELOW_BUFFER",
    "CONFIG_EVENT_TYPE",
    "CONFIG_STREAM",
    "NO_STRATEGY",
    "PREFIX",
    "STRATEGIES",
    "GroupConfig",
    "GroupFilter",
    "GroupSettings",
    "StartSpec",
    "config_event_data",
    "describe_raw",
    "parked_stream",
    "raw_name",
    "read_config_event",
    "same_start",
    "subscription_name",
]

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


# -- names -----------------------------------------------------------------------------------


def subscription_name(stream: str, group: str) -> str:
    """The exesdb persistent subscription of group ``group`` on ``stream`` (or ``$all``)."""
    return f"{PREFIX}{stream}::{group}"


def parked_stream(stream: str, group: str) -> str:
    """The stream a group parks its events in (KurrentDB's name)."""
    return f"$persistentsubscription-{stream}::{group}-parked"


# -- settings --------------------------------------------------------------------------------


NO_STRATEGY: Final = "Consumer strategy {} does not exist."
"""KurrentDB's reason for refusing a consumer strategy it does not know."""
BATCH_NOT_BELOW_BUFFER: Final = (
    "Specified argument was out of the range of valid values. "
    "(Parameter 'ReadBatchSize may not be greater than or equal to BufferSize')")
"""KurrentDB's reason (its .NET exception's message) for refusing a read batch size not
below the history buffer size."""


@attrs.frozen
class GroupSettings:
    """A group's settings, with KurrentDB's names and defaults (times in milliseconds).

    Behaviour follows ``message_timeout_ms`` (0: no timeout), ``max_retry_count``,
    ``max_subscriber_count`` (0: no limit), ``consumer_strategy``, ``resolve_links``,
    ``checkpoint_after_ms`` (0: never by time, only at ``max_checkpoint_count``),
    ``min_checkpoint_count`` and ``max_checkpoint_count``, ``history_buffer_size``,
    ``read_batch_size`` and ``live_buffer_size`` (see :mod:`exesdb.grpc.groups.buffer`);
    ``extra_statistics`` is kept and reported.

    KurrentDB refuses two things only, and so does a group (:meth:`strategy_problem`,
    :meth:`buffer_problem`): a consumer strategy it does not know, and a read batch size
    not below the history buffer size. Any other int is taken as KurrentDB takes it
    (checkpoint counts in any order, negative counts and times), with KurrentDB's
    meaning where it has one (a negative ``max_retry_count`` parks at the first failure,
    a negative ``max_subscriber_count`` admits no consumer).
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

    def strategy_problem(self) -> str | None:
        """KurrentDB's reason for refusing :attr:`consumer_strategy` (not one of
        :data:`STRATEGIES`), or None."""
        if self.consumer_strategy not in STRATEGIES:
            return NO_STRATEGY.format(self.consumer_strategy)
        return None

    def buffer_problem(self) -> str | None:
        """KurrentDB's reason for refusing the sizes (a ``read_batch_size`` not below the
        ``history_buffer_size``), or None."""
        if self.read_batch_size >= self.history_buffer_size:
            return BATCH_NOT_BELOW_BUFFER
        return None

    @classmethod
    def from_json(cls, data: Any, field: str = "settings") -> GroupSettings:
        """The settings stored as ``attrs.asdict`` made them: every field type-checked
        (bools bool, numbers int, the strategy a str; a missing one takes its default,
        an unknown one is ignored) and as KurrentDB takes them (a known strategy, a read
        batch below the history buffer). Raises ``ValueError`` naming the field
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
        settings = cls(**values)
        problem = settings.strategy_problem()
        if problem is not None:
            raise ValueError(f"{field}.consumer_strategy: {problem}")
        problem = settings.buffer_problem()
        if problem is not None:
            raise ValueError(f"{field}.read_batch_size: {problem}")
        return settings


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
                raise invalid(str(exc)) from None
        elif not self.prefixes:
            raise invalid("filter: needs a regex or at least one prefix")

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


StartSpec: TypeAlias = Literal["start", "end"] | int
"""Where a group starts: ``"start"``, ``"end"``, or a stream revision / ``$all`` position."""


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



def config_event_data(groups: Iterable[GroupConfig], unreadable: Iterable[Any] = (),
                      deleting: Iterable[str] = ()) -> dict[str, Any]:
    """The data of the :data:`CONFIG_STREAM` event that stores ``groups``, the stored
    groups that do not read (``unreadable``, kept as they are) and the exesdb
    subscriptions about to be removed (``deleting``, so that a start finishes that);
    :func:`read_config_event` reads it back."""
    return {"version": 1, "groups": [c.as_json() for c in groups] + list(unreadable),
            "deleted": sorted(deleting)}


def read_config_event(event: EventRecord) -> tuple[list[Any], set[str]]:
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


def raw_name(raw: Any) -> str | None:
    """The exesdb subscription a stored group that does not read names, if it does."""
    if isinstance(raw, dict) and type(raw.get("stream")) is str \
            and type(raw.get("group")) is str:
        return subscription_name(raw["stream"], raw["group"])
    return None


def describe_raw(raw: Any) -> str:
    """A stored group that does not read, for a log message: its exesdb subscription's
    name if it names one, else its beginning."""
    name = raw_name(raw)
    return repr(name) if name is not None else repr(raw)[:200]


def same_start(a: StartSpec, b: StartSpec) -> bool:
    """True when two start positions are the same (``"start"`` is position 0)."""
    return (0 if a == "start" else a) == (0 if b == "start" else b)

