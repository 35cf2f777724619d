use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::SourceFile;
use crate::shift::persist::{read, state_path, tests::temp_dir};

const UPSTREAMS: &str = "[upstreams.legacy]\ntargets = [\"http://127.0.0.1:1\"]\n\
     [upstreams.customers]\ntargets = [\"http://127.0.0.1:2\"]\n\
     [upstreams.users]\ntargets = [\"http://127.0.0.1:3\"]\n";

fn text(shift: &str) -> String {
    format!(
        "{UPSTREAMS}[[routes]]\nname = \"customers\"\nprefix = \"/c\"\nupstream = \"legacy\"\nshift = {shift}\n"
    )
}

fn parse(shift: &str) -> Config {
    Config::parse(&SourceFile::new("t.toml", text(shift))).unwrap()
}

const RAMP: &str = "ramp = { step = 10, every = \"10s\" }";

fn shift(percent: &str, ramp: &str) -> String {
    format!("{{ to = \"customers\", percent = {percent}, {ramp} }}")
}

fn state(states: &ShiftStates) -> Arc<ShiftState> {
    states.get("customers").unwrap()
}

fn status(s: &ShiftState) -> RampStatus {
    s.control().status.clone()
}

/// Sets the share and status as the ramp driver would, and records it.
fn moved(s: &ShiftState, bp: u16, status: RampStatus) {
    let mut c = s.control();
    s.set_basis_points(bp);
    c.status = status;
    s.persist(&c);
}

fn stopped(reason: &str) -> RampStatus {
    RampStatus::Stopped {
        reason: reason.into(),
        // Milliseconds: what the state file keeps.
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123),
    }
}

// === reloads ===

#[test]
fn a_reloaded_percent_wins_over_the_ramp() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 4000, RampStatus::Running);
    let epoch = s.epoch();

    states.sync(&parse(&shift("10", RAMP)));
    assert_eq!(
        s.basis_points(),
        4000,
        "an unchanged file keeps the position"
    );
    assert_eq!(s.epoch(), epoch, "and restarts no interval");

    states.sync(&parse(&shift("25", RAMP)));
    assert!(
        Arc::ptr_eq(&s, &state(&states)),
        "the route's state is kept"
    );
    assert_eq!((s.basis_points(), status(&s)), (2500, RampStatus::Running));
    assert_ne!(s.epoch(), epoch, "the ramp's interval restarts");

    states.sync(&parse(&shift("100", RAMP)));
    assert_eq!((s.basis_points(), status(&s)), (10_000, RampStatus::Done));
    states.sync(&parse(&shift("60", RAMP)));
    assert_eq!(
        (s.basis_points(), status(&s)),
        (6000, RampStatus::Running),
        "a finished ramp lowered by the file runs again"
    );
}

#[test]
fn a_stopped_ramp_stays_stopped_at_a_reloaded_percent() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 0, stopped("boom"));
    states.sync(&parse(&shift("5", RAMP)));
    assert_eq!(s.basis_points(), 500, "the file wins");
    assert_eq!(
        status(&s),
        stopped("boom"),
        "only a resume or a new ramp restarts it"
    );
}

#[test]
fn a_changed_ramp_resumes_a_stopped_one() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 0, stopped("boom"));
    let epoch = s.epoch();
    states.sync(&parse(&shift(
        "10",
        "ramp = { step = 10, every = \"10s\", max_error_rate = 0.05 }",
    )));
    assert_eq!((s.basis_points(), status(&s)), (0, RampStatus::Running));
    assert_ne!(s.epoch(), epoch);
}

#[test]
fn a_removed_ramp_leaves_the_files_share() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 7000, RampStatus::Running);
    states.sync(&parse("{ to = \"customers\", percent = 10 }"));
    assert_eq!((s.basis_points(), status(&s)), (1000, RampStatus::Off));
    states.sync(&parse(&shift("10", RAMP)));
    assert_eq!(
        (s.basis_points(), status(&s)),
        (1000, RampStatus::Running),
        "a ramp added again starts from the file's share"
    );
}

#[test]
fn another_new_side_starts_afresh() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 5000, RampStatus::Running);
    states.sync(&parse(&format!(
        "{{ to = \"users\", percent = 10, {RAMP} }}"
    )));
    let t = state(&states);
    assert!(!Arc::ptr_eq(&s, &t));
    assert_eq!((t.to.as_str(), t.basis_points()), ("users", 1000));
}

#[test]
fn resume_only_resumes_a_stopped_ramp() {
    let states = ShiftStates::default();
    states.sync(&parse(&shift("10", RAMP)));
    let s = state(&states);
    assert_eq!(s.resume(), Err(ResumeError::NotStopped("running")));
    moved(&s, 0, stopped("boom"));
    let epoch = s.epoch();
    assert_eq!(s.resume(), Ok(()));
    assert_eq!((s.basis_points(), status(&s)), (0, RampStatus::Running));
    assert_ne!(s.epoch(), epoch, "the driver restarts the interval");
    moved(&s, 10_000, RampStatus::Done);
    assert_eq!(s.resume(), Err(ResumeError::NotStopped("done")));
    states.sync(&parse("{ to = \"customers\", percent = 10 }"));
    assert_eq!(s.resume(), Err(ResumeError::NoRamp));
}

// === restarts ===

/// A config file in a fresh directory.
struct Dir {
    dir: PathBuf,
    config: PathBuf,
}

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = temp_dir(tag);
        let config = dir.join("strangler.toml");
        Dir { dir, config }
    }

    /// Writes the config with `shift` and loads it, as a start or reload does.
    fn load(&self, shift: &str) -> Config {
        std::fs::write(&self.config, text(shift)).unwrap();
        Config::load(&self.config).unwrap()
    }

    fn state_file(&self) -> PathBuf {
        state_path(&self.config)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A proxy starting (again) on `config`: fresh states, first sync.
fn start(config: &Config) -> Arc<ShiftState> {
    let states = ShiftStates::default();
    states.sync(config);
    state(&states)
}

#[test]
fn a_restart_resumes_from_the_last_position() {
    let d = Dir::new("restart");
    let config = d.load(&shift("10", RAMP));
    let states = ShiftStates::default();
    states.sync(&config);
    let s = state(&states);
    let rec = &read(&d.state_file()).unwrap()["customers"];
    assert_eq!((rec.percent, rec.status.as_str()), (10.0, "running"));
    moved(&s, 3500, RampStatus::Running);
    let rec = &read(&d.state_file()).unwrap()["customers"];
    assert_eq!(
        (rec.to.as_str(), rec.file_percent, rec.percent),
        ("customers", 10.0, 35.0)
    );

    let again = start(&config);
    assert_eq!(
        (again.basis_points(), status(&again)),
        (3500, RampStatus::Running)
    );
}

#[test]
fn a_stopped_or_finished_ramp_stays_so_across_a_restart() {
    let d = Dir::new("stopped");
    let config = d.load(&shift("10", RAMP));
    let s = start(&config);
    moved(
        &s,
        0,
        stopped("new side error rate 4.2% over max_error_rate 1%"),
    );
    let again = start(&config);
    assert_eq!(again.basis_points(), 0);
    assert_eq!(
        status(&again),
        stopped("new side error rate 4.2% over max_error_rate 1%"),
        "reason and time are kept"
    );

    moved(&again, 10_000, RampStatus::Done);
    let third = start(&config);
    assert_eq!(
        (third.basis_points(), status(&third)),
        (10_000, RampStatus::Done)
    );
}

#[test]
fn what_changed_while_down_wins() {
    let d = Dir::new("changed");
    let s = start(&d.load(&shift("10", RAMP)));
    moved(&s, 3500, RampStatus::Running);

    // The file's percent changed: the file wins.
    let again = start(&d.load(&shift("20", RAMP)));
    assert_eq!(
        (again.basis_points(), status(&again)),
        (2000, RampStatus::Running)
    );

    // The new side changed: start afresh.
    moved(&again, 5000, RampStatus::Running);
    let users = start(&d.load(&format!("{{ to = \"users\", percent = 20, {RAMP} }}")));
    assert_eq!(users.basis_points(), 2000);
    assert_eq!(read(&d.state_file()).unwrap()["customers"].to, "users");

    // The ramp changed while a stopped ramp was down: it resumes.
    moved(&users, 0, stopped("boom"));
    let resumed =
        start(&d.load("{ to = \"users\", percent = 20, ramp = { step = 5, every = \"10s\" } }"));
    assert_eq!(
        (resumed.basis_points(), status(&resumed)),
        (0, RampStatus::Running)
    );
}

#[test]
fn a_reload_does_not_restore_and_a_resume_is_recorded() {
    let d = Dir::new("reload");
    let states = ShiftStates::default();
    states.sync(&d.load(&shift("10", RAMP)));
    let s = state(&states);
    moved(&s, 0, stopped("boom"));
    s.resume().unwrap();
    assert_eq!(
        read(&d.state_file()).unwrap()["customers"].status,
        "running"
    );

    // A reload does not read the file back: only a start restores.
    moved(&s, 3000, RampStatus::Running);
    let mut recs = read(&d.state_file()).unwrap();
    recs.get_mut("customers").unwrap().percent = 80.0;
    crate::shift::persist::write(&d.state_file(), &recs).unwrap();
    states.sync(&d.load(&shift("10", RAMP)));
    assert_eq!(s.basis_points(), 3000);
    // And a config parsed in memory has no state file to restore from.
    let in_memory = start(&parse(&shift("10", RAMP)));
    assert_eq!(in_memory.basis_points(), 1000);
}

#[test]
fn an_unreadable_state_file_is_ignored_and_replaced() {
    let d = Dir::new("unreadable");
    let config = d.load(&shift("10", RAMP));
    std::fs::write(d.state_file(), "{ this is not json").unwrap();
    let s = start(&config);
    assert_eq!((s.basis_points(), status(&s)), (1000, RampStatus::Running));
    assert_eq!(
        read(&d.state_file()).unwrap()["customers"].percent,
        10.0,
        "the next write replaces it"
    );
}

#[test]
fn no_ramp_no_file() {
    let d = Dir::new("noramp");
    let states = ShiftStates::default();
    states.sync(&d.load("{ to = \"customers\", percent = 10 }"));
    assert!(!exists(&d.state_file()));
    states.sync(&d.load(&shift("10", RAMP)));
    assert!(exists(&d.state_file()));
    states.sync(&d.load("{ to = \"customers\", percent = 10 }"));
    assert!(!exists(&d.state_file()), "removed with the last ramp");
}

fn exists(p: &Path) -> bool {
    p.try_exists().unwrap()
}
