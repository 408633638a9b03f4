"""Expected versions, idempotent re-sends and deletes, on the SQLite backend."""

from __future__ import annotations

import pytest

from exesdb import (
    ANY,
    END,
    NO_STREAM,
    STREAM_EXISTS,
    NewEvent,
    StreamDeleted,
    WrongExpectedVersion,
)

from .helpers import new_events


async def test_no_stream_appends_to_a_missing_stream(backend):
    assert await backend.append("s", NO_STREAM, new_events(1)) == 0


async def test_no_stream_fails_on_an_existing_stream(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", NO_STREAM, new_events(1))
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("s", -1, 1)


async def test_stream_exists_fails_on_a_missing_stream_with_actual_minus_one(backend):
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", STREAM_EXISTS, new_events(1))
    assert info.value.actual == -1
    assert info.value.expected is STREAM_EXISTS


async def test_stream_exists_appends_to_an_existing_stream(backend):
    await backend.append("s", NO_STREAM, new_events(1))
    assert await backend.append("s", STREAM_EXISTS, new_events(1)) == 1


async def test_an_exact_version_must_be_the_last_event_number(backend):
    await backend.append("s", NO_STREAM, new_events(3))
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", 1, new_events(1))
    assert info.value.actual == 2
    assert await backend.append("s", 2, new_events(1)) == 3


async def test_an_exact_version_on_a_missing_stream_fails(backend):
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", 0, new_events(1))
    assert info.value.actual == -1


async def test_any_appends_whatever_the_version(backend):
    assert await backend.append("s", ANY, new_events(1)) == 0
    assert await backend.append("s", ANY, new_events(1)) == 1


async def test_a_failed_append_writes_nothing(backend):
    await backend.append("s", NO_STREAM, new_events(1))
    with pytest.raises(WrongExpectedVersion):
        await backend.append("s", 5, new_events(3))
    assert await backend.stream_version("s") == 0
    assert len(await backend.read_all()) == 1


# -- idempotence -----------------------------------------------------------------------


async def test_a_resend_with_the_same_expected_version_returns_the_original_result(backend):
    sent = new_events(3)
    assert await backend.append("s", NO_STREAM, sent) == 2
    assert await backend.append("s", NO_STREAM, sent) == 2
    assert len(await backend.read_stream("s")) == 3


async def test_a_resend_with_an_exact_version_in_the_past_returns_its_result(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    sent = new_events(2)
    assert await backend.append("s", 1, sent) == 3
    await backend.append("s", 3, new_events(5))
    assert await backend.append("s", 1, sent) == 3
    assert await backend.stream_version("s") == 8


async def test_a_resend_with_any_returns_the_current_version_when_it_is_the_tail(backend):
    await backend.append("s", ANY, new_events(2))
    sent = new_events(2)
    assert await backend.append("s", ANY, sent) == 3
    assert await backend.append("s", ANY, sent) == 3
    assert await backend.stream_version("s") == 3


async def test_a_resend_with_any_after_later_events_is_an_error(backend):
    sent = new_events(2)
    await backend.append("s", ANY, sent)
    await backend.append("s", ANY, new_events(1))
    with pytest.raises(WrongExpectedVersion, match="already in the stream"):
        await backend.append("s", ANY, sent)


async def test_a_partial_overlap_is_an_error(backend):
    first, second = new_events(2)
    await backend.append("s", NO_STREAM, [first])
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", NO_STREAM, [first, second])
    assert info.value.actual == 0
    assert await backend.stream_version("s") == 0


async def test_a_resend_in_another_order_is_an_error(backend):
    sent = new_events(2)
    await backend.append("s", NO_STREAM, sent)
    with pytest.raises(WrongExpectedVersion):
        await backend.append("s", NO_STREAM, list(reversed(sent)))


async def test_a_resend_with_stream_exists_is_an_error(backend):
    sent = new_events(1)
    await backend.append("s", NO_STREAM, sent)
    with pytest.raises(WrongExpectedVersion):
        await backend.append("s", STREAM_EXISTS, sent)


async def test_an_id_already_in_the_stream_fails_a_new_append(backend):
    old = NewEvent("T", 1)
    await backend.append("s", NO_STREAM, [old, NewEvent("T", 2)])
    with pytest.raises(WrongExpectedVersion, match=str(old.event_id)):
        await backend.append("s", 1, [NewEvent("T", 3), old])


async def test_the_same_id_may_be_used_in_another_stream(backend):
    event = NewEvent("T", 1)
    await backend.append("a", NO_STREAM, [event])
    assert await backend.append("b", NO_STREAM, [event]) == 0


# -- deletes ---------------------------------------------------------------------------


async def test_a_soft_deleted_stream_reads_as_missing(backend):
    await backend.append("s", NO_STREAM, new_events(3))
    await backend.delete_stream("s")
    assert await backend.read_stream("s") == []
    assert await backend.read_stream("s", END, 10, "backward") == []
    assert await backend.stream_version("s") == -1
    assert await backend.list_streams() == []


async def test_appending_after_a_soft_delete_continues_the_numbering(backend):
    await backend.append("s", NO_STREAM, new_events(3))
    await backend.delete_stream("s")
    assert await backend.append("s", NO_STREAM, new_events(2)) == 4
    assert [r.event_number for r in await backend.read_stream("s")] == [3, 4]
    assert await backend.list_streams() == ["s"]


async def test_a_soft_deleted_stream_can_be_restarted_with_any(backend):
    await backend.append("s", NO_STREAM, new_events(1))
    await backend.delete_stream("s")
    assert await backend.append("s", ANY, new_events(1)) == 1


async def test_a_soft_deleted_stream_fails_an_exact_old_version(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    await backend.delete_stream("s")
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.append("s", 1, new_events(1))
    assert info.value.actual == -1


async def test_deleted_events_stay_in_all(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    await backend.append("t", NO_STREAM, new_events(1))
    await backend.delete_stream("s")
    await backend.delete_stream("t", hard=True)
    assert [(r.stream_id, r.event_number) for r in await backend.read_all()] == [
        ("s", 0), ("s", 1), ("t", 0)
    ]


async def test_events_hidden_by_a_soft_delete_no_longer_count_for_idempotence(backend):
    sent = new_events(2)
    await backend.append("s", NO_STREAM, sent)
    await backend.delete_stream("s")
    assert await backend.append("s", NO_STREAM, sent) == 3
    assert [r.event_number for r in await backend.read_stream("s")] == [2, 3]


async def test_the_first_append_after_a_soft_delete_is_recognised_when_resent(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    await backend.delete_stream("s")
    sent = new_events(1)
    assert await backend.append("s", NO_STREAM, sent) == 2
    assert await backend.append("s", NO_STREAM, sent) == 2
    assert await backend.stream_version("s") == 2


async def test_soft_deleting_a_missing_stream_with_any_does_nothing(backend):
    await backend.delete_stream("nope")
    assert await backend.stream_version("nope") == -1
    assert await backend.append("nope", NO_STREAM, new_events(1)) == 0


async def test_delete_checks_the_expected_version(backend):
    await backend.append("s", NO_STREAM, new_events(2))
    with pytest.raises(WrongExpectedVersion) as info:
        await backend.delete_stream("s", 0)
    assert info.value.actual == 1
    await backend.delete_stream("s", 1)
    assert await backend.stream_version("s") == -1


async def test_a_hard_deleted_stream_raises_stream_deleted_for_good(tmp_path, backend):
    await backend.append("s", NO_STREAM, new_events(2))
    await backend.delete_stream("s", hard=True)
    for attempt in (
        backend.read_stream("s"),
        backend.stream_version("s"),
        backend.append("s", ANY, new_events(1)),
        backend.append("s", NO_STREAM, new_events(1)),
        backend.delete_stream("s"),
        backend.delete_stream("s", hard=True),
    ):
        with pytest.raises(StreamDeleted) as info:
            await attempt
        assert info.value.stream_id == "s"
    assert await backend.list_streams() == []


async def test_a_hard_delete_holds_across_reopening(tmp_path):
    from exesdb.storage import SQLiteBackend

    store = await SQLiteBackend.open(tmp_path / "store")
    await store.append("s", NO_STREAM, new_events(1))
    await store.delete_stream("s", hard=True)
    await store.close()
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        with pytest.raises(StreamDeleted):
            await store.append("s", ANY, new_events(1))
    finally:
        await store.close()


async def test_hard_deleting_a_missing_stream_tombstones_it(backend):
    await backend.delete_stream("ghost", hard=True)
    with pytest.raises(StreamDeleted):
        await backend.append("ghost", NO_STREAM, new_events(1))
    with pytest.raises(StreamDeleted):
        await backend.read_stream("ghost")


async def test_even_an_idempotent_resend_to_a_hard_deleted_stream_fails(backend):
    sent = new_events(1)
    await backend.append("s", NO_STREAM, sent)
    await backend.delete_stream("s", hard=True)
    with pytest.raises(StreamDeleted):
        await backend.append("s", NO_STREAM, sent)
