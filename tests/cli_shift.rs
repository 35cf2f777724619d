//! `strangler shift --config FILE ROUTE PERCENT` (SPEC 1) on the real
//! binary: only the number changes, every comment and blank line stays; bad
//! input (percent, route, a route without shift, an invalid file) gets a
//! clear error, exit 1, and leaves the file untouched.

mod support;

use support::process::{TempConfig, diags, run};

/// Comments everywhere, blank lines, odd spacing, tabs; one shift inline,
/// one as a `[routes.shift]` table on an unnamed route.
const FILE: &str = r#"# Customers are moving to the new service.
#   Keep this file's layout: reviewers diff it.

[upstreams.legacy]        # the monolith
targets = [ "http://127.0.0.1:9000" ]

[upstreams.customers]
	targets=["http://127.0.0.1:9201"]


[default]
upstream = "legacy"

[[routes]]
name   = "customers"    # the route being moved
prefix = "/api/customers"
upstream = "legacy"
shift = {to="customers",   percent=10 , sticky = "cookie:session"}  # step 1

# ---- profile pages, unnamed ----
[[routes]]
path = "/api/profile/{*rest}"
upstream = "legacy"

[routes.shift]
to = "customers"
percent	=  2.5   # see the runbook

[[routes]]
name = "static"
prefix = "/static"
upstream = "legacy"
"#;

fn read(f: &TempConfig) -> String {
    std::fs::read_to_string(f.path()).unwrap()
}

#[test]
fn shift_changes_only_the_number() {
    let f = TempConfig::new("shift", FILE);
    let out = run(&["shift", "--config", f.path(), "customers", "25"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout,
        format!(
            "route \"customers\": shift.percent 10 -> 25 ({})\n",
            f.path()
        )
    );
    assert_eq!(out.stderr, "", "{out}");
    let expected = FILE.replace("percent=10 ,", "percent=25 ,");
    assert_ne!(expected, FILE);
    assert_eq!(read(&f), expected, "byte for byte, but the number");

    // A decimal share, on a `[routes.shift]` table of an unnamed route.
    let out = run(&[
        "shift",
        "--config",
        f.path(),
        "/api/profile/{*rest}",
        "12.5",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout,
        format!(
            "route \"/api/profile/{{*rest}}\": shift.percent 2.5 -> 12.5 ({})\n",
            f.path()
        )
    );
    let expected = expected.replace("percent\t=  2.5 ", "percent\t=  12.5 ");
    assert_eq!(read(&f), expected);

    // And back to a whole number: an integer again.
    let out = run(&["shift", "--config", f.path(), "/api/profile/{*rest}", "100"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        read(&f),
        expected.replace("percent\t=  12.5 ", "percent\t=  100 ")
    );
    // The result is a valid config.
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn shift_to_the_current_share_writes_nothing() {
    let f = TempConfig::new("same", FILE);
    let out = run(&["shift", "--config", f.path(), "customers", "10.00"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout,
        format!(
            "route \"customers\": shift.percent is already 10 ({}); file not changed\n",
            f.path()
        )
    );
    assert_eq!(read(&f), FILE);
}

/// Runs `shift` with `route` and `percent`; expects exit 1, nothing on
/// stdout, the file untouched; returns stderr.
fn refused(route: &str, percent: &str) -> String {
    let f = TempConfig::new("refused", FILE);
    let out = run(&["shift", "--config", f.path(), route, percent]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(read(&f), FILE, "the file was changed: {out}");
    out.stderr.replace(f.path(), "FILE")
}

#[test]
fn shift_refuses_a_percent_outside_0_to_100_or_too_precise() {
    assert_eq!(
        refused("customers", "101"),
        "strangler: PERCENT 101 is outside 0-100\n"
    );
    assert_eq!(
        refused("customers", "-5"),
        "strangler: PERCENT -5 is outside 0-100\n"
    );
    assert_eq!(
        refused("customers", "12.345"),
        "strangler: PERCENT 12.345 has more than two decimals (the finest share is 0.01%)\n"
    );
    assert_eq!(
        refused("customers", "half"),
        "strangler: PERCENT \"half\" is not a number: write e.g. 25 or 12.5\n"
    );
}

#[test]
fn shift_on_an_unknown_route_lists_the_routes() {
    assert_eq!(
        refused("customer", "25"),
        "strangler: FILE: no route \"customer\" (did you mean \"customers\"? routes: customers, /api/profile/{*rest}, static)\n"
    );
}

#[test]
fn shift_on_a_route_without_shift_says_how_to_add_one() {
    assert_eq!(
        refused("static", "25"),
        "strangler: FILE:29:1: route \"static\" has no shift: add `shift = { to = \"UPSTREAM\", percent = N }` to it first\n"
    );
}

#[test]
fn shift_refuses_an_invalid_file_with_its_located_errors() {
    let bad = FILE.replace(
        "upstream = \"legacy\"\nshift",
        "upstream = \"legacyy\"\nshift",
    );
    let f = TempConfig::new("invalid", &bad);
    let out = run(&["shift", "--config", f.path(), "customers", "25"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(read(&f), bad);
    let d = diags(f.path(), &out.stderr);
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!((d[0].line, d[0].col), (17, 12), "{out}");
    assert!(
        d[0].message
            .starts_with("route \"customers\": unknown upstream \"legacyy\""),
        "{out}"
    );
}

#[test]
fn shift_on_a_missing_file_says_so() {
    let out = run(&[
        "shift",
        "--config",
        "/nonexistent/strangler.toml",
        "customers",
        "25",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .starts_with("cannot read config file /nonexistent/strangler.toml: "),
        "{out}"
    );
}
