//! The ramp's position on disk, so a restart resumes where the ramp was
//! (SPEC 2.2, 3.5): a small JSON file next to the config, named after it with
//! `.state` added (`strangler.toml` → `strangler.toml.state`).
//!
//! The file holds one record per route whose shift has a ramp: the new side,
//! the file's percent when the record was written, the share in force, the
//! ramp's status (with the breach reason) and when it last changed. It is
//! rewritten whole, atomically (a temporary file renamed over it), whenever
//! a record changes; it is never written when no route has a ramp, and is
//! removed when the last ramp goes. This module knows nothing of how a
//! record is applied: [`super::state`] decides that.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Ramp;

/// The file format's version; a file with another one is ignored (warned).
const VERSION: u32 = 1;

/// The state file for the config at `config`: same directory, `.state` added.
pub fn state_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// One route's ramp position as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The new side's upstream; a record for another `to` is not restored.
    pub to: String,
    /// `shift.percent` in the file when this was written; when the file now
    /// says otherwise, the file wins.
    pub file_percent: f64,
    /// The share in force.
    pub percent: f64,
    /// `running`, `done` or `stopped`.
    pub status: String,
    /// Why a stopped ramp stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the share or status last changed (for `stopped`: the breach),
    /// in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The ramp's settings, as text: a ramp changed while the proxy was down
    /// resumes a stopped one, as a reload would.
    pub ramp: String,
}

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    routes: BTreeMap<String, Record>,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not a ramp state file: {source}")]
    Format {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file} has version {found}; this strangler writes version {VERSION}")]
    Version { file: String, found: u32 },
}

/// The records of `file`: empty when it does not exist.
pub fn read(file: &Path) -> Result<BTreeMap<String, Record>, ReadError> {
    let name = || file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(ReadError::Io {
                file: name(),
                source,
            });
        }
    };
    let parsed: StateFile = serde_json::from_str(&text).map_err(|source| ReadError::Format {
        file: name(),
        source,
    })?;
    if parsed.version != VERSION {
        return Err(ReadError::Version {
            file: name(),
            found: parsed.version,
        });
    }
    Ok(parsed.routes)
}

/// Writes `records` to `file` atomically: a reader (or a crash) sees the old
/// file or the new one, never half of one. With no records the file is
/// removed instead.
pub fn write(file: &Path, records: &BTreeMap<String, Record>) -> std::io::Result<()> {
    if records.is_empty() {
        return match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let body = serde_json::to_vec_pretty(&StateFile {
        version: VERSION,
        routes: records.clone(),
    })
    .map_err(std::io::Error::other)?;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file)
}

/// The ramp's settings as the text stored in [`Record::ramp`]. Floats are
/// written in their shortest exact form, so equal settings give equal text.
pub fn ramp_text(r: &Ramp) -> String {
    format!(
        "step={} every={:?} max_error_rate={:?} max_latency_ratio={:?} min_requests={} max_mismatch_rate={:?}",
        r.step_basis_points,
        r.every,
        r.max_error_rate,
        r.max_latency_ratio,
        r.min_requests,
        r.max_mismatch_rate
    )
}

/// Hundredths of a percent as the stored percent: `1050` → `10.5`.
pub fn percent(basis_points: u16) -> f64 {
    f64::from(basis_points) / 100.0
}

/// A stored percent as hundredths of a percent; `None` when it is no share.
pub fn basis_points(percent: f64) -> Option<u16> {
    (0.0..=100.0)
        .contains(&percent)
        .then(|| (percent * 100.0).round() as u16)
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The records in force and where they go. Every shifted route's state
/// holds it, so a change made anywhere (a step, a breach, an admin resume,
/// a reload) is written at once.
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None` until a config read from a file is synced, and for configs
    /// parsed in memory: nothing is written then.
    file: Option<PathBuf>,
    /// Whether a state file was read already: only the first one is restored.
    opened: bool,
    records: BTreeMap<String, Record>,
    /// What the file holds as far as this process knows, to skip writes
    /// that would change nothing. `None`: unknown.
    on_disk: Option<BTreeMap<String, Record>>,
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Points the journal at the state file of `config` (`None`: in-memory
    /// config, nothing is stored). Returns the records to restore the first
    /// time a file is given; an unreadable file is warned about and ignored
    /// (it is overwritten at the next write).
    pub fn open(&self, config: Option<&Path>) -> BTreeMap<String, Record> {
        let mut inner = self.lock();
        let Some(config) = config else {
            inner.file = None;
            return BTreeMap::new();
        };
        let file = state_path(config);
        if inner.opened {
            if inner.file.as_ref() != Some(&file) {
                inner.on_disk = None;
            }
            inner.file = Some(file);
            return BTreeMap::new();
        }
        let (restored, on_disk) = match read(&file) {
            Ok(records) => (records.clone(), Some(records)),
            Err(e) => {
                tracing::warn!(
                    event = "state_file_unreadable",
                    error = %e,
                    "ignoring the ramp state file: ramps start from the config's percentages"
                );
                // Unknown content: the next write replaces it.
                (BTreeMap::new(), None)
            }
        };
        inner.on_disk = on_disk;
        inner.file = Some(file);
        inner.opened = true;
        restored
    }

    /// Replaces every record (after a reload) and writes the file if that
    /// changed anything. A record whose content is unchanged keeps its time.
    pub fn replace(&self, records: BTreeMap<String, Record>) {
        let mut inner = self.lock();
        let records = records
            .into_iter()
            .map(|(route, rec)| {
                let rec = keep_time(inner.records.get(&route), rec);
                (route, rec)
            })
            .collect();
        inner.records = records;
        inner.flush();
    }

    /// Sets one route's record (a step, a breach, a resume) and writes the
    /// file.
    pub fn put(&self, route: &str, record: Record) {
        let mut inner = self.lock();
        let record = keep_time(inner.records.get(route), record);
        inner.records.insert(route.to_owned(), record);
        inner.flush();
    }

    /// The records in force, for tests and diagnostics.
    pub fn records(&self) -> BTreeMap<String, Record> {
        self.lock().records.clone()
    }
}

/// `new` with `old`'s time when nothing else differs: a record's time is
/// when its content last changed.
fn keep_time(old: Option<&Record>, mut new: Record) -> Record {
    if let Some(old) = old {
        let mut same = new.clone();
        same.at_unix_ms = old.at_unix_ms;
        if &same == old {
            new.at_unix_ms = old.at_unix_ms;
        }
    }
    new
}

impl Inner {
    fn flush(&mut self) {
        let Some(file) = &self.file else {
            return;
        };
        if self.on_disk.as_ref() == Some(&self.records) {
            return;
        }
        match write(file, &self.records) {
            Ok(()) => self.on_disk = Some(self.records.clone()),
            Err(e) => {
                self.on_disk = None;
                tracing::warn!(
                    event = "state_file_unwritable",
                    file = %file.display(),
                    error = %e,
                    "cannot write the ramp state file: a restart would not resume the ramp from here"
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strangler-persist-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn record(percent: f64) -> Record {
        Record {
            to: "customers".into(),
            file_percent: 10.0,
            percent,
            status: "running".into(),
            reason: None,
            at_unix_ms: 1_700_000_000_000,
            ramp: ramp_text(&Ramp::default()),
        }
    }

    #[test]
    fn state_file_sits_next_to_the_config() {
        assert_eq!(
            state_path(Path::new("/etc/strangler/strangler.toml")),
            PathBuf::from("/etc/strangler/strangler.toml.state")
        );
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = temp_dir("roundtrip");
        let file = dir.join("s.toml.state");
        let mut records = BTreeMap::new();
        records.insert("customers".to_owned(), record(30.5));
        let mut stopped = record(0.0);
        stopped.status = "stopped".into();
        stopped.reason = Some("new side error rate 4.2% over max_error_rate 1%".into());
        records.insert("orders".to_owned(), stopped);
        write(&file, &records).unwrap();
        assert_eq!(read(&file).unwrap(), records);
        assert!(
            !dir.join("s.toml.state.tmp").exists(),
            "the temporary file is renamed"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"percent\": 30.5"), "{text}");

        write(&file, &BTreeMap::new()).unwrap();
        assert!(!file.exists(), "no ramps, no file");
        assert!(
            read(&file).unwrap().is_empty(),
            "a missing file is no error"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = temp_dir("bad");
        let file = dir.join("s.toml.state");
        std::fs::write(&file, "{ not json").unwrap();
        assert!(matches!(read(&file), Err(ReadError::Format { .. })));
        std::fs::write(&file, r#"{"version": 99, "routes": {}}"#).unwrap();
        assert!(matches!(
            read(&file),
            Err(ReadError::Version { found: 99, .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn percents_convert_exactly() {
        for bp in [0u16, 1, 5, 1050, 3333, 9999, 10_000] {
            assert_eq!(basis_points(percent(bp)), Some(bp));
        }
        assert_eq!(basis_points(-1.0), None);
        assert_eq!(basis_points(100.5), None);
        assert_eq!(basis_points(f64::NAN), None);
    }

    #[test]
    fn the_journal_writes_only_changes_and_keeps_times() {
        let dir = temp_dir("journal");
        let config = dir.join("s.toml");
        let j = Journal::default();
        assert!(j.open(Some(&config)).is_empty());
        j.replace(BTreeMap::new());
        assert!(!state_path(&config).exists(), "no ramp: nothing written");

        j.put("customers", record(10.0));
        assert_eq!(
            read(&state_path(&config)).unwrap()["customers"].percent,
            10.0
        );

        // Same content, later time: the stored time stays.
        let mut later = record(10.0);
        later.at_unix_ms += 5_000;
        j.put("customers", later.clone());
        assert_eq!(j.records()["customers"].at_unix_ms, 1_700_000_000_000);
        // Changed content: the new time.
        later.percent = 20.0;
        j.put("customers", later);
        assert_eq!(j.records()["customers"].at_unix_ms, 1_700_000_005_000);
        assert_eq!(
            read(&state_path(&config)).unwrap()["customers"].percent,
            20.0
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_in_memory_config_writes_nothing() {
        let j = Journal::default();
        assert!(j.open(None).is_empty());
        j.put("customers", record(10.0));
        assert_eq!(j.records().len(), 1);
    }

    #[test]
    fn equal_ramps_give_equal_text() {
        let a = Ramp::default();
        let mut b = Ramp::default();
        assert_eq!(ramp_text(&a), ramp_text(&b));
        b.max_error_rate = 0.010000000000000002;
        assert_ne!(ramp_text(&a), ramp_text(&b));
    }
}
