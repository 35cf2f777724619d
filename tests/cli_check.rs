//! `strangler check` (SPEC 1) on the real binary: a good config prints the
//! route table in matching order (warnings about unreachable routes and
//! unused upstreams go to stderr, and it still succeeds); a bad one prints
//! every error as `FILE:LINE:COL: message` and exits 1, one test per class
//! of mistake (unknown keys and upstreams, durations, sizes, duplicate names,
//! patterns, invalid TOML, a missing file, several at once). With
//! `--against OLD` it prints what a reload from OLD would change instead.

mod support;

use support::process::{DEMO_TOML, Diag, Out, TempConfig, diags, run};

/// Splits a route-table line into its three columns, by the header's columns.
fn columns(line: &str, match_at: usize, target_at: usize) -> [String; 3] {
    let cut = |from: usize, to: usize| {
        line.get(from..to.min(line.len()))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    [
        cut(0, match_at),
        cut(match_at, target_at),
        cut(target_at, line.len()),
    ]
}

#[test]
fn check_prints_the_route_table_in_matching_order() {
    let out = run(&["check", "--config", DEMO_TOML]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stderr, "", "the demo config has no warnings: {out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("ROUTE"), "{out}");
    let match_at = header.find("MATCH").expect("MATCH column");
    let target_at = header.find("TARGET").expect("TARGET column");
    assert_eq!(
        columns(header, match_at, target_at),
        ["ROUTE", "MATCH", "TARGET"]
    );
    let rows: Vec<[String; 3]> = lines[1..]
        .iter()
        .map(|l| columns(l, match_at, target_at))
        .collect();
    let row = |name: &str| {
        rows.iter()
            .position(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {out}"))
    };
    let expected = [
        ["orders", "/api/orders/**", "orders  shadow→legacy 100%"],
        [
            "orders-v2",
            "GET /v2/orders/{id}",
            "orders (rewrite /orders/{id})",
        ],
        ["customers-beta", "/api/customers/** x-beta=1", "customers"],
        [
            "customers",
            "/api/customers/**",
            "legacy 75% | customers 25% (sticky cookie:session) (fallback legacy)",
        ],
        [
            "order-details",
            "GET /api/order-details/{id}",
            "compose(order, customer, stock?)",
        ],
        ["(default)", "/**", "legacy"],
    ];
    assert_eq!(rows.len(), expected.len(), "one line per route: {out}");
    for e in expected {
        assert_eq!(rows[row(e[0])], e, "columns of {}: {out}", e[0]);
    }
    // Same pattern: file order decides, the header-conditioned route first.
    assert!(row("customers-beta") < row("customers"), "{out}");
    assert_eq!(row("(default)"), rows.len() - 1, "(default) last: {out}");
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in config"))
        + 1
}

#[test]
fn check_warns_about_unreachable_routes_and_unused_upstreams_and_still_succeeds() {
    let text = r#"[upstreams.a]
targets = ["http://127.0.0.1:1"]

[upstreams.spare]
targets = ["http://127.0.0.1:2"]

[[routes]]
name = "all-api"
prefix = "/api"
upstream = "a"

[[routes]]
name = "api-gets"
prefix = "/api"
methods = ["GET"]
upstream = "a"
"#;
    let f = TempConfig::new("warnings", text);
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    let d = diags(f.path(), &out.stderr);
    assert_eq!(d.len(), 2, "{out}");
    let spare = d
        .iter()
        .find(|d| d.message.contains("\"spare\""))
        .unwrap_or_else(|| panic!("no warning about the unused upstream: {out}"));
    assert!(
        spare.message.starts_with("warning: ") && spare.message.contains("not used"),
        "{out}"
    );
    assert!(
        (4..=5).contains(&spare.line),
        "points into [upstreams.spare]: {out}"
    );
    let unreachable = d
        .iter()
        .find(|d| d.message.contains("\"api-gets\""))
        .unwrap_or_else(|| panic!("no warning about the unreachable route: {out}"));
    assert!(
        unreachable.message.starts_with("warning: ")
            && unreachable.message.contains("unreachable")
            && unreachable.message.contains("\"all-api\""),
        "{out}"
    );
    assert!(
        (12..=16).contains(&unreachable.line),
        "points into the api-gets route: {out}"
    );
    // The table is still printed.
    assert!(out.stdout.starts_with("ROUTE"), "{out}");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("api-gets ")),
        "{out}"
    );
}

/// Runs `check` on `text`, expects exit 1 and nothing on stdout, and returns
/// the parsed errors.
fn check_fails(name: &str, text: &str) -> (Vec<Diag>, Out) {
    let f = TempConfig::new(name, text);
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "no route table for a bad config: {out}");
    (diags(f.path(), &out.stderr), out)
}

const GOOD: &str = r#"[server]
listen = "127.0.0.1:8080"

[upstreams.orders]
targets = ["http://127.0.0.1:9101"]

[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[upstreams.customers]
targets = ["http://127.0.0.1:9201"]

[default]
upstream = "legacy"

[[routes]]
name = "orders"
path = "/api/orders/{*rest}"
upstream = "orders"
rewrite = "/orders/{rest}"

[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "customers"
"#;

#[test]
fn the_good_config_the_bad_ones_start_from_is_good() {
    let f = TempConfig::new("good", GOOD);
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stderr, "", "{out}");
}

/// Whether `list` (`a, b, c`) is sorted and contains `name`.
fn sorted_list_has(list: &str, name: &str) -> bool {
    let names: Vec<&str> = list.split(", ").map(str::trim).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    names == sorted && names.contains(&name)
}

#[test]
fn check_reports_unknown_keys_with_the_known_ones() {
    let text = GOOD
        .replace("listen = ", "listn = ")
        .replace("prefix = \"/api/customers\"", "prefx = \"/api/customers\"");
    let (d, out) = check_fails("unknown-key", &text);
    let server = d
        .iter()
        .find(|d| d.message.contains("unknown key `listn`"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (server.line, server.col),
        (line_of(&text, "listn"), 1),
        "{out}"
    );
    assert!(server.message.contains("did you mean `listen`?"), "{out}");
    let known = server
        .message
        .split("known: ")
        .nth(1)
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no known keys listed: {out}"));
    assert!(sorted_list_has(known, "listen"), "{out}");
    assert!(sorted_list_has(known, "idle_timeout"), "{out}");

    let route = d
        .iter()
        .find(|d| d.message.contains("unknown key `prefx`"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(route.line, line_of(&text, "prefx"), "{out}");
    let known = route.message.split("known: ").nth(1).unwrap_or("");
    assert!(
        known.contains("prefix") && known.contains("path"),
        "route keys listed: {out}"
    );
}

#[test]
fn check_reports_an_unknown_upstream_with_a_suggestion_and_the_sorted_names() {
    let text = GOOD.replace("upstream = \"orders\"", "upstream = \"order\"");
    let (d, out) = check_fails("unknown-upstream", &text);
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!(
        d[0].message,
        "route \"orders\": unknown upstream \"order\" (did you mean \"orders\"? known: customers, legacy, orders)",
        "{out}"
    );
    assert_eq!(
        (d[0].line, d[0].col),
        (line_of(&text, "upstream = \"order\""), 12),
        "{out}"
    );

    // In [default] too.
    let text = GOOD.replace("upstream = \"legacy\"", "upstream = \"legacyy\"");
    let (d, out) = check_fails("unknown-default", &text);
    assert_eq!(d.len(), 1, "{out}");
    assert!(
        d[0].message
            .contains("unknown upstream \"legacyy\" (did you mean \"legacy\"? known: customers, legacy, orders)"),
        "{out}"
    );
    assert_eq!(d[0].line, line_of(&text, "legacyy"), "{out}");
}

#[test]
fn check_reports_bad_durations() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nidle_timeout = \"forever\"",
    );
    let (d, out) = check_fails("bad-duration", &text);
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!(
        (d[0].line, d[0].col),
        (line_of(&text, "forever"), 16),
        "{out}"
    );
    assert!(
        d[0].message.contains("idle_timeout") && d[0].message.contains("is not a duration"),
        "{out}"
    );

    let text = GOOD.replace(
        "rewrite = \"/orders/{rest}\"",
        "rewrite = \"/orders/{rest}\"\ntimeout = \"5 parsecs\"",
    );
    let (d, out) = check_fails("bad-route-timeout", &text);
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!(d[0].line, line_of(&text, "parsecs"), "{out}");
    assert!(d[0].message.contains("is not a duration"), "{out}");
}

#[test]
fn check_reports_bad_sizes() {
    let text = GOOD.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nmax_request_body = \"16 MB!\"",
    );
    let (d, out) = check_fails("bad-size", &text);
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!(d[0].line, line_of(&text, "16 MB!"), "{out}");
    assert!(
        d[0].message.contains("max_request_body") && d[0].message.contains("is not a size"),
        "{out}"
    );
}

#[test]
fn check_reports_duplicate_route_names() {
    let text = format!(
        "{GOOD}\n[[routes]]\nname = \"orders\"\nprefix = \"/orders\"\nupstream = \"orders\"\n"
    );
    let (d, out) = check_fails("duplicate-names", &text);
    assert_eq!(d.len(), 1, "{out}");
    let second = text
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| *l == "name = \"orders\"")
        .unwrap()
        + 1;
    assert_eq!(d[0].line, second, "at the second definition: {out}");
    assert!(
        d[0].message
            .contains("route \"orders\": duplicate route name"),
        "{out}"
    );
    // The first definition: its `[[routes]]` header or its `name` line.
    let first = line_of(&text, "name = \"orders\"");
    assert!(
        [first - 1, first]
            .iter()
            .any(|l| d[0].message.contains(&format!("first defined at line {l}"))),
        "{out}"
    );
}

#[test]
fn check_reports_bad_patterns() {
    for (bad, want) in [
        ("path = \"/api/orders/{rest\"", "is not a parameter"),
        ("path = \"api/orders/{*rest}\"", "must start with `/`"),
        ("path = \"/api/{*rest}/orders\"", "must be the last segment"),
    ] {
        let text = GOOD.replace("path = \"/api/orders/{*rest}\"", bad);
        let (d, out) = check_fails("bad-pattern", &text);
        assert!(
            d.iter().any(|d| d.message.contains(want)),
            "{bad}: wanted {want:?}: {out}"
        );
        assert!(
            d.iter().all(|d| d.line == line_of(&text, bad)),
            "{bad}: located at the pattern: {out}"
        );
    }
}

#[test]
fn check_reports_invalid_toml_with_its_location() {
    let text = GOOD.replace("[upstreams.legacy]", "[upstreams.legacy");
    let (d, out) = check_fails("bad-toml", &text);
    assert!(!d.is_empty(), "{out}");
    assert_eq!(d[0].line, line_of(&text, "[upstreams.legacy"), "{out}");
    assert!(d[0].message.contains("TOML"), "{out}");
}

#[test]
fn check_on_a_missing_file_says_so() {
    let path = std::env::temp_dir().join(format!(
        "strangler-cli-{}-does-not-exist.toml",
        std::process::id()
    ));
    let path = path.to_str().unwrap();
    let out = run(&["check", "--config", path]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains(path), "names the file: {out}");
    let lower = out.stderr.to_lowercase();
    assert!(
        lower.contains("no such file") || lower.contains("not found"),
        "says it does not exist: {out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn check_reports_all_three_mistakes_of_a_config() {
    let text = GOOD
        .replace("listen = ", "listn = ")
        .replace(
            "[upstreams.legacy]",
            "[upstreams.legacy]\nbalance = \"fastest\"",
        )
        .replace("upstream = \"customers\"", "upstream = \"customer\"");
    let (d, out) = check_fails("three", &text);
    assert_eq!(d.len(), 3, "{out}");
    assert_eq!(d[0].line, line_of(&text, "listn"), "{out}");
    assert!(d[0].message.contains("unknown key `listn`"), "{out}");
    assert_eq!(d[1].line, line_of(&text, "fastest"), "{out}");
    assert!(d[1].message.contains("\"fastest\""), "{out}");
    assert_eq!(d[2].line, line_of(&text, "\"customer\""), "{out}");
    assert!(
        d[2].message.contains("unknown upstream \"customer\""),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// check --against: what a reload from OLD to NEW would say

#[test]
fn check_against_prints_what_a_reload_would_change() {
    let old = TempConfig::new("old", GOOD);
    let new_text = GOOD
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8081\"")
        .replace(
            "targets = [\"http://127.0.0.1:9101\"]",
            "targets = [\"http://127.0.0.1:9101\", \"http://127.0.0.1:9102\"]",
        )
        .replace(
            "upstream = \"customers\"",
            "upstream = \"legacy\"\nshift = { to = \"customers\", percent = 10 }",
        )
        .replace(
            "name = \"orders\"",
            "name = \"orders-v2\"\nmethods = [\"GET\"]",
        );
    let new = TempConfig::new("new", &new_text);
    let out = run(&["check", "--config", new.path(), "--against", old.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stderr, "", "{out}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "[server]: listen 127.0.0.1:8080 -> 127.0.0.1:8081 (takes effect on restart)",
            "upstream \"orders\": targets http://127.0.0.1:9101 -> http://127.0.0.1:9101, http://127.0.0.1:9102",
            "route \"orders-v2\" added (GET /api/orders/{*rest} -> orders)",
            "route \"orders\" removed",
            "route \"customers\": upstream customers -> legacy",
            "route \"customers\": shift (none) -> to customers, 10%",
        ],
        "{out}"
    );

    // Backwards, the same changes undone.
    let out = run(&["check", "--config", old.path(), "--against", new.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "route \"customers\": shift to customers, 10% -> (none)"),
        "{out}"
    );
}

#[test]
fn check_against_the_same_config_says_nothing_changed() {
    let a = TempConfig::new("same-a", GOOD);
    let b = TempConfig::new("same-b", &format!("# reformatted\n\n{GOOD}\n# end\n"));
    let out = run(&["check", "--config", b.path(), "--against", a.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "nothing changed\n", "{out}");
}

#[test]
fn check_against_reports_the_errors_of_both_files() {
    let old = TempConfig::new("old-bad", &GOOD.replace("listen = ", "listn = "));
    let new = TempConfig::new(
        "new-bad",
        &GOOD.replace("upstream = \"orders\"", "upstream = \"order\""),
    );
    let out = run(&["check", "--config", new.path(), "--against", old.path()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    let (old_lines, new_lines): (Vec<&str>, Vec<&str>) =
        out.stderr.lines().partition(|l| l.starts_with(old.path()));
    let old_d = diags(old.path(), &old_lines.join("\n"));
    let new_d = diags(new.path(), &new_lines.join("\n"));
    assert_eq!(old_d.len(), 1, "{out}");
    assert_eq!((old_d[0].line, old_d[0].col), (2, 1), "{out}");
    assert!(old_d[0].message.contains("unknown key `listn`"), "{out}");
    assert_eq!(new_d.len(), 1, "{out}");
    assert_eq!(new_d[0].line, 19, "{out}");
    assert!(
        new_d[0].message.contains("unknown upstream \"order\""),
        "{out}"
    );

    // Only one of them bad: still exit 1, nothing printed on stdout.
    let good = TempConfig::new("good-too", GOOD);
    let out = run(&["check", "--config", good.path(), "--against", old.path()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(diags(old.path(), &out.stderr).len(), 1, "{out}");
}
