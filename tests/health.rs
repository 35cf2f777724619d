//! Active health checks and passive ejection (SPEC 2, upstream `health` and
//! `eject`) over real sockets: a target whose probes fail, time out or whose
//! requests keep failing gets no traffic until it recovers; with no eligible
//! target the answer is 503; `/admin/upstreams` and `strangler_upstream_up`
//! say the same; the verdict survives a reload.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::flaky::{Flaky, HANG, flaky};
use support::*;

/// Probes every 200 ms; two failures take a target out, two passes bring it back.
const HEALTH: &str = r#"health = { path = "/health", interval = "200ms", timeout = "200ms", unhealthy_after = 2, healthy_after = 2 }"#;

fn two_targets(a: &Flaky, b: &Flaky, extra: &str) -> String {
    format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n[upstreams.app]\ntargets = [\"{}\", \"{}\"]\n{extra}\n[default]\nupstream = \"app\"\n",
        a.url(),
        b.url()
    )
}

async fn upstreams(admin: SocketAddr) -> Value {
    get(&format!("http://{admin}/admin/upstreams")).await.json()
}

/// The admin view of the target `url` of the first upstream.
async fn target(admin: SocketAddr, url: &str) -> Value {
    let v = upstreams(admin).await;
    v["upstreams"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["url"] == url)
        .cloned()
        .unwrap_or_else(|| panic!("no target {url} in {v}"))
}

async fn metrics(admin: SocketAddr) -> String {
    get(&format!("http://{admin}/metrics")).await.text()
}

/// Polls `check` until it returns true, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn health_is(admin: SocketAddr, url: String, want: &str) -> bool {
    target(admin, &url).await["health"] == want
}

/// Who served each of `n` GETs (`x-served-by`), or the status when not 200.
async fn served_by(proxy: &TestProxy, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let a = get(&proxy.url(&format!("/r/{i}"))).await;
        out.push(match a.status.as_u16() {
            200 => a.header("x-served-by").unwrap_or("?").to_owned(),
            s => s.to_string(),
        });
    }
    out
}

#[tokio::test]
async fn a_failing_target_gets_no_traffic_until_its_probes_pass_again() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    let proxy = start(&two_targets(&a, &b, HEALTH)).await;
    let admin = proxy.admin.unwrap();
    eventually("both targets are up", || async {
        health_is(admin, a.url(), "up").await && health_is(admin, b.url(), "up").await
    })
    .await;

    a.set_health(503);
    eventually("a is down", || health_is(admin, a.url(), "down")).await;
    assert!(
        a.probes() >= 3,
        "one pass, then at least unhealthy_after failures"
    );
    let t = target(admin, &a.url()).await;
    assert_eq!(t["up"], false, "{t}");
    assert_eq!(t["last_check"]["ok"], false, "{t}");
    assert_eq!(t["last_check"]["result"], "503", "{t}");
    let before = a.requests();
    assert_eq!(served_by(&proxy, 10).await, vec!["b"; 10]);
    assert_eq!(a.requests(), before);

    // The admin API and the metric agree.
    let text = metrics(admin).await;
    let series = |url: &str, v: u8| {
        format!("strangler_upstream_up{{upstream=\"app\",target=\"{url}\"}} {v}\n")
    };
    assert!(text.contains(&series(&a.url(), 0)), "{text}");
    assert!(text.contains(&series(&b.url(), 1)), "{text}");

    a.set_health(200);
    eventually("a is up again", || health_is(admin, a.url(), "up")).await;
    let served = served_by(&proxy, 10).await;
    assert!(served.iter().any(|s| s == "a"), "{served:?}");
    assert!(metrics(admin).await.contains(&series(&a.url(), 1)));
}

#[tokio::test]
async fn a_probe_that_times_out_is_a_failure() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_health(HANG);
    let proxy = start(&two_targets(&a, &b, HEALTH)).await;
    let admin = proxy.admin.unwrap();
    eventually("a is down", || health_is(admin, a.url(), "down")).await;
    assert_eq!(
        target(admin, &a.url()).await["last_check"]["result"],
        "timeout"
    );
    assert_eq!(served_by(&proxy, 6).await, vec!["b"; 6]);
}

#[tokio::test]
async fn with_every_target_down_the_answer_is_503_without_addresses() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_health(500);
    b.set_health(HANG);
    let proxy = start(&two_targets(&a, &b, HEALTH)).await;
    let admin = proxy.admin.unwrap();
    eventually("both are down", || async {
        health_is(admin, a.url(), "down").await && health_is(admin, b.url(), "down").await
    })
    .await;
    let answer = get(&proxy.url("/r")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let v = answer.json();
    assert_eq!(v["type"], "urn:strangler:problem:no-healthy-target", "{v}");
    assert_eq!(v["detail"], "upstream \"app\" has no healthy target", "{v}");
    assert!(!answer.text().contains("127.0.0.1"), "{}", answer.text());
    assert_eq!(a.requests() + b.requests(), 0);
}

#[tokio::test]
async fn the_verdict_survives_a_reload_and_removing_health_forgets_it() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_health(503);
    let proxy = start(&two_targets(&a, &b, HEALTH)).await;
    let admin = proxy.admin.unwrap();
    eventually("a is down", || health_is(admin, a.url(), "down")).await;

    // A reload that keeps the target (another balance, a 1-minute interval)
    // keeps it down. The restarted probe loop probes once at once; that one
    // failure alone could not take a fresh target down (unhealthy_after = 2),
    // and no second probe comes before the checks below.
    let slower = HEALTH.replace("interval = \"200ms\"", "interval = \"1m\"");
    proxy.proxy.install(config(&two_targets(
        &a,
        &b,
        &format!("balance = \"least_request\"\n{slower}"),
    )));
    let t = target(admin, &a.url()).await;
    assert_eq!(
        (&t["health"], &t["up"]),
        (&Value::from("down"), &Value::from(false)),
        "{t}"
    );
    assert_eq!(served_by(&proxy, 4).await, vec!["b"; 4]);

    // Without `health` nothing would ever bring it back: it is unchecked,
    // and eligible, again.
    proxy.proxy.install(config(&two_targets(&a, &b, "")));
    eventually("a is unchecked", || health_is(admin, a.url(), "unchecked")).await;
    let served = served_by(&proxy, 4).await;
    assert!(served.iter().any(|s| s == "a"), "{served:?}");
}

#[tokio::test]
async fn failures_in_a_row_eject_a_target_for_a_while() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_answer(502);
    let eject = r#"eject = { consecutive_failures = 3, for = "1s" }"#;
    let proxy = start(&two_targets(&a, &b, eject)).await;
    let admin = proxy.admin.unwrap();
    // Round robin: a gets every other request until its third 502.
    let served = served_by(&proxy, 6).await;
    assert_eq!(served, ["502", "b", "502", "b", "502", "b"]);
    let t = target(admin, &a.url()).await;
    assert_eq!(t["up"], false, "{t}");
    assert_eq!(t["health"], "unchecked", "{t}");
    assert_eq!(t["ejected"]["failures"], 3, "{t}");
    assert!(t["ejected"]["until"].is_string(), "{t}");
    assert!(metrics(admin).await.contains(&format!(
        "strangler_upstream_up{{upstream=\"app\",target=\"{}\"}} 0\n",
        a.url()
    )));
    assert_eq!(served_by(&proxy, 6).await, vec!["b"; 6]);

    // Once `for` is over it is served again.
    a.set_answer(200);
    eventually("a is back", || async {
        served_by(&proxy, 2).await.iter().any(|s| s == "a")
    })
    .await;
    let t = target(admin, &a.url()).await;
    assert_eq!(
        (&t["ejected"], &t["up"]),
        (&Value::Null, &Value::from(true)),
        "{t}"
    );
}

#[tokio::test]
async fn refused_connections_eject_and_every_target_ejected_is_503() {
    let dead = dead_addr().await;
    let b = flaky("b").await;
    let cfg = format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n[upstreams.app]\ntargets = [\"http://{dead}\", \"{}\"]\neject = {{ consecutive_failures = 2, for = \"1m\" }}\n[default]\nupstream = \"app\"\n",
        b.url()
    );
    let proxy = start(&cfg).await;
    let served = served_by(&proxy, 4).await;
    assert_eq!(served, ["502", "b", "502", "b"]);
    assert_eq!(served_by(&proxy, 4).await, vec!["b"; 4]);

    // Now b fails too: once it is ejected, no target is left.
    b.set_answer(503);
    assert_eq!(served_by(&proxy, 3).await, ["503", "503", "503"]);
    let answer = get(&proxy.url("/r")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.json()["type"],
        "urn:strangler:problem:no-healthy-target"
    );
    assert_eq!(b.requests(), 6 + 2, "the ejected target got nothing");

    // A reload without `eject` ends the ejections at once.
    b.set_answer(200);
    let without = cfg.replace("eject = { consecutive_failures = 2, for = \"1m\" }\n", "");
    proxy.proxy.install(config(&without));
    assert_eq!(served_by(&proxy, 2).await, ["502", "b"]);
}
