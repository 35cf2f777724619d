//! Fallback (SPEC 2.3): when a route's chosen upstream fails, the request is
//! replayed on the route's `fallback` upstream and the client never sees the
//! failure.
//!
//! This module owns the two decisions that takes — can this request be sent
//! twice, and does this outcome call for it — and holds the request body that
//! makes a replay possible. The journey ([`crate::proxy`]) sends and resends.
//!
//! The rules, SPEC's and where it is silent ours:
//! - A request that provably never reached the upstream (no connection could
//!   be made, or no target was available) is replayed whatever its method.
//! - An idempotent request (RFC 9110 section 9.2.2) is also replayed when the
//!   upstream timed out, failed before a response head arrived (reset, invalid
//!   answer), or answered a status in `fallback_on`.
//! - Only bodies of at most [`REPLAY_LIMIT`] are held for a replay; a larger
//!   body streams as usual and its request is never replayed, since the bytes
//!   already sent cannot be sent again.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, header};
use http_body_util::BodyExt;

use crate::proxy::ProxyError;
use crate::proxy::body::Inbound;

/// The largest request body held so it can be sent a second time.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// How a failure of the first attempt looks to the fallback decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream was never reached: connect refused or timed out, no target.
    NotReached,
    /// Reached, but no usable answer: timeout, reset, invalid response.
    Failed,
    /// An answer with this status.
    Answered(u16),
}

/// As the `fallback` log event's `outcome`: `not_reached`, `failed`, or the
/// status (`503`).
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotReached => f.write_str("not_reached"),
            Outcome::Failed => f.write_str("failed"),
            Outcome::Answered(status) => write!(f, "{status}"),
        }
    }
}

impl Outcome {
    /// The outcome of an attempt that ended in `e`.
    pub fn of_error(e: &ProxyError) -> Option<Outcome> {
        match e {
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::NoTarget { .. } => Some(Outcome::NotReached),
            ProxyError::Timeout { .. } | ProxyError::Upstream { .. } => Some(Outcome::Failed),
            // The client's own doing (a body over the limit): not the upstream's.
            _ => None,
        }
    }
}

/// Whether an attempt that ended with `outcome` is replayed on the fallback.
pub fn should_replay(outcome: Outcome, idempotent: bool, fallback_on: &[u16]) -> bool {
    match outcome {
        Outcome::NotReached => true,
        Outcome::Failed => idempotent,
        Outcome::Answered(status) => idempotent && fallback_on.contains(&status),
    }
}

/// Idempotent methods (RFC 9110 section 9.2.2): safe to send twice.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A request body read for a possible replay.
#[derive(Debug)]
pub enum Held {
    /// The whole body (possibly empty): the request can be sent again.
    Whole(Bytes),
    /// The body is larger than [`REPLAY_LIMIT`]: `read` is what was read to
    /// find out, `rest` the remainder, still streaming. Not replayable.
    TooLarge { read: Bytes, rest: Option<Inbound> },
}

/// [`hold`], for a body that may be empty (no read at all then).
pub async fn hold_body(
    headers: &HeaderMap,
    body: Inbound,
    max_body: u64,
) -> Result<Held, ProxyError> {
    if http_body::Body::is_end_stream(&body) {
        return Ok(Held::Whole(Bytes::new()));
    }
    hold(headers, body, max_body).await
}

/// Reads `body` up to [`REPLAY_LIMIT`] bytes. A declared `content-length`
/// over the limit is not read at all. `max_body` (`max_request_body`) is
/// enforced on what is read here; the rest of a streaming body is counted
/// as it streams.
pub async fn hold(
    headers: &HeaderMap,
    mut body: Inbound,
    max_body: u64,
) -> Result<Held, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > REPLAY_LIMIT) {
        return Ok(Held::TooLarge {
            read: Bytes::new(),
            rest: Some(body),
        });
    }
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(Held::Whole(read.freeze())),
            Some(Err(e)) => return Err(ProxyError::ClientBody(e)),
            Some(Ok(frame)) => {
                // Trailers are dropped, as the upstream clients do.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                read.extend_from_slice(&data);
                if read.len() as u64 > max_body {
                    return Err(ProxyError::BodyTooLarge { limit: max_body });
                }
                if read.len() as u64 > REPLAY_LIMIT {
                    return Ok(Held::TooLarge {
                        read: read.freeze(),
                        rest: Some(body),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_replayed() {
        let default = crate::config::DEFAULT_FALLBACK_ON;
        // Never reached: always, even a POST.
        assert!(should_replay(Outcome::NotReached, false, &default));
        assert!(should_replay(Outcome::NotReached, true, &default));
        // Reached and failed: only what is safe to send twice.
        assert!(should_replay(Outcome::Failed, true, &default));
        assert!(!should_replay(Outcome::Failed, false, &default));
        assert!(should_replay(Outcome::Answered(503), true, &default));
        assert!(!should_replay(Outcome::Answered(503), false, &default));
        // Only the listed statuses.
        assert!(!should_replay(Outcome::Answered(404), true, &default));
        assert!(should_replay(Outcome::Answered(404), true, &[404]));
        assert!(!should_replay(Outcome::Answered(502), true, &[404]));
        assert!(!should_replay(Outcome::Answered(200), true, &default));
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(
                is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            assert!(
                !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
    }
}
