//! Request-smuggling guard for HTTP/1.1 client connections (SPEC 3.4).
//!
//! hyper already refuses invalid or differing `content-length`s and a
//! `transfer-encoding` whose last coding is not `chunked`. What it does not
//! refuse is a request carrying *both* `transfer-encoding` and `content-length`:
//! RFC 9112 section 6.3 lets a server process it as chunked, and hyper drops the
//! `content-length` before the proxy sees the request. SPEC wants that request
//! answered 400 with nothing forwarded, so this guard follows the byte stream
//! the connection reads, finds each request head with the same parser hyper
//! uses (httparse), skips bodies by their framing, and reports the sequence
//! number of any head that has both headers. The journey then refuses that
//! request.
//!
//! The lean path ([`super::lean`]) reads the heads it serves itself and
//! takes none with a body, so the guard starts where that path hands the
//! connection to hyper, counting the requests the lean path served.
//!
//! Whenever the guard meets something it does not understand (a head hyper will
//! refuse anyway, an upgrade, HTTP/2), it switches itself off rather than guess:
//! it must never mistake body bytes for a head.

use crate::chunked::{self, Chunk};

/// Longest head the guard follows; hyper answers 431 beyond the same limit.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines the guard parses; beyond it hyper refuses the request.
const MAX_HEADERS: usize = 128;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping a `content-length` body.
    Body {
        left: u64,
    },
    Chunked(Chunk),
    /// Not following the stream any more.
    Off,
}

/// Follows one connection's request stream. See the module docs.
#[derive(Debug)]
pub struct H1Guard {
    state: State,
    /// Heads seen so far; the n-th head is request number n.
    heads: u32,
}

impl Default for H1Guard {
    fn default() -> Self {
        H1Guard {
            state: State::Head(Vec::new()),
            heads: 0,
        }
    }
}

impl H1Guard {
    /// A guard that starts following at a head boundary after `served`
    /// requests were read by someone else (the lean path): its first head is
    /// request number `served + 1`.
    pub fn after(served: u32) -> Self {
        H1Guard {
            state: State::Head(Vec::new()),
            heads: served,
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self.state, State::Off)
    }

    /// Feeds bytes read from the client. Returns the 1-based number of the
    /// first request in them that carries both `transfer-encoding` and
    /// `content-length`.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<u32> {
        let mut found = None;
        while !data.is_empty() {
            match &mut self.state {
                State::Off => return found,
                State::Head(buf) => {
                    // A head ends with '\n', so the byte completing it is in `data`:
                    // parse when `data` has one (scanning 3 bytes back for "\r\n\r\n").
                    let old = buf.len();
                    if old + data.len() > MAX_HEAD + 4 {
                        self.state = State::Off;
                        return found;
                    }
                    let scan_from = old.saturating_sub(3);
                    let result = if old == 0 {
                        // The common case: the whole head in one read, no copy.
                        if !data.contains(&b'\n') {
                            buf.extend_from_slice(data);
                            return found;
                        }
                        self.parse_head(data)
                    } else {
                        buf.extend_from_slice(data);
                        if !buf[scan_from..].contains(&b'\n') {
                            return found;
                        }
                        let head = std::mem::take(buf);
                        let r = self.parse_head(&head);
                        if matches!(r, HeadResult::Partial) {
                            self.state = State::Head(head);
                        }
                        r
                    };
                    match result {
                        HeadResult::Partial => {
                            if old == 0 {
                                self.state = State::Head(data.to_vec());
                            }
                            return found;
                        }
                        HeadResult::Off => {
                            self.state = State::Off;
                            return found;
                        }
                        HeadResult::Done { len, conflict } => {
                            if conflict && found.is_none() {
                                found = Some(self.heads);
                            }
                            // What follows the head is its body or the next head.
                            data = data.get(len.saturating_sub(old)..).unwrap_or(&[]);
                        }
                    }
                }
                State::Body { left } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::Chunked(c) => match chunked::step(*c, data) {
                    Ok(st) => {
                        data = &data[st.used..];
                        self.state = match st.next {
                            Some(c) => State::Chunked(c),
                            None => State::Head(Vec::new()),
                        };
                    }
                    Err(_) => {
                        // Malformed: hyper refuses it too; stop following.
                        self.state = State::Off;
                        return found;
                    }
                },
            }
        }
        found
    }

    fn parse_head(&mut self, buf: &[u8]) -> HeadResult {
        if let Some(len) = plain_head_len(buf) {
            self.heads += 1;
            self.state = State::Head(Vec::new());
            return HeadResult::Done {
                len,
                conflict: false,
            };
        }
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return HeadResult::Partial,
            Err(_) => return HeadResult::Off,
        };
        self.heads += 1;
        let mut te_final_chunked = None;
        let mut content_length: Option<Option<u64>> = None;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te_final_chunked = Some(crate::chunked::ends_chunked(h.value));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let parsed = crate::chunked::content_length(h.value);
                content_length = match (content_length, parsed) {
                    (None, p) => Some(p),
                    (Some(Some(a)), Some(b)) if a == b => Some(Some(a)),
                    _ => Some(None),
                };
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let conflict = te_final_chunked.is_some() && content_length.is_some();
        self.state = if upgrade {
            // After a 101 the bytes are not HTTP any more; whether the upgrade
            // happens is decided upstream, so stop following.
            State::Off
        } else {
            match (te_final_chunked, content_length) {
                (Some(true), _) => State::Chunked(Chunk::START),
                (Some(false), _) | (None, Some(None)) => State::Off,
                (None, Some(Some(0))) | (None, None) => State::Head(Vec::new()),
                (None, Some(Some(n))) => State::Body { left: n },
            }
        };
        HeadResult::Done { len, conflict }
    }
}

/// The length of a complete CRLF-terminated head that has no
/// `content-length`, `transfer-encoding` or `upgrade` header and is not a
/// CONNECT: a request without a body, whose framing needs no parse. The
/// common GET takes this path; anything else gets the full parse.
fn plain_head_len(buf: &[u8]) -> Option<usize> {
    // One pass over the lines: the request line first, then headers until
    // the empty line that ends the head.
    let first_end = memchr::memchr(b'\n', buf)?;
    let request_line = buf[..first_end].strip_suffix(b"\r")?;
    let version = request_line.get(request_line.len().checked_sub(9)?..)?;
    if !(version == b" HTTP/1.1" || version == b" HTTP/1.0")
        || request_line.starts_with(b"CONNECT ")
    {
        return None;
    }
    let mut pos = first_end + 1;
    loop {
        let end = pos + memchr::memchr(b'\n', &buf[pos..])?;
        let line = buf[pos..end].strip_suffix(b"\r")?;
        if line.is_empty() {
            return Some(end + 1);
        }
        let starts =
            |name: &[u8]| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        let framing = match line[0] {
            b'c' | b'C' => starts(b"content-length"),
            b't' | b'T' => starts(b"transfer-encoding"),
            b'u' | b'U' => starts(b"upgrade"),
            _ => false,
        };
        if framing {
            return None;
        }
        pos = end + 1;
    }
}

enum HeadResult {
    Partial,
    Off,
    Done { len: usize, conflict: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> (Option<u32>, H1Guard) {
        let mut g = H1Guard::default();
        let mut found = None;
        for p in parts {
            if let Some(f) = g.feed(p) {
                found.get_or_insert(f);
            }
        }
        (found, g)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    const SMUGGLE: &[u8] =
        b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn finds_both_headers_on_the_first_request() {
        assert_eq!(feed_all(&[SMUGGLE]).0, Some(1));
        let te_first =
            b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(feed_all(&[te_first]).0, Some(1));
    }

    #[test]
    fn follows_bodies_to_later_requests() {
        let cl_body = b"POST /a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello";
        let chunked = b"POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n";
        let stream = [GET, cl_body.as_slice(), chunked.as_slice(), SMUGGLE].concat();
        assert_eq!(feed_all(&[&stream]).0, Some(4));
        // The same bytes split at every position give the same answer.
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(feed_all(&[a, b]).0, Some(4), "cut at {cut}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_heads_are_not_heads() {
        let body = b"GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut stream =
            format!("POST /a HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(GET);
        let (found, g) = feed_all(&[&stream]);
        assert_eq!(found, None);
        assert!(!g.is_off());
        assert_eq!(g.heads, 2);
    }

    #[test]
    fn switches_off_when_unsure() {
        assert!(feed_all(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).1.is_off());
        assert!(
            feed_all(&[b"GET /ws HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"])
                .1
                .is_off()
        );
        assert!(
            feed_all(&[b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"])
                .1
                .is_off()
        );
        assert!(
            feed_all(&[b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"])
                .1
                .is_off()
        );
        assert!(
            feed_all(&[b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"])
                .1
                .is_off()
        );
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(feed_all(&[b"GET /", &huge]).1.is_off());
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_parse() {
        let heads: [&[u8]; 9] = [
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET /x?y HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nhost: a\n\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\ncookie: a\r\nconnection: close\r\n\r\nGET /next HTTP/1.1\r\n",
        ];
        for head in heads {
            let fast = plain_head_len(head);
            let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 16];
            let mut req = httparse::Request::new(&mut []);
            let full = httparse::ParserConfig::default()
                .parse_request_with_uninit_headers(&mut req, head, &mut slots);
            if let Some(len) = fast {
                // Taken only for complete HTTP/1.x heads without framing headers.
                assert_eq!(full, Ok(httparse::Status::Complete(len)), "{head:?}");
                assert!(req.headers.iter().all(|h| {
                    !h.name.eq_ignore_ascii_case("content-length")
                        && !h.name.eq_ignore_ascii_case("transfer-encoding")
                        && !h.name.eq_ignore_ascii_case("upgrade")
                }));
            }
        }
        assert_eq!(plain_head_len(heads[0]), Some(heads[0].len()));
        assert_eq!(plain_head_len(heads[2]), None);
        assert_eq!(
            plain_head_len(heads[6]),
            None,
            "bare LF goes to the full parse"
        );
    }

    #[test]
    fn slow_heads_are_assembled() {
        let bytes: Vec<&[u8]> = SMUGGLE.chunks(1).collect();
        assert_eq!(feed_all(&bytes).0, Some(1));
    }
}
