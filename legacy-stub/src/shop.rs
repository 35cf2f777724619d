//! HTTP routing for the three shop programs — the legacy monolith, the
//! extracted orders service and the extracted customers service. Each
//! resource answers under `/api/...` and, for internal-style rewrites, under
//! the same path without the `/api` prefix. Which resources a program serves
//! is decided by [`serves`]: the services answer 404 for everything they did
//! not take over, which strangler's fallback-on-404 tests rely on.

use std::sync::atomic::Ordering;

use http::header::LOCATION;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::Kind;
use crate::catalog::{self, TimeStyle};
use crate::respond::{self, Resp};
use crate::server::App;

/// Largest accepted `POST /api/orders` body; larger answers 413.
pub(crate) const MAX_ORDER_BODY: usize = 64 * 1024;

const READ_METHODS: &str = "GET, HEAD";
const COLLECTION_METHODS: &str = "GET, HEAD, POST";

/// A parsed shop path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Home,
    Health,
    Orders,
    Order(&'a str),
    Customer(&'a str),
    Inventory(&'a str),
    Unknown,
}

/// Map a request path (without query) to a route. `/api/x` and `/x` are the
/// same resource; empty ids and extra segments are unknown paths.
fn route(path: &str) -> Route<'_> {
    match path {
        "/" => return Route::Home,
        "/health" => return Route::Health,
        _ => {}
    }
    let rest = match path.strip_prefix("/api/") {
        Some(rest) => rest,
        None => match path.strip_prefix('/') {
            Some(rest) => rest,
            None => return Route::Unknown,
        },
    };
    match rest.split_once('/') {
        None if rest == "orders" => Route::Orders,
        Some((collection, id)) if !id.is_empty() && !id.contains('/') => match collection {
            "orders" => Route::Order(id),
            "customers" => Route::Customer(id),
            "inventory" => Route::Inventory(id),
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

/// Whether `kind` implements `route` (the extracted services implement only
/// their own slice of the monolith).
fn serves(kind: &Kind, route: &Route<'_>) -> bool {
    match kind {
        Kind::Monolith => !matches!(route, Route::Unknown),
        Kind::Orders => matches!(route, Route::Health | Route::Orders | Route::Order(_)),
        Kind::Customers => matches!(route, Route::Health | Route::Customer(_)),
        Kind::Test { .. } => false,
    }
}

/// The `created_at` style of each shop program.
fn time_style(kind: &Kind) -> TimeStyle {
    match kind {
        Kind::Orders => TimeStyle::MillisOffset,
        _ => TimeStyle::Seconds,
    }
}

/// Answer one request for a shop program.
pub(crate) async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let route = route(&path);
    if !serves(&app.kind, &route) {
        return respond::not_found(&path);
    }
    let style = time_style(&app.kind);
    let method = req.method().clone();
    let is_read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Orders if method == Method::POST => create_order(app, req, style).await,
        Route::Orders if is_read => list_orders(req.uri().query(), style),
        Route::Orders => respond::method_not_allowed(&method, COLLECTION_METHODS),
        _ if !is_read => respond::method_not_allowed(&method, READ_METHODS),
        Route::Home => home_page(),
        Route::Health => respond::json(StatusCode::OK, &json!({"status": "ok"})),
        Route::Order(id) => match catalog::find_order(id) {
            Some(order) => ok(catalog::with_meta(catalog::order_json(order, style))),
            None => missing("order not found", id),
        },
        Route::Customer(id) => match catalog::find_customer(id) {
            Some(c) => ok(catalog::with_meta(catalog::customer_json(c))),
            None => missing("customer not found", id),
        },
        Route::Inventory(sku) => match catalog::find_product(sku) {
            Some(p) => ok(catalog::with_meta(catalog::inventory_json(p))),
            None => respond::json(
                StatusCode::NOT_FOUND,
                &json!({"error": "sku not found", "sku": sku}),
            ),
        },
        Route::Unknown => respond::not_found(&path),
    }
}

fn ok(value: Value) -> Resp {
    respond::json(StatusCode::OK, &value)
}

fn missing(error: &str, id: &str) -> Resp {
    respond::json(StatusCode::NOT_FOUND, &json!({"error": error, "id": id}))
}

/// `GET /api/orders[?customer_id=N]`. A non-numeric `customer_id` is a 400;
/// other query parameters are ignored.
fn list_orders(query: Option<&str>, style: TimeStyle) -> Resp {
    let raw = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "customer_id")
        .map(|(_, v)| v);
    let customer_id = match raw {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => return respond::bad_request("invalid customer_id", Some(("customer_id", v))),
        },
    };
    ok(catalog::orders_list_json(customer_id, style))
}

/// `POST /api/orders`: a JSON object body of at most 64 KiB becomes a new
/// order (201 + `Location`). Nothing is stored; ids come from a per-server
/// counter starting at 2001.
async fn create_order(app: &App, req: Request<Incoming>, style: TimeStyle) -> Resp {
    let (parts, body) = req.into_parts();
    let bytes = match respond::read_limited(&parts.headers, body, MAX_ORDER_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => return respond::read_error(&e, MAX_ORDER_BODY),
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return respond::bad_request("invalid JSON", Some(("detail", &e.to_string()))),
    };
    let Some(fields) = value.as_object() else {
        return respond::bad_request("order must be a JSON object", None);
    };
    let id = app.next_order_id.fetch_add(1, Ordering::SeqCst);
    let mut resp = respond::json(
        StatusCode::CREATED,
        &catalog::new_order_json(id, fields, style),
    );
    respond::set_header(&mut resp, LOCATION, &format!("/api/orders/{id}"));
    resp
}

/// Minimal HTML escaping for text placed into the home page.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The monolith's home page: a small, handwritten shop front.
fn home_page() -> Resp {
    let mut rows = String::new();
    for p in catalog::PRODUCTS {
        let stock = if p.available == 0 {
            "sold out".to_owned()
        } else {
            format!("{} in stock", p.available)
        };
        rows.push_str(&format!(
            "      <tr><td><code>{}</code></td><td>{}</td><td class=\"price\">&euro; {}</td>\
             <td>{}</td></tr>\n",
            escape(p.sku),
            escape(p.name),
            catalog::money(p.price_cents),
            stock
        ));
    }
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tea &amp; Co. — Fine Teas Since 1998</title>
  <style>
    body {{ font-family: Georgia, serif; margin: 2em auto; max-width: 46em; color: #2b2b2b; }}
    header {{ border-bottom: 3px double #6b4f2c; margin-bottom: 1em; }}
    h1 {{ color: #6b4f2c; margin-bottom: 0.1em; }}
    table {{ border-collapse: collapse; width: 100%; }}
    td, th {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.5em; text-align: left; }}
    .price {{ text-align: right; white-space: nowrap; }}
    footer {{ margin-top: 2em; font-size: 0.85em; color: #777; }}
  </style>
</head>
<body>
  <header>
    <h1>Tea &amp; Co.</h1>
    <p>Fine loose-leaf teas, shipped from our warehouse since 1998.</p>
  </header>
  <h2>Our teas</h2>
  <table>
    <thead><tr><th>SKU</th><th>Product</th><th class="price">Price</th><th>Stock</th></tr></thead>
    <tbody>
{rows}    </tbody>
  </table>
  <h2>For partners: JSON APIs</h2>
  <ul>
    <li><a href="/api/orders">/api/orders</a> (filter with <a href="/api/orders?customer_id=42">?customer_id=42</a>)</li>
    <li><a href="/api/orders/1001">/api/orders/1001</a></li>
    <li><a href="/api/customers/42">/api/customers/42</a></li>
    <li><a href="/api/inventory/TEA-001">/api/inventory/TEA-001</a></li>
    <li><a href="/health">/health</a></li>
  </ul>
  <footer>&copy; Tea &amp; Co. &middot; served by the legacy monolith</footer>
</body>
</html>
"#
    );
    respond::with_body(StatusCode::OK, "text/html; charset=utf-8", html.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_api_prefix() {
        assert_eq!(route("/"), Route::Home);
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/api/orders"), Route::Orders);
        assert_eq!(route("/orders"), Route::Orders);
        assert_eq!(route("/api/orders/1001"), Route::Order("1001"));
        assert_eq!(route("/orders/abc"), Route::Order("abc"));
        assert_eq!(route("/api/customers/42"), Route::Customer("42"));
        assert_eq!(route("/customers/42"), Route::Customer("42"));
        assert_eq!(route("/api/inventory/TEA-001"), Route::Inventory("TEA-001"));
        assert_eq!(route("/inventory/TEA-001"), Route::Inventory("TEA-001"));
    }

    #[test]
    fn odd_paths_are_unknown() {
        for p in [
            "",
            "*",
            "/api",
            "/api/",
            "/orders/",
            "/orders/1/x",
            "/customers",
            "/api/customers/",
            "/apiorders",
            "/api/health",
            "//orders",
        ] {
            assert_eq!(route(p), Route::Unknown, "{p:?}");
        }
    }

    #[test]
    fn services_serve_only_their_slice() {
        assert!(serves(&Kind::Orders, &Route::Order("1")));
        assert!(!serves(&Kind::Orders, &Route::Customer("42")));
        assert!(!serves(&Kind::Orders, &Route::Inventory("TEA-001")));
        assert!(!serves(&Kind::Orders, &Route::Home));
        assert!(serves(&Kind::Customers, &Route::Customer("42")));
        assert!(!serves(&Kind::Customers, &Route::Orders));
        assert!(serves(&Kind::Monolith, &Route::Inventory("x")));
    }
}
