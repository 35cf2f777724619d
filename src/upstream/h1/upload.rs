//! Writing a request body to an upstream as it arrives from the client:
//! `content-length` or chunked framing ([`crate::http1::chunked`]), each
//! frame written as soon as it is polled, so an upload streams. The upload
//! is driven by whoever waits on the exchange — first the wait for the
//! answer's head, then the answer's body — so an upstream that answers
//! while still reading (an echo server) gets the rest of the body.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::http1::chunked;
use crate::proxy::body::{BoxError, RequestBody};

/// A request body on its way upstream.
pub struct Upload {
    body: RequestBody,
    /// `None`: chunked; else the bytes the `content-length` still owes.
    left: Option<u64>,
    /// Bytes polled from the body and framed, not yet written.
    queue: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    /// The body has ended and its end is queued.
    ended: bool,
    /// Something has been taken from the body: it cannot be sent again.
    started: bool,
}

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The client's body failed (its framing, its limit, a hang-up):
    /// nothing the upstream did.
    #[error("the request body failed: {0}")]
    Body(#[source] BoxError),
    /// Writing to the upstream failed (it closed, perhaps having answered).
    #[error("writing the request body upstream failed: {0}")]
    Write(#[source] io::Error),
}

/// The client's body gave other than the length its head declared.
#[derive(Debug, thiserror::Error)]
#[error("the request body does not match its declared length")]
struct LengthMismatch;

impl Upload {
    /// `length` is the declared `content-length`; `None` sends it chunked.
    pub fn new(body: RequestBody, length: Option<u64>) -> Upload {
        Upload {
            body,
            left: length,
            queue: VecDeque::new(),
            trailers: None,
            ended: false,
            started: false,
        }
    }

    /// Whether any of the body has been taken (a stale connection can then
    /// not be retried with it).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Writes what the body has; `Ready(Ok)` once all of it is written.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut TcpStream,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if !self.queue.is_empty() {
                ready!(self.poll_write_queue(cx, io)).map_err(UploadError::Write)?;
                continue;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    self.end()?;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(UploadError::Body(e))),
                Some(Ok(frame)) => frame,
            };
            self.started = true;
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => self.queue_data(data)?,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        self.trailers.get_or_insert_with(HeaderMap::new).extend(t);
                    }
                }
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) -> Result<(), UploadError> {
        match &mut self.left {
            Some(left) => {
                if data.len() as u64 > *left {
                    return Err(UploadError::Body(Box::new(LengthMismatch)));
                }
                *left -= data.len() as u64;
                self.queue.push_back(data);
            }
            None => {
                let mut size = Vec::with_capacity(18);
                chunked::encode_size(data.len(), &mut size);
                self.queue.push_back(size.into());
                self.queue.push_back(data);
                self.queue.push_back(Bytes::from_static(chunked::CHUNK_END));
            }
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), UploadError> {
        self.ended = true;
        match self.left {
            Some(0) => Ok(()),
            Some(_) => Err(UploadError::Body(Box::new(LengthMismatch))),
            None => {
                let mut last = Vec::new();
                // Trailers are HTTP/1.1's to carry only in chunked framing.
                chunked::encode_last(self.trailers.as_ref(), &mut last);
                self.queue.push_back(last.into());
                Ok(())
            }
        }
    }

    fn poll_write_queue(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut TcpStream,
    ) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> =
                self.queue.iter().take(8).map(|b| IoSlice::new(b)).collect();
            let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while n > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                let take = n.min(front.len());
                front.advance(take);
                n -= take;
                if front.is_empty() {
                    self.queue.pop_front();
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
