"""HTTP/2 checks (SPEC 3.1, 3.4): load with h2load, and abuse with frames
written by hand: a stream reset while the upstream works, rapid reset
(CVE-2023-44487), a CONTINUATION flood, a flood of PINGs and SETTINGS
never read back, and an idle connection kept "busy" with PINGs. After each abuse the proxy must still be alive and serving new
connections.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time

import hpack

from h2util import (
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PING,
    RST_STREAM,
    H2Client,
    RawH2,
    frame,
    request_block,
)
from harness import Fail, check, clean_env, expect, new_id

CANCEL = 0x8


@check("h2load_h2c", direct=False, timeout=150)
def h2load_h2c(world):
    """h2load -n 2000 -c 10 -m 10 over h2c: 2000 succeeded, 0 failed,
    0 errored, all 2xx."""
    r = subprocess.run(
        ["h2load", "-n", "2000", "-c", "10", "-m", "10", world.url("node", "/node/small")],
        capture_output=True,
        timeout=120,
        env=clean_env(),
    )
    out = r.stdout.decode(errors="replace")
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    expect(m, f"h2load exited {r.returncode} without a summary: {out[-300:]} {r.stderr.decode()[-300:]}")
    total, _, done, ok, failed, errored = map(int, m.groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    expect(
        ok == 2000 and failed == 0 and errored == 0,
        f"{ok} succeeded, {failed} failed, {errored} errored of {total} ({done} done)",
    )
    expect(codes and int(codes.group(1)) == 2000, f"status codes: {codes.group(0) if codes else '?'}")
    finished = re.search(r"finished in [^\n]*", out)
    return [finished.group(0)] if finished else []


@check("h2_client_reset_499", direct=False)
def h2_client_reset_499(world):
    """A stream the client resets (RST_STREAM CANCEL) while the upstream is
    still working: the connection keeps serving other streams, and the
    access log has a line with status 499 for the abandoned request."""
    gate = new_id()
    path = f"/node/hang?id={gate}"
    notes = []
    try:
        with H2Client(world.addr("node")) as c:
            sid = c.request("GET", path, world.authority("node"))
            arrived = world.gate_state(gate, wait_ms=10000, arrived=1)["arrived"]
            expect(arrived, "the request never reached the upstream")
            c.reset(sid)
            status, _, _ = c.get("/node/ping", world.authority("node"), timeout=20)
            expect(status == 200, f"the next stream on the connection got {status}")
            expect(c.terminated is None, f"the connection got GOAWAY {c.terminated}")
        abandoned = world.gate_state(gate, wait_ms=5000, aborted=1)["aborted"]
        notes.append(f"upstream exchange abandoned: {'yes' if abandoned else 'no (still open after 5 s)'}")
    finally:
        world.release(gate)
    line = world.wait_access(lambda v: v.get("path") == path and v.get("status") == 499, timeout=10)
    if line is None:
        seen = [v.get("status") for v in world.access_log() if v.get("path") == path]
        raise Fail(f"no access-log line with status 499 for the reset stream (lines for it: {seen}); {notes[0]}")
    return notes


@check("h2_rapid_reset_goaway", direct=False)
def h2_rapid_reset_goaway(world):
    """Rapid reset (CVE-2023-44487): 2000 streams opened and at once reset,
    in one burst. The proxy answers GOAWAY (any code) and keeps serving other
    connections."""
    n = 2000
    raw = RawH2(world.addr("node"))
    try:
        enc = hpack.Encoder()
        burst = bytearray()
        for i in range(n):
            sid = 1 + 2 * i
            burst += frame(
                HEADERS, END_HEADERS | END_STREAM, sid, request_block("/node/small", world.authority("node"), enc)
            )
            burst += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        raw.send(bytes(burst))
        raw.wait_ended(10)
        what = raw.describe()
        goaway = raw.goaway
    finally:
        raw.close()
    problems = world.proxy_serves()
    expect(goaway is not None, f"after {n} streams opened and reset: {what}")
    expect(not problems, f"GOAWAY came, but then: {'; '.join(problems)}")
    return [f"server said: {what}"]


@check("h2_continuation_flood", direct=False)
def h2_continuation_flood(world):
    """HEADERS without END_HEADERS, then CONTINUATION frames (4 MiB in all,
    never ending the block): the proxy sends GOAWAY or closes the connection
    (without reading it all), and keeps serving other connections."""
    total = 4 * 1024 * 1024
    one = b"\x00\x07x-flood" + bytes([100]) + b"a" * 100  # literal field, never indexed
    blob = (one * (total // len(one) + 1))[:total]
    raw = RawH2(world.addr("node"))
    try:
        first = frame(HEADERS, END_STREAM, 1, request_block("/node/small", world.authority("node")))
        data = first + b"".join(frame(CONTINUATION, 0, 1, blob[i : i + 16384]) for i in range(0, total, 16384))
        raw.send(data)
        raw.wait_ended(10)
        what, ended, sent = raw.describe(), raw.ended, raw.sent
    finally:
        raw.close()
    problems = world.proxy_serves()
    expect(ended, f"{sent} bytes of header block sent, then {what} within 10 s")
    expect(not problems, f"{what}, but then: {'; '.join(problems)}")
    return [f"server said: {what} after {sent // 1024} KiB"]


@check("h2_idle_ping_timeout", direct=False, timeout=40)
def h2_idle_ping_timeout(world):
    """An h2c connection with no stream, receiving a PING every 100 ms, is
    idle (SPEC 3.4): at idle_timeout (1 s here) the proxy says GOAWAY, and the
    connection is closed within 5 s, well before header_read_timeout (10 s).
    A time bound is the point here; the bound is generous."""
    raw = RawH2(world.addr("node"))
    t0 = time.monotonic()
    try:
        while not raw.eof and time.monotonic() - t0 < 12:
            raw.send_small(frame(PING, 0, 0, b"idle-png"))
            raw.pump(0.1)
        goaway_after = raw.goaway_at - t0 if raw.goaway_at else None
        closed_after = raw.eof_at - t0 if raw.eof_at else None
    finally:
        raw.close()
    ga = f", GOAWAY after {goaway_after:.1f} s" if goaway_after is not None else ""
    expect(closed_after is not None, f"still open after 12 s of PINGs{ga}")
    expect(closed_after <= 5, f"closed only after {closed_after:.1f} s{ga} (idle_timeout is 1 s)")
    expect(goaway_after is not None, f"closed after {closed_after:.1f} s without a GOAWAY")
    return [f"closed after {closed_after:.1f} s{ga}"]


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise Fail("no VmRSS")


@check("h2_control_frame_flood", direct=False, timeout=60)
def h2_control_frame_flood(world):
    """Control frames sent faster than the client reads their answers
    (CVE-2019-9512 PING flood, CVE-2019-9515 SETTINGS flood): 300,000 PINGs
    and 20,000 SETTINGS written without ever reading. The proxy either ends
    the connection or stops reading it (its acknowledgements back up); its
    memory stays bounded (grows by less than 32 MiB) and it keeps serving
    other connections."""
    import socket
    import threading

    pid = world.proxy.proc.pid
    before = _rss_kib(pid)
    sock = socket.create_connection(world.addr("node"), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    from h2util import PREFACE, SETTINGS

    flood = PREFACE + frame(SETTINGS, 0, 0)
    flood += frame(PING, 0, 0, b"floodpng") * 300_000
    flood += frame(SETTINGS, 0, 0) * 20_000
    sent = {"n": 0, "ended": None}

    def write():
        view = memoryview(flood)
        try:
            while view:
                n = sock.send(view[:65536])
                view = view[n:]
                sent["n"] += n
            sent["ended"] = "all sent"
        except socket.timeout:
            sent["ended"] = "the proxy stopped reading"
        except OSError as e:
            sent["ended"] = f"connection ended ({e.__class__.__name__})"

    t = threading.Thread(target=write, daemon=True)
    t.start()
    t.join(20)
    peak = _rss_kib(pid)
    sock.close()
    problems = world.proxy_serves()
    grew = (peak - before) // 1024
    expect(grew < 32, f"RSS grew by {grew} MiB ({before // 1024} -> {peak // 1024} MiB) after {sent['n'] // 1024} KiB")
    expect(not problems, f"after the flood: {'; '.join(problems)}")
    return [f"{sent['ended'] or 'still sending after 20 s'} after {sent['n'] // 1024} KiB; RSS {before // 1024} -> {peak // 1024} MiB"]
