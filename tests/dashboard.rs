//! The dashboard (SPEC 4, `GET /` on the admin listener) and the JSON its
//! script polls (`GET /admin/dashboard`): names escaped, numbers that move
//! with traffic and with a shift, reads open like the other admin reads, and
//! in a real browser (headless Chromium), numbers only the script fills in.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::*;

const ROUTE: &str = "cust\"omers<i>x</i>";

fn config(legacy: &str, customers: &str, extra: &str) -> String {
    format!(
        r#"[server]
admin = "127.0.0.1:0"
{extra}
[upstreams.legacy]
targets = ["{legacy}"]
[upstreams.customers]
targets = ["{customers}"]
[default]
upstream = "legacy"
[[routes]]
name = "cust\"omers<i>x</i>"
prefix = "/api/customers"
strip_prefix = "/api/customers"
upstream = "legacy"
shift = {{ to = "customers", percent = 0 }}
shadow = {{ to = "customers", percent = 100 }}
"#
    )
}

async fn data(admin: SocketAddr) -> Value {
    let a = get(&format!("http://{admin}/admin/dashboard")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    a.json()
}

/// Until the shadow report has compared `n` copies (they finish after the
/// client's answer).
async fn compared(p: &TestProxy, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let done: u64 = p
            .proxy
            .shadow
            .all()
            .iter()
            .flat_map(|(_, r)| r.counts())
            .map(|(_, n)| n)
            .sum();
        if done >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {n} compared"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn names_are_escaped_in_the_page() {
    let (legacy, customers) = (backend("legacy").await, backend("customers").await);
    let p = start(&config(&legacy.url(), &customers.url(), "")).await;
    get(&p.url("/api/customers/small")).await;
    counted(&p, 1).await;
    let a = get(&format!("http://{}/", p.admin.unwrap())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    let page = a.text();
    assert!(
        page.contains("<td>cust&quot;omers&lt;i&gt;x&lt;/i&gt;</td>"),
        "{page}"
    );
    assert!(!page.contains("<i>x</i>"), "{page}");
    assert!(page.contains("the monolith is <b>legacy</b>"), "{page}");
    // Served without the script too: the route's numbers are in the HTML.
    assert!(page.contains("100.0%"), "{page}");
    // No external assets.
    assert!(!page.contains("src=\"http"), "{page}");
    assert!(!page.contains("href=\"http"), "{page}");
}

#[tokio::test]
async fn numbers_move_with_traffic_and_the_shift() {
    let (legacy, customers) = (backend("legacy").await, backend("customers").await);
    let p = start(&config(&legacy.url(), &customers.url(), "")).await;
    let admin = p.admin.unwrap();

    let d = data(admin).await;
    assert_eq!(d["monolith"], "legacy");
    assert_eq!(d["window_seconds"], 300);
    assert_eq!(d["overall"]["requests"], 0);
    assert_eq!(
        d["overall"]["monolith_share"],
        Value::Null,
        "no traffic yet"
    );
    let route = &d["routes"][0];
    assert_eq!(route["route"], ROUTE);
    assert_eq!(route["monolith_last_served"], Value::Null);
    assert_eq!(route["shift"]["percent"], 0.0);
    assert_eq!(route["shift"]["ramp"], "off");
    assert_eq!(route["shift"]["to"], "customers");
    assert_eq!(d["routes"][1]["route"], "(default)");

    // All on the monolith: the route's share is 1, and so is the proxy's.
    for _ in 0..6 {
        assert_eq!(get(&p.url("/api/customers/small")).await.status, 200);
    }
    assert_eq!(get(&p.url("/api/customers/status/500")).await.status, 500);
    get(&p.url("/elsewhere")).await;
    counted(&p, 8).await;
    compared(&p, 7).await;
    let d = data(admin).await;
    let route = &d["routes"][0];
    assert_eq!(route["requests"], 7, "{d:#}");
    assert_eq!(route["monolith_share"], 1.0);
    assert!(route["monolith_last_served"].is_string(), "{route}");
    assert!(
        route["monolith_idle_seconds"].as_u64().unwrap() < 60,
        "{route}"
    );
    let side = &route["sides"][0];
    assert_eq!(side["upstream"], "legacy");
    assert_eq!(side["monolith"], true);
    assert_eq!(side["failures"], 1);
    assert!((side["error_rate"].as_f64().unwrap() - 1.0 / 7.0).abs() < 1e-9);
    assert!(side["p99_ms"].as_f64().unwrap() > 0.0, "{side}");
    assert_eq!(d["overall"]["requests"], 8);
    assert_eq!(d["overall"]["monolith_share"], 1.0);
    // The shadow compared every copy; the 500 (both sides 500) matches too.
    let shadow = &route["shadow"];
    assert_eq!(shadow["to"], "customers");
    assert_eq!(
        shadow["match"].as_u64().unwrap() + shadow["mismatch"].as_u64().unwrap(),
        7,
        "{shadow}"
    );
    assert!(shadow["match_rate"].is_number(), "{shadow}");

    // Shift everything to the new service: the monolith's share falls.
    p.proxy.shifts.get(ROUTE).unwrap().set_basis_points(10_000);
    for _ in 0..7 {
        let a = get(&p.url("/api/customers/small")).await;
        assert_eq!(a.header("x-served-by"), Some("customers"));
    }
    counted(&p, 15).await;
    let d = data(admin).await;
    let route = &d["routes"][0];
    assert_eq!(route["shift"]["percent"], 100.0);
    assert_eq!(route["requests"], 14);
    assert_eq!(route["monolith_share"], 0.5);
    assert_eq!(route["sides"][1]["upstream"], "customers");
    assert_eq!(route["sides"][1]["requests"], 7);
    assert_eq!(route["sides"][1]["monolith"], false);
    assert_eq!(d["overall"]["requests"], 15);
    assert!((d["overall"]["monolith_share"].as_f64().unwrap() - 8.0 / 15.0).abs() < 1e-9);

    // Unmatched requests are counted apart and move no share.
    let raw = support::raw::exchange(p.addr, b"GET /x HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw.status, 400);
    counted(&p, 16).await;
    let d = data(admin).await;
    assert_eq!(d["overall"]["unmatched"], 1);
    assert_eq!(d["overall"]["requests"], 15);
}

#[tokio::test]
async fn without_a_default_the_page_says_the_monolith_is_unknown() {
    let (legacy, customers) = (backend("legacy").await, backend("customers").await);
    let toml = config(&legacy.url(), &customers.url(), "")
        .replace("[default]\nupstream = \"legacy\"\n", "");
    let p = start(&toml).await;
    get(&p.url("/api/customers/small")).await;
    counted(&p, 1).await;
    let admin = p.admin.unwrap();
    let d = data(admin).await;
    assert_eq!(d["monolith"], Value::Null);
    assert_eq!(d["routes"][0]["monolith_share"], Value::Null);
    assert_eq!(d["routes"].as_array().unwrap().len(), 1, "no (default) row");
    let page = get(&format!("http://{admin}/")).await.text();
    assert!(page.contains("no [default] upstream"), "{page}");
}

/// Reads are open like `/admin/routes` and `/metrics`; only writes need the
/// token. The page never writes.
#[tokio::test]
async fn the_dashboard_is_a_read_open_without_the_token() {
    let (legacy, customers) = (backend("legacy").await, backend("customers").await);
    let p = start(&config(
        &legacy.url(),
        &customers.url(),
        "admin_token = \"s3cret\"",
    ))
    .await;
    let admin = p.admin.unwrap();
    assert_eq!(get(&format!("http://{admin}/")).await.status, 200);
    assert_eq!(
        get(&format!("http://{admin}/admin/dashboard")).await.status,
        200
    );
    let page = get(&format!("http://{admin}/")).await.text();
    assert!(!page.contains("s3cret"));
}

/// `/usr/bin/chromium` or the first `chromium` on the PATH.
fn chromium() -> Option<std::path::PathBuf> {
    let fixed = std::path::Path::new("/usr/bin/chromium");
    if fixed.exists() {
        return Some(fixed.to_owned());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("chromium"))
        .find(|p| p.exists())
}

/// The page as a browser leaves it after running its script for a few
/// (virtual) seconds.
async fn rendered(browser: &std::path::Path, url: &str) -> String {
    let profile = tempdir();
    let out = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium ran");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "strangler-dashboard-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_live_numbers_the_script_fills_in() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing and CI is set: .ci/run installs it"
        );
        eprintln!(
            "note: chromium not found; the browser test is skipped (apt-get install chromium)"
        );
        return;
    };
    let (legacy, customers) = (backend("legacy").await, backend("customers").await);
    let p = start(&config(&legacy.url(), &customers.url(), "")).await;
    for _ in 0..3 {
        get(&p.url("/api/customers/small")).await;
    }
    for _ in 0..4 {
        get(&p.url("/elsewhere")).await;
    }
    counted(&p, 7).await;

    let dom = rendered(&browser, &format!("http://{}/", p.admin.unwrap())).await;
    // Only the script writes "live: updated ... (poll N": the page it got
    // from the server says "rendered at".
    assert!(
        dom.contains("<p class=\"muted\" id=\"updated\">live: updated "),
        "{dom}"
    );
    assert!(!dom.contains("rendered at"), "{dom}");
    // The numbers it filled: 7 requests, all on the monolith; the route row
    // rebuilt from the JSON, its name as text.
    assert!(dom.contains("<b id=\"requests\">7</b>"), "{dom}");
    assert!(dom.contains("<b id=\"share\">100.0%</b>"), "{dom}");
    assert!(
        dom.contains("<td>cust\"omers&lt;i&gt;x&lt;/i&gt;</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("legacy (monolith): 3 req, 0.0% err, p99 "),
        "{dom}"
    );
    assert!(dom.contains("0% → customers"), "{dom}");
    assert!(dom.contains(" s ago)</td>"), "{dom}");
}
