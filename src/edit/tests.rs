use super::*;

fn src(text: &str) -> SourceFile {
    SourceFile::new("f.toml", text)
}

/// `text` with the first `from` after `marker` replaced by `to`.
fn expect_only(text: &str, marker: &str, from: &str, to: &str) -> String {
    let at = text.find(marker).expect("marker") + marker.len();
    let rel = text[at..].find(from).expect("from after marker");
    let mut out = text.to_owned();
    out.replace_range(at + rel..at + rel + from.len(), to);
    out
}

const UPSTREAMS: &str = "[upstreams.legacy]\ntargets = [\"http://127.0.0.1:9000\"]\n[upstreams.customers]\ntargets = [\"http://127.0.0.1:9201\"]\n";

/// Comments, blank lines, odd spacing, CRLF-free but tabbed; the shift both
/// inline and as a sub-table, plus an unnamed route.
const MESSY: &str = r#"# The migration, step by step.
#   (do not reformat this file)

[upstreams.legacy]      # the monolith
targets = [ "http://127.0.0.1:9000" ,]

[upstreams.customers]
	targets=["http://127.0.0.1:9201"]   # new service


[[routes]]
name   =   "customers"   # moving to the new service
prefix = "/api/customers"
upstream = "legacy"
shift = {to="customers",percent=  10  ,   sticky = "cookie:session" }   # 10 first

# ----
[[routes]]
path = "/api/profile/{*rest}"
upstream = "legacy"

[routes.shift]
to = "customers"
# the share, see the runbook
percent =	5.5     # five and a half
ramp = { step = 10 }

[[routes]]
name = "static"
prefix = "/static"
upstream = "legacy"
"#;

#[test]
fn only_the_number_changes_in_an_inline_shift() {
    let e = edit_shift(&src(MESSY), "customers", 2500).unwrap();
    assert!(e.changed);
    assert_eq!((e.old.as_str(), e.new.as_str()), ("10", "25"));
    assert_eq!(
        e.text,
        expect_only(MESSY, "percent=  ", "10", "25"),
        "every other byte as it was"
    );
}

#[test]
fn only_the_number_changes_in_a_shift_sub_table_of_an_unnamed_route() {
    let e = edit_shift(&src(MESSY), "/api/profile/{*rest}", 1250).unwrap();
    assert_eq!((e.old.as_str(), e.new.as_str()), ("5.5", "12.5"));
    assert_eq!(e.text, expect_only(MESSY, "percent =\t", "5.5", "12.5"));
    // Integer stays integer: a whole share is written without a point.
    let e = edit_shift(&src(MESSY), "/api/profile/{*rest}", 10_000).unwrap();
    assert_eq!(e.text, expect_only(MESSY, "percent =\t", "5.5", "100"));
    let e = edit_shift(&src(MESSY), "customers", 1).unwrap();
    assert_eq!(e.text, expect_only(MESSY, "percent=  ", "10", "0.01"));
}

#[test]
fn dotted_keys_and_inline_route_arrays_are_found_too() {
    let dotted = format!(
        "{UPSTREAMS}[[routes]]\nname = \"c\"\nprefix = \"/c\"\nupstream = \"legacy\"\nshift.to = \"customers\"\nshift.percent = 0 # none yet\n"
    );
    let e = edit_shift(&src(&dotted), "c", 300).unwrap();
    assert_eq!(e.text, dotted.replace("percent = 0 #", "percent = 3 #"));

    // Top-level keys come before the first table.
    let inline = format!(
        "routes = [\n  {{ name = \"c\", prefix = \"/c\", upstream = \"legacy\", shift = {{ to = \"customers\", percent = 40 }} }},\n]\n{UPSTREAMS}"
    );
    let e = edit_shift(&src(&inline), "c", 4500).unwrap();
    assert_eq!(e.text, inline.replace("percent = 40", "percent = 45"));
}

#[test]
fn the_same_share_changes_nothing() {
    let e = edit_shift(&src(MESSY), "customers", 1000).unwrap();
    assert!(!e.changed);
    assert_eq!(e.text, MESSY);
    let e = edit_shift(&src(MESSY), "/api/profile/{*rest}", 550).unwrap();
    assert!(!e.changed);
}

#[test]
fn an_unknown_route_lists_the_routes() {
    let err = edit_shift(&src(MESSY), "customer", 2500).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml: no route \"customer\" (did you mean \"customers\"? routes: customers, /api/profile/{*rest}, static)"
    );
    let err = edit_shift(&src(MESSY), "zzz", 2500).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml: no route \"zzz\" (routes: customers, /api/profile/{*rest}, static)"
    );
    let err = edit_shift(&src(UPSTREAMS), "zzz", 2500).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml: no route \"zzz\" (routes: none in the file)"
    );
}

#[test]
fn a_route_without_shift_says_how_to_add_one() {
    let err = edit_shift(&src(MESSY), "static", 2500).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f.toml:28:1: route \"static\" has no shift: add `shift = { to = \"UPSTREAM\", percent = N }` to it first"
    );
}

#[test]
fn an_invalid_file_is_refused_with_its_located_errors() {
    let bad = MESSY.replace(
        "upstream = \"legacy\"\nshift",
        "upstream = \"legacy2\"\nshift",
    );
    let Err(ShiftError::Config(e)) = edit_shift(&src(&bad), "customers", 2500) else {
        panic!("an invalid file was edited");
    };
    let messages = e.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("f.toml:14:12: route \"customers\": unknown upstream \"legacy2\""),
        "{messages:?}"
    );
}

#[test]
fn percent_text_is_validated() {
    assert_eq!(parse_percent("25").unwrap(), 2500);
    assert_eq!(parse_percent("0").unwrap(), 0);
    assert_eq!(parse_percent("100").unwrap(), 10_000);
    assert_eq!(parse_percent("100.00").unwrap(), 10_000);
    assert_eq!(parse_percent("12.5").unwrap(), 1250);
    assert_eq!(parse_percent("0.01").unwrap(), 1);
    assert_eq!(parse_percent("007").unwrap(), 700);
    assert_eq!(parse_percent("25%").unwrap(), 2500);
    assert_eq!(parse_percent("12.500").unwrap(), 1250);
    for (bad, msg) in [
        ("101", "PERCENT 101 is outside 0-100"),
        ("100.01", "PERCENT 100.01 is outside 0-100"),
        ("-5", "PERCENT -5 is outside 0-100"),
        (
            "99999999999999999999",
            "PERCENT 99999999999999999999 is outside 0-100",
        ),
        (
            "12.345",
            "PERCENT 12.345 has more than two decimals (the finest share is 0.01%)",
        ),
        (
            "ten",
            "PERCENT \"ten\" is not a number: write e.g. 25 or 12.5",
        ),
        ("", "PERCENT \"\" is not a number: write e.g. 25 or 12.5"),
        (
            "1e2",
            "PERCENT \"1e2\" is not a number: write e.g. 25 or 12.5",
        ),
        (
            ".5",
            "PERCENT \".5\" is not a number: write e.g. 25 or 12.5",
        ),
        (
            "5.",
            "PERCENT \"5.\" is not a number: write e.g. 25 or 12.5",
        ),
        (
            "1.2.3",
            "PERCENT \"1.2.3\" is not a number: write e.g. 25 or 12.5",
        ),
    ] {
        assert_eq!(
            parse_percent(bad).map_err(|e| e.to_string()),
            Err(msg.to_owned()),
            "{bad}"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_file_is_replaced_whole_with_its_permissions() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("strangler-edit-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strangler.toml");
    std::fs::write(&path, MESSY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Reached through a symlink: the link stays a link, the target changes.
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&path, &link).unwrap();

    let done = shift_file(&link, "customers", "25").unwrap();
    assert_eq!(
        done.to_string(),
        format!(
            "route \"customers\": shift.percent 10 -> 25 ({})",
            link.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        expect_only(MESSY, "percent=  ", "10", "25")
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");

    let again = shift_file(&path, "customers", "25").unwrap();
    assert!(!again.written);
    assert_eq!(
        again.to_string(),
        format!(
            "route \"customers\": shift.percent is already 25 ({}); file not changed",
            path.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
