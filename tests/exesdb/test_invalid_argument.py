"""Every InvalidArgument case, with its message: it names the field, then the rule."""

from __future__ import annotations

import re

import pytest

import otp
from exesdb import ANY, END, NO_STREAM, Filter, InvalidArgument, NewEvent
from exesdb.constants import MAX_EVENT_SIZE
from exesdb.storage import writer
from exesdb.validation import check_store_id


def raises(message: str):
    """pytest.raises(InvalidArgument) whose message starts with ``message``."""
    return pytest.raises(InvalidArgument, match="^" + re.escape(message))


STREAM_ID_CASES = [
    ("", "stream_id: must not be empty"),
    ("x" * 1025, "stream_id: must be at most 1024 characters, got 1025"),
    ("$all", "stream_id: must not be '$all' (the store-wide stream"),
    (42, "stream_id: must be a str, got int"),
]


def test_invalid_argument_is_a_value_error():
    assert issubclass(InvalidArgument, ValueError)


def test_a_stream_id_of_1024_characters_is_valid():
    from exesdb.validation import check_stream_id

    assert check_stream_id("x" * 1024) == "x" * 1024


@pytest.mark.parametrize(("stream_id", "message"), STREAM_ID_CASES)
async def test_append_rejects_a_bad_stream_id(backend, stream_id, message):
    with raises(message):
        await backend.append(stream_id, ANY, [NewEvent("T", 1)])


@pytest.mark.parametrize(("stream_id", "message"), STREAM_ID_CASES)
async def test_reads_reject_a_bad_stream_id(backend, stream_id, message):
    with raises(message):
        await backend.read_stream(stream_id)
    with raises(message):
        await backend.stream_version(stream_id)
    with raises(message):
        await backend.delete_stream(stream_id)


@pytest.mark.parametrize(("event_type", "message"), [
    ("", "event_type: must not be empty"),
    ("T" * 257, "event_type: must be at most 256 characters, got 257"),
    (None, "event_type: must be a str, got NoneType"),
])
def test_new_event_rejects_a_bad_event_type(event_type, message):
    with raises(message):
        NewEvent(event_type, {})


def test_an_event_type_of_256_characters_is_valid():
    assert NewEvent("T" * 256, {}).event_type == "T" * 256


def test_new_event_rejects_an_empty_content_type():
    with raises("content_type: must not be empty"):
        NewEvent("T", {}, content_type="")


def _circular():
    value: list = []
    value.append(value)
    return value


@pytest.mark.parametrize(("data", "detail"), [
    (object(), "Object of type object is not JSON serializable"),
    ({"a": {1, 2}}, "Object of type set is not JSON serializable"),
    (float("nan"), "Out of range float values are not JSON compliant"),
    (float("inf"), "Out of range float values are not JSON compliant"),
    (_circular(), "recursion"),
    (bytearray(b"x"), "Object of type bytearray is not JSON serializable"),
])
def test_new_event_rejects_data_that_is_neither_json_nor_bytes(data, detail):
    with pytest.raises(InvalidArgument) as info:
        NewEvent("T", data)
    message = str(info.value)
    assert message.startswith("data: must be a JSON-compatible value or bytes (")
    assert detail in message


def test_new_event_rejects_metadata_that_is_neither_json_nor_bytes():
    with raises("metadata: must be a JSON-compatible value or bytes (Object of type"):
        NewEvent("T", {}, metadata=object())


def test_new_event_rejects_data_over_16_mib():
    with raises(f"event size: data plus metadata encode to {MAX_EVENT_SIZE + 1} bytes, "
                f"over the limit of {MAX_EVENT_SIZE} bytes (16 MiB)"):
        NewEvent("T", b"x" * (MAX_EVENT_SIZE + 1))


def test_new_event_counts_data_plus_metadata_towards_the_limit():
    half = MAX_EVENT_SIZE // 2
    NewEvent("T", b"x" * half, metadata=b"y" * half)  # exactly the limit: accepted
    with raises(f"event size: data plus metadata encode to {MAX_EVENT_SIZE + 1} bytes"):
        NewEvent("T", b"x" * half, metadata="y" * (half - 1))  # a JSON str: 2 quotes more


def test_new_event_counts_json_compactly_encoded_utf8():
    # "é" is 2 bytes in UTF-8; the JSON string adds 2 quotes.
    size = MAX_EVENT_SIZE // 2 - 1
    NewEvent("T", "é" * size)
    with raises("event size:"):
        NewEvent("T", "é" * (size + 1))


def test_new_event_rejects_an_id_that_is_not_a_uuid():
    with raises("event_id: must be a uuid.UUID (or its str form), got 'nope'"):
        NewEvent("T", {}, event_id="nope")


@pytest.mark.parametrize("start", [-1, -100])
async def test_reads_reject_a_negative_start(backend, start):
    with raises(f"start_version: must be an int >= 0 or exesdb.END, got {start}"):
        await backend.read_stream("s", start)
    with raises(f"from_position: must be an int >= 0 or exesdb.END, got {start}"):
        await backend.read_all(start)


@pytest.mark.parametrize("start", ["0", 1.5, True, None])
async def test_reads_reject_a_start_that_is_not_an_int(backend, start):
    with raises(f"start_version: must be an int >= 0 or exesdb.END, got {start!r}"):
        await backend.read_stream("s", start)


@pytest.mark.parametrize("count", [0, -1, 1.0, "10", True])
async def test_reads_reject_a_count_below_1(backend, count):
    with raises(f"count: must be an int >= 1, got {count!r}"):
        await backend.read_stream("s", 0, count)
    with raises(f"count: must be an int >= 1, got {count!r}"):
        await backend.read_all(0, count)


async def test_reads_reject_an_unknown_direction(backend):
    with raises("direction: must be 'forward' or 'backward', got 'sideways'"):
        await backend.read_stream("s", 0, 10, "sideways")
    with raises("direction: must be 'forward' or 'backward', got 'Forward'"):
        await backend.read_all(END, 10, "Forward")


async def test_read_all_rejects_a_filter_that_is_not_a_filter(backend):
    with raises("filter: must be an exesdb.Filter or None, got {'event_types': ['A']}"):
        await backend.read_all(0, 10, "forward", {"event_types": ["A"]})


def test_filter_rejects_parts_that_are_not_str():
    with raises("filter.event_types: must contain only str, got int 3"):
        Filter(event_types=["A", 3])
    with raises("filter.stream_prefixes: must be a sequence of str, got int"):
        Filter(stream_prefixes=7)


@pytest.mark.parametrize("expected", [-2, "any", 1.0, None, True])
async def test_append_rejects_a_bad_expected_version(backend, expected):
    with raises("expected_version: must be exesdb.ANY, exesdb.NO_STREAM (-1), "
                f"exesdb.STREAM_EXISTS or an int >= 0, got {expected!r}"):
        await backend.append("s", expected, [NewEvent("T", 1)])


async def test_append_rejects_an_empty_list_of_events(backend):
    with raises("events: must not be empty"):
        await backend.append("s", ANY, [])


async def test_append_rejects_events_that_are_not_new_events(backend):
    with raises("events[1]: must be an exesdb.NewEvent, got dict"):
        await backend.append("s", ANY, [NewEvent("T", 1), {"event_type": "T"}])
    with raises("events: must be a list of exesdb.NewEvent, got dict"):
        await backend.append("s", ANY, {"event_type": "T"})


async def test_append_rejects_an_event_id_repeated_within_the_append(backend):
    event = NewEvent("T", 1)
    with raises(f"events[1].event_id: {event.event_id} repeats events[0].event_id"):
        await backend.append("s", ANY, [event, event])


async def test_nothing_is_written_by_an_invalid_append(backend):
    with pytest.raises(InvalidArgument):
        await backend.append("s", NO_STREAM, [NewEvent("T", 1), "not an event"])
    assert await backend.stream_version("s") == -1
    assert await backend.head_position() == -1


async def test_snapshots_reject_bad_keys_versions_and_data(backend):
    with raises("source_uuid: must not be empty"):
        await backend.record_snapshot("", "stream", 0, {})
    with raises("stream_uuid: must be a str, got int"):
        await backend.read_snapshot("src", 5)
    with raises("version: must be an int >= 0, got -1"):
        await backend.record_snapshot("src", "stream", -1, {})
    with raises("data: must be a JSON-compatible value or bytes"):
        await backend.record_snapshot("src", "stream", 0, object())
    with raises("version: must be an int >= 0, got 'latest'"):
        await backend.read_snapshot("src", "stream", "latest")


async def test_a_snapshot_listing_rejects_bad_keys_and_takes_none_for_any(backend):
    with raises("source_uuid: must not be empty"):
        await backend.list_snapshots("")
    with raises("stream_uuid: must be a str, got int"):
        await backend.list_snapshots(None, 5)
    assert await backend.list_snapshots(None, None) == []


async def test_checkpoints_reject_bad_names_and_positions(backend):
    with raises("name: must not be empty"):
        await backend.save_checkpoint("", 0)
    with raises("position: must be an int >= 0, got -1"):
        await backend.save_checkpoint("sub", -1)


async def test_the_writer_rejects_invalid_input_in_the_caller(backend):
    async with otp.node():
        pid = await writer.start_link(backend)
        with raises("stream_id: must not be '$all'"):
            await writer.append(pid, "$all", ANY, [NewEvent("T", 1)])
        with raises("events: must not be empty"):
            await writer.append(pid, "s", ANY, [])
        with raises("expected_version: must be"):
            await writer.delete_stream(pid, "s", -5)
        assert await writer.append(pid, "s", ANY, [NewEvent("T", 1)]) == 0


@pytest.mark.parametrize(("store_id", "message"), [
    ("", "store_id: must not be empty"),
    (".hidden", "store_id: must be 1 to 64 ASCII letters, digits, '_', '-' and '.', not "
                "starting with '.' or '-', got '.hidden'"),
    ("-x", "store_id: must be 1 to 64 ASCII letters"),
    ("a/b", "store_id: must be 1 to 64 ASCII letters"),
    ("x" * 65, "store_id: must be 1 to 64 ASCII letters"),
    ("é", "store_id: must be 1 to 64 ASCII letters"),
    (3, "store_id: must be a str, got int"),
])
def test_store_ids_follow_the_contract(store_id, message):
    with raises(message):
        check_store_id(store_id)


def test_valid_store_ids_are_accepted():
    for store_id in ("a", "reg_gh", "store-1.v2", "x" * 64, "_x", "0"):
        assert check_store_id(store_id) == store_id
