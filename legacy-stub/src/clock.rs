//! Wall-clock formatting without a date library: turns Unix seconds (plus
//! milliseconds) into the RFC 3339 UTC strings the shop's JSON uses, via
//! Howard Hinnant's civil-from-days algorithm. The monolith and the orders
//! service render the same instant in two different RFC 3339 styles; both
//! styles live here so the difference is explicit.

use std::time::{SystemTime, UNIX_EPOCH};

/// Split Unix seconds into (year, month, day, hour, minute, second), UTC.
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Valid for every `i64` day count that results from a `u64` of seconds.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-03-14T09:26:53Z` — the monolith's style (seconds precision, `Z`).
pub(crate) fn rfc3339_seconds(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-03-14T09:26:53.000+00:00` — the orders service's style
/// (milliseconds, explicit offset). Same instant, different text: exactly
/// the kind of difference a shadow comparison should surface.
pub(crate) fn rfc3339_millis_offset(secs: u64, millis: u32) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}+00:00",
        millis % 1000
    )
}

/// `2026-03-14T09:26:53.123Z` — used for `meta.generated_at`.
pub(crate) fn rfc3339_millis(secs: u64, millis: u32) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        millis % 1000
    )
}

/// The current time as (Unix seconds, milliseconds). A clock before 1970
/// reads as the epoch rather than failing.
pub(crate) fn now() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_millis())
}

/// The current time in the `meta.generated_at` style.
pub(crate) fn now_rfc3339_millis() -> String {
    let (s, ms) = now();
    rfc3339_millis(s, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(1_773_480_413), "2026-03-14T09:26:53Z");
        assert_eq!(
            rfc3339_millis_offset(1_773_480_413, 0),
            "2026-03-14T09:26:53.000+00:00"
        );
        assert_eq!(rfc3339_millis(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_seconds(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_seconds(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn huge_values_do_not_panic() {
        let s = rfc3339_seconds(u64::MAX);
        assert!(s.ends_with('Z'));
    }

    #[test]
    fn now_looks_like_rfc3339() {
        let s = now_rfc3339_millis();
        assert_eq!(s.len(), "2026-03-14T09:26:53.123Z".len());
        assert_eq!(&s[10..11], "T");
    }
}
