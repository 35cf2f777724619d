//! The body types the journey moves: what goes upstream ([`RequestBody`]) and
//! what goes back to the client ([`ResponseBody`]). Both stream; the only
//! bytes held are a replayable request body for `fallback` (at most
//! [`crate::fallback::REPLAY_LIMIT`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::body::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's request body as a server hands it to the journey: read off
/// an HTTP/1 connection by the codec ([`crate::http1::incoming`]), hyper's
/// (HTTP/2), or none.
#[derive(Debug)]
pub enum Inbound {
    H1(crate::http1::incoming::Incoming),
    /// Boxed: the request carrying it is moved a few times on its way.
    H2(Box<hyper::body::Incoming>),
    Empty,
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Inbound::H1(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            Inbound::H2(b) => Pin::new(&mut **b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            Inbound::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inbound::H1(b) => b.is_end_stream(),
            Inbound::H2(b) => b.is_end_stream(),
            Inbound::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inbound::H1(b) => b.size_hint(),
            Inbound::H2(b) => b.size_hint(),
            Inbound::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The client's body going upstream, counted against `max_request_body`.
///
/// A body with a `content-length` over the limit is refused before anything
/// is sent; the codec (hyper for HTTP/2) holds a body to its declared length.
/// A body without one (chunked, or HTTP/2 without the header) is counted while
/// it streams, and the moment it passes the limit the upstream request is
/// aborted and `tripped` is set, so the journey answers 413 instead of 502.
#[derive(Debug)]
pub struct RequestBody {
    /// Bytes already read from the client, sent before the rest of `inner`.
    held: Option<Bytes>,
    inner: Option<Inbound>,
    limit: u64,
    seen: u64,
    tripped: Option<Arc<AtomicBool>>,
}

/// The request body went past `max_request_body` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody {
            held: None,
            inner: None,
            limit: u64::MAX,
            seen: 0,
            tripped: None,
        }
    }

    /// Streams `inner`; when `tripped` is given, the limit is enforced while streaming.
    pub fn streaming(inner: Inbound, limit: u64, tripped: Option<Arc<AtomicBool>>) -> Self {
        RequestBody {
            held: None,
            inner: Some(inner),
            limit,
            seen: 0,
            tripped,
        }
    }

    /// A body read in full already (a replayable fallback body).
    pub fn full(bytes: Bytes) -> Self {
        RequestBody {
            held: (!bytes.is_empty()).then_some(bytes),
            inner: None,
            limit: u64::MAX,
            seen: 0,
            tripped: None,
        }
    }

    /// `held`, already read from the client, then the rest of `inner`,
    /// counted against `limit` from the first held byte.
    pub fn resumed(
        held: Bytes,
        inner: Inbound,
        limit: u64,
        tripped: Option<Arc<AtomicBool>>,
    ) -> Self {
        RequestBody {
            seen: held.len() as u64,
            held: Some(held),
            inner: Some(inner),
            limit,
            tripped,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(Ok(Frame::data(held))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tripped)) = (frame.data_ref(), &this.tripped) {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        tripped.store(true, Ordering::Release);
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(held + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(held + upper);
        }
        hint
    }
}

/// Something to run when a response is finished with: fully sent, failed, or
/// dropped because the client went away. The access log and the in-flight
/// counters hang off this.
pub trait OnComplete: Send + Sync + 'static {
    /// `bytes` is the body bytes handed to the client; `complete` is false when
    /// the body ended early (upstream reset, client gone).
    fn complete(self: Box<Self>, bytes: u64, complete: bool);
}

/// Sees a response body's bytes as they go to the client, and its end: a
/// shadow comparison's copy of the primary answer hangs off this.
pub trait Tee: Send + Sync + 'static {
    fn data(&mut self, data: &Bytes);
    /// `complete` is false when the body ended early.
    fn end(self: Box<Self>, complete: bool);
}

/// The client's request body as the journey holds it: still streaming, or
/// read (up to [`crate::fallback::REPLAY_LIMIT`]) so it can be sent twice.
pub enum ClientBody {
    Streaming(Inbound),
    Held(crate::fallback::Held),
}

enum Inner {
    Upstream(UpstreamBody),
    Full(Option<Bytes>),
}

/// A response body going to the client: the upstream's, streamed as is, or one
/// the proxy made itself.
pub struct ResponseBody {
    inner: Inner,
    bytes: u64,
    done: bool,
    on_complete: Option<Box<dyn OnComplete>>,
    tee: Option<Box<dyn Tee>>,
}

impl ResponseBody {
    /// Streams the upstream's body as it arrives.
    pub fn upstream(body: UpstreamBody) -> Self {
        Self::new(Inner::Upstream(body))
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        Self::new(Inner::Full((!b.is_empty()).then_some(b)))
    }

    pub fn empty() -> Self {
        Self::new(Inner::Full(None))
    }

    fn new(inner: Inner) -> Self {
        ResponseBody {
            inner,
            bytes: 0,
            done: false,
            on_complete: None,
            tee: None,
        }
    }

    /// The answer's headers, when they are still the upstream's lines: only
    /// for a server that asked for them ([`crate::proxy::Proxy::handle_passing_head`]).
    pub fn take_raw_headers(&mut self) -> Option<crate::upstream::h1::RawHeaders> {
        match &mut self.inner {
            Inner::Upstream(body) => body.take_raw_headers(),
            Inner::Full(_) => None,
        }
    }

    /// After a `101`: the upstream's connection, for the server's tunnel.
    pub fn take_upgraded(&mut self) -> Option<crate::upstream::h1::Upgraded> {
        match &mut self.inner {
            Inner::Upstream(body) => body.take_upgraded(),
            Inner::Full(_) => None,
        }
    }

    /// Runs `f` once, when the body ends or is dropped.
    pub fn on_complete(&mut self, f: Box<dyn OnComplete>) {
        self.on_complete = Some(f);
    }

    /// Shows `t` every byte and the end of the body.
    pub fn tee(&mut self, t: Box<dyn Tee>) {
        self.tee = Some(t);
    }

    fn finish(&mut self, complete: bool) {
        self.done = true;
        if let Some(t) = self.tee.take() {
            t.end(complete);
        }
        if let Some(f) = self.on_complete.take() {
            f.complete(self.bytes, complete);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                    if let Some(t) = &mut this.tee {
                        t.data(d);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if !self.done {
            // Never polled to the end: fine for empty bodies (hyper does not
            // poll those), early for others.
            let complete = self.is_end_stream();
            self.finish(complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Mutex;

    struct Record(Arc<Mutex<Option<(u64, bool)>>>);
    impl OnComplete for Record {
        fn complete(self: Box<Self>, bytes: u64, complete: bool) {
            *self.0.lock().unwrap() = Some((bytes, complete));
        }
    }

    #[tokio::test]
    async fn full_bodies_report_their_size_once_sent() {
        let seen = Arc::new(Mutex::new(None));
        let mut b = ResponseBody::full("hello");
        b.on_complete(Box::new(Record(seen.clone())));
        let collected = b.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(*seen.lock().unwrap(), Some((5, true)));
    }

    #[test]
    fn dropped_bodies_still_complete() {
        let seen = Arc::new(Mutex::new(None));
        let mut b = ResponseBody::empty();
        b.on_complete(Box::new(Record(seen.clone())));
        drop(b);
        assert_eq!(*seen.lock().unwrap(), Some((0, true)));
        let mut b = ResponseBody::full("x");
        let seen = Arc::new(Mutex::new(None));
        b.on_complete(Box::new(Record(seen.clone())));
        drop(b);
        assert_eq!(*seen.lock().unwrap(), Some((0, false)));
    }
}
