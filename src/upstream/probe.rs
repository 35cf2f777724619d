//! Active health checks: one loop per target of every upstream with `health`,
//! each probing on its own connection and telling the target's
//! [`super::health::Health`] what it found. The loops follow the config in
//! force: [`drive`] re-reads the snapshot whenever it is told the config
//! changed, starts loops for new targets, stops those of removed ones, and
//! restarts a loop whose settings changed (its target keeps its verdict).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::TargetStats;
use super::h1::{self, RawConn};
use crate::config;

/// The `user-agent` of probes, so upstream logs can tell them from traffic.
const USER_AGENT: &str = "strangler-health";

/// What the probe driver needs from its owner (the proxy).
pub trait Owner: Send + Sync + 'static {
    /// Every target that should be probed now, with how.
    fn probed(&self) -> Vec<Probed>;
    /// Woken when the config changed.
    fn changed(&self) -> Arc<Notify>;
}

/// One target to probe.
#[derive(Clone)]
pub struct Probed {
    pub upstream: String,
    pub url: String,
    pub authority: String,
    /// The Host header: the upstream's `host`, else the target's authority.
    pub host: String,
    pub cfg: config::Health,
    pub stats: Arc<TargetStats>,
}

/// A running probe loop, stopped when dropped.
struct Running {
    cfg: config::Health,
    host: String,
    stats: Arc<TargetStats>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one probe loop per probed target until the owner is gone.
pub async fn drive<O: Owner>(owner: Weak<O>) {
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    loop {
        let Some(o) = owner.upgrade() else { return };
        let changed = o.changed();
        let woken = changed.notified();
        tokio::pin!(woken);
        // Registered before the snapshot is read: a change made while this
        // pass runs is not missed.
        woken.as_mut().enable();
        sync(&mut running, o.probed());
        drop(o);
        // The owner holds the Notify; a periodic look notices it is gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
    }
}

/// Brings the running loops in line with `wanted`.
fn sync(running: &mut HashMap<(String, String), Running>, wanted: Vec<Probed>) {
    let keys: Vec<(String, String)> = wanted
        .iter()
        .map(|p| (p.upstream.clone(), p.url.clone()))
        .collect();
    running.retain(|k, r| {
        let keep = keys.contains(k);
        if !keep {
            // No longer probed: its verdict would never change again.
            r.stats.health.unchecked();
        }
        keep
    });
    for p in wanted {
        let key = (p.upstream.clone(), p.url.clone());
        if let Some(r) = running.get(&key)
            && r.cfg == p.cfg
            && r.host == p.host
            && Arc::ptr_eq(&r.stats, &p.stats)
        {
            continue;
        }
        let run = Running {
            cfg: p.cfg.clone(),
            host: p.host.clone(),
            stats: p.stats.clone(),
            task: tokio::spawn(probe_loop(p)),
        };
        running.insert(key, run);
    }
}

async fn probe_loop(p: Probed) {
    let mut tick = tokio::time::interval(p.cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (ok, result) = match probe(&p.authority, &p.host, &p.cfg.path, p.cfg.timeout).await {
            Ok(status) => ((200..300).contains(&status), status.to_string()),
            Err(why) => (false, why.to_owned()),
        };
        p.stats.health.probed(ok, result, &p.cfg);
    }
}

/// One probe: `GET path` on a new connection, closed after the answer's head.
/// The status when a head arrived within `timeout`, else why not.
pub async fn probe(
    authority: &str,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, &'static str> {
    let exchange = async {
        let mut conn = RawConn::connect(authority, timeout)
            .await
            .map_err(|e| match e {
                h1::ConnectError::TimedOut => "timeout",
                h1::ConnectError::Refused(_) => "connect failed",
            })?;
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {USER_AGENT}\r\nconnection: close\r\n\r\n"
        );
        let (answer, _) = h1::exchange(&mut conn, head.as_bytes(), None, Default::default())
            .await
            .map_err(|_| "invalid answer")?;
        Ok(answer.parts.status.as_u16())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err("timeout"))
}
