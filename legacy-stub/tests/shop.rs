//! End-to-end tests of the Tea & Co. programs over real sockets: the
//! monolith's HTML and JSON APIs, the extracted orders and customers
//! services, and the contract between them (same data; the orders service
//! differs only in its `created_at` format).

mod common;

use common::{client, empty, full, get, header, json, parse_rfc3339_utc, send};
use http::{Method, Request, StatusCode};
use legacy_stub::{Kind, spawn_local};
use serde_json::Value;

/// Remove the `meta` noise from a resource so two answers can be compared.
fn without_meta(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        let meta = obj.remove("meta").expect("resource has meta");
        let generated = meta["generated_at"].as_str().expect("generated_at");
        assert!(
            generated.ends_with('Z') && generated.contains('.'),
            "{generated}"
        );
        parse_rfc3339_utc(generated);
    }
    v
}

/// The orders in a list answer, or the single order of a detail answer.
fn orders_of(v: Value) -> Vec<Value> {
    match v.get("orders") {
        Some(list) => list.as_array().expect("array").clone(),
        None => vec![v],
    }
}

#[tokio::test]
async fn monolith_home_page_is_html() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let resp = get(&server.url()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&resp, "x-served-by"), "legacy");
    let html = std::str::from_utf8(resp.body()).expect("utf-8");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Tea &amp; Co."));
    assert!(html.contains("TEA-001") && html.contains("12.50"));
    assert!(html.contains("/api/orders"));
    assert!(html.contains("served by the legacy monolith"));
}

#[tokio::test]
async fn monolith_order_1001_has_the_documented_shape() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    for path in ["/api/orders/1001", "/orders/1001"] {
        let resp = get(&format!("{}{path}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, "content-type"), "application/json");
        assert_eq!(header(&resp, "x-served-by"), "legacy");
        let order = without_meta(json(&resp));
        assert_eq!(order["id"], 1001);
        assert_eq!(order["customer_id"], 42);
        assert_eq!(order["status"], "shipped");
        assert_eq!(order["created_at"], "2026-03-02T14:05:11Z");
        assert_eq!(order["total"], "34.50");
        let lines = order["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["sku"], "TEA-001");
        assert_eq!(lines[0]["qty"], 2);
        assert_eq!(lines[0]["price"], "12.50");
    }
}

#[tokio::test]
async fn monolith_lists_and_filters_orders() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let all = json(&get(&format!("{}/api/orders", server.url())).await);
    let ids: Vec<u64> = all["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["id"].as_u64())
        .collect();
    assert_eq!(ids, [1001, 1002, 1003, 1004, 1005, 1006]);
    assert!(all["meta"]["generated_at"].is_string());

    let mine = json(&get(&format!("{}/api/orders?customer_id=42", server.url())).await);
    let ids: Vec<u64> = mine["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .filter_map(|o| o["id"].as_u64())
        .collect();
    assert_eq!(ids, [1001, 1003]);

    let bad = get(&format!("{}/api/orders?customer_id=abc", server.url())).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    for (path, error) in [
        ("/api/orders/9999", "order not found"),
        ("/api/orders/abc", "order not found"),
        ("/api/orders/99999999999999999999999999", "order not found"),
        ("/api/orders/-1", "order not found"),
        ("/api/customers/7", "customer not found"),
        ("/customers/x%00y", "customer not found"),
        ("/api/inventory/NOPE-1", "sku not found"),
        ("/no/such/page", "not found"),
        ("/api/orders/1001/extra", "not found"),
    ] {
        let resp = get(&format!("{}{path}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&resp, "x-served-by"), "legacy", "{path}");
        assert_eq!(json(&resp)["error"], error, "{path}");
    }
    let resp = get(&format!("{}/api/orders/abc", server.url())).await;
    assert_eq!(json(&resp)["id"], "abc");
    let resp = get(&format!("{}/nowhere?x=1", server.url())).await;
    assert_eq!(json(&resp)["path"], "/nowhere");
}

#[tokio::test]
async fn customers_inventory_and_health() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let c = without_meta(json(
        &get(&format!("{}/api/customers/42", server.url())).await,
    ));
    assert_eq!(c["id"], 42);
    assert_eq!(c["name"], "Ada Lovelace");
    assert!(c["email"].as_str().expect("email").contains('@'));
    let p = without_meta(json(
        &get(&format!("{}/inventory/TEA-001", server.url())).await,
    ));
    assert_eq!(p["sku"], "TEA-001");
    assert_eq!(p["price"], "12.50");
    assert!(p["available"].is_u64());
    let h = get(&format!("{}/health", server.url())).await;
    assert_eq!(h.status(), StatusCode::OK);
    assert_eq!(json(&h), serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let c = client();
    for (method, path, allow) in [
        (Method::DELETE, "/api/orders/1001", "GET, HEAD"),
        (Method::PUT, "/api/orders", "GET, HEAD, POST"),
        (Method::POST, "/api/customers/42", "GET, HEAD"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", server.url()))
            .body(empty())
            .expect("request");
        let resp = send(&c, req).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(header(&resp, "allow"), allow);
    }
}

#[tokio::test]
async fn post_order_creates_201_with_location() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let c = client();
    let body = r#"{"customer_id": 42, "lines": [{"sku": "TEA-001", "qty": 2}, {"sku": "TEA-003", "qty": 1}]}"#;
    for (expected_id, path) in [(2001, "/api/orders"), (2002, "/orders")] {
        let req = Request::post(format!("{}{path}", server.url()))
            .header("content-type", "application/json")
            .body(full(body))
            .expect("request");
        let resp = send(&c, req).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header(&resp, "location"),
            format!("/api/orders/{expected_id}")
        );
        let order = without_meta(json(&resp));
        assert_eq!(order["id"], expected_id);
        assert_eq!(order["customer_id"], 42);
        assert_eq!(order["lines"][0]["sku"], "TEA-001");
        assert_eq!(order["total"], "39.00");
        assert_eq!(order["status"], "new");
    }

    let req = Request::post(format!("{}/api/orders", server.url()))
        .body(full("{not json"))
        .expect("request");
    let resp = send(&c, req).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&resp)["error"], "invalid JSON");

    let req = Request::post(format!("{}/api/orders", server.url()))
        .body(full(vec![b' '; 64 * 1024 + 1]))
        .expect("request");
    let resp = send(&c, req).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn orders_service_differs_only_in_created_at_format() {
    let legacy = spawn_local(Kind::Monolith).await.expect("spawn");
    let orders = spawn_local(Kind::Orders).await.expect("spawn");
    for path in [
        "/api/orders/1001",
        "/api/orders/1006",
        "/orders/1003",
        "/api/orders",
    ] {
        let a = get(&format!("{}{path}", legacy.url())).await;
        let b = get(&format!("{}{path}", orders.url())).await;
        assert_eq!(header(&b, "x-served-by"), "orders");
        assert_eq!(a.status(), b.status());
        let list_a = orders_of(without_meta(json(&a)));
        let list_b = orders_of(without_meta(json(&b)));
        assert_eq!(list_a.len(), list_b.len());
        for (oa, mut ob) in list_a.into_iter().zip(list_b) {
            let ta = oa["created_at"].as_str().expect("created_at").to_owned();
            let tb = ob["created_at"].as_str().expect("created_at").to_owned();
            assert_ne!(ta, tb, "the formats must differ");
            assert!(ta.ends_with('Z') && !ta.contains('.'), "{ta}");
            assert!(tb.ends_with(".000+00:00"), "{tb}");
            assert_eq!(
                parse_rfc3339_utc(&ta),
                parse_rfc3339_utc(&tb),
                "same instant"
            );
            ob["created_at"] = Value::from(ta);
            assert_eq!(oa, ob);
        }
    }
    let post = Request::post(format!("{}/api/orders", orders.url()))
        .body(full(r#"{"customer_id":43,"lines":[]}"#))
        .expect("request");
    let resp = send(&client(), post).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "location"), "/api/orders/2001");
    assert!(
        json(&resp)["created_at"]
            .as_str()
            .expect("created_at")
            .ends_with("+00:00")
    );
}

#[tokio::test]
async fn services_404_what_they_did_not_take_over() {
    let orders = spawn_local(Kind::Orders).await.expect("spawn");
    let customers = spawn_local(Kind::Customers).await.expect("spawn");
    for path in [
        "/",
        "/api/customers/42",
        "/api/inventory/TEA-001",
        "/customers/42",
    ] {
        let resp = get(&format!("{}{path}", orders.url())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "orders {path}");
        assert_eq!(header(&resp, "x-served-by"), "orders");
        assert_eq!(header(&resp, "content-type"), "application/json");
    }
    for path in ["/", "/api/orders", "/api/orders/1001", "/inventory/TEA-001"] {
        let resp = get(&format!("{}{path}", customers.url())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "customers {path}");
        assert_eq!(header(&resp, "x-served-by"), "customers");
    }
    for server in [&orders, &customers] {
        let resp = get(&format!("{}/health", server.url())).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn customers_service_matches_monolith_apart_from_meta() {
    let legacy = spawn_local(Kind::Monolith).await.expect("spawn");
    let customers = spawn_local(Kind::Customers).await.expect("spawn");
    for path in [
        "/api/customers/42",
        "/api/customers/46",
        "/customers/43",
        "/api/customers/1",
    ] {
        let a = get(&format!("{}{path}", legacy.url())).await;
        let b = get(&format!("{}{path}", customers.url())).await;
        assert_eq!(a.status(), b.status(), "{path}");
        assert_eq!(header(&b, "x-served-by"), "customers");
        let (mut a, mut b) = (json(&a), json(&b));
        if a.get("meta").is_some() {
            a = without_meta(a);
            b = without_meta(b);
        }
        assert_eq!(a, b, "{path}");
    }
}
