"""exesdb.grpc.metadata: parsing ``$$stream`` metadata and the events it leaves visible."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exesdb.events import EventRecord
from exesdb.grpc.metadata import (
    StreamMetadata,
    first_visible,
    is_metadata_stream,
    metadata_stream,
    parse,
    visible,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000


def stream_of(ages_s: list[float]) -> list[EventRecord]:
    """A stream's records, numbered from 0, created ``ages_s`` seconds before NOW."""
    out = []
    for number, age in enumerate(ages_s):
        created_epoch = NOW_US - int(age * 1_000_000)
        out.append(EventRecord(
            stream_id="s", event_number=number, event_id=uuid.UUID(int=number + 1),
            event_type="T", data=None, metadata=None, content_type="application/json",
            created=dt.datetime.fromtimestamp(created_epoch / 1e6, dt.UTC),
            created_epoch=created_epoch, position=number))
    return out


def numbers(records: list[EventRecord]) -> list[int]:
    return [r.event_number for r in records]


# -- parse -----------------------------------------------------------------------------------


def test_the_reserved_keys_and_custom_keys_parse_from_the_clients_json_bytes():
    data = json.dumps({"$maxCount": 5, "$maxAge": 60, "$tb": 2, "$acl": {"$r": "$all"},
                       "owner": "me"}).encode()
    assert parse(data) == StreamMetadata(max_count=5, max_age=60, truncate_before=2,
                                         acl={"$r": "$all"}, custom={"owner": "me"})


def test_metadata_appended_in_process_as_a_json_value_parses_too():
    assert parse({"$tb": 0}) == StreamMetadata(truncate_before=0)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b"\xff", None, 7],
                         ids=["not-json", "array", "not-utf8", "none", "int"])
def test_metadata_that_is_not_a_json_object_counts_as_absent(data):
    assert parse(data) == StreamMetadata()


@pytest.mark.parametrize("value", [0, -1, True, "5", 1.5, None])
def test_a_reserved_value_of_the_wrong_kind_counts_as_absent(value):
    parsed = parse({"$maxCount": value, "$maxAge": value})
    assert (parsed.max_count, parsed.max_age) == (None, None)
    assert not parsed.restricts


def test_the_metadata_stream_of_a_stream_is_its_name_after_two_dollars():
    assert metadata_stream("orders") == "$$orders"
    assert is_metadata_stream("$$orders") and not is_metadata_stream("$orders")


# -- visible ---------------------------------------------------------------------------------


def test_truncate_before_and_max_count_set_the_first_visible_number():
    assert first_visible(StreamMetadata(), 9) == 0
    assert first_visible(StreamMetadata(truncate_before=4), 9) == 4
    assert first_visible(StreamMetadata(max_count=3), 9) == 7
    assert first_visible(StreamMetadata(truncate_before=8, max_count=3), 9) == 8


ages = st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=30)
counts = st.none() | st.integers(min_value=1, max_value=40)


@given(ages)
def test_without_metadata_every_record_is_visible(ages_s):
    records = stream_of(ages_s)
    assert visible(records, StreamMetadata(), NOW, len(records) - 1) == records


@given(ages, st.integers(min_value=0, max_value=40))
def test_truncate_before_leaves_exactly_the_events_numbered_from_it(ages_s, tb):
    records = stream_of(ages_s)
    kept = visible(records, StreamMetadata(truncate_before=tb), NOW, len(records) - 1)
    assert numbers(kept) == list(range(tb, len(records)))


@given(ages, st.integers(min_value=1, max_value=40))
def test_max_count_leaves_exactly_the_last_events(ages_s, max_count):
    records = stream_of(ages_s)
    kept = visible(records, StreamMetadata(max_count=max_count), NOW, len(records) - 1)
    assert kept == records[-max_count:]


@given(ages, st.integers(min_value=1, max_value=1000))
def test_max_age_leaves_exactly_the_younger_events(ages_s, max_age):
    records = stream_of(ages_s)
    kept = visible(records, StreamMetadata(max_age=max_age), NOW, len(records) - 1)
    assert kept == [r for r in records if NOW_US - r.created_epoch < max_age * 1_000_000]


@given(ages, counts, counts, st.none() | st.integers(min_value=1, max_value=1000),
       st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=30))
def test_combined_rules_keep_what_each_rule_keeps_in_order_for_any_slice(
        ages_s, max_count, tb, max_age, lo, hi):
    records = stream_of(ages_s)
    last = len(records) - 1
    meta = StreamMetadata(max_count=max_count, max_age=max_age, truncate_before=tb)
    page = records[lo:hi]
    kept = visible(page, meta, NOW, last)
    each = [visible(page, StreamMetadata(max_count=max_count), NOW, last),
            visible(page, StreamMetadata(truncate_before=tb), NOW, last),
            visible(page, StreamMetadata(max_age=max_age), NOW, last)]
    assert kept == [r for r in page if all(r in rule for rule in each)]
    assert visible(kept, meta, NOW, last) == kept
