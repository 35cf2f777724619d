//! Shadow traffic (SPEC 2.4) end to end: copies marked `x-strangler-shadow`,
//! the client's answer untouched by a slow or dead shadow, the report at
//! `/admin/shadow`, and calibration telling noise from real differences.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::raw::{raw_upstream, silent_upstream, write_json};
use support::*;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// `/admin/shadow`'s view of `route`, once `done` holds (10 s at most).
async fn report_until(admin: SocketAddr, route: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(&format!("http://{admin}/admin/shadow")).await.json();
        let r = v["routes"][route].clone();
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "report never got there: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn total(r: &Value) -> u64 {
    ["match", "mismatch", "error", "skipped"]
        .iter()
        .map(|k| r["outcomes"][k].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn the_demo_difference_shows_up_and_copies_are_marked() {
    let legacy = legacy_stub::spawn_local(Kind::Monolith).await.unwrap();
    let orders = legacy_stub::spawn_local(Kind::Orders).await.unwrap();
    let p = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.legacy]
targets = ["{}"]
[upstreams.orders]
targets = ["{}"]
[[routes]]
name = "orders"
prefix = "/api/orders"
upstream = "legacy"
shadow = {{ to = "orders", percent = 100, ignore = ["/meta/generated_at"] }}
"#,
        legacy.url(),
        orders.url()
    ))
    .await;
    let admin = p.admin.unwrap();
    for _ in 0..3 {
        let a = get(&p.url("/api/orders/1001")).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("x-served-by"),
            Some("legacy"),
            "the client gets the primary"
        );
    }
    let r = report_until(admin, "orders", |r| total(r) >= 3).await;
    assert_eq!(r["outcomes"]["mismatch"], 3, "{r}");
    let pointers: Vec<&str> = r["pointers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/created_at"], "{r}");
    assert_eq!(r["samples"][0]["path"], "/api/orders/1001");
    assert!(orders.requests() >= 3);
    // POST is not mirrored by default.
    let before = orders.requests();
    let a = send(
        &h1(),
        http::Request::post(p.url("/api/orders"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(orders.requests(), before, "a POST was mirrored");
}

#[tokio::test]
async fn copies_carry_the_shadow_header_and_the_body() {
    let (primary, shadow) = (backend("primary").await, backend("shadow").await);
    let p = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.primary]
targets = ["{}"]
[upstreams.shadow]
targets = ["{}"]
[[routes]]
name = "r"
prefix = "/"
upstream = "primary"
shadow = {{ to = "shadow", percent = 100, methods = ["GET", "PUT"] }}
"#,
        primary.url(),
        shadow.url()
    ))
    .await;
    let admin = p.admin.unwrap();
    let a = send(
        &h1(),
        http::Request::put(p.url("/x?q=1"))
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                5u8;
                3000
            ])))
            .unwrap(),
    )
    .await;
    assert_eq!(a.json()["server"], "primary");
    assert_eq!(a.json()["body_len"], 3000);
    assert!(a.json()["headers"].get("x-strangler-shadow").is_none());
    // The two echoes differ exactly where the copy is marked and named.
    let r = report_until(admin, "r", |r| total(r) >= 1).await;
    assert_eq!(r["outcomes"]["mismatch"], 1, "{r}");
    let diffs = &r["samples"][0]["differences"];
    let pointers: Vec<&str> = diffs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/server"), "{r}");
    assert!(pointers.contains(&"/headers/x-strangler-shadow"), "{r}");
    assert!(
        !pointers.contains(&"/body_len"),
        "the copy carried the body: {r}"
    );
    assert!(!pointers.contains(&"/path"), "same path and query: {r}");
}

#[tokio::test]
async fn a_silent_or_dead_shadow_never_holds_up_the_client() {
    let primary = backend("primary").await;
    for shadow in [
        silent_upstream().await.url(),
        format!("http://{}", dead_addr().await),
    ] {
        let p = start(&format!(
            r#"[server]
admin = "127.0.0.1:0"
request_timeout = "30s"
[upstreams.primary]
targets = ["{}"]
[upstreams.shadow]
targets = ["{shadow}"]
[[routes]]
name = "r"
prefix = "/"
upstream = "primary"
shadow = {{ to = "shadow", percent = 100 }}
"#,
            primary.url()
        ))
        .await;
        // The shadow would hold a waiting client for 30 s; the answer must
        // come long before.
        for _ in 0..5 {
            let a = timeout(Duration::from_secs(5), get(&p.url("/x")))
                .await
                .expect("the client waited for the shadow");
            assert_eq!(a.status, 200);
        }
    }
}

/// A primary whose every answer carries a fresh stamp and id; `total` is 10
/// (the shadow answers 11).
async fn stamped(total: u64) -> Server {
    let n = Arc::new(AtomicU64::new(0));
    raw_upstream(move |mut s: TcpStream| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        async move {
            let body = format!(
                r#"{{"generated":{},"request":"r-{}-{}","total":{total}}}"#,
                1_700_000_000 + i,
                i,
                fastrand_like(i)
            );
            write_json(&mut s, body.as_bytes()).await;
        }
    })
    .await
}

fn fastrand_like(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40
}

#[tokio::test]
async fn calibration_turns_timestamps_into_noise_but_not_real_differences() {
    let (primary, shadow) = (stamped(10).await, stamped(11).await);
    let (pu, su) = (primary.url(), shadow.url());
    let p = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.primary]
targets = ["{pu}"]
[upstreams.shadow]
targets = ["{su}"]
[[routes]]
name = "r"
prefix = "/"
upstream = "primary"
shadow = {{ to = "shadow", percent = 100, calibrate = 100 }}
"#
    ))
    .await;
    let admin = p.admin.unwrap();
    for _ in 0..30 {
        assert_eq!(get(&p.url("/report")).await.status, 200);
    }
    let r = report_until(admin, "r", |r| total(r) >= 30).await;
    let class = |ptr: &str| {
        r["pointers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pointer"] == ptr)
            .map(|p| p["classification"].clone())
    };
    assert_eq!(class("/generated"), Some("noise".into()), "{r}");
    assert_eq!(class("/request"), Some("noise".into()), "{r}");
    assert_eq!(class("/total"), Some("mismatch".into()), "{r}");
    assert!(r["calibration"]["runs"].as_u64().unwrap() >= 10, "{r}");

    // Once calibrated, a shadow that only differs in noise matches.
    let same = stamped(10).await;
    let same_u = same.url();
    let p2 = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.primary]
targets = ["{pu}"]
[upstreams.shadow]
targets = ["{same_u}"]
[[routes]]
name = "r"
prefix = "/"
upstream = "primary"
shadow = {{ to = "shadow", percent = 100, calibrate = 100 }}
"#
    ))
    .await;
    let admin2 = p2.admin.unwrap();
    for _ in 0..15 {
        get(&p2.url("/report")).await;
    }
    let r = report_until(admin2, "r", |r| total(r) >= 15).await;
    let before = r["outcomes"]["match"].as_u64().unwrap();
    for _ in 0..10 {
        get(&p2.url("/report")).await;
    }
    let r = report_until(admin2, "r", |r| total(r) >= 25).await;
    assert_eq!(
        r["outcomes"]["match"].as_u64().unwrap() - before,
        10,
        "after calibration every comparison matches: {r}"
    );
}

#[tokio::test]
async fn calibration_never_sends_a_post_to_the_primary_twice() {
    let (primary, shadow) = (backend("primary").await, backend("shadow").await);
    let p = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.primary]
targets = ["{}"]
[upstreams.shadow]
targets = ["{}"]
[[routes]]
name = "r"
prefix = "/"
upstream = "primary"
shadow = {{ to = "shadow", percent = 100, methods = ["POST"], calibrate = 100 }}
"#,
        primary.url(),
        shadow.url()
    ))
    .await;
    let admin = p.admin.unwrap();
    for _ in 0..5 {
        let a = send(
            &h1(),
            http::Request::post(p.url("/orders"))
                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    let r = report_until(admin, "r", |r| total(r) >= 5).await;
    assert_eq!(r["calibration"]["runs"], 0, "{r}");
    assert_eq!(primary.requests(), 5, "each POST reached the primary once");
    assert_eq!(shadow.requests(), 5);
}

#[tokio::test]
async fn copies_and_client_requests_never_share_an_upstream_connection() {
    // The shadow thread's connections only make progress while that
    // low-priority thread runs, so a client request must never be sent on
    // one. `svc` is both a route's primary and another route's shadow; it
    // records, per connection, whether copies and client requests came on it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(bool, bool)>::new()));
    let record = seen.clone();
    let svc = legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let record = record.clone();
        async move {
            let slot = {
                let mut seen = record.lock().unwrap();
                seen.push((false, false));
                seen.len() - 1
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let copy = head.contains("\r\nx-strangler-shadow: 1");
                {
                    let mut seen = record.lock().unwrap();
                    if copy {
                        seen[slot].1 = true;
                    } else {
                        seen[slot].0 = true;
                    }
                }
                buf.drain(..end + 4);
                let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if s.write_all(answer).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
    .unwrap();
    let main = backend("main").await;
    let p = start(&format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.main]
targets = ["{}"]
[upstreams.svc]
targets = ["{}"]
[[routes]]
name = "direct"
prefix = "/direct"
upstream = "svc"
[[routes]]
name = "mirrored"
prefix = "/echo"
upstream = "main"
shadow = {{ to = "svc", percent = 100 }}
"#,
        main.url(),
        svc.url()
    ))
    .await;
    let rounds = 4;
    let width = 16;
    for _ in 0..rounds {
        let mut sent = Vec::new();
        for i in 0..width {
            sent.push(tokio::spawn(get_owned(p.url(&format!("/direct/{i}")))));
            sent.push(tokio::spawn(get_owned(p.url(&format!("/echo/{i}")))));
        }
        for s in sent {
            assert_eq!(s.await.unwrap(), 200);
        }
    }
    let admin = p.admin.unwrap();
    report_until(admin, "mirrored", |r| total(r) >= (rounds * width) as u64).await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|c| c.0),
        "client requests reached svc: {seen:?}"
    );
    assert!(seen.iter().any(|c| c.1), "copies reached svc: {seen:?}");
    assert!(
        seen.iter().all(|c| !(c.0 && c.1)),
        "a connection carried both copies and client requests: {seen:?}"
    );
}

async fn get_owned(url: String) -> u16 {
    get(&url).await.status.as_u16()
}
