//! What requests did, per route and upstream: cumulative counts per status
//! class, the Prometheus duration histogram, when the pair last served, and a
//! rolling window (the last five minutes) the dashboard reads error rates and
//! p99 latencies from. It knows nothing of HTTP or of Prometheus' text format.
//!
//! Series are keyed by names (route, upstream) in [`Traffic`], outside the
//! config snapshot, so a reload that keeps a route keeps its counts (SPEC 3.5);
//! [`Traffic::retain`] drops the series of names a new config no longer has.
//! Each snapshot holds a [`Table`] that resolves a (route index, upstream
//! index) pair to its series once; after that, recording a request is a
//! handful of relaxed atomic adds: no lock, no hashing, no allocation. Label
//! values come from the config only (never from a request path), so the number
//! of series is bounded by routes × upstreams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// The route label of requests the `[default]` route took.
pub const DEFAULT_ROUTE: &str = "(default)";
/// The upstream label of composed routes: their legs are their upstreams.
pub const COMPOSE_UPSTREAM: &str = "(compose)";
/// Route and upstream label of requests that matched nothing or were refused
/// before matching (400, 404, 413, ...).
pub const NONE: &str = "(none)";

/// Status classes, in the order [`Totals::classes`] counts them.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the Prometheus duration buckets, in microseconds (1 ms to
/// 30 s: from a cached answer to a request timeout). `+Inf` follows.
pub const BUCKETS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// Rolling-window slots and their length: the window covers the last
/// `SLOTS × SLOT_MS` (five minutes), long enough to smooth a few quiet
/// seconds, short enough that a ramp step shows within minutes.
const SLOTS: usize = 10;
const SLOT_MS: u64 = 30_000;
/// The window's length in seconds, for the page.
pub const WINDOW_SECS: u64 = SLOTS as u64 * SLOT_MS / 1000;

/// Window latency slots: slot `i > 0` holds `[2^(i-1), 2^i) × 128 µs`, slot 0
/// below 128 µs; the last one everything from about 9 minutes up. Coarse
/// (a factor of two) but p99 is interpolated within its slot, and it keeps a
/// series' window at about 2 KiB.
const LAT_SLOTS: usize = 24;
const LAT_BASE_US: u64 = 128;

/// One (route, upstream) pair's counters.
#[derive(Debug, Default)]
pub struct Series {
    /// Responses per status class, since the series was created.
    classes: [AtomicU64; 5],
    /// Per Prometheus bucket (not cumulative), the last one `+Inf`.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    /// Unix milliseconds of the last response; 0 before the first.
    last_ms: AtomicU64,
    window: [Slot; SLOTS],
}

/// One slot of the rolling window; `period` says which `SLOT_MS` period its
/// counts belong to, so a stale slot is recognised (and reset) by its number.
#[derive(Debug, Default)]
struct Slot {
    period: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    latency: [AtomicU64; LAT_SLOTS],
}

/// A series' cumulative counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Per class of [`CLASSES`].
    pub classes: [u64; 5],
    /// Per bucket of [`BUCKETS_US`] then `+Inf`, not cumulative.
    pub buckets: [u64; BUCKETS_US.len() + 1],
    pub sum: Duration,
}

impl Totals {
    pub fn count(&self) -> u64 {
        self.classes.iter().sum()
    }
}

/// What one or more series did in the rolling window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recent {
    pub requests: u64,
    /// 5xx answers, the proxy's own 502/504 included.
    pub failures: u64,
    latency: [u64; LAT_SLOTS],
}

impl Series {
    /// Records one response: its status, how long it took and when it ended
    /// (`now_ms`, unix milliseconds).
    pub fn record(&self, status: u16, took: Duration, now_ms: u64) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let class = class(status);
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let bucket = BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);

        let period = now_ms / SLOT_MS;
        let slot = &self.window[(period % SLOTS as u64) as usize];
        let seen = slot.period.load(Ordering::Acquire);
        // The first request of a new period resets the slot. One recorded
        // concurrently with the reset may be lost: the window is a gauge for
        // eyes, not a counter.
        if seen < period
            && slot
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.failures.store(0, Ordering::Relaxed);
            for c in &slot.latency {
                c.store(0, Ordering::Relaxed);
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if class == 4 {
            slot.failures.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[lat_slot(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            classes: std::array::from_fn(|i| self.classes[i].load(Ordering::Relaxed)),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
        }
    }

    /// When this pair last answered a request; `None` if it never did.
    pub fn last_served(&self) -> Option<SystemTime> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// The rolling window ending at `now_ms`: the slots of the last
    /// `SLOTS` periods, the current one included.
    pub fn recent(&self, now_ms: u64) -> Recent {
        let now = now_ms / SLOT_MS;
        let mut r = Recent::default();
        for slot in &self.window {
            let p = slot.period.load(Ordering::Acquire);
            if p > now || now - p >= SLOTS as u64 {
                continue;
            }
            r.requests += slot.requests.load(Ordering::Relaxed);
            r.failures += slot.failures.load(Ordering::Relaxed);
            for (sum, c) in r.latency.iter_mut().zip(&slot.latency) {
                *sum += c.load(Ordering::Relaxed);
            }
        }
        r
    }
}

impl Recent {
    /// Adds `other`'s counts: a route's or the whole proxy's window.
    pub fn add(&mut self, other: &Recent) {
        self.requests += other.requests;
        self.failures += other.failures;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// Failures per request; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.failures as f64 / self.requests as f64)
    }

    /// The 99th percentile latency, interpolated linearly within its slot
    /// (like Prometheus' `histogram_quantile`); `None` without requests.
    pub fn p99(&self) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total as f64 * 0.99;
        let mut seen = 0u64;
        for (i, &c) in self.latency.iter().enumerate() {
            if c > 0 && (seen + c) as f64 >= rank {
                let (lo, hi) = lat_bounds(i);
                let into = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
                let us = lo as f64 + (hi - lo) as f64 * into;
                return Some(Duration::from_micros(us as u64));
            }
            seen += c;
        }
        None
    }
}

/// Index into [`CLASSES`]; anything outside 100..=599 counts as 5xx.
fn class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

fn lat_slot(us: u64) -> usize {
    let i = 64 - (us / LAT_BASE_US).leading_zeros() as usize;
    i.min(LAT_SLOTS - 1)
}

/// The microseconds window latency slot `i` spans.
fn lat_bounds(i: usize) -> (u64, u64) {
    if i == 0 {
        (0, LAT_BASE_US)
    } else {
        (LAT_BASE_US << (i - 1), LAT_BASE_US << i)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// === impl Traffic ===

/// Every series, by (route label, upstream label); outlives snapshots.
#[derive(Debug, Default)]
pub struct Traffic {
    series: Mutex<HashMap<(String, String), Arc<Series>>>,
}

impl Traffic {
    /// The series of a pair, created on first use. Locks: called once per
    /// pair and snapshot by [`Table`], and at scrape time.
    pub fn get(&self, route: &str, upstream: &str) -> Arc<Series> {
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.to_owned(), upstream.to_owned()))
            .or_default()
            .clone()
    }

    /// Every series, sorted by route then upstream label.
    pub fn all(&self) -> Vec<(String, String, Arc<Series>)> {
        let map = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = map
            .iter()
            .map(|((r, u), s)| (r.clone(), u.clone(), s.clone()))
            .collect();
        drop(map);
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Drops the series whose route or upstream `config` no longer names, so
    /// renamed and removed routes do not pile up. Called on every install.
    pub fn retain(&self, config: &Config) {
        let routes: std::collections::HashSet<&str> = config
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .chain([DEFAULT_ROUTE, NONE])
            .collect();
        let upstreams: std::collections::HashSet<&str> = config
            .upstreams
            .iter()
            .map(|u| u.name.as_str())
            .chain([COMPOSE_UPSTREAM, NONE])
            .collect();
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(r, u), _| routes.contains(r.as_str()) && upstreams.contains(u.as_str()));
    }
}

// === impl Table ===

/// A snapshot's way to its series: one cell per (route or default, upstream
/// or compose), filled on the pair's first request.
#[derive(Debug)]
pub struct Table {
    traffic: Arc<Traffic>,
    /// Upstreams, plus one column for composed routes.
    width: usize,
    /// Rows: the routes in config order, then the default route.
    cells: Box<[OnceLock<Arc<Series>>]>,
    none: Arc<Series>,
}

impl Table {
    pub fn new(traffic: Arc<Traffic>, config: &Config) -> Table {
        let width = config.upstreams.len() + 1;
        let rows = config.routes.len() + 1;
        Table {
            none: traffic.get(NONE, NONE),
            traffic,
            width,
            cells: (0..rows * width).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The series of a request that `route` (an index into `config.routes`,
    /// `None` for the default) sent to `upstream` (`None` for a composite).
    /// Neither: the request matched nothing. `config` is the snapshot's.
    pub fn series(
        &self,
        config: &Config,
        route: Option<usize>,
        upstream: Option<usize>,
    ) -> &Series {
        if route.is_none() && upstream.is_none() {
            return &self.none;
        }
        let row = route.unwrap_or(config.routes.len());
        let col = upstream.unwrap_or(self.width - 1);
        self.cells[row * self.width + col].get_or_init(|| {
            let r = route.map_or(DEFAULT_ROUTE, |i| config.routes[i].name.as_str());
            let u = upstream.map_or(COMPOSE_UPSTREAM, |i| config.upstreams[i].name.as_str());
            self.traffic.get(r, u)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn statuses_are_counted_by_class() {
        let s = Series::default();
        for status in [101, 200, 204, 301, 404, 429, 500, 502, 504, 0] {
            s.record(status, Duration::from_millis(1), T0);
        }
        let t = s.totals();
        assert_eq!(t.classes, [1, 2, 1, 2, 4]);
        assert_eq!(t.count(), 10);
        let r = s.recent(T0);
        assert_eq!((r.requests, r.failures), (10, 4));
        assert_eq!(r.error_rate(), Some(0.4));
        assert_eq!(
            s.last_served(),
            Some(UNIX_EPOCH + Duration::from_millis(T0))
        );
        assert_eq!(Series::default().last_served(), None);
    }

    #[test]
    fn durations_fall_in_inclusive_prometheus_buckets() {
        let s = Series::default();
        s.record(200, Duration::from_micros(999), T0);
        s.record(200, Duration::from_millis(1), T0); // le="0.001" is inclusive
        s.record(200, Duration::from_micros(1_001), T0);
        s.record(200, Duration::from_secs(31), T0);
        let t = s.totals();
        assert_eq!(t.buckets[0], 2);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[BUCKETS_US.len()], 1, "+Inf");
        assert_eq!(t.buckets.iter().sum::<u64>(), 4);
        assert_eq!(
            t.sum,
            Duration::from_micros(999 + 1_000 + 1_001 + 31_000_000)
        );
    }

    #[test]
    fn p99_is_interpolated_within_its_slot() {
        let s = Series::default();
        for _ in 0..990 {
            s.record(200, Duration::from_millis(10), T0);
        }
        for _ in 0..10 {
            s.record(200, Duration::from_millis(700), T0);
        }
        let p99 = s.recent(T0).p99().unwrap();
        // 10 ms lies in [8.192, 16.384) ms; the 990th of 990 is its top.
        assert!(
            p99 >= Duration::from_millis(10) && p99 <= Duration::from_micros(16_384),
            "{p99:?}"
        );
        for _ in 0..20 {
            s.record(200, Duration::from_millis(700), T0);
        }
        // Now 3% are slow: p99 is in the 700 ms slot, [524, 1049) ms.
        let p99 = s.recent(T0).p99().unwrap();
        assert!(
            p99 >= Duration::from_millis(524) && p99 <= Duration::from_millis(1049),
            "{p99:?}"
        );
        assert_eq!(Recent::default().p99(), None);
        assert_eq!(Recent::default().error_rate(), None);
    }

    #[test]
    fn the_window_rolls_over_and_forgets() {
        let s = Series::default();
        s.record(500, Duration::from_millis(1), T0);
        s.record(200, Duration::from_millis(1), T0 + SLOT_MS);
        let r = s.recent(T0 + SLOT_MS);
        assert_eq!((r.requests, r.failures), (2, 1));
        // Nine periods later the first slot is out of the window, the second
        // is still in.
        let later = T0 + SLOTS as u64 * SLOT_MS;
        let r = s.recent(later);
        assert_eq!((r.requests, r.failures), (1, 0));
        // A request in the period that reuses the first slot resets it.
        s.record(200, Duration::from_millis(1), later);
        let r = s.recent(later);
        assert_eq!((r.requests, r.failures), (2, 0));
        // Long quiet: nothing recent, totals untouched.
        assert_eq!(s.recent(later * 2), Recent::default());
        assert_eq!(s.totals().count(), 3);
    }

    #[test]
    fn windows_add_up() {
        let (a, b) = (Series::default(), Series::default());
        a.record(200, Duration::from_millis(1), T0);
        b.record(503, Duration::from_millis(1), T0);
        let mut r = a.recent(T0);
        r.add(&b.recent(T0));
        assert_eq!((r.requests, r.failures), (2, 1));
    }

    #[test]
    fn latency_slots_hold_their_latencies() {
        for us in [0, 1, 127, 128, 129, 255, 256, 10_000, 1 << 30, u64::MAX] {
            let i = lat_slot(us);
            let (lo, hi) = lat_bounds(i);
            assert!(
                (lo <= us && us < hi) || i == LAT_SLOTS - 1,
                "{us} in {i}: {lo}..{hi}"
            );
        }
    }
}
