//! The automatic ramp (SPEC 2.2): every `every`, judge the window the route's
//! two sides just served and raise the new side's share by `step`, or drop it
//! to 0 and stop on a breach.
//!
//! [`verdict`] is the pure judgement of one window; [`drive`] is the task that
//! keeps each route's interval, takes its window and applies the verdict to
//! the route's [`ShiftState`]. The share it sets is what [`super::choose`]
//! reads on the hot path; the position is persisted by the state (see
//! `persist`), so a restart resumes where the ramp was.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::BUCKETS;
use super::state::{Control, RampStatus, ShiftState, ShiftStates};
use super::stats::Summary;
use crate::config::{Ramp, percent_number};
use crate::proxy::Proxy;

/// What one window says about the new side.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Healthy: raise the share by `step`.
    Step,
    /// Too little traffic on the new side to judge: no step and no breach.
    /// The text says how little.
    Hold(String),
    /// A limit was passed: the share drops to 0 and the ramp stops. The text
    /// names each measured value and its limit.
    Breach(String),
}

/// Judges one window: `old` and `new` are the two sides' summaries from the
/// same route over the same interval; `mismatch_rate` is the route's shadow
/// mismatch rate over that interval when the route shadows to the new side
/// (`None` otherwise — and always, until shadow exists: the check applies
/// once the route shadows).
///
/// - Fewer than `min_requests` on the new side: [`Verdict::Hold`].
/// - Error rate (5xx and failures over requests) above `max_error_rate`,
///   new p99 above `max_latency_ratio` × old p99, or mismatch rate above
///   `max_mismatch_rate`: [`Verdict::Breach`], naming every limit passed.
/// - When the old side served nothing in the window there is no latency to
///   compare against, so latency is not judged (errors and mismatches
///   still are): at high shares the old side may well see no traffic, and a
///   ramp must not stall or stop for lack of a reference.
pub fn verdict(ramp: &Ramp, old: Summary, new: Summary, mismatch_rate: Option<f64>) -> Verdict {
    if new.requests < ramp.min_requests {
        return Verdict::Hold(format!(
            "new side served {} requests, fewer than min_requests {}: no verdict",
            new.requests, ramp.min_requests
        ));
    }
    let mut breaches = Vec::new();
    let error_rate = new.error_rate();
    if error_rate > ramp.max_error_rate {
        breaches.push(format!(
            "new side error rate {} over max_error_rate {} ({} of {} requests)",
            pct(error_rate),
            pct(ramp.max_error_rate),
            new.failures,
            new.requests
        ));
    }
    if let (Some(new_p99), Some(old_p99)) = (new.p99, old.p99)
        && old.requests > 0
    {
        let limit = old_p99.as_secs_f64() * ramp.max_latency_ratio;
        if new_p99.as_secs_f64() > limit {
            breaches.push(format!(
                "new side p99 {} over max_latency_ratio {} × old side p99 {} (= {})",
                latency(new_p99),
                ramp.max_latency_ratio,
                latency(old_p99),
                latency(Duration::from_secs_f64(limit)),
            ));
        }
    }
    if let Some(rate) = mismatch_rate
        && rate > ramp.max_mismatch_rate
    {
        breaches.push(format!(
            "shadow mismatch rate {} over max_mismatch_rate {}",
            pct(rate),
            pct(ramp.max_mismatch_rate)
        ));
    }
    if breaches.is_empty() {
        Verdict::Step
    } else {
        Verdict::Breach(breaches.join("; "))
    }
}

/// A rate as a percentage with at most two decimals: `0.042` → `4.2%`.
fn pct(rate: f64) -> String {
    let s = format!("{:.2}", rate * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A latency to a readable precision: `850µs`, `12.3ms`, `1.25s`.
fn latency(d: Duration) -> String {
    fn trim(s: String) -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", trim(format!("{:.1}", d.as_secs_f64() * 1e3)))
    } else {
        format!("{}s", trim(format!("{:.2}", d.as_secs_f64())))
    }
}

// === the driver ===

/// How often the driver looks for routes added, removed or changed by a
/// reload, and for resumed ramps, when no interval ends sooner.
const POLL: Duration = Duration::from_secs(1);

/// Runs every route's ramp until the proxy is gone. Spawned once per proxy.
///
/// Each route with a ramp ticks on its own `every`, counted from when the
/// driver first saw it, or from the last reload or resume that changed its
/// ramp or share. At each tick the route's window is taken and, while the ramp
/// runs, judged ([`verdict`]); the windows of stopped and finished ramps are
/// taken too and thrown away, so a resumed ramp judges fresh traffic.
pub async fn drive(proxy: Weak<Proxy>) {
    run(proxy).await;
}

/// What owns the shift states: the proxy, or (in tests) the states alone.
trait Owner: Send + Sync + 'static {
    fn shifts(&self) -> &ShiftStates;

    /// The shadow mismatch rate of `route` since the last call, when the
    /// route shadows to `to` (the shift's new side) and compared anything.
    fn mismatch_rate(&self, route: &str, to: &str) -> Option<f64>;
}

impl Owner for Proxy {
    fn shifts(&self) -> &ShiftStates {
        &self.shifts
    }

    fn mismatch_rate(&self, route: &str, to: &str) -> Option<f64> {
        let snap = self.snapshot();
        let r = snap.config.routes.iter().find(|r| r.name == route)?;
        let shadow = r.shadow.as_ref()?;
        if snap.config.upstreams[shadow.to].name != to {
            return None;
        }
        let (compared, mismatched) = self.shadow.get(route)?.take_window();
        (compared > 0).then(|| mismatched as f64 / compared as f64)
    }
}

#[cfg(test)]
impl Owner for ShiftStates {
    fn shifts(&self) -> &ShiftStates {
        self
    }

    fn mismatch_rate(&self, _: &str, _: &str) -> Option<f64> {
        None
    }
}

async fn run<O: Owner>(owner: Weak<O>) {
    let mut driver = Driver::default();
    loop {
        let now = Instant::now();
        let wake = match owner.upgrade() {
            Some(o) => driver.poll(o.shifts(), now, &|r, to| o.mismatch_rate(r, to)),
            None => return,
        };
        tokio::time::sleep_until(wake.min(now + POLL)).await;
    }
}

/// The driver's memory of each ramped route: which state it was, the change
/// count it last saw, and when its interval ends.
#[derive(Default)]
struct Driver {
    routes: HashMap<String, Tracked>,
}

struct Tracked {
    state: Arc<ShiftState>,
    epoch: u64,
    due: Instant,
}

impl Driver {
    /// Ticks every route whose interval has ended by `now`; returns when the
    /// next one ends.
    fn poll(
        &mut self,
        states: &ShiftStates,
        now: Instant,
        mismatch: &dyn Fn(&str, &str) -> Option<f64>,
    ) -> Instant {
        let mut wake = now + POLL;
        let mut next = HashMap::new();
        for state in states.all() {
            let mut c = state.control();
            let Some(ramp) = c.ramp.clone() else {
                continue;
            };
            let epoch = state.epoch();
            let due = match self.routes.remove(&state.route) {
                Some(t) if Arc::ptr_eq(&t.state, &state) && t.epoch == epoch => t.due,
                _ => {
                    // New, or changed by a reload or a resume: the interval
                    // starts now, and what came before does not count.
                    state.window.take();
                    mismatch(&state.route, &state.to);
                    now + ramp.every
                }
            };
            let due = if now >= due {
                let rate = mismatch(&state.route, &state.to);
                tick(&state, &mut c, &ramp, rate);
                // Keep the cadence; after a long stall, start afresh.
                Some(due + ramp.every)
                    .filter(|d| *d > now)
                    .unwrap_or(now + ramp.every)
            } else {
                due
            };
            drop(c);
            wake = wake.min(due);
            next.insert(state.route.clone(), Tracked { state, epoch, due });
        }
        self.routes = next;
        wake
    }
}

/// One interval's end for one route: take the window and, while the ramp
/// runs, apply its verdict.
fn tick(state: &ShiftState, c: &mut Control, ramp: &Ramp, mismatch_rate: Option<f64>) {
    let (old, new) = state.window.take();
    if c.status != RampStatus::Running {
        return;
    }
    let share = state.basis_points();
    let route = state.route.as_str();
    let verdict = match verdict(ramp, old, new, mismatch_rate) {
        // At 0% the new side gets no traffic (but testers' forced requests),
        // so waiting for `min_requests` would wait forever: the first step
        // from 0 is taken untested.
        Verdict::Hold(_) if share == 0 => Verdict::Step,
        v => v,
    };
    match verdict {
        Verdict::Step => {
            let to = share.saturating_add(ramp.step_basis_points).min(BUCKETS);
            state.set_basis_points(to);
            if to >= BUCKETS {
                c.status = RampStatus::Done;
                tracing::info!(
                    event = "ramp_done",
                    route,
                    percent = percent_number(to),
                    "ramp done: all traffic on the new side"
                );
            } else {
                tracing::info!(
                    event = "ramp_step",
                    route,
                    percent = percent_number(to),
                    from_percent = percent_number(share),
                    "ramp stepped"
                );
            }
            state.persist(c);
        }
        Verdict::Hold(why) => {
            tracing::debug!(event = "ramp_hold", route, percent = percent_number(share), reason = %why, "ramp holds: {why}");
        }
        Verdict::Breach(reason) => {
            state.set_basis_points(0);
            tracing::warn!(
                event = "ramp_rollback",
                route,
                percent = 0.0,
                from_percent = percent_number(share),
                reason = %reason,
                "ramp stopped: share dropped to 0"
            );
            c.status = RampStatus::Stopped {
                reason,
                at: SystemTime::now(),
            };
            state.persist(c);
        }
    }
}

#[cfg(test)]
mod tests;
