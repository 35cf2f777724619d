//! Upstream pools: an upstream's targets, how requests spread over them
//! (`balance`), and the per-target counters that outlive a config reload.
//!
//! A pool is part of an immutable snapshot; the counters and idle connections
//! it points at live in a [`Registry`] keyed by upstream name and target URL,
//! so a reload that keeps a target keeps its in-flight count, its history and
//! its kept-alive connections.

pub mod body;
pub mod h1;
pub mod health;
pub mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use http::uri::Authority;

use crate::config::{self, Balance};

/// Counters and idle connections of one target, shared by every snapshot that has it.
#[derive(Debug)]
pub struct TargetStats {
    /// Requests sent and not yet finished (response body done or dropped).
    in_flight: AtomicUsize,
    /// Requests ever sent.
    requests: AtomicU64,
    /// Kept-alive connections, one set per [`Lane`].
    kept: [Kept; 2],
    /// Whether the target may take traffic: probes' verdict and ejection.
    pub health: health::Health,
}

impl TargetStats {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The kept-alive connections requests on `lane` take and give back.
    pub fn kept(&self, lane: Lane) -> &Kept {
        &self.kept[lane as usize]
    }
}

/// Which thread a request to an upstream runs on. A connection is registered
/// with the I/O driver of the thread that opened it and only makes progress
/// while that thread runs, so each lane keeps connections of its own: a
/// client request must never wait on a connection the (low-priority) shadow
/// thread opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The proxy's workers: client requests, fallbacks, composition.
    Client = 0,
    /// The shadow thread: mirrored copies and calibration requests.
    Shadow = 1,
}

/// Where a connection goes back to when its request is done: its target's
/// kept-alive connections of the lane that opened it.
#[derive(Debug, Clone)]
pub struct Home {
    pub stats: Arc<TargetStats>,
    pub lane: Lane,
}

impl Home {
    pub fn kept(&self) -> &Kept {
        self.stats.kept(self.lane)
    }
}

/// One lane's kept-alive connections to a target.
#[derive(Debug, Default)]
pub struct Kept {
    /// HTTP/1.1 connections waiting for the next request.
    pub raw: h1::RawIdle,
}

/// Where per-target counters live across reloads.
#[derive(Debug, Default)]
pub struct Registry {
    targets: Mutex<HashMap<(String, String), Arc<TargetStats>>>,
    /// Retry budgets by upstream name: a reload must not refill them.
    budgets: Mutex<HashMap<String, Arc<health::RetryBudget>>>,
}

impl Registry {
    /// The counters for `upstream`'s `url`, created on first use. Called when a
    /// snapshot is built, never per request.
    fn stats(&self, upstream: &str, url: &str) -> Arc<TargetStats> {
        let mut map = self
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((upstream.to_owned(), url.to_owned()))
            .or_insert_with(|| {
                Arc::new(TargetStats {
                    in_flight: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    kept: Default::default(),
                    health: health::Health::new(upstream, url),
                })
            })
            .clone()
    }

    /// The retry budget of `upstream`, created on first use.
    fn budget(&self, upstream: &str) -> Arc<health::RetryBudget> {
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(upstream.to_owned())
            .or_default()
            .clone()
    }

    /// Closes connections that sat idle too long, on every target.
    pub fn sweep_idle(&self) {
        let targets: Vec<Arc<TargetStats>> = self
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for t in targets {
            for kept in &t.kept {
                kept.raw.sweep();
            }
        }
    }

    /// Forgets targets no snapshot uses any more (after a reload removed them).
    pub fn retain(&self, live: &[Arc<Pool>]) {
        let keep: Vec<(String, String)> = live
            .iter()
            .flat_map(|p| p.targets.iter().map(|t| (p.name.clone(), t.url.clone())))
            .collect();
        let mut map = self
            .targets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|k, v| keep.contains(k) || v.in_flight() > 0);
        drop(map);
        self.budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, _| live.iter().any(|p| p.name == *name));
    }
}

/// One target of a pool.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub authority: Authority,
    pub stats: Arc<TargetStats>,
}

/// The compiled form of `[upstreams.NAME]`.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub targets: Vec<Target>,
    balance: Balance,
    /// Host header sent upstream instead of the client's.
    pub host: Option<HeaderValue>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Passive ejection settings; `None`: failures are counted, never acted on.
    pub eject: Option<config::Eject>,
    /// Further attempts on other targets (SPEC 2: idempotent requests, on
    /// connect failure or 502/503).
    pub retries: u32,
    /// Shared with every snapshot's pool of the same name.
    pub budget: Arc<health::RetryBudget>,
}

/// Targets a request has been sent to already, by index (bit `i % 64`): a
/// retry goes to another one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    fn has(self, index: usize) -> bool {
        self.0 & (1 << (index % 64)) != 0
    }

    pub fn add(&mut self, lease: &Lease) {
        self.0 |= 1 << (lease.index % 64);
    }
}

impl Pool {
    pub fn new(cfg: &config::Upstream, registry: &Registry) -> Pool {
        Pool {
            name: cfg.name.clone(),
            targets: cfg
                .targets
                .iter()
                .map(|t| Target {
                    url: t.url.clone(),
                    authority: t.authority.clone(),
                    stats: registry.stats(&cfg.name, &t.url),
                })
                .collect(),
            balance: cfg.balance,
            host: cfg.host.clone(),
            next: AtomicUsize::new(0),
            eject: cfg.eject,
            retries: cfg.retries,
            budget: registry.budget(&cfg.name),
        }
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// Chooses an eligible target (not down, not ejected) and counts the
    /// request as in flight on it until the returned lease is dropped. `None`
    /// when the pool has no target to offer.
    pub fn pick(self: &Arc<Self>) -> Option<Lease> {
        self.pick_other(Tried::default())
    }

    /// [`Pool::pick`] among the targets not in `tried`.
    pub fn pick_other(self: &Arc<Self>, tried: Tried) -> Option<Lease> {
        let n = self.targets.len();
        let ok = |i: usize| !tried.has(i) && self.targets[i].stats.health.eligible();
        // Unavailable targets are stepped over, so the one after a down target
        // takes its turn as well as its own.
        let scan = |start: usize| (0..n).map(move |k| (start + k) % n);
        // A retry does not take a turn of the rotation: it is the same
        // request, and the next one goes where it would have gone anyway.
        let turn = || match tried == Tried::default() {
            true => self.next.fetch_add(1, Ordering::Relaxed),
            false => self.next.load(Ordering::Relaxed),
        };
        let index = match (n, self.balance) {
            (0, _) => return None,
            (1, _) => Some(0).filter(|&i| ok(i))?,
            (_, Balance::RoundRobin) => scan(turn()).find(|&i| ok(i))?,
            (_, Balance::Random) => scan(fastrand::usize(..n)).find(|&i| ok(i))?,
            (_, Balance::LeastRequest) => {
                // Scan from a rotating start so ties spread instead of piling on target 0.
                scan(turn())
                    .filter(|&i| ok(i))
                    .min_by_key(|&i| self.targets[i].stats.in_flight())?
            }
        };
        let stats = &self.targets[index].stats;
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            pool: Arc::clone(self),
            index,
        })
    }

    /// Whether a target not in `tried` could take a request now.
    pub fn has_other(&self, tried: Tried) -> bool {
        (0..self.targets.len()).any(|i| !tried.has(i) && self.targets[i].stats.health.eligible())
    }
}

/// A request's claim on one target; dropping it ends the request's in-flight count.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Lease {
    pub fn target(&self) -> &Target {
        &self.pool.targets[self.index]
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target()
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, n: usize, registry: &Registry) -> Arc<Pool> {
        let cfg = config::Upstream {
            name: "u".into(),
            targets: (0..n)
                .map(|i| config::Target {
                    url: format!("http://127.0.0.1:{}", 1000 + i),
                    authority: Authority::try_from(format!("127.0.0.1:{}", 1000 + i)).unwrap(),
                })
                .collect(),
            balance,
            host: None,
            health: None,
            eject: None,
            retries: 0,
        };
        Arc::new(Pool::new(&cfg, registry))
    }

    #[test]
    fn round_robin_visits_every_target_in_turn() {
        let p = pool(Balance::RoundRobin, 3, &Registry::default());
        let picks: Vec<usize> = (0..6).map(|_| p.pick().unwrap().index).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_avoids_busy_targets() {
        let p = pool(Balance::LeastRequest, 3, &Registry::default());
        let held: Vec<Lease> = (0..3).map(|_| p.pick().unwrap()).collect();
        let mut idx: Vec<usize> = held.iter().map(|l| l.index).collect();
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2], "one each while all are equal");
        let busy = p.pick().unwrap();
        drop(
            held.into_iter()
                .filter(|l| l.index != busy.index)
                .collect::<Vec<_>>(),
        );
        // Two targets are idle now; the busy one (2 in flight) is never chosen.
        for _ in 0..10 {
            assert_ne!(p.pick().unwrap().index, busy.index);
        }
    }

    #[test]
    fn random_spreads_over_all_targets() {
        let p = pool(Balance::Random, 4, &Registry::default());
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[p.pick().unwrap().index] += 1;
        }
        assert!(seen.iter().all(|&c| c > 40), "{seen:?}");
    }

    #[test]
    fn leases_count_in_flight_and_counters_survive_rebuilds() {
        let registry = Registry::default();
        let a = pool(Balance::RoundRobin, 1, &registry);
        let lease = a.pick().unwrap();
        assert_eq!(a.targets[0].stats.in_flight(), 1);
        // A reload builds a new pool for the same target: same counters.
        let b = pool(Balance::RoundRobin, 1, &registry);
        assert_eq!(b.targets[0].stats.in_flight(), 1);
        drop(lease);
        assert_eq!(b.targets[0].stats.in_flight(), 0);
        assert_eq!(b.targets[0].stats.requests(), 1);
    }

    fn eject_now(p: &Pool, i: usize) {
        let e = config::Eject {
            consecutive_failures: 1,
            duration: std::time::Duration::from_secs(60),
        };
        p.targets[i]
            .stats
            .health
            .record(true, Some(&e), health::now_ms(), "test");
    }

    #[test]
    fn every_balance_skips_ejected_and_tried_targets() {
        for balance in [Balance::RoundRobin, Balance::LeastRequest, Balance::Random] {
            let p = pool(balance, 3, &Registry::default());
            eject_now(&p, 1);
            for _ in 0..20 {
                assert_ne!(p.pick().unwrap().index, 1, "{balance:?}");
            }
            let first = p.pick().unwrap();
            let mut tried = Tried::default();
            tried.add(&first);
            let second = p.pick_other(tried).unwrap();
            assert!(second.index != first.index && second.index != 1);
            tried.add(&second);
            assert!(p.pick_other(tried).is_none(), "{balance:?}");
            assert!(!p.has_other(tried));
            eject_now(&p, 0);
            eject_now(&p, 2);
            assert!(p.pick().is_none(), "{balance:?}: every target ejected");
        }
    }

    #[test]
    fn health_and_budgets_survive_rebuilds() {
        let registry = Registry::default();
        let a = pool(Balance::RoundRobin, 2, &registry);
        eject_now(&a, 0);
        a.budget.request();
        let b = pool(Balance::RoundRobin, 2, &registry);
        assert!(!b.targets[0].stats.health.eligible());
        assert_eq!(b.budget.totals(), (1, 0));
        registry.retain(&[]);
        let c = pool(Balance::RoundRobin, 2, &registry);
        assert!(
            c.targets[0].stats.health.eligible(),
            "a removed target starts afresh"
        );
        assert_eq!(c.budget.totals(), (0, 0));
    }
}
