//! An upstream's response body, whichever client read its head: streamed
//! frame by frame while it drives the connection it arrives on, which goes
//! back to the idle list once the body has ended cleanly.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::conn::Driver;
use super::h1::RawBody;
use crate::proxy::body::BoxError;

pub enum UpstreamBody {
    /// From hyper's client; the driver is `None` for connections with a
    /// task of their own (upgrades) and once released.
    Hyper(Incoming, Option<Box<Driver>>),
    /// From the lean client for bodiless requests.
    Raw(RawBody),
}

impl UpstreamBody {
    /// The answer's headers, when they pass through as the upstream's lines
    /// (see [`super::h1::RawHeaders`]).
    pub fn take_raw_headers(&mut self) -> Option<super::h1::RawHeaders> {
        match self {
            UpstreamBody::Raw(raw) => raw.take_headers(),
            UpstreamBody::Hyper(..) => None,
        }
    }

    /// Called when the body is dropped without having been polled to its end:
    /// a body that had nothing left (hyper does not poll empty bodies) still
    /// returns its connection.
    pub fn dropped(&mut self) {
        if let UpstreamBody::Hyper(body, driver) = self
            && body.is_end_stream()
            && let Some(d) = driver.take()
        {
            d.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Raw(raw) => match Pin::new(raw).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            UpstreamBody::Hyper(body, driver) => {
                if let Some(d) = driver {
                    d.drive(cx);
                }
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Err(e))) => {
                        *driver = None;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                    Poll::Ready(None) => {
                        if let Some(d) = driver.take() {
                            d.release(cx);
                        }
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Raw(r) => r.is_end_stream(),
            UpstreamBody::Hyper(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Raw(r) => r.size_hint(),
            UpstreamBody::Hyper(b, _) => b.size_hint(),
        }
    }
}

/// Why [`read_bounded`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The body failed (reset, invalid framing).
    Failed,
    /// The body is larger than the limit.
    TooLarge,
}

/// Reads a whole answer that must be held (a composition leg to parse, a
/// shadow answer to compare), giving up at `limit` bytes.
pub async fn read_bounded(mut body: UpstreamBody, limit: usize) -> Result<Bytes, ReadError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Failed)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
