//! What changed between two configs (SPEC 3.5): routes and upstreams added,
//! removed and changed, `[default]` and `[server]` settings, said in one line
//! each (`route "customers": shift.percent 10 -> 25`).
//!
//! A reload logs these lines and `POST /admin/reload` returns them;
//! `strangler check --config NEW --against OLD` prints the same text offline.
//! Routes and upstreams are matched by name, and every reference from a route
//! to an upstream is compared by the upstream's name, since indexes move when
//! upstreams are added or removed. This module only compares; it knows
//! nothing of snapshots, files or triggers.

use std::fmt;
use std::time::Duration;

use super::{Config, Ramp, Route, Server, Shift, Upstream, percent_text};
use text::{ANY, NONE, duration, headers, methods, or_none, path_map, size};

/// The difference from an old config to a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub routes: Changes,
    pub upstreams: Changes,
    /// `[default]`'s upstream, `old -> new`, when it changed.
    pub default: Option<String>,
    /// `[server]` settings that changed.
    pub server: Vec<Setting>,
    /// Kept routes that share a pattern and swapped places in the file: among
    /// routes with the same pattern, file order decides which one wins.
    pub order: Vec<String>,
}

/// Added, removed and changed entries of one kind, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Each with a short description of what it is.
    pub added: Vec<(String, String)>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
}

/// One kept route or upstream whose settings differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub name: String,
    /// One entry per setting, `key old -> new` (e.g. `shift.percent 10 -> 25`).
    pub settings: Vec<String>,
}

/// One changed `[server]` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `key old -> new`.
    pub text: String,
    /// Read only at start (listen addresses, admin address, workers): the new
    /// value waits for a restart.
    pub needs_restart: bool,
}

/// A summary line, and whether it needs a restart to take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub needs_restart: bool,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What [`ConfigDiff::lines`] says when the two configs behave the same.
pub const NOTHING_CHANGED: &str = "nothing changed";

// === impl ConfigDiff ===

impl ConfigDiff {
    /// Compares `old` with `new`.
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        ConfigDiff {
            upstreams: upstream_changes(old, new),
            routes: route_changes(old, new),
            default: default_change(old, new),
            server: server_changes(&old.server, &new.server),
            order: order_changes(old, new),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &ConfigDiff::default()
    }

    /// True when some change waits for a restart.
    pub fn needs_restart(&self) -> bool {
        self.server.iter().any(|s| s.needs_restart)
    }

    /// One line per change: `[server]`, upstreams (added, removed, changed),
    /// `[default]`, routes (added, removed, changed), order. Empty when
    /// nothing changed.
    pub fn lines(&self) -> Vec<Line> {
        let mut out = Vec::new();
        let mut push = |text: String, needs_restart: bool| {
            out.push(Line {
                text,
                needs_restart,
            })
        };
        for s in &self.server {
            let text = if s.needs_restart {
                format!("[server]: {} (takes effect on restart)", s.text)
            } else {
                format!("[server]: {}", s.text)
            };
            push(text, s.needs_restart);
        }
        push_changes(&self.upstreams, "upstream", &mut push);
        if let Some(d) = &self.default {
            push(format!("[default]: upstream {d}"), false);
        }
        push_changes(&self.routes, "route", &mut push);
        for o in &self.order {
            push(o.clone(), false);
        }
        out
    }

    /// The lines as text, or [`NOTHING_CHANGED`]: what a reload logs and
    /// returns, and what `check --against` prints.
    pub fn summary(&self) -> Vec<String> {
        let lines = self.lines();
        if lines.is_empty() {
            return vec![NOTHING_CHANGED.to_owned()];
        }
        lines.into_iter().map(|l| l.text).collect()
    }
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.summary() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

fn push_changes(c: &Changes, kind: &str, push: &mut impl FnMut(String, bool)) {
    for (name, what) in &c.added {
        push(format!("{kind} \"{name}\" added ({what})"), false);
    }
    for name in &c.removed {
        push(format!("{kind} \"{name}\" removed"), false);
    }
    for ch in &c.changed {
        for s in &ch.settings {
            push(format!("{kind} \"{}\": {s}", ch.name), false);
        }
    }
}

// === upstreams ===

fn upstream_changes(old: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    for u in &new.upstreams {
        match old.upstreams.iter().find(|o| o.name == u.name) {
            None => c.added.push((u.name.clone(), targets(u))),
            Some(o) => {
                let settings = upstream_settings(o, u);
                if !settings.is_empty() {
                    c.changed.push(Changed {
                        name: u.name.clone(),
                        settings,
                    });
                }
            }
        }
    }
    for o in &old.upstreams {
        if !new.upstreams.iter().any(|u| u.name == o.name) {
            c.removed.push(o.name.clone());
        }
    }
    c
}

fn targets(u: &Upstream) -> String {
    let urls: Vec<&str> = u.targets.iter().map(|t| t.url.as_str()).collect();
    urls.join(", ")
}

fn upstream_settings(old: &Upstream, new: &Upstream) -> Vec<String> {
    let mut out = Vec::new();
    if old.targets != new.targets {
        out.push(format!("targets {} -> {}", targets(old), targets(new)));
    }
    if old.balance != new.balance {
        out.push(format!(
            "balance {} -> {}",
            old.balance.as_str(),
            new.balance.as_str()
        ));
    }
    if old.host != new.host {
        let host = |h: &Option<http::HeaderValue>| {
            h.as_ref()
                .map_or(NONE.to_owned(), |v| v.to_str().unwrap_or("?").to_owned())
        };
        out.push(format!("host {} -> {}", host(&old.host), host(&new.host)));
    }
    if old.health != new.health {
        let health = |h: &Option<super::Health>| {
            h.as_ref().map_or(NONE.to_owned(), |h| {
                format!(
                    "{} every {} timeout {} down after {} up after {}",
                    h.path,
                    duration(h.interval),
                    duration(h.timeout),
                    h.unhealthy_after,
                    h.healthy_after
                )
            })
        };
        out.push(format!(
            "health {} -> {}",
            health(&old.health),
            health(&new.health)
        ));
    }
    if old.eject != new.eject {
        let eject = |e: &Option<super::Eject>| {
            e.map_or(NONE.to_owned(), |e| {
                format!(
                    "after {} failures for {}",
                    e.consecutive_failures,
                    duration(e.duration)
                )
            })
        };
        out.push(format!(
            "eject {} -> {}",
            eject(&old.eject),
            eject(&new.eject)
        ));
    }
    if old.retries != new.retries {
        out.push(format!("retries {} -> {}", old.retries, new.retries));
    }
    // A setting this module does not know yet still counts as a change.
    if out.is_empty() && old != new {
        out.push("settings changed".to_owned());
    }
    out
}

// === [default] ===

fn default_change(old: &Config, new: &Config) -> Option<String> {
    let name = |c: &Config| {
        c.default
            .as_ref()
            .map(|d| c.upstreams[d.upstream].name.clone())
    };
    let (o, n) = (name(old), name(new));
    (o != n).then(|| format!("{} -> {}", or_none(o.as_deref()), or_none(n.as_deref())))
}

// === [server] ===

fn server_changes(old: &Server, new: &Server) -> Vec<Setting> {
    let addrs = |a: &[std::net::SocketAddr]| {
        let list: Vec<String> = a.iter().map(ToString::to_string).collect();
        list.join(", ")
    };
    let admin = |a: Option<std::net::SocketAddr>| a.map_or(NONE.to_owned(), |a| a.to_string());
    let workers = |w: Option<usize>| w.map_or("(one per CPU)".to_owned(), |w| w.to_string());
    let d = duration;
    let (o, n) = (old, new);
    // (key, old, new, read only at start)
    let rows = [
        ("listen", addrs(&o.listen), addrs(&n.listen), true),
        ("admin", admin(o.admin), admin(n.admin), true),
        ("workers", workers(o.workers), workers(n.workers), true),
        (
            "connect_timeout",
            d(o.connect_timeout),
            d(n.connect_timeout),
            false,
        ),
        (
            "request_timeout",
            d(o.request_timeout),
            d(n.request_timeout),
            false,
        ),
        ("idle_timeout", d(o.idle_timeout), d(n.idle_timeout), false),
        (
            "header_read_timeout",
            d(o.header_read_timeout),
            d(n.header_read_timeout),
            false,
        ),
        (
            "max_request_body",
            size(o.max_request_body),
            size(n.max_request_body),
            false,
        ),
        (
            "max_connections",
            o.max_connections.to_string(),
            n.max_connections.to_string(),
            false,
        ),
        (
            "drain_timeout",
            d(o.drain_timeout),
            d(n.drain_timeout),
            false,
        ),
        (
            "merge_slashes",
            o.merge_slashes.to_string(),
            n.merge_slashes.to_string(),
            false,
        ),
    ];
    let mut out: Vec<Setting> = rows
        .into_iter()
        .filter(|(_, a, b, _)| a != b)
        .map(|(key, a, b, needs_restart)| Setting {
            text: format!("{key} {a} -> {b}"),
            needs_restart,
        })
        .collect();
    if old.admin_token != new.admin_token {
        // Never print a secret, not even in a log.
        let text = match (&old.admin_token, &new.admin_token) {
            (None, Some(_)) => "admin_token set",
            (Some(_), None) => "admin_token removed",
            _ => "admin_token changed",
        };
        out.push(Setting {
            text: text.to_owned(),
            needs_restart: false,
        });
    }
    // A setting this module does not know yet still counts as a change.
    if out.is_empty() && old != new {
        out.push(Setting {
            text: "settings changed".to_owned(),
            needs_restart: false,
        });
    }
    out
}

// === routes ===

fn route_changes(old: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    for r in &new.routes {
        match old.routes.iter().find(|o| o.name == r.name) {
            None => c.added.push((r.name.clone(), route_summary(new, r))),
            Some(o) => {
                let settings = route_settings(old, o, new, r);
                if !settings.is_empty() {
                    c.changed.push(Changed {
                        name: r.name.clone(),
                        settings,
                    });
                }
            }
        }
    }
    for o in &old.routes {
        if !new.routes.iter().any(|r| r.name == o.name) {
            c.removed.push(o.name.clone());
        }
    }
    c
}

/// `GET /api/orders/{id} -> orders, shift 10% to orders-v2`.
fn route_summary(c: &Config, r: &Route) -> String {
    let target = match (&r.compose, r.upstream) {
        (Some(x), _) => x.summary(),
        (None, Some(u)) => c.upstreams[u].name.clone(),
        (None, None) => NONE.to_owned(),
    };
    let mut s = format!("{} -> {target}", match_text(r));
    if let Some(sh) = &r.shift {
        s.push_str(", shift ");
        s.push_str(&shift_text(c, sh));
    }
    s
}

fn match_text(r: &Route) -> String {
    match &r.conditions.methods {
        Some(_) => format!("{} {}", methods(&r.conditions.methods), r.pattern),
        None => r.pattern.to_string(),
    }
}

/// Every setting of a kept route that differs; upstreams by name.
fn route_settings(oc: &Config, o: &Route, nc: &Config, n: &Route) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key} {a} -> {b}"));
        }
    };
    cmp("pattern", o.pattern.to_string(), n.pattern.to_string());
    cmp(
        "methods",
        methods(&o.conditions.methods),
        methods(&n.conditions.methods),
    );
    cmp(
        "headers",
        headers(&o.conditions.headers),
        headers(&n.conditions.headers),
    );
    let host = |h: &Option<crate::router::HostMatch>| {
        h.as_ref().map_or(ANY.to_owned(), ToString::to_string)
    };
    cmp("host", host(&o.conditions.host), host(&n.conditions.host));
    let up = |c: &Config, i: usize| c.upstreams[i].name.clone();
    let own = |c: &Config, i: Option<usize>| i.map_or(NONE.to_owned(), |i| up(c, i));
    cmp("upstream", own(oc, o.upstream), own(nc, n.upstream));
    let compose = |c: &Config, r: &Route| {
        r.compose
            .as_ref()
            .map_or(NONE.to_owned(), |x| x.detail(&c.upstreams))
    };
    cmp("compose", compose(oc, o), compose(nc, n));
    let shadow = |c: &Config, r: &Route| {
        r.shadow.as_ref().map_or(NONE.to_owned(), |sh| {
            let methods: Vec<&str> = sh.methods.iter().map(|m| m.as_str()).collect();
            format!(
                "{} (methods {}, calibrate {}%)",
                sh.summary(&c.upstreams),
                methods.join(","),
                crate::config::percent_text(sh.calibrate_basis_points)
            )
        })
    };
    cmp("shadow", shadow(oc, o), shadow(nc, n));
    let (o_rw, o_strip) = path_map(&o.path_map);
    let (n_rw, n_strip) = path_map(&n.path_map);
    cmp("rewrite", o_rw, n_rw);
    cmp("strip_prefix", o_strip, n_strip);
    let timeout = |t: Option<Duration>| t.map_or("(server's)".to_owned(), duration);
    cmp("timeout", timeout(o.timeout), timeout(n.timeout));
    let fallback = |c: &Config, f: Option<usize>| f.map_or(NONE.to_owned(), |i| up(c, i));
    cmp(
        "fallback",
        fallback(oc, o.fallback),
        fallback(nc, n.fallback),
    );
    let codes = |v: &[u16]| {
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        format!("[{}]", s.join(", "))
    };
    cmp("fallback_on", codes(&o.fallback_on), codes(&n.fallback_on));
    out.extend(shift_settings(oc, o.shift.as_ref(), nc, n.shift.as_ref()));
    out
}

fn shift_settings(oc: &Config, o: Option<&Shift>, nc: &Config, n: Option<&Shift>) -> Vec<String> {
    let (o, n) = match (o, n) {
        (None, None) => return Vec::new(),
        (None, Some(n)) => return vec![format!("shift {NONE} -> {}", shift_text(nc, n))],
        (Some(o), None) => return vec![format!("shift {} -> {NONE}", shift_text(oc, o))],
        (Some(o), Some(n)) => (o, n),
    };
    let mut out = Vec::new();
    let mut cmp = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("shift.{key} {a} -> {b}"));
        }
    };
    cmp(
        "to",
        oc.upstreams[o.to].name.clone(),
        nc.upstreams[n.to].name.clone(),
    );
    cmp(
        "percent",
        percent_text(o.basis_points),
        percent_text(n.basis_points),
    );
    let sticky = |s: &Option<super::Sticky>| s.as_ref().map_or(NONE.to_owned(), |s| s.to_string());
    cmp("sticky", sticky(&o.sticky), sticky(&n.sticky));
    let force = |h: &Option<http::HeaderName>| {
        h.as_ref()
            .map_or(NONE.to_owned(), |h| h.as_str().to_owned())
    };
    cmp(
        "force_header",
        force(&o.force_header),
        force(&n.force_header),
    );
    match (&o.ramp, &n.ramp) {
        (None, None) => {}
        (None, Some(r)) => out.push(format!("shift.ramp {NONE} -> {}", ramp_text(r))),
        (Some(r), None) => out.push(format!("shift.ramp {} -> {NONE}", ramp_text(r))),
        (Some(a), Some(b)) => out.extend(ramp_settings(a, b)),
    }
    out
}

/// `to customers, 10%, sticky cookie:session`.
fn shift_text(c: &Config, s: &Shift) -> String {
    let mut t = format!(
        "to {}, {}%",
        c.upstreams[s.to].name,
        percent_text(s.basis_points)
    );
    if let Some(st) = &s.sticky {
        t.push_str(&format!(", sticky {st}"));
    }
    if let Some(h) = &s.force_header {
        t.push_str(&format!(", force_header {h}"));
    }
    if let Some(r) = &s.ramp {
        t.push_str(&format!(", ramp ({})", ramp_text(r)));
    }
    t
}

fn ramp_fields(r: &Ramp) -> [(&'static str, String); 6] {
    [
        ("step", percent_text(r.step_basis_points)),
        ("every", duration(r.every)),
        ("max_error_rate", r.max_error_rate.to_string()),
        ("max_latency_ratio", r.max_latency_ratio.to_string()),
        ("min_requests", r.min_requests.to_string()),
        ("max_mismatch_rate", r.max_mismatch_rate.to_string()),
    ]
}

fn ramp_text(r: &Ramp) -> String {
    let parts: Vec<String> = ramp_fields(r)
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    parts.join(", ")
}

fn ramp_settings(o: &Ramp, n: &Ramp) -> Vec<String> {
    ramp_fields(o)
        .into_iter()
        .zip(ramp_fields(n))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((k, a), (_, b))| format!("shift.ramp.{k} {a} -> {b}"))
        .collect()
}

/// Kept routes with the same pattern in both files whose file order swapped.
fn order_changes(old: &Config, new: &Config) -> Vec<String> {
    let pos = |c: &Config, name: &str| c.routes.iter().position(|r| r.name == name);
    let mut out = Vec::new();
    for (i, a) in new.routes.iter().enumerate() {
        for b in &new.routes[i + 1..] {
            if !a.pattern.same_shape(&b.pattern) {
                continue;
            }
            let (Some(oa), Some(ob)) = (pos(old, &a.name), pos(old, &b.name)) else {
                continue;
            };
            if ob < oa && old.routes[oa].pattern.same_shape(&old.routes[ob].pattern) {
                out.push(format!(
                    "route \"{}\": now before route \"{}\" (same pattern {}: the first in the file whose conditions accept a request wins)",
                    a.name, b.name, a.pattern
                ));
            }
        }
    }
    out
}

mod text;

#[cfg(test)]
mod tests;
