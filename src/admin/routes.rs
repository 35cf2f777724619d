//! `GET /admin/routes` and `POST /admin/routes/{name}/ramp/resume`: the
//! routes of the config in force in matching order (as `strangler check`
//! prints them), each with its shift's runtime state — the share in force,
//! the file's share, and where the ramp stands — and the call that restarts a
//! ramp a breach stopped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::AdminError;
use crate::config::{Config, Ramp, Route, Shift};
use crate::proxy::Proxy;
use crate::router::{Kind, PathMap};
use crate::shift::state::{RampStatus, ShiftState};

/// `{"routes": [...], "default": {...} | null}`.
pub fn list(proxy: &Proxy) -> Value {
    let snap = proxy.snapshot();
    let config = &snap.config;
    let routes: Vec<Value> = snap
        .router
        .matching_order()
        .into_iter()
        .map(|id| route(config, &config.routes[id], snap.shifts[id].as_deref()))
        .collect();
    let default = config.default.as_ref().map(|d| {
        json!({
            "upstream": config.upstreams[d.upstream].name,
            "timeout": duration_text(config.server.request_timeout),
        })
    });
    json!({ "routes": routes, "default": default })
}

/// Resumes route `raw_name`'s stopped ramp (the name as it came in the path,
/// possibly percent-encoded) and returns its new state.
pub fn resume(proxy: &Proxy, raw_name: &str) -> Result<Value, AdminError> {
    let name = percent_decode(raw_name).ok_or(AdminError::BadRouteName)?;
    let snap = proxy.snapshot();
    let config = &snap.config;
    let found = config
        .routes
        .iter()
        .zip(&snap.shifts)
        .find(|(r, _)| r.name == name);
    let (route, shift, state) = match found {
        Some((r, Some(state))) => match &r.shift {
            Some(shift) => (r, shift, state),
            None => return Err(unknown(config, name)),
        },
        Some((_, None)) | None => return Err(unknown(config, name)),
    };
    state.resume().map_err(|source| AdminError::NotResumable {
        route: name.clone(),
        source,
    })?;
    Ok(json!({
        "route": route.name,
        "shift": shift_state(config, shift, state),
    }))
}

fn unknown(config: &Config, name: String) -> AdminError {
    AdminError::UnknownRoute {
        name,
        shifted: config
            .routes
            .iter()
            .filter(|r| r.shift.is_some())
            .map(|r| r.name.clone())
            .collect(),
    }
}

/// One route: its match, where it sends requests, and its shift.
fn route(config: &Config, r: &Route, state: Option<&ShiftState>) -> Value {
    let c = &r.conditions;
    let pattern = r.pattern.to_string();
    let (path, prefix) = match r.pattern.kind() {
        Kind::Path => (Some(pattern.clone()), None),
        // Display shows a prefix as `PREFIX/**` (and `/` as `/**`).
        Kind::Prefix => {
            let p = pattern.strip_suffix("/**").unwrap_or(&pattern);
            (None, Some(if p.is_empty() { "/" } else { p }.to_owned()))
        }
    };
    let headers: serde_json::Map<String, Value> = c
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let (rewrite, strip_prefix) = match &r.path_map {
        PathMap::Keep => (None, None),
        PathMap::Strip { prefix } => (None, Some(prefix.as_str())),
        PathMap::Rewrite { template, .. } => (Some(template.as_str()), None),
    };
    let shift = match (&r.shift, state) {
        (Some(shift), Some(state)) => shift_state(config, shift, state),
        (Some(_), None) | (None, _) => Value::Null,
    };
    json!({
        "name": r.name,
        "line": r.line,
        "match": {
            "pattern": pattern,
            "path": path,
            "prefix": prefix,
            "methods": c.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
            "headers": headers,
            "host": c.host.as_ref().map(ToString::to_string),
        },
        "upstream": r.upstream.map(|u| &config.upstreams[u].name),
        "rewrite": rewrite,
        "strip_prefix": strip_prefix,
        "timeout": duration_text(r.timeout.unwrap_or(config.server.request_timeout)),
        "timeout_from": if r.timeout.is_some() { "route" } else { "server.request_timeout" },
        "fallback": r.fallback.map(|f| &config.upstreams[f].name),
        "fallback_on": r.fallback.map(|_| &r.fallback_on),
        "shift": shift,
        "shadow": r.shadow.as_ref().map(|sh| json!({
            "to": config.upstreams[sh.to].name,
            "percent": crate::config::percent_text(sh.basis_points).parse::<f64>().unwrap_or(0.0),
            "methods": sh.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "compare_headers": sh.compare_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "calibrate": crate::config::percent_text(sh.calibrate_basis_points).parse::<f64>().unwrap_or(0.0),
        })),
        "compose": r.compose.as_ref().map(|c| compose_json(config, c)),
    })
}

/// A shift's settings and runtime state: the share in force (which the ramp
/// moves) next to the file's, and the ramp's settings and status.
fn shift_state(config: &Config, shift: &Shift, state: &ShiftState) -> Value {
    let control = state.control().clone();
    let (reason, stopped_at) = match &control.status {
        RampStatus::Stopped { reason, at } => (Some(reason.clone()), Some(rfc3339(*at))),
        RampStatus::Off | RampStatus::Running | RampStatus::Done => (None, None),
    };
    json!({
        "to": config.upstreams[shift.to].name,
        "percent": percent(state.basis_points()),
        "file_percent": percent(control.file_basis_points),
        "sticky": shift.sticky.as_ref().map(ToString::to_string),
        "force_header": shift.force_header.as_ref().map(|h| h.as_str()),
        "ramp": {
            "status": control.status.as_str(),
            "reason": reason,
            "stopped_at": stopped_at,
            "settings": control.ramp.as_ref().map(ramp_settings),
        },
    })
}

fn ramp_settings(r: &Ramp) -> Value {
    json!({
        "step": percent(r.step_basis_points),
        "every": duration_text(r.every),
        "max_error_rate": r.max_error_rate,
        "max_latency_ratio": r.max_latency_ratio,
        "min_requests": r.min_requests,
        "max_mismatch_rate": r.max_mismatch_rate,
    })
}

/// Hundredths of a percent as a JSON number of percent: `1050` → `10.5`.
fn percent(basis_points: u16) -> Value {
    if basis_points.is_multiple_of(100) {
        json!(basis_points / 100)
    } else {
        json!(f64::from(basis_points) / 100.0)
    }
}

/// A duration as the config writes it: `"10m"`, `"90s"`, `"1500ms"`, `"2h"`.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `2025-03-01T12:00:05Z`: a UTC time, to the second (RFC 3339).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of `days` after 1970-01-01 (proleptic Gregorian),
/// by Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Decodes `%XX` escapes; `None` for a bad escape or a result that is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A composed route's legs, in file order, with what each reads from.
fn compose_json(config: &Config, c: &crate::config::Compose) -> Value {
    let legs: Vec<Value> = c
        .legs
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "upstream": config.upstreams[l.upstream].name,
                "method": l.method.as_str(),
                "path": l.path.to_string(),
                "optional": l.optional,
                "timeout": l.timeout.map(duration_text),
                "pick": l.pick,
                "after": l.deps.iter().map(|&d| &c.legs[d].name).collect::<Vec<_>>(),
                "each": l.path.each().map(ToString::to_string),
            })
        })
        .collect();
    json!({
        "merge": match c.merge {
            crate::config::Merge::Nest => "nest",
            crate::config::Merge::Flat => "flat",
        },
        "legs": legs,
        "start_order": c.order.iter().map(|&i| &c.legs[i].name).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_written() {
        assert_eq!(duration_text(Duration::from_secs(600)), "10m");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Duration::ZERO), "0s");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(t(1_740_830_405), "2025-03-01T12:00:05Z");
        assert_eq!(t(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn percent_is_a_number_of_percent() {
        assert_eq!(percent(1050), json!(10.5));
        assert_eq!(percent(1000), json!(10));
        assert_eq!(percent(1), json!(0.01));
        assert_eq!(percent(10_000), json!(100));
    }

    #[test]
    fn route_names_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("/api/x").as_deref(), Some("/api/x"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
