//! The lean HTTP/1.1 path (src/server/lean.rs) and its hand-off to hyper:
//! requests on either side of a hand-off are answered in order, the
//! smuggling guard counts the requests the lean path served, and lean
//! answers are framed as hyper frames them.

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
async fn pipelined_requests_across_a_hand_off_are_answered_in_order() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    // A bodiless GET (lean), a POST with a body (hyper's from there on),
    // then GETs that hyper serves; all written at once.
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
async fn a_smuggling_request_after_lean_requests_is_refused() {
    // The guard starts following at the hand-off; the request it flags must
    // be the one the journey refuses, counting the two the lean path served.
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
async fn lean_answers_are_framed_like_hyper_answers() {
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
async fn what_the_lean_path_does_not_take_hyper_answers_as_before() {
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
