use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(&SourceFile::new("strangler.toml", text))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.messages(),
    }
}

const MINIMAL: &str = r#"
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[upstreams.orders]
targets = ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]
balance = "least_request"

[default]
upstream = "legacy"

[[routes]]
name = "orders"
path = "/api/orders/{*rest}"
methods = ["GET", "POST"]
upstream = "orders"
rewrite = "/orders/{rest}"
timeout = "5s"
"#;

#[test]
fn a_valid_config_with_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server, Server::default());
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[1].balance, Balance::LeastRequest);
    assert_eq!(c.upstreams[1].targets[1].url, "http://127.0.0.1:9102");
    assert_eq!(c.default, Some(Default { upstream: 0 }));
    let r = &c.routes[0];
    assert_eq!(r.name, "orders");
    assert_eq!(r.upstream, Some(1));
    assert_eq!(r.timeout, Some(Duration::from_secs(5)));
    assert_eq!(r.line, 12);
    assert_eq!(r.conditions.methods.as_ref().map(Vec::len), Some(2));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn server_settings_are_read() {
    let c = parse(
        r#"
[server]
listen = ["127.0.0.1:8080", "[::1]:8080"]
admin = "127.0.0.1:9901"
connect_timeout = "250ms"
request_timeout = "1m"
idle_timeout = "90s"
header_read_timeout = "5s"
max_request_body = "1MiB"
max_connections = 10
drain_timeout = "1s"
merge_slashes = false
workers = 2
"#,
    )
    .unwrap();
    let s = &c.server;
    assert_eq!(s.listen.len(), 2);
    assert_eq!(s.connect_timeout, Duration::from_millis(250));
    assert_eq!(s.request_timeout, Duration::from_secs(60));
    assert_eq!(s.max_request_body, 1 << 20);
    assert_eq!(s.max_connections, 10);
    assert!(!s.merge_slashes);
    assert_eq!(s.workers, Some(2));
    assert_eq!(c.warnings.len(), 1, "no routes, no default: warned");
}

#[test]
fn every_error_is_reported_with_its_location() {
    let errs = errors(
        r#"[server]
listn = "0.0.0.0:8080"
idle_timeout = "forever"

[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]

[[routes]]
path = "/api/orders"
upstream = "order"
"#,
    );
    assert_eq!(
        errs,
        [
            "strangler.toml:2:1: [server]: unknown key `listn` (did you mean `listen`? known: admin, admin_token, connect_timeout, drain_timeout, header_read_timeout, idle_timeout, listen, max_connections, max_request_body, merge_slashes, request_timeout, tls, workers)",
            "strangler.toml:3:16: [server]: `idle_timeout`: `forever` is not a duration (write e.g. \"250ms\", \"2s\", \"5m\", \"1h\" or \"1m30s\")",
            "strangler.toml:10:12: route \"/api/orders\": unknown upstream \"order\" (known: legacy)",
        ]
    );
}

#[test]
fn unknown_upstream_lists_known_names_sorted() {
    let errs = errors(&MINIMAL.replace("upstream = \"orders\"", "upstream = \"order\""));
    assert_eq!(
        errs,
        [
            "strangler.toml:16:12: route \"orders\": unknown upstream \"order\" (did you mean \"orders\"? known: legacy, orders)"
        ]
    );
}

#[test]
fn syntax_errors_have_locations() {
    let errs = errors("[server\nlisten = 1\n");
    assert!(errs[0].starts_with("strangler.toml:1:"), "{errs:?}");
    assert!(errs[0].contains("invalid TOML"), "{errs:?}");
}

#[test]
fn bad_durations_and_sizes() {
    let errs = errors(
        "[server]\nconnect_timeout = \"2\"\nrequest_timeout = 30\nmax_request_body = \"16 MB!\"\ndrain_timeout = \"0s\"\n",
    );
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[0].contains("`connect_timeout`: `2` is not a duration"));
    assert!(errs[1].contains("`request_timeout` must be a string, not integer"));
    assert!(errs[2].contains("`max_request_body`: `16 MB!` is not a size"));
    assert!(errs[3].contains("`drain_timeout` must be longer than 0"));
}

#[test]
fn duplicate_route_names() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nname = \"orders\"\nprefix = \"/orders\"\nupstream = \"orders\"\n"
    );
    let errs = errors(&text);
    assert_eq!(
        errs,
        [
            "strangler.toml:21:8: route \"orders\": duplicate route name (first defined at line 12); names must be unique — set `name` to tell them apart"
        ]
    );
    // Unnamed routes are named after their pattern, so the same pattern twice collides too.
    let errs = errors(&format!(
        "{MINIMAL}\n[[routes]]\nprefix = \"/x\"\nupstream = \"orders\"\n[[routes]]\nprefix = \"/x\"\nupstream = \"legacy\"\n"
    ));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("route \"/x\": duplicate route name"));
}

#[test]
fn bad_patterns_and_rewrites() {
    let route = |body: &str| {
        format!(
            "[upstreams.u]\ntargets = [\"http://127.0.0.1:1\"]\n[[routes]]\nupstream = \"u\"\n{body}\n"
        )
    };
    let cases = [
        ("path = \"api\"", "`path` \"api\" must start with `/`"),
        ("path = \"/a//b\"", "empty segment"),
        ("path = \"/a/{id\"", "is not a parameter"),
        ("path = \"/a/{*r}/b\"", "must be the last segment"),
        ("prefix = \"/a/{x}\"", "a prefix is literal"),
        ("path = \"/a\"\nprefix = \"/a\"", "not both"),
        ("name = \"x\"", "needs `path"),
        (
            "path = \"/a/{id}\"\nrewrite = \"/b/{rest}\"",
            "uses `{rest}`, which the route's pattern does not define (it defines: id)",
        ),
        (
            "path = \"/a/{id}\"\nstrip_prefix = \"/b\"",
            "`/b` is not a prefix",
        ),
        (
            "path = \"/a/{id}\"\nstrip_prefix = \"/a\"\nrewrite = \"/x\"",
            "not both",
        ),
        (
            "path = \"/a\"\nmethods = [\"get\"]",
            "must be upper case (\"GET\")",
        ),
        ("path = \"/a\"\nmethods = []", "`methods` is empty"),
        (
            "path = \"/a\"\nheaders = { \"bad name\" = \"1\" }",
            "is not a header name",
        ),
        ("path = \"/a\"\nhost = \"a b\"", "is not a host name"),
        ("path = \"/a\"\ntimeout = \"soon\"", "is not a duration"),
        (
            "path = \"/a\"\nasync = { mode = \"always\" }",
            "`async` is not supported by this version of strangler yet",
        ),
        (
            "path = \"/a\"\nshadow = { to = \"nope\", percent = 5 }",
            "unknown upstream \"nope\"",
        ),
        (
            "path = \"/a\"\nshadow = { to = \"u\", percent = 5, ignore = [\"meta\"] }",
            "`meta` is not a JSON pointer",
        ),
        (
            "path = \"/a\"\nshadow = { to = \"u\" }",
            "`percent` is missing",
        ),
    ];
    for (body, want) in cases {
        let errs = errors(&route(body));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{body}: wanted {want:?} in {errs:?}"
        );
    }
}

#[test]
fn bad_upstreams() {
    let cases = [
        ("targets = []", "`targets` is empty"),
        (
            "balance = \"fastest\"\ntargets = [\"http://a:1\"]",
            "unknown balance \"fastest\" (known: least_request, random, round_robin)",
        ),
        ("targets = [\"10.0.0.1:80\"]", "needs the http:// scheme"),
        ("targets = [\"http://a:1/base\"]", "must not have a path"),
        ("targets = [\"https://a:1\"]", "https"),
        ("targets = [\"http://user@a:1\"]", "user info"),
        (
            "host = \"a b\"\ntargets = [\"http://a:1\"]",
            "is not a host name",
        ),
        (
            "ca = \"ca.pem\"\ntargets = [\"http://a:1\"]",
            "`ca` is not supported",
        ),
        (
            "health = { path = \"health\" }\ntargets = [\"http://a:1\"]",
            "`path` = \"health\" must be a path starting with `/`",
        ),
        (
            "health = { interval = \"0s\" }\ntargets = [\"http://a:1\"]",
            "upstream \"u\".health: `interval` must be longer than 0",
        ),
        (
            "health = { timeout = \"soon\" }\ntargets = [\"http://a:1\"]",
            "`timeout`: `soon` is not a duration",
        ),
        (
            "health = { interval = \"1s\", timeout = \"2s\" }\ntargets = [\"http://a:1\"]",
            "`timeout` (2s) must not be longer than `interval` (1s)",
        ),
        (
            "health = { unhealthy_after = 0 }\ntargets = [\"http://a:1\"]",
            "`unhealthy_after` must be at least 1",
        ),
        (
            "health = { healthy_after = -1 }\ntargets = [\"http://a:1\"]",
            "`healthy_after` must be between 0 and",
        ),
        (
            "health = { pth = \"/h\" }\ntargets = [\"http://a:1\"]",
            "unknown key `pth` (did you mean `path`?",
        ),
        (
            "health = \"/health\"\ntargets = [\"http://a:1\"]",
            "`health` must be a table",
        ),
        (
            "eject = { consecutive_failures = 0 }\ntargets = [\"http://a:1\"]",
            "upstream \"u\".eject: `consecutive_failures` must be at least 1",
        ),
        (
            "eject = { for = \"0ms\" }\ntargets = [\"http://a:1\"]",
            "`for` must be longer than 0",
        ),
        (
            "retries = 11\ntargets = [\"http://a:1\"]",
            "`retries` must be between 0 and 10, not 11",
        ),
        (
            "retries = \"1\"\ntargets = [\"http://a:1\"]",
            "`retries` must be a whole number",
        ),
        ("", "`targets` is missing"),
    ];
    for (body, want) in cases {
        let errs = errors(&format!(
            "[upstreams.u]\n{body}\n[default]\nupstream = \"u\"\n"
        ));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{body}: wanted {want:?} in {errs:?}"
        );
    }
}

#[test]
fn health_eject_and_retries_are_read_with_defaults_for_what_is_left_out() {
    let c = parse(
        r#"
[upstreams.u]
targets = ["http://a:1", "http://b:1"]
health = { path = "/ready", interval = "200ms", timeout = "100ms", unhealthy_after = 3 }
eject = { for = "10s" }
retries = 2

[upstreams.plain]
targets = ["http://c:1"]

[default]
upstream = "u"
"#,
    )
    .unwrap();
    let u = &c.upstreams[0];
    assert_eq!(
        u.health,
        Some(Health {
            path: "/ready".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(100),
            unhealthy_after: 3,
            healthy_after: 1,
        })
    );
    assert_eq!(
        u.eject,
        Some(Eject {
            consecutive_failures: 5,
            duration: Duration::from_secs(10),
        })
    );
    assert_eq!(u.retries, 2);
    let plain = &c.upstreams[1];
    assert_eq!(
        (plain.health.as_ref(), plain.eject, plain.retries),
        (None, None, 0)
    );
}

#[test]
fn health_errors_are_located() {
    let errs = errors(
        "[upstreams.u]\ntargets = [\"http://a:1\"]\nhealth = { path = \"/h\", interval = \"1s\", timeout = \"5s\" }\n[default]\nupstream = \"u\"\n",
    );
    assert!(errs[0].starts_with("strangler.toml:3:"), "{errs:?}");
}

#[test]
fn admin_beyond_loopback_needs_a_token() {
    let errs = errors("[server]\nadmin = \"0.0.0.0:9901\"\n");
    assert!(
        errs[0].contains("beyond loopback: set `admin_token`"),
        "{errs:?}"
    );
    assert!(parse("[server]\nadmin = \"0.0.0.0:9901\"\nadmin_token = \"s3cret\"\n").is_ok());
    assert!(parse("[server]\nadmin = \"127.0.0.1:9901\"\n").is_ok());
}

#[test]
fn warnings_for_unreachable_routes_and_unused_upstreams() {
    let c = parse(
        r#"
[upstreams.a]
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
"#,
    )
    .unwrap();
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "strangler.toml:4:12: upstream \"spare\" is not used by any route",
            "strangler.toml:10:1: route \"api-gets\" is unreachable: route \"all-api\" (line 6) has the same pattern and takes every request it would",
        ]
    );
}

/// A route on `legacy` with `body` added; `new` is a second upstream.
fn shifted(body: &str) -> String {
    format!(
        "[upstreams.legacy]\ntargets = [\"http://127.0.0.1:1\"]\n[upstreams.new]\ntargets = [\"http://127.0.0.1:2\"]\n[[routes]]\nname = \"r\"\nprefix = \"/a\"\nupstream = \"legacy\"\n{body}\n"
    )
}

#[test]
fn shift_and_ramp_are_read() {
    let c = parse(&shifted(
        "shift = { to = \"new\", percent = 12.5, sticky = \"cookie:session\", force_header = \"x-side\", ramp = { step = 5, every = \"30s\", max_error_rate = 0.05, min_requests = 20 } }",
    ))
    .unwrap();
    let s = c.routes[0].shift.as_ref().unwrap();
    assert_eq!(s.to, 1);
    assert_eq!(s.basis_points, 1250);
    assert_eq!(s.sticky, Some(Sticky::Cookie("session".into())));
    assert_eq!(s.force_header.as_ref().map(|h| h.as_str()), Some("x-side"));
    let ramp = s.ramp.as_ref().unwrap();
    assert_eq!(ramp.step_basis_points, 500);
    assert_eq!(ramp.every, Duration::from_secs(30));
    assert_eq!(ramp.max_error_rate, 0.05);
    assert_eq!(ramp.max_latency_ratio, 2.0, "the default");
    assert_eq!(ramp.min_requests, 20);
    assert_eq!(ramp.max_mismatch_rate, 0.02, "the default");

    for (text, want) in [
        ("ip", Sticky::Ip),
        (
            "header:x-user",
            Sticky::Header(http::HeaderName::from_static("x-user")),
        ),
        ("query:uid", Sticky::Query("uid".into())),
    ] {
        let c = parse(&shifted(&format!(
            "shift = {{ to = \"new\", percent = 1, sticky = \"{text}\" }}"
        )))
        .unwrap();
        assert_eq!(c.routes[0].shift.as_ref().unwrap().sticky, Some(want));
        assert_eq!(want_text(&c), text);
    }
    fn want_text(c: &Config) -> String {
        c.routes[0]
            .shift
            .as_ref()
            .unwrap()
            .sticky
            .as_ref()
            .unwrap()
            .to_string()
    }
}

#[test]
fn fallback_is_read_with_its_default_statuses() {
    let c = parse(&shifted("fallback = \"new\"")).unwrap();
    assert_eq!(c.routes[0].fallback, Some(1));
    assert_eq!(c.routes[0].fallback_on, DEFAULT_FALLBACK_ON);
    let c = parse(&shifted("fallback = \"new\"\nfallback_on = [404, 501]")).unwrap();
    assert_eq!(c.routes[0].fallback_on, [404, 501]);
}

#[test]
fn bad_shifts_and_fallbacks() {
    let cases = [
        (
            "shift = { to = \"new\", percent = 101 }",
            "`percent` must be between 0 and 100",
        ),
        (
            "shift = { to = \"new\", percent = -1 }",
            "`percent` must be between 0 and 100",
        ),
        (
            "shift = { to = \"new\", percent = 1.005 }",
            "more than two decimals",
        ),
        ("shift = { to = \"new\" }", "`percent` is missing"),
        ("shift = { percent = 5 }", "`to` is missing"),
        (
            "shift = { to = \"legacy\", percent = 5 }",
            "is the route's own upstream",
        ),
        (
            "shift = { to = \"nwe\", percent = 5 }",
            "unknown upstream \"nwe\" (did you mean \"new\"? known: legacy, new)",
        ),
        (
            "shift = { to = \"new\", percent = 5, sticky = \"session:id\" }",
            "unknown kind \"session\" (known: cookie, header, query, ip)",
        ),
        (
            "shift = { to = \"new\", percent = 5, sticky = \"cookie:\" }",
            "the cookie name is missing",
        ),
        (
            "shift = { to = \"new\", percent = 5, sticky = \"user\" }",
            "expected cookie:NAME, header:NAME, query:NAME or ip",
        ),
        (
            "shift = { to = \"new\", percent = 5, ramp = { step = 0 } }",
            "`step` must be more than 0",
        ),
        (
            "shift = { to = \"new\", percent = 5, ramp = { stpe = 5 } }",
            "unknown key `stpe` (did you mean `step`?",
        ),
        (
            "shift = { to = \"new\", percent = 5, ramp = { max_error_rate = 2 } }",
            "`max_error_rate` must be between 0 and 1",
        ),
        (
            "shift = { to = \"new\", percent = 5, ramp = { max_latency_ratio = 0 } }",
            "`max_latency_ratio` must be more than 0",
        ),
        (
            "shift = { to = \"new\", percent = 5, ramp = { every = \"0s\" } }",
            "`every` must be longer than 0",
        ),
        (
            "shift = { to = \"new\", percent = \"5%\" }",
            "`percent` must be a number",
        ),
        ("fallback = \"nope\"", "unknown upstream \"nope\""),
        ("fallback_on = [404]", "`fallback_on` needs `fallback"),
        (
            "fallback = \"new\"\nfallback_on = [200]",
            "error statuses from 400 to 599",
        ),
        (
            "fallback = \"new\"\nfallback_on = []",
            "`fallback_on` is empty",
        ),
    ];
    for (body, want) in cases {
        let errs = errors(&shifted(body));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{body}: wanted {want:?} in {errs:?}"
        );
    }
}

#[test]
fn percent_text_reads_back() {
    assert_eq!(percent_text(0), "0");
    assert_eq!(percent_text(1000), "10");
    assert_eq!(percent_text(1050), "10.5");
    assert_eq!(percent_text(1), "0.01");
    assert_eq!(percent_text(10000), "100");
}
