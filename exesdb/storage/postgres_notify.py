"""Commit notices: how a PostgreSQL store tells every node what a transaction appended.

Every write transaction of :class:`~exesdb.storage.postgres.PostgresBackend` that
appends events sends, **inside the transaction** (so it is delivered if and only if the
transaction commits, after it committed), a PostgreSQL notification on the store's
channel (:func:`notify_channel`) whose payload is a :class:`CommitNotice`: the ``$all``
positions it took (``first`` .. ``last``), the streams and event types it appended to,
and the ``token`` of the backend that wrote it (so a node can tell its own commits).

PostgreSQL delivers the notifications of committed transactions in commit order, and a
store's positions follow commit order, so a listener that saw the notice of ``last``
knows every position up to ``last`` committed. A notice whose streams and types would
not fit PostgreSQL's payload limit carries ``streams=None`` and ``types=None``: the
listener then reads the range from the store to learn them
(:mod:`exesdb.systems.cluster.listener`). A notice is only a wake-up: whoever misses
one reads what it missed from the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Final

import attrs

__all__ = ["MAX_PAYLOAD", "CommitNotice", "decode_notice", "encode_notice", "notify_channel"]

MAX_PAYLOAD: Final = 7_900
"""Bytes a payload may take (PostgreSQL refuses 8000 and more)."""
_string: Final = encode_basestring
"""A str as JSON, non-ASCII characters kept (``json.dumps(..., ensure_ascii=False)``'s;
the payload is JSON written here directly: ``json.dumps`` with arguments makes an encoder
per call, a third of the notice's cost)."""


@attrs.frozen
class CommitNotice:
    """What one committed transaction appended: positions ``first`` .. ``last`` of
    ``$all``, the ``streams`` and event ``types`` (None when they did not fit the
    payload), written by the backend whose token is ``token``."""

    first: int
    last: int
    token: str
    streams: frozenset[str] | None
    types: frozenset[str] | None


def notify_channel(schema: str) -> str:
    """The notification channel of the store in ``schema``: the schema's name (at most
    63 bytes, as PostgreSQL's channel names; always quoted as an identifier in
    ``LISTEN``)."""
    return schema


def encode_notice(first: int, last: int, token: str, streams: Iterable[str],
                  types: Iterable[str]) -> str:
    """The payload of a :class:`CommitNotice` (JSON); the streams and types are left
    out when the payload would exceed :data:`MAX_PAYLOAD` bytes."""
    head = f'{{"f":{int(first)},"l":{int(last)},"t":{_string(token)}'
    text = (f'{head},"s":[{",".join(map(_string, sorted(streams)))}],'
            f'"e":[{",".join(map(_string, sorted(types)))}]}}')
    if len(text) * 4 <= MAX_PAYLOAD or len(text.encode()) <= MAX_PAYLOAD:
        return text
    return head + "}"


def decode_notice(payload: str) -> CommitNotice | None:
    """The :class:`CommitNotice` in ``payload``, or None when it is not one (a
    notification someone else sent on the channel)."""
    try:
        body = json.loads(payload)
        first, last, token = body["f"], body["l"], body["t"]
        streams, types = body.get("s"), body.get("e")
    except (ValueError, KeyError, TypeError):
        return None
    if (type(first) is not int or type(last) is not int or not 0 <= first <= last
            or type(token) is not str):
        return None
    if streams is None or types is None:
        return CommitNotice(first, last, token, None, None)
    if (not isinstance(streams, list) or not isinstance(types, list)
            or not all(isinstance(s, str) for s in streams + types)):
        return None
    return CommitNotice(first, last, token, frozenset(streams), frozenset(types))
