//! Message bodies as HTTP/1 frames them (RFC 9112 section 6): how a body is
//! delimited ([`Framing`]), and the [`Decoder`] that takes it off the front
//! of a read buffer piece by piece — the same decoder for a client's request
//! body and an upstream's answer, so the two directions can never disagree
//! about where a body ends.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::MAX_HEAD;
use super::chunked::{BadChunk, Chunked};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `content-length` bytes.
    Length(u64),
    Chunked,
    /// Everything until the connection closes (answers only).
    UntilClose,
}

/// Why a body could not be read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    BadChunk(#[from] BadChunk),
    #[error("invalid trailer section")]
    BadTrailers,
    #[error("the connection closed before the body was complete")]
    Truncated,
}

/// One piece of a body, as [`Decoder::decode`] found it.
#[derive(Debug)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer fields of a chunked body; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    More,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(Chunked),
    /// After the last chunk: the trailer section, read whole.
    Trailers,
    UntilClose,
    Done,
}

/// Reads one body off the front of a buffer; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    kind: Kind,
}

/// Most trailer lines kept; more is an invalid trailer section.
const MAX_TRAILERS: usize = 64;

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(Chunked::START),
            Framing::UntilClose => Kind::UntilClose,
        };
        Decoder { kind }
    }

    /// The body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.kind == Kind::Done
    }

    /// Bytes certainly left: exact for a length, a lower bound otherwise.
    pub fn left(&self) -> (u64, Option<u64>) {
        match self.kind {
            Kind::Length(n) => (n, Some(n)),
            Kind::Done => (0, Some(0)),
            Kind::Chunked(c) => (c.data_left(), None),
            Kind::Trailers | Kind::UntilClose => (0, None),
        }
    }

    /// Takes the next piece of the body off the front of `buf` (data is
    /// split off the buffer, not copied). Bytes after the body stay.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match &mut self.kind {
                Kind::Done => return Ok(Decoded::End),
                Kind::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = (*left).min(buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.kind = Kind::Done;
                    }
                    return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
                }
                Kind::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Kind::Chunked(c) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let st = c.step(buf)?;
                    buf.advance(st.used - st.data);
                    if st.last {
                        self.kind = Kind::Trailers;
                        continue;
                    }
                    if st.data > 0 {
                        return Ok(Decoded::Data(buf.split_to(st.data).freeze()));
                    }
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                }
                Kind::Trailers => {
                    return match trailer_section(buf)? {
                        None => Ok(Decoded::More),
                        Some((used, trailers)) => {
                            buf.advance(used);
                            self.kind = Kind::Done;
                            Ok(match trailers {
                                Some(t) => Decoded::Trailers(t),
                                None => Decoded::End,
                            })
                        }
                    };
                }
            }
        }
    }

    /// The connection ended: the end of an until-close body, else truncation.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match self.kind {
            Kind::Done => Ok(()),
            Kind::UntilClose => {
                self.kind = Kind::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }

    /// Checks the body bytes `buf` holds without taking them: a framing
    /// error in what has already arrived is found before any of it is sent
    /// on. Whether the body is complete in `buf` is the `bool`.
    pub fn check(&self, mut buf: &[u8]) -> Result<bool, BodyError> {
        let mut kind = self.kind;
        loop {
            match &mut kind {
                Kind::Done => return Ok(true),
                Kind::Length(n) => return Ok(buf.len() as u64 >= *n),
                Kind::UntilClose => return Ok(false),
                Kind::Chunked(c) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let st = c.step(buf)?;
                    buf = &buf[st.used..];
                    if st.last {
                        kind = Kind::Trailers;
                    }
                }
                Kind::Trailers => return Ok(trailer_section(buf)?.is_some()),
            }
        }
    }
}

/// The trailer section at the front of `buf`: the bytes it takes and its
/// fields (`None` when empty), or `Ok(None)` while incomplete.
fn trailer_section(buf: &[u8]) -> Result<Option<(usize, Option<HeaderMap>)>, BodyError> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some((2, None)));
    }
    if buf.len() < 2 {
        return Ok(None);
    }
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(BodyError::BadTrailers);
        }
        return Ok(None);
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let used = match httparse::parse_headers(&buf[..end + 4], &mut slots) {
        Ok(httparse::Status::Complete((used, _))) => used,
        _ => return Err(BodyError::BadTrailers),
    };
    let mut map = HeaderMap::new();
    for h in slots.iter().take_while(|h| !h.name.is_empty()) {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| BodyError::BadTrailers)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| BodyError::BadTrailers)?;
        if !is_forbidden_trailer(&name) {
            map.append(name, value);
        }
    }
    Ok(Some((used, Some(map).filter(|m| !m.is_empty()))))
}

/// Fields a trailer must not carry (RFC 9110 section 6.5.1): framing,
/// routing and connection fields, which are dropped rather than passed on.
fn is_forbidden_trailer(name: &HeaderName) -> bool {
    use http::header::*;
    [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        HOST,
        CONNECTION,
        TE,
        TRAILER,
        UPGRADE,
        CONTENT_TYPE,
        CONTENT_ENCODING,
        CONTENT_RANGE,
        AUTHORIZATION,
        SET_COOKIE,
        COOKIE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data, the trailers, whether the body ended, and what is left.
    type Read = (Vec<u8>, Option<HeaderMap>, bool, Vec<u8>);

    fn all(framing: Framing, parts: &[&[u8]]) -> Result<Read, BodyError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(b) => data.extend_from_slice(&b),
                    Decoded::Trailers(t) => trailers = Some(t),
                    Decoded::End | Decoded::More => break,
                }
            }
        }
        Ok((data, trailers, d.is_done(), buf.to_vec()))
    }

    #[test]
    fn lengths_stop_at_the_length() {
        let (data, _, done, rest) = all(Framing::Length(5), &[b"hel", b"loGET"]).unwrap();
        assert_eq!(
            (data, done, rest),
            (b"hello".to_vec(), true, b"GET".to_vec())
        );
        assert!(Decoder::new(Framing::Length(0)).is_done());
        assert!(Decoder::new(Framing::Empty).is_done());
    }

    #[test]
    fn chunked_bodies_end_after_their_trailers_in_any_split() {
        let wire = b"5\r\nhello\r\n0\r\nx-checksum: 1\r\ncontent-length: 9\r\n\r\nNEXT";
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            let (data, trailers, done, rest) = all(Framing::Chunked, &[a, b]).unwrap();
            assert_eq!(data, b"hello", "cut {cut}");
            assert!(done, "cut {cut}");
            assert_eq!(rest, b"NEXT", "cut {cut}");
            let t = trailers.expect("trailers");
            assert_eq!(t["x-checksum"], "1");
            assert!(
                !t.contains_key("content-length"),
                "framing fields are dropped"
            );
        }
        let (_, trailers, done, rest) = all(Framing::Chunked, &[b"0\r\n\r\nX"]).unwrap();
        assert!(trailers.is_none() && done);
        assert_eq!(rest, b"X");
    }

    #[test]
    fn a_check_finds_errors_in_what_has_arrived() {
        let d = Decoder::new(Framing::Chunked);
        assert_eq!(
            d.check(b"3;foo=\"a\r\nb\"\r\n"),
            Err(BodyError::BadChunk(BadChunk))
        );
        assert_eq!(d.check(b"3\r\nab"), Ok(false));
        assert_eq!(d.check(b"3\r\nabc\r\n0\r\n\r\n"), Ok(true));
        assert_eq!(
            d.check(b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"),
            Err(BodyError::BadTrailers)
        );
    }

    #[test]
    fn the_end_of_the_connection_ends_only_until_close_bodies() {
        let mut d = Decoder::new(Framing::UntilClose);
        assert_eq!(d.eof(), Ok(()));
        assert!(d.is_done());
        let mut d = Decoder::new(Framing::Length(3));
        assert_eq!(d.eof(), Err(BodyError::Truncated));
        let mut d = Decoder::new(Framing::Chunked);
        assert_eq!(d.eof(), Err(BodyError::Truncated));
    }
}
