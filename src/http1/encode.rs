//! Writing HTTP/1.1 heads: request heads for upstreams (always origin-form,
//! RFC 9112 section 3.2.1) and the pieces of answer heads, with the `date`
//! every answer carries. Bodies' framing is [`super::chunked`]'s and
//! [`super::body`]'s.

use http::{Request, StatusCode};

/// Appends one `name: value` line.
pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends an answer's status line.
pub fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a `content-length: n` line.
pub fn content_length(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "content-length: {n}\r\n");
}

/// Methods whose requests servers expect a length on: a bodiless one says
/// `content-length: 0` (some answer 411 otherwise).
pub fn expects_body(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    )
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHeader {
    /// None: a bodiless request (`content-length: 0` for POST, PUT, PATCH).
    None,
    Length(u64),
    Chunked,
}

/// Serializes a request head in origin-form: the URI's path and query as
/// the target, every header of the request, and the framing header for
/// `body` (the request's own `content-length` and `transfer-encoding`
/// must already be gone).
pub fn request_head(req: &Request<impl Sized>, body: BodyHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match body {
        BodyHeader::None if expects_body(req.method()) => content_length(out, 0),
        BodyHeader::None => {}
        BodyHeader::Length(n) => content_length(out, n),
        BodyHeader::Chunked => put_header(out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The `date` header value, formatted once per second per thread.
pub mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }

    pub fn now() -> [u8; 29] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                let text = httpdate::fmt_http_date(now);
                if text.len() == 29 {
                    c.1.copy_from_slice(text.as_bytes());
                    c.0 = secs;
                }
            }
            c.1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_origin_form() {
        let req = Request::get("http://u:1/a/b?x=1")
            .header("host", "shop")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        request_head(&req, BodyHeader::None, &mut out);
        assert_eq!(
            out,
            b"GET /a/b?x=1 HTTP/1.1\r\nhost: shop\r\nx-request-id: abc\r\n\r\n"
        );
        let post = Request::post("/").body(()).unwrap();
        out.clear();
        request_head(&post, BodyHeader::None, &mut out);
        assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        request_head(&post, BodyHeader::Chunked, &mut out);
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        out.clear();
        let get = Request::get("/g").body(()).unwrap();
        request_head(&get, BodyHeader::Length(7), &mut out);
        assert_eq!(out, b"GET /g HTTP/1.1\r\ncontent-length: 7\r\n\r\n");
    }

    #[test]
    fn status_lines() {
        let mut out = Vec::new();
        status_line(&mut out, StatusCode::NOT_FOUND);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    }
}
