//! The `strangler` binary's command line (SPEC 1): `check` prints the route
//! table or every config error as `FILE:LINE:COL: message` with exit 1,
//! `explain` shows where one request would go, plain `--config FILE` and
//! `STRANGLER_CONFIG` run the proxy, `--log-format json` writes one JSON
//! object per line with the access log's fields, and `demo` starts the shop
//! behind the proxy. Every test runs the real binary.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Safety net for a child to start, answer, or exit.
const WAIT: Duration = Duration::from_secs(10);

const BIN: &str = env!("CARGO_BIN_EXE_strangler");
const DEMO_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");

/// A config file under the temp dir, removed on drop.
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "strangler-cli-{}-{}-{name}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig { path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The binary with a clean environment for logging and config.
fn strangler() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG")
        .env_remove("STRANGLER_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// A finished run.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let o = strangler().args(args).output().expect("run strangler");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Removes ANSI escape sequences (colored log output).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A child process whose stdout and stderr are read line by line.
struct Running {
    child: tokio::process::Child,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every line read so far: ("out" | "err", line).
    seen: Vec<(&'static str, String)>,
}

fn pump(r: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn strangler");
        let out = pump(child.stdout.take().unwrap());
        let err = pump(child.stderr.take().unwrap());
        Running {
            child,
            out,
            err,
            seen: Vec::new(),
        }
    }

    fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(w, l)| format!("[{w}] {l}\n"))
            .collect()
    }

    /// Waits for a line on stdout (`stdout = true`) or stderr matching `pred`.
    async fn line(&mut self, stdout: bool, pred: impl Fn(&str) -> bool) -> String {
        let fut = async {
            loop {
                let (which, rx) = if stdout {
                    ("out", &mut self.out)
                } else {
                    ("err", &mut self.err)
                };
                match rx.recv().await {
                    Some(l) => {
                        self.seen.push((which, l.clone()));
                        if pred(&l) {
                            return Some(l);
                        }
                    }
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!("output ended first; so far:\n{}", self.transcript()),
            Err(_) => panic!(
                "no such line within {WAIT:?}; so far:\n{}",
                self.transcript()
            ),
        }
    }

    /// The proxy's listening address, from its "listening" log line.
    async fn listening(&mut self) -> SocketAddr {
        let line = self.line(false, |l| listening_addr(l).is_some()).await;
        listening_addr(&line).unwrap()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("child still running");
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits for the child to exit; then reads the rest of its output.
    async fn exit(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => panic!(
                "strangler did not exit within {WAIT:?}; output:\n{}",
                self.transcript()
            ),
        };
        while let Ok(Some(l)) = tokio::time::timeout(WAIT, self.out.recv()).await {
            self.seen.push(("out", l));
        }
        while let Ok(Some(l)) = tokio::time::timeout(WAIT, self.err.recv()).await {
            self.seen.push(("err", l));
        }
        status
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter(|(w, _)| *w == "err")
            .map(|(_, l)| l.as_str())
            .collect()
    }
}

/// The address in a "listening" log line, pretty or JSON (not "admin listening").
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return (v["message"] == "listening")
            .then(|| v["addr"].as_str()?.parse().ok())
            .flatten();
    }
    let rest = line.split(": listening ").nth(1)?;
    rest.split_whitespace()
        .find_map(|t| t.strip_prefix("addr="))?
        .parse()
        .ok()
}

/// A config running the proxy on an ephemeral port in front of `b`.
fn proxy_config(b: &Server) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[upstreams.backend]
targets = ["{}"]

[upstreams.orders]
targets = ["{}"]

[default]
upstream = "backend"

[[routes]]
name = "orders"
path = "/api/orders/{{id}}"
upstream = "orders"
"#,
        b.url(),
        b.url()
    )
}

// ---------------------------------------------------------------- check

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
        ["orders", "/api/orders/**", "orders"],
        [
            "orders-v2",
            "GET /v2/orders/{id}",
            "orders (rewrite /orders/{id})",
        ],
        ["customers-beta", "/api/customers/** x-beta=1", "customers"],
        ["customers", "/api/customers/**", "legacy"],
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

/// A parsed `FILE:LINE:COL: message` line.
#[derive(Debug)]
struct Diag {
    line: usize,
    col: usize,
    message: String,
}

/// Parses every stderr line as `{file}:LINE:COL: message`.
fn diags(file: &str, stderr: &str) -> Vec<Diag> {
    stderr
        .lines()
        .map(|l| {
            let parse = || {
                let rest = l.strip_prefix(file)?.strip_prefix(':')?;
                let (line, rest) = rest.split_once(':')?;
                let (col, message) = rest.split_once(": ")?;
                Some(Diag {
                    line: line.parse().ok()?,
                    col: col.parse().ok()?,
                    message: message.to_owned(),
                })
            };
            parse().unwrap_or_else(|| panic!("not `{file}:LINE:COL: message`: {l:?}"))
        })
        .collect()
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

// ---------------------------------------------------------------- explain

const EXPLAIN: &str = r#"[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[upstreams.orders]
targets = ["http://127.0.0.1:9101"]

[upstreams.beta]
targets = ["http://127.0.0.1:9301"]

[default]
upstream = "legacy"

# Same pattern: file order decides, so the header-conditioned route comes first.
[[routes]]
name = "orders-beta"
path = "/api/orders/{id}"
headers = { "x-beta" = "1" }
upstream = "beta"
rewrite = "/v2/orders/{id}"

[[routes]]
name = "orders"
path = "/api/orders/{id}"
upstream = "orders"
rewrite = "/orders/{id}"
"#;

#[test]
fn the_explain_config_is_clean() {
    let f = TempConfig::new("explain-clean", EXPLAIN);
    let out = run(&["check", "--config", f.path()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stderr, "", "no warnings: {out}");
}

#[test]
fn explain_shows_route_params_upstream_and_rewritten_path() {
    let f = TempConfig::new("explain", EXPLAIN);
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17?expand=1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let s = &out.stdout;
    assert!(s.contains("orders"), "{out}");
    let route = s
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("no route line: {out}"));
    assert!(route.split_whitespace().nth(1) == Some("orders"), "{out}");
    assert!(
        s.lines()
            .any(|l| l.starts_with("param") && l.contains("id = 17")),
        "{out}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("upstream")
            && l.contains("orders")
            && l.contains("127.0.0.1:9101")),
        "{out}"
    );
    assert!(
        s.lines().any(|l| l.contains("GET /orders/17?expand=1")),
        "upstream path after rewrite, query kept: {out}"
    );
}

#[test]
fn explain_picks_the_header_conditioned_route() {
    let f = TempConfig::new("explain-beta", EXPLAIN);
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17",
        "-H",
        "x-beta: 1",
    ]);
    assert_eq!(out.code, Some(0), "{out}");
    let route = out
        .stdout
        .lines()
        .find(|l| l.starts_with("route"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        route.split_whitespace().nth(1),
        Some("orders-beta"),
        "{out}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("upstream") && l.contains("beta")),
        "{out}"
    );
    assert!(out.stdout.contains("GET /v2/orders/17"), "{out}");

    // A different header value does not select it.
    let out = run(&[
        "explain",
        "--config",
        f.path(),
        "GET",
        "/api/orders/17",
        "-H",
        "x-beta: 2",
    ]);
    let route = out.stdout.lines().find(|l| l.starts_with("route")).unwrap();
    assert_eq!(route.split_whitespace().nth(1), Some("orders"), "{out}");
}

#[test]
fn explain_shows_the_400_for_a_bad_path() {
    let f = TempConfig::new("explain-bad-path", EXPLAIN);
    for path in ["/../etc/passwd", "/api/%zz"] {
        let out = run(&["explain", "--config", f.path(), "GET", path]);
        assert_eq!(out.code, Some(0), "{path}: {out}");
        assert!(out.stdout.contains("400"), "{path}: {out}");
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("sends")),
            "{path}: nothing is sent: {out}"
        );
    }
}

#[test]
fn explain_exits_1_on_a_bad_config() {
    let text = EXPLAIN.replace("upstream = \"beta\"", "upstream = \"betta\"");
    let f = TempConfig::new("explain-bad-config", &text);
    let out = run(&["explain", "--config", f.path(), "GET", "/api/orders/17"]);
    assert_eq!(out.code, Some(1), "{out}");
    let d = diags(f.path(), &out.stderr);
    assert!(
        d.iter()
            .any(|d| d.message.contains("unknown upstream \"betta\"")),
        "{out}"
    );
}

// ---------------------------------------------------------------- run

/// Starts the proxy with `cmd`, checks it forwards a request to `b`, then
/// stops it with SIGTERM and expects exit 0.
async fn serves_then_stops(cmd: Command, b: &Server) {
    let mut p = Running::spawn(cmd);
    let addr = p.listening().await;
    let a = get(&format!("http://{addr}/hello?x=1")).await;
    assert_eq!(a.status, 200, "{}", p.transcript());
    assert_eq!(a.header("x-served-by"), Some("backend"));
    assert_eq!(a.json()["path"], "/hello?x=1");
    assert_eq!(b.requests(), 1);
    p.signal("TERM");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());
}

#[tokio::test]
async fn plain_config_flag_runs_the_proxy() {
    let b = backend("backend").await;
    let f = TempConfig::new("plain", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.args(["--config", f.path()]);
    serves_then_stops(cmd, &b).await;
}

#[tokio::test]
async fn strangler_config_env_with_run_runs_the_proxy() {
    let b = backend("backend").await;
    let f = TempConfig::new("env", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.arg("run").env("STRANGLER_CONFIG", f.path());
    serves_then_stops(cmd, &b).await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_an_access_log() {
    let b = backend("backend").await;
    let f = TempConfig::new("json", &proxy_config(&b));
    let mut cmd = strangler();
    cmd.args(["run", "--config", f.path(), "--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut p = Running::spawn(cmd);
    let addr = p.listening().await;
    let a = get(&format!("http://{addr}/api/orders/17?x=1")).await;
    assert_eq!(a.status, 200);
    let request_id = a.header("x-request-id").expect("x-request-id").to_owned();
    p.signal("TERM");
    assert_eq!(p.exit().await.code(), Some(0), "{}", p.transcript());

    let mut access = Vec::new();
    for line in p.stderr_lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v.is_object(), "{line}");
        if v["request_id"].is_string() && v["status"].is_number() {
            access.push(v);
        }
    }
    assert_eq!(access.len(), 1, "one access-log object: {}", p.transcript());
    let v = &access[0];
    assert_eq!(v["request_id"], request_id.as_str(), "{v}");
    let client: SocketAddr = v["client"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("client is an address: {v}"));
    assert!(client.ip().is_loopback(), "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["path"], "/api/orders/17?x=1", "{v}");
    assert_eq!(v["route"], "orders", "{v}");
    assert_eq!(v["upstream"], "orders", "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert!(v["duration_us"].is_u64(), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(a.body.len() as u64), "{v}");
}

// ---------------------------------------------------------------- demo

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[tokio::test]
async fn demo_serves_the_shop_through_the_proxy_and_exits_on_sigterm() {
    let demo = std::fs::read_to_string(DEMO_TOML).expect("config/demo.toml");
    let ports = free_ports(4);
    let mut text = demo.clone();
    for (old, new) in ["8080", "9000", "9101", "9201"].iter().zip(&ports) {
        assert!(
            text.contains(&format!("127.0.0.1:{old}")),
            "demo.toml uses {old}"
        );
        text = text.replace(&format!("127.0.0.1:{old}"), &format!("127.0.0.1:{new}"));
    }
    let f = TempConfig::new("demo", &text);
    let proxy = format!("http://127.0.0.1:{}", ports[0]);

    let mut cmd = strangler();
    cmd.args(["demo", "--config", f.path()]);
    let mut p = Running::spawn(cmd);
    let banner = p
        .line(true, |l| {
            l.split_whitespace().next() == Some("proxy") && l.contains("http://")
        })
        .await;
    assert!(banner.contains(&proxy), "banner names {proxy}: {banner}");

    let a = get(&format!("{proxy}/api/orders/1001")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-served-by"), Some("orders"));
    assert!(a.json().is_object());

    let a = get(&format!("{proxy}/")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        a.headers
    );
    assert!(a.text().contains("<html"), "{}", a.text());

    p.signal("TERM");
    assert_eq!(p.exit().await.code(), Some(0), "{}", p.transcript());
}
