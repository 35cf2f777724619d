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
    let name = &config.upstreams[r.upstream].name;
    if extras.is_empty() {
        name.clone()
    } else {
        format!("{name} ({})", extras.join(", "))
    }
}

fn humantime(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
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
            (
                r.upstream,
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
}
