//! Whether a target may take traffic: the active verdict of its health probes
//! (`health`), the passive ejection after failed requests in a row (`eject`),
//! and the retry budget of an upstream (`retries`).
//!
//! The state lives in the [`super::Registry`], beside a target's counters, so
//! a reload that keeps a target keeps its verdict. The transitions are pure
//! functions of their inputs (the clock included) so they are tested without
//! sockets or sleeps; the probe loops that feed them live in [`super::probe`].
//! The hot path pays one atomic load per target it considers, and reads the
//! clock only for a target that is ejected.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Eject;

/// The active verdict, in the low two bits of [`Health::flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Never probed (or not configured to be): eligible.
    Unchecked,
    Up,
    Down,
}

impl Active {
    pub fn as_str(self) -> &'static str {
        match self {
            Active::Unchecked => "unchecked",
            Active::Up => "up",
            Active::Down => "down",
        }
    }

    fn bits(self) -> u8 {
        match self {
            Active::Unchecked => 0,
            Active::Up => 1,
            Active::Down => 2,
        }
    }

    fn of(flags: u8) -> Active {
        match flags & ACTIVE_MASK {
            1 => Active::Up,
            2 => Active::Down,
            _ => Active::Unchecked,
        }
    }
}

const ACTIVE_MASK: u8 = 0b011;
/// Set while the target is ejected; [`Health::ejected_until`] says until when.
const EJECTED: u8 = 0b100;

/// Milliseconds since the first call: the one clock ejections are kept in, so
/// an instant fits in an atomic.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Starts at 1 so that 0 can mean "never".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One target's health, shared by every snapshot that has the target.
#[derive(Debug)]
pub struct Health {
    /// For log lines: the upstream's name and the target's URL. The URL is
    /// logged as `url`, since the JSON log's `target` is tracing's own.
    upstream: String,
    target: String,
    /// [`Active`] bits and [`EJECTED`]: the one load [`Health::eligible`] makes.
    flags: AtomicU8,
    /// Failed requests in a row (passive), reset by a success.
    failures: AtomicU32,
    /// [`now_ms`] at which an ejection ends.
    ejected_until: AtomicU64,
    /// The run of failures that caused the current (or last) ejection.
    ejected_after: AtomicU32,
    /// Ejections ever.
    ejections: AtomicU64,
    /// Probes in a row with the same result, and whether that result was a
    /// pass. Only the target's probe loop writes them.
    streak: AtomicU32,
    streak_ok: AtomicU8,
    /// When the last probe ended and what it found.
    last_check: Mutex<Option<LastCheck>>,
}

/// The last probe of a target.
#[derive(Debug, Clone)]
pub struct LastCheck {
    pub at: SystemTime,
    pub ok: bool,
    /// `200`, `timeout`, `connect failed`...
    pub result: String,
}

/// A target's ejection as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejected {
    /// How long until the target is eligible again.
    pub remaining: Duration,
    /// The failures in a row that ejected it.
    pub failures: u32,
}

impl Health {
    pub fn new(upstream: &str, target: &str) -> Health {
        Health {
            upstream: upstream.to_owned(),
            target: target.to_owned(),
            flags: AtomicU8::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejected_after: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            streak: AtomicU32::new(0),
            streak_ok: AtomicU8::new(0),
            last_check: Mutex::new(None),
        }
    }

    /// Whether the target may take a request now: not down, not ejected.
    #[inline]
    pub fn eligible(&self) -> bool {
        let f = self.flags.load(Ordering::Relaxed);
        // Neither ejected nor down (unchecked is 0, up is 1): the common case.
        if f & (EJECTED | Active::Down.bits()) == 0 {
            return true;
        }
        Active::of(f) != Active::Down && self.ejection_over(now_ms())
    }

    /// Ends an ejection whose time is up (the first to notice logs it);
    /// `false` while it lasts.
    fn ejection_over(&self, now: u64) -> bool {
        if now < self.ejected_until.load(Ordering::Relaxed) {
            return false;
        }
        let before = self.flags.fetch_and(!EJECTED, Ordering::Relaxed);
        if before & EJECTED != 0 {
            tracing::info!(
                event = "uneject",
                upstream = self.upstream,
                url = self.target,
                reason = "ejection time is over",
                "target back in rotation"
            );
        }
        Active::of(before) != Active::Down
    }

    pub fn active(&self) -> Active {
        Active::of(self.flags.load(Ordering::Relaxed))
    }

    /// `Some` while the target is ejected.
    pub fn ejected(&self, now: u64) -> Option<Ejected> {
        if self.flags.load(Ordering::Relaxed) & EJECTED == 0 {
            return None;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        (now < until).then(|| Ejected {
            remaining: Duration::from_millis(until - now),
            failures: self.ejected_after.load(Ordering::Relaxed),
        })
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn last_check(&self) -> Option<LastCheck> {
        self.last_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A request's outcome (passive): `failed` is no answer, or a 502/503/504.
    /// A run of `eject.consecutive_failures` ejects the target until `now` +
    /// `eject.for`. Returns whether this outcome ejected it.
    pub fn record(&self, failed: bool, eject: Option<&Eject>, now: u64, reason: &str) -> bool {
        if !failed {
            // Load first: a healthy target's hot path only reads the line.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let run = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(eject) = eject else { return false };
        if run < eject.consecutive_failures {
            return false;
        }
        // Requests that were in flight when the target was ejected fail too:
        // they do not prolong the ejection.
        if self.flags.load(Ordering::Relaxed) & EJECTED != 0 {
            return false;
        }
        let until = now + eject.duration.as_millis() as u64;
        self.ejected_until.store(until, Ordering::Relaxed);
        self.ejected_after.store(run, Ordering::Relaxed);
        let before = self.flags.fetch_or(EJECTED, Ordering::Relaxed);
        if before & EJECTED != 0 {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            event = "eject",
            upstream = self.upstream,
            url = self.target,
            reason,
            failures = run,
            for_ms = eject.duration.as_millis() as u64,
            "target ejected after failures in a row"
        );
        true
    }

    /// A probe's result: moves the active verdict by `unhealthy_after` /
    /// `healthy_after` probes in a row. Called by the target's probe loop only.
    pub fn probed(&self, ok: bool, result: String, cfg: &crate::config::Health) {
        let same = self.streak_ok.load(Ordering::Relaxed) == u8::from(ok);
        let streak = if same {
            self.streak.load(Ordering::Relaxed).saturating_add(1)
        } else {
            1
        };
        self.streak.store(streak, Ordering::Relaxed);
        self.streak_ok.store(u8::from(ok), Ordering::Relaxed);
        let from = self.active();
        let to = next_active(from, ok, streak, cfg.unhealthy_after, cfg.healthy_after);
        if to != from {
            self.flags
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    Some(f & !ACTIVE_MASK | to.bits())
                })
                .ok();
            // Going down is what an operator must see; coming up is news.
            if to == Active::Down {
                tracing::warn!(
                    event = "health_change",
                    upstream = self.upstream,
                    url = self.target,
                    from = from.as_str(),
                    to = to.as_str(),
                    reason = result,
                    probes = streak,
                    "target health changed"
                );
            } else {
                tracing::info!(
                    event = "health_change",
                    upstream = self.upstream,
                    url = self.target,
                    from = from.as_str(),
                    to = to.as_str(),
                    reason = result,
                    probes = streak,
                    "target health changed"
                );
            }
        }
        *self
            .last_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(LastCheck {
            at: SystemTime::now(),
            ok,
            result,
        });
    }

    /// Ends an ejection now: `eject` was removed from the upstream, and an
    /// ejection the config no longer asks for must not keep a target out.
    pub fn end_ejection(&self, reason: &str) {
        let before = self.flags.fetch_and(!EJECTED, Ordering::Relaxed);
        if before & EJECTED != 0 {
            tracing::info!(
                event = "uneject",
                upstream = self.upstream,
                url = self.target,
                reason,
                "target back in rotation"
            );
        }
    }

    /// Forgets the active verdict: `health` was removed from the upstream, so
    /// nothing will probe the target any more.
    pub fn unchecked(&self) {
        let before = self.flags.fetch_and(!ACTIVE_MASK, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        *self
            .last_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        if Active::of(before) != Active::Unchecked {
            tracing::info!(
                event = "health_change",
                upstream = self.upstream,
                url = self.target,
                from = Active::of(before).as_str(),
                to = "unchecked",
                reason = "health checks removed",
                "target health changed"
            );
        }
    }
}

/// The active verdict after a probe that passed (`ok`) or failed, the
/// `streak`-th in a row to do so. An unchecked target is up at its first
/// pass: it was eligible already.
pub fn next_active(
    from: Active,
    ok: bool,
    streak: u32,
    unhealthy_after: u32,
    healthy_after: u32,
) -> Active {
    match (from, ok) {
        (Active::Unchecked, true) => Active::Up,
        (Active::Down, true) if streak >= healthy_after => Active::Up,
        (Active::Unchecked | Active::Up, false) if streak >= unhealthy_after => Active::Down,
        (from, _) => from,
    }
}

// === impl RetryBudget ===

/// Seconds the retry budget looks back over.
const BUDGET_WINDOW_SECS: u64 = 10;
/// Share of an upstream's requests that may be retries: at most 20% extra load
/// (SPEC 2), so a failing upstream is not hammered by its own retries.
const BUDGET_RATIO: f64 = 0.2;
/// Retries allowed per window whatever the traffic, so that a quiet upstream
/// can still retry its occasional failure (the budget would be 0 otherwise).
pub const BUDGET_RESERVE: u64 = 3;

/// An upstream's retry budget: a sliding window of ten one-second buckets
/// counting requests and retries. Kept by upstream name outside the snapshot,
/// so a reload does not refill it.
#[derive(Debug, Default)]
pub struct RetryBudget {
    window: Mutex<Window>,
    /// Retries sent, ever.
    sent: AtomicU64,
    /// Retries wanted but refused by the budget, ever.
    denied: AtomicU64,
}

/// Requests and retries per second, for the last [`BUDGET_WINDOW_SECS`].
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// `(second, requests, retries)`, indexed by second modulo the window.
    buckets: [(u64, u64, u64); BUDGET_WINDOW_SECS as usize],
}

impl Window {
    fn bucket(&mut self, sec: u64) -> &mut (u64, u64, u64) {
        let b = &mut self.buckets[(sec % BUDGET_WINDOW_SECS) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0);
        }
        b
    }

    /// Requests and retries within the window ending at `sec`.
    pub fn totals(&self, sec: u64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| b.0 + BUDGET_WINDOW_SECS > sec && b.0 <= sec)
            .fold((0, 0), |(q, r), b| (q + b.1, r + b.2))
    }

    pub fn request(&mut self, sec: u64) {
        self.bucket(sec).1 += 1;
    }

    /// Spends one retry if the window allows it.
    pub fn try_retry(&mut self, sec: u64) -> bool {
        let (requests, retries) = self.totals(sec);
        let allowed = (requests as f64 * BUDGET_RATIO) as u64 + BUDGET_RESERVE;
        if retries >= allowed {
            return false;
        }
        self.bucket(sec).2 += 1;
        true
    }
}

impl RetryBudget {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a client request that may be retried.
    pub fn request(&self) {
        self.window().request(now_ms() / 1000);
    }

    /// Spends one retry if the budget has one left.
    pub fn try_retry(&self) -> bool {
        let ok = self.window().try_retry(now_ms() / 1000);
        let counter = if ok { &self.sent } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }

    /// Requests and retries in the window now.
    pub fn totals(&self) -> (u64, u64) {
        self.window().totals(now_ms() / 1000)
    }

    /// Retries sent and refused, ever.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.denied.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eject(n: u32, ms: u64) -> Eject {
        Eject {
            consecutive_failures: n,
            duration: Duration::from_millis(ms),
        }
    }

    #[test]
    fn active_verdict_moves_after_runs_of_probes() {
        use Active::*;
        // unhealthy_after 2, healthy_after 3
        let step = |from, ok, streak| next_active(from, ok, streak, 2, 3);
        assert_eq!(step(Unchecked, true, 1), Up);
        assert_eq!(step(Unchecked, false, 1), Unchecked);
        assert_eq!(step(Unchecked, false, 2), Down);
        assert_eq!(step(Up, false, 1), Up);
        assert_eq!(step(Up, false, 2), Down);
        assert_eq!(step(Down, true, 2), Down);
        assert_eq!(step(Down, true, 3), Up);
        assert_eq!(step(Down, false, 9), Down);
        assert_eq!(step(Up, true, 9), Up);
    }

    #[test]
    fn probes_in_a_row_take_a_target_out_and_bring_it_back() {
        let h = Health::new("u", "http://t:1");
        let cfg = crate::config::Health {
            unhealthy_after: 2,
            healthy_after: 2,
            ..crate::config::Health::default()
        };
        assert!(h.eligible());
        h.probed(false, "503".into(), &cfg);
        assert!(h.eligible(), "one failure is not a run");
        h.probed(true, "200".into(), &cfg);
        h.probed(false, "503".into(), &cfg);
        assert!(h.eligible(), "a pass in between breaks the run");
        h.probed(false, "timeout".into(), &cfg);
        assert_eq!(h.active(), Active::Down);
        assert!(!h.eligible());
        h.probed(true, "200".into(), &cfg);
        assert!(!h.eligible());
        h.probed(true, "200".into(), &cfg);
        assert_eq!(h.active(), Active::Up);
        assert!(h.eligible());
        assert_eq!(h.last_check().map(|c| c.result), Some("200".to_owned()));
        h.probed(false, "503".into(), &cfg);
        h.probed(false, "503".into(), &cfg);
        h.unchecked();
        assert_eq!(h.active(), Active::Unchecked);
        assert!(h.eligible());
    }

    #[test]
    fn a_run_of_failures_ejects_until_the_time_is_over() {
        let h = Health::new("u", "http://t:1");
        let e = eject(3, 1000);
        assert!(!h.record(true, Some(&e), 100, "502"));
        assert!(!h.record(true, Some(&e), 100, "502"));
        assert!(!h.record(false, Some(&e), 100, "200"), "a success resets");
        assert_eq!(h.consecutive_failures(), 0);
        assert!(!h.record(true, Some(&e), 100, "502"));
        assert!(!h.record(true, Some(&e), 100, "502"));
        assert!(h.record(true, Some(&e), 100, "502"));
        assert_eq!(
            h.ejected(600),
            Some(Ejected {
                remaining: Duration::from_millis(500),
                failures: 3
            })
        );
        assert!(!h.ejection_over(1099));
        // Late failures of requests already in flight do not extend it.
        for _ in 0..5 {
            assert!(!h.record(true, Some(&e), 900, "502"));
        }
        assert!(h.ejection_over(1100));
        assert_eq!(h.ejected(1100), None);
        assert_eq!(h.ejections(), 1);

        // Ejected again, then `eject` is removed: back at once.
        for _ in 0..3 {
            h.record(true, Some(&e), 2000, "502");
        }
        assert!(h.ejected(2001).is_some());
        h.end_ejection("eject removed");
        assert_eq!(h.ejected(2001), None);
        assert!(h.eligible());
    }

    #[test]
    fn without_eject_failures_are_only_counted() {
        let h = Health::new("u", "http://t:1");
        for _ in 0..100 {
            assert!(!h.record(true, None, 1, "refused"));
        }
        assert_eq!(h.consecutive_failures(), 100);
        assert!(h.eligible());
    }

    #[test]
    fn a_down_target_stays_out_when_its_ejection_ends() {
        let h = Health::new("u", "http://t:1");
        let cfg = crate::config::Health {
            unhealthy_after: 1,
            ..crate::config::Health::default()
        };
        h.record(true, Some(&eject(1, 10)), 1, "refused");
        h.probed(false, "connect failed".into(), &cfg);
        assert!(!h.ejection_over(1_000));
        assert!(!h.eligible());
    }

    #[test]
    fn the_budget_allows_a_fifth_of_the_requests_plus_a_reserve() {
        let mut w = Window::default();
        for _ in 0..100 {
            w.request(50);
        }
        let granted = (0..100).filter(|_| w.try_retry(50)).count() as u64;
        assert_eq!(granted, 20 + BUDGET_RESERVE);
        assert_eq!(w.totals(50), (100, 20 + BUDGET_RESERVE));
        // Spread over the window it still holds; past it, the slate is clean.
        assert!(!w.try_retry(59));
        assert_eq!(w.totals(60), (0, 0));
        assert!(w.try_retry(60));
    }

    #[test]
    fn a_quiet_upstream_keeps_its_reserve() {
        let mut w = Window::default();
        w.request(7);
        assert!(w.try_retry(7));
        assert!(w.try_retry(8));
        assert!(w.try_retry(9));
        assert!(!w.try_retry(9));
    }
}
