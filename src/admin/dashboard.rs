//! `GET /` and `GET /admin/dashboard`: the page an operator leaves open during
//! a migration (SPEC 4), and the JSON its script polls. Per route and overall:
//! the share of requests the monolith (the `[default]` upstream) still serves
//! and when it last served each route, the shift's percent and ramp state,
//! error rate and p99 per side, and the shadow match rate.
//!
//! It only reads: [`crate::traffic`]'s windows, the shift states' share and
//! status, the shadow reports' cumulative counts. It never takes the ramp's
//! or the shadow's windows, which empty on read.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::rfc3339;
use crate::proxy::Proxy;
use crate::shift::state::RampStatus;
use crate::traffic::{self, Recent, Series};

/// How often the page's script asks for new numbers, in milliseconds.
const REFRESH_MS: u64 = 2_000;

/// The dashboard's numbers as of `now_ms` (unix milliseconds). Rates and
/// shares are over the traffic window (the last [`traffic::WINDOW_SECS`]),
/// `null` when there was no traffic to judge by.
pub fn data(proxy: &Proxy, now_ms: u64) -> Value {
    let snap = proxy.snapshot();
    let config = &snap.config;
    let monolith = config
        .default
        .as_ref()
        .map(|d| config.upstreams[d.upstream].name.as_str());
    let all = proxy.traffic.all();
    let of_route = |name: &str| -> Vec<(&str, &Series)> {
        all.iter()
            .filter(|(r, _, _)| r == name)
            .map(|(_, u, s)| (u.as_str(), &**s))
            .collect()
    };

    let mut overall = Recent::default();
    let mut overall_monolith = 0;
    let mut rows = Vec::new();
    let mut named: Vec<(Option<usize>, &str)> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (Some(i), r.name.as_str()))
        .collect();
    if config.default.is_some() {
        named.push((None, traffic::DEFAULT_ROUTE));
    }
    for (index, name) in named {
        let route = index.map(|i| &config.routes[i]);
        let primary = match route {
            Some(r) => r
                .upstream
                .map_or(traffic::COMPOSE_UPSTREAM, |u| &config.upstreams[u].name),
            None => monolith.unwrap_or(traffic::NONE),
        };
        let shift_to = route
            .and_then(|r| r.shift.as_ref())
            .map(|s| config.upstreams[s.to].name.as_str());
        let mut series = of_route(name);
        // The route's own upstream first, then its shift's, then the rest
        // (a fallback, an upstream an earlier config named).
        series.sort_by_key(|(u, _)| (*u != primary, Some(*u) != shift_to, *u));

        let mut recent = Recent::default();
        let mut monolith_requests = 0;
        let mut last = None;
        let sides: Vec<Value> = series
            .iter()
            .map(|(upstream, s)| {
                let r = s.recent(now_ms);
                recent.add(&r);
                let is_monolith = Some(*upstream) == monolith;
                if is_monolith {
                    monolith_requests += r.requests;
                    last = s.last_served();
                }
                json!({
                    "upstream": upstream,
                    "monolith": is_monolith,
                    "requests": r.requests,
                    "failures": r.failures,
                    "error_rate": r.error_rate(),
                    "p99_ms": r.p99().map(ms),
                    "total": s.totals().count(),
                })
            })
            .collect();
        overall.add(&recent);
        overall_monolith += monolith_requests;

        let shift = index.and_then(|i| {
            let state = snap.shifts[i].as_ref()?;
            let control = state.control();
            let reason = match &control.status {
                RampStatus::Stopped { reason, .. } => Some(reason.clone()),
                _ => None,
            };
            Some(json!({
                "to": shift_to,
                "percent": f64::from(state.basis_points()) / 100.0,
                "ramp": control.status.as_str(),
                "reason": reason,
            }))
        });
        let shadow = index.and_then(|i| {
            let report = snap.shadows[i].as_ref()?;
            let to = &config.upstreams[config.routes[i].shadow.as_ref()?.to].name;
            let counts = report.counts();
            let mut out = json!({ "to": to });
            for (outcome, n) in counts {
                out[outcome.as_str()] = n.into();
            }
            let (matched, mismatched) = (counts[0].1, counts[1].1);
            let compared = matched + mismatched;
            out["match_rate"] = json!((compared > 0).then(|| matched as f64 / compared as f64));
            Some(out)
        });

        rows.push(json!({
            "route": name,
            "upstream": primary,
            "requests": recent.requests,
            "monolith_requests": monolith_requests,
            "monolith_share": share(monolith, monolith_requests, recent.requests),
            "monolith_last_served": last.map(rfc3339),
            "monolith_idle_seconds": last.map(|t| {
                (UNIX_EPOCH + Duration::from_millis(now_ms))
                    .duration_since(t)
                    .map_or(0, |d| d.as_secs())
            }),
            "error_rate": recent.error_rate(),
            "p99_ms": recent.p99().map(ms),
            "shift": shift,
            "sides": sides,
            "shadow": shadow,
        }));
    }

    let unmatched = of_route(traffic::NONE)
        .iter()
        .map(|(_, s)| s.recent(now_ms).requests)
        .sum::<u64>();
    json!({
        "now": rfc3339(UNIX_EPOCH + Duration::from_millis(now_ms)),
        "window_seconds": traffic::WINDOW_SECS,
        "refresh_ms": REFRESH_MS,
        "monolith": monolith,
        "overall": {
            "requests": overall.requests,
            "monolith_requests": overall_monolith,
            "monolith_share": share(monolith, overall_monolith, overall.requests),
            "error_rate": overall.error_rate(),
            "p99_ms": overall.p99().map(ms),
            "unmatched": unmatched,
        },
        "routes": rows,
    })
}

/// `part / whole`, or `None` when there is no monolith or no traffic.
fn share(monolith: Option<&str>, part: u64, whole: u64) -> Option<f64> {
    (monolith.is_some() && whole > 0).then(|| part as f64 / whole as f64)
}

/// A duration for eyes: `12 s`, `5 min`, `3 h`, `2 d` (rounded down).
fn age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7_200 => format!("{} min", secs / 60),
        7_200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

// === the page ===

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

fn millis(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_owned(), |f| format!("{f:.1} ms"))
}

/// The page with the numbers of `data` filled in; its script replaces them
/// every `REFRESH_MS` with the answer of `GET /admin/dashboard`.
pub fn page(data: &Value) -> String {
    let mut rows = String::new();
    for r in data["routes"].as_array().into_iter().flatten() {
        rows.push_str(&row(r));
    }
    let o = &data["overall"];
    let monolith = match data["monolith"].as_str() {
        Some(m) => format!(
            "the monolith is <b>{}</b> (the [default] upstream)",
            escape(m)
        ),
        None => "no [default] upstream: the monolith is unknown, shares are not shown".to_owned(),
    };
    fill(
        PAGE,
        &[
            ("monolith", monolith),
            ("share", pct(&o["monolith_share"])),
            ("share_bar", bar(&o["monolith_share"])),
            ("requests", o["requests"].to_string()),
            ("error_rate", pct(&o["error_rate"])),
            ("p99", millis(&o["p99_ms"])),
            ("unmatched", o["unmatched"].to_string()),
            ("window", data["window_seconds"].to_string()),
            ("now", escape(data["now"].as_str().unwrap_or(""))),
            ("refresh", data["refresh_ms"].to_string()),
            ("rows", rows),
        ],
    )
}

/// `template` with each `{key}` of `values` replaced, in one pass: a value
/// that holds `{key}` itself (a route named so) is not expanded again.
/// Other braces (the script's) are kept.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let hit = values
            .iter()
            .find(|(k, _)| rest[1..].starts_with(k) && rest[1 + k.len()..].starts_with('}'));
        match hit {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A share as a bar's width: `style="width:42%"`.
fn bar(v: &Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) * 100.0)
}

fn row(r: &Value) -> String {
    let text = |v: &Value| escape(v.as_str().unwrap_or("–"));
    let shift = match r["shift"].as_object() {
        None => "–".to_owned(),
        Some(s) => format!(
            "{}% → {}",
            s["percent"],
            escape(s["to"].as_str().unwrap_or(""))
        ),
    };
    let ramp = match r["shift"].as_object() {
        None => "–".to_owned(),
        Some(s) => match s["reason"].as_str() {
            Some(why) => format!("{}: {}", text(&s["ramp"]), escape(why)),
            None => text(&s["ramp"]),
        },
    };
    let mut sides = String::new();
    for s in r["sides"].as_array().into_iter().flatten() {
        sides.push_str(&format!(
            "<div>{}{}: {} req, {} err, p99 {}</div>",
            text(&s["upstream"]),
            if s["monolith"] == true {
                " (monolith)"
            } else {
                ""
            },
            s["requests"],
            pct(&s["error_rate"]),
            millis(&s["p99_ms"])
        ));
    }
    let shadow = match r["shadow"].as_object() {
        None => "–".to_owned(),
        Some(s) => format!(
            "{} vs {} ({} compared)",
            pct(&s["match_rate"]),
            escape(s["to"].as_str().unwrap_or("")),
            s["match"].as_u64().unwrap_or(0) + s["mismatch"].as_u64().unwrap_or(0)
        ),
    };
    format!(
        "<tr><td>{}</td><td><div class=\"bar\"><span style=\"width:{}%\"></span></div>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        text(&r["route"]),
        bar(&r["monolith_share"]),
        pct(&r["monolith_share"]),
        match (
            r["monolith_last_served"].as_str(),
            r["monolith_idle_seconds"].as_u64()
        ) {
            (Some(at), Some(idle)) => format!("{} ({} ago)", escape(at), age(idle)),
            _ => "never since start".to_owned(),
        },
        shift,
        ramp,
        sides,
        shadow
    )
}

/// The page: server-rendered numbers, then a script that refreshes them.
/// No external assets; the script builds cells with `textContent`, so names
/// are never parsed as HTML.
const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>strangler: migration dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}
.muted{color:#777}
.cards{display:flex;gap:1em;margin:1em 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7em 1em;min-width:9em}
.card b{display:block;font-size:1.6em}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.bar{background:#cfe3cf;width:8em;height:.6em;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%;background:#c0504d}
#updated.stale{color:#c0504d}
</style></head>
<body>
<h1>strangler: migration dashboard</h1>
<div class="muted"><span id="monolith">{monolith}</span>. Shares, error rates and p99 over the last {window} s; the bar is the monolith's share (red) against the new services (green).</div>
<div class="cards">
<div class="card">still served by the monolith<b id="share">{share}</b><div class="bar"><span id="share-bar" style="width:{share_bar}%"></span></div></div>
<div class="card">requests<b id="requests">{requests}</b></div>
<div class="card">errors (5xx)<b id="error-rate">{error_rate}</b></div>
<div class="card">p99<b id="p99">{p99}</b></div>
<div class="card">matched no route<b id="unmatched">{unmatched}</b></div>
</div>
<table>
<thead><tr><th>route</th><th>monolith share</th><th>monolith last served</th><th>shift</th><th>ramp</th><th>sides: requests, errors, p99</th><th>shadow match rate</th></tr></thead>
<tbody id="routes">
{rows}</tbody>
</table>
<p class="muted" id="updated">rendered at {now}; refreshing every {refresh} ms</p>
<script>
(function () {
  "use strict";
  var refresh = {refresh}, polls = 0;
  function pct(v) { return v === null || v === undefined ? "\u2013" : (v * 100).toFixed(1) + "%"; }
  function ms(v) { return v === null || v === undefined ? "\u2013" : v.toFixed(1) + " ms"; }
  function age(s) {
    return s < 120 ? s + " s" : s < 7200 ? Math.floor(s / 60) + " min" :
      s < 172800 ? Math.floor(s / 3600) + " h" : Math.floor(s / 86400) + " d";
  }
  function width(v) { return ((v || 0) * 100).toFixed(1) + "%"; }
  function set(id, text) { document.getElementById(id).textContent = text; }
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
  function row(r) {
    var tr = document.createElement("tr");
    cell(tr, r.route);
    var share = cell(tr, "");
    var bar = document.createElement("div"); bar.className = "bar";
    var fill = document.createElement("span"); fill.style.width = width(r.monolith_share);
    bar.appendChild(fill); share.appendChild(bar);
    share.appendChild(document.createTextNode(pct(r.monolith_share)));
    cell(tr, r.monolith_last_served ?
      r.monolith_last_served + " (" + age(r.monolith_idle_seconds) + " ago)" : "never since start");
    cell(tr, r.shift ? r.shift.percent + "% \u2192 " + r.shift.to : "\u2013");
    cell(tr, r.shift ? r.shift.ramp + (r.shift.reason ? ": " + r.shift.reason : "") : "\u2013");
    var sides = cell(tr, "");
    r.sides.forEach(function (s) {
      var d = document.createElement("div");
      d.textContent = s.upstream + (s.monolith ? " (monolith)" : "") + ": " + s.requests +
        " req, " + pct(s.error_rate) + " err, p99 " + ms(s.p99_ms);
      sides.appendChild(d);
    });
    cell(tr, r.shadow ? pct(r.shadow.match_rate) + " vs " + r.shadow.to + " (" +
      (r.shadow.match + r.shadow.mismatch) + " compared)" : "\u2013");
    return tr;
  }
  function show(d) {
    var o = d.overall;
    set("share", pct(o.monolith_share));
    document.getElementById("share-bar").style.width = width(o.monolith_share);
    set("requests", String(o.requests));
    set("error-rate", pct(o.error_rate));
    set("p99", ms(o.p99_ms));
    set("unmatched", String(o.unmatched));
    var body = document.getElementById("routes");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    d.routes.forEach(function (r) { body.appendChild(row(r)); });
    polls += 1;
    var u = document.getElementById("updated");
    u.className = "muted";
    u.textContent = "live: updated " + d.now + " (poll " + polls + ", every " + refresh + " ms)";
  }
  function poll() {
    fetch("/admin/dashboard", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(show)
      .catch(function (e) {
        var u = document.getElementById("updated");
        u.className = "stale";
        u.textContent = "not updating: " + e + " (numbers above may be stale)";
      })
      .then(function () { setTimeout(poll, refresh); });
  }
  poll();
})();
</script>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"cust"omers<script>&'"#),
            "cust&quot;omers&lt;script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ages_are_rounded_down_to_one_unit() {
        assert_eq!(age(0), "0 s");
        assert_eq!(age(119), "119 s");
        assert_eq!(age(120), "2 min");
        assert_eq!(age(7_199), "119 min");
        assert_eq!(age(7_200), "2 h");
        assert_eq!(age(172_800), "2 d");
    }

    #[test]
    fn fill_expands_each_placeholder_once() {
        let v = [("a", "{b}".to_owned()), ("b", "B".to_owned())];
        assert_eq!(fill("{a} {b} {c} {", &v), "{b} B {c} {");
    }
}
