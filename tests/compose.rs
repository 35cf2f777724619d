//! Composition (SPEC 2.5) end to end: the demo's order-details route over
//! the real legacy-stub services, concurrency proven without a clock, the
//! failure semantics of required and optional legs, and what legs carry.

mod support;

use std::sync::Arc;

use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::raw::{raw_upstream, write_json};
use support::*;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

async fn shop(kind: Kind) -> Server {
    legacy_stub::spawn_local(kind).await.expect("spawn")
}

/// The SPEC's order-details route over the demo services, with `merge`.
fn details(orders: &Server, customers: &Server, legacy: &Server, merge: &str) -> String {
    format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.customers]
targets = ["{}"]
[upstreams.legacy]
targets = ["{}"]
[[routes]]
name = "order-details"
path = "/api/order-details/{{id}}"
methods = ["GET"]
[routes.compose]
merge = "{merge}"
[[routes.compose.legs]]
name = "order"
upstream = "orders"
path = "/orders/{{id}}"
[[routes.compose.legs]]
name = "customer"
upstream = "customers"
path = "/customers/{{order.customer_id}}"
pick = ["name", "city"]
[[routes.compose.legs]]
name = "stock"
upstream = "legacy"
path = "/inventory/{{order.lines.*.sku}}"
optional = true
timeout = "2s"
pick = ["sku", "available"]
"#,
        orders.url(),
        customers.url(),
        legacy.url()
    )
}

#[tokio::test]
async fn order_details_nests_three_services_answers() {
    let (o, c, l) = (
        shop(Kind::Orders).await,
        shop(Kind::Customers).await,
        shop(Kind::Monolith).await,
    );
    let p = start(&details(&o, &c, &l, "nest")).await;
    let a = get(&p.url("/api/order-details/1001")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-strangler-partial"), None);
    let v = a.json();
    assert_eq!(v["order"]["id"], 1001);
    assert_eq!(
        v["customer"],
        json!({"name": v["customer"]["name"], "city": v["customer"]["city"]})
    );
    assert!(v["customer"]["name"].is_string(), "{v}");
    // One stock answer per order line, in line order, picked.
    let lines = v["order"]["lines"].as_array().unwrap();
    let stock = v["stock"].as_array().unwrap();
    assert_eq!(stock.len(), lines.len());
    for (line, s) in lines.iter().zip(stock) {
        assert_eq!(s["sku"], line["sku"]);
        assert!(s["available"].is_number(), "{s}");
        assert_eq!(
            s.as_object().unwrap().len(),
            2,
            "pick keeps two fields: {s}"
        );
    }
}

#[tokio::test]
async fn flat_merges_objects_in_leg_order() {
    let (o, c, l) = (
        shop(Kind::Orders).await,
        shop(Kind::Customers).await,
        shop(Kind::Monolith).await,
    );
    let p = start(&details(&o, &c, &l, "flat")).await;
    let v = get(&p.url("/api/order-details/1001")).await.json();
    // The order's fields at the top, the customer's picked fields over them,
    // and the per-element leg (an array) under its name.
    assert_eq!(v["id"], 1001);
    assert!(v["customer_id"].is_number());
    assert!(v["name"].is_string() && v["city"].is_string(), "{v}");
    assert!(v["stock"].is_array(), "{v}");
}

/// An upstream that answers nobody until `n` requests are waiting, then
/// answers them all: legs that did not run concurrently would wait forever.
async fn rendezvous(n: usize) -> Server {
    let barrier = Arc::new(Barrier::new(n));
    raw_upstream(move |mut s: TcpStream| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            write_json(&mut s, br#"{"ok":true,"next":"n1"}"#).await;
        }
    })
    .await
}

#[tokio::test]
async fn independent_legs_run_at_once_and_dependent_legs_after() {
    let meet = rendezvous(2).await;
    let b = backend("echo").await;
    let p = start(&format!(
        r#"
[upstreams.meet]
targets = ["{}"]
[upstreams.echo]
targets = ["{}"]
[[routes]]
path = "/c"
timeout = "5s"
[[routes.compose.legs]]
name = "a"
upstream = "meet"
path = "/a"
[[routes.compose.legs]]
name = "b"
upstream = "meet"
path = "/b"
[[routes.compose.legs]]
name = "after"
upstream = "echo"
path = "/x/{{a.next}}/{{b.ok}}"
"#,
        meet.url(),
        b.url()
    ))
    .await;
    let a = get(&p.url("/c")).await;
    // Sequential legs would leave `a` waiting for `b` until the timeout (504).
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["a"]["ok"], true);
    assert_eq!(v["after"]["path"], "/x/n1/true");
}

/// A route with one required leg `main` at `main_path` on the test backend
/// and an optional `extra` leg (and `later`, reading from `extra`).
fn failing(b: &Server, main_path: &str, extra_path: &str) -> String {
    format!(
        r#"
[upstreams.t]
targets = ["{}"]
[[routes]]
path = "/c/{{id}}"
[[routes.compose.legs]]
name = "main"
upstream = "t"
path = "{main_path}"
timeout = "300ms"
[[routes.compose.legs]]
name = "extra"
upstream = "t"
path = "{extra_path}"
optional = true
timeout = "300ms"
[[routes.compose.legs]]
name = "later"
upstream = "t"
path = "/later/{{extra.server}}"
optional = true
"#,
        b.url()
    )
}

#[tokio::test]
async fn required_leg_failures_fail_the_composite_naming_the_leg() {
    let b = backend("t").await;
    for (main, status, kind, says) in [
        (
            "/status/404",
            404,
            "compose-leg-not-found",
            "leg \"main\" answered 404",
        ),
        (
            "/status/503",
            502,
            "compose-leg-failed",
            "leg \"main\" answered 503",
        ),
        (
            "/delay/3000",
            504,
            "compose-leg-timeout",
            "leg \"main\" did not answer within 300ms",
        ),
        (
            "/small",
            502,
            "compose-leg-failed",
            "leg \"main\" answered with a body that is not JSON",
        ),
        (
            "/bytes/9000000",
            502,
            "compose-leg-failed",
            "over 8388608 bytes",
        ),
    ] {
        let p = start(&failing(&b, main, "/fine")).await;
        let a = get(&p.url("/c/1")).await;
        assert_eq!(a.status, status, "{main}: {}", a.text());
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        let v = a.json();
        assert_eq!(
            v["type"],
            format!("urn:strangler:problem:{kind}"),
            "{main}: {v}"
        );
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{main}: {detail}");
        assert!(!detail.contains("127.0.0.1"), "{detail}");
    }
    // Unreachable.
    let dead = dead_addr().await;
    let p = start(&format!(
        "[upstreams.d]\ntargets = [\"http://{dead}\"]\n[[routes]]\npath = \"/c\"\n[[routes.compose.legs]]\nname = \"gone\"\nupstream = \"d\"\npath = \"/x\"\n"
    ))
    .await;
    let a = get(&p.url("/c")).await;
    assert_eq!(a.status, 502);
    assert!(
        a.text().contains("leg \\\"gone\\\" could not be reached"),
        "{}",
        a.text()
    );
}

#[tokio::test]
async fn optional_failures_become_null_with_everything_that_reads_them() {
    let b = backend("t").await;
    let p = start(&failing(&b, "/main/{id}", "/status/500")).await;
    let a = get(&p.url("/c/7")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-strangler-partial"), Some("extra,later"));
    let v = a.json();
    assert_eq!(v["main"]["path"], "/main/7");
    assert_eq!(v["extra"], json!(null));
    assert_eq!(v["later"], json!(null));

    // When the optional leg works, so does the leg that reads it.
    let p = start(&failing(&b, "/main/{id}", "/fine")).await;
    let a = get(&p.url("/c/7")).await;
    assert_eq!(a.header("x-strangler-partial"), None);
    assert_eq!(a.json()["later"]["path"], "/later/t");
}

#[tokio::test]
async fn a_missing_field_fails_a_required_leg() {
    let b = backend("t").await;
    let p = start(&format!(
        r#"
[upstreams.t]
targets = ["{}"]
[[routes]]
path = "/c"
[[routes.compose.legs]]
name = "a"
upstream = "t"
path = "/a"
[[routes.compose.legs]]
name = "b"
upstream = "t"
path = "/b/{{a.no_such_field}}"
"#,
        b.url()
    ))
    .await;
    let a = get(&p.url("/c")).await;
    assert_eq!(a.status, 502);
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap()
            .contains("leg \"b\" needs `{a.no_such_field}`, which is missing"),
        "{}",
        a.text()
    );
}

#[tokio::test]
async fn legs_carry_the_clients_end_to_end_headers_not_its_body() {
    let b = backend("t").await;
    let p = start(&format!(
        "[upstreams.t]\ntargets = [\"{}\"]\n[[routes]]\npath = \"/c/{{q}}\"\n[[routes.compose.legs]]\nname = \"e\"\nupstream = \"t\"\npath = \"/echo/{{q}}?v={{q}}\"\n",
        b.url()
    ))
    .await;
    let a = send(
        &h1(),
        Request::get(p.url("/c/a%20b"))
            .header("authorization", "Bearer abc")
            .header("cookie", "session=s1")
            .header("x-request-id", "req-123")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("accept-language", "de")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-request-id"), Some("req-123"));
    let e = &a.json()["e"];
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/echo/a%20b?v=a%20b");
    let h = &e["headers"];
    assert_eq!(h["authorization"], "Bearer abc");
    assert_eq!(h["cookie"], "session=s1");
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["accept-language"], "de");
    assert_eq!(
        h["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(h["accept"], "application/json");
    assert!(h.get("content-length").is_none(), "{h}");
}

#[tokio::test]
async fn legs_are_timed_and_failures_counted_in_metrics() {
    let b = backend("t").await;
    let p = start(&format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n{}",
        failing(&b, "/main/{id}", "/status/500")
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(get(&p.url("/c/1")).await.status, 200);
    }
    let admin = p.admin.unwrap();
    let text = get(&format!("http://{admin}/metrics")).await.text();
    for line in [
        "# TYPE strangler_compose_leg_duration_seconds histogram",
        "strangler_compose_leg_duration_seconds_count{route=\"/c/{id}\",leg=\"main\"} 3",
        "strangler_compose_leg_duration_seconds_count{route=\"/c/{id}\",leg=\"extra\"} 3",
        "# TYPE strangler_compose_leg_failures_total counter",
        "strangler_compose_leg_failures_total{route=\"/c/{id}\",leg=\"extra\"} 3",
        // Never sent (it reads the failed leg): counted as failed, not timed.
        "strangler_compose_leg_failures_total{route=\"/c/{id}\",leg=\"later\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("leg_duration_seconds_count{route=\"/c/{id}\",leg=\"later\"}"),
        "{text}"
    );
    assert!(
        !text.contains("failures_total{route=\"/c/{id}\",leg=\"main\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn the_access_log_names_each_legs_outcome() {
    let b = backend("t").await;
    let mut p =
        support::process::ProxyProcess::start(&failing(&b, "/main/{id}", "/status/500")).await;
    let a = get(&p.url("/c/1")).await;
    assert_eq!(a.status, 200);
    let line = p.log_line(|v| v["target"] == "strangler::access").await;
    assert_eq!(
        line["legs"], "main=200 extra=status later=dependency_failed",
        "{line}"
    );
    assert_eq!(line["route"], "/c/{id}");
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn pick_shapes_the_answer_not_what_other_legs_read() {
    let b = backend("t").await;
    let p = start(&format!(
        r#"
[upstreams.t]
targets = ["{}"]
[[routes]]
path = "/c"
[[routes.compose.legs]]
name = "a"
upstream = "t"
path = "/first"
pick = ["method"]
[[routes.compose.legs]]
name = "b"
upstream = "t"
path = "/second/{{a.server}}"
"#,
        b.url()
    ))
    .await;
    let a = get(&p.url("/c")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    // `b` read `a.server`, which `a`'s pick leaves out of the answer.
    assert_eq!(v["a"], json!({"method": "GET"}));
    assert_eq!(v["b"]["path"], "/second/t");
}

#[tokio::test]
async fn a_leg_sends_its_own_method_without_a_body() {
    let b = backend("t").await;
    let p = start(&format!(
        "[upstreams.t]\ntargets = [\"{}\"]\n[[routes]]\npath = \"/c\"\n[[routes.compose.legs]]\nname = \"search\"\nupstream = \"t\"\npath = \"/search\"\nmethod = \"POST\"\n",
        b.url()
    ))
    .await;
    let a = send(
        &h1(),
        Request::get(p.url("/c")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let leg = &a.json()["search"];
    assert_eq!(leg["method"], "POST");
    assert_eq!(leg["body_len"], 0);
}
