//! A strict reader over a parsed TOML table that remembers every key it was
//! asked for, so leftovers are reported as unknown keys with the known ones listed.
//!
//! serde's `deny_unknown_fields` stops at the first problem; this reader keeps
//! going and records every problem with its byte span, so `strangler check`
//! can list all of them at once.

use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::source::Diagnostic;
use super::units;

/// A string value with the span it came from.
pub type SpannedStr = Spanned<String>;

/// Collects diagnostics from all readers of one file.
#[derive(Debug, Default)]
pub struct Diags(RefCell<Vec<Diagnostic>>);

impl Diags {
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) {
        self.0.borrow_mut().push(Diagnostic::at(span, message));
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        let mut v = self.0.into_inner();
        v.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        v
    }
}

/// Reads the keys of one table. Call [`TableReader::finish`] when done to
/// report the keys nobody asked for.
pub struct TableReader<'a, 'i> {
    table: &'a DeTable<'i>,
    /// What the table is, for messages: `[server]`, `route "orders"`.
    what: String,
    known: Vec<&'static str>,
    diags: &'a Diags,
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, what: impl Into<String>, diags: &'a Diags) -> Self {
        TableReader {
            table,
            what: what.into(),
            known: Vec::new(),
            diags,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn diags(&self) -> &'a Diags {
        self.diags
    }

    /// The raw value of `key`, marking the key as known.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.push(key);
        self.table.get(key)
    }

    fn type_error(&self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) {
        self.diags.error(
            v.span(),
            format!(
                "{}: `{key}` must be {expected}, not {}",
                self.what,
                v.get_ref().type_str()
            ),
        );
    }

    pub fn string(&mut self, key: &'static str) -> Option<SpannedStr> {
        let v = self.value(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(Spanned::new(v.span(), s.to_owned())),
            None => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        let v = self.value(key)?;
        match v.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                self.type_error(key, v, "true or false");
                None
            }
        }
    }

    /// A non-negative integer no larger than `max`.
    pub fn uint(&mut self, key: &'static str, max: u64) -> Option<Spanned<u64>> {
        let v = self.value(key)?;
        let Some(i) = v.get_ref().as_integer() else {
            self.type_error(key, v, "a whole number");
            return None;
        };
        let digits = i.as_str().replace('_', "");
        match i64::from_str_radix(&digits, i.radix()) {
            Ok(n) if n >= 0 && (n as u64) <= max => Some(Spanned::new(v.span(), n as u64)),
            _ => {
                self.diags.error(
                    v.span(),
                    format!(
                        "{}: `{key}` must be between 0 and {max}, not {}",
                        self.what,
                        i.as_str()
                    ),
                );
                None
            }
        }
    }

    /// A number (whole or decimal) within `min..=max`. Rates and ratios are
    /// written either way (`1`, `0.5`), so both are accepted.
    pub fn number(&mut self, key: &'static str, min: f64, max: f64) -> Option<Spanned<f64>> {
        let v = self.value(key)?;
        let n = if let Some(i) = v.get_ref().as_integer() {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix())
                .ok()
                .map(|n| n as f64)
        } else if let Some(f) = v.get_ref().as_float() {
            f.as_str().replace('_', "").parse::<f64>().ok()
        } else {
            self.type_error(key, v, "a number");
            return None;
        };
        match n {
            Some(n) if n.is_finite() && (min..=max).contains(&n) => Some(Spanned::new(v.span(), n)),
            _ => {
                self.diags.error(
                    v.span(),
                    format!("{}: `{key}` must be between {min} and {max}", self.what),
                );
                None
            }
        }
    }

    /// A duration string such as `"250ms"`, `"2s"`, `"5m"`; zero is refused
    /// because every duration here is a timeout or an interval.
    pub fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let s = self.string(key)?;
        match units::parse_duration(s.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.diags.error(
                    s.span(),
                    format!("{}: `{key}` must be longer than 0", self.what),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.diags
                    .error(s.span(), format!("{}: `{key}`: {e}", self.what));
                None
            }
        }
    }

    /// A size: a string such as `"64KiB"` or a whole number of bytes.
    pub fn size(&mut self, key: &'static str) -> Option<u64> {
        let v = self.value(key)?;
        if let Some(i) = v.get_ref().as_integer() {
            let digits = i.as_str().replace('_', "");
            return match i64::from_str_radix(&digits, i.radix()) {
                Ok(n) if n >= 0 => Some(n as u64),
                _ => {
                    self.diags.error(
                        v.span(),
                        format!("{}: `{key}` must not be negative", self.what),
                    );
                    None
                }
            };
        }
        let Some(s) = v.get_ref().as_str() else {
            self.type_error(key, v, "a size such as \"16MiB\"");
            return None;
        };
        match units::parse_size(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.diags
                    .error(v.span(), format!("{}: `{key}`: {e}", self.what));
                None
            }
        }
    }

    /// One string or a list of strings.
    pub fn strings(&mut self, key: &'static str) -> Option<Vec<SpannedStr>> {
        let v = self.value(key)?;
        if let Some(s) = v.get_ref().as_str() {
            return Some(vec![Spanned::new(v.span(), s.to_owned())]);
        }
        self.string_list_of(key, v)
    }

    /// A list of strings (a single string is refused: lists stay lists).
    pub fn string_list(&mut self, key: &'static str) -> Option<Vec<SpannedStr>> {
        let v = self.value(key)?;
        self.string_list_of(key, v)
    }

    fn string_list_of(
        &self,
        key: &'static str,
        v: &Spanned<DeValue<'_>>,
    ) -> Option<Vec<SpannedStr>> {
        let Some(items) = v.get_ref().as_array() else {
            self.type_error(key, v, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push(Spanned::new(item.span(), s.to_owned())),
                None => self.type_error(key, item, "a list of strings"),
            }
        }
        Some(out)
    }

    /// A table of string values, in file order.
    pub fn string_map(&mut self, key: &'static str) -> Option<Vec<(SpannedStr, SpannedStr)>> {
        let v = self.value(key)?;
        let Some(t) = v.get_ref().as_table() else {
            self.type_error(key, v, "a table of strings");
            return None;
        };
        let mut out = Vec::with_capacity(t.len());
        for (k, val) in t.iter() {
            match val.get_ref().as_str() {
                Some(s) => out.push((
                    Spanned::new(k.span(), k.get_ref().to_string()),
                    Spanned::new(val.span(), s.to_owned()),
                )),
                None => self.type_error(key, val, "a table of strings"),
            }
        }
        Some(out)
    }

    /// A sub-table, returned with its span.
    pub fn table(&mut self, key: &'static str) -> Option<(&'a DeTable<'i>, Range<usize>)> {
        let v = self.value(key)?;
        match v.get_ref().as_table() {
            Some(t) => Some((t, v.span())),
            None => {
                self.type_error(key, v, "a table");
                None
            }
        }
    }

    /// A list of tables (`[[key]]`), each with its span.
    pub fn tables(&mut self, key: &'static str) -> Option<Vec<(&'a DeTable<'i>, Range<usize>)>> {
        let v = self.value(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.type_error(key, v, "a list of tables ([[...]])");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref().as_table() {
                Some(t) => out.push((t, item.span())),
                None => self.type_error(key, item, "a list of tables ([[...]])"),
            }
        }
        Some(out)
    }

    /// Reports the keys present in the table that were never asked for.
    pub fn finish(self) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if !self.known.contains(&name) {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                let hint = suggestion(name, &known)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.diags.error(
                    k.span(),
                    format!(
                        "{}: unknown key `{name}` ({hint}known: {})",
                        self.what,
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

/// The known name closest to a misspelt one, when it is close enough to be a typo.
pub fn suggestion<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance; names are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, f: impl FnOnce(&mut TableReader<'_, '_>)) -> Vec<Diagnostic> {
        let doc = DeTable::parse(text).expect("valid toml");
        let diags = Diags::default();
        let mut r = TableReader::new(doc.get_ref(), "[t]", &diags);
        f(&mut r);
        r.finish();
        diags.into_vec()
    }

    #[test]
    fn unknown_keys_are_listed_with_a_suggestion() {
        let d = read("listn = \"x\"\nadmin = \"y\"\n", |r| {
            r.string("listen");
            r.string("admin");
        });
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].span, Some(0..5));
        assert_eq!(
            d[0].message,
            "[t]: unknown key `listn` (did you mean `listen`? known: admin, listen)"
        );
    }

    #[test]
    fn type_errors_name_the_expected_type() {
        let d = read("a = 5\nb = \"x\"\nc = [1]\n", |r| {
            assert!(r.string("a").is_none());
            assert!(r.uint("b", 10).is_none());
            assert!(r.string_list("c").is_some_and(|v| v.is_empty()));
        });
        let msgs: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "[t]: `a` must be a string, not integer",
                "[t]: `b` must be a whole number, not string",
                "[t]: `c` must be a list of strings, not integer",
            ]
        );
    }

    #[test]
    fn durations_sizes_and_numbers() {
        let d = read(
            "t = \"250ms\"\nz = \"0s\"\ns = \"16MiB\"\nn = 4096\nbig = 11\nbad = \"2 parsecs\"\n",
            |r| {
                assert_eq!(r.duration("t"), Some(Duration::from_millis(250)));
                assert_eq!(r.duration("z"), None);
                assert_eq!(r.size("s"), Some(16 << 20));
                assert_eq!(r.size("n"), Some(4096));
                assert!(r.uint("big", 10).is_none());
                assert!(r.duration("bad").is_none());
            },
        );
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].message.contains("longer than 0"));
        assert!(d[1].message.contains("between 0 and 10"));
        assert!(d[2].message.contains("`bad`"));
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(
            suggestion("upstrem", &["upstream", "path"]),
            Some("upstream")
        );
        assert_eq!(suggestion("zzz", &["upstream", "path"]), None);
    }
}
