//! From TOML text to a validated [`Config`]: every section read strictly, then
//! the cross-references (upstream names, duplicate route names) checked, with
//! every problem gathered before anything is returned.

use std::net::SocketAddr;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use toml::de::DeTable;

use super::reader::{Diags, SpannedStr, TableReader, suggestion};
use super::route;
use super::source::{ConfigError, Diagnostic, Located, SourceFile};
use super::{
    Balance, Config, Default, Eject, Health, MAX_RETRIES, Route, Server, Target, Upstream,
};
use crate::router::Router;

/// Keys SPEC defines whose features this build does not have yet. They are
/// refused, not ignored, so nobody believes a ramp or a shadow is running.
const UPSTREAM_NOT_YET: &[&str] = &["ca"];
const SERVER_NOT_YET: &[&str] = &["tls"];
const TOP_NOT_YET: &[&str] = &["async"];

pub(super) fn parse(src: &SourceFile) -> Result<Config, ConfigError> {
    let (doc, syntax) = DeTable::parse_recoverable(src.text());
    if !syntax.is_empty() {
        let located = syntax
            .iter()
            .map(|e| {
                src.locate(&Diagnostic {
                    span: e.span(),
                    message: format!("invalid TOML: {}", e.message().trim()),
                })
            })
            .collect();
        return Err(ConfigError::Invalid(located));
    }
    let diags = Diags::default();
    let mut top = TableReader::new(doc.get_ref(), "config", &diags);

    let server = match top.table("server") {
        Some((t, _)) => parse_server(t, &diags),
        None => Server::default(),
    };
    let upstreams = match top.table("upstreams") {
        Some((t, _)) => parse_upstreams(t, &diags),
        None => Vec::new(),
    };
    let names: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let default = top
        .table("default")
        .and_then(|(t, _)| parse_default(t, &names, &diags));
    let routes = top
        .tables("routes")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, (t, span))| route::parse_route(i, t, span, &names, src, &diags))
        .collect::<Vec<_>>();
    not_yet(&mut top, TOP_NOT_YET);
    top.finish();
    route::check_route_names(&routes, &diags);
    let routes: Vec<Route> = routes.into_iter().map(|(r, _)| r).collect();
    let errors = diags.into_vec();
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(
            errors.iter().map(|d| src.locate(d)).collect(),
        ));
    }
    let warnings = warnings(src, &doc, &upstreams, default.as_ref(), &routes);
    Ok(Config {
        file: src.name().to_owned(),
        path: None,
        server,
        upstreams,
        default,
        routes,
        warnings,
    })
}

pub(super) fn not_yet(r: &mut TableReader<'_, '_>, keys: &[&'static str]) {
    for &key in keys {
        if let Some(v) = r.value(key) {
            r.diags().error(
                v.span(),
                format!(
                    "{}: `{key}` is not supported by this version of strangler yet",
                    r.what()
                ),
            );
        }
    }
}

fn parse_server(t: &DeTable<'_>, diags: &Diags) -> Server {
    let mut r = TableReader::new(t, "[server]", diags);
    let d = Server::default();
    let listen = r
        .strings("listen")
        .map(|list| {
            if list.is_empty() {
                diags.error(0..0, "[server]: `listen` needs at least one address");
            }
            list.iter()
                .filter_map(|s| socket_addr(s, "listen", diags))
                .collect()
        })
        .unwrap_or(d.listen);
    let admin = r
        .string("admin")
        .and_then(|s| socket_addr(&s, "admin", diags));
    let admin_token = r.string("admin_token");
    if let Some(tok) = &admin_token
        && tok.get_ref().trim().is_empty()
    {
        diags.error(tok.span(), "[server]: `admin_token` must not be empty");
    }
    let workers = r.uint("workers", 1024).and_then(|n| {
        if *n.get_ref() == 0 {
            diags.error(n.span(), "[server]: `workers` must be at least 1");
            return None;
        }
        Some(*n.get_ref() as usize)
    });
    let max_connections = r
        .uint("max_connections", 10_000_000)
        .and_then(|n| {
            if *n.get_ref() == 0 {
                diags.error(n.span(), "[server]: `max_connections` must be at least 1");
                return None;
            }
            Some(*n.get_ref() as usize)
        })
        .unwrap_or(d.max_connections);
    let server = Server {
        listen,
        admin_token: admin_token.as_ref().map(|t| t.get_ref().clone()),
        connect_timeout: r.duration("connect_timeout").unwrap_or(d.connect_timeout),
        request_timeout: r.duration("request_timeout").unwrap_or(d.request_timeout),
        idle_timeout: r.duration("idle_timeout").unwrap_or(d.idle_timeout),
        header_read_timeout: r
            .duration("header_read_timeout")
            .unwrap_or(d.header_read_timeout),
        max_request_body: r.size("max_request_body").unwrap_or(d.max_request_body),
        max_connections,
        drain_timeout: r.duration("drain_timeout").unwrap_or(d.drain_timeout),
        merge_slashes: r.bool("merge_slashes").unwrap_or(d.merge_slashes),
        workers,
        admin,
    };
    if let Some(addr) = server.admin
        && !addr.ip().is_loopback()
        && server.admin_token.is_none()
        && let Some(v) = t.get("admin")
    {
        diags.error(
            v.span(),
            format!(
                "[server]: the admin API listens on {addr}, beyond loopback: set `admin_token` so writes need a bearer token (or listen on 127.0.0.1)"
            ),
        );
    }
    not_yet(&mut r, SERVER_NOT_YET);
    r.finish();
    server
}

fn socket_addr(s: &SpannedStr, key: &str, diags: &Diags) -> Option<SocketAddr> {
    match s.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            diags.error(
                s.span(),
                format!(
                    "[server]: `{key}` = \"{}\" is not an address: write IP:PORT, e.g. \"0.0.0.0:8080\" or \"[::1]:8080\"",
                    s.get_ref()
                ),
            );
            None
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_upstreams(t: &DeTable<'_>, diags: &Diags) -> Vec<Upstream> {
    let mut out = Vec::new();
    for (key, value) in t.iter() {
        let name: &str = key.get_ref();
        if !valid_name(name) {
            diags.error(
                key.span(),
                format!("upstream name \"{name}\" may only use letters, digits, `_`, `-` and `.`"),
            );
        }
        let what = format!("upstream \"{name}\"");
        let Some(table) = value.get_ref().as_table() else {
            diags.error(value.span(), format!("{what} must be a table"));
            continue;
        };
        let mut r = TableReader::new(table, what.clone(), diags);
        let targets: Vec<Target> = match r.string_list("targets") {
            Some(list) => {
                if list.is_empty() {
                    diags.error(key.span(), format!("{what}: `targets` is empty"));
                }
                list.iter()
                    .filter_map(|s| target(s, &what, diags))
                    .collect()
            }
            None => {
                diags.error(
                    key.span(),
                    format!(
                        "{what}: `targets` is missing (e.g. targets = [\"http://10.0.0.5:8080\"])"
                    ),
                );
                Vec::new()
            }
        };
        let balance = r
            .string("balance")
            .and_then(|s| match s.get_ref().as_str() {
                "round_robin" => Some(Balance::RoundRobin),
                "least_request" => Some(Balance::LeastRequest),
                "random" => Some(Balance::Random),
                other => {
                    diags.error(
                        s.span(),
                        format!("{what}: unknown balance \"{other}\" (known: least_request, random, round_robin)"),
                    );
                    None
                }
            })
            .unwrap_or_default();
        let host = r
            .string("host")
            .and_then(|s| match HeaderValue::from_str(s.get_ref()) {
                Ok(v) if !s.get_ref().is_empty() && !s.get_ref().contains(['/', ' ']) => Some(v),
                _ => {
                    diags.error(
                        s.span(),
                        format!("{what}: `host` = \"{}\" is not a host name", s.get_ref()),
                    );
                    None
                }
            });
        let health = r
            .table("health")
            .and_then(|(t, span)| parse_health(t, span, &format!("{what}.health"), diags));
        let eject = r
            .table("eject")
            .and_then(|(t, _)| parse_eject(t, &format!("{what}.eject"), diags));
        let retries = r
            .uint("retries", u64::from(MAX_RETRIES))
            .map_or(0, |n| *n.get_ref() as u32);
        not_yet(&mut r, UPSTREAM_NOT_YET);
        r.finish();
        out.push(Upstream {
            name: name.to_owned(),
            targets,
            balance,
            host,
            health,
            eject,
            retries,
        });
    }
    out
}

/// A threshold: a whole number of at least 1 (`u32` is plenty for a count in a row).
fn at_least_one(r: &mut TableReader<'_, '_>, key: &'static str) -> Option<Result<u32, ()>> {
    let n = match r.uint(key, u64::from(u32::MAX)) {
        Some(n) => n,
        None => return r.value(key).map(|_| Err(())),
    };
    if *n.get_ref() == 0 {
        r.diags().error(
            n.span(),
            format!("{}: `{key}` must be at least 1", r.what()),
        );
        return Some(Err(()));
    }
    Some(Ok(*n.get_ref() as u32))
}

/// A duration that, when present, must be valid: `Err` when it is not.
fn duration_or(
    r: &mut TableReader<'_, '_>,
    t: &DeTable<'_>,
    key: &'static str,
    default: std::time::Duration,
) -> Result<std::time::Duration, ()> {
    match r.duration(key) {
        Some(d) => Ok(d),
        None if t.get(key).is_none() => Ok(default),
        None => Err(()),
    }
}

fn parse_health(
    t: &DeTable<'_>,
    span: std::ops::Range<usize>,
    what: &str,
    diags: &Diags,
) -> Option<Health> {
    let mut r = TableReader::new(t, what, diags);
    let d = Health::default();
    let mut ok = true;
    let path = match r.string("path") {
        Some(p) if !p.get_ref().starts_with('/') || p.get_ref().contains([' ', '\r', '\n']) => {
            diags.error(
                p.span(),
                format!(
                    "{what}: `path` = \"{}\" must be a path starting with `/`, e.g. \"/health\"",
                    p.get_ref()
                ),
            );
            ok = false;
            d.path.clone()
        }
        Some(p) => p.get_ref().clone(),
        None => {
            ok &= t.get("path").is_none();
            d.path.clone()
        }
    };
    let interval = duration_or(&mut r, t, "interval", d.interval);
    let timeout = duration_or(&mut r, t, "timeout", d.timeout);
    let unhealthy_after = at_least_one(&mut r, "unhealthy_after").unwrap_or(Ok(d.unhealthy_after));
    let healthy_after = at_least_one(&mut r, "healthy_after").unwrap_or(Ok(d.healthy_after));
    r.finish();
    let (Ok(interval), Ok(timeout), Ok(unhealthy_after), Ok(healthy_after), true) =
        (interval, timeout, unhealthy_after, healthy_after, ok)
    else {
        return None;
    };
    if timeout > interval {
        let at = t.get("timeout").map_or(span, |v| v.span());
        diags.error(
            at,
            format!(
                "{what}: `timeout` ({}) must not be longer than `interval` ({}): a probe ends before the next one starts",
                humanize(timeout),
                humanize(interval)
            ),
        );
        return None;
    }
    Some(Health {
        path,
        interval,
        timeout,
        unhealthy_after,
        healthy_after,
    })
}

fn parse_eject(t: &DeTable<'_>, what: &str, diags: &Diags) -> Option<Eject> {
    let mut r = TableReader::new(t, what, diags);
    let d = Eject::default();
    let failures =
        at_least_one(&mut r, "consecutive_failures").unwrap_or(Ok(d.consecutive_failures));
    let duration = duration_or(&mut r, t, "for", d.duration);
    r.finish();
    Some(Eject {
        consecutive_failures: failures.ok()?,
        duration: duration.ok()?,
    })
}

/// A duration as it would be written in the file.
pub(super) fn humanize(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn target(s: &SpannedStr, what: &str, diags: &Diags) -> Option<Target> {
    let text = s.get_ref();
    let fail = |why: &str| {
        diags.error(
            s.span(),
            format!("{what}: target \"{text}\" {why} (write e.g. \"http://10.0.0.5:8080\")"),
        );
        None
    };
    let Ok(uri) = text.parse::<Uri>() else {
        return fail("is not a URL");
    };
    match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => {}
        Some(s) if *s == Scheme::HTTPS => {
            return fail("uses https, which this version of strangler does not support yet");
        }
        _ => return fail("needs the http:// scheme"),
    }
    let Some(auth) = uri.authority() else {
        return fail("has no host");
    };
    if auth.as_str().contains('@') {
        return fail("must not carry user info");
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return fail("must not have a path; use `rewrite` or `strip_prefix` on the route");
    }
    let port = auth.port_u16().unwrap_or(80);
    let url = format!("http://{}:{port}", auth.host());
    let authority = match Authority::try_from(format!("{}:{port}", auth.host())) {
        Ok(a) => a,
        Err(_) => return fail("has an invalid host"),
    };
    Some(Target { url, authority })
}

pub(super) fn upstream_ref(
    s: &SpannedStr,
    what: &str,
    names: &[&str],
    diags: &Diags,
) -> Option<usize> {
    let name = s.get_ref().as_str();
    if let Some(i) = names.iter().position(|n| *n == name) {
        return Some(i);
    }
    let mut known: Vec<&str> = names.to_vec();
    known.sort_unstable();
    let hint = suggestion(name, &known)
        .map(|s| format!("did you mean \"{s}\"? "))
        .unwrap_or_default();
    let list = if known.is_empty() {
        "none: define one under [upstreams.NAME]".to_owned()
    } else {
        known.join(", ")
    };
    diags.error(
        s.span(),
        format!("{what}: unknown upstream \"{name}\" ({hint}known: {list})"),
    );
    None
}

fn parse_default(t: &DeTable<'_>, names: &[&str], diags: &Diags) -> Option<Default> {
    let mut r = TableReader::new(t, "[default]", diags);
    let up = r.string("upstream");
    r.finish();
    match up {
        Some(s) => upstream_ref(&s, "[default]", names, diags).map(|upstream| Default { upstream }),
        None => {
            diags.error(0..0, "[default]: `upstream` is missing");
            None
        }
    }
}

fn warnings(
    src: &SourceFile,
    doc: &toml::Spanned<DeTable<'_>>,
    upstreams: &[Upstream],
    default: Option<&Default>,
    routes: &[Route],
) -> Vec<Located> {
    let mut out = Vec::new();
    let at_line = |line: usize, message: String| Located {
        file: src.name().to_owned(),
        line,
        col: 1,
        message,
    };
    let router = Router::new(
        routes
            .iter()
            .map(|r| (r.pattern.clone(), r.conditions.clone())),
    );
    for (later, earlier) in router.unreachable() {
        out.push(at_line(
            routes[later].line,
            format!(
                "route \"{}\" is unreachable: route \"{}\" (line {}) has the same pattern and takes every request it would",
                routes[later].name, routes[earlier].name, routes[earlier].line
            ),
        ));
    }
    for (i, u) in upstreams.iter().enumerate() {
        let used = default.is_some_and(|d| d.upstream == i)
            || routes.iter().any(|r| {
                r.upstream == Some(i)
                    || r.fallback == Some(i)
                    || r.shadow.as_ref().is_some_and(|sh| sh.to == i)
                    || r.compose
                        .as_ref()
                        .is_some_and(|c| c.legs.iter().any(|l| l.upstream == i))
                    || r.shift.as_ref().is_some_and(|s| s.to == i)
            });
        if !used {
            let span = doc
                .get_ref()
                .get("upstreams")
                .and_then(|v| v.get_ref().as_table())
                .and_then(|t| t.get_key_value(u.name.as_str()))
                .map_or(0, |(k, _)| k.span().start);
            out.push(src.locate(&Diagnostic::at(
                span..span,
                format!("upstream \"{}\" is not used by any route", u.name),
            )));
        }
    }
    for r in routes {
        if r.fallback.is_some() && r.fallback == r.upstream && r.shift.is_none() {
            out.push(at_line(
                r.line,
                format!(
                    "route \"{}\": `fallback` is the route's own upstream, so a failure is replayed where it failed",
                    r.name
                ),
            ));
        }
    }
    if routes.is_empty() && default.is_none() {
        out.push(at_line(
            1,
            "no routes and no [default]: every request will be answered 404".to_owned(),
        ));
    }
    out.sort_by_key(|w| w.line);
    out
}
