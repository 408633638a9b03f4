"""The abuse limits of :mod:`exesdb.grpc._h2lite` (sans-I/O, with a hand-driven clock):
per-connection budgets of resets, PINGs, SETTINGS, header blocks and their bytes,
CONTINUATIONs and frames that do nothing; the caps per SETTINGS frame and per header
block; streams held until released; the decoding cache's byte bound."""

from __future__ import annotations

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from exesdb.grpc._h2lite import H2Connection, Limits, encode_headers
from tests.exesdb.grpc.test_h2lite import (
    LOCAL_SETTINGS,
    MAX_FRAME,
    REQUEST,
    SERVER_CONFIG,
    frames_of,
    make_client,
)

E = h2.errors.ErrorCodes
S = h2.settings.SettingCodes
BLOCK = encode_headers(REQUEST)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connect(limits: Limits, clock: Clock, release_required: bool = False) -> H2Connection:
    """A server past the client's preface and SETTINGS, its output taken."""
    server = H2Connection(config=SERVER_CONFIG, limits=limits, clock=clock)
    server.local_settings = h2.settings.Settings(client=False, initial_values=LOCAL_SETTINGS)
    server.max_inbound_frame_size = MAX_FRAME
    server.decoder.max_header_list_size = 64 << 10
    server.release_required = release_required
    server.initiate_connection()
    server.receive_data(make_client().data_to_send())
    server.data_to_send()
    return server


def calm_goaway(server: H2Connection) -> GoAwayFrame:
    goaways = [f for f in frames_of(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1
    assert goaways[0].error_code == E.ENHANCE_YOUR_CALM
    return goaways[0]


def flood(server: H2Connection, frames: list[bytes]) -> int:
    """Feed ``frames`` one at a time; how many were taken before the flood error."""
    for i, frame in enumerate(frames):
        try:
            server.receive_data(frame)
        except h2.exceptions.DenialOfServiceError:
            return i
    return len(frames)


def request(sid: int, end_stream: bool = True) -> bytes:
    flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
    return HeadersFrame(sid, data=BLOCK, flags=flags).serialize()


def rst(sid: int) -> bytes:
    return RstStreamFrame(sid, error_code=E.CANCEL).serialize()


# -- budgets ------------------------------------------------------------------------------


def test_resets_beyond_the_budget_are_a_flood_answered_with_enhance_your_calm() -> None:
    server = connect(Limits(resets=10, window=10.0), Clock())
    frames = [request(2 * i + 1) + rst(2 * i + 1) for i in range(20)]
    assert flood(server, frames) == 10
    goaway = calm_goaway(server)
    assert b"stream resets" in goaway.additional_data
    assert server.receive_data(request(101)) == []  # the connection is over


def test_a_budget_refills_at_its_rate_so_a_steady_client_is_never_cut_off() -> None:
    clock = Clock()
    server = connect(Limits(resets=10, window=10.0), clock)
    for i in range(100):  # one reset a second: the rate the budget refills at
        server.receive_data(request(2 * i + 1) + rst(2 * i + 1))
        clock.now += 1.0
    assert not any(isinstance(f, GoAwayFrame) for f in frames_of(server.data_to_send()))


def test_streams_the_server_resets_because_of_the_client_count_as_resets() -> None:
    server = connect(Limits(resets=5), Clock())
    # DATA after the client ended its side: the server resets the stream (MadeYouReset).
    frames = [request(2 * i + 1) + DataFrame(2 * i + 1, data=b"x").serialize() for i in range(10)]
    assert flood(server, frames) == 5
    calm_goaway(server)


@pytest.mark.parametrize(
    ("limits", "frame", "what"),
    [
        (Limits(pings=5), PingFrame(0, opaque_data=b"12345678").serialize(), b"PING"),
        (Limits(pings=5), PingFrame(0, opaque_data=b"12345678", flags=["ACK"]).serialize(),
         b"PING"),
        (Limits(settings=6), SettingsFrame(0, settings={S.ENABLE_PUSH: 0}).serialize(),
         b"SETTINGS"),  # (the client's first SETTINGS took one)
        (Limits(empty_frames=5), PriorityFrame(1, depends_on=0).serialize(), b"doing nothing"),
        (Limits(empty_frames=5), b"\x00\x00\x00\x0b\x00\x00\x00\x00\x00", b"doing nothing"),
        (Limits(header_blocks=5), b"", b"header blocks"),
    ],
    ids=["ping", "ping-ack", "settings", "priority", "unknown-type", "header-blocks"],
)
def test_each_kind_of_frame_has_its_own_budget(limits: Limits, frame: bytes, what: bytes) -> None:
    server = connect(limits, Clock())
    frames = [frame or request(2 * i + 1) for i in range(10)]
    assert flood(server, frames) == 5
    assert what in calm_goaway(server).additional_data


def test_empty_data_frames_that_do_not_end_their_stream_do_nothing_and_are_counted() -> None:
    server = connect(Limits(empty_frames=5), Clock())
    server.receive_data(request(1, end_stream=False))
    assert flood(server, [DataFrame(1, data=b"").serialize()] * 10) == 5
    calm_goaway(server)


def test_header_bytes_are_counted_as_they_arrive() -> None:
    server = connect(Limits(header_bytes=10_000), Clock())
    big = [(b"x-pad", b"p" * 3000)]
    frames = [HeadersFrame(2 * i + 1, data=encode_headers(REQUEST + big),
                           flags=["END_HEADERS", "END_STREAM"]).serialize() for i in range(5)]
    assert flood(server, frames) == 3
    assert b"header block bytes" in calm_goaway(server).additional_data


def test_empty_continuation_frames_end_at_the_cap_per_header_block() -> None:
    server = connect(Limits(continuations_per_block=16), Clock())
    server.receive_data(HeadersFrame(1, data=BLOCK[:5]).serialize())
    assert flood(server, [ContinuationFrame(1, data=b"").serialize()] * 100) == 16
    assert b"CONTINUATION" in calm_goaway(server).additional_data


def test_continuation_frames_have_a_budget_across_header_blocks() -> None:
    server = connect(Limits(continuations=20), Clock())
    frames = []
    for i in range(15):  # each block in three frames: two CONTINUATIONs each
        sid = 2 * i + 1
        frames.append(HeadersFrame(sid, data=BLOCK[:4]).serialize()
                      + ContinuationFrame(sid, data=BLOCK[4:8]).serialize()
                      + ContinuationFrame(sid, data=BLOCK[8:], flags=["END_HEADERS"]).serialize())
    assert flood(server, frames) == 10
    calm_goaway(server)


def test_a_flood_inside_one_read_stops_at_the_budget() -> None:
    server = connect(Limits(pings=50), Clock())
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        server.receive_data(PingFrame(0, opaque_data=b"12345678").serialize() * 10_000)
    acks = [f for f in frames_of(server.data_to_send()) if isinstance(f, PingFrame)]
    assert len(acks) == 50


# -- SETTINGS ----------------------------------------------------------------------------


def test_a_settings_frame_with_too_many_entries_is_a_flood() -> None:
    server = connect(Limits(settings_entries=32), Clock())
    payload = b"".join(b"\x00\x04" + (65535).to_bytes(4, "big") for _ in range(33))
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        server.receive_data(len(payload).to_bytes(3, "big") + b"\x04\x00\x00\x00\x00\x00" + payload)
    assert b"entries" in calm_goaway(server).additional_data


def test_each_setting_takes_the_last_value_of_its_frame_once() -> None:
    server = connect(Limits(), Clock())
    server.receive_data(request(1, end_stream=False) + request(3, end_stream=False))
    values = [1000, 5, 70000, 300]
    payload = b"".join(b"\x00\x04" + v.to_bytes(4, "big") for v in values)
    events = server.receive_data(
        len(payload).to_bytes(3, "big") + b"\x04\x00\x00\x00\x00\x00" + payload)
    (changed,) = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
    setting = changed.changed_settings[S.INITIAL_WINDOW_SIZE]
    assert (setting.original_value, setting.new_value) == (65535, 300)
    assert server.local_flow_control_window(1) == server.local_flow_control_window(3) == 300


def test_an_invalid_value_anywhere_in_a_settings_frame_is_still_an_error() -> None:
    server = connect(Limits(), Clock())
    payload = b"\x00\x04" + (1 << 31).to_bytes(4, "big") + b"\x00\x04" + (10).to_bytes(4, "big")
    with pytest.raises(h2.exceptions.ProtocolError):
        server.receive_data(len(payload).to_bytes(3, "big") + b"\x04\x00\x00\x00\x00\x00" + payload)


# -- streams held until released ----------------------------------------------------------


def test_a_reset_stream_counts_against_the_limit_until_released() -> None:
    limits = Limits(resets=1000)
    server = connect(limits, Clock(), release_required=True)
    assert server.max_concurrent_streams == 100
    events = server.receive_data(b"".join(request(2 * i + 1) + rst(2 * i + 1) for i in range(100)))
    assert sum(isinstance(e, h2.events.RequestReceived) for e in events) == 100
    assert server.open_inbound_streams == 0
    assert server.closed_unreleased_streams == 100
    server.data_to_send()
    # The 101st is refused: 100 calls are still finishing.
    assert server.receive_data(request(201)) == []
    refused = [f for f in frames_of(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in refused] == [(201, E.REFUSED_STREAM)]
    server.release_stream(1)
    assert server.closed_unreleased_streams == 99
    events = server.receive_data(request(203))
    assert [type(e) for e in events] == [h2.events.RequestReceived, h2.events.StreamEnded]


def test_without_release_required_closed_streams_do_not_count() -> None:
    server = connect(Limits(), Clock())
    server.receive_data(b"".join(request(2 * i + 1) + rst(2 * i + 1) for i in range(100)))
    events = server.receive_data(request(201))
    assert isinstance(events[0], h2.events.RequestReceived)
    assert server.closed_unreleased_streams == 0


def test_releasing_an_open_stream_lets_its_closing_not_count() -> None:
    server = connect(Limits(), Clock(), release_required=True)
    server.receive_data(request(1, end_stream=False))
    server.release_stream(1)
    server.release_stream(1)  # twice: nothing
    server.receive_data(rst(1))
    assert server.closed_unreleased_streams == 0


# -- memory ---------------------------------------------------------------------------------


def test_the_decoding_cache_stays_within_its_bytes() -> None:
    server = connect(Limits(decode_cache_bytes=20_000, header_bytes=1 << 30), Clock())
    for i in range(200):
        block = encode_headers([*REQUEST, (b"x-n", b"%d" % i + b"v" * 200)])
        server.receive_data(HeadersFrame(2 * i + 1, data=block,
                                         flags=["END_HEADERS", "END_STREAM"]).serialize())
        assert server._decoded_bytes <= 20_000
    assert 0 < len(server._decoded) < 200
    big = encode_headers([*REQUEST, (b"x-big", b"b" * 5000)])
    server.receive_data(HeadersFrame(401, data=big, flags=["END_HEADERS", "END_STREAM"])
                        .serialize())
    assert big not in server._decoded  # over 4 KiB: never cached


def test_outbound_buffered_counts_the_queued_bytes() -> None:
    server = connect(Limits(), Clock())
    assert server.outbound_buffered == 0
    server.receive_data(PingFrame(0, opaque_data=b"12345678").serialize() * 3)
    assert server.outbound_buffered == 3 * 17
    server.receive_data(request(1))
    server.send_headers(1, [(b":status", b"200")])
    server.send_data(1, b"x" * 100)
    queued = server.outbound_buffered
    assert queued == len(server.data_to_send(10)) + server.outbound_buffered
    assert server.outbound_buffered == queued - 10
    server.data_to_send()
    assert server.outbound_buffered == 0


def test_incomplete_frame_tells_a_frame_or_header_block_is_half_received() -> None:
    server = connect(Limits(), Clock())
    assert not server.incomplete_frame
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    server.receive_data(ping[:5])
    assert server.incomplete_frame
    server.receive_data(ping[5:])
    assert not server.incomplete_frame
    server.receive_data(HeadersFrame(1, data=BLOCK[:4]).serialize())
    assert server.incomplete_frame
    server.receive_data(ContinuationFrame(1, data=BLOCK[4:], flags=["END_HEADERS"]).serialize())
    assert not server.incomplete_frame


def test_the_default_header_budgets_refill_faster_than_a_busy_client_sends() -> None:
    # A gRPC client's request header blocks as its HPACK encoder makes them (dynamic
    # table, a new grpc-timeout every call), at 20,000 calls a second: more than one
    # server process serves. The defaults of 1 MiB of header bytes a window refilled at a
    # tenth of that rate, so such a client was cut off within seconds of sustained load.
    client = make_client()
    client.data_to_send()
    headers = [*REQUEST, (b"requires-leader", b"true"),
               (b"connection-name", b"kurrentdbclient-4b6e0c8e-0b0e-4d0c-9a4b-1c2d3e4f5a6b"),
               (b"authorization", b"Basic YWRtaW46Y2hhbmdlaXQ=")]
    sizes = []
    for i in range(2000):
        sid = 2 * i + 1
        client.send_headers(sid, [*headers, (b"grpc-timeout", b"%du" % (4_999_000 + i))],
                            end_stream=True)
        sizes.extend(len(f.data) for f in frames_of(client.data_to_send()))
        client.streams.pop(sid)  # answered: the client may open the next one
    calls_per_second = 20_000
    limits = Limits()
    assert limits.header_blocks / limits.window >= calls_per_second
    assert limits.header_bytes / limits.window >= calls_per_second * max(
        sum(sizes) / len(sizes), 60)
