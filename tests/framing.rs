//! Framing on the wire, both ways (SPEC 3.4, 3.1): the smuggling checks hold
//! for every request of a connection whatever came before it (64 KiB, 1 MiB,
//! an upgrade that did not happen, a CONNECT, odd chunk sizes); an h2c
//! upgrade is served as plain HTTP/1.1; `Host` must be one and well formed;
//! a malformed chunked body is a 400 before anything is forwarded, or an
//! aborted exchange and a closed connection, never a 502; and an upstream
//! answer whose framing a client could read differently is a 502 on a
//! connection that is not reused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::raw::{read_request, recording_upstream, send_raw};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(5);

/// A request whose framing could smuggle the one inside its body.
fn smuggler() -> String {
    let body = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    format!(
        "POST /smuggler HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `first` then the smuggler on one connection: the smuggler must be
/// refused (400) and the connection closed, and only what `forwarded`
/// says may reach the backend.
async fn smuggler_after(name: &str, first: &[u8], forwarded: u64) {
    let b = backend("b").await;
    let proxy = start(&format!(
        "[server]\nmax_request_body = \"8MiB\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let mut bytes = first.to_vec();
    bytes.extend_from_slice(smuggler().as_bytes());
    let reply = send_raw(proxy.addr, &bytes, WAIT).await;
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert!(reply.closed, "{name}: the connection stayed open");
    assert_eq!(b.requests(), forwarded, "{name}: forwarded ({statuses:?})");
    assert!(
        statuses.last() != Some(&200) || forwarded == 0,
        "{name}: the smuggler was answered: {statuses:?}"
    );
    if forwarded > 0 {
        assert_eq!(statuses.last(), Some(&400), "{name}: {statuses:?}");
    }
}

#[tokio::test]
async fn the_smuggling_check_holds_past_64_kib_and_1_mib() {
    for size in [70_000usize, 1_100_000] {
        let body = "x".repeat(size);
        let first = format!(
            "POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size:x}\r\n{body}\r\n0\r\n\r\n"
        );
        smuggler_after(&format!("after a {size}-byte chunk"), first.as_bytes(), 1).await;
    }
    // The smuggler carrying a large chunk itself, after a GET: its head and
    // body arrive in reads of more than 64 KiB.
    let chunk = "x".repeat(70_000);
    let big_smuggler = format!(
        "GET /one HTTP/1.1\r\nHost: t\r\n\r\nPOST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let reply = send_raw(proxy.addr, big_smuggler.as_bytes(), WAIT).await;
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400], "{}", reply.text());
    assert_eq!(b.requests(), 1, "only the GET forwarded");
    // Many small requests, more than 64 KiB of them.
    let get =
        "GET /small HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_owned() + &"p".repeat(1000) + "\r\n\r\n";
    let many = get.repeat(70);
    smuggler_after("after 70 KiB of GETs", many.as_bytes(), 70).await;
}

#[tokio::test]
async fn the_smuggling_check_holds_after_upgrades_that_did_not_happen() {
    let cases: [(&str, &[u8], u64); 4] = [
        (
            "Upgrade: foo",
            b"GET /u HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
            1,
        ),
        (
            "an h2c upgrade",
            b"GET /h2c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            1,
        ),
        (
            "a leading-zero chunk size",
            b"POST /z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n",
            1,
        ),
        // CONNECT is refused and the connection closed: nothing after it is read.
        (
            "CONNECT",
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            0,
        ),
    ];
    for (name, first, forwarded) in cases {
        smuggler_after(name, first, forwarded).await;
    }
}

#[tokio::test]
async fn a_refused_websocket_upgrade_leaves_the_connection_checked() {
    // The test backend answers a WebSocket handshake on any path but /ws/echo
    // as a plain request: no 101.
    smuggler_after(
        "a refused WebSocket upgrade",
        b"GET /not-ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        1,
    )
    .await;
}

#[tokio::test]
async fn an_h2c_upgrade_is_served_as_plain_http11() {
    let (up, seen) = recording_upstream().await;
    let proxy = start(&default_to(&up.url())).await;
    let (r, _s) = support::raw::exchange_keep(
        proxy.addr,
        b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let req = seen.lock().unwrap().pop().expect("forwarded");
    assert_eq!(req.line, "GET /plain HTTP/1.1");
    for name in ["upgrade", "http2-settings"] {
        assert!(req.all(name).is_empty(), "{name} went upstream: {req:?}");
    }
    // And its path is normalized and routed like any: this one climbs above /.
    let reply = send_raw(
        proxy.addr,
        b"GET /admin-only/../../secret%2f.. HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(
        reply.responses().first().map(|r| r.status),
        Some(400),
        "{}",
        reply.text()
    );
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing more forwarded");
}

#[tokio::test]
async fn host_must_be_one_and_well_formed() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for host_lines in [
        "Host: a\r\nHost: b\r\n",
        "Host: a\r\nHost: a\r\n",
        "Host: a b\r\n",
        "Host: a/b\r\n",
        "Host: evil@a\r\n",
        "Host: a:8o\r\n",
    ] {
        let request = format!("GET / HTTP/1.1\r\n{host_lines}\r\n");
        let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
        let status = reply.responses().first().map(|r| r.status);
        assert_eq!(status, Some(400), "{host_lines:?}: {}", reply.text());
        assert!(reply.closed, "{host_lines:?}");
    }
    assert_eq!(b.requests(), 0, "nothing forwarded");
}

#[tokio::test]
async fn a_malformed_chunked_body_already_read_is_a_400_before_anything_is_sent() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for body in [
        "3;foo=\"a\r\nb\"\r\nabc\r\n0\r\n\r\n",
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\r\nabcXY0\r\n\r\n",
        "3\nabc\n0\n\n",
    ] {
        let request =
            format!("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
        let status = reply.responses().first().map(|r| r.status);
        assert_eq!(status, Some(400), "{body:?}: {}", reply.text());
        assert!(reply.closed, "{body:?}");
    }
    assert_eq!(b.requests(), 0, "nothing forwarded");
}

#[tokio::test]
async fn a_chunked_body_that_turns_bad_midway_aborts_the_exchange_never_a_502() {
    // The upstream reports when it has the first chunk and when its
    // connection from the proxy ends; it never answers.
    let got_first = Arc::new(Notify::new());
    let aborted = Arc::new(Notify::new());
    let (first, gone) = (got_first.clone(), aborted.clone());
    let up = legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let (first, gone) = (first.clone(), gone.clone());
        async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut told = false;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
                if !told && seen.windows(5).any(|w| w == b"hello") {
                    told = true;
                    first.notify_one();
                }
            }
            gone.notify_one();
        }
    })
    .await
    .unwrap();
    let proxy = start(&default_to(&up.url())).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, got_first.notified())
        .await
        .expect("the first chunk forwarded");
    s.write_all(b"zz\r\nbad\r\n").await.unwrap();
    let reply = support::raw::read_until_closed(&mut s, WAIT).await;
    assert!(reply.closed, "the client's connection stayed open");
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|&s| s == 400),
        "the client's bad framing answered {statuses:?}"
    );
    tokio::time::timeout(WAIT, aborted.notified())
        .await
        .expect("the upstream exchange was not aborted");
}

#[tokio::test]
async fn http2_cookie_crumbs_are_joined_and_padded_values_refused() {
    let (up, seen) = recording_upstream().await;
    let proxy = start(&default_to(&up.url())).await;
    let client = h2();
    let req = Request::get(proxy.url("/c"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(&client, req).await.status, 200);
    let req = seen.lock().unwrap().pop().expect("forwarded");
    assert_eq!(req.all("cookie"), ["a=1; b=2"], "{req:?}");
    let padded = Request::get(proxy.url("/c"))
        .header("x-padded", " leading")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(send(&client, padded).await.status, 400);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the padded request went on"
    );
}

/// Answers that would be read two ways: each is a 502, and the connection
/// it came on is not used again (the next request gets a new one).
#[tokio::test]
async fn ambiguous_upstream_answers_are_a_502_and_their_connection_is_dropped() {
    for answer in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n",
    ] {
        let up = legacy_stub::spawn_raw(move |mut s: TcpStream| async move {
            // Kept open after the answer: only the proxy may close it.
            while read_request(&mut s).await.is_some() {
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        })
        .await
        .unwrap();
        let proxy = start(&default_to(&up.url())).await;
        for round in 0..2 {
            let a = get(&proxy.url("/x")).await;
            assert_eq!(a.status, 502, "{answer:?} round {round}: {}", a.text());
        }
        assert_eq!(up.connections(), 2, "{answer:?}: a connection was reused");
    }
}
