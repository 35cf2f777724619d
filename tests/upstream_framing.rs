//! Every way an upstream may delimit its answer reaches the client intact:
//! content-length, chunked (with extensions and trailers), until close, and
//! no body at all; interim 1xx answers are skipped; answers that could split
//! a response are refused.

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Full};
use support::raw::answers_with;
use support::*;

#[tokio::test]
async fn chunked_answers_stream_through_and_keep_the_connection() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for n in [0usize, 1, 100_000, 3 << 20] {
        let a = get(&proxy.url(&format!("/chunked/{n}"))).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), n, "/chunked/{n}");
        assert!(is_pattern(&a.body, 0), "/chunked/{n} bytes differ");
    }
    assert_eq!(
        b.connections(),
        1,
        "chunked answers leave the connection reusable"
    );
}

#[tokio::test]
async fn content_length_answers_of_any_size() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for n in [0usize, 1, 8191, 8192, 8193, 65_536, 1 << 20] {
        let a = get(&proxy.url(&format!("/bytes/{n}"))).await;
        assert_eq!(a.body.len(), n, "/bytes/{n}");
        assert!(is_pattern(&a.body, 0), "/bytes/{n} bytes differ");
    }
    assert_eq!(b.connections(), 1);
}

#[tokio::test]
async fn until_close_answers_are_read_to_the_end() {
    let up =
        answers_with(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello until close").await;
    let proxy = start(&default_to(&up.url())).await;
    for _ in 0..2 {
        let a = get(&proxy.url("/x")).await;
        assert_eq!(a.text(), "hello until close");
    }
    assert_eq!(
        up.connections(),
        2,
        "an until-close connection is never reused"
    );
}

#[tokio::test]
async fn chunk_extensions_and_trailers_are_handled() {
    let up = answers_with(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 1\r\n\r\n",
    )
    .await;
    let proxy = start(&default_to(&up.url())).await;
    let a = get(&proxy.url("/x")).await;
    assert_eq!(a.text(), "hello, world");
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let up = answers_with(
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let proxy = start(&default_to(&up.url())).await;
    let a = get(&proxy.url("/x")).await;
    assert_eq!((a.status.as_u16(), a.text()), (200, "ok".into()));
}

#[tokio::test]
async fn http10_answers_work_and_are_not_reused() {
    let up = answers_with(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let proxy = start(&default_to(&up.url())).await;
    for _ in 0..2 {
        assert_eq!(get(&proxy.url("/x")).await.text(), "ok");
    }
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn head_answers_have_no_body_and_keep_the_connection() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for _ in 0..3 {
        let head = Request::head(proxy.url("/bytes/5000"))
            .body(Full::default())
            .unwrap();
        let a = send(&h1(), head).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-length"), Some("5000"));
        assert!(a.body.is_empty());
    }
    assert_eq!(b.connections(), 1);
}

#[tokio::test]
async fn answers_that_could_split_a_response_are_refused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nokk",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let up = answers_with(answer).await;
        let proxy = start(&default_to(&up.url())).await;
        let a = get(&proxy.url("/x")).await;
        assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(answer));
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
    }
}

#[tokio::test]
async fn a_body_cut_short_ends_the_client_response_in_error() {
    let up = answers_with(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part").await;
    let proxy = start(&default_to(&up.url())).await;
    // The proxy may fail the response before or after its head left: either
    // way the client must see an error, never a short body that looks complete.
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        let resp = h1()
            .request(Request::get(proxy.url("/x")).body(Full::default()).unwrap())
            .await?;
        assert_eq!(resp.status(), 200);
        resp.into_body()
            .collect()
            .await
            .map(|_| ())
            .map_err(Into::into)
    })
    .await
    .expect("the response neither ended nor failed");
    let outcome: Result<(), Box<dyn std::error::Error + Send + Sync>> = outcome;
    assert!(outcome.is_err(), "a truncated body must not look complete");
}
