//! What the fuzz targets check, as plain functions: `fuzz_targets/*` hand
//! them libFuzzer's inputs, and `tests/corpus.rs` replays the committed
//! corpus and every crash found so far through them on stable Rust, so a
//! fixed crash cannot come back.
//!
//! Each check panics on a violation. Where another implementation defines
//! the right answer it is compared with (differential): `httparse` for the
//! syntax of heads and chunk-size lines; otherwise the codec is checked
//! against its own invariants (split invariance, idempotence, round trips).

use bytes::BytesMut;
use strangler::http1::body::{Decoded, Decoder, Framing};
use strangler::http1::request::{self, HeadError};
use strangler::http1::response::{self, Asked};

/// The request-head parser over arbitrary bytes, as a pipelined stream:
/// - never panics;
/// - a head it takes is one `httparse` parses to the same length, method,
///   target and header lines (it is stricter, never looser);
/// - the framing it decides follows from the headers: chunked only with a
///   single `transfer-encoding: chunked` and no `content-length`; a length
///   only when every `content-length` says it; never both;
/// - it is the same whether the bytes arrive whole or in two parts.
pub fn request_head(data: &[u8]) {
    let whole = parse_requests(data, &[data.len()]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = parse_requests(data, &[cut, data.len()]);
    assert_eq!(whole, split, "a split at {cut} changed the result");
}

/// What parsing a stream of heads gave: per head, its length, framing and
/// flags, and how the stream ended.
type Parsed = (Vec<(usize, String, bool, bool, bool)>, Option<HeadError>);

/// Parses heads off `data` fed up to each of `cuts` in turn; bodies are
/// skipped by the framing the parser decided.
fn parse_requests(data: &[u8], cuts: &[usize]) -> Parsed {
    let mut heads = Vec::new();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut body: Option<Decoder> = None;
    for &cut in cuts {
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            if let Some(d) = &mut body {
                match d.decode(&mut buf) {
                    Ok(Decoded::Data(_) | Decoded::Trailers(_)) => continue,
                    Ok(Decoded::End) => body = None,
                    Ok(Decoded::More) => break,
                    Err(_) => return (heads, Some(HeadError::Framing("body"))),
                }
            }
            let before = buf.clone();
            match request::parse(&mut buf) {
                Ok(None) => break,
                Err(e) => return (heads, Some(e)),
                Ok(Some(head)) => {
                    let len = before.len() - buf.len();
                    check_request_against_httparse(&before[..len], &head);
                    heads.push((
                        len,
                        format!("{:?}", head.framing),
                        head.keep_alive,
                        head.upgrade,
                        head.expect_continue,
                    ));
                    if head.framing != Framing::Empty {
                        body = Some(Decoder::new(head.framing));
                    }
                }
            }
        }
    }
    (heads, None)
}

fn check_request_against_httparse(raw: &[u8], head: &request::RequestHead) {
    let mut slots = vec![httparse::EMPTY_HEADER; strangler::http1::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let status = req.parse(raw).expect("a head the codec took must parse");
    assert_eq!(status, httparse::Status::Complete(raw.len()), "head length");
    assert_eq!(req.method, Some(head.parts.method.as_str()), "method");
    let target = req.path.expect("a target");
    if target.starts_with('/') {
        let pq = head.parts.uri.path_and_query().map(|pq| pq.as_str());
        assert_eq!(pq, Some(target), "target");
    }
    assert_eq!(req.headers.len(), head.parts.headers.len(), "header count");
    let mut lengths = Vec::new();
    let mut te = Vec::new();
    for h in req.headers.iter() {
        assert!(
            head.parts
                .headers
                .get_all(h.name)
                .iter()
                .any(|v| v.as_bytes() == h.value),
            "header {:?} lost",
            h.name
        );
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value.to_vec());
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(h.value.to_vec());
        }
    }
    match head.framing {
        Framing::Chunked => {
            assert!(lengths.is_empty(), "chunked beside a length");
            assert_eq!(te.len(), 1, "chunked from more than one header");
            assert!(te[0].trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        Framing::Length(n) => {
            assert!(te.is_empty(), "a length beside transfer-encoding");
            for v in &lengths {
                for part in v.split(|&b| b == b',') {
                    assert_eq!(
                        std::str::from_utf8(part.trim_ascii())
                            .ok()
                            .and_then(|s| s.parse().ok()),
                        Some(n),
                        "a length other than the one decided"
                    );
                }
            }
        }
        Framing::Empty => assert!(te.is_empty(), "transfer-encoding on a bodiless request"),
        Framing::UntilClose => panic!("a request body until close"),
    }
}

/// The chunked decoder over arbitrary bytes:
/// - never panics;
/// - gives the same data, trailers and end whether the bytes come whole,
///   in two parts or one byte at a time;
/// - whatever it accepts, httparse's chunk-size reader accepts too, with
///   the same sizes (the codec is the stricter);
/// - re-encoding what it decoded decodes to the same data.
pub fn chunked(data: &[u8]) {
    let whole = decode(data, &[data.len()]);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    assert_eq!(whole, decode(data, &[cut, data.len()]), "split at {cut}");
    if data.len() <= 512 {
        let bytes: Vec<usize> = (1..=data.len()).collect();
        assert_eq!(whole, decode(data, &bytes), "byte by byte");
    }
    if let Ok((body, true, used)) = &whole {
        // httparse takes at most 15 hex digits in a size; the codec takes
        // leading zeros beyond that (as hyper does), so longer runs are not
        // compared.
        let long_sizes = data
            .split(|b| !b.is_ascii_hexdigit())
            .any(|run| run.len() > 15);
        if !long_sizes {
            assert_eq!(
                reference_sizes(&data[..*used]),
                Some(body.clone()),
                "httparse disagrees"
            );
        }
        let mut encoded = Vec::new();
        if !body.is_empty() {
            strangler::http1::chunked::encode_size(body.len(), &mut encoded);
            encoded.extend_from_slice(body);
            encoded.extend_from_slice(strangler::http1::chunked::CHUNK_END);
        }
        encoded.extend_from_slice(strangler::http1::chunked::LAST_CHUNK);
        let again = decode(&encoded, &[encoded.len()]);
        assert_eq!(again, Ok((body.clone(), true, encoded.len())), "round trip");
    }
}

/// The data, whether the body ended, and the bytes it took.
type Decoding = Result<(Vec<u8>, bool, usize), String>;

fn decode(data: &[u8], cuts: &[usize]) -> Decoding {
    let mut d = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for &cut in cuts {
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            match d.decode(&mut buf).map_err(|e| e.to_string())? {
                Decoded::Data(b) => out.extend_from_slice(&b),
                Decoded::Trailers(_) => {}
                Decoded::End => return Ok((out, true, fed - buf.len())),
                Decoded::More => break,
            }
        }
    }
    Ok((out, false, fed - buf.len()))
}

/// A chunked body decoded with httparse's chunk-size reader: the data, or
/// `None` if it refuses. Trailers are skipped to the empty line.
fn reference_sizes(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(data) {
            Ok(httparse::Status::Complete(c)) => c,
            _ => return None,
        };
        data = &data[used..];
        if size == 0 {
            return Some(out);
        }
        let size = usize::try_from(size).ok()?;
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// The response-head parser over arbitrary bytes:
/// - never panics;
/// - a head it takes parses with httparse to the same status, and has a
///   status in 100-599;
/// - read as lines to pass through or as a map, it says the same: status,
///   framing, reuse, the bytes it took.
pub fn response_head(data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let asked = |pass| Asked {
        head_request: flags & 1 != 0,
        upgrade: flags & 2 != 0,
        pass,
    };
    let (mut a, mut b) = (BytesMut::from(data), BytesMut::from(data));
    let mapped = response::parse(&mut a, asked(false));
    let passed = response::parse(&mut b, asked(true));
    match (&mapped, &passed) {
        (Ok(Some(m)), Ok(Some(p))) => {
            assert_eq!(m.parts.status, p.parts.status);
            assert_eq!(m.framing, p.framing);
            assert_eq!(m.keep_alive, p.keep_alive);
            assert_eq!(a.len(), b.len(), "bytes taken");
            let code = m.parts.status.as_u16();
            assert!((100..=599).contains(&code), "status {code}");
            // httparse reads the same heads: interim ones skipped, the
            // final one with this status, ending where the codec stopped.
            let taken = data.len() - a.len();
            let mut at = 0;
            loop {
                let mut slots = vec![httparse::EMPTY_HEADER; strangler::http1::MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut slots);
                let Ok(httparse::Status::Complete(n)) = resp.parse(&data[at..]) else {
                    panic!("httparse refuses a head the codec took at {at}");
                };
                at += n;
                let status = resp.code.expect("a status");
                if (100..200).contains(&status) && !(status == 101 && flags & 2 != 0) {
                    continue;
                }
                assert_eq!(status, code, "status");
                assert_eq!(at, taken, "head length");
                break;
            }
        }
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        _ => panic!("mapped {mapped:?} but passed {passed:?}"),
    }
}

/// Path normalization over arbitrary text:
/// - never panics;
/// - what it gives starts with `/`, has no `.` or `..` segment, no NUL or
///   control byte, no decoded `%2F`/`%5C`/`%00`, and normalizes to itself.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for merge in [true, false] {
        let Ok(once) = strangler::path::normalize(text, merge) else {
            continue;
        };
        assert!(once.starts_with('/'), "{once:?}");
        assert!(!once.bytes().any(|b| b < 0x20 || b == 0x7f), "{once:?}");
        for seg in once.split('/') {
            assert!(seg != "." && seg != "..", "{once:?}");
        }
        if merge {
            assert!(!once.contains("//"), "{once:?}");
        }
        let twice = strangler::path::normalize(&once, merge).expect("a normal path normalizes");
        assert_eq!(once, twice, "not idempotent");
        // Encoded separators and NULs stay encoded, in upper case.
        let lower = text.to_ascii_lowercase();
        for enc in ["%2f", "%5c", "%00"] {
            if lower.contains(enc) && !once.to_ascii_lowercase().contains(enc) {
                // Only a `..` (perhaps spelled `%2e%2e`) may have removed
                // the segment holding it.
                let dots = lower.replace("%2e", ".");
                assert!(dots.contains(".."), "{text:?} lost {enc}: {once:?}");
            }
        }
    }
}
