"""The expected-version and idempotence rules, as pure functions every backend shares.

A stream's state is ``(last, first, hard_deleted)``: ``last`` is the number of the last
event ever written to it (-1 when none), ``first`` the first number still visible (a soft
delete moves it past ``last``). Its *version*, the one expected versions are checked
against, is ``last`` when ``last >= first`` and -1 otherwise (a missing or soft-deleted
stream).

Append, exactly (``found`` maps each new event id already present among the stream's
visible events to its number):

* hard-deleted stream: :class:`exesdb.StreamDeleted`, whatever else holds;
* no id found: ``ANY`` always passes, ``STREAM_EXISTS`` needs version >= 0, an int ``v``
  (``NO_STREAM`` is -1) needs version == ``v``; otherwise
  :class:`exesdb.WrongExpectedVersion`;
* ids found: the append is a re-send and returns without writing when, with an int ``v``,
  the ids are those of the events numbered ``v+1 .. v+n`` in order (returns ``v+n``), or,
  with ``ANY``, those of the stream's last ``n`` events in order (returns the version).
  For ``NO_STREAM`` ``v`` is ``first - 1``, so a re-send of the first append after a soft
  delete is recognised too. Anything else (a partial overlap, ``STREAM_EXISTS``, ids in
  another order) raises :class:`exesdb.WrongExpectedVersion`.

Delete: the same version check (no idempotence); a soft delete of a stream whose version
is -1 changes nothing; a hard delete of a missing stream leaves a tombstone. A delete
returns ``last``, the number of the stream's last event ever written (-1 when none).

Every :class:`exesdb.WrongExpectedVersion` raised here carries ``last`` as its
``last_event_number`` (for a soft-deleted stream: the version it had, which KurrentDB's
protocol keeps for later expectations; see :mod:`exesdb.grpc.streams_service`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..constants import ANY, NO_STREAM, STREAM_EXISTS, ExpectedVersion
from ..errors import StreamDeleted, WrongExpectedVersion

__all__ = ["check_append", "check_delete", "visible_version"]


def visible_version(last: int, first: int) -> int:
    """The version of a stream whose last number is ``last`` and first visible ``first``."""
    return last if last >= first else -1


def _check(stream_id: str, expected: ExpectedVersion, version: int, last: int) -> None:
    if expected is ANY:
        return
    if expected is STREAM_EXISTS:
        if version < 0:
            raise WrongExpectedVersion(stream_id, expected, version, "the stream does not exist",
                                       last)
        return
    if version != expected:
        raise WrongExpectedVersion(stream_id, expected, version, last_event_number=last)


def check_append(
    stream_id: str,
    expected: ExpectedVersion,
    last: int,
    first: int,
    hard_deleted: bool,
    ids: Sequence[Any],
    found: Mapping[Any, int],
) -> int | None:
    """Apply the append rules; return None to write the events, or the version an
    idempotent re-send returns. Raises :class:`exesdb.StreamDeleted` or
    :class:`exesdb.WrongExpectedVersion`."""
    if hard_deleted:
        raise StreamDeleted(stream_id)
    version = visible_version(last, first)
    if not found:
        _check(stream_id, expected, version, last)
        return None
    count = len(ids)
    numbers = [found.get(event_id) for event_id in ids]
    if expected is ANY:
        base = version - count
    elif expected is STREAM_EXISTS:
        base = None
    elif expected == NO_STREAM:
        base = first - 1
    else:
        base = int(expected)
    if (base is not None and base + count <= version and base + 1 >= first
            and numbers == list(range(base + 1, base + count + 1))):
        return base + count
    event_id = next(i for i in ids if i in found)
    shown = uuid.UUID(bytes=event_id) if isinstance(event_id, bytes) else event_id
    raise WrongExpectedVersion(
        stream_id, expected, version,
        f"event id {shown} is already in the stream as event {found[event_id]}", last,
    )


def check_delete(
    stream_id: str, expected: ExpectedVersion, last: int, first: int, hard_deleted: bool
) -> None:
    """Apply the delete rules' version check (see the module docstring)."""
    if hard_deleted:
        raise StreamDeleted(stream_id)
    _check(stream_id, expected, visible_version(last, first), last)
