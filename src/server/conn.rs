//! One client connection's I/O: the timeouts that cut off slow or idle
//! clients (SPEC 3.4) and the smuggling guard, applied as a wrapper around the
//! socket so hyper needs no knowledge of either.
//!
//! Phases, decided each time hyper waits for bytes:
//! - **head**: a request head is arriving; it must be complete within
//!   `header_read_timeout`, counted from accept for the first request and from
//!   its first byte for later ones;
//! - **busy**: requests are in flight; the proxy's own timeouts apply, not these;
//! - **idle**: nothing in flight; after `idle_timeout` with no new request the
//!   connection is closed;
//! - **tunnel**: after a protocol upgrade, closed after `idle_timeout` without a
//!   byte in either direction.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::h1_guard::H1Guard;

/// State one connection shares between its I/O wrapper and the requests on it.
#[derive(Debug, Default)]
pub struct ConnShared {
    in_flight: AtomicUsize,
    /// Requests started so far; the n-th request gets number n.
    started: AtomicU32,
    /// Number of the first request whose head carried both framing headers; 0 = none.
    smuggled: AtomicU32,
    upgraded: AtomicBool,
    /// Woken when the last request in flight ends, so an idle timer starts.
    idle: AtomicWaker,
}

impl ConnShared {
    /// Marks a request as started; returns its number on this connection.
    pub fn begin(&self) -> u32 {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks a request as finished (its response body done or dropped).
    pub fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.wake();
        }
    }

    /// True when request number `n` must be refused as a smuggling attempt.
    pub fn is_smuggled(&self, n: u32) -> bool {
        self.smuggled.load(Ordering::Acquire) == n
    }

    /// After a `101`, the connection carries another protocol.
    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }
}

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

/// A client socket with timeouts and the smuggling guard.
pub struct ClientIo {
    inner: TcpStream,
    shared: Arc<ConnShared>,
    timeouts: Timeouts,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// In tunnel phase: the last time a byte moved either way.
    last_activity: Instant,
    /// `None` for HTTP/2 connections and once the guard has switched itself off.
    guard: Option<Box<H1Guard>>,
    /// Bytes the lean path read but did not take, read again first by hyper.
    unread: BytesMut,
}

impl ClientIo {
    /// `accepted` is when the connection was accepted (the first head's
    /// deadline counts from it); `http1` turns the smuggling guard on
    /// (HTTP/2 framing needs none).
    pub fn new(
        inner: TcpStream,
        shared: Arc<ConnShared>,
        timeouts: Timeouts,
        accepted: Instant,
        http1: bool,
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
            guard: http1.then(Box::default),
            unread: BytesMut::new(),
        }
    }

    /// Hands the connection from the lean path to hyper: the bytes the lean
    /// path read but did not take (`unread`) are read again first, and the
    /// smuggling guard starts at that head boundary, after the requests the
    /// lean path served, having seen them.
    pub fn hand_off(&mut self, unread: BytesMut) {
        let served = self.shared.started.load(Ordering::Relaxed);
        self.guard = Some(Box::new(H1Guard::after(served)));
        self.feed_guard(&unread);
        self.unread = unread;
    }

    /// The first bytes of a request head are in (read while the previous
    /// request was served): the head must be complete within
    /// `header_read_timeout` from now.
    pub fn head_begun(&mut self) {
        self.phase = Phase::Head {
            deadline: Instant::now() + self.timeouts.header_read,
        };
    }

    /// A request head has been read whole (by the lean path, which does not
    /// read while the request is served, as hyper does): the head deadline
    /// no longer applies, and once the request ends the idle one does.
    pub fn head_read(&mut self) {
        self.phase = Phase::Busy;
    }

    fn feed_guard(&mut self, bytes: &[u8]) {
        if let Some(g) = &mut self.guard {
            if let Some(n) = g.feed(bytes) {
                let _ = self.shared.smuggled.compare_exchange(
                    0,
                    n,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            if g.is_off() {
                self.guard = None;
            }
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.feed_guard(bytes);
        match self.phase {
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
            // Already seen by the guard and the phase logic when first read.
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes(&buf.filled()[before..]);
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
