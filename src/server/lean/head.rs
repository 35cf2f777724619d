//! Reading a request head for the lean path: one httparse pass over the
//! read buffer, and the request built from the head split off it. A head
//! the path does not take leaves the buffer as it was, for hyper.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use super::{MAX_HEAD, MAX_HEADERS};
use crate::proxy::body::Inbound;

/// A request head this path takes, and what the connection does after it.
pub(super) struct Head {
    pub req: Request<Inbound>,
    /// The client asked to close after this request.
    pub close: bool,
}

// Returned once per head and matched at once: boxing the large variant
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    /// A complete head this path takes, already split off the buffer.
    Take(Head),
    /// Not complete yet.
    Partial,
    /// Complete or broken, but not for this path: hyper's.
    Other,
}

/// Parses the head at the front of `buf`. A head this path takes is split
/// off `buf`; anything else leaves `buf` as it was.
pub(super) fn parse(buf: &mut BytesMut) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Where each header's name and value lie in the head, so that the head
    // can be split off the buffer before the header map is built: values
    // then share the read buffer instead of a copy of the head.
    let mut spans = [[0u32; 4]; MAX_HEADERS];
    let (len, method, path, count) = {
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
        {
            // Too long: hyper's to refuse (431), as for a partial one.
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Parsed::Other,
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Other,
        };
        let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Other;
        };
        if !path.starts_with('/') {
            return Parsed::Other;
        }
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Parsed::Other;
        };
        if method == Method::CONNECT {
            return Parsed::Other;
        }
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
            let (name, value) = (h.name.as_bytes(), h.value);
            *span = [at(name), name.len() as u32, at(value), value.len() as u32];
        }
        (
            len,
            method,
            (at(path.as_bytes()), path.len()),
            req.headers.len(),
        )
    };
    let head = buf.split_to(len).freeze();
    match build(&head, method, path, &spans[..count]) {
        Some(head) => Parsed::Take(head),
        None => {
            // Not this path's after all: the bytes go back as they came, for
            // hyper. Once per connection at most, as hyper keeps it from here.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Parsed::Other
        }
    }
}

/// The request whose head is `head`, with its target and headers where
/// [`parse`] found them; `None` when it is not this path's to serve.
fn build(head: &Bytes, method: Method, path: (u32, usize), spans: &[[u32; 4]]) -> Option<Head> {
    let slice = |start: u32, len: usize| head.slice(start as usize..start as usize + len);
    let uri = Uri::from_maybe_shared(slice(path.0, path.1)).ok()?;
    let mut headers = crate::proxy::spare::take(spans.len() + 6);
    let mut close = false;
    for &[name_at, name_len, value_at, value_len] in spans {
        let raw_name = &head[name_at as usize..(name_at + name_len) as usize];
        let name = HeaderName::from_bytes(raw_name).ok()?;
        // Bodies, upgrades and `Expect` are hyper's to handle.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(slice(value_at, value_len as usize)).ok()?;
        if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return None;
                }
            }
        }
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Some(Head {
        req: Request::from_parts(parts, Inbound::Empty),
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_header_values_are_taken_where_they_stand() {
        for raw in [
            "GET / HTTP/1.1\r\nHost: t\r\nX-Empty:\r\n\r\n",
            "GET / HTTP/1.1\r\nX-Empty:   \r\nHost: t\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: t\nX-Empty:\n\n",
        ] {
            let mut buf = BytesMut::from(raw);
            let Parsed::Take(head) = parse(&mut buf) else {
                panic!("{raw:?} not taken");
            };
            let h = head.req.headers();
            assert_eq!(
                (h["x-empty"].as_bytes(), h["host"].as_bytes()),
                (&b""[..], &b"t"[..])
            );
            assert!(buf.is_empty());
        }
    }
}
