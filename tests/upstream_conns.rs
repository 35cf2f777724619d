//! Kept-alive upstream connections: reused while the upstream keeps them,
//! replaced when it closes them, whatever the response looked like.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::raw::read_head;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    // Answers exactly one request per connection, then hangs up, as an
    // upstream with a short keep-alive timeout would.
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let up = legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let count = count.clone();
        async move {
            if read_head(&mut s).await {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await
    .unwrap();
    let proxy = start(&default_to(&up.url())).await;
    // Back to back: the upstream's close arrives with its answer, and the
    // proxy notices it before reusing the connection.
    for i in 0..5 {
        let a = get(&proxy.url("/x")).await;
        assert_eq!(
            (a.status.as_u16(), a.text()),
            (200, "ok".into()),
            "request {i}"
        );
    }
    assert_eq!(answered.load(Ordering::SeqCst), 5);
    assert_eq!(up.connections(), 5, "one connection per request");
}

#[tokio::test]
async fn connection_close_answers_are_not_reused() {
    let up = legacy_stub::spawn_raw(|mut s: TcpStream| async move {
        while read_head(&mut s).await {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await
    .unwrap();
    let proxy = start(&default_to(&up.url())).await;
    for _ in 0..3 {
        let a = get(&proxy.url("/x")).await;
        assert_eq!(a.text(), "ok");
        assert_eq!(a.header("connection"), None, "hop-by-hop stays upstream");
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn bodiless_answers_return_their_connection() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for path in ["/status/204", "/status/304", "/bytes/0", "/status/204"] {
        let a = get(&proxy.url(path)).await;
        assert!(a.body.is_empty(), "{path}");
    }
    let head = http::Request::head(proxy.url("/small"))
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(send(&h1(), head).await.status, 200);
    assert_eq!(b.requests(), 5);
    assert_eq!(
        b.connections(),
        1,
        "every answer left the connection reusable"
    );
}

/// An upstream that answers the first request on each connection and hangs up
/// on the second without answering: its keep-alive timeout firing just as the
/// proxy reuses the connection.
async fn closes_on_second_request() -> Server {
    legacy_stub::spawn_raw(|mut s: TcpStream| async move {
        if !read_head(&mut s).await {
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        // Read the second head, then close without answering.
        let _ = read_head(&mut s).await;
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn idempotent_requests_on_a_connection_closed_under_them_are_sent_again() {
    let up = closes_on_second_request().await;
    let proxy = start(&default_to(&up.url())).await;
    assert_eq!(get(&proxy.url("/a")).await.text(), "ok");
    // Idle long enough that the proxy treats the connection as possibly stale.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = get(&proxy.url("/b")).await;
    assert_eq!((a.status.as_u16(), a.text()), (200, "ok".into()));
    assert_eq!(up.connections(), 2, "the retry used a new connection");
}

#[tokio::test]
async fn requests_with_bodies_are_not_sent_twice() {
    let up = closes_on_second_request().await;
    let proxy = start(&default_to(&up.url())).await;
    let post = |path: &str| {
        http::Request::post(proxy.url(path))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"payload",
            )))
            .unwrap()
    };
    assert_eq!(send(&h1(), post("/a")).await.text(), "ok");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = send(&h1(), post("/b")).await;
    assert_eq!(a.status, 502);
    assert_eq!(up.connections(), 1, "nothing was sent again");
}
