//! The deterministic byte stream behind the test backend's `/bytes/{n}`,
//! `/chunked/{n}` and `/reset/{n}`: byte `i` of every such body is
//! `(i % 251) as u8`, generated lazily so a 10 GiB body costs no memory.
//!
//! All chunks are slices of one static pattern buffer whose length is a
//! multiple of 251, so every chunk starts at pattern offset 0 and sending a
//! chunk is a reference-count-free `Bytes::from_static` — fast enough to push
//! hundreds of MiB per second over loopback.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::respond::BoxError;

/// Chunk size: 256 periods of the 251-byte pattern (62.75 KiB).
pub(crate) const CHUNK: usize = 251 * 256;

/// One chunk of the pattern, built at compile time.
static PATTERN: [u8; CHUNK] = build_pattern();

const fn build_pattern() -> [u8; CHUNK] {
    let mut buf = [0u8; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        buf[i] = (i % 251) as u8;
        i += 1;
    }
    buf
}

/// The value of byte `i` of any pattern body; exposed for tests.
#[cfg(test)]
pub(crate) fn byte_at(i: u64) -> u8 {
    (i % 251) as u8
}

/// How a [`PatternBody`] presents itself and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Exact size hint, so HTTP/1 frames it with `content-length`.
    Sized,
    /// Unknown size, so HTTP/1.1 uses chunked transfer encoding.
    Chunked,
    /// Like `Chunked` for hyper's framing purposes (the handler sets its own,
    /// larger `content-length`), and after the bytes comes an error so hyper
    /// aborts the connection mid-body. Before the error the body pauses for
    /// [`RESET_PAUSE`], so hyper flushes the headers and the bytes first —
    /// otherwise it would drop its unflushed buffer and the client would see
    /// an empty reply instead of a reset *mid-body*.
    ResetAfter,
}

/// How long a [`Mode::ResetAfter`] body waits between its last byte and
/// its error.
const RESET_PAUSE: Duration = Duration::from_millis(50);

/// A lazily generated response body of `total` pattern bytes.
#[derive(Debug)]
pub(crate) struct PatternBody {
    remaining: u64,
    mode: Mode,
    failed: bool,
    pause: Option<Pin<Box<Sleep>>>,
}

impl PatternBody {
    pub(crate) fn new(total: u64, mode: Mode) -> Self {
        PatternBody {
            remaining: total,
            mode,
            failed: false,
            pause: None,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining > 0 {
            let n = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
            this.remaining -= n as u64;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))));
        }
        if this.mode == Mode::ResetAfter && !this.failed {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(RESET_PAUSE)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.failed = true;
            return Poll::Ready(Some(Err("deliberate upstream reset mid-body".into())));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        // Only a sized body may say so early: hyper would otherwise frame an
        // empty chunked body with `content-length: 0`.
        self.mode == Mode::Sized && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        match self.mode {
            Mode::Sized => SizeHint::with_exact(self.remaining),
            Mode::Chunked | Mode::ResetAfter => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn sized_body_has_exact_length_and_pattern() {
        for total in [
            0u64,
            1,
            250,
            251,
            252,
            CHUNK as u64,
            CHUNK as u64 + 7,
            300_000,
        ] {
            let body = PatternBody::new(total, Mode::Sized);
            assert_eq!(body.size_hint().exact(), Some(total));
            let bytes = body.collect().await.expect("no error").to_bytes();
            assert_eq!(bytes.len() as u64, total);
            for (i, b) in bytes.iter().enumerate() {
                assert_eq!(*b, byte_at(i as u64), "byte {i} of {total}");
            }
        }
    }

    #[tokio::test]
    async fn reset_body_errors_after_its_bytes() {
        let mut body = PatternBody::new(10, Mode::ResetAfter);
        let first = body.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().map(|d| d.len()).ok(), Some(10));
        assert!(body.frame().await.expect("frame").is_err());
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn chunked_body_has_no_exact_size() {
        let body = PatternBody::new(5, Mode::Chunked);
        assert_eq!(body.size_hint().exact(), None);
        assert!(!PatternBody::new(0, Mode::Chunked).is_end_stream());
    }
}
