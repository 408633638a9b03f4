"""Unit tests of :mod:`exesdb.grpc._h2lite`, the gRPC server's lean HTTP/2 connection.

The peer is h2's own client side (``H2Connection(client_side=True)``) over in-memory
bytes, plus hand-made frames (hyperframe) for what a well-behaved client never sends.
Differential tests feed the same client bytes to h2's server side and compare events and
answers.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given
from hypothesis import strategies as st

from exesdb.grpc import _h2lite
from exesdb.grpc._h2lite import PREFACE, H2Connection, encode_headers
from exesdb.grpc._wire import RESPONSE_HEADERS, status_trailers
from exesdb.grpc.rpc import StatusCode

E = h2.errors.ErrorCodes
S = h2.settings.SettingCodes

STREAM_WINDOW = 1 << 20
MAX_FRAME = 1 << 20
MAX_STREAMS = 100
LOCAL_SETTINGS = {
    S.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
    S.MAX_FRAME_SIZE: MAX_FRAME,
    S.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
    S.MAX_HEADER_LIST_SIZE: 64 << 10,
}
REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/event_store.client.streams.Streams/Append"),
    (b":authority", b"127.0.0.1:2113"),
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python/1.0"),
]
SERVER_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=True,
)


def make_server(lite: bool = True) -> Any:
    """A server connection set up as :mod:`exesdb.grpc._connection` sets one up."""
    server: Any = (
        H2Connection(config=SERVER_CONFIG)
        if lite
        else h2.connection.H2Connection(config=SERVER_CONFIG)
    )
    server.local_settings = h2.settings.Settings(client=False, initial_values=LOCAL_SETTINGS)
    server.max_inbound_frame_size = MAX_FRAME
    server.decoder.max_header_list_size = 64 << 10
    server.initiate_connection()
    return server


def make_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    return client


class Pair:
    """A lite server and an h2 client, connected and past the SETTINGS exchange."""

    def __init__(self) -> None:
        self.server = make_server()
        self.client = make_client()
        self.exchange()

    def to_server(self, data: bytes | None = None) -> list[h2.events.Event]:
        return self.server.receive_data(self.client.data_to_send() if data is None else data)

    def to_client(self) -> list[h2.events.Event]:
        return self.client.receive_data(self.server.data_to_send())

    def exchange(self) -> tuple[list[h2.events.Event], list[h2.events.Event]]:
        server_events = self.to_server()
        client_events = self.to_client()
        server_events += self.to_server()
        return server_events, client_events

    def request(self, end_stream: bool = False) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, REQUEST, end_stream=end_stream)
        return sid


def frames_of(data: bytes) -> list[Frame]:
    """The frames in ``data`` (no preface)."""
    frames = []
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        frame, length = Frame.parse_frame_header(view[pos : pos + 9])
        frame.parse_body(view[pos + 9 : pos + 9 + length])
        frames.append(frame)
        pos += 9 + length
    return frames


def goaway_code(server: H2Connection) -> int:
    goaways = [f for f in frames_of(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1
    return goaways[0].error_code


def expect_connection_error(pair: Pair, data: bytes, code: E) -> None:
    with pytest.raises(h2.exceptions.ProtocolError):
        pair.server.receive_data(data)
    assert goaway_code(pair.server) == code
    assert pair.server.receive_data(data) == []  # everything afterwards is ignored
    with pytest.raises(h2.exceptions.ProtocolError):
        pair.server.ping(b"12345678")


def summary(events: list[h2.events.Event]) -> list[tuple[Any, ...]]:
    """The fields of events that the gRPC server looks at, comparable across h2 and
    _h2lite."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, h2.events.RequestReceived | h2.events.TrailersReceived):
            out.append((type(e).__name__, e.stream_id, [tuple(h) for h in e.headers or ()],
                        e.stream_ended is not None))
        elif isinstance(e, h2.events.DataReceived):
            out.append(("data", e.stream_id, bytes(e.data or b""), e.flow_controlled_length,
                        e.stream_ended is not None))
        elif isinstance(e, h2.events.StreamEnded | h2.events.WindowUpdated):
            out.append((type(e).__name__, e.stream_id))
        elif isinstance(e, h2.events.StreamReset):
            out.append(("reset", e.stream_id, e.error_code, e.remote_reset))
        elif isinstance(e, h2.events.RemoteSettingsChanged):
            out.append(("settings", sorted((int(k), v.new_value)
                                           for k, v in e.changed_settings.items())))
        elif isinstance(e, h2.events.PingReceived | h2.events.PingAckReceived):
            out.append((type(e).__name__, e.ping_data))
        elif isinstance(e, h2.events.SettingsAcknowledged | h2.events.PriorityUpdated):
            continue
        else:
            out.append((type(e).__name__,))
    return out


# -- the connection preface and settings -----------------------------------------------


def test_the_servers_settings_frame_is_h2s() -> None:
    assert make_server().data_to_send() == make_server(lite=False).data_to_send()


def test_data_to_send_with_an_amount_hands_out_the_queue_in_pieces_in_order() -> None:
    whole = make_server(lite=False).data_to_send()
    server = make_server()
    pieces = [server.data_to_send(5) for _ in range(len(whole) // 5 + 1)]
    assert all(len(p) <= 5 for p in pieces)
    assert b"".join(pieces) == whole
    assert server.data_to_send() == b""


def test_the_settings_exchange_gives_h2s_events_both_ways() -> None:
    server = make_server()
    client = make_client()
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [h2.events.RemoteSettingsChanged]
    client_events = client.receive_data(server.data_to_send())
    assert {type(e) for e in client_events} == {
        h2.events.RemoteSettingsChanged,
        h2.events.SettingsAcknowledged,
    }
    assert client.max_outbound_frame_size == MAX_FRAME
    assert client.remote_settings.initial_window_size == STREAM_WINDOW
    assert client.remote_settings.max_concurrent_streams == MAX_STREAMS
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [h2.events.SettingsAcknowledged]


@pytest.mark.parametrize(
    "garbage", [b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"X"])
def test_a_bad_preface_is_a_protocol_error_as_soon_as_it_differs(garbage: bytes) -> None:
    server = make_server()
    server.data_to_send()
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(garbage)
    assert goaway_code(server) == E.PROTOCOL_ERROR


def test_a_preface_not_followed_by_settings_is_a_protocol_error() -> None:
    server = make_server()
    server.data_to_send()
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(PREFACE + PingFrame(0, opaque_data=b"12345678").serialize())
    assert goaway_code(server) == E.PROTOCOL_ERROR


# -- a call ----------------------------------------------------------------------------


def test_a_grpc_call_round_trip() -> None:
    pair = Pair()
    sid = pair.request()
    pair.client.send_data(sid, b"\x00\x00\x00\x00\x03abc", end_stream=True)
    events = pair.to_server()
    assert summary(events) == [
        ("RequestReceived", sid, REQUEST, False),
        ("data", sid, b"\x00\x00\x00\x00\x03abc", 8, True),
        ("StreamEnded", sid),
    ]
    trailers = status_trailers(StatusCode.OK, "")
    pair.server.send_headers(sid, RESPONSE_HEADERS)
    pair.server.send_data(sid, b"\x00\x00\x00\x00\x01z")
    pair.server.send_headers(sid, trailers, end_stream=True)
    client_events = pair.to_client()
    assert [type(e) for e in client_events] == [
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.TrailersReceived,
        h2.events.StreamEnded,
    ]
    assert client_events[0].headers == RESPONSE_HEADERS
    assert client_events[2].headers == trailers
    assert pair.server.open_inbound_streams == 0
    with pytest.raises(h2.exceptions.StreamClosedError):
        pair.server.send_data(sid, b"x")


def test_a_request_ending_with_its_headers_is_half_closed_at_once() -> None:
    pair = Pair()
    sid = pair.request(end_stream=True)
    events = pair.to_server()
    assert summary(events) == [("RequestReceived", sid, REQUEST, True), ("StreamEnded", sid)]
    assert isinstance(events[0], h2.events.RequestReceived)
    assert events[0].stream_ended is events[1]


def test_a_trailers_only_response_with_a_long_message_is_split_into_continuations() -> None:
    pair = Pair()
    sid = pair.request(end_stream=True)
    pair.to_server()
    headers = RESPONSE_HEADERS + status_trailers(StatusCode.INTERNAL, "é" * 2000,
                                                 {"x-big": "v" * 30000})
    pair.server.send_headers(sid, headers, end_stream=True)
    data = pair.server.data_to_send()
    kinds = [type(f).__name__ for f in frames_of(data)]
    assert kinds[0] == "HeadersFrame" and kinds[1:] and set(kinds[1:]) == {"ContinuationFrame"}
    events = pair.client.receive_data(data)
    assert events[0].headers == headers


def test_data_and_padding_count_against_the_windows() -> None:
    pair = Pair()
    sid = pair.request()
    pair.client.send_data(sid, b"x" * 100, pad_length=50)
    events = pair.to_server()
    data = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert data[0].data == b"x" * 100
    assert data[0].flow_controlled_length == 151
    assert pair.server.inbound_flow_control_window == 65535 - 151


def test_padded_headers_with_priority_are_decoded() -> None:
    pair = Pair()
    block = hpack.Encoder().encode(REQUEST)
    frame = HeadersFrame(1, data=block, flags=["END_HEADERS", "PADDED", "PRIORITY"],
                         pad_length=7, depends_on=0, stream_weight=16)
    events = pair.server.receive_data(frame.serialize())
    assert summary(events) == [("RequestReceived", 1, REQUEST, False)]


def test_headers_in_continuation_frames_are_decoded() -> None:
    pair = Pair()
    block = hpack.Encoder().encode(REQUEST)
    data = (HeadersFrame(1, data=block[:5]).serialize()
            + ContinuationFrame(1, data=block[5:12]).serialize()
            + ContinuationFrame(1, data=block[12:], flags=["END_HEADERS"]).serialize())
    assert summary(pair.server.receive_data(data)) == [("RequestReceived", 1, REQUEST, False)]


def test_another_frame_inside_a_header_block_is_a_protocol_error() -> None:
    pair = Pair()
    block = hpack.Encoder().encode(REQUEST)
    data = (HeadersFrame(1, data=block[:5]).serialize()
            + PingFrame(0, opaque_data=b"12345678").serialize())
    expect_connection_error(pair, data, E.PROTOCOL_ERROR)


def test_priority_and_unknown_frames_are_ignored() -> None:
    pair = Pair()
    unknown = b"\x00\x00\x03\xfa\x00\x00\x00\x00\x01abc"
    data = PriorityFrame(3, depends_on=0, stream_weight=10).serialize() + unknown
    assert pair.server.receive_data(data) == []
    sid = pair.request(end_stream=True)
    assert sid == 1
    assert summary(pair.to_server())[0][0] == "RequestReceived"


def test_client_trailers_end_the_stream() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.client.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True)
    assert summary(pair.to_server()) == [
        ("TrailersReceived", sid, [(b"x-trailer", b"1")], True),
        ("StreamEnded", sid),
    ]


# -- pings and goaway ------------------------------------------------------------------


def test_pings_both_ways() -> None:
    pair = Pair()
    pair.server.ping(b"abcdefgh")
    pair.to_client()
    assert summary(pair.to_server()) == [("PingAckReceived", b"abcdefgh")]
    pair.client.ping(b"12345678")
    assert summary(pair.to_server()) == [("PingReceived", b"12345678")]
    assert [type(e) for e in pair.to_client()] == [h2.events.PingAckReceived]


def test_a_goaway_from_the_client_ends_the_connection() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.client.close_connection(error_code=E.NO_ERROR)
    events = pair.to_server()
    assert isinstance(events[0], h2.events.ConnectionTerminated)
    assert events[0].error_code == E.NO_ERROR
    with pytest.raises(h2.exceptions.ProtocolError):
        pair.server.send_headers(sid, RESPONSE_HEADERS)


def test_close_connection_sends_one_goaway_naming_the_last_stream() -> None:
    pair = Pair()
    sid = pair.request(end_stream=True)
    pair.to_server()
    pair.server.close_connection()
    pair.server.close_connection(error_code=E.PROTOCOL_ERROR)
    events = pair.to_client()
    assert len(events) == 1
    assert isinstance(events[0], h2.events.ConnectionTerminated)
    assert events[0].last_stream_id == sid and events[0].error_code == E.NO_ERROR


# -- resets and closed streams ---------------------------------------------------------


def test_a_client_reset_closes_the_stream() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.client.reset_stream(sid, E.CANCEL)
    assert summary(pair.to_server()) == [("reset", sid, E.CANCEL, True)]
    with pytest.raises(h2.exceptions.StreamClosedError):
        pair.server.send_headers(sid, RESPONSE_HEADERS)
    with pytest.raises(h2.exceptions.StreamClosedError):
        pair.server.reset_stream(sid)


def test_data_in_flight_after_our_reset_is_ignored_and_its_window_returned() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.server.send_headers(sid, RESPONSE_HEADERS + status_trailers(StatusCode.OK, ""),
                             end_stream=True)
    pair.server.reset_stream(sid, E.NO_ERROR)
    pair.server.data_to_send()
    data = DataFrame(sid, data=b"y" * 40000).serialize()
    assert pair.server.receive_data(data) == []
    updates = [f for f in frames_of(pair.server.data_to_send()) if isinstance(f, WindowUpdateFrame)]
    assert [(f.stream_id, f.window_increment) for f in updates] == [(0, 40000)]


def test_data_on_a_stream_closed_by_both_ends_is_a_stream_closed_error() -> None:
    pair = Pair()
    sid = pair.request(end_stream=True)
    pair.to_server()
    pair.server.send_headers(sid, RESPONSE_HEADERS + status_trailers(StatusCode.OK, ""),
                             end_stream=True)
    pair.server.data_to_send()
    expect_connection_error(pair, DataFrame(sid, data=b"late").serialize(), E.STREAM_CLOSED)


def test_data_on_a_half_closed_stream_resets_that_stream_only() -> None:
    pair = Pair()
    sid = pair.request(end_stream=True)
    pair.to_server()
    events = pair.server.receive_data(DataFrame(sid, data=b"late").serialize())
    assert summary(events) == [("reset", sid, E.STREAM_CLOSED, False)]
    frames = frames_of(pair.server.data_to_send())
    assert any(isinstance(f, RstStreamFrame) and f.error_code == E.STREAM_CLOSED for f in frames)
    sid2 = pair.request(end_stream=True)
    assert summary(pair.to_server())[0][:2] == ("RequestReceived", sid2)


def test_data_on_an_idle_stream_is_a_protocol_error() -> None:
    pair = Pair()
    expect_connection_error(pair, DataFrame(5, data=b"x").serialize(), E.PROTOCOL_ERROR)


def test_an_even_stream_id_is_a_protocol_error() -> None:
    pair = Pair()
    block = hpack.Encoder().encode(REQUEST)
    expect_connection_error(pair, HeadersFrame(2, data=block, flags=["END_HEADERS"]).serialize(),
                            E.PROTOCOL_ERROR)


def test_a_decreasing_stream_id_is_a_protocol_error() -> None:
    pair = Pair()
    encoder = hpack.Encoder()
    pair.server.receive_data(
        HeadersFrame(5, data=encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize())
    expect_connection_error(
        pair, HeadersFrame(3, data=encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize(),
        E.PROTOCOL_ERROR)


def test_streams_beyond_the_limit_are_refused_and_the_others_carry_on() -> None:
    pair = Pair()
    encoder = hpack.Encoder()
    sids = list(range(1, 2 * MAX_STREAMS + 3, 2))
    data = b"".join(HeadersFrame(sid, data=encoder.encode(REQUEST), flags=["END_HEADERS"])
                    .serialize() for sid in sids)
    events = pair.server.receive_data(data)
    assert [e.stream_id for e in events] == sids[:MAX_STREAMS]
    rst = [f for f in frames_of(pair.server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in rst] == [
        (sid, E.REFUSED_STREAM) for sid in sids[MAX_STREAMS:]]
    pair.server.receive_data(RstStreamFrame(1, error_code=E.CANCEL).serialize())
    # The refused blocks went through the HPACK decoder: the next request still decodes.
    sid = sids[-1] + 2
    events = pair.server.receive_data(
        HeadersFrame(sid, data=encoder.encode(REQUEST), flags=["END_HEADERS"]).serialize())
    assert summary(events) == [("RequestReceived", sid, REQUEST, False)]


# -- frame sizes -----------------------------------------------------------------------


def test_an_oversize_frame_is_refused_as_soon_as_its_header_arrives() -> None:
    pair = Pair()
    header = (MAX_FRAME + 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    expect_connection_error(pair, header, E.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567",  # PING of 7 bytes
        b"\x00\x00\x03\x03\x00\x00\x00\x00\x01" + b"abc",  # RST_STREAM of 3 bytes
        b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"abcde",  # SETTINGS not a multiple of 6
        b"\x00\x00\x03\x08\x00\x00\x00\x00\x00" + b"abc",  # WINDOW_UPDATE of 3 bytes
    ],
)
def test_control_frames_of_the_wrong_size_are_frame_size_errors(frame: bytes) -> None:
    expect_connection_error(Pair(), frame, E.FRAME_SIZE_ERROR)


def test_send_data_refuses_more_than_the_clients_frame_size() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.server.send_headers(sid, RESPONSE_HEADERS)
    assert pair.server.max_outbound_frame_size == 16384
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        pair.server.send_data(sid, b"x" * 16385)
    pair.server.send_data(sid, b"x" * 16384)


def test_invalid_settings_are_errors_of_their_kind() -> None:
    expect_connection_error(
        Pair(), SettingsFrame(0, settings={S.INITIAL_WINDOW_SIZE: 1 << 31}).serialize(),
        E.FLOW_CONTROL_ERROR)
    expect_connection_error(
        Pair(), SettingsFrame(0, settings={S.MAX_FRAME_SIZE: 100}).serialize(),
        E.PROTOCOL_ERROR)
    expect_connection_error(
        Pair(), SettingsFrame(0, settings={S.ENABLE_PUSH: 2}).serialize(), E.PROTOCOL_ERROR)


# -- flow control ----------------------------------------------------------------------


def test_more_data_than_the_stream_window_is_a_flow_control_error() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    data = b"".join(DataFrame(sid, data=b"x" * (256 << 10)).serialize() for _ in range(4))
    pair.server.increment_flow_control_window(8 << 20)
    assert len(pair.server.receive_data(data)) == 4  # exactly the window
    expect_connection_error(pair, DataFrame(sid, data=b"x").serialize(), E.FLOW_CONTROL_ERROR)


def test_more_data_than_the_connection_window_is_a_flow_control_error() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    data = DataFrame(sid, data=b"x" * 65536).serialize()  # connection window: 65535
    expect_connection_error(pair, data, E.FLOW_CONTROL_ERROR)


def test_acknowledged_data_is_given_back_as_h2_gives_it_back() -> None:
    lite = Pair()
    reference = make_server(lite=False)
    reference.receive_data(PREFACE + SettingsFrame(0).serialize())
    sid = lite.request()
    lite_bytes = lite.client.data_to_send()
    for chunk in (1000, 30000, 5000, 200000, 400000, 100):
        lite_bytes += DataFrame(sid, data=b"z" * chunk).serialize()
    lite.server.increment_flow_control_window(8 << 20)
    reference.increment_flow_control_window(8 << 20)
    assert summary(lite.server.receive_data(lite_bytes)) == summary(
        reference.receive_data(lite_bytes))
    lite.server.data_to_send()
    reference.data_to_send()
    for size in (500, 40000, 300000, 200000, 96600):
        lite.server.acknowledge_received_data(size, sid)
        reference.acknowledge_received_data(size, sid)
        assert lite.server.data_to_send() == reference.data_to_send()
        assert lite.server.inbound_flow_control_window == reference.inbound_flow_control_window


def test_outbound_windows_follow_updates_and_settings_changes_even_below_zero() -> None:
    pair = Pair()
    pair.client.update_settings({S.INITIAL_WINDOW_SIZE: 100})
    sid = pair.request()
    pair.exchange()
    server = pair.server
    server.send_headers(sid, RESPONSE_HEADERS)
    assert server.local_flow_control_window(sid) == 100
    with pytest.raises(h2.exceptions.FlowControlError):
        server.send_data(sid, b"x" * 101)
    server.send_data(sid, b"x" * 100)
    assert server.local_flow_control_window(sid) == 0
    pair.client.update_settings({S.INITIAL_WINDOW_SIZE: 50})
    events = pair.to_server()
    assert S.INITIAL_WINDOW_SIZE in events[0].changed_settings
    assert server.local_flow_control_window(sid) == -50
    pair.client.increment_flow_control_window(60, stream_id=sid)
    assert summary(pair.to_server()) == [("WindowUpdated", sid)]
    assert server.local_flow_control_window(sid) == 10
    assert server.outbound_flow_control_window == 65535 - 100
    pair.client.increment_flow_control_window(1000)
    assert summary(pair.to_server()) == [("WindowUpdated", 0)]
    assert server.outbound_flow_control_window == 65535 - 100 + 1000


def test_a_window_update_overflowing_a_stream_resets_only_that_stream() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    frame = WindowUpdateFrame(sid, window_increment=(1 << 31) - 1).serialize()
    assert summary(pair.server.receive_data(frame)) == [("reset", sid, E.FLOW_CONTROL_ERROR, False)]
    expect_connection_error(pair, WindowUpdateFrame(0, window_increment=(1 << 31) - 1).serialize(),
                            E.FLOW_CONTROL_ERROR)


def test_a_zero_window_update_is_a_protocol_error() -> None:
    frame = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    expect_connection_error(Pair(), frame, E.PROTOCOL_ERROR)


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [*REQUEST[:-1], (b"User-Agent", b"x")],  # upper case
        [h for h in REQUEST if h[0] != b":path"],  # missing pseudo-header
        [*REQUEST, (b":path", b"/again")],  # pseudo-header twice (and after a regular one)
        [*REQUEST, (b"connection", b"keep-alive")],  # connection-specific
        [*REQUEST[:4], (b"te", b"gzip"), *REQUEST[5:]],  # te other than trailers
    ],
)
def test_invalid_request_headers_reset_only_their_stream(
    headers: list[tuple[bytes, bytes]]
) -> None:
    pair = Pair()
    other = pair.request()
    pair.to_server()
    block = encode_headers(headers)  # leaves the dynamic tables alone
    frame = HeadersFrame(3, data=block, flags=["END_HEADERS"]).serialize()
    assert pair.server.receive_data(frame) == []  # the stream never opened
    resets = [f for f in frames_of(pair.server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(3, E.PROTOCOL_ERROR)]
    assert other in pair.server.streams  # the connection and its other calls go on
    pair.client.send_headers(5, REQUEST, end_stream=True)
    assert summary(pair.to_server())[0][:2] == ("RequestReceived", 5)


def test_invalid_trailers_reset_their_open_stream_with_an_event() -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    block = encode_headers([(b"Bad-Trailer", b"x")])
    frame = HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
    assert summary(pair.server.receive_data(frame)) == [("reset", sid, E.PROTOCOL_ERROR, False)]
    assert sid not in pair.server.streams


def test_a_broken_header_block_is_a_compression_error() -> None:
    pair = Pair()
    frame = HeadersFrame(1, data=b"\xff\xff\xff\xff\xff\x7f", flags=["END_HEADERS"])
    expect_connection_error(pair, frame.serialize(), E.COMPRESSION_ERROR)


def test_repeated_blocks_reuse_their_decoding_only_while_the_table_is_unchanged() -> None:
    pair = Pair()
    encoder = hpack.Encoder()
    first = encoder.encode(REQUEST)  # adds entries to the dynamic table
    second = encoder.encode(REQUEST)  # only indexes
    assert first != second
    events = pair.server.receive_data(
        HeadersFrame(1, data=first, flags=["END_HEADERS"]).serialize()
        + HeadersFrame(3, data=second, flags=["END_HEADERS"]).serialize()
        + HeadersFrame(5, data=second, flags=["END_HEADERS"]).serialize()
    )
    assert [summary([e])[0][2] for e in events] == [REQUEST] * 3
    assert second in pair.server._decoded and first not in pair.server._decoded
    # A new entry shifts the dynamic indexes: the same bytes now mean other headers.
    other = [*REQUEST[:6], (b"x-new", b"1"), REQUEST[6]]
    third = encoder.encode(other)
    fourth = encoder.encode(REQUEST)
    events = pair.server.receive_data(
        HeadersFrame(7, data=third, flags=["END_HEADERS"]).serialize()
        + HeadersFrame(9, data=fourth, flags=["END_HEADERS"]).serialize()
    )
    assert [summary([e])[0][2] for e in events] == [other, REQUEST]


header_names = st.binary(min_size=1, max_size=20).map(lambda b: bytes(c | 0x60 for c in b))
header_values = st.binary(max_size=300)
known = st.sampled_from([(b":status", b"200"), (b"content-type", b"application/grpc"),
                         (b"grpc-status", b"0"), (b"content-type", b"text/plain"),
                         (b":status", b"415")])


@given(st.lists(st.one_of(st.tuples(header_names, header_values), known), max_size=20))
def test_encoded_blocks_decode_to_the_same_headers(headers: list[tuple[bytes, bytes]]) -> None:
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 30
    block = encode_headers(headers)
    assert [tuple(h) for h in decoder.decode(block, raw=True)] == headers
    assert decoder.header_table.dynamic_entries == type(decoder.header_table.dynamic_entries)()


def test_the_constant_blocks_are_small_and_cached() -> None:
    assert encode_headers(RESPONSE_HEADERS) == (
        b"\x88" + b"\x0f\x10\x10application/grpc" + b"\x00\x14grpc-accept-encoding\x08identity")
    pair = Pair()
    sid = pair.request(end_stream=True)
    pair.to_server()
    pair.server.send_headers(sid, RESPONSE_HEADERS)
    assert tuple(RESPONSE_HEADERS) in pair.server._encoded


# -- any split of the bytes gives the same events (and h2's) ---------------------------


def _client_traffic(calls: list[tuple[list[int], bool]], pad: int) -> bytes:
    """The bytes of an h2 client making ``calls`` (DATA sizes, ended?) and a PING."""
    client = make_client()
    server = make_server(lite=False)
    data = client.data_to_send()
    server.receive_data(data)
    client.receive_data(server.data_to_send())
    data += client.data_to_send()
    for i, (sizes, ended) in enumerate(calls):
        sid = client.get_next_available_stream_id()
        headers = [*REQUEST, (b"x-call", str(i % 3).encode())]
        client.send_headers(sid, headers, end_stream=not sizes and ended)
        for j, size in enumerate(sizes):
            client.send_data(sid, bytes([j % 256]) * size, pad_length=pad or None,
                             end_stream=ended and j == len(sizes) - 1)
        data += client.data_to_send()
    client.ping(b"pingpong")
    client.increment_flow_control_window(12345)
    return data + client.data_to_send()


calls_strategy = st.lists(
    st.tuples(st.lists(st.integers(0, 3000), max_size=4), st.booleans()), max_size=4)


@given(calls_strategy, st.integers(0, 20), st.data())
def test_any_split_of_the_bytes_gives_the_same_events_as_h2(
    calls: list[tuple[list[int], bool]], pad: int, data: st.DataObject
) -> None:
    traffic = _client_traffic(calls, pad)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(traffic)), max_size=12)))
    lite = make_server()
    lite_events: list[h2.events.Event] = []
    start = 0
    for cut in [*cuts, len(traffic)]:
        lite_events += lite.receive_data(traffic[start:cut])
        start = cut
    reference = make_server(lite=False)
    reference_events = reference.receive_data(traffic)
    assert summary(lite_events) == summary(reference_events)
    lite_frames = frames_of(lite.data_to_send())
    reference_frames = frames_of(reference.data_to_send())
    assert [str(f) for f in lite_frames] == [str(f) for f in reference_frames]


def test_the_module_exports_what_the_connection_uses() -> None:
    assert _h2lite.__all__ == ["PREFACE", "H2Connection", "Limits"]
    for name in ("receive_data", "send_headers", "send_data", "end_stream", "reset_stream",
                 "acknowledge_received_data", "increment_flow_control_window",
                 "local_flow_control_window", "ping", "close_connection", "data_to_send",
                 "initiate_connection", "release_stream"):
        assert callable(getattr(H2Connection, name))


frame_bytes = st.builds(
    lambda length, ftype, flags, sid, body: (
        length.to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + body),
    st.integers(0, 40), st.integers(0, 10), st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 1 << 31 | 1]), st.binary(max_size=40))


@given(st.lists(st.one_of(frame_bytes, st.binary(max_size=30)), max_size=8))
def test_arbitrary_bytes_give_events_or_a_protocol_error_never_another_exception(
    chunks: list[bytes]
) -> None:
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    for chunk in chunks:
        try:
            events = pair.server.receive_data(chunk)
        except h2.exceptions.ProtocolError:
            assert goaway_code(pair.server) in set(E)
            return
        if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
            with pytest.raises(h2.exceptions.ProtocolError):
                pair.server.send_headers(sid, RESPONSE_HEADERS)
            return
    # Still usable afterwards.
    pair.server.data_to_send()
    if sid in pair.server.streams and pair.server.streams[sid].local_open:
        pair.server.send_headers(sid, RESPONSE_HEADERS)
