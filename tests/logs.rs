//! Structured logs (issue 6, SPEC 1): with `--log-format json` every line is
//! one JSON object, and every request and every event (reload, failed reload,
//! ramp step, rollback, resume, fallback) carries an `event` field naming it,
//! with the same field names throughout: `route`, `upstream`, `trigger`,
//! `reason`, and `percent` / `from_percent` as numbers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::ProxyProcess;
use support::*;

/// Two ramping routes: `good`'s new side answers, `bad`'s new side answers
/// 503 to everything under `/bad`; plus a route that falls back.
fn config(legacy: &str, new: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.new]
targets = ["{new}"]
[upstreams.gone]
targets = ["http://127.0.0.1:1"]
[[routes]]
name = "good"
prefix = "/good"
strip_prefix = "/good"
upstream = "legacy"
shift = {{ to = "new", percent = 10, force_header = "x-side", ramp = {{ step = 40, every = "1s", min_requests = 5, max_error_rate = 0.1, max_latency_ratio = 50 }} }}
[[routes]]
name = "bad"
prefix = "/bad"
strip_prefix = "/bad"
upstream = "legacy"
shift = {{ to = "new", percent = 50, force_header = "x-side", ramp = {{ step = 40, every = "1s", min_requests = 5, max_error_rate = 0.1, max_latency_ratio = 50 }} }}
[[routes]]
name = "rescued"
prefix = "/rescued"
strip_prefix = "/rescued"
upstream = "gone"
fallback = "legacy"
"#
    )
}

/// Requests to `path`, every other one forced to the new side, until aborted.
fn traffic(proxy: String, path: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = h1();
        for i in 0u64.. {
            let mut req = Request::get(format!("{proxy}{path}"));
            if i.is_multiple_of(2) {
                req = req.header("x-side", "new");
            }
            let _ = client
                .request(req.body(Full::<Bytes>::default()).unwrap())
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn event(v: &serde_json::Value, name: &str) -> bool {
    v["event"] == name
}

#[tokio::test]
async fn every_request_and_event_is_one_object_with_an_event_field() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let dir = std::env::temp_dir().join(format!("strangler-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strangler.toml");
    let text = config(&legacy.url(), &new.url());
    std::fs::write(&path, &text).unwrap();
    let mut p = ProxyProcess::json_logs(&path);
    let addr = p.listening().await;
    let admin: SocketAddr = p.log_line(|v| event(v, "admin_listening")).await["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A request: the access log.
    let a = get(&format!("http://{addr}/good/api/ok")).await;
    assert_eq!(a.status, 200);
    let id = a.header("x-request-id").unwrap().to_owned();
    let r = p
        .log_line(|v| event(v, "request") && v["request_id"] == id.as_str())
        .await;
    assert_eq!(r["route"], "good", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert!(r["duration_us"].is_u64(), "{r}");

    // A fallback: the failed upstream and where the request went instead.
    let a = get(&format!("http://{addr}/rescued/api/ok")).await;
    assert_eq!(a.status, 200);
    let f = p.log_line(|v| event(v, "fallback")).await;
    assert_eq!(f["route"], "rescued", "{f}");
    assert_eq!(f["upstream"], "gone", "{f}");
    assert_eq!(f["fallback"], "legacy", "{f}");
    assert_eq!(f["outcome"], "not_reached", "{f}");

    // Ramp steps on the healthy route, a rollback on the failing one.
    let good = traffic(format!("http://{addr}"), "/good/api/ok");
    let bad = traffic(format!("http://{addr}"), "/bad/status-on/new/503");
    // The two come in either order: wait for both.
    let (mut step, mut rollback) = (None, None);
    while step.is_none() || rollback.is_none() {
        let v = p
            .log_line(|v| {
                (event(v, "ramp_step") && v["route"] == "good")
                    || (event(v, "ramp_rollback") && v["route"] == "bad")
            })
            .await;
        if event(&v, "ramp_step") {
            step.get_or_insert(v);
        } else {
            rollback.get_or_insert(v);
        }
    }
    let (step, rollback) = (step.unwrap(), rollback.unwrap());
    assert!(step["percent"].is_f64(), "percent is a number: {step}");
    assert!(step["from_percent"].is_f64(), "{step}");
    assert!(
        step["percent"].as_f64() > step["from_percent"].as_f64(),
        "{step}"
    );
    assert_eq!(rollback["percent"], 0.0, "{rollback}");
    assert_eq!(rollback["from_percent"], 50.0, "{rollback}");
    assert!(
        rollback["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max_error_rate")),
        "{rollback}"
    );
    good.abort();
    bad.abort();

    // The operator resumes it.
    let a = send(
        &h1(),
        Request::post(format!("http://{admin}/admin/routes/bad/ramp/resume"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let resume = p.log_line(|v| event(v, "ramp_resume")).await;
    assert_eq!(resume["route"], "bad", "{resume}");
    assert_eq!(resume["percent"], 0.0, "{resume}");

    // A reload: each change, then the summary with its trigger.
    std::fs::write(&path, text.replace("percent = 10,", "percent = 15,")).unwrap();
    p.signal("HUP");
    let change = p.log_line(|v| event(v, "config_change")).await;
    assert!(
        change["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("config change: route \"good\": shift.percent")),
        "{change}"
    );
    assert_eq!(change["needs_restart"], false, "{change}");
    let reload = p.log_line(|v| event(v, "reload")).await;
    assert!(reload["trigger"].is_string(), "{reload}");
    assert!(reload["changes"].as_u64() >= Some(1), "{reload}");

    // A bad file: each error, then the refusal.
    std::fs::write(&path, "[server\n").unwrap();
    p.signal("HUP");
    let error = p.log_line(|v| event(v, "config_error")).await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("config reload failed: ")),
        "{error}"
    );
    let failed = p.log_line(|v| event(v, "reload_failed")).await;
    assert_eq!(failed["errors"], 1, "{failed}");

    p.signal("TERM");
    assert_eq!(p.exit().await.code(), Some(0), "{}", p.transcript());
    // Every line of the run was JSON with a message; events and requests
    // carry `event`.
    for line in p.stderr_lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["message"].is_string(), "{line}");
        if v["level"] == "INFO" || v["level"] == "WARN" || v["level"] == "ERROR" {
            assert!(
                v["event"].is_string(),
                "an info/warn/error line without `event`: {line}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SPEC 3.4: the access log has a line for every request, also for one
/// whose client hung up before its answer (499, as nginx writes it), and
/// the request's upstream exchange ends with it.
#[tokio::test]
async fn a_client_that_hangs_up_before_its_answer_is_logged_499() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let up = legacy_stub::spawn_raw(move |mut s: tokio::net::TcpStream| {
        let tx = tx.clone();
        async move {
            if support::raw::read_head(&mut s).await {
                let _ = tx.send(());
            }
            // Never answers.
            std::future::pending::<()>().await;
        }
    })
    .await
    .unwrap();
    let mut p = ProxyProcess::start(&default_to(&up.url())).await;
    let mut s = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"GET /abandoned HTTP/1.1\r\nHost: t\r\nX-Request-Id: gone-1\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the request reached the upstream");
    drop(s);
    let line = p
        .log_line(|v| event(v, "request") && v["request_id"] == "gone-1")
        .await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["complete"], false, "{line}");
    assert_eq!(line["path"], "/abandoned", "{line}");
}

/// A request head the codec refuses gets its access-log line too (method
/// and path unknown: `-`), with its status and problem type.
#[tokio::test]
async fn a_refused_request_head_is_logged() {
    let b = backend("b").await;
    let mut p = ProxyProcess::start(&default_to(&b.url())).await;
    let reply = support::raw::send_raw(
        p.addr(),
        b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let answer = reply.responses();
    let id = answer
        .first()
        .and_then(|r| r.header("x-request-id"))
        .expect("a request id on the refusal")
        .to_owned();
    let line = p
        .log_line(|v| event(v, "request") && v["request_id"] == id.as_str())
        .await;
    assert_eq!(line["status"], 400, "{line}");
    assert_eq!(line["problem"], "bad-framing", "{line}");
    assert_eq!(line["method"], "-", "{line}");
    assert_eq!(b.requests(), 0);
}
