"""Hostile network traffic against the gRPC gateway (issue 13, section 1): each attack of
one client on its own connection(s), while a well-behaved ``kurrentdbclient`` keeps
appending and reading on another.

The server is ``python -m exesdb start`` in a subprocess with its default limits (see
the README's "Limits against hostile clients"); the attacker is a subprocess of its own
(``python -m benchmarks.bench_hostile attack NAME PORT SECONDS``: raw HTTP/2 frames on
sockets, printing one JSON line of what it saw); the good client runs in a thread of this
process. For each attack it reports the good client's p99 latency during the attack
against its p99 just before (target: within 3x), the time from the attack's start to
the server cutting the attacker off (GOAWAY or close; "not cut off" when it never was),
and the server's peak RSS growth over its RSS before the attack (Linux ``/proc``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._procs import process_cpu, process_rss, stop_server
from ._report import Result
from .h2raw import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    frame,
    header_block,
    read_all_request,
    request_headers,
)

__all__ = ["ATTACKS", "run"]

# -- the attacker's side -----------------------------------------------------------------


class Watch:
    """Reads what the server sends on one socket (in a thread, unless ``reading`` is
    False) and notes when a GOAWAY came (and its error code) and when the socket
    closed."""

    def __init__(self, sock: socket.socket, start: float, reading: bool = True) -> None:
        self.sock = sock
        self.start = start
        self.goaway_at: float | None = None
        self.goaway_code: int | None = None
        self.closed_at: float | None = None
        self._buf = bytearray()
        self._thread: threading.Thread | None = None
        if reading:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    @property
    def over(self) -> bool:
        return self.goaway_at is not None or self.closed_at is not None

    def closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic() - self.start

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 9:
            high, low, ftype, _flags, _sid = FRAME_HEADER.unpack_from(buf, pos)
            length = (high << 16) | low
            if len(buf) - pos - 9 < length:
                break
            if ftype == GOAWAY and self.goaway_at is None:
                self.goaway_at = time.monotonic() - self.start
                self.goaway_code = struct.unpack_from(">L", buf, pos + 13)[0]
            pos += 9 + length
        del buf[:pos]

    def _read(self) -> None:
        try:
            while data := self.sock.recv(1 << 20):
                self.feed(data)
        except OSError:
            pass
        self.closed()

    def drain(self, timeout: float = 1.0) -> None:
        """For a socket nobody read: read what is there now, to see a GOAWAY or the end."""
        self.sock.settimeout(timeout)
        try:
            while data := self.sock.recv(1 << 20):
                self.feed(data)
        except TimeoutError:
            return
        except OSError:
            pass
        self.closed()

    def result(self) -> dict[str, Any]:
        return {"goaway_at": self.goaway_at, "goaway_code": self.goaway_code,
                "closed_at": self.closed_at}


def _connect(port: int, settings: bytes = b"", host_from: str | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port),
                                    source_address=(host_from, 0) if host_from else None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
    return sock


def _flood(sock: socket.socket, watch: Watch, deadline: float,
           batch: Callable[[int], bytes]) -> int:
    """Send ``batch(i)`` for i = 0, 1, ... until the server cuts the connection off or
    the deadline passes; how many batches went out."""
    sent = 0
    while time.monotonic() < deadline and not watch.over:
        try:
            sock.sendall(batch(sent))
        except OSError:
            watch.closed()
            break
        sent += 1
    return sent


def _rapid_reset(port: int, seconds: float, with_data: bool) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start)
    block = header_block(request_headers())
    body = read_all_request(10)
    rst = struct.pack(">L", 8)  # CANCEL

    def batch(i: int) -> bytes:
        out = []
        for k in range(100):
            sid = 2 * (100 * i + k) + 1
            if with_data:
                out.append(frame(HEADERS, END_HEADERS, sid, block))
                out.append(frame(DATA, END_STREAM, sid, body))
            else:
                out.append(frame(HEADERS, END_HEADERS, sid, block))
            out.append(frame(RST_STREAM, 0, sid, rst))
        return b"".join(out)

    batches = _flood(sock, watch, start + seconds, batch)
    time.sleep(0.2)
    sock.close()
    return {"frames": batches * 200, **watch.result()}


def _different_blocks(seed: int) -> Callable[[int], bytes]:
    """Requests (to a path not served) whose header blocks are all different and just
    under the default 16 KiB header list limit."""
    rng = random.Random(seed)
    base = header_block(request_headers("/test.Hostile/Unknown"))
    extra = header_block([(b"x-h%04d" % k, rng.randbytes(24).hex().encode())
                          for k in range(170)][1:])

    def blocks(i: int) -> bytes:
        # (the block built from its parts: the attacker's own CPU, on the same machine,
        # must not be what slows the server down)
        numbered = header_block([(b"x-n", b"%08d-%d" % (i, seed))])
        return frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, base + numbered + extra)

    return blocks


def _big_header_blocks(port: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start)
    batch = _different_blocks(1)

    batches = _flood(sock, watch, start + seconds, batch)
    time.sleep(0.2)
    sock.close()
    return {"frames": batches, **watch.result()}


def _continuations(port: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start)
    sock.sendall(frame(HEADERS, 0, 1, header_block(request_headers())))
    empty = frame(CONTINUATION, 0, 1) * 1000
    batches = _flood(sock, watch, start + seconds, lambda i: empty)
    time.sleep(0.2)
    sock.close()
    return {"frames": batches * 1000, **watch.result()}


def _pings(port: int, seconds: float, reading: bool) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start, reading=reading)
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(1000))
    if not reading:
        sock.settimeout(1.0)
    deadline = start + seconds
    batches = 0
    while time.monotonic() < deadline and not watch.over:
        try:
            sock.sendall(pings)
        except TimeoutError:
            continue  # the server reads nothing more: keep the connection, try again
        except OSError:
            watch.closed()
            break
        batches += 1
    if not reading:
        watch.drain()
    sock.close()
    return {"frames": batches * 1000, **watch.result()}


def _small_settings(port: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start)
    settings = frame(SETTINGS, 0, 0, struct.pack(">HL", 0x2, 0)) * 1000  # ENABLE_PUSH 0
    batches = _flood(sock, watch, start + seconds, lambda i: settings)
    time.sleep(0.2)
    sock.close()
    return {"frames": batches * 1000, **watch.result()}


def _big_settings(port: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    sock = _connect(port)
    watch = Watch(sock, start)
    block = header_block(request_headers())
    # 100 calls that wait for their request message: 100 open streams
    sock.sendall(b"".join(frame(HEADERS, END_HEADERS, 2 * k + 1, block) for k in range(100)))
    entries = (1 << 20) // 6
    payload = b"".join(struct.pack(">HL", 0x4, 65535 + (k & 1)) for k in range(entries))
    big = frame(SETTINGS, 0, 0, payload)
    batches = _flood(sock, watch, start + seconds, lambda i: big)
    time.sleep(0.2)
    sock.close()
    return {"frames": batches, **watch.result()}


def _zero_window(port: int, seconds: float, connections: int = 4) -> dict[str, Any]:
    start = time.monotonic()
    block = header_block(request_headers())
    body = read_all_request()
    socks, watches = [], []
    for _ in range(connections):
        sock = _connect(port)
        socks.append(sock)
        watches.append(Watch(sock, start))
        sock.sendall(b"".join(frame(HEADERS, END_HEADERS, 2 * k + 1, block)
                              + frame(DATA, END_STREAM, 2 * k + 1, body)
                              for k in range(100)))
    while time.monotonic() < start + seconds and not all(w.over for w in watches):
        time.sleep(0.1)
    for sock in socks:
        sock.close()
    firsts = [w for w in watches if w.over]
    first = min(firsts, key=lambda w: (w.goaway_at or w.closed_at or 0.0), default=None)
    return {"frames": 200 * connections,
            **(first.result() if first else watches[0].result())}


def _cached_blocks(port: int, seconds: float, connections: int = 20) -> dict[str, Any]:
    start = time.monotonic()
    socks, watches = [], []
    for c in range(connections):
        sock = _connect(port)
        socks.append(sock)
        watch = Watch(sock, start)
        watches.append(watch)
        blocks = _different_blocks(100 + c)
        for k in range(256):
            try:
                sock.sendall(blocks(k))
            except OSError:
                watch.closed()
                break
            if watch.over:
                break
    while time.monotonic() < start + seconds and not all(w.over for w in watches):
        time.sleep(0.1)
    for sock in socks:
        sock.close()
    cut = [w for w in watches if w.over]
    first = min(cut, key=lambda w: (w.goaway_at or w.closed_at or 0.0), default=None)
    return {"frames": 256 * connections,
            **(first.result() if first else watches[0].result())}


def _trickle(port: int, seconds: float, connections: int = 1100) -> dict[str, Any]:
    start = time.monotonic()
    socks: list[socket.socket] = []
    watches: list[Watch] = []
    for _ in range(connections):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        except OSError:
            continue
        socks.append(sock)
        watches.append(Watch(sock, start, reading=False))
    # then one byte of a PING frame every 5 s on each
    ping = frame(PING, 0, 0, b"\x00" * 8)
    step = 0
    while time.monotonic() < start + seconds:
        for sock, watch in zip(socks, watches, strict=True):
            if watch.closed_at is None:
                try:
                    sock.send(ping[step % len(ping):step % len(ping) + 1])
                except OSError:
                    watch.closed()
        step += 1
        time.sleep(5)
    for sock in socks:
        sock.close()
    closed = [w.closed_at for w in watches if w.closed_at is not None]
    return {"frames": len(socks), "goaway_at": None, "goaway_code": None,
            "closed_at": min(closed) if closed else None,
            "closed": len(closed), "opened": len(socks)}


def _password_guesses(port: int, seconds: float, threads: int = 32) -> dict[str, Any]:
    import base64

    start = time.monotonic()
    headers = [*request_headers("/event_store.client.streams.Streams/Read"),
               (b"authorization", b"Basic " + base64.b64encode(b"admin:wrong-guess"))]
    block = header_block(headers)
    body = read_all_request(1)
    guesses = [0]
    lock = threading.Lock()

    def guess() -> None:
        while time.monotonic() < start + seconds:
            try:
                with _connect(port, host_from="127.0.0.2") as sock:  # another address
                    sock.sendall(frame(HEADERS, END_HEADERS, 1, block)
                                 + frame(DATA, END_STREAM, 1, body))
                    sock.settimeout(10)
                    while sock.recv(65536):
                        pass
            except OSError:
                pass
            with lock:
                guesses[0] += 1

    workers = [threading.Thread(target=guess, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"frames": guesses[0], "goaway_at": None, "goaway_code": None, "closed_at": None,
            "guesses_per_second": guesses[0] / seconds}


ATTACKS: dict[str, Callable[[int, float], dict[str, Any]]] = {
    "rapid-reset": lambda port, s: _rapid_reset(port, s, with_data=True),
    "rapid-reset-no-data": lambda port, s: _rapid_reset(port, s, with_data=False),
    "big-header-blocks": _big_header_blocks,
    "continuation-flood": _continuations,
    "ping-flood-no-read": lambda port, s: _pings(port, s, reading=False),
    "ping-flood": lambda port, s: _pings(port, s, reading=True),
    "settings-flood": _small_settings,
    "big-settings": _big_settings,
    "zero-window": _zero_window,
    "cached-header-blocks": _cached_blocks,
    "trickle": _trickle,
    "password-guesses": _password_guesses,
}
"""Attack name -> (port, seconds) -> what the attacker saw (JSON-able)."""


def _attack_main(argv: list[str]) -> int:
    name, port, seconds = argv[0], int(argv[1]), float(argv[2])
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, max(4096, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1])))
    started = time.time()
    print(json.dumps({"attack": name, "started": started, **ATTACKS[name](port, seconds)}),
          flush=True)
    return 0


# -- the harness -----------------------------------------------------------------------------

SECONDS = 8.0
"""How long each attack runs (less when the server cuts it off)..."""
LONGER = {"trickle": 40.0}
"""... but for these (trickling connections are closed by the frame timeout, 30 s)."""
BEFORE = 3.0
"""How long the good client works before the attack (its p99 "before")."""
AFTER = 2.0
"""How long after the attacker ends its calls still count as "during" (stalls that
outlast an attack are its effect)."""
_LISTENING = re.compile(r"listening on (\S+):(\d+)")
_MiB = 1 << 20


def _start_server(data_dir: Path, extra: list[str], files: int | None = None
                  ) -> tuple[subprocess.Popen[str], int]:
    """``python -m exesdb start`` (default limits; at most ``files`` open files when
    given); returns it and its gRPC port once it listens."""
    def limit_files() -> None:
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    env = {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exesdb", "start", "--store-id", "hostile", "--data-dir",
         str(data_dir), "--grpc-port", "0", "--http-port", "0", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=limit_files)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    port = None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            port = int(match.group(2))
        if port is not None and "exesdb: serving" in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr or ()],
                             daemon=True).start()
            return proc, port
    proc.kill()
    raise RuntimeError("the exesdb server did not start:\n" + "".join(seen))


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class _Good:
    """The well-behaved client: ``call()`` again and again in a thread, each call's
    start (wall clock) and latency kept; a failed call counts as its time."""

    def __init__(self, call: Callable[[], object], pause: float = 0.0) -> None:
        self.call = call
        self.pause = pause
        self.samples: list[tuple[float, float]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started, clock = time.time(), time.monotonic()
            try:
                self.call()
            except StopIteration:
                return  # nothing more to do (every user has logged in)
            except Exception:
                self.failures += 1
            self.samples.append((started, time.monotonic() - clock))
            if self.pause:
                time.sleep(self.pause)

    def __enter__(self) -> _Good:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def _kurrent_calls(port: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """Append one event and read the stream's last five back, on one connection."""
    from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

    client = KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false")

    def call() -> None:
        client.append_to_stream("good", events=NewEvent(type="Good", data=b"{}"),
                                current_version=StreamState.ANY, timeout=60)
        client.get_stream("good", backwards=True, limit=5, timeout=60)

    return call, client.close


def _new_connection_calls(port: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """A new client (a new connection) for each append."""
    from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

    def call() -> None:
        with KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false") as client:
            client.append_to_stream("good", events=NewEvent(type="Good", data=b"{}"),
                                    current_version=StreamState.ANY, timeout=60)

    return call, lambda: None


def _first_logins(port: int, users: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """Each call the first login of another user (a Read with basic credentials)."""
    import base64

    import grpc  # type: ignore[import-untyped]

    from exesdb.grpc.protos import streams_pb2

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    read = channel.unary_stream("/event_store.client.streams.Streams/Read",
                                request_serializer=streams_pb2.ReadReq.SerializeToString,
                                response_deserializer=streams_pb2.ReadResp.FromString)
    message = streams_pb2.ReadReq()
    message.options.stream.stream_identifier.stream_name = b"good"
    message.options.stream.start.SetInParent()
    message.options.count = 1
    message.options.no_filter.SetInParent()
    message.options.uuid_option.string.SetInParent()
    turn = iter(range(users))

    def call() -> None:
        token = base64.b64encode(f"user{next(turn)}:right-password".encode()).decode()
        list(read(message, metadata=[("authorization", "Basic " + token)], timeout=60))

    return call, channel.close


def _fill(port: int) -> None:
    """16 MiB of events in ``$all`` (4,000 of 4 KiB), for the reads of zero-window."""
    from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

    with KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false") as client:
        for i in range(40):
            client.append_to_stream(
                f"fill-{i}", events=[NewEvent(type="Fill", data=b"f" * 4096) for _ in range(100)],
                current_version=StreamState.ANY)


def _one(name: str, root: Path) -> dict[str, Any]:
    """Run attack ``name`` against a fresh server (see the module doc)."""
    extra: list[str] = []
    files = None
    users = 0
    if name == "password-guesses":
        from exesdb.grpc.auth import add_user

        users = 160  # a first login every 0.2 s or so, all through the run
        for user in ["admin", *(f"user{i}" for i in range(users))]:
            add_user(root / "users", user, "right-password", groups=["$admins"])
        extra = ["--users-file", str(root / "users")]
    if name == "trickle":
        files = 1024
    proc, port = _start_server(root / "data", extra, files)
    try:
        if name == "zero-window":
            _fill(port)
        if name == "password-guesses":
            call, close = _first_logins(port, users)
        elif name == "trickle":
            call, close = _new_connection_calls(port)
        else:
            call, close = _kurrent_calls(port)
        with _Good(call, 0.1 if users else 0.0) as good:
            time.sleep(BEFORE)
            rss_before = peak = process_rss(proc.pid)
            cpu_before = process_cpu(proc.pid)
            started = time.time()
            attacker = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_hostile", "attack", name, str(port),
                 str(LONGER.get(name, SECONDS))], stdout=subprocess.PIPE, text=True)
            while attacker.poll() is None:
                peak = max(peak, process_rss(proc.pid))
                time.sleep(0.05)
            assert attacker.stdout is not None
            seen = json.loads(attacker.stdout.read() or "{}")
            ended = time.time()
            deadline = ended + AFTER
            while time.time() < deadline:
                peak = max(peak, process_rss(proc.pid))
                time.sleep(0.05)
            cpu = process_cpu(proc.pid) - cpu_before
        close()
    finally:
        stop_server(proc)
    before = [lat for t, lat in good.samples if started - BEFORE <= t < started]
    during = [lat for t, lat in good.samples if started <= t < ended + AFTER]
    # a call started before the attack and still running in it counts as during, too
    during += [lat for t, lat in good.samples if t < started and t + lat > started]
    offset = seen.get("started", started) - started
    cut = seen.get("goaway_at") or seen.get("closed_at")
    return {"before": _p99(before), "during": _p99(during), "calls": len(during),
            "p50 before": _p50(before), "p50 during": _p50(during),
            "failures": good.failures, "cut": None if cut is None else cut + offset,
            "code": seen.get("goaway_code"), "rss": (peak - rss_before) / _MiB,
            "cpu": cpu / max(1e-9, ended + AFTER - started), "seen": seen}


def run() -> list[Result]:
    """Every attack of :data:`ATTACKS`, each against a fresh server, while a good client
    works; its p99 during against before, the cut-off and the server's RSS growth."""
    out: list[Result] = []
    for name in ATTACKS:
        root = Path(tempfile.mkdtemp(prefix="exesdb-bench-hostile-"))
        try:
            figures = _one(name, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        out.append(Result(f"{name}: good client p99 during the attack (floor: before)",
                          figures["during"] * 1e3, "ms", figures["before"] * 1e3,
                          f"within 3x; {figures['calls']} calls, {figures['failures']} failed; "
                          f"p50 {figures['p50 during'] * 1e3:.0f} ms "
                          f"(before {figures['p50 before'] * 1e3:.0f})"))
        cut = figures["cut"]
        how = ("not cut off" if cut is None else
               f"GOAWAY {figures['code']}" if figures["code"] is not None else "closed")
        out.append(Result(f"{name}: attacker cut off after", float("nan") if cut is None
                          else cut, "s", None, how))
        out.append(Result(f"{name}: server peak RSS growth", figures["rss"], "MiB", None,
                          "<= 64 MiB per connection, 512 MiB in all"))
        out.append(Result(f"{name}: server CPU during the attack", figures["cpu"] * 100,
                          "% of a core"))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["attack"]:
        sys.exit(_attack_main(sys.argv[2:]))
    from ._report import render_table

    print(render_table(run()))
