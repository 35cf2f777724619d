//! Fallback (SPEC 2.3) end to end: a route on `new` with `fallback =
//! "legacy"` replays failed requests on legacy so the client never sees the
//! failure — exactly when SPEC says, and never for a body it could not hold.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::raw::{raw_upstream, silent_upstream};
use support::*;
use tokio::net::TcpStream;

/// A route `/api/**` on upstream `new` at `new_url`, falling back to `legacy`;
/// `extra` adds route keys. The prefix is stripped, so
/// `/api/status-on/new/503` reaches both backends as `/status-on/new/503`,
/// which fails on `new` only (see legacy-stub's test backend).
fn route(legacy: &Server, new_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout = "5s"
[upstreams.legacy]
targets = ["{}"]
[upstreams.new]
targets = ["{new_url}"]
[[routes]]
name = "api"
prefix = "/api"
strip_prefix = "/api"
upstream = "new"
fallback = "legacy"
{extra}
"#,
        legacy.url()
    )
}

async fn call(p: &TestProxy, method: &str, path: &str, body: Vec<u8>) -> Answer {
    send(
        &h1(),
        Request::builder()
            .method(method)
            .uri(p.url(path))
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn an_unreachable_service_falls_back_for_every_method() {
    let legacy = backend("legacy").await;
    let dead = dead_addr().await;
    let p = start(&route(&legacy, &format!("http://{dead}"), "")).await;
    let a = call(&p, "GET", "/api/orders/1", vec![]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["server"], "legacy");
    assert_eq!(a.json()["path"], "/orders/1");
    // Never reached: safe to replay even a POST, body and all.
    let a = call(&p, "POST", "/api/orders", vec![7u8; 5000]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["server"], "legacy");
    assert_eq!(a.json()["method"], "POST");
    assert_eq!(a.json()["body_len"], 5000);
}

#[tokio::test]
async fn fallback_on_statuses_replay_idempotent_requests_only() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&route(&legacy, &new.url(), "")).await;
    // Default [502, 503, 504].
    let a = call(&p, "GET", "/api/status-on/new/503", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    let a = call(&p, "PUT", "/api/status-on/new/502", vec![1u8; 10_000]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["server"], "legacy");
    assert_eq!(a.json()["body_len"], 10_000, "the replay carries the body");
    // A POST reached the service: it is not replayed.
    let a = call(&p, "POST", "/api/status-on/new/503", vec![1u8; 10]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (503, "new".into())
    );
    // Not in the list.
    let a = call(&p, "GET", "/api/status-on/new/404", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (404, "new".into())
    );
    let a = call(&p, "GET", "/api/status-on/new/500", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (500, "new".into())
    );
    // Success is success.
    let a = call(&p, "GET", "/api/fine", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "new".into())
    );
}

#[tokio::test]
async fn a_service_without_the_path_yet_falls_through_on_404() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&route(&legacy, &new.url(), "fallback_on = [404, 501]")).await;
    let a = call(&p, "GET", "/api/status-on/new/404", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    let a = call(&p, "GET", "/api/status-on/new/501", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    // The list replaces the default: 503 is no longer a reason.
    let a = call(&p, "GET", "/api/status-on/new/503", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (503, "new".into())
    );
}

#[tokio::test]
async fn timeouts_and_hang_ups_fall_back_for_idempotent_requests() {
    let legacy = backend("legacy").await;
    let quiet = silent_upstream().await;
    let p = start(&route(&legacy, &quiet.url(), "timeout = \"300ms\"")).await;
    let a = call(&p, "GET", "/api/slow", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    // A POST may have been acted on: the client sees the timeout.
    let a = call(&p, "POST", "/api/slow", vec![1]).await;
    assert_eq!(a.status, 504);

    // Reads the request head and closes without answering.
    let rude = raw_upstream(|s: TcpStream| async move { drop(s) }).await;
    let p = start(&route(&legacy, &rude.url(), "")).await;
    let a = call(&p, "DELETE", "/api/x", vec![]).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    let a = call(&p, "PATCH", "/api/x", vec![]).await;
    assert_eq!(a.status, 502);
}

#[tokio::test]
async fn bodies_over_64_kib_stream_and_are_not_replayed() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&route(&legacy, &new.url(), "")).await;
    // Idempotent, failing with a status in the list, but too large to hold:
    // the client sees the service's answer, which got the whole body.
    let big = vec![3u8; 100 * 1024];
    let a = call(&p, "PUT", "/api/status-on/new/503", big.clone()).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (503, "new".into())
    );
    assert_eq!(a.json()["body_len"], big.len());
    // Exactly 64 KiB is still held and replayed.
    let edge = vec![3u8; 64 * 1024];
    let a = call(&p, "PUT", "/api/status-on/new/503", edge).await;
    assert_eq!(
        (a.status.as_u16(), a.json()["server"].clone()),
        (200, "legacy".into())
    );
    assert_eq!(a.json()["body_len"], 64 * 1024);
}

#[tokio::test]
async fn chunked_bodies_are_held_or_streamed_by_their_real_size() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&route(&legacy, &new.url(), "")).await;
    for (len, replayed) in [(1000usize, true), (70_000, false)] {
        let mut req = b"PUT /api/status-on/new/503 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for piece in vec![9u8; len].chunks(4096) {
            req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            req.extend_from_slice(piece);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let r = support::raw::exchange(p.addr, &req).await;
        let body = r.json();
        if replayed {
            assert_eq!((r.status, body["server"].clone()), (200, "legacy".into()));
        } else {
            assert_eq!((r.status, body["server"].clone()), (503, "new".into()));
        }
        assert_eq!(body["body_len"], len);
    }
}

#[tokio::test]
async fn shifted_requests_fall_back_and_the_ramp_still_sees_the_failure() {
    let legacy = backend("legacy").await;
    let dead = dead_addr().await;
    let p = start(&format!(
        r#"
[upstreams.legacy]
targets = ["{}"]
[upstreams.new]
targets = ["http://{dead}"]
[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
shift = {{ to = "new", percent = 100 }}
fallback = "legacy"
"#,
        legacy.url()
    ))
    .await;
    for _ in 0..10 {
        let a = call(&p, "GET", "/api/customers/1", vec![]).await;
        assert_eq!(
            (a.status.as_u16(), a.json()["server"].clone()),
            (200, "legacy".into())
        );
    }
    let (old, new) = p.proxy.shifts.get("customers").unwrap().window.take();
    assert_eq!((new.requests, new.failures), (10, 10));
    assert_eq!(
        old.requests, 0,
        "the replay is not counted as the old side's"
    );
}

#[tokio::test]
async fn when_the_fallback_fails_too_the_client_gets_its_error() {
    let dead = dead_addr().await;
    let also_dead = dead_addr().await;
    let p = start(&format!(
        r#"
[upstreams.legacy]
targets = ["http://{also_dead}"]
[upstreams.new]
targets = ["http://{dead}"]
[[routes]]
prefix = "/"
upstream = "new"
fallback = "legacy"
"#
    ))
    .await;
    let a = call(&p, "GET", "/x", vec![]).await;
    assert_eq!(a.status, 502);
    assert!(a.text().contains("legacy"), "{}", a.text());
    assert!(!a.text().contains("127.0.0.1"), "{}", a.text());
}
