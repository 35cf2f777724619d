//! Routing over real sockets: the most specific route wins, rewrites and
//! strip_prefix keep the query, spellings normalize to one path, and requests
//! nothing matches go to the default or get 404.

mod support;

use http::Request;
use http_body_util::Full;
use support::raw::{raw, raw_status};
use support::*;

async fn three_backends() -> (Server, Server, Server) {
    (
        backend("legacy").await,
        backend("orders").await,
        backend("customers").await,
    )
}

fn shop(legacy: &Server, orders: &Server, customers: &Server) -> String {
    format!(
        r#"
[upstreams.legacy]
targets = ["{}"]
[upstreams.orders]
targets = ["{}"]
[upstreams.customers]
targets = ["{}"]
[default]
upstream = "legacy"

[[routes]]
name = "all-api"
prefix = "/api"
upstream = "legacy"

[[routes]]
name = "orders"
path = "/api/orders/{{*rest}}"
methods = ["GET", "POST"]
upstream = "orders"
rewrite = "/orders/{{rest}}"

[[routes]]
name = "order-beta"
path = "/api/orders/{{id}}"
headers = {{ "x-beta" = "1" }}
upstream = "customers"
rewrite = "/beta/{{id}}"

[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "customers"
strip_prefix = "/api"

[[routes]]
name = "shop-host"
prefix = "/"
host = "shop.example.com"
upstream = "customers"
"#,
        legacy.url(),
        orders.url(),
        customers.url()
    )
}

#[tokio::test]
async fn the_most_specific_route_wins_and_paths_are_rewritten() {
    let (l, o, c) = three_backends().await;
    let proxy = start(&shop(&l, &o, &c)).await;

    let a = get(&proxy.url("/api/orders/17/lines?expand=1&x=%2F")).await;
    assert_eq!(a.header("x-served-by"), Some("orders"));
    assert_eq!(a.json()["path"], "/orders/17/lines?expand=1&x=%2F");

    // Same pattern class, more specific param route only with its header.
    let req = Request::get(proxy.url("/api/orders/17"))
        .header("x-beta", "1")
        .body(Full::default())
        .unwrap();
    let a = send(&h1(), req).await;
    assert_eq!(a.header("x-served-by"), Some("customers"));
    assert_eq!(a.json()["path"], "/beta/17");

    // DELETE is not in the orders route's methods: falls through to the prefix.
    let req = Request::delete(proxy.url("/api/orders/17"))
        .body(Full::default())
        .unwrap();
    let a = send(&h1(), req).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    assert_eq!(a.json()["path"], "/api/orders/17");

    let a = get(&proxy.url("/api/customers/42?q=1")).await;
    assert_eq!(a.header("x-served-by"), Some("customers"));
    assert_eq!(a.json()["path"], "/customers/42?q=1");

    let a = get(&proxy.url("/elsewhere")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    assert_eq!(a.json()["path"], "/elsewhere");
}

#[tokio::test]
async fn host_conditions_select_routes() {
    let (l, o, c) = three_backends().await;
    let proxy = start(&shop(&l, &o, &c)).await;
    let req = Request::get(proxy.url("/anything"))
        .header("host", "Shop.Example.com:8080")
        .body(Full::default())
        .unwrap();
    let a = send(&h1(), req).await;
    assert_eq!(a.header("x-served-by"), Some("customers"));
}

#[tokio::test]
async fn no_spelling_bypasses_a_route() {
    let (l, o, c) = three_backends().await;
    let proxy = start(&shop(&l, &o, &c)).await;
    for spelling in [
        "/api/orders/17",
        "/api//orders/17",
        "/api/./orders/17",
        "/api/x/../orders/17",
        "/%61pi/%6Frders/17",
        "/api/orders/%31%37",
        "//api/orders/17",
    ] {
        let a = raw(
            proxy.addr,
            format!("GET {spelling} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes(),
            std::time::Duration::from_secs(5),
        )
        .await;
        assert_eq!(raw_status(&a), Some(200), "{spelling}: {a}");
        assert!(a.contains("x-served-by: orders"), "{spelling}: {a}");
        assert!(a.contains(r#""path":"/orders/17""#), "{spelling}: {a}");
    }
}

#[tokio::test]
async fn bad_paths_are_refused_with_400() {
    let (l, o, c) = three_backends().await;
    let proxy = start(&shop(&l, &o, &c)).await;
    for path in ["/../etc/passwd", "/api/%2e%2e/%2e%2e/x", "/a%zz", "/a%"] {
        let a = raw(
            proxy.addr,
            format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes(),
            std::time::Duration::from_secs(5),
        )
        .await;
        assert_eq!(raw_status(&a), Some(400), "{path}: {a}");
        assert!(a.contains("application/problem+json"), "{path}: {a}");
    }
    assert_eq!(
        l.requests() + o.requests() + c.requests(),
        0,
        "nothing forwarded"
    );
}

#[tokio::test]
async fn without_a_default_unmatched_requests_get_404() {
    let o = backend("orders").await;
    let proxy = start(&format!(
        "[upstreams.orders]\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/api/orders\"\nupstream = \"orders\"\n",
        o.url()
    ))
    .await;
    let a = get(&proxy.url("/nope")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let v = a.json();
    assert_eq!(v["status"], 404);
    assert_eq!(v["request_id"].as_str(), a.header("x-request-id"));
    assert_eq!(get(&proxy.url("/api/orders")).await.status, 200);
}
