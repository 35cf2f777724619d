//! The lean HTTP/1.1 path: serves the common request — HTTP/1.1, no body, no
//! upgrade — with one parse of its head and one write of a small answer,
//! and hands the connection to hyper, for the rest of its life, at the first
//! request it does not take.
//!
//! Why: a proxied request spends more of its user-space time in hyper's
//! server machinery (dispatch, its own buffers, re-reading the head for the
//! smuggling guard) than in the proxy's own work. The requests this path
//! takes are the simple ones, whose every rule is local to the head: it
//! reads one, checks it is one of those, and otherwise changes nothing — the
//! bytes go to hyper as they arrived, so anything unusual (a body, `Expect`,
//! an upgrade, HTTP/1.0, an absolute-form target, a malformed or oversized
//! head) is served, or refused, exactly as before.
//!
//! The connection's timeouts are [`ClientIo`]'s, as under hyper. Answers are
//! framed as hyper frames them: the `content-length` the answer has, else
//! one from an exact body size, else chunked; no body for `HEAD`, 1xx, 204
//! and 304; a `date` header when there is none.

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::conn::ClientIo;
use crate::proxy::body::{Inbound, ResponseBody};
use crate::proxy::{Downstream, Proxy};

/// Longest head this path reads; a longer one goes to hyper (which answers 431).
const MAX_HEAD: usize = super::MAX_HEAD_BYTES;
/// Most header lines this path parses; more go to hyper, which answers 431
/// past the same number (its default).
const MAX_HEADERS: usize = 100;
/// Room for a typical head and a small pipelined follower.
const READ_BUF: usize = 8 * 1024;
/// The most of an answer gathered into one write with its head; a larger
/// body is written as it comes. Also what the write buffer keeps between
/// requests, so an idle connection holds little.
const COALESCE: usize = 16 * 1024;

/// How the lean path left the connection.
pub enum Ended {
    /// Closed (or to be closed): the client went away, asked to close, a
    /// timeout passed, or the proxy is shutting down.
    Closed,
    /// A request this path does not take: hyper serves the connection from
    /// here, reading `unread` first.
    HandOff(BytesMut),
}

/// A request head this path takes, and what the connection does after it.
struct Head {
    req: Request<Inbound>,
    /// The client asked to close after this request.
    close: bool,
}

/// Serves requests on `io` until the connection ends or one must go to hyper.
pub async fn serve(
    io: &mut ClientIo,
    proxy: &Proxy,
    down: &Downstream,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::new();
    loop {
        let head = loop {
            match parse(&mut buf) {
                Parsed::Take(head) => {
                    io.head_read();
                    break head;
                }
                Parsed::Other => return Ended::HandOff(buf),
                Parsed::Partial if buf.len() > MAX_HEAD => return Ended::HandOff(buf),
                Parsed::Partial => {}
            }
            match read_more(io, &mut buf, stop).await {
                Ok(true) => {}
                // EOF, a timeout, an error, or shutdown with no request begun.
                Ok(false) | Err(_) => return Ended::Closed,
            }
        };
        let head_request = head.req.method() == Method::HEAD;
        // Pinned where it is made: the request's future is a few KiB, and
        // handing it to `serve_watching` by value would copy it.
        let handling = std::pin::pin!(proxy.handle(head.req, down));
        let Some(resp) = serve_watching(io, &mut buf, handling).await else {
            // The client went away: the request is dropped with its upstream exchange.
            return Ended::Closed;
        };
        let close = head.close || *stop.borrow();
        let reusable = respond(io, &mut out, resp, head_request, close).await;
        if out.capacity() > COALESCE {
            out = Vec::new();
        }
        if !matches!(reusable, Ok(true)) {
            return Ended::Closed;
        }
        if !buf.is_empty() {
            // Part of the next head came while this request was served: its
            // header_read_timeout runs from now.
            io.head_begun();
        }
    }
}

/// Runs `handling` while reading what the client sends meanwhile, as hyper
/// does: a pipelined request's bytes are kept in `buf` (up to a head's
/// worth), and the client closing its end ends the request (`None`), which
/// drops its upstream exchange instead of holding it until the upstream
/// answers.
async fn serve_watching<F: Future>(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    mut handling: Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while buf.len() <= MAX_HEAD {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_BUF);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads more of the connection into `buf`. `Ok(false)`: the client closed,
/// or the proxy is stopping and no request has begun.
async fn read_more(
    io: &mut ClientIo,
    buf: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
) -> io::Result<bool> {
    if buf.is_empty() && *stop.borrow() {
        return Ok(false);
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUF);
    }
    let idle = buf.is_empty();
    let mut stopping = std::pin::pin!(stop.wait_for(|s| *s));
    let mut read = std::pin::pin!(io.read_buf(buf));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(r.map(|n| n > 0));
        }
        // Between requests, shutdown closes the connection; within a head,
        // the head is read first (header_read_timeout bounds it).
        if idle && stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(false));
        }
        Poll::Pending
    })
    .await
}

// Returned once per head and matched at once: boxing the large variant
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A complete head this path takes, already split off the buffer.
    Take(Head),
    /// Not complete yet.
    Partial,
    /// Complete or broken, but not for this path: hyper's.
    Other,
}

/// Parses the head at the front of `buf`. A head this path takes is split
/// off `buf`; anything else leaves `buf` as it was.
fn parse(buf: &mut BytesMut) -> Parsed {
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
    let mut headers = HeaderMap::with_capacity(spans.len() + 6);
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

/// Writes `resp` to the client, closing after it when `close` (or the
/// answer itself says `connection: close`). `Ok(true)` when it went out
/// whole and the connection can carry another request.
async fn respond(
    io: &mut ClientIo,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    head_request: bool,
    close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    // The proxy's own answers may ask to close (after a framing error).
    let close = close
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut declared: Option<u64> = None;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            // Never on a 1xx or 204 (RFC 9110 section 8.6).
            if status.is_informational() || status == StatusCode::NO_CONTENT {
                continue;
            }
            declared = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse().ok());
        } else if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            // Framing and the connection's fate are this server's to say.
            continue;
        } else if name == header::DATE {
            has_date = true;
        }
        put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        put_header(out, b"date", &date::now());
    }
    if close {
        put_header(out, b"connection", b"close");
    }
    if bodiless {
        out.extend_from_slice(b"\r\n");
        io.write_all(out).await?;
        return Ok(!close);
    }
    let framing = match declared {
        Some(n) => Framing::Length(n),
        None => match body.size_hint().exact() {
            Some(n) => {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "content-length: {n}\r\n");
                Framing::Length(n)
            }
            None => {
                put_header(out, b"transfer-encoding", b"chunked");
                Framing::Chunked
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    let mut left = match framing {
        Framing::Length(n) => n,
        Framing::Chunked => 0,
    };
    // The head and whatever of the body is ready go out in one write.
    let mut pending_head = true;
    loop {
        if body.is_end_stream() {
            break;
        }
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            // The upstream failed mid-body: the client can only be told by
            // the connection closing before the body is complete.
            Some(Err(_)) => {
                if pending_head {
                    io.write_all(out).await?;
                }
                return Ok(false);
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: dropped, as hyper does for HTTP/1.1
        };
        if data.is_empty() {
            continue;
        }
        match framing {
            Framing::Length(_) => {
                if data.len() as u64 > left {
                    // More than declared: send what was declared, then close.
                    let fits = left as usize;
                    write_data(io, out, &mut pending_head, &data[..fits]).await?;
                    if pending_head {
                        io.write_all(out).await?;
                    }
                    return Ok(false);
                }
                left -= data.len() as u64;
                write_data(io, out, &mut pending_head, &data).await?;
            }
            Framing::Chunked => {
                let mut size = format!("{:x}\r\n", data.len()).into_bytes();
                if pending_head {
                    out.append(&mut size);
                } else {
                    io.write_all(&size).await?;
                }
                write_data(io, out, &mut pending_head, &data).await?;
                write_data(io, out, &mut pending_head, b"\r\n").await?;
            }
        }
    }
    if framing == Framing::Chunked {
        if pending_head {
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            io.write_all(b"0\r\n\r\n").await?;
        }
    }
    if pending_head {
        io.write_all(out).await?;
    }
    drop(body);
    // Fewer bytes than declared: the client would wait for the rest.
    Ok(!close && (framing == Framing::Chunked || left == 0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Small pieces join the head while it is still unsent; larger ones are
/// written on their own, so a large body is never copied.
async fn write_data(
    io: &mut ClientIo,
    out: &mut Vec<u8>,
    pending_head: &mut bool,
    data: &[u8],
) -> io::Result<()> {
    if *pending_head {
        if out.len() + data.len() <= COALESCE {
            out.extend_from_slice(data);
            return Ok(());
        }
        io.write_all(out).await?;
        *pending_head = false;
    }
    io.write_all(data).await
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `date` header value, formatted once per second.
mod date {
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
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::server::conn::{ConnShared, Timeouts};

    /// A served connection's I/O and the client's end of it.
    async fn pair() -> (ClientIo, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let timeouts = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(10),
        };
        let io = ClientIo::new(
            server,
            Arc::new(ConnShared::default()),
            timeouts,
            tokio::time::Instant::now(),
            false,
        );
        (io, client)
    }

    /// What `respond` wrote, once the server side is closed.
    async fn written(io: ClientIo, mut client: TcpStream) -> String {
        drop(io);
        let mut text = Vec::new();
        client.read_to_end(&mut text).await.unwrap();
        String::from_utf8(text).unwrap()
    }

    fn answer(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &'static str,
    ) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::full(body));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (n, v) in headers {
            resp.headers_mut()
                .append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        resp
    }

    #[tokio::test]
    async fn an_answer_asking_to_close_closes_the_connection() {
        let (mut io, client) = pair().await;
        let mut out = Vec::new();
        let resp = answer(400, &[("connection", "close")], "bad");
        let reusable = respond(&mut io, &mut out, resp, false, false)
            .await
            .unwrap();
        assert!(!reusable);
        let text = written(io, client).await;
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nbad"), "{text}");
    }

    #[tokio::test]
    async fn a_body_longer_than_declared_is_cut_at_the_length_then_closed() {
        let (mut io, client) = pair().await;
        let mut out = Vec::new();
        let resp = answer(200, &[("content-length", "3")], "hello");
        let reusable = respond(&mut io, &mut out, resp, false, false)
            .await
            .unwrap();
        assert!(!reusable);
        let text = written(io, client).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhel"), "{text}");
    }

    #[tokio::test]
    async fn a_known_length_is_declared_and_a_204_has_none() {
        let (mut io, client) = pair().await;
        let mut out = Vec::new();
        let ok = respond(&mut io, &mut out, answer(200, &[], "hello"), false, false).await;
        assert!(ok.unwrap());
        let no_content = answer(204, &[("content-length", "5")], "");
        assert!(
            respond(&mut io, &mut out, no_content, false, false)
                .await
                .unwrap()
        );
        let text = written(io, client).await;
        let (first, second) = text.split_once("hello").expect("the first body");
        assert!(first.contains("\r\ncontent-length: 5\r\n"), "{first}");
        assert!(first.contains("\r\ndate: "), "{first}");
        assert!(
            second.starts_with("HTTP/1.1 204 No Content\r\n"),
            "{second}"
        );
        assert!(!second.contains("content-length"), "{second}");
        assert!(second.ends_with("\r\n\r\n"), "{second}");
    }
}
