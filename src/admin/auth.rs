//! The gate in front of admin writes: `Authorization: Bearer <admin_token>`
//! (RFC 6750 section 2.1) when a token is set, compared in constant time so
//! the answer's timing does not reveal how much of a guess was right.

use http::{HeaderMap, header};

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("admin writes need `Authorization: Bearer <admin_token>`")]
    Missing,
    #[error("the bearer token is not the admin token")]
    Invalid,
    /// The listener is beyond loopback and the config in force has no token:
    /// writes stay shut rather than open to the network.
    #[error(
        "the admin API listens beyond loopback and the config has no `admin_token`; writes are refused until one is set"
    )]
    NoToken,
}

/// Lets a write through when `token` is `None` on a loopback listener, or
/// when the request carries `token` as its bearer token.
pub fn check(
    headers: &HeaderMap,
    token: Option<&str>,
    beyond_loopback: bool,
) -> Result<(), Denied> {
    let Some(token) = token else {
        return if beyond_loopback {
            Err(Denied::NoToken)
        } else {
            Ok(())
        };
    };
    let given = bearer(headers).ok_or(Denied::Missing)?;
    if constant_time_eq(given, token.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::Invalid)
    }
}

/// The credentials of an `Authorization: Bearer ...` header. The scheme is
/// case-insensitive (RFC 9110 section 11.1); spaces around the token are
/// dropped.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Whether `given == expected`, taking the same time whatever `given` holds:
/// every byte of `expected` is looked at, and differences are OR-ed rather
/// than returned at the first one. Only the expected length shows in timing.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ e;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_token_must_match_exactly() {
        let t = Some("s3cret");
        assert_eq!(check(&with_auth("Bearer s3cret"), t, false), Ok(()));
        assert_eq!(check(&with_auth("bearer  s3cret "), t, true), Ok(()));
        assert_eq!(
            check(&with_auth("Bearer s3cre"), t, false),
            Err(Denied::Invalid)
        );
        assert_eq!(
            check(&with_auth("Bearer s3cretX"), t, false),
            Err(Denied::Invalid)
        );
        assert_eq!(check(&with_auth("Bearer "), t, false), Err(Denied::Invalid));
        assert_eq!(
            check(&with_auth("Basic czNjcmV0"), t, false),
            Err(Denied::Missing)
        );
        assert_eq!(
            check(&with_auth("Bearers3cret"), t, false),
            Err(Denied::Missing)
        );
        assert_eq!(check(&HeaderMap::new(), t, false), Err(Denied::Missing));
    }

    #[test]
    fn without_a_token_loopback_is_open_and_beyond_is_shut() {
        assert_eq!(check(&HeaderMap::new(), None, false), Ok(()));
        assert_eq!(check(&HeaderMap::new(), None, true), Err(Denied::NoToken));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
