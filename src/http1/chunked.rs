//! The chunked transfer coding (RFC 9112 section 7.1) as a state machine
//! over bytes: chunk sizes, extensions, data and the CRLFs between them. The
//! trailer section after the last chunk is the body decoder's
//! ([`super::body`]), which reads it as a block of header lines.
//!
//! Strict where a lenient reading could frame a body differently from the
//! peer: CRLF line ends only, chunk extensions by their grammar (a quoted
//! string cannot hide a CR or LF), sizes that cannot overflow, and a bound
//! on extension bytes per body (as hyper has) so that a body of extensions
//! costs nothing to refuse.

use std::io::Write as _;

/// Where in a chunked body the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size; `digits` bounds it.
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeWs {
        value: u64,
    },
    /// After `;`: optional whitespace, then the extension's name.
    ExtStart {
        value: u64,
    },
    ExtName {
        value: u64,
    },
    /// Whitespace after a name: `=`, `;` or CR follows.
    ExtNameEnd {
        value: u64,
    },
    /// After `=`: optional whitespace, then a token or a quoted string.
    ExtValueStart {
        value: u64,
    },
    ExtToken {
        value: u64,
    },
    ExtQuoted {
        value: u64,
    },
    /// After a backslash in a quoted string.
    ExtEscape {
        value: u64,
    },
    /// After a quoted value: whitespace, then `;` or CR.
    ExtValueEnd {
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
}

/// Most hex digits in a chunk size, leading zeros included. Sixteen digits
/// hold any `u64`; more than this many is no real chunk line.
const MAX_SIZE_DIGITS: u8 = 32;
/// Most chunk-extension bytes in one body: they carry nothing the proxy
/// uses, so a body made of them is refused early (hyper's bound too).
const MAX_EXTENSION_BYTES: u32 = 16 * 1024;

/// A chunked body being read: where its next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    extension_bytes: u32,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::START
    }
}

/// What one call to [`Chunked::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input consumed.
    pub used: usize,
    /// How many of those are chunk data: always the last `data` bytes of `used`.
    pub data: usize,
    /// The last chunk's size line has ended: the trailer section comes next.
    pub last: bool,
}

/// The input is not a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked encoding")]
pub struct BadChunk;

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `qdtext` and the bytes a quoted pair may quote (RFC 9110 section 5.6.4):
/// HTAB, SP and visible bytes, obs-text included; never CR, LF or NUL.
fn is_quoted_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl Chunked {
    /// The state at the start of a body.
    pub const START: Chunked = Chunked {
        state: State::Size {
            value: 0,
            digits: 0,
        },
        extension_bytes: 0,
    };

    /// Consumes framing bytes from `input` until chunk data is available
    /// (which it then takes, as much as the chunk has left), the last
    /// chunk's line ends, or the input runs out.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, BadChunk> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { left } = self.state {
                let n = left.min((input.len() - i) as u64) as usize;
                self.state = if n as u64 == left {
                    State::DataCr
                } else {
                    State::Data {
                        left: left - n as u64,
                    }
                };
                return Ok(Step {
                    used: i + n,
                    data: n,
                    last: false,
                });
            }
            let b = input[i];
            i += 1;
            if matches!(
                self.state,
                State::ExtStart { .. }
                    | State::ExtName { .. }
                    | State::ExtNameEnd { .. }
                    | State::ExtValueStart { .. }
                    | State::ExtToken { .. }
                    | State::ExtQuoted { .. }
                    | State::ExtEscape { .. }
                    | State::ExtValueEnd { .. }
            ) {
                self.extension_bytes += 1;
                if self.extension_bytes > MAX_EXTENSION_BYTES {
                    return Err(BadChunk);
                }
            }
            let ws = b == b' ' || b == b'\t';
            self.state = match (self.state, b) {
                (State::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits >= MAX_SIZE_DIGITS || value > u64::MAX >> 4 {
                        return Err(BadChunk);
                    }
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    State::Size {
                        value: value << 4 | d,
                        digits: digits + 1,
                    }
                }
                (State::Size { value, digits }, _) if digits > 0 && ws => State::SizeWs { value },
                (State::Size { value, digits }, b';') if digits > 0 => State::ExtStart { value },
                (State::Size { value, digits }, b'\r') if digits > 0 => State::SizeLf { value },
                (State::SizeWs { value }, _) if ws => State::SizeWs { value },
                (State::SizeWs { value }, b';') => State::ExtStart { value },
                (State::SizeWs { value }, b'\r') => State::SizeLf { value },
                (State::ExtStart { value }, _) if ws => State::ExtStart { value },
                (State::ExtStart { value } | State::ExtName { value }, _) if is_tchar(b) => {
                    State::ExtName { value }
                }
                (State::ExtName { value } | State::ExtNameEnd { value }, _) if ws => {
                    State::ExtNameEnd { value }
                }
                (State::ExtName { value } | State::ExtNameEnd { value }, b'=') => {
                    State::ExtValueStart { value }
                }
                (
                    State::ExtName { value }
                    | State::ExtNameEnd { value }
                    | State::ExtToken { value }
                    | State::ExtValueEnd { value },
                    b';',
                ) => State::ExtStart { value },
                (
                    State::ExtName { value }
                    | State::ExtNameEnd { value }
                    | State::ExtToken { value }
                    | State::ExtValueEnd { value },
                    b'\r',
                ) => State::SizeLf { value },
                (State::ExtValueStart { value }, _) if ws => State::ExtValueStart { value },
                (State::ExtValueStart { value }, b'"') => State::ExtQuoted { value },
                (State::ExtValueStart { value } | State::ExtToken { value }, _) if is_tchar(b) => {
                    State::ExtToken { value }
                }
                (State::ExtToken { value } | State::ExtValueEnd { value }, _) if ws => {
                    State::ExtValueEnd { value }
                }
                (State::ExtQuoted { value }, b'"') => State::ExtValueEnd { value },
                (State::ExtQuoted { value }, b'\\') => State::ExtEscape { value },
                (State::ExtQuoted { value }, _) if is_quoted_byte(b) => State::ExtQuoted { value },
                (State::ExtEscape { value }, _) if is_quoted_byte(b) => State::ExtQuoted { value },
                (State::SizeLf { value: 0 }, b'\n') => {
                    self.state = State::SizeLf { value: 0 };
                    return Ok(Step {
                        used: i,
                        data: 0,
                        last: true,
                    });
                }
                (State::SizeLf { value }, b'\n') => State::Data { left: value },
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(BadChunk),
            };
        }
        Ok(Step {
            used: i,
            data: 0,
            last: false,
        })
    }

    /// Data left in the current chunk, for a size hint.
    pub fn data_left(&self) -> u64 {
        match self.state {
            State::Data { left } => left,
            _ => 0,
        }
    }
}

/// The line that starts a chunk of `len` bytes.
pub fn encode_size(len: usize, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

/// The CRLF that ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The last chunk with `trailers` (RFC 9112 section 7.1.2).
pub fn encode_last(trailers: Option<&http::HeaderMap>, out: &mut Vec<u8>) {
    let Some(trailers) = trailers.filter(|t| !t.is_empty()) else {
        out.extend_from_slice(LAST_CHUNK);
        return;
    };
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        super::encode::put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `parts` fed one after another: the data, and whether the
    /// last chunk's line was reached.
    pub(crate) fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, bool), BadChunk> {
        let mut c = Chunked::START;
        let mut out = Vec::new();
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let st = c.step(rest)?;
                out.extend_from_slice(&rest[st.used - st.data..st.used]);
                rest = &rest[st.used..];
                if st.last {
                    return Ok((out, true));
                }
            }
        }
        Ok((out, false))
    }

    #[test]
    fn decodes_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6 ; a = \"q\\\"x\" ;b\r\n world\r\n0\r\n";
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(
                decode(&[a, b]),
                Ok((b"hello world".to_vec(), true)),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode(&bytes), Ok((b"hello world".to_vec(), true)));
    }

    #[test]
    fn stops_at_the_last_chunk_line() {
        let mut c = Chunked::START;
        let st = c.step(b"0\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
        assert_eq!((st.used, st.data, st.last), (3, 0, true));
    }

    #[test]
    fn leading_zeros_are_a_size_like_any_other() {
        assert_eq!(
            decode(&[b"0000000000000003\r\nabc\r\n0\r\n"]),
            Ok((b"abc".to_vec(), true))
        );
    }

    #[test]
    fn refuses_what_is_not_chunked() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\n",
            b"5;ext\n",
            b"\r\n",
            b";a\r\n",
            // A quoted extension cannot hide a line end.
            b"3;foo=\"a\r\nb\"\r\nabc\r\n",
            b"3;foo=\"a\nb\"\r\n",
            b"3;=x\r\n",
            b"3;a=\r\n",
            b"3;a b\r\n",
            b"3;a=\"x\"y\r\n",
            b"3\x00\r\n",
            // More than u64.
            b"10000000000000000\r\n",
            b"000000000000000000000000000000001\r\n",
        ] {
            assert_eq!(
                decode(&[bad]),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn extensions_are_bounded_per_body() {
        let line = format!("1;{}\r\na\r\n", "x".repeat(1000));
        let many = line.repeat(20);
        assert_eq!(decode(&[many.as_bytes()]), Err(BadChunk));
        let few = line.repeat(10);
        assert!(decode(&[few.as_bytes()]).is_ok());
    }

    #[test]
    fn encodes_sizes_and_trailers() {
        let mut out = Vec::new();
        encode_size(255, &mut out);
        assert_eq!(out, b"ff\r\n");
        out.clear();
        encode_last(None, &mut out);
        assert_eq!(out, LAST_CHUNK);
        out.clear();
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        encode_last(Some(&t), &mut out);
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
    }
}
