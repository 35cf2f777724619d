//! `GET /admin/upstreams`: every upstream of the config in force, in file
//! order, with its balance, retry settings and budget, and, per target, what
//! the proxy knows about it now: counters, health verdict, ejection.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::routes::rfc3339;
use crate::proxy::Proxy;
use crate::upstream::health::{Active, now_ms};

/// `{"upstreams": [{name, balance, host, retries, retry_budget, targets:
/// [{url, in_flight, requests, health, up, ejected, consecutive_failures,
/// last_check}]}]}`.
pub fn list(proxy: &Proxy) -> Value {
    let snap = proxy.snapshot();
    let now = now_ms();
    let upstreams: Vec<Value> = snap
        .config
        .upstreams
        .iter()
        .zip(&snap.pools)
        .map(|(cfg, pool)| {
            let targets: Vec<Value> = pool
                .targets
                .iter()
                .map(|t| {
                    let h = &t.stats.health;
                    let ejected = h.ejected(now);
                    json!({
                        "url": t.url,
                        "in_flight": t.stats.in_flight(),
                        "requests": t.stats.requests(),
                        "health": h.active().as_str(),
                        "up": h.active() != Active::Down && ejected.is_none(),
                        "ejected": ejected.map(|e| json!({
                            "until": rfc3339(SystemTime::now() + e.remaining),
                            "failures": e.failures,
                        })),
                        "consecutive_failures": h.consecutive_failures(),
                        "last_check": h.last_check().map(|c| json!({
                            "at": rfc3339(c.at),
                            "ok": c.ok,
                            "result": c.result,
                        })),
                    })
                })
                .collect();
            let (requests, retries) = pool.budget.totals();
            json!({
                "name": pool.name,
                "balance": pool.balance().as_str(),
                "host": cfg.host.as_ref().and_then(|h| h.to_str().ok()),
                "retries": pool.retries,
                "retry_budget": { "window_requests": requests, "window_retries": retries },
                "targets": targets,
            })
        })
        .collect();
    json!({ "upstreams": upstreams })
}
