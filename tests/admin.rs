//! The admin listener (SPEC 4) over real sockets: health, the route and
//! upstream views, the shadow reports, reload, ramp resume, the bearer token
//! in front of writes, `/metrics`, and the refusal to open the admin API beyond loopback without a
//! token.

mod support;

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use strangler::config::Config;
use strangler::shadow::compare::Difference;
use strangler::shadow::report::{MIN_CALIBRATIONS, Outcome};
use strangler::shift::state::RampStatus;
use support::process::{TempConfig, run};
use support::*;

/// `METHOD http://ADMIN{path}`, with `Authorization: Bearer {token}` when given.
async fn call(method: &str, admin: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(&h1(), req.body(Full::<Bytes>::default()).unwrap()).await
}

/// Asserts a problem+json answer with `status` and problem type `kind`; returns its body.
fn problem(a: &Answer, status: u16, kind: &str) -> serde_json::Value {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let v = a.json();
    assert_eq!(v["type"], format!("urn:strangler:problem:{kind}"), "{v}");
    assert_eq!(v["status"], status);
    assert!(v["request_id"].is_string(), "{v}");
    v
}

#[tokio::test]
async fn healthz_answers_on_the_admin_listener_only() {
    let b = backend("legacy").await;
    let proxy = start(&format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let admin = proxy.admin.expect("admin listener");
    let a = get(&format!("http://{admin}/healthz")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "ok\n");
    let a = get(&format!("http://{admin}/admin/nothing")).await;
    let v = problem(&a, 404, "not-found");
    assert!(
        v["detail"].as_str().unwrap().contains("GET /admin/routes"),
        "{v}"
    );
    // The proxy's own listener forwards /healthz and /admin/... like any other path.
    let a = get(&proxy.url("/healthz")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    let a = get(&proxy.url("/admin/routes")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
}

/// Routes of every kind, one shifted with a ramp, one shifted without.
fn routes_config(legacy: &str, orders: &str, customers: &str) -> String {
    format!(
        r#"[server]
admin = "127.0.0.1:0"
request_timeout = "30s"
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.orders]
targets = ["{orders}"]
balance = "least_request"
host = "orders.internal"
[upstreams.customers]
targets = ["{customers}"]
[default]
upstream = "legacy"
[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
fallback = "legacy"
fallback_on = [502, 404]
shift = {{ to = "customers", percent = 12.5, sticky = "cookie:session", force_header = "x-side", ramp = {{ step = 5, every = "10m", max_error_rate = 0.05, min_requests = 20 }} }}
[[routes]]
name = "orders"
path = "/api/orders/{{*rest}}"
methods = ["GET", "POST"]
upstream = "orders"
rewrite = "/orders/{{rest}}"
timeout = "5s"
[[routes]]
name = "order"
path = "/api/orders/{{id}}"
headers = {{ "x-beta" = "1" }}
host = "*.example.com"
upstream = "orders"
strip_prefix = "/api"
[[routes]]
prefix = "/api/stock"
upstream = "legacy"
shift = {{ to = "orders", percent = 100 }}
"#
    )
}

/// A proxy with [`routes_config`] and its three backends (kept alive with it).
async fn start_routes() -> (TestProxy, [Server; 3]) {
    let backends = [
        backend("legacy").await,
        backend("orders").await,
        backend("customers").await,
    ];
    let [legacy, orders, customers] = backends.each_ref().map(|b| b.url());
    let proxy = start(&routes_config(&legacy, &orders, &customers)).await;
    (proxy, backends)
}

#[tokio::test]
async fn routes_shows_every_route_in_matching_order_with_its_shift_state() {
    let (proxy, _backends) = start_routes().await;
    let admin = proxy.admin.unwrap();
    let a = call("GET", admin, "/admin/routes", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v = a.json();
    let names: Vec<&str> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // Most specific first, file order among equals: as `strangler check` prints them.
    assert_eq!(names, ["order", "customers", "orders", "/api/stock"]);
    let table = strangler::report::route_table(&proxy.proxy.snapshot().config);
    let table_names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "(default)")
        .collect();
    assert_eq!(names, table_names);
    assert_eq!(
        v["default"],
        json!({"upstream": "legacy", "timeout": "30s"})
    );

    let route = |name: &str| {
        v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let order = route("order");
    assert_eq!(
        order["match"],
        json!({
            "pattern": "/api/orders/{id}",
            "path": "/api/orders/{id}",
            "prefix": null,
            "methods": null,
            "headers": {"x-beta": "1"},
            "host": "*.example.com",
        })
    );
    assert_eq!(order["upstream"], "orders");
    assert_eq!(order["strip_prefix"], "/api");
    assert_eq!(order["rewrite"], json!(null));
    assert_eq!(order["shift"], json!(null));
    assert_eq!(order["fallback"], json!(null));
    assert_eq!(order["shadow"], json!(null));
    assert_eq!(order["compose"], json!(null));

    let orders_route = route("orders");
    assert_eq!(orders_route["match"]["methods"], json!(["GET", "POST"]));
    assert_eq!(orders_route["rewrite"], "/orders/{rest}");
    assert_eq!(orders_route["timeout"], "5s");
    assert_eq!(orders_route["timeout_from"], "route");

    let cust = route("customers");
    assert_eq!(cust["match"]["prefix"], "/api/customers");
    assert_eq!(cust["match"]["pattern"], "/api/customers/**");
    assert_eq!(cust["timeout"], "30s");
    assert_eq!(cust["timeout_from"], "server.request_timeout");
    assert_eq!(cust["fallback"], "legacy");
    assert_eq!(cust["fallback_on"], json!([502, 404]));
    assert_eq!(
        cust["shift"],
        json!({
            "to": "customers",
            "percent": 12.5,
            "file_percent": 12.5,
            "sticky": "cookie:session",
            "force_header": "x-side",
            "ramp": {
                "status": "running",
                "reason": null,
                "stopped_at": null,
                "settings": {
                    "step": 5,
                    "every": "10m",
                    "max_error_rate": 0.05,
                    "max_latency_ratio": 2.0,
                    "min_requests": 20,
                    "max_mismatch_rate": 0.02,
                },
            },
        })
    );
    let stock = route("/api/stock");
    assert_eq!(stock["shift"]["percent"], 100);
    assert_eq!(stock["shift"]["ramp"]["status"], "off");
    assert_eq!(stock["shift"]["ramp"]["settings"], json!(null));

    // A breach (what the ramp controller does): the share drops to 0 and the
    // ramp stops with a reason; the view shows both, with the time.
    let state = proxy.proxy.shifts.get("customers").unwrap();
    state.set_basis_points(0);
    state.control().status = RampStatus::Stopped {
        reason: "new side error rate 0.31 > max_error_rate 0.05".into(),
        at: SystemTime::now(),
    };
    let v = call("GET", admin, "/admin/routes", None).await.json();
    let cust = &v["routes"][1];
    assert_eq!(cust["name"], "customers");
    assert_eq!(cust["shift"]["percent"], 0);
    assert_eq!(cust["shift"]["file_percent"], 12.5);
    let ramp = &cust["shift"]["ramp"];
    assert_eq!(ramp["status"], "stopped");
    assert_eq!(
        ramp["reason"],
        "new side error rate 0.31 > max_error_rate 0.05"
    );
    let at = ramp["stopped_at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );

    // HEAD answers like GET, without a body.
    let a = call("HEAD", admin, "/admin/routes", None).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn upstreams_shows_every_target_with_its_counters_and_unchecked_health() {
    let (proxy, [_legacy, orders, _customers]) = start_routes().await;
    for _ in 0..3 {
        let a = get(&proxy.url("/api/orders/1/lines")).await;
        assert_eq!(a.header("x-served-by"), Some("orders"));
    }
    let a = call("GET", proxy.admin.unwrap(), "/admin/upstreams", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v = a.json();
    assert_eq!(
        v["upstreams"][1],
        json!({
            "name": "orders",
            "balance": "least_request",
            "host": "orders.internal",
            "retries": 0,
            "retry_budget": { "window_requests": 0, "window_retries": 0 },
            "targets": [{
                "url": orders.url(),
                "in_flight": 0,
                "requests": 3,
                "health": "unchecked",
                "up": true,
                "ejected": null,
                "consecutive_failures": 0,
                "last_check": null,
            }],
        })
    );
    let names: Vec<&str> = v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["legacy", "orders", "customers"]);
    assert_eq!(v["upstreams"][0]["balance"], "round_robin");
    assert_eq!(v["upstreams"][0]["host"], json!(null));
    assert_eq!(v["upstreams"][0]["targets"][0]["requests"], 0);
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let b = backend("legacy").await;
    let proxy = start(&format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let admin = proxy.admin.unwrap();
    for (method, path, allow) in [
        ("GET", "/admin/reload", "POST"),
        ("GET", "/admin/routes/x/ramp/resume", "POST"),
        ("POST", "/admin/routes", "GET, HEAD"),
        ("DELETE", "/admin/upstreams", "GET, HEAD"),
        ("POST", "/admin/shadow", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
        ("PUT", "/healthz", "GET, HEAD"),
    ] {
        let a = call(method, admin, path, None).await;
        problem(&a, 405, "method-not-allowed");
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn writes_need_the_bearer_token_reads_do_not() {
    let b = backend("legacy").await;
    let proxy = start(&format!(
        "[server]\nadmin = \"127.0.0.1:0\"\nadmin_token = \"s3cret-token\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let admin = proxy.admin.unwrap();

    let a = call("POST", admin, "/admin/reload", None).await;
    problem(&a, 401, "unauthorized");
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"strangler-admin\"")
    );
    let a = call("POST", admin, "/admin/reload", Some("s3cret-tokeN")).await;
    problem(&a, 401, "unauthorized");
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"strangler-admin\", error=\"invalid_token\"")
    );
    let a = call("POST", admin, "/admin/routes/x/ramp/resume", Some("s3cret")).await;
    problem(&a, 401, "unauthorized");

    // The right token gets through to the endpoint (which then has its own say:
    // this config came from no file, so there is nothing to reload).
    let a = call("POST", admin, "/admin/reload", Some("s3cret-token")).await;
    let v = problem(&a, 409, "no-config-file");
    assert_eq!(
        v["detail"],
        "the config did not come from a file, so there is nothing to reload"
    );
    let a = call(
        "POST",
        admin,
        "/admin/routes/x/ramp/resume",
        Some("s3cret-token"),
    )
    .await;
    problem(&a, 404, "unknown-route");

    for path in ["/healthz", "/metrics", "/admin/routes", "/admin/upstreams"] {
        assert_eq!(call("GET", admin, path, None).await.status, 200, "{path}");
    }
}

fn reload_config(legacy: &str, orders: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.orders]
targets = ["{orders}"]
[default]
upstream = "legacy"
[[routes]]
name = "orders"
prefix = "/api/orders"
upstream = "orders"
"#
    )
}

#[tokio::test]
async fn reload_applies_a_good_file_and_lists_every_error_of_a_bad_one() {
    let (legacy, orders) = (backend("legacy").await, backend("orders").await);
    let file = TempConfig::new("admin-reload", &reload_config(&legacy.url(), &orders.url()));
    let config = Config::load(file.path().as_ref()).expect("valid config");
    let proxy = start_config(config).await;
    let admin = proxy.admin.unwrap();
    let a = get(&proxy.url("/added/x")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));

    // A good file: 200 with the reloader's summary; the new route serves.
    let text = format!(
        "{}[[routes]]\nname = \"added\"\nprefix = \"/added\"\nupstream = \"orders\"\n",
        reload_config(&legacy.url(), &orders.url())
    );
    std::fs::write(file.path(), &text).unwrap();
    let a = call("POST", admin, "/admin/reload", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v = a.json();
    assert_eq!(v["result"], "ok");
    assert!(v["changes"].is_array(), "{v}");
    let routes = call("GET", admin, "/admin/routes", None).await.json();
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "added"),
        "{routes}"
    );
    let a = get(&proxy.url("/added/x")).await;
    assert_eq!(a.header("x-served-by"), Some("orders"));

    // A bad file (two mistakes): 400 with both, located; nothing changes.
    let bad = text
        .replace(
            "prefix = \"/added\"\nupstream = \"orders\"\n",
            "prefix = \"/added\"\nupstream = \"nowhere\"\n",
        )
        .replace("[default]\n", "[default]\ncolour = \"blue\"\n");
    std::fs::write(file.path(), bad).unwrap();
    let a = call("POST", admin, "/admin/reload", None).await;
    let v = problem(&a, 400, "invalid-config");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("the reload failed and the old config keeps serving: "),
        "{detail}"
    );
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        let rest = e
            .strip_prefix(&format!("{}:", file.path()))
            .unwrap_or_else(|| panic!("not FILE:LINE:COL: {e}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().unwrap();
        let col: usize = parts.next().unwrap().parse().unwrap();
        assert!(line > 0 && col > 0, "{e}");
    }
    assert!(errors.iter().any(|e| e.contains("colour")), "{errors:?}");
    assert!(errors.iter().all(|e| detail.contains(e)), "{detail}");
    assert!(errors.iter().any(|e| e.contains("nowhere")), "{errors:?}");
    let routes = call("GET", admin, "/admin/routes", None).await.json();
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "added"),
        "the old config must keep serving: {routes}"
    );
    let a = get(&proxy.url("/added/x")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-served-by"), Some("orders"));

    // Both results are counted.
    let metrics = call("GET", admin, "/metrics", None).await.text();
    let count = |result: &str| -> u64 {
        let prefix = format!("strangler_config_reloads_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(count("ok") >= 1, "{metrics}");
    assert!(count("error") >= 1, "{metrics}");
}

#[tokio::test]
async fn resume_restarts_a_stopped_ramp_and_says_why_it_cannot_otherwise() {
    let (proxy, _backends) = start_routes().await;
    let admin = proxy.admin.unwrap();
    let resume = |name: &str| format!("/admin/routes/{name}/ramp/resume");

    // Unknown, or not shifted: 404 naming the routes that do shift.
    for name in ["nope", "orders"] {
        let a = call("POST", admin, &resume(name), None).await;
        let v = problem(&a, 404, "unknown-route");
        assert_eq!(v["shifted_routes"], json!(["customers", "/api/stock"]));
        assert_eq!(
            v["detail"],
            format!(
                "no route \"{name}\" shifts traffic (routes with a shift: customers, /api/stock)"
            )
        );
    }
    // Nothing to resume: 409 with the reason.
    let a = call("POST", admin, &resume("customers"), None).await;
    let v = problem(&a, 409, "nothing-to-resume");
    assert_eq!(
        v["detail"],
        "route \"customers\": the ramp is not stopped (it is running)"
    );
    // A name with `/`, percent-encoded or not; this shift has no ramp.
    for path in [resume("%2Fapi%2Fstock"), resume("/api/stock")] {
        let a = call("POST", admin, &path, None).await;
        let v = problem(&a, 409, "nothing-to-resume");
        assert_eq!(
            v["detail"],
            "route \"/api/stock\": the route's shift has no ramp"
        );
    }
    let a = call("POST", admin, &resume("bad%zz"), None).await;
    problem(&a, 400, "bad-route-name");

    // A breach stopped the ramp: resume answers the new state, which steps on
    // from the share in force.
    let state = proxy.proxy.shifts.get("customers").unwrap();
    state.set_basis_points(0);
    state.control().status = RampStatus::Stopped {
        reason: "p99 ratio 3.1 > max_latency_ratio 2".into(),
        at: SystemTime::now(),
    };
    let a = call("POST", admin, &resume("customers"), None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["route"], "customers");
    assert_eq!(v["shift"]["percent"], 0);
    assert_eq!(v["shift"]["ramp"]["status"], "running");
    assert_eq!(v["shift"]["ramp"]["reason"], json!(null));
    assert_eq!(state.control().status, RampStatus::Running);
    // Once: a second call has nothing to resume.
    let a = call("POST", admin, &resume("customers"), None).await;
    problem(&a, 409, "nothing-to-resume");
}

#[tokio::test]
async fn metrics_show_shares_ramp_stops_and_reloads_in_prometheus_text() {
    let (proxy, _backends) = start_routes().await;
    let admin = proxy.admin.unwrap();
    let a = call("GET", admin, "/metrics", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = a.text();
    for line in [
        "# TYPE strangler_shift_percent gauge",
        "strangler_shift_percent{route=\"customers\"} 12.5",
        "strangler_shift_percent{route=\"/api/stock\"} 100.0",
        "# TYPE strangler_ramp_stopped gauge",
        "strangler_ramp_stopped{route=\"customers\"} 0",
        "strangler_ramp_stopped{route=\"/api/stock\"} 0",
        "# TYPE strangler_config_reloads_total counter",
        "strangler_config_reloads_total{result=\"ok\"} 0",
        "strangler_config_reloads_total{result=\"error\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // Routes without a shift have no share series.
    assert!(!text.contains("route=\"orders\""), "{text}");

    // A breach shows at the next scrape.
    let state = proxy.proxy.shifts.get("customers").unwrap();
    state.set_basis_points(0);
    state.control().status = RampStatus::Stopped {
        reason: "error rate".into(),
        at: SystemTime::now(),
    };
    let text = call("GET", admin, "/metrics", None).await.text();
    for line in [
        "strangler_shift_percent{route=\"customers\"} 0.0",
        "strangler_ramp_stopped{route=\"customers\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn shadow_shows_each_reports_outcomes_pointers_noise_and_samples() {
    let (proxy, _backends) = start_routes().await;
    let admin = proxy.admin.unwrap();
    // No route has a report yet.
    let a = call("GET", admin, "/admin/shadow", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.json(), json!({"routes": {}}));

    let reports = proxy
        .proxy
        .shadow
        .sync([("orders", "orders-v2"), ("customers", "customers")]);
    let orders = &reports["orders"];
    let diff = |pointer: &str, primary: serde_json::Value, shadow: serde_json::Value| Difference {
        pointer: pointer.into(),
        primary: Some(primary),
        shadow: Some(shadow),
    };
    let stamp = |n: u64| diff("/generated_at", json!(n), json!(n + 1));
    // Calibration sees the stamp differ between two primary answers every time.
    for n in 0..MIN_CALIBRATIONS {
        orders.calibrated(&[stamp(n)]);
    }
    for n in 0..4 {
        assert_eq!(
            orders.compared(&[stamp(n)], "GET", "/api/orders/1"),
            Outcome::Match
        );
    }
    assert_eq!(
        orders.compared(
            &[stamp(9), diff("/lines/2/price", json!(9.5), json!(9.05))],
            "GET",
            "/api/orders/7?full=1"
        ),
        Outcome::Mismatch
    );
    orders.error();
    orders.skipped();

    let a = call("GET", admin, "/admin/shadow", None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let names: Vec<&String> = v["routes"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["customers", "orders"]);
    let o = &v["routes"]["orders"];
    assert_eq!(
        o["outcomes"],
        json!({"match": 4, "mismatch": 1, "error": 1, "skipped": 1})
    );
    assert_eq!(o["match_rate"], 0.8);
    assert_eq!(
        o["calibration"],
        json!({"runs": MIN_CALIBRATIONS, "min_runs": MIN_CALIBRATIONS})
    );
    assert_eq!(
        o["pointers"],
        json!([
            {
                "pointer": "/generated_at",
                "mismatches": 5,
                "mismatch_rate": 1.0,
                "noise": MIN_CALIBRATIONS,
                "noise_rate": 1.0,
                "classification": "noise",
            },
            {
                "pointer": "/lines/*/price",
                "mismatches": 1,
                "mismatch_rate": 0.2,
                "noise": 0,
                "noise_rate": 0.0,
                "classification": "mismatch",
            },
        ])
    );
    let samples = o["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["method"], "GET");
    assert_eq!(samples[0]["path"], "/api/orders/7?full=1");
    assert_eq!(
        samples[0]["differences"],
        json!([{"pointer": "/lines/2/price", "primary": 9.5, "shadow": 9.05}])
    );
    assert!(samples[0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        v["routes"]["customers"]["outcomes"],
        json!({"match": 0, "mismatch": 0, "error": 0, "skipped": 0})
    );

    // The same counts in /metrics.
    let text = call("GET", admin, "/metrics", None).await.text();
    for line in [
        "# TYPE strangler_shadow_total counter",
        "strangler_shadow_total{route=\"orders\",outcome=\"match\"} 4",
        "strangler_shadow_total{route=\"orders\",outcome=\"mismatch\"} 1",
        "strangler_shadow_total{route=\"orders\",outcome=\"error\"} 1",
        "strangler_shadow_total{route=\"orders\",outcome=\"skipped\"} 1",
        "strangler_shadow_total{route=\"customers\",outcome=\"mismatch\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn the_admin_api_is_not_opened_beyond_loopback_without_a_token() {
    // In process: a config changed in code is refused before anything binds.
    let mut c = config("[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n");
    c.server.admin = Some("0.0.0.0:0".parse().unwrap());
    let err = match strangler::run::Bound::new(c).await {
        Ok(_) => panic!("bound an admin API on 0.0.0.0 without a token"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("beyond loopback") && err.contains("admin_token"),
        "{err}"
    );
}

#[test]
fn the_binary_refuses_to_start_with_admin_beyond_loopback_and_no_token() {
    let file = TempConfig::new(
        "admin-exposed",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:0\"\n\
         [upstreams.legacy]\ntargets = [\"http://127.0.0.1:9\"]\n[default]\nupstream = \"legacy\"\n",
    );
    let out = run(&["run", "--config", file.path()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "{}:3:9: [server]: the admin API listens on 0.0.0.0:0, beyond loopback: set `admin_token` so writes need a bearer token (or listen on 127.0.0.1)",
            file.path()
        ),
        "{out}"
    );
}
