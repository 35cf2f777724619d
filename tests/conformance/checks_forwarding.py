"""Checks of what the proxy forwards: added and removed headers (SPEC 3.1),
the request target's form, cookies, redirects and ranges, against httpbin
and the Node echo upstream.
"""

from __future__ import annotations

import json

from h2util import H2Client
from harness import Fail, check, curl, expect, http1, new_id, parse_dumped_headers

HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "http2-settings"]


def names(pairs) -> list[str]:
    return [k.lower() for k, _ in pairs]


def values(pairs, name: str) -> list[str]:
    return [v for k, v in pairs if k.lower() == name]


def connection_tokens(pairs) -> set[str]:
    return {t.strip().lower() for v in values(pairs, "connection") for t in v.split(",") if t.strip()}


# ---------------------------------------------------------------------------
# Forwarded headers


@check("forwarded_headers_http1", direct=False)
def forwarded_headers_http1(world):
    """HTTP/1.1 client: the upstream sees x-forwarded-for (the client's
    address appended to what the client sent), x-forwarded-proto http,
    x-forwarded-host = the client's Host, and that Host itself, unchanged."""
    host = "conformance.example:8088"
    plain = http1(world.addr("node"), "GET", "/node/echo/fwd", [("Host", host)]).json()
    chained = http1(
        world.addr("node"), "GET", "/node/echo/fwd", [("Host", host), ("X-Forwarded-For", "203.0.113.7")]
    ).json()
    seen, seen2 = plain["raw_headers"], chained["raw_headers"]
    problems = []
    if values(seen, "host") != [host]:
        problems.append(f"Host {values(seen, 'host')} (sent {host!r})")
    if values(seen, "x-forwarded-for") != ["127.0.0.1"]:
        problems.append(f"x-forwarded-for {values(seen, 'x-forwarded-for')} (want ['127.0.0.1'])")
    xff2 = [p.strip() for v in values(seen2, "x-forwarded-for") for p in v.split(",")]
    if xff2 != ["203.0.113.7", "127.0.0.1"]:
        problems.append(f"with a client x-forwarded-for 203.0.113.7: {values(seen2, 'x-forwarded-for')}")
    if values(seen, "x-forwarded-proto") != ["http"]:
        problems.append(f"x-forwarded-proto {values(seen, 'x-forwarded-proto')}")
    if values(seen, "x-forwarded-host") != [host]:
        problems.append(f"x-forwarded-host {values(seen, 'x-forwarded-host')} (want [{host!r}])")
    expect(not problems, "; ".join(problems))


@check("forwarded_headers_h2c", direct=False)
def forwarded_headers_h2c(world):
    """h2c client to the HTTP/1.1 upstream: :authority becomes Host, and the
    x-forwarded-* headers are added as for HTTP/1.1."""
    authority = "conformance.example:8089"
    with H2Client(world.addr("node")) as c:
        status, _, body = c.get("/node/echo/fwd-h2", authority)
    expect(status == 200, f"status {status}")
    seen = json.loads(body)["raw_headers"]
    problems = []
    if values(seen, "host") != [authority]:
        problems.append(f"Host {values(seen, 'host')} (want [{authority!r}])")
    if values(seen, "x-forwarded-for") != ["127.0.0.1"]:
        problems.append(f"x-forwarded-for {values(seen, 'x-forwarded-for')}")
    if values(seen, "x-forwarded-proto") != ["http"]:
        problems.append(f"x-forwarded-proto {values(seen, 'x-forwarded-proto')}")
    if values(seen, "x-forwarded-host") != [authority]:
        problems.append(f"x-forwarded-host {values(seen, 'x-forwarded-host')}")
    expect(not problems, "; ".join(problems))


@check("request_id", direct=False)
def request_id(world):
    """x-request-id: generated when the client sent none, kept when it sent a
    sane one; either way the upstream's value is echoed on the response and
    written in the access log."""
    r = http1(world.addr("node"), "GET", "/node/echo/rid")
    upstream_saw = values(r.json()["raw_headers"], "x-request-id")
    expect(len(upstream_saw) == 1 and upstream_saw[0], f"no id generated: upstream saw {upstream_saw}")
    expect(
        r.header("x-request-id") == upstream_saw[0],
        f"response x-request-id {r.header('x-request-id')!r}, upstream saw {upstream_saw[0]!r}",
    )

    mine = "conformance-" + new_id()
    r = http1(world.addr("node"), "GET", "/node/echo/rid", [("X-Request-Id", mine)])
    upstream_saw = values(r.json()["raw_headers"], "x-request-id")
    expect(upstream_saw == [mine], f"sent {mine!r}, upstream saw {upstream_saw}")
    expect(r.header("x-request-id") == mine, f"response x-request-id {r.header('x-request-id')!r}, want {mine!r}")
    line = world.wait_access(lambda v: v.get("request_id") == mine)
    expect(line is not None, f"no access-log line with request_id {mine}")


@check("hop_by_hop_request", direct=False)
def hop_by_hop_request(world):
    """Hop-by-hop request headers (connection, keep-alive, te, trailer,
    upgrade outside an upgrade, proxy-connection, http2-settings, and the
    header named in Connection) do not reach the upstream; an end-to-end one
    does. The proxy's own `Connection: keep-alive` upstream is fine.
    (nginx differs here: it drops Connection itself but forwards headers named
    in it, such as x-custom-hop.)"""
    sent = [
        ("Connection", "keep-alive, x-custom-hop"),
        ("Keep-Alive", "timeout=7, max=77"),
        ("TE", "trailers"),
        ("Trailer", "x-some-trailer"),
        ("Upgrade", "foo/1"),  # not named in Connection: no upgrade, just a stray header
        ("Proxy-Connection", "keep-alive"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ("X-Custom-Hop", "must-not-reach-the-upstream"),
        ("X-End-To-End", "kept"),
    ]
    r = http1(world.addr("node"), "GET", "/node/echo/hop", sent)
    expect(r.status == 200, f"status {r.status}")
    seen = r.json()["raw_headers"]
    leaked = [n for n in HOP_BY_HOP[1:] + ["x-custom-hop"] if n in names(seen)]
    bad_tokens = connection_tokens(seen) - {"keep-alive", "close"}
    problems = []
    if leaked:
        problems.append("forwarded " + ", ".join(f"{n}: {values(seen, n)}" for n in leaked))
        if "x-custom-hop" in leaked:
            problems.append("(nginx forwards headers named in Connection too; SPEC 3.1 removes them)")
    if bad_tokens:
        problems.append(f"upstream Connection names {sorted(bad_tokens)}")
    if values(seen, "x-end-to-end") != ["kept"]:
        problems.append("x-end-to-end was dropped")
    expect(not problems, "; ".join(problems))
    return ["nginx would forward x-custom-hop (it ignores the tokens in Connection); SPEC 3.1 removes it"]


def hop_problems(headers) -> list[str]:
    problems = []
    present = names(headers)
    for n in ["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "http2-settings", "x-hop-resp"]:
        if n in present:
            problems.append(f"{n}: {values(headers, n)}")
    bad_tokens = connection_tokens(headers) - {"keep-alive", "close"}
    if bad_tokens:
        problems.append(f"Connection names {sorted(bad_tokens)}")
    if values(headers, "x-end-to-end") != ["kept"]:
        problems.append("x-end-to-end was dropped")
    return problems


@check("hop_by_hop_response_http1", direct=False)
def hop_by_hop_response_http1(world):
    """The upstream answers with connection: x-hop-resp, keep-alive,
    proxy-connection, upgrade, te, trailer, http2-settings and x-hop-resp:
    none reach an HTTP/1.1 client (the proxy's own keep-alive/close tokens
    are fine), the end-to-end header and the body do."""
    r = http1(world.addr("node"), "GET", "/node/hop-response")
    expect(r.status == 200, f"status {r.status}")
    problems = hop_problems(r.headers)
    if r.body != b"hop response":
        problems.append(f"body {r.body!r}")
    expect(not problems, "passed on " + "; ".join(problems))


@check("hop_by_hop_response_h2c", direct=False)
def hop_by_hop_response_h2c(world):
    """The same answer to an h2c client: connection-specific fields are not
    allowed in HTTP/2 at all (RFC 9113 8.2.2), so none may appear."""
    with H2Client(world.addr("node")) as c:
        status, headers, body = c.get("/node/hop-response", world.authority("node"))
    expect(status == 200, f"status {status}")
    problems = hop_problems(headers)
    if "connection" in names(headers):
        problems.append(f"connection: {values(headers, 'connection')}")
    if body != b"hop response":
        problems.append(f"body {body!r}")
    expect(not problems, "passed on " + "; ".join(problems))


# ---------------------------------------------------------------------------
# Origin-form request targets

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def origin_form_matrix(world, protocol_args: list[str]) -> None:
    """Every method, without and with a body, via curl; the Node upstream
    records `req.url`, the raw request target, which must be exactly the
    origin-form `/path?query` that was sent."""
    wrong, absolute, example = [], [], None
    for method in METHODS:
        for with_body in (False, True):
            probe = new_id()
            target = f"/node/echo/origin/{method.lower()}?probe={probe}&q=a%20b&x=1"
            args = protocol_args + ["-o", "/dev/null", "-w", "%{http_code}"]
            if method == "HEAD" and not with_body:
                args += ["-I"]
            elif method != "GET" or with_body:
                args += ["-X", method]
            if with_body:
                args += ["--data-binary", "hello body", "-H", "content-type: text/plain"]
            r = curl(args + [world.url("node", target)], timeout=20)
            label = f"{method}{'+body' if with_body else ''}"
            rec = world.record(probe)
            if rec is None:
                wrong.append(f"{label}: never reached the upstream (curl {r.returncode}, status {r.stdout.decode()!r})")
            elif rec["url"] != target:
                absolute.append(label)
                example = example or rec["url"]
            elif with_body and rec["body_length"] != len("hello body"):
                wrong.append(f"{label}: upstream got a {rec['body_length']}-byte body")
    count = len(absolute) + len(wrong)
    if absolute:
        wrong.insert(0, f"{', '.join(absolute)}: upstream got the target as e.g. {example!r}")
    expect(not wrong, f"{count} of {2 * len(METHODS)} wrong: " + "; ".join(wrong))


@check("origin_form_http1")
def origin_form_http1(world):
    """Request targets reach the upstream in origin-form over HTTP/1.1 (RFC
    9112 3.2.1), for every method, with and without a body."""
    origin_form_matrix(world, ["--http1.1"])


@check("origin_form_h2c", direct=False)
def origin_form_h2c(world):
    """The same from an h2c client (curl --http2-prior-knowledge): :path
    becomes the origin-form target upstream."""
    origin_form_matrix(world, ["--http2-prior-knowledge"])


# ---------------------------------------------------------------------------
# Cookies


@check("cookies_http1_jar")
def cookies_http1_jar(world):
    """httpbin /cookies/set?a=1 sets a cookie (and redirects to /cookies);
    curl's jar sends it back through the proxy and httpbin sees it."""
    jar = world.tmp / f"jar-{new_id()}.txt"
    r = curl(["-L", "-c", str(jar), "-b", str(jar), world.url("httpbin", "/cookies/set?a=1")])
    expect(r.returncode == 0, f"curl failed: {r.stderr.decode().strip()}")
    expect(json.loads(r.stdout).get("cookies") == {"a": "1"}, f"after the redirect: {r.stdout[:200]!r}")
    r = curl(["-b", str(jar), world.url("httpbin", "/cookies")])
    got = json.loads(r.stdout).get("cookies")
    expect(got == {"a": "1"}, f"/cookies with the jar: {got}")


@check("cookies_h2c_crumbs_joined", direct=False)
def cookies_h2c_crumbs_joined(world):
    """An h2c client sends `cookie: a=1` and `cookie: b=2` as two fields; the
    HTTP/1.1 upstream must get them as ONE `cookie: a=1; b=2` header
    (RFC 9113 8.2.3)."""
    with H2Client(world.addr("node")) as c:
        status, _, body = c.get("/node/echo/cookies", world.authority("node"), [("cookie", "a=1"), ("cookie", "b=2")])
    expect(status == 200, f"status {status}")
    cookies = values(json.loads(body)["raw_headers"], "cookie")
    expect(cookies == ["a=1; b=2"], f"upstream got cookie headers {cookies}, want ['a=1; b=2']")


# ---------------------------------------------------------------------------
# Redirects and ranges


def location_of(world, path: str) -> tuple[int, str | None]:
    r = curl(["-D", "-", "-o", "/dev/null", world.url("httpbin", path)])
    responses = parse_dumped_headers(r.stdout)
    if not responses:
        raise Fail(f"{path}: no answer ({r.stderr.decode().strip()})")
    status, headers = responses[-1]
    return status, next((v for k, v in headers if k.lower() == "location"), None)


def follow(world, path: str) -> tuple[str, str, str]:
    """curl -L: (final status, number of redirects, final URL)."""
    r = curl(
        ["-L", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects} %{url_effective}", world.url("httpbin", path)]
    )
    return tuple(r.stdout.decode().split(" ", 2))


@check("redirects_relative")
def redirects_relative(world):
    """httpbin /redirect-to?url=/get and /relative-redirect/2: the Location
    comes back as the upstream sent it, and curl -L follows it through the
    proxy to a 200 from /get."""
    status, loc = location_of(world, "/redirect-to?url=/get")
    expect(status == 302 and loc == "/get", f"/redirect-to: {status} Location {loc!r}")
    status, loc = location_of(world, "/relative-redirect/2")
    expect(status == 302 and loc == "/relative-redirect/1", f"/relative-redirect/2: {status} Location {loc!r}")
    for path, hops in [("/redirect-to?url=/get", "1"), ("/relative-redirect/2", "2")]:
        final, n, url = follow(world, path)
        expect(
            final == "200" and n == hops and url == world.url("httpbin", "/get"),
            f"curl -L {path}: status {final} after {n} redirects at {url}",
        )


@check("redirect_absolute_names_proxy")
def redirect_absolute_names_proxy(world):
    """httpbin /absolute-redirect/1 builds its Location from Host; since the
    proxy keeps the client's Host, it names the address the client used (the
    proxy), not the upstream's, and following it works."""
    status, loc = location_of(world, "/absolute-redirect/1")
    want = world.url("httpbin", "/get")
    expect(status == 302, f"status {status}")
    upstream = f"127.0.0.1:{world.upstreams['httpbin']}"
    if not world.direct:
        expect(upstream not in (loc or ""), f"Location {loc!r} names the upstream's address {upstream}")
    expect(loc == want, f"Location {loc!r}, want {want!r}")
    final, n, url = follow(world, "/absolute-redirect/1")
    expect(final == "200" and url == want, f"curl -L: status {final} at {url}")
    return [f"Location: {loc} (the address the client used)"]


def range_bytes(n: int) -> bytes:
    """What httpbin's /range/N serves: 'a'..'z' repeating."""
    return bytes(97 + i % 26 for i in range(n))


@check("range_request")
def range_request(world):
    """httpbin /range/1024 with `Range: bytes=100-149`: 206, Content-Range
    `bytes 100-149/1024`, and exactly those 50 bytes; and a suffix range."""
    for rng, first, last in [("bytes=100-149", 100, 149), ("bytes=-10", 1014, 1023)]:
        r = http1(world.addr("httpbin"), "GET", "/range/1024", [("Range", rng)])
        expect(r.status == 206, f"{rng}: status {r.status}")
        want_cr = f"bytes {first}-{last}/1024"
        expect(
            r.header("content-range") == want_cr,
            f"{rng}: Content-Range {r.header('content-range')!r}, want {want_cr!r}",
        )
        expect(r.body == range_bytes(1024)[first : last + 1], f"{rng}: wrong bytes {r.body[:40]!r}")
