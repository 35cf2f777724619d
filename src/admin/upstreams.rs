//! `GET /admin/upstreams`: every upstream of the config in force, in file
//! order, with its balance and, per target, what the proxy knows about it now.

use serde_json::{Value, json};

use crate::proxy::Proxy;

/// What a target's health is known to be. Active health checks do not exist
/// yet, so the proxy has never judged a target: it says so rather than
/// claiming "up".
const HEALTH_UNCHECKED: &str = "unchecked";

/// `{"upstreams": [{name, balance, host, targets: [{url, in_flight, requests, health}]}]}`.
pub fn list(proxy: &Proxy) -> Value {
    let snap = proxy.snapshot();
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
                    json!({
                        "url": t.url,
                        "in_flight": t.stats.in_flight(),
                        "requests": t.stats.requests(),
                        "health": HEALTH_UNCHECKED,
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "balance": pool.balance().as_str(),
                "host": cfg.host.as_ref().and_then(|h| h.to_str().ok()),
                "targets": targets,
            })
        })
        .collect();
    json!({ "upstreams": upstreams })
}
