"""A TCP proxy on 127.0.0.1 that loses the replies of chosen gRPC appends:
:class:`ReplyDroppingProxy`.

It forwards every byte between its clients and one upstream node unchanged, reading the
HTTP/2 frames as they pass (RFC 9113 framing, request and response headers decoded with
HPACK, one decoder per direction and connection) to learn which stream of a connection
carries which call. The ``n``-th call (counted across connections, from 1) of the
watched path (by default KurrentDB's ``Streams/Append``) whose number is in ``drop`` has
its reply held back: the proxy keeps every frame the server sends on that stream until
the trailers come. Trailers with ``grpc-status: 0`` mean the server acknowledged the
append: the proxy then closes both sides of the connection without forwarding any of it,
so the client sees the connection lost after the server committed (its outcome unknown
to the client), and counts it in :attr:`ReplyDroppingProxy.dropped`. Any other status is
forwarded as it came (that call is not counted, and the next one to be dropped is the
next call).

The proxy follows the leader: a reply that sends the client to the leader (KurrentDB's
``leader-endpoint-host`` and ``leader-endpoint-port`` trailers) names the proxy instead,
and the next connections go to that leader, so the client stays behind the proxy
whoever leads. To change a header, the proxy encodes every header block the server
sends again (HPACK state is per direction: the client decodes what the proxy encoded).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Final

import hpack

__all__ = ["APPEND", "ReplyDroppingProxy"]

APPEND: Final = "/event_store.client.streams.Streams/Append"
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, CONTINUATION = 0x1, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20


def _header_fragment(flags: int, payload: bytes) -> bytes:
    """The header block fragment of a HEADERS frame's payload."""
    start, end = 0, len(payload)
    if flags & PADDED:
        start, end = 1, len(payload) - payload[0]
    if flags & PRIORITY:
        start += 5
    return payload[start:end]


class _Frames:
    """Splits a byte stream into HTTP/2 frames and decodes its header blocks."""

    def __init__(self, preface: bool) -> None:
        self.buffer = b""
        self.preface = preface
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 20
        self.block = b""
        self.block_stream = 0
        self.block_flags = 0

    def feed(self, data: bytes) -> list[tuple[bytes, int, int, int,
                                             list[tuple[str, str]] | None]]:
        """The complete frames now available: ``(raw bytes, type, flags, stream id,
        headers)``, headers set on the frame that ends a header block (its END_STREAM
        flag then that of the block's HEADERS frame)."""
        self.buffer += data
        if self.preface:
            if len(self.buffer) < len(PREFACE):
                return []
            self.buffer = self.buffer[len(PREFACE):]
            self.preface = False
        out = []
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                break
            kind, flags = self.buffer[3], self.buffer[4]
            stream = struct.unpack(">I", self.buffer[5:9])[0] & 0x7FFFFFFF
            raw, payload = self.buffer[:9 + length], self.buffer[9:9 + length]
            self.buffer = self.buffer[9 + length:]
            headers = None
            if kind == HEADERS:
                self.block, self.block_stream = _header_fragment(flags, payload), stream
                self.block_flags = flags
            elif kind == CONTINUATION:
                self.block += payload
            if kind in (HEADERS, CONTINUATION) and flags & END_HEADERS:
                headers = [(str(k), str(v)) for k, v in self.decoder.decode(self.block)]
                flags |= self.block_flags & END_STREAM
                self.block = b""
            out.append((raw, kind, flags, stream, headers))
        return out


class ReplyDroppingProxy:
    """The proxy (see the module docstring): ``port`` to connect to, ``upstream`` the
    node's port (may be changed between connections), ``drop`` the call numbers whose
    successful replies are lost; ``calls`` counts the watched calls, ``dropped`` the
    replies lost."""

    def __init__(self, upstream: int, drop: set[int], path: str = APPEND) -> None:
        self.upstream = upstream
        self.drop = set(drop)
        self.path = path
        self.calls = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.closing = False
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True, name="h2 proxy")
        self.thread.start()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.closing = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            for sock in self.sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                server.settimeout(None)
            except OSError:
                self._shut(client)
                continue
            with self.lock:
                self.sockets += [client, server]
            _Connection(self, client, server).start()


class _Connection:
    """One client connection and its upstream connection, pumped by two threads."""

    def __init__(self, proxy: ReplyDroppingProxy, client: socket.socket,
                 server: socket.socket) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.watched: set[int] = set()  # streams of this connection to lose replies of
        self.held: dict[int, list[bytes]] = {}

    def start(self) -> None:
        threading.Thread(target=self._requests, daemon=True, name="h2 proxy up").start()
        threading.Thread(target=self._replies, daemon=True, name="h2 proxy down").start()

    def _sever(self) -> None:
        self.proxy._shut(self.client)
        self.proxy._shut(self.server)

    def _requests(self) -> None:
        frames = _Frames(preface=True)
        try:
            while data := self.client.recv(65536):
                for _raw, kind, _flags, stream, headers in frames.feed(data):
                    if kind in (HEADERS, CONTINUATION) and headers is not None and \
                            dict(headers).get(":path") == self.proxy.path:
                        with self.proxy.lock:
                            self.proxy.calls += 1
                            if self.proxy.calls in self.proxy.drop:
                                self.watched.add(stream)
                self.server.sendall(data)
        except OSError:
            pass
        self._sever()

    def _header_frame(self, stream: int, flags: int, headers: list[tuple[str, str]]) -> bytes:
        """The server's header block, encoded again (a leader's endpoint: the proxy's)."""
        fields = dict(headers)
        if "leader-endpoint-port" in fields:
            with self.proxy.lock:
                self.proxy.upstream = int(fields["leader-endpoint-port"])
            headers = [(k, "127.0.0.1" if k == "leader-endpoint-host" else
                        str(self.proxy.port) if k == "leader-endpoint-port" else v)
                       for k, v in headers]
        block = self.encoder.encode(headers)
        flags = END_HEADERS | (flags & END_STREAM)
        return (len(block).to_bytes(3, "big") + bytes([HEADERS, flags])
                + stream.to_bytes(4, "big") + block)

    def _replies(self) -> None:
        frames = _Frames(preface=False)
        self.encoder = hpack.Encoder()
        try:
            while data := self.server.recv(65536):
                out = []
                for raw, kind, flags, stream, headers in frames.feed(data):
                    if kind in (HEADERS, CONTINUATION):
                        if headers is None:
                            continue  # the block goes on: sent once complete, encoded again
                        raw = self._header_frame(stream, flags, headers)
                    if stream not in self.watched:
                        out.append(raw)
                        continue
                    self.held.setdefault(stream, []).append(raw)
                    if not (kind in (HEADERS, CONTINUATION) and headers is not None
                            and flags & END_STREAM):
                        continue
                    self.watched.discard(stream)
                    held = self.held.pop(stream)
                    if dict(headers).get("grpc-status") == "0":  # acknowledged: lose it
                        with self.proxy.lock:
                            self.proxy.dropped += 1
                        self.client.sendall(b"".join(out))
                        self._sever()
                        return
                    out += held  # refused: not what this proxy is for; forward it
                    with self.proxy.lock:  # and lose the next call's reply instead
                        self.proxy.drop.add(self.proxy.calls + 1)
                if out:
                    self.client.sendall(b"".join(out))
        except OSError:
            pass
        self._sever()
