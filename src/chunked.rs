//! The chunked transfer coding (RFC 9112 section 7.1) as a state machine over
//! bytes, shared by the two places that follow it: the smuggling guard, which
//! skips client request bodies to find the next head, and the lean upstream
//! client, which decodes response bodies. One implementation, so the two can
//! never disagree about where a chunked body ends — nor, with
//! [`ends_chunked`] and [`content_length`], about how the framing headers
//! that choose it read.

/// Whether a `transfer-encoding` value's final coding is `chunked` (only
/// the final coding of the last such header frames a message).
pub fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// A `content-length` value as a length: ASCII digits only (no sign, no
/// spaces, no list), within `u64`; `None` for anything else.
pub fn content_length(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

/// Where in a chunked body the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Reading the hex chunk size; `digits` bounds it.
    Size {
        value: u64,
        digits: u8,
    },
    /// After `;` or whitespace, up to CR: an extension, ignored.
    Extension {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
}

impl Chunk {
    /// The state at the start of a body.
    pub const START: Chunk = Chunk::Size {
        value: 0,
        digits: 0,
    };
}

/// Most hex digits in a chunk size: 15 keep it under 2^60, far above any real
/// chunk and far from overflow.
const MAX_SIZE_DIGITS: u8 = 15;

/// What one call to [`step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input consumed.
    pub used: usize,
    /// How many of those are chunk data: always the last `data` bytes of `used`.
    pub data: usize,
    /// The state after them; `None` once the body (and its trailers) ended.
    pub next: Option<Chunk>,
}

/// The input is not a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked encoding")]
pub struct BadChunk;

/// Consumes framing bytes from `input` until chunk data is available (which
/// it then takes, as much as the chunk has left), the body ends, or the input
/// runs out.
pub fn step(mut state: Chunk, input: &[u8]) -> Result<Step, BadChunk> {
    let mut i = 0;
    while i < input.len() {
        if let Chunk::Data { left } = state {
            let n = left.min((input.len() - i) as u64) as usize;
            let next = if n as u64 == left {
                Chunk::DataCr
            } else {
                Chunk::Data {
                    left: left - n as u64,
                }
            };
            return Ok(Step {
                used: i + n,
                data: n,
                next: Some(next),
            });
        }
        let b = input[i];
        i += 1;
        state = match (state, b) {
            (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                if digits >= MAX_SIZE_DIGITS {
                    return Err(BadChunk);
                }
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                Chunk::Size {
                    value: value * 16 + d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { value, digits }, b';' | b' ' | b'\t') if digits > 0 => {
                Chunk::Extension { value }
            }
            (Chunk::Size { value, digits }, b'\r') if digits > 0 => Chunk::SizeLf { value },
            (Chunk::Extension { value }, b'\r') => Chunk::SizeLf { value },
            (Chunk::Extension { .. }, b'\n') => return Err(BadChunk),
            (Chunk::Extension { value }, _) => Chunk::Extension { value },
            (Chunk::SizeLf { value: 0 }, b'\n') => Chunk::TrailerStart,
            (Chunk::SizeLf { value }, b'\n') => Chunk::Data { left: value },
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::START,
            (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
            (Chunk::TrailerLine, b'\r') => Chunk::TrailerLf,
            (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
            (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
            (Chunk::EndLf, b'\n') => {
                return Ok(Step {
                    used: i,
                    data: 0,
                    next: None,
                });
            }
            _ => return Err(BadChunk),
        };
    }
    Ok(Step {
        used: i,
        data: 0,
        next: Some(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_header_values_read_strictly() {
        assert!(ends_chunked(b"chunked"));
        assert!(ends_chunked(b"gzip, Chunked "));
        assert!(!ends_chunked(b"chunked, gzip"));
        assert!(!ends_chunked(b"xchunked"));
        assert_eq!(content_length(b"42"), Some(42));
        for bad in [
            &b""[..],
            b"+1",
            b"1 ",
            b"1,1",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    /// Decodes `wire` fed in `parts`, returning the data and whether it ended.
    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, bool), BadChunk> {
        let mut state = Some(Chunk::START);
        let mut out = Vec::new();
        for part in parts {
            let mut rest = *part;
            while let Some(s) = state {
                if rest.is_empty() {
                    break;
                }
                let st = step(s, rest)?;
                out.extend_from_slice(&rest[st.used - st.data..st.used]);
                rest = &rest[st.used..];
                state = st.next;
            }
        }
        Ok((out, state.is_none()))
    }

    #[test]
    fn decodes_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(
                decode(&[a, b]),
                Ok((b"hello world".to_vec(), true)),
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode(&bytes), Ok((b"hello world".to_vec(), true)));
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let wire = b"0\r\n\r\nGET / HTTP/1.1\r\n";
        let st = step(Chunk::START, wire).unwrap();
        assert_eq!((st.used, st.data, st.next), (5, 0, None));
    }

    #[test]
    fn refuses_what_is_not_chunked() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\n",
            b"5;ext\n",
            b"1234567890123456\r\n",
            b"\r\n",
        ] {
            assert_eq!(
                decode(&[bad]),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
