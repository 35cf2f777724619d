//! Forwarding one request to one upstream target: the upstream request is
//! built from the client's (path, Host, `x-forwarded-*`, hop-by-hop headers),
//! sent on a kept-alive connection with the route's timeout, and failures are
//! told apart: never connected, timed out, or failed after leaving.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body::Body as _;
use hyper::body::Incoming;

use super::Downstream;
use super::body::{BoxError, RequestBody};
use super::error::ProxyError;
use super::headers;
use crate::upstream::Lease;
use crate::upstream::conn::{self, Driver, SendError};

/// Where and how to send.
pub struct Outbound<'a> {
    pub lease: &'a Lease,
    /// The upstream path (normalized, after rewrite), without the query.
    pub path: String,
    /// The client's Host (or `:authority`).
    pub client_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
    pub upgrade: bool,
    pub max_body: u64,
}

/// Turns the client's request into the upstream's. Also returns the flag the
/// body sets if it passes `max_body` while streaming.
pub fn build(
    req: Request<Incoming>,
    out: Outbound<'_>,
    down: &Downstream,
) -> Result<(Request<RequestBody>, Option<Arc<AtomicBool>>), ProxyError> {
    let (mut parts, body) = req.into_parts();
    let target = out.lease.target();

    let pq = match parts.uri.query() {
        Some(q) => format!("{}?{q}", out.path),
        None => out.path,
    };
    let pq = PathAndQuery::try_from(pq)
        .map_err(|_| ProxyError::BadRequest("the request target cannot be forwarded"))?;
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(target.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("the request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;

    headers::strip_hop_by_hop(&mut parts.headers, out.upgrade);
    let host = out
        .lease
        .pool()
        .host
        .clone()
        .or_else(|| out.client_host.clone())
        .or_else(|| HeaderValue::from_str(target.authority.as_str()).ok());
    if let Some(h) = host {
        parts.headers.insert(header::HOST, h);
    }
    headers::add_forwarded(
        &mut parts.headers,
        &down.client_ip,
        down.scheme,
        out.client_host.as_ref(),
    );
    parts
        .headers
        .insert(headers::X_REQUEST_ID, out.request_id.clone());

    let (body, tripped) = if body.is_end_stream() {
        (RequestBody::empty(), None)
    } else if parts.headers.contains_key(header::CONTENT_LENGTH) {
        // hyper holds the body to its declared length, checked against the limit on accept.
        (RequestBody::streaming(body, out.max_body, None), None)
    } else {
        let flag = Arc::new(AtomicBool::new(false));
        (
            RequestBody::streaming(body, out.max_body, Some(flag.clone())),
            Some(flag),
        )
    };
    Ok((Request::from_parts(parts, body), tripped))
}

/// Idle time after which a kept-alive connection is treated as possibly
/// closed by the upstream (see [`send`]). Upstream keep-alive timeouts are
/// seconds (Node's default is 5 s), never this short.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A copy of a request that is safe to send twice: an idempotent method
/// (RFC 9110 section 9.2.2) and no body.
fn replay_copy(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    use http::Method;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// What came back: the response head, and the connection its body arrives
/// on (`None` for upgrades, whose connection runs on its own).
pub struct Sent {
    pub response: Response<Incoming>,
    pub driver: Option<Driver>,
}

/// Sends the request to the lease's target. `timeout` runs until the response
/// head arrives; connecting has its own `connect_timeout` inside it.
pub async fn send(
    lease: &Lease,
    req: Request<RequestBody>,
    upgrade: bool,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Sent, ProxyError> {
    let upstream = &lease.pool().name;
    let target = lease.target();
    let authority = target.authority.as_str();
    let exchange = async {
        if upgrade {
            let response = conn::send_upgrade(authority, connect_timeout, req).await?;
            return Ok(Sent {
                response,
                driver: None,
            });
        }
        let mut active = conn::checkout(&target.stats.idle, authority, connect_timeout).await?;
        // A connection idle for a while may be closed by the upstream just as
        // the request goes out. Keep what is needed to send a bodiless
        // idempotent request again; busy connections (reused within a
        // second) are not worth the copy.
        let replay = match active.idle_for() {
            Some(idle) if idle >= REPLAY_AFTER_IDLE => replay_copy(&req),
            _ => None,
        };
        let response = match active.send(req).await {
            Ok(r) => r,
            Err(mut e) => {
                let retry = match (e.take_message(), replay) {
                    // The request never left: it may go anywhere.
                    (Some(req), _) if active.reused() => Some(req),
                    (_, Some(copy)) if conn::is_stale_connection(e.error()) => Some(copy),
                    _ => None,
                };
                let Some(req) = retry else {
                    return Err(SendError::Http(e.into_error()));
                };
                tracing::debug!(upstream = %upstream, "kept-alive connection was closed; sending on a new one");
                active = conn::connect(authority, connect_timeout).await?;
                active
                    .send(req)
                    .await
                    .map_err(|e| SendError::Http(e.into_error()))?
            }
        };
        Ok(Sent {
            response,
            driver: Some(active.into_driver(target.stats.clone())),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(sent)) => Ok(sent),
        Ok(Err(e)) => Err(classify(e, upstream)),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.clone(),
            timeout,
        }),
    }
}

fn classify(e: SendError, upstream: &str) -> ProxyError {
    let upstream = upstream.to_owned();
    match e {
        SendError::ConnectTimeout => ProxyError::ConnectTimeout { upstream },
        SendError::Connect(source) => ProxyError::Connect {
            upstream,
            source: Box::new(source),
        },
        SendError::Http(source) => ProxyError::Upstream {
            upstream,
            source: Box::new(source) as BoxError,
        },
    }
}
