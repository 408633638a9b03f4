"""exesdb.grpc.convert: request fields to exesdb values, records and errors to protocol
messages, as the KurrentDB clients expect them."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exesdb import ANY, NO_STREAM, STREAM_EXISTS, InvalidArgument, StreamDeleted, payload
from exesdb import WrongExpectedVersion as StoreWrongVersion
from exesdb.errors import StoreNotFound, StoreUnavailable
from exesdb.events import EventRecord, NewEvent
from exesdb.grpc import convert
from exesdb.grpc.protos import code_pb2, shared_pb2, streams_pb2
from exesdb.grpc.rpc import RpcError, StatusCode

# -- uuids -----------------------------------------------------------------------------------


@given(st.uuids(), st.booleans())
def test_a_uuid_round_trips_in_string_and_structured_form(value, structured):
    assert convert.uuid_from_proto(convert.uuid_to_proto(value, structured)) == value


def test_the_structured_form_is_the_two_signed_halves_most_significant_first():
    value = uuid.UUID("ffffffff-ffff-fffe-0000-000000000002")
    structured = convert.uuid_to_proto(value, structured=True).structured
    assert (structured.most_significant_bits, structured.least_significant_bits) == (-2, 2)


@pytest.mark.parametrize("proto", [shared_pb2.UUID(), shared_pb2.UUID(string="nope")],
                         ids=["missing", "malformed"])
def test_a_missing_or_malformed_uuid_is_invalid(proto):
    with pytest.raises(RpcError) as info:
        convert.uuid_from_proto(proto, "proposed_message.id")
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert info.value.message.startswith("proposed_message.id:")


# -- request fields --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [b"", b"\xff\xfe", b"$all", b"x" * 1025],
                         ids=["empty", "not-utf8", "$all", "too-long"])
def test_a_bad_stream_name_is_invalid(name):
    with pytest.raises(RpcError) as info:
        convert.stream_name(shared_pb2.StreamIdentifier(stream_name=name))
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert info.value.message.startswith("stream_identifier:")


def test_a_system_stream_name_is_accepted():
    assert convert.stream_name(shared_pb2.StreamIdentifier(stream_name=b"$$orders")) == (
        "$$orders")


OPTIONS = [streams_pb2.AppendReq.Options, streams_pb2.DeleteReq.Options,
           streams_pb2.TombstoneReq.Options]


@pytest.mark.parametrize("options_type", OPTIONS, ids=lambda t: t.__qualname__)
@pytest.mark.parametrize(("field", "expected"), [
    ("any", ANY), ("no_stream", NO_STREAM), ("stream_exists", STREAM_EXISTS)])
def test_the_expected_states_map_to_exesdb_expected_versions(options_type, field, expected):
    options = options_type()
    getattr(options, field).SetInParent()
    assert convert.expected_version(options) == expected


def test_a_revision_is_the_expected_version_and_a_batch_names_it_stream_position():
    assert convert.expected_version(streams_pb2.AppendReq.Options(revision=7)) == 7
    assert convert.expected_version(streams_pb2.BatchAppendReq.Options(stream_position=0)) == 0
    batch = streams_pb2.BatchAppendReq.Options()
    batch.stream_exists.SetInParent()
    assert convert.expected_version(batch) is STREAM_EXISTS


@pytest.mark.parametrize("options", [streams_pb2.AppendReq.Options(),
                                     streams_pb2.AppendReq.Options(revision=1 << 63)],
                         ids=["missing", "over-int64"])
def test_a_missing_or_out_of_range_expected_state_is_invalid(options):
    with pytest.raises(RpcError) as info:
        convert.expected_version(options)
    assert info.value.code is StatusCode.INVALID_ARGUMENT


def proposed(**metadata: str) -> streams_pb2.AppendReq.ProposedMessage:
    message = streams_pb2.AppendReq.ProposedMessage(data=b'{"a": 1}', metadata=metadata)
    message.id.string = "9c4d2cc9-5b2e-4a3e-9d59-4ac9a11ef4e5"
    return message


def test_a_proposed_event_keeps_its_bytes_id_type_and_content_type():
    message = proposed(**{"type": "Made", "content-type": "application/json"})
    message.custom_metadata = b"\x01meta"
    event = convert.new_event(message)
    assert (event.event_type, event.data, event.metadata, event.content_type) == (
        "Made", b'{"a": 1}', b"\x01meta", "application/json")
    assert event.event_id == uuid.UUID("9c4d2cc9-5b2e-4a3e-9d59-4ac9a11ef4e5")


def test_empty_custom_metadata_is_stored_as_none():
    event = convert.new_event(proposed(**{"type": "T", "content-type": "x/y"}))
    assert event.metadata is None


@pytest.mark.parametrize(("metadata", "missing"), [
    ({"content-type": "application/json"}, "'type'"),
    ({"type": "T"}, "'content-type'"),
    ({"type": "", "content-type": "application/json"}, "event_type"),
])
def test_a_proposed_event_without_its_type_or_content_type_is_invalid(metadata, missing):
    with pytest.raises(RpcError) as info:
        convert.new_event(proposed(**metadata))
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert missing in info.value.message


def test_an_event_over_the_maximum_append_size_is_too_large():
    message = proposed(**{"type": "T", "content-type": "application/octet-stream"})
    message.data = b"x" * convert.MAX_EVENT_APPEND_SIZE
    message.custom_metadata = b"m"
    with pytest.raises(convert.EventTooLarge) as info:
        convert.new_event(message)
    assert info.value.size == convert.MAX_EVENT_APPEND_SIZE + 1
    assert info.value.limit == convert.MAX_EVENT_APPEND_SIZE


def _id_forms(value: uuid.UUID) -> st.SearchStrategy[str]:
    text = str(value)
    return st.sampled_from([
        text, text.upper(), value.hex, "{" + text + "}", "urn:uuid:" + text,
        text[:7] + "-" + text[7:].replace("-", "", 1),  # hyphens elsewhere: uuid.UUID takes it
        text[:8] + " " + text[9:], text[:8] + "_" + text[9:], text[:-1] + "g", text[:-1],
        " " + text[1:], "+" + text[1:], ""])


@given(event_id=st.uuids().flatmap(_id_forms) | st.text(max_size=40),
       event_type=st.sampled_from(["Placed", "", "é" * 3, "t" * 256, "t" * 257]),
       content_type=st.sampled_from(["application/json", "application/octet-stream", "",
                                     "c" * 257]),
       data=st.binary(max_size=20) | st.sampled_from([b'{"i": 1}', b"{bad"]),
       custom=st.binary(max_size=10))
def test_a_proposed_event_is_the_new_event_its_fields_make(event_id, event_type, content_type,
                                                           data, custom):
    """convert.new_event (events.wire_event, the id's bytes parsed directly) builds what
    NewEvent builds of the same fields, or refuses what it refuses."""
    message = streams_pb2.AppendReq.ProposedMessage(
        data=data, custom_metadata=custom,
        metadata={"type": event_type, "content-type": content_type})
    if event_id:
        message.id.string = event_id
    try:
        expected = NewEvent(
            event_type, payload.JsonText(data) if content_type == "application/json" else data,
            custom or None, uuid.UUID(event_id), content_type)
    except (ValueError, InvalidArgument) as exc:  # a bad id, or a bad field
        with pytest.raises(RpcError) as info:
            convert.new_event(message)
        assert info.value.code is StatusCode.INVALID_ARGUMENT
        if isinstance(exc, InvalidArgument):
            assert info.value.message == f"proposed_message: {exc}"
        return
    event = convert.new_event(message)
    assert event == expected
    assert type(event.data) is type(expected.data)
    assert type(event.event_id) is uuid.UUID
    assert event._encoded == expected._encoded
    assert [type(part) for part in event._encoded] == [
        type(part) for part in expected._encoded]


# -- read responses --------------------------------------------------------------------------


def record(data: object, metadata: object = None, **fields: object) -> EventRecord:
    created = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    values: dict[str, object] = dict(
        stream_id="orders", event_number=3, event_id=uuid.UUID(int=5), event_type="Placed",
        data=data, metadata=metadata, content_type="application/json", created=created,
        created_epoch=int(created.timestamp()) * 1_000_000 + 123456, position=42)
    values.update(fields)
    return EventRecord(**values)


def test_a_read_event_carries_revision_positions_type_content_type_and_created_ticks():
    response = convert.read_event(record(b"raw", content_type="application/octet-stream"))
    assert response.WhichOneof("content") == "event"
    assert response.event.commit_position == 43  # its $all position (42) plus one
    event = response.event.event
    assert (event.stream_identifier.stream_name, event.stream_revision) == (b"orders", 3)
    assert event.commit_position == event.prepare_position == 43
    assert event.id.string == str(uuid.UUID(int=5))
    assert dict(event.metadata) == {
        "type": "Placed", "content-type": "application/octet-stream",
        "created": str((int(dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC).timestamp())
                        * 1_000_000 + 123456) * 10)}
    assert (event.data, event.custom_metadata) == (b"raw", b"")


def test_json_data_and_metadata_read_back_as_their_compact_stored_encoding():
    event = convert.read_event(record({"b": [1, 2.5], "a": "é"}, {"k": None})).event.event
    assert event.data == '{"b":[1,2.5],"a":"é"}'.encode()
    assert event.custom_metadata == b'{"k":null}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                         allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20)


@given(json_values)
def test_a_json_value_reads_back_as_exactly_the_bytes_the_store_encoded(value):
    stored = payload.encode(value, "data")[1]
    assert convert.event_payload(payload.decode(payload.JSON, stored), optional=False) == stored


def test_json_null_data_reads_back_as_null_and_absent_metadata_as_empty():
    event = convert.read_event(record(None, None)).event.event
    assert (event.data, event.custom_metadata) == (b"null", b"")


def test_the_structured_uuid_option_sends_structured_ids():
    event = convert.read_event(record(b""), structured_uuid=True).event.event
    assert event.id.WhichOneof("value") == "structured"


def test_stream_not_found_names_the_stream():
    response = convert.stream_not_found("orders")
    assert response.stream_not_found.stream_identifier.stream_name == b"orders"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "form"), [
    (ANY, "expected_any"), (STREAM_EXISTS, "expected_stream_exists"),
    (NO_STREAM, "expected_no_stream"), (4, "expected_revision")])
def test_a_wrong_expected_version_append_response_has_the_current_revision(expected, form):
    wev = convert.wrong_expected_version(StoreWrongVersion("s", expected, 9)
                                         ).wrong_expected_version
    assert wev.WhichOneof("current_revision_option") == "current_revision"
    assert wev.current_revision == wev.current_revision_20_6_0 == 9
    assert wev.WhichOneof("expected_revision_option") == form


def test_a_wrong_expected_version_on_a_missing_stream_says_current_no_stream():
    wev = convert.wrong_expected_version(StoreWrongVersion("s", STREAM_EXISTS, -1)
                                         ).wrong_expected_version
    assert wev.WhichOneof("current_revision_option") == "current_no_stream"


def test_a_batch_wrong_expected_version_is_already_exists_with_the_detail():
    status = convert.batch_error_status(StoreWrongVersion("s", 2, 5), "s")
    assert status.code == code_pb2.ALREADY_EXISTS
    detail = shared_pb2.WrongExpectedVersion()
    assert status.details.Unpack(detail)
    assert (detail.current_stream_revision, detail.expected_stream_position) == (5, 2)
    assert status.details.type_url.endswith("/event_store.client.WrongExpectedVersion")


@pytest.mark.parametrize(("error", "code", "detail_type"), [
    (StreamDeleted("s"), code_pb2.NOT_FOUND, shared_pb2.StreamDeleted),
    (convert.EventTooLarge("id", 1), code_pb2.INVALID_ARGUMENT,
     shared_pb2.MaximumAppendSizeExceeded),
    (convert.AppendTooLarge(1), code_pb2.INVALID_ARGUMENT,
     shared_pb2.MaximumAppendSizeExceeded),
    (InvalidArgument("events: bad"), code_pb2.INVALID_ARGUMENT, shared_pb2.BadRequest),
])
def test_other_batch_errors_carry_their_protocol_detail(error, code, detail_type):
    status = convert.batch_error_status(error, "s")
    assert status.code == code
    assert status.details.Unpack(detail_type())


def test_a_delete_with_a_wrong_version_fails_with_the_message_the_clients_parse():
    error = convert.delete_error(StoreWrongVersion("orders", STREAM_EXISTS, 3))
    assert error.code is StatusCode.FAILED_PRECONDITION
    match = re.fullmatch(r".*WrongExpectedVersion.*?\. Stream: (.*?), Expected version: "
                         r"(-?\d+), Actual version: (-?\d+)", error.message)
    assert match is not None and match.groups() == ("orders", "-4", "3")
    assert error.trailers["exception"] == "wrong-expected-version"


def test_a_hard_deleted_stream_is_failed_precondition_is_deleted_with_its_trailer():
    error = convert.rpc_error(StreamDeleted("orders"))
    assert error.code is StatusCode.FAILED_PRECONDITION
    assert error.message == "Event stream 'orders' is deleted."
    assert error.trailers == {"exception": "stream-deleted", "stream-name": "orders"}


@pytest.mark.parametrize(("error", "code"), [
    (InvalidArgument("count: bad"), StatusCode.INVALID_ARGUMENT),
    (convert.EventTooLarge("id", 1), StatusCode.INVALID_ARGUMENT),
    (StoreNotFound("s"), StatusCode.UNAVAILABLE),
    (StoreUnavailable("s", "restarting"), StatusCode.UNAVAILABLE),
])
def test_store_errors_map_to_their_status_codes(error, code):
    assert convert.rpc_error(error).code is code


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
_records = st.builds(
    EventRecord,
    stream_id=st.text(min_size=1, max_size=40), event_number=st.integers(0, 2**62),
    event_id=st.uuids(), event_type=st.text(min_size=1, max_size=30),
    data=st.binary(max_size=300) | _json, metadata=st.none() | st.binary(max_size=50) | _json,
    content_type=st.sampled_from(["application/json", "application/octet-stream"]),
    created=st.just(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    created_epoch=st.integers(0, 2**55), position=st.integers(0, 2**62),
)


@given(_records, st.booleans())
def test_the_directly_written_read_response_is_the_message_read_event_builds(record,
                                                                              structured):
    written = streams_pb2.ReadResp.FromString(convert.read_event_bytes(record, structured))
    assert written == convert.read_event(record, structured)


_correlations = st.one_of(
    st.uuids().map(lambda u: shared_pb2.UUID(string=str(u))),
    st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1)).map(
        lambda halves: shared_pb2.UUID(structured=shared_pb2.UUID.Structured(
            most_significant_bits=halves[0], least_significant_bits=halves[1]))),
)


@st.composite
def _batch_options(draw):
    options = streams_pb2.BatchAppendReq.Options()
    options.stream_identifier.stream_name = draw(st.text(min_size=1, max_size=40)).encode()
    which = draw(st.sampled_from(["stream_position", "no_stream", "any", "stream_exists", None]))
    if which == "stream_position":
        options.stream_position = draw(st.integers(0, 2**64 - 1))
    elif which is not None:
        getattr(options, which).SetInParent()
    return options


@given(_correlations, _batch_options(), st.integers(0, 2**63 - 1),
       st.none() | st.integers(0, 2**62))
def test_the_directly_written_batch_success_is_the_message_built(correlation, options,
                                                                  version, position):
    expected = streams_pb2.BatchAppendResp()
    expected.stream_identifier.CopyFrom(options.stream_identifier)
    which = options.WhichOneof("expected_stream_position")
    if which == "stream_position":
        expected.stream_position = options.stream_position
    elif which is not None:
        getattr(expected, which).SetInParent()
    expected.success.CopyFrom(convert.batch_success(version, position))
    expected.correlation_id.CopyFrom(correlation)
    written = convert.batch_success_bytes(correlation, options, version, position)
    assert written == expected.SerializeToString()
    assert streams_pb2.BatchAppendResp.FromString(written) == expected
