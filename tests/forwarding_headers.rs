//! Headers through the proxy, over real sockets (SPEC 3.1): hop-by-hop
//! headers are dropped in both directions while end-to-end ones pass
//! untouched; `x-forwarded-*` and `x-request-id` are set; Host is kept or
//! replaced by the upstream's `host`; rewrites keep the query string byte for
//! byte.

mod support;

use http::Request;
use http_body_util::Full;
use support::raw::{exchange, raw_upstream};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// 1. Hop-by-hop headers

#[tokio::test]
async fn hop_by_hop_headers_are_removed_upstream_and_end_to_end_ones_pass() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let request = format!(
        "GET /echo/hop HTTP/1.1\r\n\
         host: hop.example\r\n\
         connection: x-secret, X-Also-Secret\r\n\
         connection: close\r\n\
         keep-alive: timeout=5, max=100\r\n\
         proxy-connection: keep-alive\r\n\
         te: trailers\r\n\
         trailer: x-checksum\r\n\
         upgrade: websocket\r\n\
         x-secret: s3cr3t\r\n\
         x-also-secret: also\r\n\
         authorization: Bearer abc.def.ghi\r\n\
         cookie: session=1; theme=dark\r\n\
         accept-language: de-CH, en;q=0.5\r\n\
         traceparent: {traceparent}\r\n\
         tracestate: {tracestate}\r\n\
         x-kept: yes\r\n\
         \r\n"
    );
    let a = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-served-by"), Some("b"));
    let echo = a.json();
    let seen = &echo["headers"];
    for gone in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "x-secret",
        "x-also-secret",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "hop-by-hop header `{gone}` reached the upstream: {seen}"
        );
    }
    for (name, value) in [
        ("authorization", "Bearer abc.def.ghi"),
        ("cookie", "session=1; theme=dark"),
        ("accept-language", "de-CH, en;q=0.5"),
        ("traceparent", traceparent),
        ("tracestate", tracestate),
        ("x-kept", "yes"),
    ] {
        assert_eq!(seen[name], value, "end-to-end header `{name}`: {seen}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_from_upstream_answers() {
    // An upstream answering with every kind of hop-by-hop header.
    let up = raw_upstream(|mut s: TcpStream| async move {
        let answer = "HTTP/1.1 200 OK\r\n\
                      content-length: 2\r\n\
                      connection: keep-alive, x-internal\r\n\
                      keep-alive: timeout=5\r\n\
                      proxy-connection: keep-alive\r\n\
                      x-internal: secret\r\n\
                      trailer: x-sum\r\n\
                      upgrade: h2c\r\n\
                      x-kept: yes\r\n\
                      \r\nok";
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        // Keep the connection until the proxy lets it go.
        let mut chunk = [0u8; 4096];
        while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
    })
    .await;
    let proxy = start(&default_to(&up.url())).await;
    let a = get(&proxy.url("/x")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "ok");
    assert_eq!(a.header("x-kept"), Some("yes"));
    for gone in [
        "keep-alive",
        "proxy-connection",
        "x-internal",
        "trailer",
        "upgrade",
    ] {
        assert!(
            a.headers.get(gone).is_none(),
            "hop-by-hop header `{gone}` reached the client: {:?}",
            a.headers
        );
    }
    if let Some(c) = a.header("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-internal"),
            "upstream connection header passed through: {c}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. x-forwarded-* and x-request-id

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn forwarded_headers_are_added_and_request_ids_kept_or_generated() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let client = h1();

    let req = Request::get(proxy.url("/who"))
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-request-id", "abc-123")
        .body(Full::default())
        .unwrap();
    let a = send(&client, req).await;
    assert_eq!(a.status, 200);
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["x-forwarded-host"], "shop.example.com", "{seen}");
    assert_eq!(seen["x-request-id"], "abc-123", "{seen}");
    assert_eq!(a.header("x-request-id"), Some("abc-123"));

    // No x-forwarded-for from the client: just the client's address.
    let a = get(&proxy.url("/who")).await;
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");

    // Missing, with a space, or far too long: replaced by one generated id,
    // the same upstream and on the response.
    let long = "a".repeat(200);
    for sent in [None, Some("has space"), Some(long.as_str())] {
        let mut req = Request::get(proxy.url("/who"));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let a = send(&client, req.body(Full::default()).unwrap()).await;
        assert_eq!(a.status, 200);
        let echo = a.json();
        let upstream_id = echo["headers"]["x-request-id"]
            .as_str()
            .unwrap_or_else(|| panic!("no x-request-id upstream for {sent:?}: {echo}"));
        let response_id = a
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on the response for {sent:?}"));
        assert!(
            is_generated_id(upstream_id),
            "{sent:?}: upstream got {upstream_id:?}, not a 32-hex id"
        );
        assert_eq!(upstream_id, response_id, "{sent:?}");
    }
}

// ---------------------------------------------------------------------------
// 3. Host

#[tokio::test]
async fn the_clients_host_is_kept_unless_the_upstream_sets_one() {
    let legacy = backend("legacy").await;
    let orders = backend("orders").await;
    let proxy = start(&format!(
        r#"
[upstreams.legacy]
targets = ["{}"]
[upstreams.orders]
targets = ["{}"]
host = "orders.internal"
[default]
upstream = "legacy"
[[routes]]
prefix = "/api/orders"
upstream = "orders"
"#,
        legacy.url(),
        orders.url()
    ))
    .await;
    let client = h1();
    let req = |path: &str| {
        Request::get(proxy.url(path))
            .header("host", "Shop.Example.com:8080")
            .body(Full::default())
            .unwrap()
    };

    let a = send(&client, req("/home")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    let seen = &a.json()["headers"];
    assert_eq!(seen["host"], "Shop.Example.com:8080", "{seen}");

    let a = send(&client, req("/api/orders/1")).await;
    assert_eq!(a.header("x-served-by"), Some("orders"));
    let seen = &a.json()["headers"];
    assert_eq!(seen["host"], "orders.internal", "{seen}");
    assert_eq!(seen["x-forwarded-host"], "Shop.Example.com:8080", "{seen}");
}

// ---------------------------------------------------------------------------
// 4. Query strings

#[tokio::test]
async fn rewrite_and_strip_prefix_keep_the_query_string_exactly() {
    let orders = backend("orders").await;
    let customers = backend("customers").await;
    let proxy = start(&format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.customers]
targets = ["{}"]
[[routes]]
path = "/api/orders/{{*rest}}"
upstream = "orders"
rewrite = "/orders/{{rest}}"
[[routes]]
prefix = "/api/customers"
upstream = "customers"
strip_prefix = "/api"
"#,
        orders.url(),
        customers.url()
    ))
    .await;
    let query = "x=%2F&q=a+b&sp=%20&u=%41&slash=/a/b&next=%3Fk%3Dv&ask=1?2&empty=&flag&x=2";
    for (sent, server, expected) in [
        ("/api/orders/17", "orders", "/orders/17"),
        ("/api//orders/%31%37", "orders", "/orders/17"),
        ("/api/customers/42", "customers", "/customers/42"),
    ] {
        let a = exchange(
            proxy.addr,
            format!("GET {sent}?{query} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(a.status, 200, "{sent}: {a:?}");
        assert_eq!(a.header("x-served-by"), Some(server), "{sent}");
        let echo = a.json();
        assert_eq!(echo["path"], format!("{expected}?{query}"), "{sent}");
        assert_eq!(echo["query"], query, "{sent}");
    }
}
