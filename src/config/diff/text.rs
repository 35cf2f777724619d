//! Config values as the diff prints them: the way the file writes them
//! (`250ms`, `16MiB`), sets in a fixed order, `(none)` for what is absent.

use std::time::Duration;

pub(super) const NONE: &str = "(none)";
pub(super) const ANY: &str = "(any)";

pub(super) fn or_none(s: Option<&str>) -> &str {
    s.unwrap_or(NONE)
}

/// Methods as a set: order in the file does not change what a route accepts.
pub(super) fn methods(m: &Option<Vec<http::Method>>) -> String {
    match m {
        None => ANY.to_owned(),
        Some(list) => {
            let mut names: Vec<&str> = list.iter().map(http::Method::as_str).collect();
            names.sort_unstable();
            names.dedup();
            names.join(",")
        }
    }
}

/// Header conditions as a set, `name=value` sorted.
pub(super) fn headers(h: &[(http::HeaderName, http::HeaderValue)]) -> String {
    if h.is_empty() {
        return NONE.to_owned();
    }
    let mut pairs: Vec<String> = h
        .iter()
        .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
        .collect();
    pairs.sort_unstable();
    format!("{{{}}}", pairs.join(", "))
}

/// `(rewrite, strip_prefix)` as text.
pub(super) fn path_map(p: &crate::router::PathMap) -> (String, String) {
    use crate::router::PathMap;
    match p {
        PathMap::Keep => (NONE.to_owned(), NONE.to_owned()),
        PathMap::Strip { prefix } => (NONE.to_owned(), prefix.clone()),
        PathMap::Rewrite { template, .. } => (template.clone(), NONE.to_owned()),
    }
}

/// A duration the way the file writes it: `250ms`, `2s`, `5m`, `1h`, `1m30s`.
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A size the way the file writes it: `16MiB`, `64KiB`, `1000B`.
pub(super) fn size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    format!("{n}B")
}
