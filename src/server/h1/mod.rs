//! The HTTP/1 server: every request of an HTTP/1.0 or 1.1 connection, read
//! with the one codec ([`crate::http1`]) and answered in order — bodies
//! (length or chunked) streamed to the journey as they arrive, `Expect:
//! 100-continue`, pipelining, upgrades, HTTP/1.0 keep-alive.
//!
//! One request at a time: read its head, hand the request to the journey,
//! write the answer, and go on with the bytes that followed. While the
//! journey runs, the connection keeps working for it ([`Conn::poll_pump`]):
//! it reads the request body when the journey asks for more, writes `100
//! Continue` when a waiting client is first asked, and for a bodiless
//! request watches for the client hanging up, which ends the request and
//! its upstream exchange. A head the codec refuses is answered with its
//! status and the connection closed: nothing of it is forwarded.
//!
//! The connection's timeouts are [`ClientIo`]'s; [`respond`] writes
//! answers, [`tunnel`] joins an upgraded connection to its upstream.

mod respond;
mod tunnel;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Version};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use self::respond::{Answering, Written, respond};
use super::conn::ClientIo;
use crate::http1::MAX_HEAD;
use crate::http1::body::{Decoder, Framing};
use crate::http1::incoming::{self, Feed};
use crate::http1::request::{self, HeadError, RequestHead};
use crate::proxy::body::Inbound;
use crate::proxy::{Downstream, Proxy, ProxyError};

/// Room for a typical head and a small pipelined follower.
const READ_BUF: usize = 8 * 1024;
/// The most of an answer gathered into one write with its head; a larger
/// body is written as it comes. Also what the write buffer keeps between
/// requests, so an idle connection holds little.
const COALESCE: usize = 16 * 1024;
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// After an answer that leaves part of a request body unread, how long the
/// connection reads and drops what the client still sends before closing:
/// closing with unread bytes would reset the connection and could destroy
/// the answer before the client reads it (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
/// The most a lingering close reads.
const LINGER_BYTES: usize = 1 << 20;

/// A client connection as a request is served on it.
struct Conn<'a> {
    io: &'a mut ClientIo,
    /// Bytes read and not yet taken: the next head, or (while a body is
    /// being read) nothing, as the body's bytes are the feed's.
    buf: BytesMut,
    /// The request body being read, if the request has one.
    feed: Option<Feed>,
    /// Interim bytes (`100 Continue`) to write before anything else.
    interim: Vec<u8>,
}

/// Serves requests on `io`, whose first bytes are `buf`, until the
/// connection ends.
pub async fn serve(
    io: &mut ClientIo,
    buf: BytesMut,
    proxy: &Proxy,
    down: &Downstream,
    stop: &mut watch::Receiver<bool>,
) {
    let mut conn = Conn {
        io,
        buf,
        feed: None,
        interim: Vec::new(),
    };
    let mut out = Vec::new();
    loop {
        let head = loop {
            match request::parse(&mut conn.buf) {
                Ok(Some(head)) => {
                    conn.io.head_read();
                    break head;
                }
                Ok(None) => {}
                Err(e) => return refuse(&mut conn, &mut out, proxy, down, e).await,
            }
            match read_more(conn.io, &mut conn.buf, stop).await {
                Ok(true) => {}
                // EOF, a timeout, an error, or shutdown with no request begun.
                Ok(false) | Err(_) => return,
            }
        };
        let RequestHead {
            mut parts,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        if upgrade {
            parts.extensions.insert(request::Upgrade);
        }
        let body = match framing {
            Framing::Empty => Inbound::Empty,
            framing => {
                // A framing error in what has already arrived is refused
                // before anything is forwarded.
                if Decoder::new(framing).check(&conn.buf).is_err() {
                    let e = HeadError::Framing("the chunked body is malformed");
                    return refuse(&mut conn, &mut out, proxy, down, e).await;
                }
                let read = std::mem::take(&mut conn.buf);
                let (feed, body) = incoming::channel(read, framing, expect_continue);
                conn.feed = Some(feed);
                Inbound::H1(body)
            }
        };
        let answering = Answering {
            head_request: parts.method == Method::HEAD,
            http10: parts.version == Version::HTTP_10,
            close: !keep_alive || *stop.borrow(),
        };
        let req = Request::from_parts(parts, body);
        // Pinned where it is made: the request's future is a few KiB, and
        // handing it on by value would copy it.
        let handling = std::pin::pin!(proxy.handle_passing_head(req, down));
        let Some(resp) = conn.serve_watching(handling).await else {
            // The client went away: the request is dropped with its upstream exchange.
            return;
        };
        let written = respond(&mut conn, &mut out, resp, answering).await;
        if out.capacity() > COALESCE {
            out = Vec::new();
        }
        let reusable = match written {
            Ok(Written::Upgraded(upstream)) => {
                let rest = std::mem::take(&mut conn.buf);
                return tunnel::run(conn.io, rest, upstream).await;
            }
            Ok(Written::Done { reusable }) => reusable,
            Err(_) => return,
        };
        if let Some(feed) = conn.feed.take() {
            let finished = feed.finish();
            conn.buf = finished.rest;
            if !finished.complete {
                // The rest of the body is still on its way: it cannot be
                // told from the next request.
                return linger(conn.io).await;
            }
        }
        if !reusable {
            return;
        }
        if !conn.buf.is_empty() {
            // Part of the next head came while this request was served: its
            // header_read_timeout runs from now.
            conn.io.head_begun();
        }
    }
}

impl Conn<'_> {
    /// What the connection does for a request while the journey serves it:
    /// reads its body when asked for more and writes `100 Continue` when
    /// due. `Ready` when it made progress (the request may be polled
    /// again); `Pending` with the waker kept otherwise.
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(feed) = &self.feed else {
            return Poll::Pending;
        };
        if feed.take_continue() {
            self.interim.extend_from_slice(CONTINUE);
        }
        while !self.interim.is_empty() {
            match Pin::new(&mut *self.io).poll_write(cx, &self.interim) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.interim.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        feed.poll_read(cx, &mut *self.io).map(Ok)
    }

    /// Runs `handling` while the connection works for it (see
    /// [`Conn::poll_pump`]). Without a body still to read, what the client
    /// sends meanwhile is kept in `buf` (up to a head's worth: a pipelined
    /// request), and the client closing its end ends the request (`None`),
    /// which drops its upstream exchange instead of holding it until the
    /// upstream answers.
    async fn serve_watching<F: Future>(&mut self, mut handling: Pin<&mut F>) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            loop {
                if let Poll::Ready(out) = handling.as_mut().poll(cx) {
                    return Poll::Ready(Some(out));
                }
                if let Some(feed) = &self.feed {
                    if !feed.is_done() {
                        match self.poll_pump(cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(_)) => return Poll::Ready(None),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    // The body is read whole: what follows is the connection's again.
                    if let Some(feed) = self.feed.take() {
                        self.buf = feed.finish().rest;
                    }
                }
                while self.buf.len() <= MAX_HEAD {
                    if self.buf.capacity() - self.buf.len() < 1024 {
                        self.buf.reserve(READ_BUF);
                    }
                    match tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, &mut self.buf)
                    {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Pending => break,
                    }
                }
                return Poll::Pending;
            }
        })
        .await
    }
}

/// Answers a head the codec refused (or a body whose framing is already
/// wrong) and closes: the problem answer, with the status the error calls
/// for, and an access-log line.
async fn refuse(
    conn: &mut Conn<'_>,
    out: &mut Vec<u8>,
    proxy: &Proxy,
    down: &Downstream,
    e: HeadError,
) {
    conn.feed = None;
    let resp = proxy.refuse(ProxyError::Head(e), down);
    let answering = Answering {
        head_request: false,
        http10: false,
        close: true,
    };
    if respond(conn, out, resp, answering).await.is_ok() {
        linger(conn.io).await;
    }
}

/// Closes after an answer while the client may still be sending: our end
/// is shut, then what arrives is read and dropped for a moment, so the
/// client reads the answer instead of a reset.
async fn linger(io: &mut ClientIo) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 16 * 1024];
    let mut read = 0;
    let drain = async {
        while read < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
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
