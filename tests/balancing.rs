//! Spreading requests over an upstream's targets (SPEC 3.1): the three
//! balancing policies spread requests as promised, and connections to an
//! upstream are pooled across client connections.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::*;

// ---------------------------------------------------------------------------
// 1. Balancing

/// A config whose default upstream `pool` has `servers` as targets, spread
/// by `balance`.
fn balanced(balance: &str, servers: &[&Server]) -> String {
    let targets: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.url())).collect();
    format!(
        "[upstreams.pool]\ntargets = [{}]\nbalance = \"{balance}\"\n[default]\nupstream = \"pool\"\n",
        targets.join(", ")
    )
}

/// Sends `n` requests, each on the same keep-alive client, and counts them
/// by the `x-served-by` of their answers.
async fn served_by_counts(proxy: &TestProxy, n: usize) -> HashMap<String, usize> {
    let client = h1();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let a = send(
            &client,
            Request::get(proxy.url("/small"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
        let by = a.header("x-served-by").expect("x-served-by").to_owned();
        *counts.entry(by).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let proxy = start(&balanced("round_robin", &[&a, &b, &c])).await;
    let counts = served_by_counts(&proxy, 30).await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts.get(name), Some(&10), "{counts:?}");
    }
}

#[tokio::test]
async fn random_reaches_every_target() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let proxy = start(&balanced("random", &[&a, &b, &c])).await;
    let counts = served_by_counts(&proxy, 60).await;
    assert_eq!(counts.values().sum::<usize>(), 60);
    for name in ["a", "b", "c"] {
        assert!(counts.get(name).is_some_and(|&n| n > 0), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_busy_target() {
    let (a, b) = (backend("a").await, backend("b").await);
    let proxy = start(&balanced("least_request", &[&a, &b])).await;

    // A slow request holds one target until the test ends.
    let slow_url = proxy.url("/delay/20000");
    let slow = tokio::spawn(async move {
        let _ = h1()
            .request(Request::get(slow_url).body(Full::default()).unwrap())
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.requests() + b.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached a backend"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let idle = if a.requests() == 1 { "b" } else { "a" };

    let client = h1();
    for i in 0..5 {
        let r = send(
            &client,
            Request::get(proxy.url("/small"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-served-by"),
            Some(idle),
            "quick request {i} went to the busy target"
        );
    }
    slow.abort();
}

// ---------------------------------------------------------------------------
// 2. Upstream keep-alive

#[tokio::test]
async fn upstream_connections_are_pooled() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for i in 0..20 {
        // A new client connection each time: the upstream pool is the proxy's.
        let a = get(&proxy.url(&format!("/n/{i}"))).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(b.requests(), 20);
    assert_eq!(b.connections(), 1, "upstream connections opened");
}
