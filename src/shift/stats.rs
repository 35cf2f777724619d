//! What the ramp judges by: per side of a shifted route, the requests, the
//! failures and a latency histogram of the current window. Recording is three
//! relaxed atomic adds; the ramp takes (and zeroes) the window at each step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Side;

/// Sub-buckets per power of two: latencies are kept to within 1/8 (12.5%).
const SUB: u32 = 8;
/// Powers of two of microseconds covered: up to 2^40 µs (about 12 days).
const OCTAVES: u32 = 40;
const LEN: usize = (SUB * (OCTAVES + 1)) as usize;

/// One side's counters for the window in progress.
#[derive(Debug)]
pub struct SideStats {
    requests: AtomicU64,
    failures: AtomicU64,
    latency: Box<[AtomicU64]>,
}

impl Default for SideStats {
    fn default() -> Self {
        SideStats {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: (0..LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What one side did in a finished window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub requests: u64,
    /// 5xx answers and requests that got no answer.
    pub failures: u64,
    /// The 99th percentile latency (an upper bound within 12.5%); `None`
    /// without requests.
    pub p99: Option<Duration>,
}

impl Summary {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

impl SideStats {
    fn record(&self, latency: Duration, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[index(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// The window so far, zeroing it. A request recorded during the take may
    /// land in either window; the ramp judges shares, so that is harmless.
    fn take(&self) -> Summary {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let failures = self.failures.swap(0, Ordering::Relaxed);
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        Summary {
            requests,
            failures,
            p99: percentile(&counts, 0.99),
        }
    }
}

/// Both sides of one shifted route.
#[derive(Debug, Default)]
pub struct Window {
    old: SideStats,
    new: SideStats,
}

impl Window {
    /// Records one request's outcome: `latency` until the response head (or
    /// the failure), `failed` for a 5xx or no answer at all.
    pub fn record(&self, side: Side, latency: Duration, failed: bool) {
        match side {
            Side::Old => self.old.record(latency, failed),
            Side::New => self.new.record(latency, failed),
        }
    }

    /// Ends the window: `(old, new)`.
    pub fn take(&self) -> (Summary, Summary) {
        (self.old.take(), self.new.take())
    }
}

/// The histogram slot of a latency: exact below 8 µs, then 8 slots per power of two.
fn index(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let log = 63 - us.leading_zeros();
    if log < 3 {
        return us as usize;
    }
    let octave = log.min(OCTAVES);
    let sub = if log > OCTAVES {
        SUB - 1
    } else {
        ((us >> (log - 3)) & u64::from(SUB - 1)) as u32
    };
    (SUB * (octave - 2) + sub) as usize
}

/// The largest latency slot `i` holds.
fn upper_bound(i: usize) -> Duration {
    let i = i as u32;
    if i < SUB {
        return Duration::from_micros(u64::from(i));
    }
    let octave = i / SUB + 2;
    let sub = u64::from(i % SUB);
    let base = 1u64 << octave;
    let width = base >> 3;
    Duration::from_micros(base + (sub + 1) * width - 1)
}

fn percentile(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_bound(i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn p99_of_a_known_distribution() {
        let w = Window::default();
        for _ in 0..990 {
            w.record(Side::New, Duration::from_millis(10), false);
        }
        for _ in 0..10 {
            w.record(Side::New, Duration::from_millis(500), true);
        }
        let (old, new) = w.take();
        assert_eq!(old, Summary::default());
        assert_eq!(new.requests, 1000);
        assert_eq!(new.failures, 10);
        assert!((new.error_rate() - 0.01).abs() < 1e-9);
        let p99 = new.p99.unwrap();
        assert!(
            p99 >= Duration::from_millis(10) && p99 <= Duration::from_micros(11_250),
            "{p99:?}"
        );
        assert_eq!(w.take().1, Summary::default(), "taking zeroes the window");
    }

    proptest! {
        /// A latency's slot holds it, and the slot's bound is within 12.5% above it.
        #[test]
        fn slots_bound_their_latencies(us in 1u64..(1 << 40)) {
            let i = index(Duration::from_micros(us));
            prop_assert!(i < LEN);
            let bound = upper_bound(i).as_micros() as u64;
            prop_assert!(bound >= us, "{us} -> slot {i} bound {bound}");
            prop_assert!(bound as f64 <= us as f64 * 1.125 + 1.0, "{us} -> {bound}");
        }

        /// Slots are ordered like latencies.
        #[test]
        fn slots_are_monotonic(a in 1u64..(1 << 40), b in 1u64..(1 << 40)) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(index(Duration::from_micros(lo)) <= index(Duration::from_micros(hi)));
        }
    }
}
