//! The one HTTP/1 codec (RFC 9112), for both directions: the server that
//! reads clients' requests and writes answers, and the upstream client that
//! writes requests and reads answers, use these functions and nothing else to
//! frame HTTP/1 messages — as Pingora's `protocols/http/v1` is shared by its
//! server and client. HTTP/2 is the `h2`/hyper crates'.
//!
//! - [`request`] reads a request head and decides, once, everything its
//!   framing implies: the body's length or chunking, keep-alive, `Expect`,
//!   upgrades. Every ambiguity a smuggler could use is refused there (SPEC
//!   3.4), on every request of a connection, because there is no other
//!   parser to disagree with.
//! - [`response`] reads an upstream's answer head, refusing framing a
//!   client could read differently (two lengths, length and chunked, a
//!   status outside 100-599).
//! - [`body`] delimits and decodes bodies (length, [`chunked`] with
//!   trailers, until close) off a read buffer; [`encode`] writes heads and
//!   chunks.
//! - [`incoming`] hands a request body being read off a client connection
//!   to whoever forwards it, with backpressure: bytes are read from the
//!   client only when the body is asked for more.
//! - [`spare`] keeps header maps for reuse.
//!
//! Nothing here does I/O or knows routes; it is bytes in, messages out.

pub mod body;
pub mod chunked;
pub mod encode;
pub mod incoming;
pub mod request;
pub mod response;
pub mod spare;

/// Longest head accepted, request or answer (SPEC 3.2: 431 beyond it).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a head; more is answered as a head too large.
pub const MAX_HEADERS: usize = 128;

/// A `content-length` value as a length: ASCII digits only (no sign, no
/// spaces, no list), at most `i64::MAX` (what servers agree a length can
/// be); `None` for anything else.
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|&n| n <= i64::MAX as u64)
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lengths_read_strictly() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b"007"), Some(7));
        assert_eq!(
            content_length(b"9223372036854775807"),
            Some(i64::MAX as u64)
        );
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 ",
            b" 1",
            b"1,1",
            b"0x10",
            b"9223372036854775808",
            b"18446744073709551615",
            b"99999999999999999999",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_trimmed() {
        let t: Vec<&[u8]> = tokens(b" keep-alive ,, Upgrade").collect();
        assert_eq!(t, [&b"keep-alive"[..], b"Upgrade"]);
    }
}
