"""What the storage tells about a soft-deleted stream beyond "it reads as missing", on every
backend: a delete answers the stream's last event number, a failed expected version keeps
it, and an append says when it recreated a soft-deleted stream. (KurrentDB's protocol needs
these; the in-process rules stay as they are: see test_expected_version.py.)"""

from __future__ import annotations

import pytest

from exesdb import ANY, NO_STREAM, STREAM_EXISTS, WrongExpectedVersion
from exesdb.storage import Appended

from .helpers import new_events


async def test_a_delete_answers_the_last_event_number_of_the_stream(backend):
    await backend.append("s", NO_STREAM, new_events(3))
    assert await backend.delete_stream("s") == 2
    assert await backend.delete_stream("s") == 2  # soft-deleted: still its last number
    assert await backend.delete_stream("s", hard=True) == 2


async def test_a_delete_of_a_stream_that_never_had_an_event_answers_minus_one(backend):
    assert await backend.delete_stream("never") == -1
    assert await backend.delete_stream("never", NO_STREAM, hard=True) == -1


@pytest.mark.parametrize("expected", [0, STREAM_EXISTS])
async def test_a_wrong_expectation_on_a_soft_deleted_stream_keeps_its_last_number(
        backend, expected):
    await backend.append("s", NO_STREAM, new_events(2))
    await backend.delete_stream("s")
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", expected, new_events(1))
    assert (info.value.actual, info.value.last_event_number) == (-1, 1)
    assert info.value.soft_deleted


async def test_a_wrong_expectation_on_a_live_or_missing_stream_is_not_soft_deleted(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    with pytest.raises(WrongExpectedVersion) as live:
        await backend.delete_stream("s", 0)
    with pytest.raises(WrongExpectedVersion) as missing:
        await backend.delete_stream("nope", 0)
    assert (live.value.last_event_number, live.value.soft_deleted) == (1, False)
    assert (missing.value.last_event_number, missing.value.soft_deleted) == (-1, False)


async def test_an_append_says_when_it_recreated_a_soft_deleted_stream(backend):
    first = await backend.append("s", NO_STREAM, new_events(2))
    await backend.delete_stream("s")
    again = await backend.append("s", ANY, new_events(1))
    later = await backend.append("s", ANY, new_events(1))
    assert isinstance(again, Appended) and isinstance(first, Appended)
    assert [first.recreated, again.recreated, later.recreated] == [False, True, False]
