use super::*;
use crate::config::SourceFile;

fn parse(text: &str) -> Config {
    match Config::parse(&SourceFile::new("t.toml", text)) {
        Ok(c) => c,
        Err(e) => panic!("invalid test config:\n{e}\n---\n{text}"),
    }
}

fn summary(old: &str, new: &str) -> Vec<String> {
    ConfigDiff::between(&parse(old), &parse(new)).summary()
}

const BASE: &str = r#"
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[upstreams.customers]
targets = ["http://127.0.0.1:9201"]

[upstreams.orders]
targets = ["http://127.0.0.1:9101"]

[default]
upstream = "legacy"

[[routes]]
name = "orders"
path = "/api/orders/{*rest}"
methods = ["GET", "POST"]
upstream = "orders"
rewrite = "/orders/{rest}"

[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
shift = { to = "customers", percent = 10, sticky = "cookie:session" }
"#;

#[test]
fn the_same_config_has_no_changes() {
    let d = ConfigDiff::between(&parse(BASE), &parse(BASE));
    assert!(d.is_empty(), "{d:?}");
    assert!(d.lines().is_empty());
    assert_eq!(d.summary(), [NOTHING_CHANGED]);
    assert!(!d.needs_restart());
}

#[test]
fn layout_and_comments_are_not_changes() {
    let reformatted = BASE
        .replace("[[routes]]", "# a comment\n\n[[routes]]")
        .replace(
            "methods = [\"GET\", \"POST\"]",
            "methods = [ \"POST\", \"GET\" ]",
        );
    assert_eq!(summary(BASE, &reformatted), [NOTHING_CHANGED]);
}

#[test]
fn a_shift_percent_change_is_one_line() {
    let new = BASE.replace("percent = 10", "percent = 25");
    assert_eq!(
        summary(BASE, &new),
        ["route \"customers\": shift.percent 10 -> 25"]
    );
    let new = BASE.replace("percent = 10", "percent = 12.5");
    assert_eq!(
        summary(BASE, &new),
        ["route \"customers\": shift.percent 10 -> 12.5"]
    );
}

#[test]
fn routes_added_removed_and_changed() {
    let new = BASE
        .replace("name = \"orders\"", "name = \"orders-v2\"")
        .replace(
            "prefix = \"/api/customers\"\nupstream = \"legacy\"",
            "prefix = \"/api/customers\"\nupstream = \"legacy\"\nmethods = [\"GET\"]\ntimeout = \"5s\"\nfallback = \"legacy\"",
        );
    assert_eq!(
        summary(BASE, &new),
        [
            "route \"orders-v2\" added (GET,POST /api/orders/{*rest} -> orders)",
            "route \"orders\" removed",
            "route \"customers\": methods (any) -> GET",
            "route \"customers\": timeout (server's) -> 5s",
            "route \"customers\": fallback (none) -> legacy",
        ]
    );
}

#[test]
fn every_route_setting_is_compared() {
    let old = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1"]
[upstreams.b]
targets = ["http://127.0.0.1:2"]
[[routes]]
name = "r"
path = "/x/{id}"
upstream = "a"
rewrite = "/y/{id}"
"#;
    let new = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1"]
[upstreams.b]
targets = ["http://127.0.0.1:2"]
[[routes]]
name = "r"
prefix = "/x"
host = "*.example.com"
headers = { "x-beta" = "1" }
upstream = "b"
strip_prefix = "/x"
fallback = "a"
fallback_on = [404, 502]
"#;
    assert_eq!(
        summary(old, new),
        [
            "route \"r\": pattern /x/{id} -> /x/**",
            "route \"r\": headers (none) -> {x-beta=1}",
            "route \"r\": host (any) -> *.example.com",
            "route \"r\": upstream a -> b",
            "route \"r\": rewrite /y/{id} -> (none)",
            "route \"r\": strip_prefix (none) -> /x",
            "route \"r\": fallback (none) -> a",
            "route \"r\": fallback_on [502, 503, 504] -> [404, 502]",
        ]
    );
}

#[test]
fn upstream_references_compare_by_name_not_index() {
    // A new upstream first in the file moves every index; nothing a route
    // refers to changes.
    let new = BASE.replace(
        "[upstreams.legacy]",
        "[upstreams.aaa]\ntargets = [\"http://127.0.0.1:1\"]\n\n[upstreams.legacy]",
    );
    assert_eq!(
        summary(BASE, &new),
        ["upstream \"aaa\" added (http://127.0.0.1:1)"]
    );
}

#[test]
fn upstreams_added_removed_and_changed() {
    let old = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1"]
[upstreams.b]
targets = ["http://127.0.0.1:2"]
[upstreams.gone]
targets = ["http://127.0.0.1:3"]
[default]
upstream = "a"
"#;
    let new = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1", "http://localhost:4"]
balance = "least_request"
host = "a.internal"
[upstreams.b]
targets = ["http://127.0.0.1:2"]
[upstreams.new]
targets = ["http://127.0.0.1:5"]
[default]
upstream = "b"
"#;
    assert_eq!(
        summary(old, new),
        [
            "upstream \"new\" added (http://127.0.0.1:5)",
            "upstream \"gone\" removed",
            "upstream \"a\": targets http://127.0.0.1:1 -> http://127.0.0.1:1, http://localhost:4",
            "upstream \"a\": balance round_robin -> least_request",
            "upstream \"a\": host (none) -> a.internal",
            "[default]: upstream a -> b",
        ]
    );
}

#[test]
fn health_eject_and_retries_are_named() {
    let old = "[upstreams.a]\ntargets = [\"http://127.0.0.1:1\"]\nhealth = { path = \"/health\" }\n[default]\nupstream = \"a\"\n";
    let new = "[upstreams.a]\ntargets = [\"http://127.0.0.1:1\"]\nhealth = { path = \"/ready\", interval = \"500ms\", timeout = \"250ms\" }\neject = { consecutive_failures = 3, for = \"1m30s\" }\nretries = 2\n[default]\nupstream = \"a\"\n";
    assert_eq!(
        summary(old, new),
        [
            "upstream \"a\": health /health every 2s timeout 1s down after 2 up after 1 -> /ready every 500ms timeout 250ms down after 2 up after 1",
            "upstream \"a\": eject (none) -> after 3 failures for 1m30s",
            "upstream \"a\": retries 0 -> 2",
        ]
    );
}

#[test]
fn default_added_and_removed() {
    let with = "[upstreams.a]\ntargets = [\"http://127.0.0.1:1\"]\n[default]\nupstream = \"a\"\n";
    let without = "[upstreams.a]\ntargets = [\"http://127.0.0.1:1\"]\n";
    assert_eq!(summary(without, with), ["[default]: upstream (none) -> a"]);
    assert_eq!(summary(with, without), ["[default]: upstream a -> (none)"]);
}

#[test]
fn shift_added_removed_and_every_field() {
    let no_shift = BASE.replace(
        "shift = { to = \"customers\", percent = 10, sticky = \"cookie:session\" }",
        "",
    );
    assert_eq!(
        summary(&no_shift, BASE),
        ["route \"customers\": shift (none) -> to customers, 10%, sticky cookie:session"]
    );
    assert_eq!(
        summary(BASE, &no_shift),
        ["route \"customers\": shift to customers, 10%, sticky cookie:session -> (none)"]
    );
    let new = BASE.replace(
        "shift = { to = \"customers\", percent = 10, sticky = \"cookie:session\" }",
        "shift = { to = \"orders\", percent = 10, sticky = \"ip\", force_header = \"x-side\", ramp = { step = 5 } }",
    );
    assert_eq!(
        summary(BASE, &new),
        [
            "route \"customers\": shift.to customers -> orders",
            "route \"customers\": shift.sticky cookie:session -> ip",
            "route \"customers\": shift.force_header (none) -> x-side",
            "route \"customers\": shift.ramp (none) -> step 5, every 10m, max_error_rate 0.01, max_latency_ratio 2, min_requests 100, max_mismatch_rate 0.02",
        ]
    );
    let ramped = new.replace(
        "ramp = { step = 5 }",
        "ramp = { step = 10, every = \"90s\" }",
    );
    assert_eq!(
        summary(&new, &ramped),
        [
            "route \"customers\": shift.ramp.step 5 -> 10",
            "route \"customers\": shift.ramp.every 10m -> 1m30s",
        ]
    );
}

#[test]
fn server_changes_and_restart_flags() {
    let old = "[server]\nlisten = \"127.0.0.1:8080\"\n";
    let new = "[server]\nlisten = [\"127.0.0.1:8081\", \"[::1]:8081\"]\nadmin = \"127.0.0.1:9901\"\nrequest_timeout = \"5s\"\nmax_request_body = \"1MiB\"\nmerge_slashes = false\nadmin_token = \"s3cret\"\n";
    let d = ConfigDiff::between(&parse(old), &parse(new));
    assert!(d.needs_restart());
    let lines = d.lines();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "[server]: listen 127.0.0.1:8080 -> 127.0.0.1:8081, [::1]:8081 (takes effect on restart)",
            "[server]: admin (none) -> 127.0.0.1:9901 (takes effect on restart)",
            "[server]: request_timeout 30s -> 5s",
            "[server]: max_request_body 16MiB -> 1MiB",
            "[server]: merge_slashes true -> false",
            "[server]: admin_token set",
        ]
    );
    assert_eq!(
        lines.iter().map(|l| l.needs_restart).collect::<Vec<_>>(),
        [true, true, false, false, false, false]
    );
    assert!(
        !texts.iter().any(|t| t.contains("s3cret")),
        "the token is a secret"
    );
}

#[test]
fn swapped_routes_with_the_same_pattern_are_an_order_change() {
    let old = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1"]
[[routes]]
name = "beta"
prefix = "/x"
headers = { "x-beta" = "1" }
upstream = "a"
[[routes]]
name = "all"
prefix = "/x"
upstream = "a"
"#;
    let new = r#"
[upstreams.a]
targets = ["http://127.0.0.1:1"]
[[routes]]
name = "all"
prefix = "/x"
upstream = "a"
[[routes]]
name = "beta"
prefix = "/x"
headers = { "x-beta" = "1" }
upstream = "a"
"#;
    assert_eq!(
        summary(old, new),
        [
            "route \"all\": now before route \"beta\" (same pattern /x/**: the first in the file whose conditions accept a request wins)"
        ]
    );
}

#[test]
fn values_print_as_the_file_writes_them() {
    assert_eq!(duration(Duration::from_millis(250)), "250ms");
    assert_eq!(duration(Duration::from_secs(2)), "2s");
    assert_eq!(duration(Duration::from_secs(600)), "10m");
    assert_eq!(duration(Duration::from_secs(3600 + 90)), "1h1m30s");
    assert_eq!(size(16 << 20), "16MiB");
    assert_eq!(size(64 << 10), "64KiB");
    assert_eq!(size(1000), "1000B");
}
