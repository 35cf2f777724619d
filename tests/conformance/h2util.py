"""HTTP/2 over cleartext with prior knowledge (h2c), two ways:

- `H2Client`: a well-behaved client on the `h2` package, for requests whose
  exact header fields matter (two `cookie` fields, a chosen `:authority`) or
  whose body the check sends in parts.
- `RawH2`: frames written and read by hand, for abuse (rapid reset,
  CONTINUATION floods, PINGs on an idle connection), where the point is to
  misbehave and then see what the server says: GOAWAY, close, or nothing.
"""

from __future__ import annotations

import select
import socket
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class Stream:
    def __init__(self):
        self.headers: list[tuple[str, str]] | None = None
        self.data = bytearray()
        self.ended = False
        self.reset: int | None = None  # error code of a RST_STREAM from the server


class H2Client:
    """A small blocking h2c client. Use as a context manager."""

    def __init__(self, addr, timeout: float = 20.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self, method: str, path: str, authority: str, headers=(), body: bytes | None = None, end: bool = True
    ) -> int:
        """Opens a stream; ends it after `body` when `end`."""
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        fields += list(headers)
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, fields, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes, end: bool = False):
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    def reset(self, sid: int, code=h2.errors.ErrorCodes.CANCEL):
        self.conn.reset_stream(sid, code)
        self.flush()

    def pump(self, timeout: float) -> None:
        """Reads what the server sent within `timeout` and handles it."""
        if self.closed:
            return
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not ready:
            return
        try:
            data = self.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()

    def _event(self, ev):
        s = self.streams.get(getattr(ev, "stream_id", None) or 0)
        if isinstance(ev, h2.events.ResponseReceived) and s:
            s.headers = list(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            if s:
                s.data += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and s:
            s.ended = True
        elif isinstance(ev, h2.events.StreamReset) and s:
            s.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(predicate())
            self.pump(min(left, 0.5))
        return True

    def response(self, sid: int, timeout: float = 20.0) -> tuple[int, list[tuple[str, str]], bytes]:
        s = self.streams[sid]
        if not self.wait(lambda: s.ended or s.reset is not None, timeout):
            raise TimeoutError(f"stream {sid}: no complete answer within {timeout} s (closed={self.closed})")
        if s.reset is not None:
            raise ConnectionError(f"stream {sid} reset by the server: {error_name(s.reset)}")
        status = int(dict(s.headers or [])[":status"])
        return status, [h for h in s.headers if not h[0].startswith(":")], bytes(s.data)

    def get(self, path: str, authority: str, headers=(), timeout: float = 20.0):
        return self.response(self.request("GET", path, authority, headers), timeout)


# ---------------------------------------------------------------------------
# Raw frames


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid & 0x7FFFFFFF) + payload


def request_block(path: str, authority: str, encoder: hpack.Encoder | None = None) -> bytes:
    enc = encoder or hpack.Encoder()
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)])


class RawH2:
    """An h2c connection driven frame by frame. Tracks what the server sent:
    GOAWAY (code, last stream id), EOF, frame counts by type."""

    def __init__(self, addr, timeout: float = 20.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.goaway: tuple[int, int] | None = None  # (error code, last stream id)
        self.goaway_at: float | None = None
        self.eof = False
        self.eof_at: float | None = None
        self.counts: dict[int, int] = {}
        self.sent = 0  # bytes handed to the socket by send()
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.sock.setblocking(False)  # from here on, select() decides

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def ended(self) -> bool:
        """The server said goodbye: GOAWAY or close."""
        return self.goaway is not None or self.eof

    def send(self, data: bytes) -> bool:
        """Sends while reading what comes back (so neither side's buffers
        stall); stops early, returning False, once the server has sent
        GOAWAY, closed, or stopped reading for the socket's timeout."""
        view = memoryview(data)
        stalled_since = time.monotonic()
        while view:
            if self.ended:
                return False
            r, w, _ = select.select([self.sock], [self.sock], [], 0.5)
            if r:
                self._read_some()
            if w and not self.eof:
                try:
                    n = self.sock.send(view[:65536])
                    view = view[n:]
                    self.sent += n
                    stalled_since = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError:
                    self._mark_eof()
                    return False
            elif time.monotonic() - stalled_since > 10:
                return False
        return True

    def _mark_eof(self):
        if not self.eof:
            self.eof = True
            self.eof_at = time.monotonic()

    def _read_some(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._mark_eof()
            return
        self.buf += data
        self._parse()

    def _parse(self):
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                return
            ftype, flags = self.buf[3], self.buf[4]
            payload = bytes(self.buf[9 : 9 + length])
            del self.buf[: 9 + length]
            self.counts[ftype] = self.counts.get(ftype, 0) + 1
            if ftype == GOAWAY and self.goaway is None:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway = (code, last & 0x7FFFFFFF)
                self.goaway_at = time.monotonic()
            elif ftype == SETTINGS and not flags & ACK:
                self.send_small(frame(SETTINGS, ACK, 0))

    def send_small(self, data: bytes) -> None:
        """A small control frame; losing it to a closing socket is fine."""
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def pump(self, timeout: float):
        """Reads for up to `timeout` seconds (returns early on EOF)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.sock], [], [], min(left, 0.2))
            if r:
                self._read_some()

    def wait_ended(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self.pump(min(0.2, deadline - time.monotonic()))
        return self.ended

    def describe(self) -> str:
        parts = []
        if self.goaway:
            parts.append(f"GOAWAY {error_name(self.goaway[0])} (last stream {self.goaway[1]})")
        if self.eof:
            parts.append("connection closed")
        return ", ".join(parts) or "neither GOAWAY nor close"
