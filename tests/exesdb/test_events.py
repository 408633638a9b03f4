"""The event model: constants, NewEvent, EventRecord, Filter, Snapshot."""

from __future__ import annotations

import datetime
import pickle
import uuid

import attrs
import pytest

import exesdb
from exesdb import ANY, END, NO_STREAM, STREAM_EXISTS, EventRecord, Filter, NewEvent, Snapshot
from exesdb.events import uuid7


def test_no_stream_equals_minus_one():
    assert NO_STREAM == -1


def test_any_stream_exists_and_end_are_distinct_non_int_sentinels():
    assert len({ANY, STREAM_EXISTS, END}) == 3
    for sentinel in (ANY, STREAM_EXISTS, END):
        assert not isinstance(sentinel, int)
    assert repr(ANY) == "exesdb.ANY"
    assert repr(END) == "exesdb.END"


def test_new_event_defaults_to_a_new_uuid_json_content_type_and_no_metadata():
    a, b = NewEvent("Placed", {"n": 1}), NewEvent("Placed", {"n": 1})
    assert isinstance(a.event_id, uuid.UUID)
    assert a.event_id != b.event_id
    assert a.content_type == "application/json"
    assert a.metadata is None


def test_new_event_with_bytes_data_defaults_to_octet_stream():
    assert NewEvent("Blob", b"\x00\x01").content_type == "application/octet-stream"


def test_new_event_keeps_an_explicit_id_and_content_type():
    event_id = uuid.uuid4()
    event = NewEvent("Placed", b"x", event_id=event_id, content_type="text/plain")
    assert event.event_id == event_id
    assert event.content_type == "text/plain"


def test_new_event_accepts_an_id_in_str_form():
    event_id = uuid.uuid4()
    assert NewEvent("Placed", 1, event_id=str(event_id)).event_id == event_id


def test_new_event_is_frozen():
    event = NewEvent("Placed", {"n": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.event_type = "Other"  # type: ignore[misc]


def test_default_event_ids_are_version_7_and_sort_by_creation_time():
    first = uuid7()
    later = [uuid7() for _ in range(10)]
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert all(u.int >> 80 >= first.int >> 80 for u in later)
    assert uuid.UUID(str(first)) == first


def _record(**changes):
    fields = {
        "stream_id": "s",
        "event_number": 0,
        "event_id": uuid.uuid4(),
        "event_type": "T",
        "data": {"a": [1, 2]},
        "metadata": None,
        "content_type": "application/json",
        "created": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "created_epoch": 1704067200000000,
        "position": 0,
    }
    fields.update(changes)
    return EventRecord(**fields)


def test_event_record_has_the_issue_fields_in_order():
    assert [f.name for f in attrs.fields(EventRecord)] == [
        "stream_id", "event_number", "event_id", "event_type", "data", "metadata",
        "content_type", "created", "created_epoch", "position",
    ]


def test_event_record_is_hashable_even_with_dict_data():
    record = _record(data={"a": {"b": [1]}})
    assert {record: "found"}[record] == "found"


def test_event_record_reports_a_missing_attribute_normally():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _record().nope  # noqa: B018


async def test_a_stored_record_equals_pickles_and_evolves_like_a_built_one(backend):
    event = NewEvent("Placed", {"n": 1}, metadata=b"meta")
    await backend.append("s", NO_STREAM, [event])
    (stored,) = await backend.read_stream("s")
    built = _record(stream_id="s", event_id=event.event_id, event_type="Placed",
                    data={"n": 1}, metadata=b"meta", created=stored.created,
                    created_epoch=stored.created_epoch, position=stored.position)
    assert stored == built
    assert pickle.loads(pickle.dumps(stored)) == built
    assert attrs.evolve(stored, data=2).data == 2
    assert attrs.asdict(stored)["metadata"] == b"meta"
    assert repr(stored).startswith("EventRecord(stream_id='s'")


async def test_a_stored_record_has_a_utc_created_matching_created_epoch(backend):
    await backend.append("s", NO_STREAM, [NewEvent("Placed", 1)])
    (record,) = await backend.read_stream("s")
    assert record.created.tzinfo == datetime.UTC
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert (record.created - epoch) // datetime.timedelta(microseconds=1) == (
        record.created_epoch
    )
    now = datetime.datetime.now(datetime.UTC)
    assert abs((now - record.created).total_seconds()) < 60


def test_filter_matches_every_non_empty_part():
    both = Filter(event_types=("A", "B"), stream_prefixes=("order-",))
    assert both.matches("order-1", "A")
    assert not both.matches("order-1", "C")
    assert not both.matches("user-1", "A")
    assert Filter().matches("anything", "Any")
    assert Filter(event_types=["A"]).event_types == ("A",)
    assert Filter(stream_prefixes="order-").stream_prefixes == ("order-",)


def test_snapshot_defaults_to_no_metadata_and_now():
    snapshot = Snapshot("src", "stream", 3, {"state": 1})
    assert snapshot.metadata is None
    assert snapshot.created.tzinfo == datetime.UTC


def test_errors_carry_their_subject_and_pickle():
    wrong = exesdb.WrongExpectedVersion("s", 3, 5)
    assert (wrong.stream_id, wrong.expected, wrong.actual) == ("s", 3, 5)
    again = pickle.loads(pickle.dumps(wrong))
    assert (again.stream_id, again.expected, again.actual) == ("s", 3, 5)
    deleted = pickle.loads(pickle.dumps(exesdb.StreamDeleted("s")))
    assert deleted.stream_id == "s"
    assert "hard-deleted" in str(deleted)


async def test_stored_records_decode_even_after_the_store_is_closed(tmp_path):
    from exesdb.storage import SQLiteBackend

    store = await SQLiteBackend.open(tmp_path / "store")
    await store.append("s", NO_STREAM, [NewEvent("Placed", {"n": 1})])
    records = await store.read_stream("s")
    await store.close()
    assert records[0].data == {"n": 1}
