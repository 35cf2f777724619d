//! `[[routes]]` entries: pattern, conditions, upstream, path mapping and
//! timeout, each checked with its own located error; and the one rule across
//! routes, unique names.

use std::ops::Range;

use http::{HeaderName, HeaderValue, Method};
use toml::de::DeTable;

use super::Route;
use super::parse::{not_yet, upstream_ref};
use super::reader::{Diags, SpannedStr, TableReader};
use super::source::SourceFile;
use crate::router::{Conditions, HostMatch, PathMap, Pattern};

/// Route keys SPEC defines whose features this build does not have yet. They
/// are refused, not ignored, so nobody believes a ramp or a shadow is running.
const ROUTE_NOT_YET: &[&str] = &[
    "shift",
    "shadow",
    "fallback",
    "fallback_on",
    "compose",
    "async",
];

/// Reads one `[[routes]]` table (the `index`-th, at `span`); `None` when it
/// has errors, which are recorded in `diags`. Also returns the span to blame
/// for a duplicate name.
pub(super) fn parse_route(
    index: usize,
    t: &DeTable<'_>,
    span: Range<usize>,
    names: &[&str],
    src: &SourceFile,
    diags: &Diags,
) -> Option<(Route, Range<usize>)> {
    // Name first, so every later message can say which route it is about.
    let pattern_text = t
        .get("path")
        .or_else(|| t.get("prefix"))
        .and_then(|v| v.get_ref().as_str());
    let what = match (
        t.get("name").and_then(|v| v.get_ref().as_str()),
        pattern_text,
    ) {
        (Some(n), _) | (None, Some(n)) => format!("route \"{n}\""),
        (None, None) => format!("route #{}", index + 1),
    };
    let mut r = TableReader::new(t, what.clone(), diags);

    let name = r.string("name");
    if let Some(n) = &name
        && n.get_ref().trim().is_empty()
    {
        diags.error(n.span(), format!("{what}: `name` must not be empty"));
    }
    let path = r.string("path");
    let prefix = r.string("prefix");
    let pattern = match (&path, &prefix) {
        (Some(p), None) => pattern_or_error(Pattern::path(p.get_ref()), p, "path", &what, diags),
        (None, Some(p)) => {
            pattern_or_error(Pattern::prefix(p.get_ref()), p, "prefix", &what, diags)
        }
        (Some(_), Some(p)) => {
            diags.error(
                p.span(),
                format!("{what}: give `path` or `prefix`, not both"),
            );
            None
        }
        (None, None) => {
            diags.error(
                span.clone(),
                format!("{what}: needs `path = \"/...\"` or `prefix = \"/...\"`"),
            );
            None
        }
    };
    let methods = r.string_list("methods").map(|list| {
        if list.is_empty() {
            diags.error(
                t.get("methods").map_or(span.clone(), |v| v.span()),
                format!("{what}: `methods` is empty; leave it out to accept every method"),
            );
        }
        list.iter()
            .filter_map(|m| method(m, &what, diags))
            .collect::<Vec<_>>()
    });
    let headers = r
        .string_map("headers")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| header(&k, &v, &what, diags))
        .collect();
    let host = r.string("host").and_then(|h| {
        let text = h.get_ref();
        let ok = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b':' | b'[' | b']'))
            && !text[1..].contains('*');
        if ok {
            Some(HostMatch::parse(text))
        } else {
            diags.error(
                h.span(),
                format!("{what}: `host` = \"{text}\" is not a host name (e.g. \"shop.example.com\" or \"*.example.com\")"),
            );
            None
        }
    });
    let upstream = match r.string("upstream") {
        Some(s) => upstream_ref(&s, &what, names, diags),
        None => {
            diags.error(span.clone(), format!("{what}: `upstream` is missing"));
            None
        }
    };
    let rewrite = r.string("rewrite");
    let strip = r.string("strip_prefix");
    let path_map = match (&pattern, &rewrite, &strip) {
        (_, Some(_), Some(s)) => {
            diags.error(
                s.span(),
                format!("{what}: give `rewrite` or `strip_prefix`, not both"),
            );
            None
        }
        (Some(p), Some(rw), None) => match PathMap::rewrite(rw.get_ref(), p) {
            Ok(m) => Some(m),
            Err(e) => {
                diags.error(rw.span(), format!("{what}: `rewrite` {e}"));
                None
            }
        },
        (Some(p), None, Some(s)) => match PathMap::strip(s.get_ref(), p) {
            Ok(m) => Some(m),
            Err(e) => {
                diags.error(s.span(), format!("{what}: `strip_prefix` {e}"));
                None
            }
        },
        (_, None, None) => Some(PathMap::Keep),
        (None, _, _) => None,
    };
    let timeout = r.duration("timeout");
    not_yet(&mut r, ROUTE_NOT_YET);
    r.finish();

    let pattern = pattern?;
    let name_span = name
        .as_ref()
        .map(|n| n.span())
        .or_else(|| path.as_ref().or(prefix.as_ref()).map(|p| p.span()))
        .unwrap_or(span.clone());
    let name = name
        .map(|n| n.into_inner())
        .unwrap_or_else(|| pattern_text.unwrap_or_default().to_owned());
    let route = Route {
        name,
        conditions: Conditions {
            methods,
            headers,
            host,
        },
        upstream: upstream?,
        path_map: path_map?,
        timeout,
        line: src.location(span.start).0,
        pattern,
    };
    Some((route, name_span))
}

fn pattern_or_error(
    p: Result<Pattern, crate::router::PatternError>,
    s: &SpannedStr,
    key: &str,
    what: &str,
    diags: &Diags,
) -> Option<Pattern> {
    match p {
        Ok(p) => Some(p),
        Err(e) => {
            diags.error(s.span(), format!("{what}: `{key}` \"{}\" {e}", s.get_ref()));
            None
        }
    }
}

fn method(m: &SpannedStr, what: &str, diags: &Diags) -> Option<Method> {
    let text = m.get_ref();
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        diags.error(
            m.span(),
            format!(
                "{what}: method \"{text}\" must be upper case (\"{}\"): methods are case-sensitive",
                text.to_ascii_uppercase()
            ),
        );
        return None;
    }
    match Method::from_bytes(text.as_bytes()) {
        Ok(method) if !text.is_empty() => Some(method),
        _ => {
            diags.error(m.span(), format!("{what}: \"{text}\" is not a method"));
            None
        }
    }
}

fn header(
    k: &SpannedStr,
    v: &SpannedStr,
    what: &str,
    diags: &Diags,
) -> Option<(HeaderName, HeaderValue)> {
    let name = match HeaderName::from_bytes(k.get_ref().as_bytes()) {
        Ok(n) => n,
        Err(_) => {
            diags.error(
                k.span(),
                format!("{what}: \"{}\" is not a header name", k.get_ref()),
            );
            return None;
        }
    };
    match HeaderValue::from_str(v.get_ref()) {
        Ok(val) => Some((name, val)),
        Err(_) => {
            diags.error(
                v.span(),
                format!("{what}: header `{name}` has a value no request can carry"),
            );
            None
        }
    }
}

pub(super) fn check_route_names(routes: &[(Route, Range<usize>)], diags: &Diags) {
    for (i, (r, span)) in routes.iter().enumerate() {
        if let Some((first, _)) = routes[..i].iter().find(|(o, _)| o.name == r.name) {
            diags.error(
                span.clone(),
                format!(
                    "route \"{}\": duplicate route name (first defined at line {}); names must be unique — set `name` to tell them apart",
                    r.name, first.line
                ),
            );
        }
    }
}
