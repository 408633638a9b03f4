"""Data that its writer says is JSON (``exesdb.payload.JsonText``, what the gRPC door makes
of ``application/json``): stored exactly as given, read back as the JSON value it holds
(or as the bytes, when they do not parse), on every backend."""

from __future__ import annotations

import pickle

from exesdb import NO_STREAM, NewEvent
from exesdb.events import raw_data
from exesdb.payload import JsonText


def _event(data: bytes, event_type: str = "A") -> NewEvent:
    return NewEvent(event_type, JsonText(data), content_type="application/json")


async def test_json_text_reads_back_as_its_json_value(backend):
    await backend.append("s", NO_STREAM, [_event(b'{"sku": "A-1", "n": [1, 2.5]}')])
    (record,) = await backend.read_stream("s")
    assert record.data == {"sku": "A-1", "n": [1, 2.5]}


async def test_json_text_keeps_the_bytes_written_exactly(backend):
    sent = b'{ "sku" :\n "A-1" }'
    await backend.append("s", NO_STREAM, [_event(sent)])
    (record,) = await backend.read_all()
    assert raw_data(record) == sent
    assert record.data == {"sku": "A-1"}  # decoding leaves the stored bytes alone
    assert raw_data(record) == sent


async def test_json_text_that_does_not_parse_reads_back_as_the_bytes(backend):
    await backend.append("s", NO_STREAM, [_event(b"{not json"), _event(b"", "B"),
                                          _event(b"\xff\xfe", "C")])
    assert [r.data for r in await backend.read_stream("s")] == [b"{not json", b"",
                                                                  b"\xff\xfe"]


async def test_json_appended_in_process_forwards_its_compact_encoding(backend):
    await backend.append("s", NO_STREAM, [NewEvent("A", {"a": [1, None]}), NewEvent("B", b"x")])
    json_record, bytes_record = await backend.read_stream("s")
    assert raw_data(json_record) == b'{"a":[1,null]}'
    assert raw_data(bytes_record) is None  # bytes data is its own stored form


async def test_a_record_with_json_text_compares_and_pickles_as_its_values(backend):
    await backend.append("s", NO_STREAM, [_event(b'{"a": 1}')])
    first, again = (await backend.read_stream("s"))[0], (await backend.read_stream("s"))[0]
    assert first == again
    assert pickle.loads(pickle.dumps(first)) == first
