//! Reading an upstream's response head: one httparse pass, the head split
//! off the read buffer, and its headers either built into a header map or
//! kept as the upstream's own lines ([`RawHeaders`]).
//!
//! An answer whose framing a client could read differently from the proxy
//! is refused, and the proxy answers 502 instead (RFC 9112 section 6.3, as
//! nginx does): `transfer-encoding` beside `content-length`, more than one
//! `content-length` (even equal ones), a length that is not plain digits, a
//! status outside 100-599, or a `101` the request did not ask for.
//!
//! Why the lines: building a header map from a head, and writing the map out
//! again, is most of what a small answer costs the proxy. When whoever serves
//! the client writes the answer itself (the HTTP/1 server) and nothing on the way
//! reads the headers, the head passes through as lines instead — rewritten
//! in place as `name: value\r\n` with lowercase names, so the client sees
//! what it would see from the map. A head with anything the proxy must act
//! on (a `connection` naming other headers, `upgrade`, `trailer`, `te`,
//! several or unreadable lengths) is built into a map as before.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use std::mem::MaybeUninit;

use super::body::Framing;
use super::{MAX_HEAD, MAX_HEADERS, content_length};

/// What the request was, which the answer's reading depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// A HEAD: the answer has no body whatever it declares.
    pub head_request: bool,
    /// An upgrade: a `101` is the answer it hopes for.
    pub upgrade: bool,
    /// The headers may stay the upstream's lines ([`RawHeaders`]).
    pub pass: bool,
}

/// An answer head that cannot be passed on (the proxy answers 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid answer: {0}")]
pub struct Invalid(pub &'static str);

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status and headers; no headers when they are in `raw`.
    pub parts: http::response::Parts,
    pub framing: Framing,
    /// The connection may carry another request once the body is read.
    pub keep_alive: bool,
    /// The headers as the upstream's lines, when asked for and possible.
    pub raw: Option<RawHeaders>,
    /// A `101` to an upgrade: the connection is the new protocol's now.
    pub upgraded: bool,
}

/// An answer's headers as the upstream sent them, for a server that writes
/// the answer itself: `name: value\r\n` lines, names lowercase, without the
/// hop-by-hop headers the proxy removes and without `transfer-encoding`
/// (the server frames the body itself).
///
/// While an answer carries these, its header map holds only what the proxy
/// set on it; those names replace the upstream's lines of the same name, as
/// an `insert` into a full map would.
#[derive(Debug, Clone)]
pub struct RawHeaders {
    lines: Bytes,
    /// The answer's `content-length`, [`NO_LENGTH`] when it has none: kept
    /// small, as the answer carrying these is moved a few times.
    length: u64,
    /// The lines include a `date`.
    pub has_date: bool,
}

/// [`RawHeaders`] without a `content-length`. A head that declares this very
/// length is built into a map instead of passed.
const NO_LENGTH: u64 = u64::MAX;

impl RawHeaders {
    /// The answer's `content-length`, when it has one.
    pub fn declared(&self) -> Option<u64> {
        (self.length != NO_LENGTH).then_some(self.length)
    }

    /// All the lines, each ending in CRLF.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.lines
    }

    /// Appends the lines to `out`, but for names the proxy set itself in
    /// `replaced` (the answer's header map), whose lines replace these.
    pub fn write_to(&self, out: &mut Vec<u8>, replaced: &HeaderMap) {
        // The common case: the upstream sent none of the proxy's names.
        if !replaced.keys().any(|k| self.has(k)) {
            out.extend_from_slice(&self.lines);
            return;
        }
        for line in self.lines() {
            if !replaced.keys().any(|k| named(line, k.as_str().as_bytes())) {
                out.extend_from_slice(line);
            }
        }
    }

    /// Whether a line is `name`'s.
    fn has(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        let lines = &self.lines[..];
        let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', lines).map(|i| i + 1));
        starts
            .take_while(|&at| at < lines.len())
            .any(|at| named(&lines[at..], name))
    }

    /// Each line, CRLF included.
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        memchr::memchr_iter(b'\n', &self.lines).map(move |end| {
            let line = &self.lines[start..=end];
            start = end + 1;
            line
        })
    }

    /// Each header's name and value, one by one.
    #[cfg(test)]
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines().map(|line| {
            let colon = memchr::memchr(b':', line).unwrap_or(0);
            (&line[..colon], &line[colon + 2..line.len() - 2])
        })
    }
}

/// Whether `line` (or the lines starting there) is a header line of `name`.
fn named(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len() && line[name.len()] == b':' && line.starts_with(name)
}

/// What a header means to the proxy as the head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    Date,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    /// A hop-by-hop header the proxy acts on: keeps the head in a map.
    OtherHop,
}

impl Kind {
    /// `name` is a token (httparse checked it), which makes setting bit
    /// 0x20 an exact lowercase for comparing with lowercase names of
    /// letters and `-`: no other token byte maps onto those.
    pub(super) fn of(name: &str) -> Kind {
        let name = name.as_bytes();
        let is = |lower: &[u8]| {
            name.len() == lower.len()
                && name
                    .iter()
                    .zip(lower)
                    .fold(0, |d, (a, b)| d | ((a | 0x20) ^ b))
                    == 0
        };
        match (name.len(), name.first().map_or(0, |b| b | 0x20)) {
            (2, b't') if is(b"te") => Kind::OtherHop,
            (4, b'd') if is(b"date") => Kind::Date,
            (6, b'e') if is(b"expect") => Kind::OtherHop,
            (7, b't') if is(b"trailer") => Kind::OtherHop,
            (7, b'u') if is(b"upgrade") => Kind::OtherHop,
            (10, b'c') if is(b"connection") => Kind::Connection,
            (10, b'k') if is(b"keep-alive") => Kind::KeepAlive,
            (14, b'h') if is(b"http2-settings") => Kind::OtherHop,
            (14, b'c') if is(b"content-length") => Kind::ContentLength,
            (16, b'p') if is(b"proxy-connection") => Kind::OtherHop,
            (17, b't') if is(b"transfer-encoding") => Kind::TransferEncoding,
            _ => Kind::Plain,
        }
    }
}

/// What the `connection` header(s) of an answer say.
#[derive(Debug, Default)]
struct Connection {
    close: bool,
    keep_alive: bool,
    /// Only `close` and `keep-alive` (or no header): nothing else to remove.
    plain: bool,
}

impl Connection {
    /// Reads one `connection` header's tokens.
    fn read(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',') {
            match token.trim_ascii() {
                t if t.eq_ignore_ascii_case(b"close") => self.close = true,
                t if t.eq_ignore_ascii_case(b"keep-alive") => self.keep_alive = true,
                b"" => {}
                _ => self.plain = false,
            }
        }
    }
}

/// Where a header's name and value lie in the head (which is at most
/// [`MAX_HEAD`] long), and where it goes.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    name: u32,
    value: u32,
    name_len: u16,
    value_len: u16,
    /// [`UNMAPPED`] and [`UNPASSED`] bits.
    skip: u8,
}

/// Left out of a map (and of the lines): `keep-alive`, a plain `connection`.
const UNMAPPED: u8 = 1;
/// Left out of the lines: `transfer-encoding`, as the server frames the body.
const UNPASSED: u8 = 2;

/// What the first pass learnt of a complete head.
struct Read {
    len: usize,
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
    upgraded: bool,
    /// Lines to pass through, when the head may pass (see [`RawHeaders`]).
    raw: Option<(Option<u64>, bool)>,
    count: usize,
}

/// Parses a complete head off the front of `buf`, skipping interim (1xx)
/// answers; `None` when more bytes are needed. `pass` asks for the headers
/// as [`RawHeaders`] where the head allows it.
pub fn parse(buf: &mut BytesMut, asked: Asked) -> Result<Option<ResponseHead>, Invalid> {
    loop {
        // Where each header lies, so that the head is split off the read
        // buffer before its headers are built: values then share the buffer
        // instead of a copy of the head.
        let mut spans = [Span::default(); MAX_HEADERS];
        let read = match read(buf, asked, &mut spans)? {
            First::Head(read) => read,
            First::Interim => continue,
            First::Incomplete => return Ok(None),
        };
        let mut head = buf.split_to(read.len);
        let spans = &spans[..read.count];
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = read.status;
        parts.version = Version::HTTP_11;
        let mut raw = None;
        if let Some((declared, has_date)) = read.raw
            && let Some(end) = compact(&mut head, spans, read.len)
        {
            head.truncate(end);
            // For the few headers the proxy sets on the answer.
            parts.headers = super::spare::take(4);
            raw = Some(RawHeaders {
                lines: head.freeze(),
                length: declared.unwrap_or(NO_LENGTH),
                has_date,
            });
        } else {
            parts.headers = map(&head.freeze(), spans)?;
        }
        return Ok(Some(ResponseHead {
            parts,
            framing: read.framing,
            keep_alive: read.keep_alive,
            raw,
            upgraded: read.upgraded,
        }));
    }
}

/// What the first pass found at the front of the buffer.
enum First {
    /// More bytes are needed.
    Incomplete,
    /// An interim (1xx) answer, already advanced past.
    Interim,
    Head(Read),
}

/// The first pass over a head at the front of `buf`.
fn read(
    buf: &mut BytesMut,
    asked: Asked,
    spans: &mut [Span; MAX_HEADERS],
) -> Result<First, Invalid> {
    // Uninitialized slots: zeroing 128 headers per answer would cost more
    // than parsing a typical head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(First::Incomplete),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(Invalid("response head over 64 KiB"));
        }
        Err(_) => return Err(Invalid("malformed response head")),
    };
    let status = resp
        .code
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Invalid("status outside 100-599"))?;
    let upgraded = status == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded && !asked.upgrade {
        return Err(Invalid("upstream switched protocols without being asked"));
    }
    if status.is_informational() && !upgraded {
        // 100 Continue, 103 Early Hints...: not for this client.
        bytes::Buf::advance(buf, len);
        return Ok(First::Interim);
    }
    let mut connection = Connection {
        plain: true,
        ..Connection::default()
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let mut passes = asked.pass && !upgraded;
    let (mut lengths, mut length, mut bad_length) = (0, None, None);
    let (mut chunked, mut te) = (false, false);
    let mut has_date = false;
    for (i, h) in resp.headers.iter().enumerate() {
        let name = at(h.name.as_bytes());
        let span = &mut spans[i];
        *span = Span {
            name,
            // An empty value's place is right after the colon, wherever
            // its (empty) slice points.
            value: match h.value.is_empty() {
                true => name + h.name.len() as u32 + 1,
                false => at(h.value),
            },
            // Both within a head of at most MAX_HEAD (64 KiB) bytes.
            name_len: h.name.len() as u16,
            value_len: h.value.len() as u16,
            skip: 0,
        };
        match Kind::of(h.name) {
            Kind::Plain => {}
            Kind::Date => has_date = true,
            Kind::ContentLength => {
                lengths += 1;
                match (content_length(h.value), length) {
                    (Some(n), Some(l)) if n != l => {
                        bad_length = bad_length.or(Some("differing content-lengths"));
                    }
                    (Some(n), _) => length = Some(n),
                    (None, _) => bad_length = Some("invalid content-length"),
                }
            }
            Kind::TransferEncoding => {
                te = true;
                span.skip = UNPASSED;
                // Only the last header's final coding decides.
                chunked = ends_chunked(h.value);
            }
            Kind::Connection => {
                connection.read(h.value);
                // Left out while it says only `close` or `keep-alive`.
                span.skip = UNMAPPED;
            }
            Kind::KeepAlive => span.skip = UNMAPPED,
            Kind::OtherHop => passes = false,
        }
    }
    if !connection.plain {
        // It names other headers: it stays, for the proxy's hop-by-hop rule
        // to remove what it names, and the head is the map's.
        passes = false;
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            if Kind::of(h.name) == Kind::Connection {
                span.skip = 0;
            }
        }
    }
    // Response splitting or a confused upstream (RFC 9112 section 6.1):
    // refused whatever the request, so that the connection is never reused.
    if te && lengths > 0 {
        return Err(Invalid("both transfer-encoding and content-length"));
    }
    if lengths > 1 {
        return Err(Invalid("more than one content-length"));
    }
    if let Some(bad) = bad_length {
        return Err(Invalid(bad));
    }
    // RFC 9112 section 6.3.
    let no_body = asked.head_request
        || upgraded
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let (framing, framed) = if no_body {
        (Framing::Empty, !upgraded)
    } else if te {
        match chunked {
            true => (Framing::Chunked, true),
            false => (Framing::UntilClose, false),
        }
    } else {
        match length {
            Some(0) => (Framing::Empty, true),
            Some(n) => (Framing::Length(n), true),
            None => (Framing::UntilClose, false),
        }
    };
    let http10 = resp.version == Some(0);
    let keep_alive = framed
        && if http10 {
            connection.keep_alive
        } else {
            !connection.close
        };
    // One readable length at most, and none on a 204 (which the client
    // must not be told of): anything else is the map's to sort out.
    passes &= lengths <= 1
        && bad_length.is_none()
        && length != Some(NO_LENGTH)
        && !(lengths > 0 && status == StatusCode::NO_CONTENT);
    Ok(First::Head(Read {
        len,
        status,
        framing,
        keep_alive,
        upgraded,
        raw: passes.then_some((length, has_date)),
        count: resp.headers.len(),
    }))
}

/// Rewrites the head's kept headers in place, from its start, as
/// `name: value\r\n` lines with lowercase names; the end of the lines.
/// `None` (and the head untouched) when a line would not fit: a rewritten
/// line is at most two bytes longer than an odd original (`name:value\n`),
/// which the status line's room makes up for in all but freak heads.
fn compact(head: &mut BytesMut, spans: &[Span], len: usize) -> Option<usize> {
    // Check first, so a head that does not fit is left whole for the map.
    let line_end = |i: usize| spans.get(i + 1).map_or(len, |s| s.name as usize);
    let mut w = 0;
    for (i, s) in spans.iter().enumerate() {
        if s.skip != 0 {
            continue;
        }
        let (name_len, value_len) = (s.name_len as usize, s.value_len as usize);
        if w + name_len + 2 > s.value as usize || w + name_len + value_len + 4 > line_end(i) {
            return None;
        }
        w += name_len + value_len + 4;
    }
    let mut w = 0;
    for s in spans.iter().filter(|s| s.skip == 0) {
        let (name, value) = (s.name as usize, s.value as usize);
        let (name_len, value_len) = (s.name_len as usize, s.value_len as usize);
        head.copy_within(name..name + name_len, w);
        head[w..w + name_len].make_ascii_lowercase();
        w += name_len;
        head[w..w + 2].copy_from_slice(b": ");
        w += 2;
        head.copy_within(value..value + value_len, w);
        w += value_len;
        head[w..w + 2].copy_from_slice(b"\r\n");
        w += 2;
    }
    Some(w)
}

/// The head's headers as a map, but for those [`UNMAPPED`].
fn map(head: &Bytes, spans: &[Span]) -> Result<HeaderMap, Invalid> {
    // Room for the headers the proxy adds on the way back.
    let mut map = super::spare::take(spans.len() + 4);
    for s in spans.iter().filter(|s| s.skip & UNMAPPED == 0) {
        let (name, value) = (s.name as usize, s.value as usize);
        let name = HeaderName::from_bytes(&head[name..name + s.name_len as usize])
            .map_err(|_| Invalid("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + s.value_len as usize))
            .map_err(|_| Invalid("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Whether a `transfer-encoding` value's final coding is `chunked` (only
/// the final coding of the last such header frames an answer).
fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests;
