"""Durable subscription definitions: what a persistent subscription is, kept by the storage.

A definition records how a persistent subscription was created (its ``type``,
``selector`` and ``start_from``); its position lives apart, in the checkpoint of the
same name (:class:`~exesdb.storage.SaveCheckpoint`), so saving a definition never moves
a position, while :class:`~exesdb.storage.DeleteSubscription` removes both.

A selector is stored as its compact JSON text (:func:`selector_json`): the same text
the subscriptions hash for a pattern's topic, so a mapping selector reads back equal to
the one saved (a tuple as a list).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..errors import InvalidArgument

__all__ = ["SUBSCRIPTION_TYPES", "SubscriptionDefinition", "check_selector",
           "check_subscription_type", "selector_json"]

SUBSCRIPTION_TYPES: Final = ("by_stream", "by_event_type", "by_event_pattern",
                             "by_event_payload")
"""The subscription types, as in ExESDB."""


@attrs.frozen
class SubscriptionDefinition:
    """A stored persistent subscription: ``name``, ``type`` (one of
    :data:`SUBSCRIPTION_TYPES`), ``selector`` (a str, or a JSON mapping for pattern and
    payload subscriptions), ``start_from`` (where it started when created) and
    ``with_subscriber``: whether it delivers to a subscriber process (so that, with none,
    it waits for one rather than broadcast)."""

    name: str
    type: str
    selector: str | dict[str, Any] = attrs.field(hash=False)
    start_from: int
    with_subscriber: bool = False


def check_subscription_type(value: object, field: str = "type") -> str:
    """A subscription type: one of :data:`SUBSCRIPTION_TYPES`."""
    if isinstance(value, str) and value in SUBSCRIPTION_TYPES:
        return str(value)
    choices = ", ".join(repr(kind) for kind in SUBSCRIPTION_TYPES)
    raise InvalidArgument(f"{field}: must be one of {choices}, got {value!r}")


def selector_json(selector: str | Mapping[str, Any]) -> str:
    """The stored text of a (checked) selector: compact JSON, keys sorted, not ASCII-escaped
    (``json.dumps(selector, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``)."""
    return json.dumps(selector, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _check_keys(value: Any, field: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(
                    f"{field}: mapping keys must be str, got {type(key).__name__} key {key!r}"
                )
            _check_keys(item, f"{field}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_keys(item, f"{field}[{index}]")


def check_selector(value: object, field: str = "selector") -> tuple[str | dict[str, Any], str]:
    """A selector: a str, or a mapping that is JSON-compatible with str keys throughout.

    Returns ``(selector, text)``: the selector as it reads back from ``text``, its stored
    form (:func:`selector_json`).
    """
    if isinstance(value, str):
        selector: str | dict[str, Any] = str(value)
    elif isinstance(value, Mapping):
        selector = dict(value)
    else:
        raise InvalidArgument(
            f"{field}: must be a str or a JSON-compatible mapping, got {type(value).__name__}"
        )
    try:
        text = selector_json(selector)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{field}: must be a str or a JSON-compatible mapping ({exc})"
                              ) from None
    _check_keys(selector, field)
    decoded: str | dict[str, Any] = json.loads(text)
    return decoded, text
