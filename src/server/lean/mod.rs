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
//! The connection's timeouts are [`ClientIo`]'s, as under hyper. [`head`]
//! reads a request head, [`respond`] writes an answer as hyper frames it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use http::Method;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

mod head;
mod respond;

use self::head::{Parsed, parse};
use self::respond::respond;
use super::conn::ClientIo;
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
        let handling = std::pin::pin!(proxy.handle_passing_head(head.req, down));
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
