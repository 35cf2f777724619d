//! The HTTP/1 server (src/server/h1) on the one codec: pipelined requests
//! with and without bodies answered in order on one connection, a
//! smuggling request refused whatever came before it, answers framed as
//! RFC 9112 says, HTTP/1.0 and absolute-form served, and heads the codec
//! refuses answered with their status and nothing forwarded.

mod support;

use std::time::Duration;

use support::raw::{exchange_keep, read_response, read_until_closed, send_raw};
use support::*;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(5);

fn echoed_path(r: &support::raw::RawResponse) -> String {
    json_body(&r.body)["path"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn pipelined_requests_with_and_without_bodies_are_answered_in_order() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    // A bodiless GET, a POST with a body, then GETs; all written at once.
    let request = "GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
                   POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
                   GET /c HTTP/1.1\r\nHost: t\r\n\r\n\
                   GET /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
    assert!(
        reply.closed,
        "the connection stayed open after Connection: close"
    );
    let rs = reply.responses();
    let got: Vec<(u16, String)> = rs.iter().map(|r| (r.status, echoed_path(r))).collect();
    assert_eq!(
        got,
        [
            (200, "/a".to_owned()),
            (200, "/b".to_owned()),
            (200, "/c".to_owned()),
            (200, "/d".to_owned())
        ],
        "{}",
        reply.text()
    );
    assert_eq!(
        json_body(&rs[1].body)["body_len"],
        3,
        "the POST's body went up"
    );
    assert_eq!(b.requests(), 4);
}

#[tokio::test]
async fn a_smuggling_request_after_other_requests_is_refused() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let request = format!(
        "GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /two HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /three HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let reply = send_raw(proxy.addr, request.as_bytes(), WAIT).await;
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 400], "{}", reply.text());
    assert!(reply.closed, "the connection stayed open after the 400");
    assert_eq!(b.requests(), 2, "only the two GETs were forwarded");
}

#[tokio::test]
async fn answers_are_framed_as_rfc_9112_says() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let (r, mut s) =
        exchange_keep(proxy.addr, b"GET /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.body.len(), 1000);
    assert!(r.header("date").is_some(), "a date header: {}", r.head);
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("transfer-encoding").is_none());

    // No length known: chunked, on the same connection.
    s.write_all(b"GET /chunked/5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{}", r.head);
    assert!(r.header("content-length").is_none());
    assert_eq!(r.body.len(), 5000);

    // HEAD: the length of what GET would send, and no body.
    s.write_all(b"HEAD /bytes/10 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, true).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"), "{}", r.head);
    assert!(r.body.is_empty());

    // 204: neither a body nor a length.
    s.write_all(b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, false).await;
    assert_eq!(r.status, 204);
    assert!(r.header("content-length").is_none(), "{}", r.head);
    assert!(r.body.is_empty());

    // The connection still carries requests after all of them.
    s.write_all(b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, false).await;
    assert_eq!((r.status, echoed_path(&r)), (200, "/last".to_owned()));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(read_until_closed(&mut s, WAIT).await.closed);
}

#[tokio::test]
async fn unusual_requests_are_served_or_refused_with_their_status() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let cases: [(&str, &[u8], u16); 5] = [
        ("HTTP/1.0", b"GET /x HTTP/1.0\r\nHost: t\r\n\r\n", 200),
        (
            "absolute-form",
            b"GET http://t/x HTTP/1.1\r\nHost: t\r\n\r\n",
            200,
        ),
        ("malformed", b"GET /x HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (
            "expect",
            b"POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
            200,
        ),
        ("bad target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ];
    for (name, request, want) in cases {
        let reply = send_raw(proxy.addr, request, Duration::from_secs(2)).await;
        let text = reply.text();
        // The first final status line (a 100 Continue may come first).
        let first = text
            .split("\r\n")
            .filter_map(|l| {
                l.strip_prefix("HTTP/1.1 ")
                    .or_else(|| l.strip_prefix("HTTP/1.0 "))
            })
            .filter_map(|l| l.get(..3)?.parse::<u16>().ok())
            .find(|&s| s != 100);
        assert_eq!(first, Some(want), "{name}: {text}");
    }
}

/// An upstream that never answers; it reports `"head"` when a request's
/// head has arrived, and `"dropped"` when the proxy closes that connection.
async fn reporting_upstream() -> (Server, tokio::sync::mpsc::UnboundedReceiver<&'static str>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let up = legacy_stub::spawn_raw(move |mut s: tokio::net::TcpStream| {
        let tx = tx.clone();
        async move {
            use tokio::io::AsyncReadExt;
            if support::raw::read_head(&mut s).await {
                let _ = tx.send("head");
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send("dropped");
        }
    })
    .await
    .unwrap();
    (up, rx)
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_upstream_request() {
    let (up, mut rx) = reporting_upstream().await;
    let proxy = start(&default_to(&up.url())).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let wait = Duration::from_secs(10);
    let head = tokio::time::timeout(wait, rx.recv()).await;
    assert_eq!(head.ok().flatten(), Some("head"));
    drop(s);
    // Without noticing, the proxy would hold it for the route's timeout (30 s).
    let dropped = tokio::time::timeout(wait, rx.recv()).await;
    assert_eq!(
        dropped.ok().flatten(),
        Some("dropped"),
        "the upstream request outlived its client"
    );
}

#[tokio::test]
async fn more_header_lines_than_the_codec_takes_are_a_431() {
    // An upstream that answers any head (the test backend would refuse
    // this many headers itself), counting them.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let up = legacy_stub::spawn_raw(move |mut s: tokio::net::TcpStream| {
        let count = count.clone();
        async move {
            while support::raw::read_head(&mut s).await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
    .unwrap();
    let proxy = start(&default_to(&up.url())).await;
    let mut request = b"GET /x HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..129 {
        request.extend_from_slice(format!("x-h{i}: 1\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let reply = send_raw(proxy.addr, &request, Duration::from_secs(2)).await;
    let statuses: Vec<u16> = reply.responses().iter().map(|r| r.status).collect();
    assert_eq!(statuses.first(), Some(&431), "{}", reply.text());
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing forwarded"
    );
}

#[tokio::test]
async fn a_pipelined_partial_head_gets_the_header_timeout_not_the_idle_one() {
    let b = backend("b").await;
    let proxy = start(&format!(
        "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"30s\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // A request and the start of the next one, in one write; then nothing.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let r = read_response(&mut s, false).await;
    assert_eq!(r.status, 200);
    let reply = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(
        reply.closed,
        "a half-sent head was still waited for after 10 s (idle_timeout is 30 s, header_read_timeout 300 ms)"
    );
}

#[tokio::test]
async fn an_upstream_head_reaches_the_client_cleaned_and_the_same_each_time() {
    let up = support::raw::answers_with(
        b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Request-Id: from-upstream\r\nKeep-Alive: timeout=5\r\n\
          Connection: keep-alive\r\nX-Odd:spaced  \r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let proxy = start(&default_to(&up.url())).await;
    let get = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-1\r\n\r\n";
    // The same GET before and after a request with a body on the connection.
    let (first, mut s) = exchange_keep(proxy.addr, get).await;
    s.write_all(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s, false).await.status, 200);
    s.write_all(get).await.unwrap();
    let again = read_response(&mut s, false).await;
    let lines = |r: &support::raw::RawResponse| -> Vec<String> {
        r.head.lines().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(
        lines(&first),
        [
            "server: up",
            "x-odd: spaced",
            "date: Tue, 01 Jan 2030 00:00:00 GMT",
            "content-length: 5",
            "x-request-id: rid-1",
        ],
        "hop-by-hop headers gone, names lowercase, the proxy's request id only"
    );
    assert_eq!(lines(&first), lines(&again));
    assert_eq!(
        (first.body.as_slice(), again.body.as_slice()),
        (&b"hello"[..], &b"hello"[..])
    );
}

#[tokio::test]
async fn a_request_never_carries_headers_of_the_one_before() {
    // Header maps are reused across requests on a thread: what one request
    // had must be gone for the next.
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let (first, mut s) = exchange_keep(
        proxy.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Only-First: 1\r\nX-Request-Id: first\r\n\r\n",
    )
    .await;
    assert_eq!(first.json()["headers"]["x-only-first"], "1");
    for _ in 0..3 {
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let next = read_response(&mut s, false).await;
        let seen = &next.json()["headers"];
        assert!(seen.get("x-only-first").is_none(), "{seen}");
        assert_ne!(seen["x-request-id"], "first", "{seen}");
        let ids: Vec<_> = next
            .headers
            .iter()
            .filter(|(n, _)| n == "x-request-id")
            .collect();
        assert_eq!(ids.len(), 1, "{}", next.head);
        assert_ne!(ids[0].1, "first");
    }
}

/// SPEC 3.4: a stream the client resets ends its request — its upstream
/// exchange is dropped — and frees its connection: with no stream open,
/// the connection is idle and closes at `idle_timeout`.
#[tokio::test]
async fn a_reset_http2_stream_ends_its_exchange_and_frees_the_connection() {
    let (up, mut rx) = reporting_upstream().await;
    let proxy = start(&format!(
        "[server]\nidle_timeout = \"300ms\"\nheader_read_timeout = \"30s\"\n{}",
        default_to(&up.url())
    ))
    .await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/slow", proxy.addr))
        .body(())
        .unwrap();
    let (_resp, mut stream) = client.send_request(req, true).unwrap();
    let wait = Duration::from_secs(10);
    let head = tokio::time::timeout(wait, rx.recv()).await;
    assert_eq!(head.ok().flatten(), Some("head"));
    stream.send_reset(h2::Reason::CANCEL);
    let dropped = tokio::time::timeout(wait, rx.recv()).await;
    assert_eq!(
        dropped.ok().flatten(),
        Some("dropped"),
        "the exchange outlived its stream"
    );
    // The connection closes at idle_timeout (300 ms); without the stream
    // freed it would stay open for as long as the client keeps it.
    let ended = tokio::time::timeout(wait, conn).await;
    assert!(
        ended.is_ok(),
        "the connection was still open 10 s after its only stream was reset"
    );
}
