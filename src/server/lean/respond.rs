//! Writing an answer on the lean path, framed as hyper frames it: the
//! `content-length` the answer has, else one from an exact body size, else
//! chunked; no body for `HEAD`, 1xx, 204 and 304; a `date` header when there
//! is none. Small bodies go out in one write with the head.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Frame;

use http::header;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::COALESCE;
use crate::proxy::body::{BoxError, ResponseBody};
use crate::server::conn::ClientIo;

/// Writes `resp` to the client, closing after it when `close` (or the
/// answer itself says `connection: close`). `Ok(true)` when it went out
/// whole and the connection can carry another request.
pub(super) async fn respond(
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
    if let Some(raw) = body.take_raw_headers() {
        // The upstream's lines, but for names the proxy set (as an `insert`
        // into a full map would have it). A 204's length never gets here.
        declared = raw.declared();
        has_date = raw.has_date;
        raw.write_to(out, &parts.headers);
    }
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
    // The head is written out: its map is spare.
    crate::proxy::spare::give(parts.headers);
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
        // What is gathered goes out as soon as the body has nothing more
        // ready: a trickling answer reaches the client part by part.
        let frame = match ready_frame(&mut body) {
            Some(frame) => frame,
            None => {
                if pending_head {
                    io.write_all(out).await?;
                    pending_head = false;
                }
                body.frame().await
            }
        };
        let frame = match frame {
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

/// The body's next frame if it is ready now, without waiting: `None` when
/// it is not. (Polled again with the real waker when it is not ready.)
fn ready_frame(body: &mut ResponseBody) -> Option<Option<Result<Frame<Bytes>, BoxError>>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
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

    use http::header::{HeaderName, HeaderValue};
    use tokio::io::AsyncReadExt;
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
