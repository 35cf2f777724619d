//! What `strangler check` and `strangler explain` print: the effective route
//! table (SPEC 1.1) and the path one request would take. Both read a config;
//! neither touches a running proxy.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::{Config, Route};
use crate::path;
use crate::router::{RequestInfo, Router};

/// The route table, one line per route in matching order, then the default.
pub fn route_table(config: &Config) -> String {
    let router = Router::new(
        config
            .routes
            .iter()
            .map(|r| (r.pattern.clone(), r.conditions.clone())),
    );
    let mut rows: Vec<[String; 3]> = vec![["ROUTE".into(), "MATCH".into(), "TARGET".into()]];
    for id in router.matching_order() {
        let r = &config.routes[id];
        rows.push([
            r.name.clone(),
            describe_match(r),
            describe_target(config, r),
        ]);
    }
    if let Some(d) = &config.default {
        rows.push([
            "(default)".into(),
            "/**".into(),
            config.upstreams[d.upstream].name.clone(),
        ]);
    }
    let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0) + 4;
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0) + 4;
    let mut out = String::new();
    for [a, b, c] in rows {
        let _ = writeln!(out, "{a:<w0$}{b:<w1$}{c}");
    }
    out
}

/// `GET,POST /api/orders/{*rest} host=... x-beta=1`.
fn describe_match(r: &Route) -> String {
    let mut s = String::new();
    if let Some(m) = &r.conditions.methods {
        let names: Vec<&str> = m.iter().map(Method::as_str).collect();
        s.push_str(&names.join(","));
        s.push(' ');
    }
    s.push_str(&r.pattern.to_string());
    if let Some(h) = &r.conditions.host {
        let _ = write!(s, " host={h}");
    }
    for (name, value) in &r.conditions.headers {
        let _ = write!(s, " {name}={}", value.to_str().unwrap_or("?"));
    }
    s
}

/// `orders (rewrite /orders/{rest}, timeout 5s)`.
fn describe_target(config: &Config, r: &Route) -> String {
    let mut extras = Vec::new();
    if !matches!(r.path_map, crate::router::PathMap::Keep) {
        extras.push(r.path_map.to_string());
    }
    if let Some(t) = r.timeout {
        extras.push(format!("timeout {}", humantime(t)));
    }
    if let Some(f) = r.fallback {
        let mut text = format!("fallback {}", config.upstreams[f].name);
        if r.fallback_on != crate::config::DEFAULT_FALLBACK_ON {
            let codes: Vec<String> = r.fallback_on.iter().map(u16::to_string).collect();
            let _ = write!(text, " on {}", codes.join(","));
        }
        extras.push(text);
    }
    let name = match (&r.compose, r.upstream) {
        (Some(c), _) => c.summary(),
        (None, Some(u)) => config.upstreams[u].name.clone(),
        (None, None) => "-".to_owned(),
    };
    let sides = match &r.shift {
        None => name.clone(),
        Some(shift) => {
            let new = crate::config::percent_text(shift.basis_points);
            let old = crate::config::percent_text(crate::shift::BUCKETS - shift.basis_points);
            let mut text = format!("{name} {old}% | {} {new}%", config.upstreams[shift.to].name);
            let mut how = Vec::new();
            if let Some(k) = &shift.sticky {
                how.push(format!("sticky {k}"));
            }
            if let Some(ramp) = &shift.ramp {
                how.push(format!(
                    "ramp +{}% every {}",
                    crate::config::percent_text(ramp.step_basis_points),
                    humantime(ramp.every)
                ));
            }
            if !how.is_empty() {
                let _ = write!(text, " ({})", how.join(", "));
            }
            text
        }
    };
    let sides = match &r.shadow {
        Some(sh) => format!("{sides}  {}", sh.summary(&config.upstreams)),
        None => sides,
    };
    if extras.is_empty() {
        sides
    } else {
        format!("{sides} ({})", extras.join(", "))
    }
}

/// The `shift` line of `explain`: the shares, and the side this request's
/// sticky key lands on when the request carries it.
fn explain_shift(
    config: &Config,
    r: &Route,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Option<(String, Option<usize>)> {
    use crate::shift::Side;
    let shift = r.shift.as_ref()?;
    let own = r.upstream?;
    let old = &config.upstreams[own].name;
    let new = &config.upstreams[shift.to].name;
    let mut line = format!(
        "{old} {}% | {new} {}% (the file's shares; a ramp may have moved them)",
        crate::config::percent_text(crate::shift::BUCKETS - shift.basis_points),
        crate::config::percent_text(shift.basis_points),
    );
    let view = crate::shift::Request {
        uri,
        headers,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let side_of = |side| match side {
        Side::New => (new.as_str(), shift.to),
        Side::Old => (old.as_str(), own),
    };
    let forced = shift
        .force_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .is_some_and(|v| v.as_bytes() == old.as_bytes() || v.as_bytes() == new.as_bytes());
    let key = shift
        .sticky
        .as_ref()
        .and_then(|k| crate::shift::sticky_key(k, &view).map(|v| (k, v)));
    let mut goes_to = None;
    if forced {
        // A forced side does not depend on the share.
        let (name, index) = side_of(crate::shift::choose(shift, 0, [old, new], &view));
        goes_to = Some(index);
        let header = shift.force_header.as_ref()?;
        let _ = write!(line, "\n           forced by {header}: {name}");
    } else if let Some((kind, value)) = key {
        let bucket = crate::shift::bucket(&value);
        let side = if bucket < shift.basis_points {
            Side::New
        } else {
            Side::Old
        };
        let (name, index) = side_of(side);
        goes_to = Some(index);
        let _ = write!(
            line,
            "\n           {kind} = {:?}: bucket {bucket} of 10000 → {name}",
            String::from_utf8_lossy(&value)
        );
    } else if let Some(k) = &shift.sticky {
        let _ = write!(
            line,
            "\n           no {k} in the request: the side is drawn per request"
        );
    }
    Some((line, goes_to))
}

/// The legs of a composed route, in the order they can start, each with what
/// it waits for.
fn explain_compose(out: &mut String, config: &Config, c: &crate::config::Compose) {
    let merge = match c.merge {
        crate::config::Merge::Nest => "nest",
        crate::config::Merge::Flat => "flat",
    };
    let _ = writeln!(
        out,
        "compose    {} legs, merge {merge}, one application/json answer",
        c.legs.len()
    );
    let width = c.legs.iter().map(|l| l.name.len() + 1).max().unwrap_or(0);
    for &i in &c.order {
        let l = &c.legs[i];
        let name = format!("{}{}", l.name, if l.optional { "?" } else { "" });
        let after = if l.deps.is_empty() {
            "at once".to_owned()
        } else {
            let names: Vec<&str> = l.deps.iter().map(|&d| c.legs[d].name.as_str()).collect();
            format!("after {}", names.join(", "))
        };
        let each = if l.path.each().is_some() {
            ", once per element"
        } else {
            ""
        };
        let timeout = l
            .timeout
            .map(|t| format!(", timeout {}", humantime(t)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "leg        {name:<width$}  {} {} {}  ({after}{each}{timeout})",
            l.method, config.upstreams[l.upstream].name, l.path
        );
    }
}

fn humantime(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() == 0 && secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if d.subsec_millis() == 0 && secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if d.subsec_millis() == 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Why `explain` could not even look the request up.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("\"{0}\" is not an HTTP method")]
    Method(String),
    #[error("header {0:?} is not `name: value`")]
    Header(String),
    #[error("the request target must start with `/`")]
    Target,
}

/// Where `METHOD TARGET` with `headers` would go, as lines of text.
pub fn explain(
    config: &Config,
    method: &str,
    target: &str,
    headers: &[String],
) -> Result<String, ExplainError> {
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| ExplainError::Method(method.into()))?;
    let mut map = HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| ExplainError::Header(h.clone()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ExplainError::Header(h.clone()))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|_| ExplainError::Header(h.clone()))?;
        map.append(name, value);
    }
    if !target.starts_with('/') {
        return Err(ExplainError::Target);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out = String::new();
    let normal = match path::normalize(raw_path, config.server.merge_slashes) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "answer     400 Bad Request: {e}");
            return Ok(out);
        }
    };
    if normal != raw_path {
        let _ = writeln!(out, "normalized {raw_path} → {normal}");
    }
    let router = Router::new(
        config
            .routes
            .iter()
            .map(|r| (r.pattern.clone(), r.conditions.clone())),
    );
    let host = map.get(http::header::HOST).and_then(|h| h.to_str().ok());
    let info = RequestInfo {
        method: &method,
        path: &normal,
        host,
        headers: &map,
    };
    let with_query = |p: &str| match query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    let (upstream, upstream_path, timeout) = match router.find(&info) {
        Some(m) => {
            let r = &config.routes[m.route];
            let _ = writeln!(out, "route      {} (line {})", r.name, r.line);
            let _ = writeln!(out, "match      {}", describe_match(r));
            for (name, range) in r.pattern.params().zip(&m.captures) {
                let _ = writeln!(out, "param      {name} = {}", &normal[range.clone()]);
            }
            if let Some(c) = &r.compose {
                explain_compose(&mut out, config, c);
                return Ok(out);
            }
            let uri: http::Uri = with_query(&normal).parse().unwrap_or_default();
            let Some(mut upstream) = r.upstream else {
                return Ok(out);
            };
            if let Some((line, goes_to)) = explain_shift(config, r, &uri, &map) {
                let _ = writeln!(out, "shift      {line}");
                upstream = goes_to.unwrap_or(upstream);
            }
            if let Some(sh) = &r.shadow {
                let methods: Vec<&str> = sh.methods.iter().map(Method::as_str).collect();
                let _ = writeln!(
                    out,
                    "shadow     {}% of {} copied to {} and compared (not when it is the primary)",
                    crate::config::percent_text(sh.basis_points),
                    methods.join("/"),
                    config.upstreams[sh.to].name
                );
            }
            if let Some(f) = r.fallback {
                let codes: Vec<String> = r.fallback_on.iter().map(u16::to_string).collect();
                let _ = writeln!(
                    out,
                    "fallback   {} on connect failure, timeout or {}",
                    config.upstreams[f].name,
                    codes.join("/")
                );
            }
            (
                upstream,
                r.path_map.apply(&normal, &m.captures),
                r.timeout.unwrap_or(config.server.request_timeout),
            )
        }
        None => match &config.default {
            Some(d) => {
                let _ = writeln!(out, "route      (default): no route matches");
                (
                    d.upstream,
                    normal.to_string(),
                    config.server.request_timeout,
                )
            }
            None => {
                let _ = writeln!(
                    out,
                    "answer     404 Not Found: no route matches and there is no [default]"
                );
                return Ok(out);
            }
        },
    };
    let u = &config.upstreams[upstream];
    let targets: Vec<&str> = u.targets.iter().map(|t| t.url.as_str()).collect();
    let _ = writeln!(
        out,
        "upstream   {} ({}: {})",
        u.name,
        u.balance.as_str(),
        targets.join(", ")
    );
    let _ = writeln!(out, "sends      {method} {}", with_query(&upstream_path));
    let _ = writeln!(out, "timeout    {}", humantime(timeout));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFile;

    const CONFIG: &str = r#"
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]
[upstreams.orders]
targets = ["http://127.0.0.1:9101"]
[default]
upstream = "legacy"
[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
[[routes]]
name = "orders"
path = "/api/orders/{*rest}"
methods = ["GET", "POST"]
upstream = "orders"
rewrite = "/orders/{rest}"
timeout = "5s"
[[routes]]
name = "order"
path = "/api/orders/{id}"
headers = { "x-beta" = "1" }
upstream = "orders"
"#;

    fn config() -> Config {
        Config::parse(&SourceFile::new("t.toml", CONFIG)).unwrap()
    }

    #[test]
    fn the_table_lists_routes_in_matching_order() {
        let table = route_table(&config());
        let lines: Vec<&str> = table.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "ROUTE        MATCH                           TARGET",
                "order        /api/orders/{id} x-beta=1       orders",
                "customers    /api/customers/**               legacy",
                "orders       GET,POST /api/orders/{*rest}    orders (rewrite /orders/{rest}, timeout 5s)",
                "(default)    /**                             legacy",
            ]
        );
    }

    #[test]
    fn explain_shows_route_params_and_upstream_path() {
        let out = explain(&config(), "GET", "/api/./orders/17/lines?x=1", &[]).unwrap();
        assert_eq!(
            out,
            "normalized /api/./orders/17/lines → /api/orders/17/lines\n\
             route      orders (line 12)\n\
             match      GET,POST /api/orders/{*rest}\n\
             param      rest = 17/lines\n\
             upstream   orders (round_robin: http://127.0.0.1:9101)\n\
             sends      GET /orders/17/lines?x=1\n\
             timeout    5s\n"
        );
        let beta = explain(&config(), "GET", "/api/orders/17", &["X-Beta: 1".into()]).unwrap();
        assert!(beta.starts_with("route      order (line 19)"), "{beta}");
        let default = explain(&config(), "DELETE", "/api/orders/17", &[]).unwrap();
        assert!(default.starts_with("route      (default)"), "{default}");
        let bad = explain(&config(), "GET", "/../etc", &[]).unwrap();
        assert_eq!(
            bad,
            "answer     400 Bad Request: the path climbs above `/`\n"
        );
        assert!(explain(&config(), "GET", "/", &["nocolon".into()]).is_err());
    }

    const SHIFTED: &str = r#"
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]
[upstreams.customers]
targets = ["http://127.0.0.1:9102"]
[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
shift = { to = "customers", percent = 10, sticky = "cookie:session", force_header = "x-side", ramp = { step = 5, every = "10m" } }
fallback = "legacy"
[[routes]]
name = "orders"
prefix = "/api/orders"
upstream = "customers"
fallback = "legacy"
fallback_on = [404]
"#;

    #[test]
    fn shifts_and_fallbacks_in_the_table() {
        let c = Config::parse(&SourceFile::new("t.toml", SHIFTED)).unwrap();
        let table = route_table(&c);
        let lines: Vec<&str> = table.lines().map(str::trim_end).collect();
        assert_eq!(
            lines[1],
            "customers    /api/customers/**    legacy 90% | customers 10% (sticky cookie:session, ramp +5% every 10m) (fallback legacy)"
        );
        assert_eq!(
            lines[2],
            "orders       /api/orders/**       customers (fallback legacy on 404)"
        );
    }

    #[test]
    fn explain_tells_the_side_of_a_sticky_key() {
        let c = Config::parse(&SourceFile::new("t.toml", SHIFTED)).unwrap();
        // bucket("alice") is 7236 (pinned in shift's tests): above 10%.
        let out = explain(
            &c,
            "GET",
            "/api/customers/1",
            &["Cookie: session=alice".into()],
        )
        .unwrap();
        assert!(
            out.contains("shift      legacy 90% | customers 10%"),
            "{out}"
        );
        assert!(
            out.contains("cookie:session = \"alice\": bucket 7236 of 10000 → legacy"),
            "{out}"
        );
        assert!(
            out.contains("fallback   legacy on connect failure, timeout or 502/503/504"),
            "{out}"
        );
        assert!(!out.contains("shadow "), "no shadow on this route: {out}");
        let forced = explain(&c, "GET", "/api/customers/1", &["x-side: customers".into()]).unwrap();
        assert!(forced.contains("forced by x-side: customers"), "{forced}");
        assert!(forced.contains("upstream   customers ("), "{forced}");
        assert!(out.contains("upstream   legacy ("), "{out}");
        // bucket("sam") is 24: inside the 10%.
        let sam = explain(
            &c,
            "GET",
            "/api/customers/1",
            &["Cookie: session=sam".into()],
        )
        .unwrap();
        assert!(sam.contains("bucket 24 of 10000 → customers"), "{sam}");
        assert!(sam.contains("upstream   customers ("), "{sam}");
        let keyless = explain(&c, "GET", "/api/customers/1", &[]).unwrap();
        assert!(
            keyless.contains("no cookie:session in the request"),
            "{keyless}"
        );
    }

    #[test]
    fn explain_lists_the_legs_in_start_order() {
        let c = Config::parse(&SourceFile::new(
            "t.toml",
            r#"
[upstreams.orders]
targets = ["http://127.0.0.1:9101"]
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]
[[routes]]
name = "details"
path = "/d/{id}"
[[routes.compose.legs]]
name = "stock"
upstream = "legacy"
path = "/inventory/{order.lines.*.sku}"
optional = true
timeout = "300ms"
[[routes.compose.legs]]
name = "order"
upstream = "orders"
path = "/orders/{id}"
"#,
        ))
        .unwrap();
        let out = explain(&c, "GET", "/d/7", &[]).unwrap();
        assert!(route_table(&c).contains("compose(stock?, order)"));
        let legs: Vec<&str> = out.lines().filter(|l| l.starts_with("leg")).collect();
        assert_eq!(
            legs,
            [
                "leg        order   GET orders /orders/{id}  (at once)",
                "leg        stock?  GET legacy /inventory/{order.lines.*.sku}  (after order, once per element, timeout 300ms)",
            ],
            "{out}"
        );
        assert!(out.contains("param      id = 7"), "{out}");
        assert!(!out.contains("sends"), "{out}");
    }
}
