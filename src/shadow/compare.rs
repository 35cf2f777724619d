//! Comparing a primary answer with its shadow's (SPEC 2.4): status,
//! `content-type`, the headers a route lists, and the bodies — as JSON when
//! both are JSON (key order and number spelling do not count), else byte for
//! byte. Differences are named by JSON pointer (RFC 6901), so the report can
//! count which fields disagree; `ignore` pointers, with `*` for any one
//! segment, leave fields out.
//!
//! Pure functions over answers already read: no I/O, no state.

use std::fmt;

use http::{HeaderMap, HeaderName, header};
use serde_json::Value;

/// A pointer-like name for what differs outside the JSON body.
pub const STATUS: &str = "(status)";
/// The bodies differ and are not both JSON.
pub const BODY: &str = "(body)";

/// One difference: where, and the two values (`None` when absent on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// A JSON pointer into the body (`/items/0/price`), `(status)`,
    /// `(header NAME)` or `(body)`.
    pub pointer: String,
    pub primary: Option<Value>,
    pub shadow: Option<Value>,
}

/// `ignore` patterns: JSON pointers whose segments may be `*` (any one segment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Vec<Segment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Exact(String),
}

/// Why an `ignore` entry is not a pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("`{0}` is not a JSON pointer: it must start with `/` (e.g. \"/meta/generated_at\")")]
    NoSlash(String),
    #[error("`{0}` has a `~` that is not `~0` or `~1` (RFC 6901)")]
    BadEscape(String),
}

impl Ignore {
    /// Parses pointers such as `/meta/generated_at` or `/items/*/updated_at`.
    pub fn parse<S: AsRef<str>>(pointers: &[S]) -> Result<Ignore, PointerError> {
        let mut patterns = Vec::with_capacity(pointers.len());
        for p in pointers {
            let p = p.as_ref();
            let Some(rest) = p.strip_prefix('/') else {
                return Err(PointerError::NoSlash(p.to_owned()));
            };
            let segments = rest
                .split('/')
                .map(|s| {
                    if s == "*" {
                        Ok(Segment::Any)
                    } else {
                        unescape(s)
                            .map(Segment::Exact)
                            .ok_or_else(|| PointerError::BadEscape(p.to_owned()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            patterns.push(segments);
        }
        Ok(Ignore { patterns })
    }

    /// Whether the field at `path` — or anything above it — is ignored.
    fn covers(&self, path: &[String]) -> bool {
        self.patterns.iter().any(|pat| {
            pat.len() <= path.len()
                && pat.iter().zip(path).all(|(seg, p)| match seg {
                    Segment::Any => true,
                    Segment::Exact(e) => e == p,
                })
        })
    }
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A path as a JSON pointer (RFC 6901 escaping).
pub fn pointer(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        for c in seg.chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

/// The differences between two JSON values, outside `ignore`, in document
/// order. Object key order does not matter, and numbers compare by value
/// (`1`, `1.0` and `1e0` are equal).
pub fn diff_json(primary: &Value, shadow: &Value, ignore: &Ignore) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(primary, shadow, ignore, &mut path, &mut out);
    out
}

fn walk(a: &Value, b: &Value, ignore: &Ignore, path: &mut Vec<String>, out: &mut Vec<Difference>) {
    if ignore.covers(path) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                path.push(k.clone());
                match y.get(k) {
                    Some(vb) => walk(va, vb, ignore, path, out),
                    None => absent(path, Some(va), None, ignore, out),
                }
                path.pop();
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    path.push(k.clone());
                    absent(path, None, Some(vb), ignore, out);
                    path.pop();
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                path.push(i.to_string());
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, ignore, path, out),
                    (va, vb) => absent(path, va, vb, ignore, out),
                }
                path.pop();
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            if !same_number(x, y) {
                out.push(Difference {
                    pointer: pointer(path),
                    primary: Some(a.clone()),
                    shadow: Some(b.clone()),
                });
            }
        }
        _ if a == b => {}
        _ => out.push(Difference {
            pointer: pointer(path),
            primary: Some(a.clone()),
            shadow: Some(b.clone()),
        }),
    }
}

fn absent(
    path: &[String],
    a: Option<&Value>,
    b: Option<&Value>,
    ignore: &Ignore,
    out: &mut Vec<Difference>,
) {
    if !ignore.covers(path) {
        out.push(Difference {
            pointer: pointer(path),
            primary: a.cloned(),
            shadow: b.cloned(),
        });
    }
}

fn same_number(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => match (x.as_f64(), y.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => x == y,
        },
    }
}

/// One side's answer, read in full (bounded by the caller).
pub struct Answer<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl fmt::Debug for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Everything that differs between a primary answer and its shadow's:
/// status, `content-type`, each of `compare_headers`, and the bodies.
pub fn compare(
    primary: &Answer<'_>,
    shadow: &Answer<'_>,
    compare_headers: &[HeaderName],
    ignore: &Ignore,
) -> Vec<Difference> {
    let mut out = Vec::new();
    if primary.status != shadow.status {
        out.push(Difference {
            pointer: STATUS.to_owned(),
            primary: Some(Value::from(primary.status)),
            shadow: Some(Value::from(shadow.status)),
        });
    }
    let ct = header::CONTENT_TYPE;
    for name in std::iter::once(&ct).chain(compare_headers.iter().filter(|h| **h != ct)) {
        let a = header_text(primary.headers, name);
        let b = header_text(shadow.headers, name);
        if a != b {
            out.push(Difference {
                pointer: format!("(header {name})"),
                primary: a.map(Value::from),
                shadow: b.map(Value::from),
            });
        }
    }
    let json = |a: &Answer<'_>| {
        is_json(a.headers)
            .then(|| serde_json::from_slice::<Value>(a.body).ok())
            .flatten()
    };
    match (json(primary), json(shadow)) {
        (Some(a), Some(b)) => out.extend(diff_json(&a, &b, ignore)),
        _ if primary.body == shadow.body => {}
        _ => out.push(Difference {
            pointer: BODY.to_owned(),
            primary: Some(Value::from(format!("{} bytes", primary.body.len()))),
            shadow: Some(Value::from(format!("{} bytes", shadow.body.len()))),
        }),
    }
    out
}

/// All values of a header, joined as a client would see them.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// `application/json` or any `+json` type, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| t == "application/json" || t.ends_with("+json"))
}

#[cfg(test)]
mod tests;
