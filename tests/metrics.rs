//! `GET /metrics` on the admin listener after real traffic (SPEC 5): every
//! family with its `# TYPE` and labels, requests counted by status class,
//! duration histograms whose buckets, count and sum agree, and label values
//! that come from the config only, never from request paths.

mod support;

use std::collections::HashSet;

use support::*;

fn config(legacy: &str, orders: &str, shadow: &str) -> String {
    format!(
        r#"[server]
admin = "127.0.0.1:0"
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.orders]
targets = ["{orders}"]
[upstreams.shadow]
targets = ["{shadow}"]
[default]
upstream = "legacy"
[[routes]]
name = "orders"
prefix = "/api/orders"
strip_prefix = "/api/orders"
upstream = "orders"
[[routes]]
name = "cust\"omers"
prefix = "/api/customers"
strip_prefix = "/api/customers"
upstream = "legacy"
shift = {{ to = "orders", percent = 50 }}
shadow = {{ to = "shadow", percent = 100 }}
[[routes]]
name = "details"
path = "/api/details/{{id}}"
[routes.compose]
[[routes.compose.legs]]
name = "a"
upstream = "orders"
path = "/small"
"#
    )
}

async fn scrape(p: &TestProxy) -> String {
    let a = get(&format!("http://{}/metrics", p.admin.unwrap())).await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
            || a.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        a.header("content-type")
    );
    a.text()
}

/// The value of the sample line `series` (name and labels exactly as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn every_family_is_exposed_with_its_labels_after_traffic() {
    let (legacy, orders, shadow) = (
        backend("legacy").await,
        backend("orders").await,
        backend("shadow").await,
    );
    let p = start(&config(&legacy.url(), &orders.url(), &shadow.url())).await;

    for _ in 0..3 {
        assert_eq!(get(&p.url("/api/orders/small")).await.status, 200);
    }
    assert_eq!(get(&p.url("/api/orders/status/404")).await.status, 404);
    assert_eq!(get(&p.url("/api/orders/status/503")).await.status, 503);
    assert_eq!(get(&p.url("/api/orders/status/302")).await.status, 302);
    assert_eq!(get(&p.url("/elsewhere")).await.status, 200);
    for _ in 0..10 {
        get(&p.url("/api/customers/small")).await;
    }
    get(&p.url("/api/details/1")).await;
    // Refused before matching: counted under (none).
    let raw = support::raw::exchange(p.addr, b"GET /x HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw.status, 400);

    counted(&p, 19).await;
    let text = scrape(&p).await;
    for (family, kind) in [
        ("strangler_requests_total", "counter"),
        ("strangler_request_duration_seconds", "histogram"),
        ("strangler_shift_percent", "gauge"),
        ("strangler_shadow_total", "counter"),
        ("strangler_compose_leg_duration_seconds", "histogram"),
        ("strangler_compose_leg_failures_total", "counter"),
        ("strangler_config_reloads_total", "counter"),
        ("strangler_upstream_up", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "no {family} {kind} in\n{text}"
        );
    }

    // Every target is up: none has failed a check or been ejected.
    let ups: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("strangler_upstream_up{"))
        .collect();
    assert!(!ups.is_empty(), "{text}");
    assert!(ups.iter().all(|l| l.ends_with(" 1")), "{ups:?}");

    // Status classes, per route and upstream.
    let orders_code = |code: &str| {
        value(
            &text,
            &format!(
                "strangler_requests_total{{route=\"orders\",upstream=\"orders\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(orders_code("2xx"), Some(3.0), "{text}");
    assert_eq!(orders_code("3xx"), Some(1.0));
    assert_eq!(orders_code("4xx"), Some(1.0));
    assert_eq!(orders_code("5xx"), Some(1.0));
    assert_eq!(orders_code("1xx"), None, "1xx only once there is one");
    assert_eq!(
        value(
            &text,
            "strangler_requests_total{route=\"(default)\",upstream=\"legacy\",code=\"2xx\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "strangler_requests_total{route=\"(none)\",upstream=\"(none)\",code=\"4xx\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "strangler_requests_total{route=\"details\",upstream=\"(compose)\",code=\"2xx\"}"
        )
        .or(value(
            &text,
            "strangler_requests_total{route=\"details\",upstream=\"(compose)\",code=\"5xx\"}"
        ))
        .map(|_| ()),
        Some(()),
        "{text}"
    );
    // The shifted route's ten requests, split between its sides, names escaped.
    let side = |u: &str| {
        value(
            &text,
            &format!(
                "strangler_requests_total{{route=\"cust\\\"omers\",upstream=\"{u}\",code=\"2xx\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(side("legacy") + side("orders"), 10.0, "{text}");

    // Histograms: cumulative buckets ending in +Inf == _count; a sum.
    let h = "strangler_request_duration_seconds";
    let labels = "route=\"orders\",upstream=\"orders\"";
    let mut last = 0.0;
    let mut buckets = 0;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix(&format!("{h}_bucket{{{labels},le=\"")) {
            let n: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(n >= last, "buckets are cumulative: {l}");
            last = n;
            buckets += 1;
        }
    }
    assert_eq!(buckets, 15, "14 bounds and +Inf\n{text}");
    assert!(text.contains(&format!("{h}_bucket{{{labels},le=\"+Inf\"}} 6\n")));
    assert!(text.contains(&format!("{h}_bucket{{{labels},le=\"0.001\"}}")));
    assert!(
        text.contains(&format!("{h}_bucket{{{labels},le=\"30\"}}")),
        "{text}"
    );
    assert_eq!(value(&text, &format!("{h}_count{{{labels}}}")), Some(6.0));
    let sum = value(&text, &format!("{h}_sum{{{labels}}}")).unwrap();
    assert!(sum > 0.0 && sum < 6.0 * 30.0, "{sum}");
}

/// Every series' label set, from the sample lines.
fn series(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

#[tokio::test]
async fn distinct_paths_add_no_series() {
    let (legacy, orders, shadow) = (
        backend("legacy").await,
        backend("orders").await,
        backend("shadow").await,
    );
    // No default: unmatched paths are 404s the proxy answers itself.
    let toml = config(&legacy.url(), &orders.url(), &shadow.url())
        .replace("[default]\nupstream = \"legacy\"\n", "");
    let p = start(&toml).await;
    get(&p.url("/nothing/here")).await;
    get(&p.url("/api/orders/a")).await;
    counted(&p, 2).await;
    let before = series(&scrape(&p).await);

    let client = h1();
    for i in 0..1000 {
        let uri = if i % 2 == 0 {
            format!("/nothing/{i}")
        } else {
            format!("/api/orders/{i}")
        };
        let req = http::Request::get(p.url(&uri))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        send(&client, req).await;
    }
    counted(&p, 1002).await;
    let text = scrape(&p).await;
    assert_eq!(series(&text), before, "{text}");
    assert_eq!(
        value(
            &text,
            "strangler_requests_total{route=\"(none)\",upstream=\"(none)\",code=\"4xx\"}"
        ),
        Some(501.0)
    );
    assert_eq!(
        value(
            &text,
            "strangler_requests_total{route=\"orders\",upstream=\"orders\",code=\"2xx\"}"
        ),
        Some(501.0)
    );
    assert!(!text.contains("/nothing/"), "no path in any label");
}

/// A reload keeps the series of pairs it keeps, and drops those of a route
/// it removes.
#[tokio::test]
async fn series_survive_reloads_that_keep_their_names() {
    let (legacy, orders, shadow) = (
        backend("legacy").await,
        backend("orders").await,
        backend("shadow").await,
    );
    let toml = config(&legacy.url(), &orders.url(), &shadow.url());
    let p = start(&toml).await;
    get(&p.url("/api/orders/small")).await;
    get(&p.url("/elsewhere")).await;
    counted(&p, 2).await;
    let orders_2xx = "strangler_requests_total{route=\"orders\",upstream=\"orders\",code=\"2xx\"}";
    let default_2xx =
        "strangler_requests_total{route=\"(default)\",upstream=\"legacy\",code=\"2xx\"}";

    // The same file again: counts go on from where they were.
    p.proxy.install(support::config(&toml));
    get(&p.url("/api/orders/small")).await;
    counted(&p, 3).await;
    let text = scrape(&p).await;
    assert_eq!(value(&text, orders_2xx), Some(2.0), "{text}");

    // Without the orders route: its series go, the default's stay.
    let without = toml.replace("name = \"orders\"", "name = \"orders-renamed\"");
    p.proxy.install(support::config(&without));
    let text = scrape(&p).await;
    assert_eq!(value(&text, orders_2xx), None, "{text}");
    assert_eq!(value(&text, default_2xx), Some(1.0), "{text}");
    assert!(!text.contains("route=\"orders\""), "{text}");
}
