//! The runtime side of a shift: the share in force now and the ramp's
//! position and verdict. It lives outside the config snapshot, keyed by route
//! name, because the ramp moves the share between reloads and a reload must
//! not reset it (SPEC 3.5).
//!
//! The hot path reads one atomic; the mutex is taken only by reloads, ramp
//! steps and admin calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::stats::Window;
use crate::config::{Config, Ramp};

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
    fn new(route: &str, to: &str, file_basis_points: u16, ramp: Option<Ramp>) -> ShiftState {
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
                Ok(())
            }
            RampStatus::Off => Err(ResumeError::NoRamp),
            RampStatus::Running => Err(ResumeError::NotStopped("running")),
            RampStatus::Done => Err(ResumeError::NotStopped("done")),
        }
    }

    /// Applies a reload's `shift` to a kept route: a changed `percent` wins
    /// over the ramp's position; a changed ramp resumes a stopped one.
    fn reconfigure(&self, file_basis_points: u16, ramp: Option<Ramp>) {
        let mut c = self.control();
        if c.file_basis_points != file_basis_points {
            c.file_basis_points = file_basis_points;
            self.set_basis_points(file_basis_points);
            if let RampStatus::Done = c.status {
                c.status = RampStatus::Running;
            }
        }
        if c.ramp != ramp {
            c.status = initial_status(ramp.as_ref(), self.basis_points());
            c.ramp = ramp;
        }
        if c.ramp.is_some()
            && c.status == RampStatus::Running
            && self.basis_points() >= super::BUCKETS
        {
            c.status = RampStatus::Done;
        }
    }
}

fn initial_status(ramp: Option<&Ramp>, basis_points: u16) -> RampStatus {
    match ramp {
        None => RampStatus::Off,
        Some(_) if basis_points >= super::BUCKETS => RampStatus::Done,
        Some(_) => RampStatus::Running,
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
}

impl ShiftStates {
    /// The state for each of `config`'s routes (`None` where a route does not
    /// shift), creating what is new, keeping what a route already had, and
    /// forgetting routes that are gone or no longer shift. Called when a
    /// snapshot is built, never per request.
    pub fn sync(&self, config: &Config) -> Vec<Option<Arc<ShiftState>>> {
        let mut map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
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
                    _ => Arc::new(ShiftState::new(
                        &r.name,
                        to,
                        shift.basis_points,
                        shift.ramp.clone(),
                    )),
                };
                next.insert(r.name.clone(), state.clone());
                Some(state)
            })
            .collect();
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
