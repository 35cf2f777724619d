//! An upstream's response body: streamed frame by frame off the connection
//! it arrives on, which goes back to the idle list once the body has ended
//! cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::h1::{RawBody, RawHeaders, Upgraded};
use crate::proxy::body::BoxError;

/// An answer's body from an upstream.
pub enum UpstreamBody {
    /// From an HTTP/1.1 upstream.
    H1(RawBody),
}

impl UpstreamBody {
    /// The answer's headers, when they pass through as the upstream's lines
    /// (see [`RawHeaders`]).
    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        match self {
            UpstreamBody::H1(raw) => raw.take_headers(),
        }
    }

    /// After a `101`: the upstream's connection, for the tunnel.
    pub fn take_upgraded(&mut self) -> Option<Upgraded> {
        match self {
            UpstreamBody::H1(raw) => raw.take_upgraded(),
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
            UpstreamBody::H1(raw) => match Pin::new(raw).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(r) => r.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(r) => r.size_hint(),
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
