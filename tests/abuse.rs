//! Abuse on the wire (SPEC 3.4, 3.3): request-smuggling framings are answered
//! 400 (or 501 for an unknown transfer coding), never forwarded, and the
//! connection is closed; slow and idle clients are cut off by
//! `header_read_timeout` and `idle_timeout`; `max_connections` bounds open
//! connections; and encoded separators, control characters and bad escapes
//! in paths are handled the way SPEC 3.3 says. Everything here talks raw TCP
//! so that nothing between the test and the proxy fixes the bytes up.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::raw::{
    RawResponse, exchange, parse_responses, read_response, read_until_closed, send_raw,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Safety net for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(5);

/// A proxy with one test backend as the default, and `server` settings.
async fn proxy_with(server: &str) -> (Server, TestProxy) {
    let b = backend("backend").await;
    let proxy = start(&format!("[server]\n{server}\n{}", default_to(&b.url()))).await;
    (b, proxy)
}

/// Sends each `(name, request)` on its own connection and checks the answer
/// is one of `allowed`, the connection is closed afterwards, and nothing
/// reached the backend. Collects every failing case before panicking.
async fn expect_refused(cases: &[(impl std::fmt::Display, String)], allowed: &[u16]) {
    let (b, proxy) = proxy_with("").await;
    let mut failures = Vec::new();
    for (name, request) in cases {
        let before = b.requests();
        let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
        let status = reply.responses().first().map(|r| r.status);
        let forwarded = b.requests() - before;
        if !status.is_some_and(|s| allowed.contains(&s)) || !reply.closed || forwarded != 0 {
            failures.push(format!(
                "{name}: status {status:?} (want one of {allowed:?}), closed {}, forwarded {forwarded}\n  request: {request:?}\n  answer: {:?}",
                reply.closed,
                reply.text()
            ));
        }
    }
    assert_eq!(b.requests(), 0, "the backend received requests");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A request with the given extra header lines and raw body.
fn post(headers: &str, body: &str) -> String {
    format!("POST /upload HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}")
}

/// A chunked body whose end is followed by a request a confused parser
/// would see as a second, smuggled one.
const SMUGGLING_BODY: &str = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let cl = SMUGGLING_BODY.len();
    expect_refused(
        &[
            (
                "CL then TE",
                post(
                    &format!("Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n"),
                    SMUGGLING_BODY,
                ),
            ),
            (
                "TE then CL",
                post(
                    &format!("Transfer-Encoding: chunked\r\nContent-Length: {cl}\r\n"),
                    SMUGGLING_BODY,
                ),
            ),
            (
                "CL 0 then TE",
                post(
                    "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                    SMUGGLING_BODY,
                ),
            ),
            (
                "TE with a tab, and CL",
                post(
                    &format!("Content-Length: {cl}\r\nTransfer-Encoding:\tchunked\r\n"),
                    SMUGGLING_BODY,
                ),
            ),
            (
                "TE with trailing whitespace, and CL",
                post(
                    &format!("Transfer-Encoding: chunked \t\r\nContent-Length: {cl}\r\n"),
                    SMUGGLING_BODY,
                ),
            ),
            (
                "TE upper case, and CL",
                post(
                    &format!("TRANSFER-ENCODING: CHUNKED\r\ncontent-length: {cl}\r\n"),
                    SMUGGLING_BODY,
                ),
            ),
        ],
        &[400],
    )
    .await;
}

#[tokio::test]
async fn differing_or_invalid_content_lengths_are_refused() {
    let mut cases = vec![
        (
            "two differing content-length headers".to_owned(),
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        ),
        (
            "two differing values in one header".to_owned(),
            post("Content-Length: 1,2\r\n", "ab"),
        ),
    ];
    for value in [
        "abc",
        "-1",
        "+5",
        "0x5",
        "5 5",
        "99999999999999999999999",
        // u64::MAX: a number, but no length a body can have (400, not 431).
        "18446744073709551615",
    ] {
        cases.push((
            format!("content-length {value:?}"),
            post(&format!("Content-Length: {value}\r\n"), "hello"),
        ));
    }
    expect_refused(&cases, &[400]).await;
}

#[tokio::test]
async fn obfuscated_or_unknown_transfer_encodings_are_refused() {
    let te = |value: &str| post(&format!("Transfer-Encoding: {value}\r\n"), "0\r\n\r\n");
    expect_refused(
        &[
            ("xchunked", te("xchunked")),
            ("chunked, gzip (last not chunked)", te("chunked, gzip")),
            ("gzip, chunked", te("gzip, chunked")),
            ("chunked, chunked", te("chunked, chunked")),
            ("gzip alone", te("gzip")),
            ("identity", te("identity")),
            ("chunked with a vertical tab", te("\x0bchunked")),
            (
                "two transfer-encoding headers",
                post(
                    "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                    "0\r\n\r\n",
                ),
            ),
            (
                "the same transfer-encoding header twice",
                post(
                    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                    "0\r\n\r\n",
                ),
            ),
            (
                "obs-fold line continuation",
                post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            ),
            (
                "space before the colon",
                post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            ),
            (
                "leading space on the header line",
                post("X-A: 1\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            ),
        ],
        &[400, 501],
    )
    .await;
}

#[tokio::test]
async fn http_1_0_requests_with_transfer_encoding_are_refused() {
    expect_refused(
        &[
            (
                "HTTP/1.0 chunked",
                "POST /upload HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_owned(),
            ),
            (
                "HTTP/1.0 chunked with content-length",
                "POST /upload HTTP/1.0\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    .to_owned(),
            ),
        ],
        &[400, 501],
    )
    .await;
}

#[tokio::test]
async fn a_smuggling_request_after_a_valid_one_is_refused_on_the_same_connection() {
    let (b, proxy) = proxy_with("").await;
    let cl = SMUGGLING_BODY.len();
    let second = [
        (
            "CL then TE",
            post(
                &format!("Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n"),
                SMUGGLING_BODY,
            ),
        ),
        (
            "TE then CL",
            post(
                &format!("Transfer-Encoding: chunked\r\nContent-Length: {cl}\r\n"),
                SMUGGLING_BODY,
            ),
        ),
        (
            "differing content-lengths",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        ),
        (
            "gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", SMUGGLING_BODY),
        ),
    ];
    let mut failures = Vec::new();
    for (name, smuggler) in second {
        let before = b.requests();
        // The first request carries a body too, so the guard has to follow it.
        let request =
            format!("POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody{smuggler}");
        let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
        let rs = reply.responses();
        let forwarded = b.requests() - before;
        let first_ok = rs.first().is_some_and(|r| {
            r.status == 200
                && r.header("x-served-by") == Some("backend")
                && r.json()["path"] == "/first"
                && r.json()["body_len"] == 4
        });
        let second_refused = rs.get(1).is_some_and(|r| r.status == 400);
        if !first_ok || !second_refused || rs.len() != 2 || !reply.closed || forwarded != 1 {
            failures.push(format!(
                "{name}: statuses {:?} (want [200, 400]), closed {}, forwarded {forwarded} (want 1)\n  answer: {:?}",
                rs.iter().map(|r| r.status).collect::<Vec<_>>(),
                reply.closed,
                reply.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn an_incomplete_request_head_is_cut_off_by_header_read_timeout() {
    let (b, proxy) = proxy_with("header_read_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let reply = read_until_closed(&mut s, WAIT).await;
    assert!(
        reply.closed,
        "connection still open after {WAIT:?}: {:?}",
        reply.text()
    );
    // A 408 is fine; anything else would mean the request was served.
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert!(
        statuses.is_empty() || statuses == [408],
        "{statuses:?}: {}",
        reply.text()
    );
    assert_eq!(b.requests(), 0);

    // Not even a byte: the timeout runs from accept.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let reply = read_until_closed(&mut s, WAIT).await;
    assert!(reply.closed, "a silent connection stays open");
}

#[tokio::test]
async fn a_slowloris_is_cut_off_once_header_read_timeout_passes() {
    let (b, proxy) = proxy_with("header_read_timeout = \"300ms\"\nidle_timeout = \"60s\"").await;
    let s = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    });
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let mut sent = 0usize;
    let deadline = Instant::now() + WAIT;
    // One byte every 100 ms, the header value never ending: only the
    // deadline counted from accept can stop this.
    let closed = loop {
        if reader.is_finished() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if wr.write_all(&[byte]).await.is_err() {
            break true;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        closed,
        "a client trickling a byte every 100 ms was still connected after {WAIT:?} ({sent} bytes sent)"
    );
    let out = timeout(WAIT, reader).await.expect("reader").unwrap();
    let statuses: Vec<u16> = parse_responses(&out).iter().map(|r| r.status).collect();
    assert!(statuses.is_empty() || statuses == [408], "{statuses:?}");
    assert_eq!(b.requests(), 0);
}

/// One keep-alive GET on an open connection; returns the parsed response.
async fn keep_alive_get(s: &mut TcpStream, path: &str) -> RawResponse {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("write");
    read_response(s, false).await
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (b, proxy) = proxy_with("idle_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let r = keep_alive_get(&mut s, "/one").await;
    assert_eq!(r.status, 200);
    let reply = read_until_closed(&mut s, WAIT).await;
    assert!(
        reply.closed,
        "idle connection still open after {WAIT:?}: {:?}",
        reply.text()
    );
    assert!(
        reply.bytes.is_empty(),
        "unexpected bytes: {:?}",
        reply.text()
    );
    assert_eq!(b.requests(), 1);
}

#[tokio::test]
async fn a_connection_used_more_often_than_idle_timeout_stays_open() {
    let (b, proxy) = proxy_with("idle_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    for i in 0..10 {
        let r = keep_alive_get(&mut s, &format!("/req/{i}")).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.json()["path"], format!("/req/{i}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.requests(), 10);
    // All ten went over the one connection.
    assert_eq!(b.connections(), 1, "{b:?}");
}

#[tokio::test]
async fn max_connections_bounds_open_connections() {
    let (b, proxy) = proxy_with("max_connections = 2").await;
    // Two connections, each proven served and kept open.
    let mut c1 = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut c1, "/c1").await.status, 200);
    let mut c2 = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut c2, "/c2").await.status, 200);

    // The third is closed at once, without a response.
    let mut c3 = TcpStream::connect(proxy.addr).await.unwrap();
    let reply = read_until_closed(&mut c3, WAIT).await;
    assert!(reply.closed, "a third connection was kept open");
    assert!(reply.bytes.is_empty(), "{:?}", reply.text());
    assert_eq!(b.requests(), 2);

    // The first two still work.
    assert_eq!(keep_alive_get(&mut c2, "/c2-again").await.status, 200);

    // Once one closes, a new connection is served (the proxy notices the
    // close asynchronously, so retry until it has).
    drop(c1);
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = send_raw(
            proxy.addr,
            b"GET /c4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            WAIT,
        )
        .await;
        if let Some(r) = reply.responses().first() {
            assert_eq!(r.status, 200, "{}", reply.text());
            assert_eq!(r.json()["path"], "/c4");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new connection was served after one of the two closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c2);
}

/// GET `path` on a fresh connection (closing it afterwards).
async fn get_raw(addr: SocketAddr, path: &str) -> RawResponse {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

fn paths_config(legacy: &Server, svc: &Server, server: &str) -> String {
    format!(
        r#"[server]
{server}
[upstreams.legacy]
targets = ["{}"]
[upstreams.svc]
targets = ["{}"]
[default]
upstream = "legacy"
[[routes]]
name = "a"
path = "/a/{{x}}"
upstream = "svc"
[[routes]]
name = "r"
path = "/r/{{x}}"
upstream = "svc"
rewrite = "/got/{{x}}"
"#,
        legacy.url(),
        svc.url()
    )
}

#[tokio::test]
async fn encoded_separators_are_forwarded_encoded_and_never_split() {
    let legacy = backend("legacy").await;
    let svc = backend("svc").await;
    let proxy = start(&paths_config(&legacy, &svc, "")).await;
    let mut failures = Vec::new();
    // (request path, who must answer, path the upstream must receive)
    let cases = [
        ("/a/b%2Fc", "svc", "/a/b%2Fc"),
        ("/a/b%5Cc", "svc", "/a/b%5Cc"),
        ("/a/b%00c", "svc", "/a/b%00c"),
        ("/a/..%2Fsecret", "svc", "/a/..%2Fsecret"),
        ("/a/%2E%2E%2Fsecret", "svc", "/a/..%2Fsecret"),
        ("/r/b%2Fc", "svc", "/got/b%2Fc"),
        ("/r/b%5C..%5Cc", "svc", "/got/b%5C..%5Cc"),
        ("/a%2Fb", "legacy", "/a%2Fb"),
        ("/a%2Fb%2Fc", "legacy", "/a%2Fb%2Fc"),
        ("/a/b%2Fc/d", "legacy", "/a/b%2Fc/d"),
        ("/x/..%2F..%2Fetc", "legacy", "/x/..%2F..%2Fetc"),
    ];
    for (path, who, upstream_path) in cases {
        let r = get_raw(proxy.addr, path).await;
        let got_path = (r.status == 200).then(|| r.json()["path"].clone());
        if r.status != 200
            || r.header("x-served-by") != Some(who)
            || got_path.as_ref().and_then(|p| p.as_str()) != Some(upstream_path)
        {
            failures.push(format!(
                "{path}: want {who} to receive {upstream_path}; got {} from {:?} with path {got_path:?}",
                r.status,
                r.header("x-served-by")
            ));
        }
    }
    // Lower-case hex is the same escape; it must stay an escape.
    let r = get_raw(proxy.addr, "/a/b%2fc").await;
    let p = r.json()["path"].as_str().unwrap_or_default().to_owned();
    if r.header("x-served-by") != Some("svc") || !p.eq_ignore_ascii_case("/a/b%2Fc") {
        failures.push(format!(
            "/a/b%2fc: got {:?} with path {p}",
            r.header("x-served-by")
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn control_characters_and_invalid_escapes_are_refused() {
    let legacy = backend("legacy").await;
    let svc = backend("svc").await;
    let proxy = start(&paths_config(&legacy, &svc, "")).await;
    let mut failures = Vec::new();
    for path in [
        "/a/%zz", "/a/%", "/a/%4", "/a/%G1", "/a/b%", "/a/\x01", "/a/\x7f", "/a/b\tc", "/a/%2",
        "/a/%%41",
    ] {
        let reply = send_raw(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        let status = reply.responses().first().map(|r| r.status);
        if status != Some(400) {
            failures.push(format!("{path:?}: {status:?}: {:?}", reply.text()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(legacy.requests() + svc.requests(), 0, "nothing forwarded");
}

#[tokio::test]
async fn merge_slashes_false_keeps_double_slashes() {
    let legacy = backend("legacy").await;
    let svc = backend("svc").await;

    let keep = start(&paths_config(&legacy, &svc, "merge_slashes = false")).await;
    let r = get_raw(keep.addr, "/a//b").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-served-by"),
        Some("legacy"),
        "`/a//b` has an empty segment: not `/a/{{x}}`"
    );
    assert_eq!(r.json()["path"], "/a//b");
    let r = get_raw(keep.addr, "/x//y///z").await;
    assert_eq!(r.json()["path"], "/x//y///z");

    // The default merges them, for contrast.
    let merge = start(&paths_config(&legacy, &svc, "")).await;
    let r = get_raw(merge.addr, "/a//b").await;
    assert_eq!(r.header("x-served-by"), Some("svc"));
    assert_eq!(r.json()["path"], "/a/b");
}

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// SPEC 3.4: a connection that sends a few bytes and stalls costs no CPU
/// while it waits. 200 connections each send one byte (half of them the
/// first byte of the HTTP/2 preface); the proxy's CPU time over the next
/// two seconds, read from /proc, stays near zero (a polling loop would burn
/// about a second of it). The two seconds are the measurement window, not a
/// wait for anything.
#[tokio::test]
async fn stalled_connections_cost_no_cpu() {
    let b = backend("b").await;
    let p = support::process::ProxyProcess::start(&format!(
        "header_read_timeout = \"30s\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        s.write_all(if i % 2 == 0 { b"P" } else { b"G" })
            .await
            .unwrap();
        held.push(s);
    }
    // Every connection is accepted and waiting: a request on a fresh one is answered.
    let a = get(&p.url("/ready")).await;
    assert_eq!(a.status, 200);
    let before = cpu_ticks(p.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(p.pid()) - before;
    // Clock ticks are 1/100 s: at most 0.1 s of CPU in 2 s.
    assert!(
        spent <= 10,
        "200 stalled connections cost {spent} ticks of CPU in 2 s"
    );
    drop(held);
}
