//! `[[routes]]` entries: pattern, conditions, upstream, path mapping and
//! timeout, each checked with its own located error; and the one rule across
//! routes, unique names.

use std::ops::Range;

use http::{HeaderName, HeaderValue, Method};
use toml::de::DeTable;

use super::compose::parse_compose;
use super::parse::{not_yet, upstream_ref};
use super::reader::{Diags, SpannedStr, TableReader};
use super::source::SourceFile;
use super::{DEFAULT_FALLBACK_ON, Ramp, Route, Shadow, Shift, Sticky};
use crate::router::{Conditions, HostMatch, PathMap, Pattern};
use crate::shadow::compare::Ignore;

/// Route keys SPEC defines whose features this build does not have yet. They
/// are refused, not ignored, so nobody believes a ramp or a shadow is running.
const ROUTE_NOT_YET: &[&str] = &["async"];

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
    let compose = r.table("compose");
    // `Some(None)`: a composed route, which has no upstream of its own.
    let upstream = match (r.string("upstream"), &compose) {
        (Some(s), None) => upstream_ref(&s, &what, names, diags).map(Some),
        (None, Some(_)) => Some(None),
        (Some(s), Some(_)) => {
            diags.error(
                s.span(),
                format!("{what}: a composed route takes no `upstream`: each leg names its own"),
            );
            None
        }
        (None, None) => {
            diags.error(
                span.clone(),
                format!("{what}: `upstream` is missing (or `[routes.compose]` legs)"),
            );
            None
        }
    };
    let compose = compose.map(|(t, cspan)| {
        let params: Vec<String> = pattern
            .as_ref()
            .map(|p| p.params().map(str::to_owned).collect())
            .unwrap_or_default();
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        parse_compose(t, cspan, &params, names, &what, diags)
    });
    if compose.is_some() {
        for key in [
            "rewrite",
            "strip_prefix",
            "shift",
            "fallback",
            "fallback_on",
        ] {
            if let Some(v) = t.get(key) {
                diags.error(
                    v.span(),
                    format!("{what}: `{key}` does not apply to a composed route (its legs have their own paths and upstreams)"),
                );
            }
        }
    }
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
    let shift = r
        .table("shift")
        .map(|(t, span)| parse_shift(t, span, upstream.flatten(), names, &what, diags));
    let fallback = r
        .string("fallback")
        .map(|s| upstream_ref(&s, &what, names, diags));
    let fallback_on = r.value("fallback_on").map(|v| (v.span(), ()));
    let fallback_on = match fallback_on {
        None => Some(DEFAULT_FALLBACK_ON.to_vec()),
        Some((fo_span, ())) => {
            let codes = statuses(t, &what, diags);
            if fallback.is_none() {
                diags.error(
                    fo_span,
                    format!("{what}: `fallback_on` needs `fallback = \"UPSTREAM\"` to replay on"),
                );
            }
            codes
        }
    };
    let shadow = r.table("shadow").map(|(t, sspan)| {
        if compose.is_some() {
            diags.error(
                sspan.clone(),
                format!("{what}: `shadow` does not apply to a composed route"),
            );
        }
        parse_shadow(t, sspan, names, &what, diags)
    });
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
        compose: match compose {
            Some(c) => Some(c?),
            None => None,
        },
        path_map: path_map?,
        timeout,
        shift: match shift {
            Some(s) => Some(s?),
            None => None,
        },
        fallback: match fallback {
            Some(f) => Some(f?),
            None => None,
        },
        fallback_on: fallback_on?,
        shadow: match shadow {
            Some(s) => Some(s?),
            None => None,
        },
        line: src.location(span.start).0,
        pattern,
    };
    Some((route, name_span))
}

/// `shift = { ... }`; `own` is the route's `upstream`, which `to` must differ from.
fn parse_shift(
    t: &DeTable<'_>,
    span: Range<usize>,
    own: Option<usize>,
    names: &[&str],
    what: &str,
    diags: &Diags,
) -> Option<Shift> {
    let what = format!("{what}: shift");
    let mut r = TableReader::new(t, what.clone(), diags);
    let to = match r.string("to") {
        Some(s) => {
            let to = upstream_ref(&s, &what, names, diags);
            if to.is_some() && to == own {
                diags.error(
                    s.span(),
                    format!(
                        "{what}: `to` = \"{}\" is the route's own upstream; shift moves traffic to a different one",
                        s.get_ref()
                    ),
                );
                return None;
            }
            to
        }
        None => {
            diags.error(
                span.clone(),
                format!("{what}: `to` is missing (the upstream that takes the shifted share)"),
            );
            None
        }
    };
    let percent = required_percent(&mut r, t, &span, &what, diags);
    let sticky = r.string("sticky").map(|s| sticky(&s, &what, diags));
    let force_header = r.string("force_header").map(|h| {
        HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
            diags.error(
                h.span(),
                format!(
                    "{what}: `force_header` \"{}\" is not a header name",
                    h.get_ref()
                ),
            )
        })
    });
    let ramp = r
        .table("ramp")
        .map(|(t, _)| parse_ramp(t, &format!("{what}.ramp"), diags));
    r.finish();
    Some(Shift {
        to: to?,
        basis_points: percent?,
        sticky: sticky.transpose().ok()?,
        force_header: force_header.transpose().ok()?,
        ramp: ramp.transpose().ok()?,
    })
}

fn parse_ramp(t: &DeTable<'_>, what: &str, diags: &Diags) -> Result<Ramp, ()> {
    let mut r = TableReader::new(t, what, diags);
    let d = Ramp::default();
    let mut ok = true;
    let step = match r.number("step", 0.0, 100.0) {
        Some(s) if *s.get_ref() == 0.0 => {
            diags.error(
                s.span(),
                format!("{what}: `step` must be more than 0 (a ramp that never moves is no ramp)"),
            );
            None
        }
        Some(s) => basis_points(&s, "step", what, diags),
        None => t.get("step").is_none().then_some(d.step_basis_points),
    };
    let every = r.duration("every");
    ok &= t.get("every").is_none() || every.is_some();
    let error_rate = r.number("max_error_rate", 0.0, 1.0);
    ok &= t.get("max_error_rate").is_none() || error_rate.is_some();
    let ratio = r.number("max_latency_ratio", 0.0, 1e6);
    if let Some(v) = &ratio
        && *v.get_ref() <= 0.0
    {
        diags.error(
            v.span(),
            format!("{what}: `max_latency_ratio` must be more than 0"),
        );
        ok = false;
    }
    ok &= t.get("max_latency_ratio").is_none() || ratio.is_some();
    let min_requests = r.uint("min_requests", u64::MAX >> 1);
    ok &= t.get("min_requests").is_none() || min_requests.is_some();
    let mismatch = r.number("max_mismatch_rate", 0.0, 1.0);
    ok &= t.get("max_mismatch_rate").is_none() || mismatch.is_some();
    r.finish();
    match (step, ok) {
        (Some(step), true) => Ok(Ramp {
            step_basis_points: step,
            every: every.unwrap_or(d.every),
            max_error_rate: error_rate.map_or(d.max_error_rate, |v| *v.get_ref()),
            max_latency_ratio: ratio.map_or(d.max_latency_ratio, |v| *v.get_ref()),
            min_requests: min_requests.map_or(d.min_requests, |v| *v.get_ref()),
            max_mismatch_rate: mismatch.map_or(d.max_mismatch_rate, |v| *v.get_ref()),
        }),
        _ => Err(()),
    }
}

/// A percentage as hundredths of a percent; finer than that is refused, since
/// users fall into 10,000 buckets.
fn basis_points(p: &toml::Spanned<f64>, key: &str, what: &str, diags: &Diags) -> Option<u16> {
    let scaled = p.get_ref() * 100.0;
    if (scaled - scaled.round()).abs() > 1e-6 {
        diags.error(
            p.span(),
            format!("{what}: `{key}` has more than two decimals (the finest share is 0.01%)"),
        );
        return None;
    }
    Some(scaled.round() as u16)
}

fn sticky(s: &SpannedStr, what: &str, diags: &Diags) -> Result<Sticky, ()> {
    let text = s.get_ref().as_str();
    let bad = |msg: String| {
        diags.error(s.span(), format!("{what}: `sticky` = \"{text}\": {msg}"));
        Err(())
    };
    if text == "ip" {
        return Ok(Sticky::Ip);
    }
    let Some((kind, name)) = text.split_once(':') else {
        return bad("expected cookie:NAME, header:NAME, query:NAME or ip".into());
    };
    if name.is_empty() {
        return bad(format!("the {kind} name is missing"));
    }
    match kind {
        "cookie" => Ok(Sticky::Cookie(name.to_owned())),
        "query" => Ok(Sticky::Query(name.to_owned())),
        "header" => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Ok(Sticky::Header(h)),
            Err(_) => bad(format!("\"{name}\" is not a header name")),
        },
        other => bad(format!(
            "unknown kind \"{other}\" (known: cookie, header, query, ip)"
        )),
    }
}

/// The required `percent` of a `shift` or `shadow`, in hundredths of a percent.
fn required_percent(
    r: &mut TableReader<'_, '_>,
    t: &DeTable<'_>,
    span: &Range<usize>,
    what: &str,
    diags: &Diags,
) -> Option<u16> {
    match r.number("percent", 0.0, 100.0) {
        Some(p) => basis_points(&p, "percent", what, diags),
        None if t.get("percent").is_none() => {
            diags.error(
                span.clone(),
                format!("{what}: `percent` is missing (0 to 100)"),
            );
            None
        }
        None => None,
    }
}

/// `shadow = { to, percent, methods, ignore, compare_headers, calibrate }`.
fn parse_shadow(
    t: &DeTable<'_>,
    span: Range<usize>,
    names: &[&str],
    what: &str,
    diags: &Diags,
) -> Option<Shadow> {
    let what = format!("{what}: shadow");
    let mut r = TableReader::new(t, what.clone(), diags);
    let to = match r.string("to") {
        Some(s) => upstream_ref(&s, &what, names, diags),
        None => {
            diags.error(
                span.clone(),
                format!("{what}: `to` is missing (the upstream that gets the copies)"),
            );
            None
        }
    };
    let percent = required_percent(&mut r, t, &span, &what, diags);
    let methods = match r.string_list("methods") {
        None => Some(vec![Method::GET, Method::HEAD, Method::OPTIONS]),
        Some(list) => {
            let parsed: Vec<Option<Method>> =
                list.iter().map(|m| method(m, &what, diags)).collect();
            if list.is_empty() {
                diags.error(
                    t.get("methods").map_or(span.clone(), |v| v.span()),
                    format!("{what}: `methods` is empty; leave it out for GET, HEAD and OPTIONS"),
                );
            }
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
    };
    let ignore = match r.string_list("ignore") {
        None => Some(Ignore::default()),
        Some(list) => {
            let mut ok = true;
            for p in &list {
                if let Err(e) = Ignore::parse(&[p.get_ref()]) {
                    diags.error(p.span(), format!("{what}: `ignore`: {e}"));
                    ok = false;
                }
            }
            let texts: Vec<&str> = list.iter().map(|p| p.get_ref().as_str()).collect();
            if ok { Ignore::parse(&texts).ok() } else { None }
        }
    };
    let compare_headers = match r.string_list("compare_headers") {
        None => Some(Vec::new()),
        Some(list) => list
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.get_ref().as_bytes())
                    .map_err(|_| {
                        diags.error(
                            h.span(),
                            format!("{what}: \"{}\" is not a header name", h.get_ref()),
                        )
                    })
                    .ok()
            })
            .collect::<Option<Vec<_>>>(),
    };
    let calibrate = match r.number("calibrate", 0.0, 100.0) {
        Some(c) => basis_points(&c, "calibrate", &what, diags),
        None if t.get("calibrate").is_none() => Some(0),
        None => None,
    };
    r.finish();
    Some(Shadow {
        to: to?,
        basis_points: percent?,
        methods: methods?,
        ignore: ignore?,
        compare_headers: compare_headers?,
        calibrate_basis_points: calibrate?,
    })
}

/// `fallback_on = [404, 502, ...]`: HTTP statuses that count as failures.
fn statuses(t: &DeTable<'_>, what: &str, diags: &Diags) -> Option<Vec<u16>> {
    let v = t.get("fallback_on")?;
    let Some(items) = v.get_ref().as_array() else {
        diags.error(
            v.span(),
            format!("{what}: `fallback_on` must be a list of statuses, e.g. [404, 502, 503, 504]"),
        );
        return None;
    };
    if items.is_empty() {
        diags.error(
            v.span(),
            format!("{what}: `fallback_on` is empty; leave it out for the default [502, 503, 504]"),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items.iter() {
        let code = item
            .get_ref()
            .as_integer()
            .and_then(|i| i.as_str().parse::<u16>().ok())
            .filter(|c| (400..=599).contains(c));
        match code {
            Some(c) => out.push(c),
            None => {
                diags.error(
                    item.span(),
                    format!("{what}: `fallback_on` entries must be error statuses from 400 to 599"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
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
