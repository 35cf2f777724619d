//! The `strangler` binary's other commands (SPEC 1), each run for real:
//! `explain` shows where one request would go; plain `--config FILE` and
//! `STRANGLER_CONFIG` run the proxy until SIGTERM; `--log-format json` writes
//! one JSON object per line with the access log's fields; and `demo` starts
//! the shop behind the proxy.

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::process::{DEMO_TOML, ProxyProcess, TempConfig, diags, run, strangler};
use support::*;

// ---------------------------------------------------------------- explain

const EXPLAIN: &str = r#"[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[upstreams.orders]
targets = ["http://127.0.0.1:9101"]

[upstreams.beta]
targets = ["http://127.0.0.1:9301"]

[default]
upstream = "legacy"

# Same pattern: file order decides, so the header-conditioned route comes first.
[[routes]]
name = "orders-beta"
path = "/api/orders/{id}"
headers = { "x-beta" = "1" }
upstream = "beta"
rewrite = "/v2/orders/{id}"

[[routes]]
name = "orders"
path = "/api/orders/{id}"
upstream = "orders"
rewrite = "/orders/{id}"
"#;

#[test]
fn the_explain_config_is_clean() {
    let f = TempConfig::new("explain-clean", EXPLAIN);
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stderr, "", "no warnings: {out}");
}

#[test]
fn explain_shows_route_params_upstream_and_rewritten_path() {
    let f = TempConfig::new("explain", EXPLAIN);
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17?expand=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let s = &out.stdout;
    assert!(s.contains("orders"), "{out}");
    let route = s
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("no route line: {out}"));
    assert!(route.split_whitespace().nth(1) == Some("orders"), "{out}");
    assert!(
        s.lines()
            .any(|l| l.starts_with("param") && l.contains("id = 17")),
        "{out}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("upstream")
            && l.contains("orders")
            && l.contains("127.0.0.1:9101")),
        "{out}"
    );
    assert!(
        s.lines().any(|l| l.contains("GET /orders/17?expand=1")),
        "upstream path after rewrite, query kept: {out}"
    );
}

#[test]
fn explain_picks_the_header_conditioned_route() {
    let f = TempConfig::new("explain-beta", EXPLAIN);
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17",
        "-H",
        "x-beta: 1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let route = out
        .stdout
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        route.split_whitespace().nth(1),
        Some("orders-beta"),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("upstream") && l.contains("beta")),
        "{out}"
    );
    assert!(out.stdout.contains("GET /v2/orders/17"), "{out}");

    // A different header value does not select it.
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17",
        "-H",
        "x-beta: 2",
    ]);
    let route = out.stdout.lines().find(|l| l.starts_with("route")).unwrap();
    assert_eq!(route.split_whitespace().nth(1), Some("orders"), "{out}");
}

#[test]
fn explain_shows_the_400_for_a_bad_path() {
    let f = TempConfig::new("explain-bad-path", EXPLAIN);
    for path in ["/../etc/passwd", "/api/%zz"] {
        let out = run(&["explain", "--config", f.path(), "GET", path]);
        assert_eq!(out.code, Some(0), "{path}: {out}");
        assert!(out.stdout.contains("400"), "{path}: {out}");
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("sends")),
            "{path}: nothing is sent: {out}"
        );
    }
}

#[test]
fn explain_exits_1_on_a_bad_config() {
    let text = EXPLAIN.replace("upstream = \"beta\"", "upstream = \"betta\"");
    let f = TempConfig::new("explain-bad-config", &text);
    let out = run(&["explain", "--config", f.path(), "GET", "/api/orders/17"]);
    assert_eq!(out.code, Some(1), "{out}");
    let d = diags(f.path(), &out.stderr);
    assert!(
        d.iter()
            .any(|d| d.message.contains("unknown upstream \"betta\"")),
        "{out}"
    );
}

// ---------------------------------------------------------------- run

/// A config running the proxy on an ephemeral port in front of `b`.
fn proxy_config(b: &Server) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[upstreams.backend]
targets = ["{}"]

[upstreams.orders]
targets = ["{}"]

[default]
upstream = "backend"

[[routes]]
name = "orders"
path = "/api/orders/{{id}}"
upstream = "orders"
"#,
        b.url(),
        b.url()
    )
}

/// Starts the proxy with `cmd`, checks it forwards a request to `b`, then
/// stops it with SIGTERM and expects exit 0.
async fn serves_then_stops(cmd: Command, b: &Server) {
    let mut p = ProxyProcess::spawn(cmd);
    let addr = p.listening().await;
    let a = get(&format!("http://{addr}/hello?x=1")).await;
    assert_eq!(a.status, 200, "{}", p.transcript());
    assert_eq!(a.header("x-served-by"), Some("backend"));
    assert_eq!(a.json()["path"], "/hello?x=1");
    assert_eq!(b.requests(), 1);
    p.signal("TERM");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());
}

#[tokio::test]
async fn plain_config_flag_runs_the_proxy() {
    let b = backend("backend").await;
    let f = TempConfig::new("plain", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.args(["--config", f.path()]);
    serves_then_stops(cmd, &b).await;
}

#[tokio::test]
async fn strangler_config_env_with_run_runs_the_proxy() {
    let b = backend("backend").await;
    let f = TempConfig::new("env", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.arg("run").env("STRANGLER_CONFIG", f.path());
    serves_then_stops(cmd, &b).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_an_access_log() {
    let b = backend("backend").await;
    let f = TempConfig::new("json", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.args(["run", "--config", f.path(), "--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut p = ProxyProcess::spawn(cmd);
    let addr = p.listening().await;
    let a = get(&format!("http://{addr}/api/orders/17?x=1")).await;
    assert_eq!(a.status, 200);
    let request_id = a.header("x-request-id").expect("x-request-id").to_owned();
    p.signal("TERM");
    assert_eq!(p.exit().await.code(), Some(0), "{}", p.transcript());

    let mut access = Vec::new();
    for line in p.stderr_lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v.is_object(), "{line}");
        if v["request_id"].is_string() && v["status"].is_number() {
            access.push(v);
        }
    }
    assert_eq!(access.len(), 1, "one access-log object: {}", p.transcript());
    let v = &access[0];
    assert_eq!(v["request_id"], request_id.as_str(), "{v}");
    let client: SocketAddr = v["client"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("client is an address: {v}"));
    assert!(client.ip().is_loopback(), "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["path"], "/api/orders/17?x=1", "{v}");
    assert_eq!(v["route"], "orders", "{v}");
    assert_eq!(v["upstream"], "orders", "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["duration_us"].is_u64(), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(a.body.len() as u64), "{v}");
}

// ---------------------------------------------------------------- demo

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[tokio::test]
async fn demo_serves_the_shop_through_the_proxy_and_exits_on_sigterm() {
    let demo = std::fs::read_to_string(DEMO_TOML).expect("config/demo.toml");
    let ports = free_ports(5);
    let mut text = demo.clone();
    for (old, new) in ["8080", "9000", "9101", "9201", "9901"].iter().zip(&ports) {
        assert!(
            text.contains(&format!("127.0.0.1:{old}")),
            "demo.toml uses {old}"
        );
        text = text.replace(&format!("127.0.0.1:{old}"), &format!("127.0.0.1:{new}"));
    }
    let f = TempConfig::new("demo", &text);
    let proxy = format!("http://127.0.0.1:{}", ports[0]);

    let mut cmd = strangler();
    cmd.args(["demo", "--config", f.path()]);
    let mut p = ProxyProcess::spawn(cmd);
    let banner = p
        .line(true, |l| {
            l.split_whitespace().next() == Some("proxy") && l.contains("http://")
        })
        .await;
    assert!(banner.contains(&proxy), "banner names {proxy}: {banner}");
    // The admin listener's dashboard, named in the banner too.
    let dashboard = p
        .line(true, |l| l.split_whitespace().next() == Some("dashboard"))
        .await;
    let dashboard = dashboard.split_whitespace().nth(1).unwrap().to_owned();
    let a = get(&dashboard).await;
    assert_eq!(a.status, 200, "{dashboard}");
    assert!(a.text().contains("migration dashboard"), "{}", a.text());

    let a = get(&format!("{proxy}/api/orders/1001")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-served-by"), Some("orders"));
    assert!(a.json().is_object());

    let a = get(&format!("{proxy}/")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        a.headers
    );
    assert!(a.text().contains("<html"), "{}", a.text());

    // The customers route is shifted 25% by session cookie, as the banner says.
    for (user, side) in [("alice", "legacy"), ("dave", "customers")] {
        let a = send(
            &h1(),
            http::Request::get(format!("{proxy}/api/customers/42"))
                .header("cookie", format!("session={user}"))
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("x-served-by"), Some(side), "{user}");
    }

    // The orders route is shadowed to the monolith: the deliberate
    // difference shows at /admin/shadow.
    let admin = format!("http://127.0.0.1:{}", ports[4]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = get(&format!("{admin}/admin/shadow")).await.json();
        let pointers = v["routes"]["orders"]["pointers"].to_string();
        if pointers.contains("/created_at") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no /created_at in {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Composed from three services.
    let a = get(&format!("{proxy}/api/order-details/1001")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["order"]["id"], 1001);
    assert!(v["customer"]["name"].is_string(), "{v}");
    assert!(v["stock"].as_array().is_some_and(|s| !s.is_empty()), "{v}");

    // The demo watches its file: `strangler shift` takes everyone back live.
    let out = run(&["shift", "--config", f.path(), "customers", "0"]);
    assert_eq!(out.code, Some(0), "{out}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = send(
            &h1(),
            http::Request::get(format!("{proxy}/api/customers/42"))
                .header("cookie", "session=dave")
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
        if a.header("x-served-by") == Some("legacy") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo never reloaded: {}",
            p.transcript()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    p.signal("TERM");
    assert_eq!(p.exit().await.code(), Some(0), "{}", p.transcript());
}
