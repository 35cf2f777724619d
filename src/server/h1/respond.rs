//! Writing an answer to an HTTP/1 client: the `content-length` the answer
//! has, else one from an exact body size, else chunked (or, to an HTTP/1.0
//! client, the body until the connection closes); no body for `HEAD`, 1xx,
//! 204 and 304; a `date` header when there is none.
//!
//! The body goes out as it arrives: what is ready is gathered into one
//! write with the head (small answers take one system call), and the moment
//! the body has nothing more ready, what was gathered is sent, so a
//! trickling answer (server-sent events, a long poll) reaches the client
//! part by part. While it waits for the body, the connection keeps reading
//! the request's body for the upstream ([`super::Conn::poll_pump`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use tokio::io::AsyncWriteExt;

use super::{COALESCE, Conn};
use crate::http1::{chunked, encode};
use crate::proxy::body::{BoxError, ResponseBody};
use crate::upstream::h1::Upgraded;

/// What the answer is to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    /// A HEAD: no body, whatever the answer declares.
    pub head_request: bool,
    /// An HTTP/1.0 client: no chunked framing.
    pub http10: bool,
    /// The connection closes after this answer.
    pub close: bool,
}

/// How writing the answer ended.
pub(super) enum Written {
    /// The answer went out; `reusable` when the connection can carry another request.
    Done { reusable: bool },
    /// A `101` went out: the connection is the tunnel's now.
    Upgraded(Upgraded),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// To an HTTP/1.0 client, an answer of unknown length: until close.
    UntilClose,
}

/// Writes `resp` to the client.
pub(super) async fn respond(
    conn: &mut Conn<'_>,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    a: Answering,
) -> io::Result<Written> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    // The final head is going out: a `100 Continue` after it would be wrong.
    if let Some(feed) = &conn.feed {
        feed.answered();
    }
    // The proxy's own answers may ask to close (after a framing error), and
    // a body the journey gave up on cannot be told from the next request.
    let abandoned = conn.feed.as_ref().is_some_and(|f| f.is_abandoned());
    let mut close = a.close
        || abandoned
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let upgraded = status == StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = a.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    out.clear();
    // An interim answer still unsent goes first.
    out.append(&mut conn.interim);
    encode::status_line(out, status);
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
            declared = crate::http1::content_length(value.as_bytes());
        } else if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            // Framing and the connection's fate are this server's to say.
            continue;
        } else if name == header::DATE {
            has_date = true;
        }
        encode::put_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    // The head is written out: its map is spare.
    crate::http1::spare::give(parts.headers);
    if !has_date {
        encode::put_header(out, b"date", &encode::date::now());
    }
    if upgraded {
        // `connection: upgrade` and `upgrade` came with the answer's map.
        encode::put_header(out, b"connection", b"upgrade");
        out.extend_from_slice(b"\r\n");
        conn.io.write_all(out).await?;
        return match body.take_upgraded() {
            Some(up) => Ok(Written::Upgraded(up)),
            None => Ok(Written::Done { reusable: false }),
        };
    }
    let framing = match declared {
        _ if bodiless => None,
        Some(n) => Some(Framing::Length(n)),
        None => match body.size_hint().exact() {
            Some(n) => {
                encode::content_length(out, n);
                Some(Framing::Length(n))
            }
            None if a.http10 => {
                close = true;
                Some(Framing::UntilClose)
            }
            None => {
                encode::put_header(out, b"transfer-encoding", b"chunked");
                Some(Framing::Chunked)
            }
        },
    };
    if close {
        encode::put_header(out, b"connection", b"close");
    } else if a.http10 {
        encode::put_header(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    let Some(framing) = framing else {
        conn.io.write_all(out).await?;
        return Ok(Written::Done { reusable: !close });
    };
    let complete = write_body(conn, out, &mut body, framing).await?;
    drop(body);
    Ok(Written::Done {
        reusable: !close && complete,
    })
}

/// Writes the body after the head gathered in `out`. `Ok(false)` when the
/// body ended early (the client can only tell by the connection closing).
async fn write_body(
    conn: &mut Conn<'_>,
    out: &mut Vec<u8>,
    body: &mut ResponseBody,
    framing: Framing,
) -> io::Result<bool> {
    let mut left = match framing {
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => 0,
    };
    let mut trailers: Option<HeaderMap> = None;
    let ended = loop {
        if body.is_end_stream() {
            break true;
        }
        let frame = match ready_frame(body) {
            Some(frame) => frame,
            None => {
                // Nothing more is ready: what was gathered goes out now.
                flush(conn, out).await?;
                next_frame(conn, body).await
            }
        };
        let data = match frame {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.get_or_insert_with(HeaderMap::new).extend(t);
                    }
                    continue;
                }
            },
        };
        if data.is_empty() {
            continue;
        }
        let data = match framing {
            Framing::Length(_) if data.len() as u64 > left => {
                // More than declared: send what was declared, then close.
                let fits = data.slice(..left as usize);
                put_data(conn, out, fits).await?;
                flush(conn, out).await?;
                return Ok(false);
            }
            Framing::Length(_) => {
                left -= data.len() as u64;
                data
            }
            Framing::Chunked => {
                chunked::encode_size(data.len(), out);
                data
            }
            Framing::UntilClose => data,
        };
        put_data(conn, out, data).await?;
        if framing == Framing::Chunked {
            out.extend_from_slice(chunked::CHUNK_END);
        }
    };
    if ended && framing == Framing::Chunked {
        chunked::encode_last(trailers.as_ref(), out);
    }
    flush(conn, out).await?;
    // Fewer bytes than declared: the client would wait for the rest.
    Ok(ended && left == 0)
}

/// Gathers `data` into `out` when it is small; a larger piece is written
/// on its own after what was gathered, so a large body is never copied.
async fn put_data(conn: &mut Conn<'_>, out: &mut Vec<u8>, data: Bytes) -> io::Result<()> {
    if out.len() + data.len() <= COALESCE {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush(conn, out).await?;
    conn.io.write_all(&data).await
}

async fn flush(conn: &mut Conn<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        conn.io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

type Polled = Option<Result<Frame<Bytes>, BoxError>>;

/// The body's next frame if it is ready now, without waiting: `None` when
/// it is not (it is then polled again with the task's waker).
fn ready_frame(body: &mut ResponseBody) -> Option<Polled> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}

/// Waits for the body's next frame while the connection keeps reading the
/// request's body for the upstream (which may be what the answer waits on).
async fn next_frame(conn: &mut Conn<'_>, body: &mut ResponseBody) -> Polled {
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) {
                return Poll::Ready(frame);
            }
            match conn.poll_pump(cx) {
                Poll::Ready(Ok(())) => continue,
                // The client is gone: the body's reads will say so.
                Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::BytesMut;
    use http::header::{HeaderName, HeaderValue};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::server::conn::{ClientIo, ConnShared, Timeouts};

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

    const KEEP: Answering = Answering {
        head_request: false,
        http10: false,
        close: false,
    };

    async fn write(io: &mut ClientIo, resp: Response<ResponseBody>, a: Answering) -> bool {
        let mut conn = Conn {
            io,
            buf: BytesMut::new(),
            feed: None,
            interim: Vec::new(),
        };
        let mut out = Vec::new();
        match respond(&mut conn, &mut out, resp, a).await.unwrap() {
            Written::Done { reusable } => reusable,
            Written::Upgraded(_) => panic!("upgraded"),
        }
    }

    #[tokio::test]
    async fn an_answer_asking_to_close_closes_the_connection() {
        let (mut io, client) = pair().await;
        let resp = answer(400, &[("connection", "close")], "bad");
        assert!(!write(&mut io, resp, KEEP).await);
        let text = written(io, client).await;
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nbad"), "{text}");
    }

    #[tokio::test]
    async fn a_body_longer_than_declared_is_cut_at_the_length_then_closed() {
        let (mut io, client) = pair().await;
        let resp = answer(200, &[("content-length", "3")], "hello");
        assert!(!write(&mut io, resp, KEEP).await);
        let text = written(io, client).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhel"), "{text}");
    }

    #[tokio::test]
    async fn a_known_length_is_declared_and_a_204_has_none() {
        let (mut io, client) = pair().await;
        assert!(write(&mut io, answer(200, &[], "hello"), KEEP).await);
        let no_content = answer(204, &[("content-length", "5")], "");
        assert!(write(&mut io, no_content, KEEP).await);
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

    #[tokio::test]
    async fn http10_clients_get_no_chunked_framing() {
        let (mut io, client) = pair().await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        drop(tx);
        drop(rx);
        let streamed = ResponseBody::full("abc");
        let mut resp = Response::new(streamed);
        *resp.status_mut() = StatusCode::OK;
        let http10 = Answering {
            head_request: false,
            http10: true,
            close: false,
        };
        assert!(
            write(&mut io, resp, http10).await,
            "a known length keeps it alive"
        );
        let text = written(io, client).await;
        assert!(text.contains("\r\nconnection: keep-alive\r\n"), "{text}");
        assert!(!text.contains("chunked"), "{text}");
    }
}
