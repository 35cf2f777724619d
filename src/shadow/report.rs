//! One route's shadow report (SPEC 2.4): outcome counts, which pointers
//! differ and how often, the last mismatches as samples, and the noise
//! calibration that tells a real difference from one the primary makes with
//! itself. [`Reports`] keeps every shadowed route's report by name, outliving
//! reloads. No I/O and no config here: the mirroring records into a
//! [`Report`], the admin API and the metrics read it.
//!
//! ## Pointers as counted
//! A difference's pointer is counted with every array index (`0`, `17`, ...)
//! replaced by `*`: `/items/3/updated_at` counts as `/items/*/updated_at`,
//! the spelling `ignore` takes. A list of a hundred items whose timestamps
//! differ is one pointer, counted once per comparison, not a hundred; and a
//! longer list in one answer does not make pointers calibration never saw.
//! Samples keep the exact pointer.
//!
//! ## Noise (after Twitter's Diffy)
//! With `calibrate`, some mirrored requests are sent to the primary a second
//! time and the two primary answers are compared ([`Report::calibrated`]). A
//! pointer that differs there (a timestamp, a request id) is noise, as far as
//! it differs as often against the shadow as between two primaries. Per
//! pointer: `mismatch_rate` = comparisons against the shadow where it
//! differed / all comparisons, `noise_rate` = calibrations where it differed
//! / all calibrations. [`classify`] calls a pointer **noise** when
//!
//! - calibration has run at least [`MIN_CALIBRATIONS`] times (fewer say
//!   little about a rate),
//! - it differed in at least one calibration, and
//! - `mismatch_rate <= noise_rate * NOISE_RELATIVE + NOISE_ABSOLUTE`
//!   (1.5× and 0.02): not clearly above what the primary does with itself.
//!   The relative slack absorbs the sampling error of a calibration that sees
//!   a few percent of the traffic; the absolute one the error of small
//!   rates. A field the shadow gets wrong on every answer while the primary
//!   changes it on one in ten stays a mismatch (1.0 > 0.17).
//!
//! Everything else is a **mismatch**, and so is [`OTHER`] (it mixes
//! pointers). A comparison whose differing pointers are all noise when it is
//! recorded counts as `match`; outcome counts are never rewritten later (they
//! are counters), so comparisons recorded before calibration had run
//! [`MIN_CALIBRATIONS`] times keep their `mismatch`.
//!
//! ## Bounds
//! Memory does not grow with traffic: at most [`MAX_POINTERS`] distinct
//! pointers per route (further ones count into [`OTHER`]), each at most
//! [`MAX_POINTER_LEN`] bytes; [`SAMPLES`] samples of at most
//! [`SAMPLE_DIFFERENCES`] differences whose values are cut at
//! [`SAMPLE_VALUE_LEN`] bytes of JSON.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::compare::Difference;

/// How many mismatched comparisons are kept as samples (SPEC 2.4: the last 20).
pub const SAMPLES: usize = 20;
/// Distinct pointers tracked per route; beyond, differences count into [`OTHER`].
/// Generous for real APIs (array indices collapse to `*`), small enough that a
/// shadow answering random keys cannot grow the proxy.
pub const MAX_POINTERS: usize = 1_000;
/// The pointer that counts differences once [`MAX_POINTERS`] are tracked.
pub const OTHER: &str = "(other)";
/// Pointers shown by [`Report::view`], most frequent first.
pub const TOP_POINTERS: usize = 20;
/// Calibrations needed before any pointer is called noise.
pub const MIN_CALIBRATIONS: u64 = 10;
/// How many times its noise rate a pointer's mismatch rate may be and still be noise.
pub const NOISE_RELATIVE: f64 = 1.5;
/// Added to the scaled noise rate: slack for the sampling error of small rates.
pub const NOISE_ABSOLUTE: f64 = 0.02;
/// Longer pointers (keys are the answers' to choose) are cut here, with `…`.
pub const MAX_POINTER_LEN: usize = 256;
/// Differences listed per sample; the rest are counted in its `omitted`.
pub const SAMPLE_DIFFERENCES: usize = 10;
/// A sample value whose JSON text is longer is shown as the start of that text.
pub const SAMPLE_VALUE_LEN: usize = 512;
/// Request paths in samples are cut here.
const SAMPLE_PATH_LEN: usize = 1024;

/// What became of one mirrored request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// No difference, or only noise.
    Match,
    /// At least one difference that is not noise.
    Mismatch,
    /// The shadow failed: unreachable, timed out, a broken answer.
    Error,
    /// Not compared: a body over the size limit, or dropped under load.
    Skipped,
}

impl Outcome {
    /// Every outcome, in the order metrics and the admin API list them.
    pub const ALL: [Outcome; 4] = [
        Outcome::Match,
        Outcome::Mismatch,
        Outcome::Error,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::Mismatch => "mismatch",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What a differing pointer is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    Mismatch,
    Noise,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Mismatch => "mismatch",
            Classification::Noise => "noise",
        }
    }
}

/// One pointer's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointerCounts {
    /// Comparisons against the shadow in which it differed.
    pub mismatches: u64,
    /// Calibrations (primary against primary) in which it differed.
    pub noise: u64,
}

/// The noise rule of the module doc: `comparisons` and `calibrations` are
/// the route's totals the pointer's counts are out of.
pub fn classify(counts: PointerCounts, comparisons: u64, calibrations: u64) -> Classification {
    if calibrations < MIN_CALIBRATIONS || counts.noise == 0 {
        return Classification::Mismatch;
    }
    let noise_rate = rate(counts.noise, calibrations).unwrap_or(0.0);
    let mismatch_rate = rate(counts.mismatches, comparisons).unwrap_or(0.0);
    if mismatch_rate <= noise_rate * NOISE_RELATIVE + NOISE_ABSOLUTE {
        Classification::Noise
    } else {
        Classification::Mismatch
    }
}

fn rate(n: u64, out_of: u64) -> Option<f64> {
    // Counts stay far below 2^53: the conversion is exact in practice.
    (out_of > 0).then(|| n as f64 / out_of as f64)
}

/// `pointer` as counted: array indices (RFC 6901: `0` or digits without a
/// leading zero) become `*`, and it is cut at [`MAX_POINTER_LEN`] bytes.
/// Names that are not JSON pointers (`(status)`, `(header x)`) stay as they are.
pub fn counted_pointer(pointer: &str) -> String {
    let mut out = if let Some(rest) = pointer.strip_prefix('/') {
        let mut s = String::with_capacity(pointer.len());
        for seg in rest.split('/') {
            s.push('/');
            s.push_str(if is_index(seg) { "*" } else { seg });
        }
        s
    } else {
        pointer.to_owned()
    };
    if out.len() > MAX_POINTER_LEN {
        cut(&mut out, MAX_POINTER_LEN);
        out.push('…');
    }
    out
}

fn is_index(seg: &str) -> bool {
    match seg.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Truncates `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

// === impl Report ===

/// One route's shadow report. Recording takes a short lock (the comparison
/// itself ran before, off the client's path); `error` and `skipped` take
/// none, since dropping copies under load must stay cheap.
#[derive(Debug)]
pub struct Report {
    /// What the counts are about (see [`Reports::sync`]); a new basis starts a new report.
    basis: String,
    inner: Mutex<Inner>,
    /// Outside the lock: counted where a copy fails or is dropped.
    errors: AtomicU64,
    skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    matched: u64,
    mismatched: u64,
    calibrations: u64,
    /// Compared and mismatched since the last [`Report::take_window`].
    window_compared: u64,
    window_mismatched: u64,
    /// By counted pointer; at most [`MAX_POINTERS`] entries plus [`OTHER`].
    pointers: HashMap<String, PointerCounts>,
    /// Oldest first; at most [`SAMPLES`].
    samples: VecDeque<Sample>,
}

/// One mismatched comparison.
#[derive(Debug)]
struct Sample {
    at: SystemTime,
    method: String,
    path: String,
    /// The first difference of each differing non-noise pointer, in answer order.
    differences: Vec<SampleDifference>,
    /// Non-noise differences of the answer not in `differences`.
    omitted: usize,
}

#[derive(Debug)]
struct SampleDifference {
    pointer: String,
    primary: Option<Value>,
    shadow: Option<Value>,
}

impl Inner {
    /// The key `pointer` counts under: its counted form, or [`OTHER`] once
    /// the map is full.
    fn key(&self, pointer: &str) -> String {
        let p = counted_pointer(pointer);
        if self.pointers.contains_key(&p) || self.pointers.len() < MAX_POINTERS {
            p
        } else {
            OTHER.to_owned()
        }
    }

    /// The distinct keys of `diffs`, each counted with `bump`; returns each
    /// difference's key.
    fn count(&mut self, diffs: &[Difference], bump: fn(&mut PointerCounts)) -> Vec<String> {
        let mut seen = HashSet::new();
        diffs
            .iter()
            .map(|d| {
                let key = self.key(&d.pointer);
                if seen.insert(key.clone()) {
                    bump(self.pointers.entry(key.clone()).or_default());
                }
                key
            })
            .collect()
    }

    fn classification(&self, key: &str, counts: PointerCounts) -> Classification {
        if key == OTHER {
            Classification::Mismatch
        } else {
            classify(counts, self.matched + self.mismatched, self.calibrations)
        }
    }
}

impl Report {
    /// An empty report; `basis` as in [`Reports::sync`].
    pub fn new(basis: &str) -> Report {
        Report {
            basis: basis.to_owned(),
            inner: Mutex::new(Inner::default()),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// What the counts are about, as given to [`Reports::sync`].
    pub fn basis(&self) -> &str {
        &self.basis
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one comparison of a primary answer with its shadow's (`diffs`
    /// from [`super::compare::compare`]) for the request `method path`.
    /// `Match` when nothing differs or every differing pointer is noise now;
    /// else `Mismatch`, kept as a sample. Returns the outcome recorded.
    pub fn compared(&self, diffs: &[Difference], method: &str, path: &str) -> Outcome {
        let mut inner = self.inner();
        let keys = inner.count(diffs, |c| c.mismatches += 1);
        // This comparison is among those the rates are out of.
        let comparisons = inner.matched + inner.mismatched + 1;
        // Each pointer classified once, with the counts that include this comparison.
        let mut noise: HashMap<&str, bool> = HashMap::new();
        let mut differences = Vec::new();
        let mut listed = HashSet::new();
        let mut omitted = 0;
        for (d, key) in diffs.iter().zip(&keys) {
            let is_noise = *noise.entry(key).or_insert_with(|| {
                let counts = inner.pointers.get(key).copied().unwrap_or_default();
                key != OTHER
                    && classify(counts, comparisons, inner.calibrations) == Classification::Noise
            });
            if is_noise {
                continue;
            }
            if differences.len() < SAMPLE_DIFFERENCES && listed.insert(key.as_str()) {
                differences.push(SampleDifference {
                    pointer: clipped(&d.pointer, MAX_POINTER_LEN),
                    primary: d.primary.as_ref().map(sample_value),
                    shadow: d.shadow.as_ref().map(sample_value),
                });
            } else {
                omitted += 1;
            }
        }
        inner.window_compared += 1;
        if differences.is_empty() {
            inner.matched += 1;
            return Outcome::Match;
        }
        inner.mismatched += 1;
        inner.window_mismatched += 1;
        if inner.samples.len() == SAMPLES {
            inner.samples.pop_front();
        }
        inner.samples.push_back(Sample {
            at: SystemTime::now(),
            method: clipped(method, SAMPLE_PATH_LEN),
            path: clipped(path, SAMPLE_PATH_LEN),
            differences,
            omitted,
        });
        Outcome::Mismatch
    }

    /// Records one calibration: the primary's answer compared with a second
    /// answer of the primary to the same request.
    pub fn calibrated(&self, diffs: &[Difference]) {
        let mut inner = self.inner();
        inner.calibrations += 1;
        inner.count(diffs, |c| c.noise += 1);
    }

    /// Counts a shadow that failed (unreachable, timed out, broken answer).
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a copy not compared (body over the limit, dropped under load).
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Every outcome's count, in [`Outcome::ALL`] order.
    pub fn counts(&self) -> [(Outcome, u64); 4] {
        let (matched, mismatched) = {
            let inner = self.inner();
            (inner.matched, inner.mismatched)
        };
        [
            (Outcome::Match, matched),
            (Outcome::Mismatch, mismatched),
            (Outcome::Error, self.errors.load(Ordering::Relaxed)),
            (Outcome::Skipped, self.skipped.load(Ordering::Relaxed)),
        ]
    }

    /// Comparisons and mismatches since the last call (for the ramp's
    /// `max_mismatch_rate`), and starts a new window. Errors and skipped
    /// copies are not comparisons. One caller only: each call empties the window.
    pub fn take_window(&self) -> (u64, u64) {
        let mut inner = self.inner();
        let w = (inner.window_compared, inner.window_mismatched);
        inner.window_compared = 0;
        inner.window_mismatched = 0;
        w
    }

    /// How many times calibration has run.
    pub fn calibrations(&self) -> u64 {
        self.inner().calibrations
    }

    /// A pointer's counts and classification now, by its counted form
    /// ([`counted_pointer`]); `None` if it never differed.
    pub fn pointer(&self, pointer: &str) -> Option<(PointerCounts, Classification)> {
        let inner = self.inner();
        let counts = *inner.pointers.get(pointer)?;
        Some((counts, inner.classification(pointer, counts)))
    }

    /// The report as `GET /admin/shadow` shows it (see docs/admin.md).
    pub fn view(&self) -> Value {
        let counts = self.counts();
        let inner = self.inner();
        let comparisons = inner.matched + inner.mismatched;
        let mut pointers: Vec<(&String, &PointerCounts)> = inner.pointers.iter().collect();
        pointers.sort_by(|(a, ca), (b, cb)| {
            (cb.mismatches, cb.noise)
                .cmp(&(ca.mismatches, ca.noise))
                .then_with(|| a.cmp(b))
        });
        let top: Vec<Value> = pointers
            .iter()
            .take(TOP_POINTERS)
            .map(|(p, c)| {
                json!({
                    "pointer": p,
                    "mismatches": c.mismatches,
                    "mismatch_rate": rate(c.mismatches, comparisons),
                    "noise": c.noise,
                    "noise_rate": rate(c.noise, inner.calibrations),
                    "classification": inner.classification(p, **c).as_str(),
                })
            })
            .collect();
        let samples: Vec<Value> = inner.samples.iter().rev().map(Sample::view).collect();
        let outcomes: Map<String, Value> = counts
            .iter()
            .map(|(o, n)| (o.as_str().to_owned(), Value::from(*n)))
            .collect();
        json!({
            "outcomes": outcomes,
            "match_rate": rate(inner.matched, comparisons),
            "calibration": {
                "runs": inner.calibrations,
                "min_runs": MIN_CALIBRATIONS,
            },
            "pointers": top,
            "pointers_tracked": inner.pointers.len(),
            "samples": samples,
        })
    }
}

impl Sample {
    fn view(&self) -> Value {
        let differences: Vec<Value> = self
            .differences
            .iter()
            .map(|d| {
                let mut m = Map::new();
                m.insert("pointer".into(), Value::from(d.pointer.as_str()));
                // A side where the field is absent has no key.
                if let Some(v) = &d.primary {
                    m.insert("primary".into(), v.clone());
                }
                if let Some(v) = &d.shadow {
                    m.insert("shadow".into(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "at": crate::admin::rfc3339(self.at),
            "method": self.method,
            "path": self.path,
            "differences": differences,
            "omitted": self.omitted,
        })
    }
}

/// `s`, cut at `max` bytes with `…` when longer.
fn clipped(s: &str, max: usize) -> String {
    let mut out = s.to_owned();
    if out.len() > max {
        cut(&mut out, max);
        out.push('…');
    }
    out
}

/// `v` as kept in a sample: itself, or when its JSON text is over
/// [`SAMPLE_VALUE_LEN`] bytes, a string of that text's start.
fn sample_value(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= SAMPLE_VALUE_LEN {
        return v.clone();
    }
    let len = text.len();
    let mut start = text;
    cut(&mut start, SAMPLE_VALUE_LEN);
    Value::from(format!("{start}… ({len} bytes of JSON)"))
}

// === impl Reports ===

/// Every shadowed route's report, by route name. Outlives snapshots.
#[derive(Debug, Default)]
pub struct Reports {
    by_route: Mutex<HashMap<String, Arc<Report>>>,
}

impl Reports {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Report>>> {
        self.by_route.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reports of the routes that shadow now, given as `(route name,
    /// basis)`: a route keeps its report while it keeps its name and basis,
    /// gets a fresh one when either is new, and routes not listed lose
    /// theirs. `basis` is what the counts are about — the shadow upstream's
    /// name at least, plus whatever else should start the counts afresh when
    /// it changes (`ignore`, `compare_headers`). Called when a snapshot is
    /// built, never per request.
    pub fn sync<'a>(
        &self,
        shadowed: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> HashMap<String, Arc<Report>> {
        let mut map = self.map();
        let mut next = HashMap::new();
        for (name, basis) in shadowed {
            let report = match map.remove(name) {
                Some(r) if r.basis == basis => r,
                _ => Arc::new(Report::new(basis)),
            };
            next.insert(name.to_owned(), report);
        }
        *map = next.clone();
        next
    }

    /// Route `name`'s report, if it shadows.
    pub fn get(&self, name: &str) -> Option<Arc<Report>> {
        self.map().get(name).cloned()
    }

    /// Every report with its route's name, sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<Report>)> {
        let mut all: Vec<(String, Arc<Report>)> = self
            .map()
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests;
