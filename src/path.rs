//! Path normalization (SPEC 3.3): the one spelling of a path that routing sees
//! and the upstream receives, so no client can reach a path by a spelling that
//! bypasses a route.
//!
//! Steps, in RFC 3986 order (section 6.2.2):
//! 1. percent-encoded unreserved characters are decoded (`%61` → `a`); every other
//!    escape keeps its encoding with upper-case hex (`%2f` → `%2F`). `%2F`, `%5C` and
//!    `%00` therefore never become separators or NULs;
//! 2. bytes that may not appear in a path (non-ASCII, `"`, `<`, `>`, `\`, `^`,
//!    `` ` ``, `{`, `|`, `}`, space) are percent-encoded; control characters and
//!    invalid escapes are refused;
//! 3. with `merge_slashes`, runs of `/` become one;
//! 4. `.` and `..` segments are resolved (section 5.2.4); climbing above `/` is refused.

use std::borrow::Cow;

/// Why a request path was refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has an invalid percent-encoding")]
    BadEscape,
    #[error("the path has a control character")]
    ControlCharacter,
    #[error("the path climbs above `/`")]
    AboveRoot,
}

/// What a byte is, for normalization.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// ALPHA / DIGIT / `-` / `.` / `_` / `~` (RFC 3986 section 2.3).
    Unreserved,
    /// Sub-delims, `:`, `@` and `/`: allowed as is.
    Allowed,
    /// `%`: starts an escape.
    Percent,
    /// Allowed in no path; percent-encoded on the way through.
    Encode,
    /// Refused.
    Control,
}

const fn class(b: u8) -> Class {
    match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Class::Unreserved,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':'
        | b'@' | b'/' => Class::Allowed,
        b'%' => Class::Percent,
        0x00..=0x1f | 0x7f => Class::Control,
        _ => Class::Encode,
    }
}

const CLASSES: [Class; 256] = {
    let mut t = [Class::Encode; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class(i as u8);
        i += 1;
    }
    t
};

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Normalizes the path of a request target (without the query).
///
/// Returns the input unchanged (borrowed) when it already is normal, which is
/// the common case and costs one scan.
pub fn normalize(raw: &str, merge_slashes: bool) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw.as_bytes(), merge_slashes) {
        return Ok(Cow::Borrowed(raw));
    }
    let canonical = canonical_bytes(raw)?;
    resolve_segments(&canonical, merge_slashes).map(Cow::Owned)
}

/// Normalizes one literal segment of a route pattern the way [`normalize`]
/// treats request paths, so `%61pi` in a pattern means `api`.
pub fn normalize_segment(raw: &str) -> Result<String, PathError> {
    canonical_bytes(raw)
}

/// True when `normalize` would return the path unchanged.
fn is_normal(p: &[u8], merge_slashes: bool) -> bool {
    let mut prev_slash = false;
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        match CLASSES[usize::from(b)] {
            Class::Unreserved | Class::Allowed => {}
            Class::Percent | Class::Encode | Class::Control => return false,
        }
        if b == b'/' {
            if prev_slash && merge_slashes {
                return false;
            }
            prev_slash = true;
        } else {
            if prev_slash && b == b'.' {
                // A segment starting with a dot: "." or ".." need resolving.
                let rest = &p[i..];
                let seg_len = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if seg_len <= 2 && rest[..seg_len].iter().all(|&c| c == b'.') {
                    return false;
                }
            }
            prev_slash = false;
        }
        i += 1;
    }
    true
}

/// Step 1 and 2: decode unreserved escapes, upper-case the others, encode what
/// may not appear, refuse controls and broken escapes.
fn canonical_bytes(raw: &str) -> Result<String, PathError> {
    let p = raw.as_bytes();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        match CLASSES[usize::from(b)] {
            Class::Unreserved | Class::Allowed => out.push(b as char),
            Class::Encode => push_escaped(&mut out, b),
            Class::Control => return Err(PathError::ControlCharacter),
            Class::Percent => {
                let (Some(h), Some(l)) = (
                    p.get(i + 1).copied().and_then(hex_val),
                    p.get(i + 2).copied().and_then(hex_val),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = (h << 4) | l;
                if CLASSES[usize::from(decoded)] == Class::Unreserved {
                    out.push(decoded as char);
                } else {
                    push_escaped(&mut out, decoded);
                }
                i += 2;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Steps 3 and 4 on an already canonical, absolute path.
fn resolve_segments(path: &str, merge_slashes: bool) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" if merge_slashes && !last => {}
            "." => {
                if last {
                    stack.push("");
                }
            }
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                if last {
                    stack.push("");
                }
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p, true).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_the_same_path() {
        let cases = [
            ("/", "/"),
            ("/api/orders", "/api/orders"),
            ("/%61pi/orders", "/api/orders"),
            ("/api/%6Frders", "/api/orders"),
            ("/api//orders", "/api/orders"),
            ("///api///orders//", "/api/orders/"),
            ("/api/./orders", "/api/orders"),
            ("/api/x/../orders", "/api/orders"),
            ("/api/%2e%2E/api/orders", "/api/orders"),
            ("/api/orders/.", "/api/orders/"),
            ("/api/orders/x/..", "/api/orders/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/a/%2f/b", "/a/%2F/b"),
            ("/a%5cb", "/a%5Cb"),
            ("/a%00b", "/a%00b"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a{b}|c", "/a%7Bb%7D%7Cc"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
        ];
        for (input, want) in cases {
            assert_eq!(n(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn encoded_separators_never_split_or_climb() {
        assert_eq!(n("/a/..%2F..%2Fetc").as_deref(), Ok("/a/..%2F..%2Fetc"));
        assert_eq!(n("/a%2F..").as_deref(), Ok("/a%2F.."));
        assert_eq!(n("/a/..%5C").as_deref(), Ok("/a/..%5C"));
    }

    #[test]
    fn refusals() {
        assert_eq!(n("api"), Err(PathError::NotAbsolute));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(n("/%2e%2e/etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(n("/a%"), Err(PathError::BadEscape));
        assert_eq!(n("/a%4"), Err(PathError::BadEscape));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a\tb"), Err(PathError::ControlCharacter));
        assert_eq!(n("/a\u{7f}"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn without_merge_slashes_empty_segments_stay() {
        assert_eq!(normalize("/a//b", false).as_deref(), Ok("/a//b"));
        assert_eq!(normalize("/a//..", false).as_deref(), Ok("/a/"));
    }

    #[test]
    fn clean_paths_are_not_copied() {
        assert!(matches!(
            normalize("/api/orders/17", true),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize("/a/.b/c..", true), Ok(Cow::Borrowed(_))));
    }

    /// A path segment made of characters that matter to normalization.
    fn segment() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("a".to_owned()),
                Just("B".to_owned()),
                Just("9".to_owned()),
                Just("-".to_owned()),
                Just(".".to_owned()),
                Just("~".to_owned()),
                Just("%2F".to_owned()),
                Just("%5c".to_owned()),
                Just("%00".to_owned()),
                Just("é".to_owned()),
                Just(":".to_owned()),
                Just("{".to_owned()),
            ],
            0..4,
        )
        .prop_map(|v| v.concat())
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 0..6).prop_map(|segs| format!("/{}", segs.join("/")))
    }

    /// Respells a normal path without changing what it names: escapes
    /// unreserved characters, doubles slashes, adds `.` and `x/..` segments.
    fn respell(normal: &str, choices: &[u8]) -> String {
        let mut out = String::new();
        let mut k = 0;
        let mut next = || {
            k += 1;
            choices.get(k % choices.len().max(1)).copied().unwrap_or(0)
        };
        for (i, seg) in normal[1..].split('/').enumerate() {
            out.push('/');
            match next() % 4 {
                0 => out.push_str("./"),
                1 => out.push_str("zz/../"),
                2 => out.push('/'),
                _ => {}
            }
            let _ = i;
            let bytes = seg.as_bytes();
            let mut j = 0;
            while j < bytes.len() {
                let b = bytes[j];
                if b == b'%' {
                    // Keep existing escapes whole.
                    out.push_str(&seg[j..j + 3]);
                    j += 3;
                    continue;
                }
                if b.is_ascii_alphanumeric() && next() % 2 == 0 {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push(b as char);
                }
                j += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(p in path()) {
            if let Ok(once) = normalize(&p, true) {
                let twice = normalize(&once, true).map(Cow::into_owned);
                prop_assert_eq!(twice.as_deref(), Ok(&*once));
            }
        }

        #[test]
        fn normal_paths_have_no_dot_segments_or_double_slashes(p in path()) {
            if let Ok(out) = normalize(&p, true) {
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//"));
                for seg in out[1..].split('/') {
                    prop_assert!(seg != "." && seg != "..", "{}", out);
                }
                // No escaped unreserved character survives.
                let lower = out.to_ascii_lowercase();
                for hex in ["%2e", "%41", "%61", "%30", "%7e", "%2d", "%5f"] {
                    prop_assert!(!lower.contains(hex), "{}", out);
                }
            }
        }

        #[test]
        fn no_spelling_bypasses_the_normal_form(p in path(), choices in prop::collection::vec(any::<u8>(), 1..16)) {
            if let Ok(normal) = normalize(&p, true) {
                let variant = respell(&normal, &choices);
                let again = normalize(&variant, true).map(Cow::into_owned);
                prop_assert_eq!(again.as_deref(), Ok(&*normal), "variant {}", variant);
            }
        }
    }
}
