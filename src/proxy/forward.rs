//! Forwarding one request to one upstream target: the upstream request is
//! built from the client's (path, Host, `x-forwarded-*`, hop-by-hop headers),
//! sent through the shared client with the route's timeout, and failures are
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
use crate::client::HttpClient;
use crate::upstream::Lease;

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
        down.remote.ip(),
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

/// Sends the request; `timeout` runs until the response head arrives.
pub async fn send(
    client: &HttpClient,
    req: Request<RequestBody>,
    timeout: Duration,
    upstream: &str,
) -> Result<Response<Incoming>, ProxyError> {
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(classify(e, upstream)),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.to_owned(),
            timeout,
        }),
    }
}

fn classify(e: hyper_util::client::legacy::Error, upstream: &str) -> ProxyError {
    let upstream = upstream.to_owned();
    if e.is_connect() {
        if chain_has_timeout(&e) {
            return ProxyError::ConnectTimeout { upstream };
        }
        return ProxyError::Connect {
            upstream,
            source: Box::new(e),
        };
    }
    ProxyError::Upstream {
        upstream,
        source: Box::new(e) as BoxError,
    }
}

fn chain_has_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
}
