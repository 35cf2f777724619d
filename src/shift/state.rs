//! The runtime side of a shift: the share in force now and the ramp's
//! position and verdict. It lives outside the config snapshot, keyed by route
//! name, because the ramp moves the share between reloads and a reload must
//! not reset it (SPEC 3.5).
//!
//! The hot path reads one atomic; the mutex is taken only by reloads, ramp
//! steps and admin calls. Every change to a ramp's share or status is written
//! to the state file at once ([`super::persist`]), and the first sync of a
//! config read from a file restores what that file holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::persist::{self, Journal, Record};
use super::stats::Window;
use crate::config::{Config, Ramp, percent_number};

/// Where a route's ramp stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RampStatus {
    /// The route has no ramp: the share is the file's.
    Off,
    /// Stepping every `every` while the new side stays healthy.
    Running,
    /// The share reached 100%.
    Done,
    /// A breach dropped the share to 0; waits for a resume or a changed ramp.
    Stopped { reason: String, at: SystemTime },
}

impl RampStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RampStatus::Off => "off",
            RampStatus::Running => "running",
            RampStatus::Done => "done",
            RampStatus::Stopped { .. } => "stopped",
        }
    }
}

/// A shifted route's runtime state.
#[derive(Debug)]
pub struct ShiftState {
    pub route: String,
    /// The new side's upstream name; a reload that changes it starts afresh.
    pub to: String,
    basis_points: AtomicU16,
    control: Mutex<Control>,
    /// The current window's outcomes per side, for the ramp.
    pub window: Window,
    /// Counts the changes the ramp did not make itself (a reload that changed
    /// the shift, a resume), bumped under the control lock: the ramp's
    /// interval restarts when it moves.
    epoch: AtomicU64,
    /// Where changes are recorded for a restart.
    journal: Arc<Journal>,
}

/// What changes only on reload, ramp step or admin call.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The share the file gave when last loaded; a reload that changes it wins
    /// over the ramp's position.
    pub file_basis_points: u16,
    pub ramp: Option<Ramp>,
    pub status: RampStatus,
}

impl ShiftState {
    fn new(
        route: &str,
        to: &str,
        file_basis_points: u16,
        ramp: Option<Ramp>,
        journal: Arc<Journal>,
    ) -> ShiftState {
        let status = initial_status(ramp.as_ref(), file_basis_points);
        ShiftState {
            route: route.to_owned(),
            to: to.to_owned(),
            basis_points: AtomicU16::new(file_basis_points),
            control: Mutex::new(Control {
                file_basis_points,
                ramp,
                status,
            }),
            window: Window::default(),
            epoch: AtomicU64::new(0),
            journal,
        }
    }

    /// The share for the new side now, in hundredths of a percent.
    pub fn basis_points(&self) -> u16 {
        self.basis_points.load(Ordering::Relaxed)
    }

    /// Sets the share in force (the ramp's step, a rollback, a restored position).
    pub fn set_basis_points(&self, bp: u16) {
        self.basis_points
            .store(bp.min(super::BUCKETS), Ordering::Relaxed);
    }

    /// The ramp's settings and status, locked.
    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resumes a stopped ramp (`POST /admin/routes/{name}/ramp/resume`): it
    /// steps on from the share in force (0 after a breach) at the next
    /// interval. Says why not when there is nothing to resume.
    pub fn resume(&self) -> Result<(), ResumeError> {
        let mut c = self.control();
        match c.status {
            RampStatus::Stopped { .. } => {
                c.status = RampStatus::Running;
                self.epoch.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    event = "ramp_resume",
                    route = %self.route,
                    percent = percent_number(self.basis_points()),
                    "ramp resumed"
                );
                self.persist(&c);
                Ok(())
            }
            RampStatus::Off => Err(ResumeError::NoRamp),
            RampStatus::Running => Err(ResumeError::NotStopped("running")),
            RampStatus::Done => Err(ResumeError::NotStopped("done")),
        }
    }

    /// Applies a reload's `shift` to a kept route. A changed `percent` wins
    /// over the ramp's position (a finished ramp runs again below 100%; a
    /// stopped one stays stopped, at the file's share, until resumed). A
    /// changed ramp resumes a stopped one; a removed ramp leaves the file's
    /// share in force.
    fn reconfigure(&self, file_basis_points: u16, ramp: Option<Ramp>) {
        let mut c = self.control();
        let before = (self.basis_points(), c.clone());
        if c.file_basis_points != file_basis_points {
            c.file_basis_points = file_basis_points;
            self.set_basis_points(file_basis_points);
        }
        if c.ramp != ramp {
            if ramp.is_none() {
                self.set_basis_points(file_basis_points);
            }
            c.status = initial_status(ramp.as_ref(), self.basis_points());
            c.ramp = ramp;
        }
        c.status = settle(c.ramp.as_ref(), c.status.clone(), self.basis_points());
        if (self.basis_points(), &*c) != (before.0, &before.1) {
            self.epoch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the position a state file recorded, unless the config moved on
    /// since (another `to`, another file percent: the file wins) or the
    /// route has no ramp now. Called on a state no request has seen yet.
    fn restore(&self, rec: &Record) -> Result<(), &'static str> {
        let mut c = self.control();
        let Some(ramp) = c.ramp.clone() else {
            return Err("the route's shift has no ramp now");
        };
        if rec.to != self.to {
            return Err("`shift.to` changed");
        }
        if persist::basis_points(rec.file_percent) != Some(c.file_basis_points) {
            return Err("`shift.percent` in the file changed: the file wins");
        }
        let Some(share) = persist::basis_points(rec.percent) else {
            return Err("the recorded percent is not a share");
        };
        let mut status = match rec.status.as_str() {
            "running" => RampStatus::Running,
            "done" => RampStatus::Done,
            "stopped" => RampStatus::Stopped {
                reason: rec.reason.clone().unwrap_or_default(),
                at: persist::from_unix_ms(rec.at_unix_ms),
            },
            _ => return Err("unknown recorded status"),
        };
        if rec.ramp != persist::ramp_text(&ramp) && matches!(status, RampStatus::Stopped { .. }) {
            // The ramp changed while the proxy was down: as on a reload.
            status = RampStatus::Running;
        }
        self.set_basis_points(share);
        c.status = settle(Some(&ramp), status, share);
        Ok(())
    }

    /// The change counter the ramp driver watches.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// What the state file keeps of this route; `None` without a ramp.
    fn record(&self, c: &Control) -> Option<Record> {
        let ramp = c.ramp.as_ref()?;
        let (status, reason, at) = match &c.status {
            RampStatus::Off => return None,
            RampStatus::Running => ("running", None, SystemTime::now()),
            RampStatus::Done => ("done", None, SystemTime::now()),
            RampStatus::Stopped { reason, at } => ("stopped", Some(reason.clone()), *at),
        };
        Some(Record {
            to: self.to.clone(),
            file_percent: persist::percent(c.file_basis_points),
            percent: persist::percent(self.basis_points()),
            status: status.to_owned(),
            reason,
            at_unix_ms: persist::unix_ms(at),
            ramp: persist::ramp_text(ramp),
        })
    }

    /// Writes this route's position to the state file (after a step, a
    /// breach, a resume); `c` is this state's control, locked.
    pub(super) fn persist(&self, c: &Control) {
        if let Some(rec) = self.record(c) {
            self.journal.put(&self.route, rec);
        }
    }
}

fn initial_status(ramp: Option<&Ramp>, basis_points: u16) -> RampStatus {
    settle(ramp, RampStatus::Running, basis_points)
}

/// `status` made consistent with the share: no ramp is `Off`; a running ramp
/// at 100% is done; a done ramp below 100% (the file lowered it) runs again.
fn settle(ramp: Option<&Ramp>, status: RampStatus, basis_points: u16) -> RampStatus {
    match (ramp, status) {
        (None, _) => RampStatus::Off,
        (Some(_), stopped @ RampStatus::Stopped { .. }) => stopped,
        (Some(_), RampStatus::Off | RampStatus::Running | RampStatus::Done) => {
            if basis_points >= super::BUCKETS {
                RampStatus::Done
            } else {
                RampStatus::Running
            }
        }
    }
}

/// Why a ramp cannot be resumed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    #[error("the route's shift has no ramp")]
    NoRamp,
    #[error("the ramp is not stopped (it is {0})")]
    NotStopped(&'static str),
}

/// Every shifted route's state, by route name. Outlives snapshots.
#[derive(Debug, Default)]
pub struct ShiftStates {
    by_route: Mutex<HashMap<String, Arc<ShiftState>>>,
    /// The ramps' positions on disk, shared with every state.
    journal: Arc<Journal>,
}

impl ShiftStates {
    /// The state for each of `config`'s routes (`None` where a route does not
    /// shift), creating what is new, keeping what a route already had, and
    /// forgetting routes that are gone or no longer shift. Called when a
    /// snapshot is built (at start and on each reload), never per request.
    ///
    /// The first call with a config read from a file restores the ramp
    /// positions of its state file; every call records the ramps now in
    /// force there.
    pub fn sync(&self, config: &Config) -> Vec<Option<Arc<ShiftState>>> {
        let mut map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        let restored = self.journal.open(config.path.as_deref());
        let mut next = HashMap::new();
        let states = config
            .routes
            .iter()
            .map(|r| {
                let shift = r.shift.as_ref()?;
                let to = &config.upstreams[shift.to].name;
                let state = match map.remove(&r.name) {
                    Some(s) if &s.to == to => {
                        s.reconfigure(shift.basis_points, shift.ramp.clone());
                        s
                    }
                    _ => {
                        let s = Arc::new(ShiftState::new(
                            &r.name,
                            to,
                            shift.basis_points,
                            shift.ramp.clone(),
                            self.journal.clone(),
                        ));
                        if let Some(rec) = restored.get(&r.name) {
                            match s.restore(rec) {
                                Ok(()) => tracing::info!(
                                    event = "ramp_restore",
                                    route = %r.name,
                                    percent = percent_number(s.basis_points()),
                                    status = s.control().status.as_str(),
                                    "ramp position restored"
                                ),
                                Err(why) => tracing::info!(
                                    event = "ramp_restore",
                                    route = %r.name,
                                    reason = %why,
                                    "ramp position not restored: {why}"
                                ),
                            }
                        }
                        s
                    }
                };
                next.insert(r.name.clone(), state.clone());
                Some(state)
            })
            .collect();
        let records: BTreeMap<String, Record> = next
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.record(&s.control())?)))
            .collect();
        self.journal.replace(records);
        *map = next;
        states
    }

    /// The state of route `name`, if it shifts.
    pub fn get(&self, name: &str) -> Option<Arc<ShiftState>> {
        self.by_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every shifted route's state, in no particular order.
    pub fn all(&self) -> Vec<Arc<ShiftState>> {
        self.by_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
