"""What the hostile-traffic tests use: a raw HTTP/2 attacker on a socket, a well-behaved
``kurrentdbclient`` working in a thread, and the server process's RSS.

:class:`Attacker` sends hand-made frames (no h2 state machine: an attacker does not play
by the rules) and, in a thread of its own, reads what the server sends, noting when a
GOAWAY (and its error code) or RST_STREAM arrived and when the socket closed. It counts
the frames of the kind under test that it has sent and notes when the count first
passed the server's threshold (``crossed_at``: the time the write holding that frame
completed), so a test can bound the time from crossing to being cut off.

That time must not count the server's backlog: a flood written faster than the server
reads it waits in socket buffers, and under load the server reaches the crossing frame
seconds after the write. So :meth:`Attacker.flood` first sends a PING and waits for
its ACK (:meth:`Attacker.sync`: the server has then read everything before), then the
batch that crosses; the PING's round trip, measured there, is the server's
responsiveness to this connection at that moment, and :meth:`Attacker.cut_off_bound`
allows the cut-off 1 s plus a few of those round trips (1 s on a quiet machine).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from benchmarks.h2raw import (  # the attack builders, shared with the benchmark
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    READ,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
    header_block,
    read_all_request,
    request_block,
)

__all__ = [
    "ACK", "CANCEL", "CONTINUATION", "DATA", "END_HEADERS", "END_STREAM",
    "ENHANCE_YOUR_CALM", "GOAWAY", "HEADERS", "NO_ERROR", "PING", "PREFACE",
    "PROTOCOL_ERROR", "READ", "RST_STREAM", "SETTINGS", "WINDOW_UPDATE", "Attacker",
    "GoodClient", "PeakRss", "block", "frame", "read_all", "request", "rss",
]

_HEADER = FRAME_HEADER
block = header_block
"""An HPACK block of literals without indexing (the dynamic table is left alone)."""
request = request_block
"""The header block of a gRPC request to ``path`` (then ``extra`` headers)."""
read_all = read_all_request
"""A length-prefixed ``ReadReq``: ``$all`` forwards from the start."""


class Attacker:
    """One raw HTTP/2 connection (see the module doc)."""

    def __init__(self, port: int, *, reading: bool = True, settings: bytes = b"",
                 source: str | None = None) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.start = time.monotonic()
        self.goaway: tuple[float, int, bytes] | None = None  # (when, code, debug data)
        self.resets: dict[int, int] = {}  # stream id -> error code
        self.headers: set[int] = set()  # streams that got HEADERS
        self.closed_at: float | None = None
        self.acked: set[bytes] = set()  # PING ACK payloads received
        self.rtt = 0.0  # the round trip of the last sync()
        self._syncs = 0
        self.counted = 0
        self.threshold: int | None = None
        self.crossed_at: float | None = None
        self._buf = bytearray()
        self._reader: threading.Thread | None = None
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        if reading:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    # -- sending ---------------------------------------------------------------------------
    def send(self, data: bytes, counted: int = 0) -> bool:
        """Send ``data`` holding ``counted`` frames of the kind under test; False once
        the server has closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            self._closed()
            return False
        self.counted += counted
        if (self.threshold is not None and self.crossed_at is None
                and self.counted > self.threshold):
            self.crossed_at = time.monotonic()
        return True

    def flood(self, batch: Callable[[int], bytes], per_batch: int, threshold: int,
              seconds: float = 10.0, sync: bool = True) -> None:
        """Send ``batch(i)`` (``per_batch`` counted frames each) until cut off, or for
        ``seconds``; :meth:`sync` before the batch that crosses the threshold (unless
        ``sync`` is False: the caller synced, and a PING may not come now)."""
        self.threshold = threshold
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline and not self.over:
            if sync and self.crossed_at is None and self.counted + per_batch > threshold:
                sync = False
                self.sync()
            if not self.send(batch(i), per_batch):
                break
            i += 1
        self.wait_over(2.0)

    def sync(self, seconds: float = 60.0) -> None:
        """Send a PING and wait (at most ``seconds``) for its ACK: the server has then
        read everything sent before it. Its round trip is kept in :attr:`rtt`."""
        self._syncs += 1
        opaque = struct.pack(">Q", (1 << 63) | self._syncs)
        started = time.monotonic()
        if not self.send(frame(PING, 0, 0, opaque)):
            return
        deadline = started + seconds
        if self._reader is None:  # nobody reads: read here
            timeout = self.sock.gettimeout()
            self.sock.settimeout(0.05)
            while opaque not in self.acked and time.monotonic() < deadline:
                try:
                    data = self.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self._feed(data)
            self.sock.settimeout(timeout)
        else:
            while opaque not in self.acked and not self.over and time.monotonic() < deadline:
                time.sleep(0.002)
        if self.over:
            return  # cut off already (the server counts what it did because of us, too)
        assert opaque in self.acked, "the server did not answer the PING"
        self.rtt = time.monotonic() - started

    def cut_off_bound(self) -> float:
        """What :meth:`cut_off_after` may be: 1 s, plus three round trips of the
        :meth:`sync` before crossing (the server's responsiveness to this connection
        then: a few ms on a quiet machine, more under load)."""
        return 1.0 + 3 * self.rtt

    @property
    def over(self) -> bool:
        return self.goaway is not None or self.closed_at is not None

    def wait_over(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.over and time.monotonic() < deadline:
            time.sleep(0.01)

    def cut_off_after(self) -> float:
        """Seconds from crossing the threshold to the GOAWAY (or the close); 0 when the
        server cut the connection off before our count crossed it (it also counts what
        it did because of us, e.g. streams it refused)."""
        ended = self.goaway[0] if self.goaway is not None else self.closed_at
        assert ended is not None, "the server never cut the connection off"
        if self.crossed_at is None:
            return 0.0
        return max(0.0, ended - self.crossed_at)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # (wakes the reader thread's recv)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._reader is not None:
            self._reader.join(5)

    # -- receiving -------------------------------------------------------------------------
    def _closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    def _read(self) -> None:
        try:
            while data := self.sock.recv(1 << 20):
                self._feed(data)
        except OSError:
            pass
        self._closed()

    def _feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 9:
            high, low, ftype, flags, sid = _HEADER.unpack_from(buf, pos)
            length = (high << 16) | low
            if len(buf) - pos - 9 < length:
                break
            body = bytes(buf[pos + 9: pos + 9 + length])
            if ftype == GOAWAY and self.goaway is None:
                self.goaway = (time.monotonic(), struct.unpack(">L", body[4:8])[0], body[8:])
            elif ftype == RST_STREAM:
                self.resets[sid & 0x7FFFFFFF] = struct.unpack(">L", body)[0]
            elif ftype == HEADERS:
                self.headers.add(sid & 0x7FFFFFFF)
            elif ftype == PING and flags & ACK:
                self.acked.add(body)
            pos += 9 + length
        del buf[:pos]

    def drain(self, seconds: float = 2.0) -> None:
        """For a connection nobody read: read what came, until the end or ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            while data := self.sock.recv(1 << 20):
                self._feed(data)
        except TimeoutError:
            return
        except OSError:
            pass
        self._closed()


class GoodClient:
    """A ``kurrentdbclient`` appending an event and reading the stream back, again and
    again, in a thread, while :meth:`working` holds; every call's latency and every
    error is kept."""

    def __init__(self, uri: str, stream: str = "good") -> None:
        self.client = KurrentDBClient(uri)
        self.stream = stream
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for call in (self._append, self._read):
                started = time.monotonic()
                try:
                    call()
                except Exception as e:  # kept for the test to report
                    self.errors.append(e)
                self.latencies.append(time.monotonic() - started)

    def _append(self) -> None:
        self.client.append_to_stream(self.stream, events=NewEvent(type="Good", data=b"{}"),
                                     current_version=StreamState.ANY, timeout=30)

    def _read(self) -> None:
        assert self.client.get_stream(self.stream, backwards=True, limit=5, timeout=30)

    @contextlib.contextmanager
    def working(self) -> Iterator[GoodClient]:
        """Work in a thread for the duration (some calls first, so the connection is up)."""
        self._append()
        self._stop.clear()
        self.latencies.clear()
        self.errors.clear()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(60)

    def check(self, least_calls: int = 2) -> None:
        """Every call succeeded, none took over 5 s, and the client kept working."""
        assert not self.errors, self.errors[:3]
        assert len(self.latencies) >= least_calls
        assert max(self.latencies) <= 5.0, max(self.latencies)

    def close(self) -> None:
        self.client.close()


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples a process's RSS in a thread (every 20 ms) while entered; ``growth`` is
    the peak over the RSS at entry."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.before = self.peak = rss(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, rss(self.pid))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, AssertionError):
            self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.before
