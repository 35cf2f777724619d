//! The HTTP/1.1 client to upstreams, for every request: bodiless ones,
//! uploads and upgrades, framed by the one codec ([`crate::http1`]) the
//! server uses too.
//!
//! The proxy writes the request head itself, and the body as it arrives
//! ([`upload`]); the answer's head is read with the codec and its body
//! straight off the socket as the client takes it, in the upstream's
//! framing (content-length, chunked, or until close). While the answer is
//! awaited, and then while its body streams, the upload goes on: an
//! upstream may answer before it has read the whole request. The connection
//! goes back to its target's idle list as soon as both directions are done
//! cleanly. A `101` hands the connection over whole, for the tunnel.

pub mod upload;

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use self::upload::{Upload, UploadError};
use super::Home;
use crate::http1::body::{BodyError, Decoded, Decoder};
pub use crate::http1::response::RawHeaders;
use crate::http1::response::{self, Asked, ResponseHead};

/// Idle connections kept per target: enough for bursts of a few hundred
/// concurrent requests without reconnecting, bounded so a spike does not leave
/// thousands of sockets open afterwards.
pub const MAX_IDLE_PER_TARGET: usize = 256;
/// How long an idle connection is kept. Below the 60 s that common backends
/// (nginx, Node) keep idle connections, so the proxy closes first and rarely
/// sends on a connection the upstream is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
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
    /// (its framing and `connection` header allow it, and the request went
    /// out whole). Kept here rather than with the body: the body is moved
    /// with every answer, this box is not.
    reusable: bool,
}

/// A connection whose request was answered `101`: the new protocol's
/// bytes, those already read first.
#[derive(Debug)]
pub struct Upgraded {
    pub io: TcpStream,
    pub read: BytesMut,
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
    #[error(transparent)]
    Invalid(#[from] response::Invalid),
    /// The client's request body failed while it was sent: the client's
    /// doing, not the upstream's.
    #[error("the request body failed: {0}")]
    ClientBody(#[source] crate::proxy::body::BoxError),
}

/// Why no response head arrived, connecting included.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

impl From<ConnectError> for SendError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Refused(e) => SendError::Connect(e),
            ConnectError::TimedOut => SendError::ConnectTimeout,
        }
    }
}

/// A target's idle connections.
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

/// Writes `head`, then the body in `upload` while reading the answer's
/// head. Returns the head and the upload, if it is still going (for the
/// answer's body to drive); an answer of 400 or more ends an unfinished
/// upload, as the upstream wants no more of it, and the connection with it.
pub async fn exchange(
    conn: &mut RawConn,
    head: &[u8],
    mut upload: Option<Box<Upload>>,
    asked: Asked,
) -> Result<(ResponseHead, Option<Box<Upload>>), ExchangeError> {
    if let Err(e) = conn.io.write_all(head).await {
        return Err(ExchangeError::Closed(Some(e)));
    }
    let mut received_any = false;
    let mut write_failed = false;
    let head = std::future::poll_fn(|cx| {
        loop {
            if let Some(up) = &mut upload {
                match up.poll(cx, &mut conn.io) {
                    Poll::Ready(Ok(())) => upload = None,
                    Poll::Ready(Err(UploadError::Body(e))) => {
                        return Poll::Ready(Err(ExchangeError::ClientBody(e)));
                    }
                    // The upstream stopped reading: it may have answered.
                    Poll::Ready(Err(UploadError::Write(_))) => {
                        upload = None;
                        write_failed = true;
                    }
                    Poll::Pending => {}
                }
            }
            if !conn.buf.is_empty() {
                received_any = true;
                if let Some(head) = response::parse(&mut conn.buf, asked)? {
                    return Poll::Ready(Ok(head));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if !received_any => return Poll::Ready(Err(ExchangeError::Closed(None))),
                Ok(0) => {
                    return Poll::Ready(Err(ExchangeError::Io(
                        io::ErrorKind::UnexpectedEof.into(),
                    )));
                }
                Ok(_) => {}
                Err(e) if !received_any => return Poll::Ready(Err(ExchangeError::Closed(Some(e)))),
                Err(e) => return Poll::Ready(Err(ExchangeError::Io(e))),
            }
        }
    })
    .await?;
    if write_failed || (upload.is_some() && head.parts.status.as_u16() >= 400) {
        // The request did not go out whole: the connection ends with this answer.
        conn.reusable = false;
        return Ok((head, None));
    }
    conn.reusable = head.keep_alive;
    Ok((head, upload))
}

/// The response body, read off the connection as it is polled, while an
/// unfinished upload goes on. The connection returns to `home`'s idle list
/// once the body has been read in full and the request written whole, if
/// the upstream keeps it alive.
pub struct RawBody {
    conn: Option<Box<RawConn>>,
    decoder: Decoder,
    home: Home,
    /// The request body, while it is still being written (boxed: most
    /// requests have none).
    upload: Option<Box<Upload>>,
    /// The answer's headers, when they pass through as lines: carried with
    /// the body to the server that writes the answer.
    headers: Option<RawHeaders>,
    upgraded: bool,
}

impl RawBody {
    /// Splits a response into its head and its body, read off `conn`.
    pub fn new(
        mut conn: Box<RawConn>,
        head: ResponseHead,
        upload: Option<Box<Upload>>,
        home: Home,
    ) -> (http::response::Parts, RawBody) {
        if head.upgraded {
            conn.reusable = false;
        }
        let mut body = RawBody {
            conn: Some(conn),
            decoder: Decoder::new(head.framing),
            home,
            upload,
            headers: head.raw,
            upgraded: head.upgraded,
        };
        if body.decoder.is_done() && !body.upgraded {
            body.release();
        }
        (head.parts, body)
    }

    /// The body is read in full: keep the connection if it can carry
    /// another request.
    fn release(&mut self) {
        if self.upload.is_some() {
            // The request is not written whole: the connection cannot be reused.
            self.conn = None;
            return;
        }
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

    /// After a `101`: the connection, for the tunnel.
    pub fn take_upgraded(&mut self) -> Option<Upgraded> {
        if !self.upgraded {
            return None;
        }
        let conn = self.conn.take()?;
        Some(Upgraded {
            io: conn.io,
            read: conn.buf,
        })
    }

    pub fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    /// The answer's headers, if they pass through as lines (see [`RawHeaders`]).
    pub fn take_headers(&mut self) -> Option<RawHeaders> {
        self.headers.take()
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        let (lower, upper) = self.decoder.left();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper {
            hint.set_upper(upper);
        }
        hint
    }

    pub fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(up) = &mut this.upload {
                match up.poll(cx, &mut conn.io) {
                    Poll::Ready(Ok(())) => this.upload = None,
                    Poll::Ready(Err(UploadError::Body(e))) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(BodyFailed::Request(e))));
                    }
                    Poll::Ready(Err(UploadError::Write(_))) => {
                        this.upload = None;
                        conn.reusable = false;
                    }
                    Poll::Pending => {}
                }
            }
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(t)) => {
                    this.release();
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                Ok(Decoded::End) => {
                    if this.conn.is_some() {
                        this.release();
                    }
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(BodyFailed::Framing(e))));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    conn.reusable = false;
                    match this.decoder.eof() {
                        Ok(()) => {
                            this.release();
                            return Poll::Ready(None);
                        }
                        Err(e) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(BodyFailed::Framing(e))));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(BodyFailed::Io(e))));
                }
            }
        }
    }
}

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyFailed {
    #[error("invalid body from upstream: {0}")]
    Framing(#[source] BodyError),
    #[error("upstream connection failed mid-body: {0}")]
    Io(#[source] io::Error),
    /// The client's request body failed while the answer streamed.
    #[error("the request body failed: {0}")]
    Request(#[source] crate::proxy::body::BoxError),
}
