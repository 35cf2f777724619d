"""Checks of bodies in both directions (SPEC 3.1: "answers are passed on as
they arrive", "bodies stream in both directions"): streaming proved with
gates, big bodies with checksums, 100-continue, chunked uploads.

The streaming checks use a GATE, never a clock: the Node upstream sends the
first part and then sends nothing more until the check releases the gate
through a side URL on Node itself. So the first part can reach the client
before the release only if the proxy passes it on as it comes; a proxy that
holds the answer until it is complete makes the check time out waiting for
the first part (a generous 10 s), never flake. Uploads the other way: the
client sends the first part, waits until Node says (long-poll on the side
URL) that the first part has arrived, and only then sends the rest.
"""

from __future__ import annotations

import http.client
import json
import os
import socket

from h2util import H2Client
from harness import (
    CURL,
    Fail,
    Streaming,
    check,
    curl,
    expect,
    new_id,
    parse_dumped_headers,
    random_file,
    sha256,
)

FIRST_PART_TIMEOUT = 10.0  # seconds for the first part to arrive, gate closed
MIB = 1024 * 1024

H1 = ["--http1.1"]
H2C = ["--http2-prior-knowledge"]


# ---------------------------------------------------------------------------
# Answers trickling down


def gated_download(world, proto_args, gate: str, path: str, first_arrived, complete) -> None:
    """curl -N on `path` (held by `gate`), waiting for `first_arrived(body so
    far)` with the gate closed, then releasing it and reading to the end."""
    s = Streaming(CURL + proto_args + ["-N", "--max-time", "45", world.url("node", path)])
    try:
        arrived = s.wait_for(first_arrived, FIRST_PART_TIMEOUT)
        early = s.snapshot()
        world.release(gate)  # always: the upstream finishes either way
        rc, body, err = s.finish(30)
    finally:
        s.kill()
    expect(
        arrived,
        f"the first part did not reach the client within {FIRST_PART_TIMEOUT:.0f} s while the upstream "
        f"held the rest (got {len(early)} bytes before the release, {len(body)} after): "
        "the answer is held until complete",
    )
    expect(not complete(early), "the whole answer came before the release: the gate did not hold (a suite bug)")
    expect(rc == 0, f"curl exited {rc}: {err.strip()}")
    expect(complete(body), f"incomplete answer after the release: {len(body)} bytes, {body[:80]!r}...")


def sse(world, proto_args):
    gate = new_id()
    gated_download(
        world,
        proto_args,
        gate,
        f"/node/sse?id={gate}",
        lambda b: b"data: first\n\n" in b,
        lambda b: b == b"data: first\n\ndata: second\n\ndata: third\n\n",
    )


@check("sse_gate_http1")
def sse_gate_http1(world):
    """Server-sent events over HTTP/1.1: the first event reaches the client
    while the upstream still holds the rest."""
    sse(world, H1)


@check("sse_gate_h2c", direct=False)
def sse_gate_h2c(world):
    """Server-sent events to an h2c client: the first event arrives (as a
    DATA frame) while the upstream still holds the rest."""
    sse(world, H2C)


def drip(world, proto_args):
    gate, size, first = new_id(), 65536, 2048
    want = bytes(97 + i % 26 for i in range(size))
    gated_download(
        world,
        proto_args,
        gate,
        f"/node/drip?id={gate}&size={size}&first={first}",
        lambda b: len(b) >= first,
        lambda b: b == want,
    )


@check("drip_gate_http1")
def drip_gate_http1(world):
    """A content-length body (64 KiB) sent in two parts over HTTP/1.1: the
    first 2 KiB reach the client before the upstream sends the rest."""
    drip(world, H1)


@check("drip_gate_h2c", direct=False)
def drip_gate_h2c(world):
    """The same content-length body to an h2c client."""
    drip(world, H2C)


# ---------------------------------------------------------------------------
# Requests trickling up


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def upload_http1(world, chunked: bool) -> str | None:
    """One gated upload over a raw HTTP/1.1 socket; a problem or None."""
    gate, part1, part2 = new_id(), os.urandom(3000), os.urandom(5000)
    framing = "chunked" if chunked else "content-length"
    sock = socket.create_connection(world.addr("node"), timeout=30)
    try:
        head = (
            f"POST /node/upload?id={gate} HTTP/1.1\r\nHost: {world.authority('node')}\r\n"
            "Content-Type: application/octet-stream\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(part1) + len(part2)}\r\n")
            + "\r\n"
        )
        sock.sendall(head.encode() + (chunk(part1) if chunked else part1))
        state = world.gate_state(gate, wait_ms=int(FIRST_PART_TIMEOUT * 1000), seen=len(part1))
        sock.sendall(chunk(part2) + b"0\r\n\r\n" if chunked else part2)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        answer = json.loads(resp.read())
    finally:
        sock.close()
    if state["seen"] < len(part1):
        return (
            f"{framing}: the upstream had {state['seen']} of the first {len(part1)} bytes after "
            f"{FIRST_PART_TIMEOUT:.0f} s while the client held the rest: the request body is held"
        )
    if answer.get("body_sha256") != sha256(part1 + part2):
        return f"{framing}: body changed on the way ({answer.get('length')} bytes arrived)"
    return None


@check("upload_gate_http1")
def upload_gate_http1(world):
    """An HTTP/1.1 upload (chunked, and with content-length): the upstream
    receives the first 3000 bytes while the client still holds the rest."""
    problems = [p for p in (upload_http1(world, True), upload_http1(world, False)) if p]
    expect(not problems, "; ".join(problems))


@check("upload_gate_h2c", direct=False)
def upload_gate_h2c(world):
    """An h2c upload: the upstream receives the first DATA frame's bytes while
    the client still holds the rest of the stream."""
    gate, part1, part2 = new_id(), os.urandom(3000), os.urandom(5000)
    with H2Client(world.addr("node")) as c:
        sid = c.request(
            "POST",
            f"/node/upload?id={gate}",
            world.authority("node"),
            [("content-type", "application/octet-stream")],
            body=part1,
            end=False,
        )
        state = world.gate_state(gate, wait_ms=int(FIRST_PART_TIMEOUT * 1000), seen=len(part1))
        c.send_data(sid, part2, end=True)
        status, _, body = c.response(sid, 30)
    expect(
        state["seen"] >= len(part1),
        f"the upstream had {state['seen']} of the first {len(part1)} bytes after {FIRST_PART_TIMEOUT:.0f} s "
        "while the client held the rest: the request body is held",
    )
    expect(status == 200, f"status {status}")
    expect(json.loads(body).get("body_sha256") == sha256(part1 + part2), "body changed on the way")


# ---------------------------------------------------------------------------
# Big bodies


def upload_5mib(world, proto_args):
    path, digest = random_file(world.tmp, f"up-{new_id()}.bin", 5 * MIB)
    r = curl(
        proto_args
        + [
            "-H",
            "Expect:",
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
            f"@{path}",
            world.url("node", "/node/echo/big"),
        ],
        timeout=60,
    )
    path.unlink()
    expect(r.returncode == 0, f"curl exited {r.returncode}: {r.stderr.decode().strip()}")
    try:
        got = json.loads(r.stdout)
    except ValueError:
        raise Fail(f"not the echo's JSON: {r.stdout[:200]!r}") from None
    expect(got["body_length"] == 5 * MIB, f"upstream got {got['body_length']} bytes of {5 * MIB}")
    expect(got["body_sha256"] == digest, "upstream got different bytes (sha256 differs)")


def download_5mib(world, proto_args):
    out = world.tmp / f"down-{new_id()}.bin"
    r = curl(
        proto_args + ["-D", "-", "-o", str(out), world.url("node", f"/node/bytes?size={5 * MIB}&seed=42")], timeout=60
    )
    expect(r.returncode == 0, f"curl exited {r.returncode}: {r.stderr.decode().strip()}")
    status, headers = parse_dumped_headers(r.stdout)[-1]
    data = out.read_bytes()
    out.unlink()
    expect(status == 200, f"status {status}")
    want = next((v for k, v in headers if k.lower() == "x-body-sha256"), None)
    expect(len(data) == 5 * MIB, f"got {len(data)} bytes of {5 * MIB}")
    expect(sha256(data) == want, "got different bytes (sha256 differs from the upstream's)")


@check("body_5mib_up_http1")
def body_5mib_up_http1(world):
    """5 MiB of random bytes POSTed over HTTP/1.1 arrive intact (sha256)."""
    upload_5mib(world, H1)


@check("body_5mib_up_h2c", direct=False)
def body_5mib_up_h2c(world):
    """5 MiB POSTed over h2c arrive intact at the HTTP/1.1 upstream."""
    upload_5mib(world, H2C)


@check("body_5mib_down_http1")
def body_5mib_down_http1(world):
    """5 MiB from the upstream reach an HTTP/1.1 client intact (sha256)."""
    download_5mib(world, H1)


@check("body_5mib_down_h2c", direct=False)
def body_5mib_down_h2c(world):
    """5 MiB from the HTTP/1.1 upstream reach an h2c client intact."""
    download_5mib(world, H2C)


# ---------------------------------------------------------------------------
# Upload framings


@check("expect_100_continue")
def expect_100_continue(world):
    """curl -H 'Expect: 100-continue' with a 2 MiB body: curl gets a
    `100 Continue` (it would otherwise wait 8 s and send anyway), then a 200,
    and the body arrives intact."""
    path, digest = random_file(world.tmp, f"expect-{new_id()}.bin", 2 * MIB)
    head, out = path.with_suffix(".head"), path.with_suffix(".out")
    r = curl(
        H1
        + [
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "8",
            "-D",
            str(head),
            "-o",
            str(out),
            "--data-binary",
            f"@{path}",
            world.url("node", "/node/echo/expect"),
        ],
        timeout=40,
    )
    expect(r.returncode == 0, f"curl exited {r.returncode}: {r.stderr.decode().strip()}")
    statuses = [s for s, _ in parse_dumped_headers(head.read_bytes())]
    body = out.read_bytes()
    for p in (path, head, out):
        p.unlink()
    expect(100 in statuses, f"no 100 Continue reached curl (statuses {statuses}); it sent the body after 8 s anyway")
    expect(statuses[-1] == 200, f"statuses {statuses}")
    got = json.loads(body)
    expect(got["body_sha256"] == digest, f"body changed on the way ({got['body_length']} bytes arrived)")


@check("chunked_upload_curl")
def chunked_upload_curl(world):
    """curl -H 'Transfer-Encoding: chunked' --data-binary @file (1 MiB):
    the body arrives intact, however the proxy frames it upstream."""
    path, digest = random_file(world.tmp, f"chunked-{new_id()}.bin", MIB)
    r = curl(
        H1
        + [
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
            "--data-binary",
            f"@{path}",
            world.url("node", "/node/echo/chunked"),
        ],
        timeout=40,
    )
    path.unlink()
    expect(r.returncode == 0, f"curl exited {r.returncode}: {r.stderr.decode().strip()}")
    got = json.loads(r.stdout)
    expect(
        got["body_length"] == MIB and got["body_sha256"] == digest,
        f"upstream got {got['body_length']} bytes, sha256 {'ok' if got['body_sha256'] == digest else 'differs'}",
    )
    framing = [f"{k}: {v}" for k, v in got["raw_headers"] if k.lower() in ("transfer-encoding", "content-length")]
    return [f"upstream framing: {', '.join(framing) or 'none'}"]


@check("get_with_chunked_body")
def get_with_chunked_body(world):
    """A GET with a chunked body (legal, if unusual) is forwarded with its
    body, in origin-form."""
    sock = socket.create_connection(world.addr("node"), timeout=20)
    try:
        sock.sendall(
            f"GET /node/echo/get-body?x=1 HTTP/1.1\r\nHost: {world.authority('node')}\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n".encode()
            + chunk(b"hello, ")
            + chunk(b"chunked GET")
            + b"0\r\n\r\n"
        )
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        status, body = resp.status, resp.read()
    finally:
        sock.close()
    expect(status == 200, f"status {status}: {body[:200]!r}")
    got = json.loads(body)
    problems = []
    if got["method"] != "GET":
        problems.append(f"method {got['method']}")
    if got["body_sha256"] != sha256(b"hello, chunked GET"):
        framing = [f"{k}: {v}" for k, v in got["raw_headers"] if k.lower() in ("transfer-encoding", "content-length")]
        problems.append(
            f"upstream got a {got['body_length']}-byte body {got['body_head']!r} "
            f"(framing headers upstream: {framing or 'none'})"
        )
    if got["url"] != "/node/echo/get-body?x=1":
        problems.append(f"upstream target {got['url']!r}")
    expect(not problems, "; ".join(problems))
