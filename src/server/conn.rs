//! One client connection's I/O: the timeouts that cut off slow or idle
//! clients (SPEC 3.4), applied as a wrapper around the socket so that
//! neither the HTTP/1 server nor hyper's HTTP/2 needs to know of them.
//!
//! Phases, decided each time the server waits for bytes:
//! - **head**: a request head is arriving; it must be complete within
//!   `header_read_timeout`, counted from accept for the first request and from
//!   its first byte for later ones;
//! - **busy**: requests are in flight; the proxy's own timeouts apply, not these;
//! - **idle**: nothing in flight; after `idle_timeout` with no new request the
//!   connection is closed. On HTTP/2 the bytes that arrive meanwhile
//!   (PING, SETTINGS, WINDOW_UPDATE) do not end it: only a stream does;
//! - **tunnel**: after a protocol upgrade, closed after `idle_timeout` without a
//!   byte in either direction.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// State one connection shares between its I/O wrapper and the requests on it.
#[derive(Debug, Default)]
pub struct ConnShared {
    in_flight: AtomicUsize,
    upgraded: AtomicBool,
    /// An HTTP/2 connection passed `idle_timeout`: it is to say GOAWAY and
    /// close (see [`ConnShared::idle_expired`]).
    idle_expired: AtomicBool,
    /// Woken when the last request in flight ends, so an idle timer starts.
    idle: AtomicWaker,
}

impl ConnShared {
    /// Marks a request as started.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks a request as finished (its response body done or dropped).
    pub fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.wake();
        }
    }

    /// After a `101`, the connection carries another protocol.
    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// Whether an HTTP/2 connection has been idle for `idle_timeout`: its
    /// server is to end it gracefully (GOAWAY), so the client knows not to
    /// send on it, instead of finding it closed.
    pub fn idle_expired(&self) -> bool {
        self.idle_expired.load(Ordering::Acquire)
    }
}

/// How long an idle HTTP/2 connection that was told GOAWAY has to close
/// before its socket is cut: a round trip or two.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// The two client timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head { deadline: Instant },
    Busy,
    Idle { deadline: Instant },
    Tunnel,
}

/// A client socket with timeouts.
pub struct ClientIo {
    inner: TcpStream,
    shared: Arc<ConnShared>,
    timeouts: Timeouts,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// In tunnel phase: the last time a byte moved either way.
    last_activity: Instant,
    /// HTTP/2: bytes do not make an idle connection busy, streams do.
    http2: bool,
    /// Bytes read before the protocol was known, read again first.
    unread: BytesMut,
}

impl ClientIo {
    /// `accepted` is when the connection was accepted: the first head's
    /// deadline counts from it.
    pub fn new(
        inner: TcpStream,
        shared: Arc<ConnShared>,
        timeouts: Timeouts,
        accepted: Instant,
    ) -> Self {
        let now = Instant::now();
        let deadline = accepted + timeouts.header_read;
        ClientIo {
            inner,
            shared,
            timeouts,
            phase: Phase::Head { deadline },
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            armed: Some(deadline),
            last_activity: now,
            http2: false,
            unread: BytesMut::new(),
        }
    }

    /// The connection speaks HTTP/2 (hyper serves it), starting with
    /// `read`, the bytes already read to find that out.
    pub fn serve_http2(&mut self, read: BytesMut) {
        self.http2 = true;
        self.unread = read;
        // With the preface in, a connection without a stream is idle.
        self.phase = Phase::Idle {
            deadline: Instant::now() + self.timeouts.idle,
        };
    }

    /// The first bytes of a request head are in (read while the previous
    /// request was served): the head must be complete within
    /// `header_read_timeout` from now.
    pub fn head_begun(&mut self) {
        self.phase = Phase::Head {
            deadline: Instant::now() + self.timeouts.header_read,
        };
    }

    /// A request head has been read whole (by the HTTP/1 server): the head
    /// deadline no longer applies, and once the request ends the idle one does.
    pub fn head_read(&mut self) {
        self.phase = Phase::Busy;
    }

    fn on_bytes(&mut self) {
        match self.phase {
            // An HTTP/2 connection is busy only while a stream is open.
            Phase::Idle { .. } if self.http2 => {}
            Phase::Idle { .. } => {
                self.phase = Phase::Head {
                    deadline: Instant::now() + self.timeouts.header_read,
                }
            }
            Phase::Tunnel => self.last_activity = Instant::now(),
            Phase::Head { .. } | Phase::Busy => {}
        }
    }

    /// The deadline that applies while waiting for bytes, moving between phases.
    fn deadline(&mut self) -> Option<Instant> {
        if self.shared.upgraded.load(Ordering::Acquire) {
            if self.phase != Phase::Tunnel {
                self.phase = Phase::Tunnel;
                self.last_activity = Instant::now();
            }
            return Some(self.last_activity + self.timeouts.idle);
        }
        if self.shared.in_flight.load(Ordering::Acquire) > 0 {
            self.phase = Phase::Busy;
            return None;
        }
        match self.phase {
            Phase::Busy | Phase::Tunnel => {
                let deadline = Instant::now() + self.timeouts.idle;
                self.phase = Phase::Idle { deadline };
                Some(deadline)
            }
            Phase::Head { deadline } | Phase::Idle { deadline } => Some(deadline),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            // Already seen by the phase logic when first read.
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                let Some(deadline) = this.deadline() else {
                    this.shared.idle.register(cx.waker());
                    // The last request may have ended between the check and the register.
                    if this.shared.in_flight.load(Ordering::Acquire) == 0 {
                        continue;
                    }
                    return Poll::Pending;
                };
                if this.armed != Some(deadline) {
                    this.timer.as_mut().reset(deadline);
                    this.armed = Some(deadline);
                }
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.phase == Phase::Tunnel
                    && this.last_activity + this.timeouts.idle > Instant::now()
                {
                    continue; // bytes moved since the timer was set
                }
                if let Phase::Idle { deadline } = this.phase
                    && this.http2
                    && !this.shared.idle_expired()
                {
                    // GOAWAY first: the server ends the connection, given
                    // GOAWAY_GRACE for it before the socket is cut.
                    this.shared.idle_expired.store(true, Ordering::Release);
                    this.phase = Phase::Idle {
                        deadline: deadline + GOAWAY_GRACE,
                    };
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let what = match this.phase {
                    Phase::Head { .. } => "request head not received within header_read_timeout",
                    _ => "connection idle for idle_timeout",
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
            },
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.phase == Phase::Tunnel {
            this.last_activity = Instant::now();
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.phase == Phase::Tunnel {
            this.last_activity = Instant::now();
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
