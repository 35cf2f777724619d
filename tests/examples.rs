//! The configs shipped in config/ are what users copy first: they must load
//! without errors or warnings, and say what the README says they do.

mod support;

use support::process::run;

fn checks_clean(file: &str) -> String {
    let out = run(&["check", "--config", file]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        !out.stderr.contains("warning"),
        "{file} has warnings:\n{out}"
    );
    out.stdout
}

#[test]
fn the_commented_example_is_valid_and_shifts_customers_with_a_ramp() {
    let table = checks_clean("config/strangler.toml");
    let customers = table
        .lines()
        .find(|l| l.starts_with("customers "))
        .unwrap_or_else(|| panic!("no customers route:\n{table}"));
    assert!(
        customers
            .contains("legacy 90% | customers 10% (sticky cookie:session, ramp +10% every 10m)"),
        "{customers}"
    );
    assert!(customers.contains("fallback legacy"), "{customers}");
    assert!(customers.contains("shadow→customers 100%"), "{customers}");
    assert!(
        table.contains("compose(order, customer, stock?)"),
        "{table}"
    );
}

#[test]
fn the_demo_config_is_valid() {
    let table = checks_clean("config/demo.toml");
    assert!(table.contains("legacy 75% | customers 25%"), "{table}");
    assert!(
        table.contains("compose(order, customer, stock?)"),
        "{table}"
    );
}

#[test]
fn explain_names_the_shadow_of_the_example_route() {
    let out = support::process::run(&[
        "explain",
        "--config",
        "config/strangler.toml",
        "GET",
        "/api/customers/42",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("shadow     100% of GET/HEAD/OPTIONS copied to customers and compared"),
        "{out}"
    );
}
