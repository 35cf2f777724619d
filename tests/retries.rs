//! Retries (SPEC 2, upstream `retries`) over real sockets: an idempotent
//! request that could not connect or was answered 502/503 is sent again on
//! another target of the same upstream, within the upstream's retry budget;
//! other failures, and other methods, are answered as they came.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::flaky::{Flaky, flaky};
use support::*;

fn upstream(targets: &[String], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n[upstreams.app]\ntargets = [{}]\n{extra}\n[default]\nupstream = \"app\"\n",
        list.join(", ")
    )
}

async fn two(a: &Flaky, b: &Flaky, extra: &str) -> TestProxy {
    start(&upstream(&[a.url(), b.url()], extra)).await
}

async fn call(proxy: &TestProxy, method: &str, body: &'static str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(proxy.url("/r"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    send(&h1(), req).await
}

async fn statuses(proxy: &TestProxy, method: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(call(proxy, method, "").await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn a_dead_target_is_retried_on_the_live_one() {
    let dead = format!("http://{}", dead_addr().await);
    let live = flaky("live").await;
    let proxy = start(&upstream(&[dead, live.url()], "retries = 1")).await;
    // Half of these meet the dead target first: 3 retries, within the
    // budget's reserve.
    assert_eq!(statuses(&proxy, "GET", 6).await, [200; 6]);
    assert_eq!(live.requests(), 6);
}

#[tokio::test]
async fn with_ejection_a_dead_target_costs_a_few_retries_and_then_none() {
    let dead = format!("http://{}", dead_addr().await);
    let live = flaky("live").await;
    let extra = "retries = 1\neject = { consecutive_failures = 2, for = \"1m\" }";
    let proxy = start(&upstream(&[dead, live.url()], extra)).await;
    assert_eq!(statuses(&proxy, "GET", 50).await, [200; 50]);
    let text = get(&format!("http://{}/metrics", proxy.admin.unwrap()))
        .await
        .text();
    assert!(
        text.contains("strangler_retries_total{upstream=\"app\",result=\"sent\"} 2\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_503_is_retried_on_another_target() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_answer(503);
    let proxy = two(&a, &b, "retries = 1").await;
    for _ in 0..4 {
        let answer = call(&proxy, "GET", "").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-served-by"), Some("b"));
    }
    assert_eq!((a.requests(), b.requests()), (2, 4));
}

#[tokio::test]
async fn a_502_is_retried_but_500_and_504_are_not() {
    for (status, retried) in [(502, true), (500, false), (504, false)] {
        let (a, b) = (flaky("a").await, flaky("b").await);
        a.set_answer(status);
        let proxy = two(&a, &b, "retries = 1").await;
        let got = statuses(&proxy, "GET", 4).await;
        if retried {
            assert_eq!(got, [200; 4], "{status}");
            assert_eq!(a.requests() + b.requests(), 6, "{status}");
        } else {
            assert_eq!(got, [status, 200, status, 200], "{status}");
            assert_eq!(a.requests() + b.requests(), 4, "{status}");
        }
    }
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_answer(503);
    let proxy = two(&a, &b, "retries = 1").await;
    assert_eq!(statuses(&proxy, "POST", 4).await, [503, 200, 503, 200]);
    assert_eq!((a.requests(), b.requests()), (2, 2));

    // Nor is a POST that could not connect.
    let dead = format!("http://{}", dead_addr().await);
    let proxy = start(&upstream(&[dead, b.url()], "retries = 1")).await;
    assert_eq!(statuses(&proxy, "POST", 2).await, [502, 200]);
}

#[tokio::test]
async fn a_put_is_retried_with_the_same_body() {
    let (a, b) = (flaky("a").await, flaky("b").await);
    a.set_answer(503);
    let proxy = two(&a, &b, "retries = 1").await;
    let answer = call(&proxy, "PUT", "the same bytes").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-served-by"), Some("b"));
    let sent = |f: &Flaky| f.seen();
    assert_eq!(sent(&a), [("PUT".to_owned(), b"the same bytes".to_vec())]);
    assert_eq!(sent(&b), [("PUT".to_owned(), b"the same bytes".to_vec())]);
}

#[tokio::test]
async fn retries_stay_within_the_budget_when_every_target_fails() {
    let (a, b, c) = (flaky("a").await, flaky("b").await, flaky("c").await);
    for f in [&a, &b, &c] {
        f.set_answer(503);
    }
    let proxy = start(&upstream(&[a.url(), b.url(), c.url()], "retries = 2")).await;
    let n = 100;
    let got = statuses(&proxy, "GET", n).await;
    assert!(got.iter().all(|&s| s == 503), "{got:?}");
    let upstream_requests = a.requests() + b.requests() + c.requests();
    // At most a fifth more, plus the budget's small reserve (3 per window).
    assert!(
        upstream_requests <= n as u64 * 12 / 10 + 3,
        "{upstream_requests} upstream requests for {n}"
    );
    assert!(upstream_requests > n as u64, "some were retried");
    let admin = proxy.admin.unwrap();
    let text = get(&format!("http://{admin}/metrics")).await.text();
    assert!(
        text.contains("strangler_retries_total{upstream=\"app\",result=\"over_budget\"}"),
        "{text}"
    );
    let v = get(&format!("http://{admin}/admin/upstreams")).await.json();
    assert_eq!(v["upstreams"][0]["retries"], 2);
    assert_eq!(
        v["upstreams"][0]["retry_budget"]["window_requests"],
        n as u64
    );
}

#[tokio::test]
async fn the_access_log_counts_retries_and_the_eject_line_names_the_target() {
    let dead = format!("http://{}", dead_addr().await);
    let live = flaky("live").await;
    let mut p = support::process::ProxyProcess::start(&format!(
        "[upstreams.app]\ntargets = [\"{dead}\", \"{}\"]\nretries = 1\neject = {{ consecutive_failures = 1, for = \"1m\" }}\n[default]\nupstream = \"app\"\n",
        live.url()
    ))
    .await;
    let a = get(&p.url("/r")).await;
    assert_eq!(a.status, 200);
    let eject = p.log_line(|v| v["event"] == "eject").await;
    assert_eq!(eject["upstream"], "app", "{eject}");
    assert_eq!(eject["url"], dead.as_str(), "{eject}");
    assert_eq!(eject["reason"], "connect failed", "{eject}");
    let line = p.log_line(|v| v["target"] == "strangler::access").await;
    assert_eq!(line["retries"], 1, "{line}");
    assert_eq!(line["status"], 200, "{line}");
}

#[tokio::test]
async fn retries_come_before_the_routes_fallback() {
    let (a, b, legacy) = (flaky("a").await, flaky("b").await, flaky("legacy").await);
    a.set_answer(503);
    b.set_answer(503);
    let proxy = start(&format!(
        "[upstreams.app]\ntargets = [\"{}\", \"{}\"]\nretries = 1\n[upstreams.legacy]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/r\"\nupstream = \"app\"\nfallback = \"legacy\"\n",
        a.url(),
        b.url(),
        legacy.url()
    ))
    .await;
    let answer = call(&proxy, "GET", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-served-by"), Some("legacy"));
    assert_eq!((a.requests(), b.requests(), legacy.requests()), (1, 1, 1));
}
