//! A lean HTTP/1.1 client for the common case: a request without a body.
//!
//! Most proxied requests are bodiless (GET, HEAD, DELETE). For them the proxy
//! writes the request head itself and reads the response with httparse,
//! without hyper's client dispatcher: no channel between request and
//! connection, no response callback, no body channel. The response body is
//! read straight off the socket as the client takes it, in the upstream's
//! framing (content-length, chunked, or until close), and the connection goes
//! back to its target's idle list as soon as the body has been read in full.
//!
//! Requests with a body, and upgrades, go through hyper's client
//! ([`super::conn`]): writing a body while the answer may already be coming
//! back is what hyper's connection state machine is for.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header;
use http::{Method, Request, response};
use http_body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use self::head::RawHeaders;
use self::head::parse_head;
use super::Home;
use super::conn::{IDLE_TIMEOUT, MAX_IDLE_PER_TARGET};
use crate::chunked::{self, Chunk};

/// Longest response head accepted from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Most response header lines accepted from an upstream.
const MAX_HEADERS: usize = 128;
/// Read size once a body is streaming: big enough that a 100 MiB body takes
/// few reads, small enough that a slow client holds little per connection.
const READ_CHUNK: usize = 64 * 1024;
/// Read buffer of a fresh or idle connection: a typical response head and
/// small body in one read.
const IDLE_BUF: usize = 8 * 1024;

/// A kept-alive connection to one upstream target.
#[derive(Debug)]
pub struct RawConn {
    io: TcpStream,
    /// Bytes read and not yet used.
    buf: BytesMut,
    /// The answer being read leaves the connection fit for another request
    /// (its framing and `connection` header allow it). Kept here rather than
    /// with the body: the body is moved with every answer, this box is not.
    reusable: bool,
}

impl RawConn {
    /// Connects, bounded by `timeout`. Boxed: a connection outlives many
    /// requests, and the answer body holding it is moved with each answer.
    pub async fn connect(authority: &str, timeout: Duration) -> Result<Box<RawConn>, ConnectError> {
        let io = match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ConnectError::Refused(e)),
            Err(_) => return Err(ConnectError::TimedOut),
        };
        let _ = io.set_nodelay(true);
        Ok(Box::new(RawConn {
            io,
            buf: BytesMut::with_capacity(IDLE_BUF),
            reusable: false,
        }))
    }

    /// False when the upstream closed the connection (or sent stray bytes)
    /// while it sat idle. Costs a system call only when the socket has
    /// signalled something since the last read.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.io.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream. Goes through
    /// tokio's `poll_read`, which remembers a short read drained the socket
    /// and so spares the next read a futile system call.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect failed: {0}")]
    Refused(#[source] io::Error),
    #[error("connect timed out")]
    TimedOut,
}

/// Why no usable response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Closed or reset before a single byte of an answer: on a kept-alive
    /// connection, the upstream closing it just as the request went out.
    #[error("connection closed before any answer")]
    Closed(#[source] Option<io::Error>),
    #[error("connection failed while reading the answer: {0}")]
    Io(#[source] io::Error),
    #[error("invalid answer: {0}")]
    Invalid(&'static str),
}

/// A target's idle raw connections.
#[derive(Debug, Default)]
pub struct RawIdle(Mutex<Vec<(Box<RawConn>, Instant)>>);

impl RawIdle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Box<RawConn>, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection the upstream has not closed, if one is idle.
    pub fn take(&self) -> Option<Box<RawConn>> {
        loop {
            let (conn, since) = self.lock().pop()?;
            if since.elapsed() < IDLE_TIMEOUT && conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn put(&self, conn: Box<RawConn>) {
        let mut list = self.lock();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push((conn, Instant::now()));
        }
    }

    /// Drops connections idle for longer than [`IDLE_TIMEOUT`].
    pub fn sweep(&self) {
        self.lock()
            .retain(|(_, since)| since.elapsed() < IDLE_TIMEOUT);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Methods whose requests servers expect a length on: a bodiless one says
/// `content-length: 0` (some answer 411 otherwise).
pub fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Serializes the head of a bodiless request, whose URI carries the path and
/// query to send (RFC 9112 section 3: origin-form).
pub fn encode_head(req: &Request<impl Sized>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if expects_body(req.method()) && !req.headers().contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Done,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// A parsed response head.
pub struct Head {
    /// Status and headers; no headers when they are in `raw`.
    pub parts: response::Parts,
    framing: Framing,
    keep_alive: bool,
    /// The headers as the upstream's lines, when asked for and possible.
    raw: Option<RawHeaders>,
}

/// Writes `head` and reads the response head. `head_request` says the
/// request was a HEAD (whose answer has no body whatever it declares);
/// `pass` asks for the headers as [`RawHeaders`] where the head allows.
pub async fn exchange(
    conn: &mut RawConn,
    head: &[u8],
    head_request: bool,
    pass: bool,
) -> Result<Head, ExchangeError> {
    if let Err(e) = conn.io.write_all(head).await {
        return Err(ExchangeError::Closed(Some(e)));
    }
    let mut received_any = false;
    loop {
        if !conn.buf.is_empty() {
            received_any = true;
            if let Some(head) = parse_head(&mut conn.buf, head_request, pass)? {
                return Ok(head);
            }
        }
        match std::future::poll_fn(|cx| conn.poll_fill(cx)).await {
            Ok(0) if !received_any => return Err(ExchangeError::Closed(None)),
            Ok(0) => {
                return Err(ExchangeError::Invalid(
                    "connection closed in the middle of the head",
                ));
            }
            Ok(_) => {}
            Err(e) if !received_any => return Err(ExchangeError::Closed(Some(e))),
            Err(e) => return Err(ExchangeError::Io(e)),
        }
    }
}

/// The response body, read off the connection as it is polled. The
/// connection returns to `home`'s idle list once the body has been read in
/// full, if the upstream keeps it alive.
pub struct RawBody {
    conn: Option<Box<RawConn>>,
    framing: Framing,
    home: Home,
    /// The answer's headers, when they pass through as lines: carried with
    /// the body to the server that writes the answer.
    headers: Option<RawHeaders>,
}

impl RawBody {
    /// Splits a response into its head and its body, read off `conn`.
    pub fn new(mut conn: Box<RawConn>, head: Head, home: Home) -> (response::Parts, RawBody) {
        conn.reusable = head.keep_alive;
        let mut body = RawBody {
            conn: Some(conn),
            framing: head.framing,
            home,
            headers: head.raw,
        };
        if body.framing == Framing::Done {
            body.release();
        }
        (head.parts, body)
    }

    /// The body is read in full: keep the connection if it can carry another request.
    fn release(&mut self) {
        self.framing = Framing::Done;
        if let Some(mut conn) = self.conn.take()
            && conn.reusable
            && conn.buf.is_empty()
        {
            if conn.buf.capacity() > IDLE_BUF {
                // Don't keep a streaming-sized buffer on an idle connection.
                conn.buf = BytesMut::with_capacity(IDLE_BUF);
            }
            self.home.kept().raw.put(conn);
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    /// The answer's headers, if they pass through as lines (see [`RawHeaders`]).
    pub fn take_headers(&mut self) -> Option<RawHeaders> {
        self.headers.take()
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Done => http_body::SizeHint::with_exact(0),
            Framing::Length(n) => http_body::SizeHint::with_exact(n),
            Framing::Chunked(_) | Framing::UntilClose => http_body::SizeHint::default(),
        }
    }

    pub fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing {
                Framing::Done => {
                    this.release();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = left.min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(n as usize).freeze();
                        if n == left {
                            this.release();
                        } else {
                            this.framing = Framing::Length(left - n);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(state) => match chunked::step(state, &conn.buf) {
                    Ok(st) => {
                        conn.buf.advance(st.used - st.data);
                        let data = conn.buf.split_to(st.data).freeze();
                        this.framing = match st.next {
                            Some(s) => Framing::Chunked(s),
                            None => Framing::Done,
                        };
                        if !data.is_empty() {
                            if this.framing == Framing::Done {
                                this.release();
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        if this.framing == Framing::Done || !conn.buf.is_empty() {
                            continue;
                        }
                    }
                    Err(_) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(BodyError::BadChunk)));
                    }
                },
            }
            // Need more bytes.
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    conn.reusable = false;
                    this.release();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(BodyError::Truncated)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(BodyError::Io(e))));
                }
            }
        }
    }
}

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream closed the connection before the body was complete")]
    Truncated,
    #[error("upstream connection failed mid-body: {0}")]
    Io(#[source] io::Error),
    #[error("invalid chunked body from upstream")]
    BadChunk,
}

pub(super) mod head;
#[cfg(test)]
mod tests;
