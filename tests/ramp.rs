//! The ramp end to end (SPEC 2.2), with the real driver and one-second
//! windows: a healthy new side is stepped up to 100%; a failing one is
//! rolled back to 0 and stopped, with the reason in the admin API and the
//! metrics, until resumed; and the binary resumes from the last position
//! after a restart.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::ProxyProcess;
use support::*;
use tokio::time::Instant;

/// A route on `legacy` ramping to `new` from `percent`; testers force the new
/// side with `x-side: new`. Latency is not what these tests are about, and
/// sub-millisecond p99s on a busy test machine are noise, so the latency
/// limit is wide (the ramp's own tests cover it).
fn ramped(legacy: &str, new: &str, percent: u32, server: &str) -> String {
    format!(
        r#"[server]
admin = "127.0.0.1:0"
{server}
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.new]
targets = ["{new}"]
[[routes]]
name = "customers"
prefix = "/api"
strip_prefix = "/api"
upstream = "legacy"
shift = {{ to = "new", percent = {percent}, force_header = "x-side", ramp = {{ step = 40, every = "1s", min_requests = 5, max_error_rate = 0.1, max_latency_ratio = 50 }} }}
"#
    )
}

/// Sends requests to `path` in the background, half of them forced to the
/// new side, until the task is aborted.
fn traffic(proxy: String, path: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = h1();
        let mut i = 0u64;
        loop {
            let mut req = Request::get(format!("{proxy}{path}"));
            if i.is_multiple_of(2) {
                req = req.header("x-side", "new");
            }
            let _ = client
                .request(req.body(Full::<Bytes>::default()).unwrap())
                .await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The `customers` route as `GET /admin/routes` shows it.
async fn route(admin: SocketAddr) -> serde_json::Value {
    let a = get(&format!("http://{admin}/admin/routes")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "customers")
        .cloned()
        .expect("customers route")
}

/// Polls the route until `pred` holds (20 s at most); returns it.
async fn until(
    admin: SocketAddr,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = route(admin).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "never {what}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_healthy_new_side_is_stepped_up_to_100() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&ramped(&legacy.url(), &new.url(), 10, "")).await;
    let admin = p.admin.unwrap();
    let load = traffic(p.url(""), "/api/ok");
    assert_eq!(route(admin).await["shift"]["percent"], 10.0);
    let done = until(admin, "done", |r| r["shift"]["ramp"]["status"] == "done").await;
    load.abort();
    assert_eq!(done["shift"]["percent"], 100.0);
    assert_eq!(
        done["shift"]["file_percent"], 10.0,
        "the file is not touched"
    );
    let metrics = get(&format!("http://{admin}/metrics")).await.text();
    assert!(
        metrics.contains("strangler_shift_percent{route=\"customers\"} 100"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_new_side_is_rolled_back_stopped_and_resumed() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&ramped(&legacy.url(), &new.url(), 50, "")).await;
    let admin = p.admin.unwrap();
    // Every request the new side gets fails; the old side is fine.
    let load = traffic(p.url(""), "/api/status-on/new/503");
    let stopped = until(admin, "stopped", |r| {
        r["shift"]["ramp"]["status"] == "stopped"
    })
    .await;
    load.abort();
    assert_eq!(stopped["shift"]["percent"], 0.0, "{stopped}");
    let reason = stopped["shift"]["ramp"]["reason"].as_str().unwrap();
    assert!(reason.contains("max_error_rate"), "{reason}");
    let metrics = get(&format!("http://{admin}/metrics")).await.text();
    assert!(
        metrics.contains("strangler_ramp_stopped{route=\"customers\"} 1"),
        "{metrics}"
    );
    // Stopped means stopped: users are all back on the old side.
    for _ in 0..20 {
        let a = get(&p.url("/api/status-on/new/503")).await;
        assert_eq!(a.header("x-served-by"), Some("legacy"));
    }
    // An operator resumes it.
    let a = send(
        &h1(),
        Request::post(format!("http://{admin}/admin/routes/customers/ramp/resume"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(route(admin).await["shift"]["ramp"]["status"], "running");
}

#[tokio::test]
async fn a_restarted_proxy_resumes_from_the_last_position() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let text = ramped(&legacy.url(), &new.url(), 10, "listen = \"127.0.0.1:0\"");
    let dir = std::env::temp_dir().join(format!("strangler-ramp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strangler.toml");
    std::fs::write(&path, &text).unwrap();

    let start = || ProxyProcess::json_logs(&path);

    let mut first = start();
    let addr = first.listening().await;
    let admin: SocketAddr = first.log_line(|v| v["message"] == "admin listening").await["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let load = traffic(format!("http://{addr}"), "/api/ok");
    let stepped = until(admin, "stepped", |r| r["shift"]["percent"] == 50.0).await;
    load.abort();
    assert_eq!(stepped["shift"]["file_percent"], 10.0);
    first.signal("TERM");
    assert_eq!(first.exit().await.code(), Some(0), "{}", first.transcript());
    assert!(
        dir.join("strangler.toml.state").exists(),
        "no state file next to the config"
    );

    let mut second = start();
    second.listening().await;
    let admin: SocketAddr = second.log_line(|v| v["message"] == "admin listening").await["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let r = route(admin).await;
    assert!(
        r["shift"]["percent"].as_f64().unwrap() >= 50.0,
        "restarted at {} instead of the last position: {r}",
        r["shift"]["percent"]
    );
    assert_eq!(r["shift"]["ramp"]["status"], "running");
    second.signal("TERM");
    second.exit().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shadow_mismatches_stop_the_ramp() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    // The two test backends name themselves in every answer: every
    // comparison is a mismatch.
    let text = ramped(&legacy.url(), &new.url(), 50, "").replace(
        "upstream = \"legacy\"\nshift",
        "upstream = \"legacy\"\nshadow = { to = \"new\", percent = 100 }\nshift",
    );
    assert!(text.contains("shadow ="), "{text}");
    let p = start(&text).await;
    let admin = p.admin.unwrap();
    let load = traffic(p.url(""), "/api/ok");
    let stopped = until(admin, "stopped", |r| {
        r["shift"]["ramp"]["status"] == "stopped"
    })
    .await;
    load.abort();
    let reason = stopped["shift"]["ramp"]["reason"].as_str().unwrap();
    assert!(reason.contains("max_mismatch_rate"), "{reason}");
}
