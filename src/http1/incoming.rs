//! A request body being read off a client's HTTP/1 connection, handed to
//! whoever forwards it.
//!
//! The connection belongs to its server, which also writes the answer; the
//! body belongs to the request, which may be polled by the same task (the
//! usual case) or another. They share the read buffer and a [`Decoder`]
//! behind a mutex that is never held across an await:
//!
//! - the body ([`Incoming`]) decodes what is buffered; when it needs more it
//!   says so (`wants`) and wakes the server;
//! - the server ([`Feed`]) reads from the client only while the body wants
//!   more, so a body is never read faster than it is forwarded
//!   (backpressure: at most one read's worth is held), and writes
//!   `100 Continue` when a client that expects it is first asked for bytes.
//!
//! What follows the body on the connection (a pipelined request) stays in
//! the buffer, which the server takes back when the exchange ends.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncRead;

use super::body::{BodyError, Decoded, Decoder, Framing};

/// Why a request body did not arrive whole: the client's doing, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    #[error("the request body is badly framed: {0}")]
    Framing(#[from] BodyError),
    #[error("the client closed the connection before its body was complete")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continue {
    /// The client did not ask, or has been answered.
    No,
    /// The client waits for `100 Continue` before it sends the body.
    Expected,
    /// The body has been asked for: the server is to send it.
    Wanted,
}

#[derive(Debug)]
struct Shared {
    buf: BytesMut,
    decoder: Decoder,
    /// The client's side ended (closed, reset, or the exchange is over).
    ended: bool,
    /// The body is waiting for more bytes.
    wants: bool,
    continue_: Continue,
    body: Option<Waker>,
    feed: Option<Waker>,
    /// The body was dropped: nobody will ask for more.
    gone: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes `waker` unless it is `current`'s task, which is running already.
fn wake_other(waker: &Option<Waker>, current: &Waker) {
    if let Some(w) = waker
        && !w.will_wake(current)
    {
        w.wake_by_ref();
    }
}

/// The body end: an [`http_body::Body`] of the client's request.
#[derive(Debug)]
pub struct Incoming {
    shared: Arc<Mutex<Shared>>,
}

/// The server's end; see the module docs.
#[derive(Debug)]
pub struct Feed {
    shared: Arc<Mutex<Shared>>,
}

/// How a body's exchange ended, for the connection's next request.
#[derive(Debug)]
pub struct Finished {
    /// What the connection read after the body.
    pub rest: BytesMut,
    /// The body was read to its end: the connection may carry another request.
    pub complete: bool,
}

/// A body framed as `framing`, whose first bytes (and perhaps more) are in
/// `buf`; `expect_continue` when the client waits for `100 Continue`.
pub fn channel(buf: BytesMut, framing: Framing, expect_continue: bool) -> (Feed, Incoming) {
    let shared = Arc::new(Mutex::new(Shared {
        buf,
        decoder: Decoder::new(framing),
        ended: false,
        wants: false,
        continue_: match expect_continue {
            true => Continue::Expected,
            false => Continue::No,
        },
        body: None,
        feed: None,
        gone: false,
    }));
    (
        Feed {
            shared: shared.clone(),
        },
        Incoming { shared },
    )
}

impl Incoming {
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, IncomingError>>> {
        let mut s = lock(&self.shared);
        let s = &mut *s;
        match s.decoder.decode(&mut s.buf) {
            Err(e) => {
                s.ended = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Ok(Decoded::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Ok(Decoded::Trailers(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(Decoded::End) => Poll::Ready(None),
            Ok(Decoded::More) if s.ended => Poll::Ready(Some(Err(IncomingError::Closed))),
            Ok(Decoded::More) => {
                s.wants = true;
                if s.continue_ == Continue::Expected {
                    s.continue_ = Continue::Wanted;
                }
                match &mut s.body {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                wake_other(&s.feed, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = IncomingError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, IncomingError>>> {
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.shared).decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        let (lower, upper) = lock(&self.shared).decoder.left();
        let mut hint = SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper {
            hint.set_upper(upper);
        }
        hint
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.gone = true;
        s.wants = false;
        if let Some(w) = s.feed.take() {
            w.wake();
        }
    }
}

impl Feed {
    /// Reads from `io` if the body is waiting for bytes. `Ready` when
    /// something changed (bytes read, the client's end) and the request
    /// should be polled again; `Pending` with the waker kept otherwise.
    pub fn poll_read<R: AsyncRead + Unpin>(&self, cx: &mut Context<'_>, io: &mut R) -> Poll<()> {
        let mut s = lock(&self.shared);
        let s = &mut *s;
        match &mut s.feed {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if !s.wants || s.ended || s.gone {
            return Poll::Pending;
        }
        if s.buf.capacity() - s.buf.len() < 4096 {
            s.buf.reserve(READ_SIZE);
        }
        let read = tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut s.buf);
        match read {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => s.ended = true,
            Poll::Ready(Ok(_)) => {}
        }
        s.wants = false;
        wake_other(&s.body, cx.waker());
        Poll::Ready(())
    }

    /// Whether `100 Continue` is to be written now (once): the client
    /// expects it and its body has been asked for.
    pub fn take_continue(&self) -> bool {
        let mut s = lock(&self.shared);
        let wanted = s.continue_ == Continue::Wanted;
        if wanted {
            s.continue_ = Continue::No;
        }
        wanted
    }

    /// The final answer's head is going out: `100 Continue` would come too
    /// late (RFC 9110 section 10.1.1), so it is never sent.
    pub fn answered(&self) {
        lock(&self.shared).continue_ = Continue::No;
    }

    /// The body has been read to its end.
    pub fn is_done(&self) -> bool {
        lock(&self.shared).decoder.is_done()
    }

    /// The body was dropped before its end: nobody will read the rest, so
    /// the connection cannot tell it from the next request.
    pub fn is_abandoned(&self) -> bool {
        let s = lock(&self.shared);
        s.gone && !s.decoder.is_done()
    }

    /// Ends the exchange: whatever of the body is already buffered is read
    /// and dropped, and the connection gets back what follows it. A body
    /// still in use elsewhere gets an error from now on.
    pub fn finish(self) -> Finished {
        let mut s = lock(&self.shared);
        let s = &mut *s;
        let complete = loop {
            match s.decoder.decode(&mut s.buf) {
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::Trailers(_) | Decoded::End) => break true,
                Ok(Decoded::More) | Err(_) => break false,
            }
        };
        s.ended = true;
        if let Some(w) = s.body.take() {
            w.wake();
        }
        Finished {
            rest: std::mem::take(&mut s.buf),
            complete,
        }
    }
}

/// Buffer room reserved per read of a body: big enough that a large upload
/// takes few reads, small enough that a slow upstream holds little per client.
const READ_SIZE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use tokio::io::AsyncWriteExt;

    fn poll(body: &mut Incoming) -> Poll<Option<Result<Frame<Bytes>, IncomingError>>> {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    fn data(p: Poll<Option<Result<Frame<Bytes>, IncomingError>>>) -> Bytes {
        match p {
            Poll::Ready(Some(Ok(f))) => f.into_data().expect("data"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bytes_are_read_only_when_the_body_wants_them() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let (feed, mut body) = channel(BytesMut::from(&b"he"[..]), Framing::Length(5), true);
        let mut cx = Context::from_waker(Waker::noop());
        // Nothing is read before the body is asked.
        client.write_all(b"llo").await.unwrap();
        assert!(feed.poll_read(&mut cx, &mut server).is_pending());
        assert!(!feed.take_continue(), "not asked yet");
        assert_eq!(data(poll(&mut body)), "he");
        assert!(poll(&mut body).is_pending());
        assert!(feed.take_continue(), "asked: the client may send now");
        assert!(!feed.take_continue(), "once");
        assert!(feed.poll_read(&mut cx, &mut server).is_ready());
        assert_eq!(data(poll(&mut body)), "llo");
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(body.is_end_stream() && feed.is_done());
        let done = feed.finish();
        assert!(done.complete && done.rest.is_empty());
    }

    #[tokio::test]
    async fn what_follows_the_body_goes_back_to_the_connection() {
        let buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        let (feed, mut body) = channel(buf, Framing::Chunked, false);
        assert_eq!(data(poll(&mut body)), "abc");
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        let done = feed.finish();
        assert!(done.complete);
        assert_eq!(&done.rest[..], b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn an_unread_body_is_drained_from_the_buffer_or_left_incomplete() {
        let (feed, body) = channel(BytesMut::from(&b"hello!"[..]), Framing::Length(5), false);
        drop(body);
        let done = feed.finish();
        assert!(done.complete);
        assert_eq!(&done.rest[..], b"!");
        let (feed, _body) = channel(BytesMut::from(&b"hel"[..]), Framing::Length(5), false);
        assert!(!feed.finish().complete);
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_mid_body_is_an_error() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let (feed, mut body) = channel(BytesMut::new(), Framing::Length(5), false);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(poll(&mut body).is_pending());
        assert!(feed.poll_read(&mut cx, &mut server).is_ready());
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(IncomingError::Closed)))
        ));
    }

    #[test]
    fn bad_framing_is_an_error_of_the_body() {
        let (_feed, mut body) = channel(BytesMut::from(&b"zz\r\n"[..]), Framing::Chunked, false);
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(IncomingError::Framing(_))))
        ));
    }
}
