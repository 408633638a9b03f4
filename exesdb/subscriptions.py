"""Subscriptions: what they select, how they are named, and where they deliver.

A subscription has a ``type`` and a ``selector``:

* ``"by_stream"``: selector ``"$all"`` (every event, in ``$all`` order) or
  ``"$<stream_id>"`` (one stream, in stream order);
* ``"by_event_type"``: selector the event type;
* ``"by_event_pattern"``: selector a mapping of :class:`~exesdb.EventRecord` field names to
  values; an event matches when every field is equal, a mapping value matching a mapping
  field as a subset (recursively);
* ``"by_event_payload"``: selector a mapping matched the same way against the event's
  ``data`` when it is a mapping (bytes data never matches).

The name ``"transient"`` marks a transient subscription (identified by type, selector and
subscriber; it lives as long as its subscriber); any other name a persistent one, whose
position is kept durably. ``start_from`` is inclusive: a ``$all`` position, or a stream
version for a single-stream subscription. Events reach a subscriber process as
:class:`Events` messages; with no subscriber they are broadcast on the store's events
pub/sub under the topic :func:`topic`. A transient subscription also ends when the part of
the store's core that keeps the subscriptions restarts, or the store stops: its subscriber
process then receives :class:`SubscriptionLost` and no further events of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

import otp

from .errors import InvalidArgument
from .events import EventRecord
from .validation import check_name, check_stream_id

__all__ = [
    "DEFAULT_NAME",
    "TRANSIENT",
    "TYPES",
    "Events",
    "Subscription",
    "SubscriptionLost",
    "SubscriptionType",
    "matcher",
    "pattern_hash",
    "sub_topic",
    "topic",
    "validate",
]

SubscriptionType: TypeAlias = Literal[
    "by_stream", "by_event_type", "by_event_pattern", "by_event_payload"
]
TYPES: Final = ("by_stream", "by_event_type", "by_event_pattern", "by_event_payload")
TRANSIENT: Final = "transient"
"""The name of transient subscriptions."""
DEFAULT_NAME: Final = "all-events"
"""The store's default subscription: by_stream ``"$all"``, created at the store's end."""

_FIELDS: Final = frozenset(a.name for a in attrs.fields(EventRecord))


@attrs.frozen
class Events:
    """What a subscriber process receives: events of ``subscription`` (its name), in order.

    ``key`` (a keyword; None when not given) identifies the subscription in its store:
    its name when persistent; for a transient one, whose name (``"transient"``) does not
    tell it from the subscriber's other transient subscriptions, its type, canonical
    selector and subscriber (:func:`exesdb.systems.notification.leader.transient_key`).
    """

    subscription: str
    events: tuple[EventRecord, ...]
    key: Any = attrs.field(default=None, kw_only=True)


@attrs.frozen
class SubscriptionLost:
    """What the subscriber process of a transient subscription receives when the
    subscription ends without being removed: the process of the store's core that keeps
    the subscriptions ended (the core, or that part of it, restarted) or the store stopped.

    No :class:`Events` of that subscription arrive after it. The fields identify the
    subscription as it was saved (``name`` is ``"transient"``); ``reason`` is the exit
    reason of the process that held it (for example ``otp.SHUTDOWN`` when the core
    restarted in order, or the store stopped). To go on, save the subscription again once
    the store answers (:class:`exesdb.StoreUnavailable` meanwhile), with ``start_from``
    just after the last event received.
    """

    store_id: str
    type: str
    selector: Any
    name: str
    reason: Any


@attrs.frozen
class Subscription:
    """A subscription as :func:`exesdb.gateway.get_subscriptions` reports it.

    ``start_from`` is as given at creation; ``position`` the last acknowledged (or, with no
    subscriber, broadcast) position or version, None before the first; ``subscriber`` the
    process events go to, None when they are broadcast (or, for a persistent subscription
    whose subscriber died, while it waits for a new one).
    """

    type: str
    selector: Any
    name: str
    start_from: int
    position: int | None
    subscriber: otp.Pid | None


def validate(type: object, selector: object, name: object, start_from: object) -> Any:
    """Check a subscription's definition; return the selector to keep (plain dicts and
    lists for mappings and tuples, as it reads back once stored). Raises
    :class:`exesdb.InvalidArgument` naming the field and the rule."""
    if type not in TYPES:
        raise InvalidArgument(f"type: must be one of {', '.join(TYPES)}, got {type!r}")
    check_name(name, "name")
    if isinstance(start_from, bool) or not isinstance(start_from, int) or start_from < 0:
        raise InvalidArgument(f"start_from: must be an int >= 0, got {start_from!r}")
    if type == "by_stream":
        if selector == "$all":
            return selector
        if not isinstance(selector, str) or not selector.startswith("$"):
            raise InvalidArgument(
                f"selector: a by_stream selector is '$all' or '$<stream_id>', got {selector!r}"
            )
        check_stream_id(selector[1:], "selector")
        return selector
    if type == "by_event_type":
        return check_name(selector, "selector", 256)
    if not isinstance(selector, Mapping) or not selector:
        raise InvalidArgument(f"selector: a {type} selector is a non-empty mapping, "
                              f"got {selector!r}")
    plain = _plain(selector)
    if type == "by_event_pattern":
        unknown = sorted(set(plain) - _FIELDS)
        if unknown:
            raise InvalidArgument(
                f"selector: {unknown[0]!r} is not a field of EventRecord "
                f"(fields: {', '.join(sorted(_FIELDS))})"
            )
    try:
        json.dumps(plain, sort_keys=True)  # no default: every value must be JSON's own
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"selector: must be JSON-compatible ({exc})") from None
    return plain


def _plain(value: Any) -> Any:
    """Mappings as dicts and tuples as lists, as the selector reads back once stored."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _canonical(pattern: Any) -> str:
    return json.dumps(pattern, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def pattern_hash(pattern: Any) -> str:
    """The first 8 hex digits of the SHA-256 of the pattern's canonical JSON."""
    return hashlib.sha256(_canonical(pattern).encode("utf-8")).hexdigest()[:8]


def sub_topic(type: str, selector: Any, name: str) -> str:
    """The topic suffix ExESDB broadcasts a subscription's events under."""
    if type == "by_stream":
        if name == DEFAULT_NAME and selector == "$all":
            return "$all"
        return selector if name == TRANSIENT else f"${name}"
    if type == "by_event_type":
        return selector if name == TRANSIENT else f"*{name}-{selector}"
    prefix = "evt-pat" if type == "by_event_pattern" else "evt-pay"
    return f"{prefix}-{name}-{pattern_hash(selector)}"


def topic(store_id: str, type: str, selector: Any, name: str) -> str:
    """The topic, on the store's events pub/sub, of a subscription with no subscriber."""
    return f"{store_id}:{sub_topic(type, selector, name)}"


def _subset(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, Mapping):
        if not isinstance(value, Mapping):
            return False
        return all(key in value and _subset(item, value[key]) for key, item in pattern.items())
    return bool(pattern == value)


def matcher(type: str, selector: Any) -> Any:
    """A predicate ``event -> bool`` for the subscription (None: every event it reads)."""
    if type == "by_stream":
        return None  # "$all" reads everything; a single stream reads only that stream
    if type == "by_event_type":
        return None  # read with a storage filter on the type
    if type == "by_event_pattern":
        items = list(selector.items())
        return lambda event: all(_subset(v, getattr(event, k)) for k, v in items)
    return lambda event: isinstance(event.data, Mapping) and _subset(selector, event.data)


def single_stream(type: str, selector: Any) -> str | None:
    """The stream of a single-stream subscription, None for the others."""
    if type == "by_stream" and selector != "$all":
        return str(selector[1:])
    return None
