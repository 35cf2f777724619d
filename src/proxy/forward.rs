//! Forwarding one request to one upstream target: the upstream request is
//! built from the client's (path, Host, `x-forwarded-*`, hop-by-hop headers),
//! sent on a kept-alive connection with the route's timeout, and failures are
//! told apart: never connected, timed out, or failed after leaving.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::Body as _;

use super::body::{BoxError, ClientBody, RequestBody};
use super::error::ProxyError;
use super::headers;
use crate::fallback::Held;
use crate::upstream::body::UpstreamBody;
use crate::upstream::conn::{self, SendError};
use crate::upstream::h1::{self, RawConn};
use crate::upstream::{Home, Lane, Lease, Target};

/// Where and how to send.
pub struct Outbound<'a> {
    pub lease: &'a Lease,
    /// The upstream path (normalized, after rewrite), without the query.
    pub path: String,
    /// The client's Host (or `:authority`).
    pub client_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
    pub upgrade: bool,
    /// The client's address, for `x-forwarded-for`.
    pub client_ip: &'a HeaderValue,
    /// What `x-forwarded-proto` says.
    pub scheme: &'static str,
}

/// The client's body as it goes upstream, and the flag it sets if it passes
/// `max_body` while streaming (only a body without `content-length` can).
pub fn client_body(
    parts: &Parts,
    body: ClientBody,
    max_body: u64,
) -> (RequestBody, Option<Arc<AtomicBool>>) {
    let unbounded = !parts.headers.contains_key(header::CONTENT_LENGTH);
    match body {
        ClientBody::Streaming(body) if body.is_end_stream() => (RequestBody::empty(), None),
        // hyper holds a body to its declared length, checked against the limit on accept.
        ClientBody::Streaming(body) if !unbounded => {
            (RequestBody::streaming(body, max_body, None), None)
        }
        ClientBody::Streaming(body) => {
            let flag = Arc::new(AtomicBool::new(false));
            (
                RequestBody::streaming(body, max_body, Some(flag.clone())),
                Some(flag),
            )
        }
        ClientBody::Held(Held::Whole(bytes)) => (RequestBody::full(bytes), None),
        ClientBody::Held(Held::TooLarge { read, rest: None }) => (RequestBody::full(read), None),
        ClientBody::Held(Held::TooLarge {
            read,
            rest: Some(rest),
        }) => {
            let flag = unbounded.then(|| Arc::new(AtomicBool::new(false)));
            (
                RequestBody::resumed(read, rest, max_body, flag.clone()),
                flag,
            )
        }
    }
}

/// A copy of the client's request head, for a second attempt.
pub fn copy_head(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// Turns the client's request head and body into the upstream's request.
pub fn build(
    mut parts: Parts,
    body: RequestBody,
    out: Outbound<'_>,
) -> Result<Request<RequestBody>, ProxyError> {
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
        out.client_ip,
        out.scheme,
        out.client_host.as_ref(),
    );
    parts
        .headers
        .insert(headers::X_REQUEST_ID, out.request_id.clone());
    Ok(Request::from_parts(parts, body))
}

/// Sends the request to the lease's target and returns the response head,
/// whose body streams off the connection. `timeout` runs until the response
/// head arrives; connecting has its own `connect_timeout` inside it.
///
/// Bodiless requests take the lean client ([`h1`]); requests with a body and
/// upgrades take hyper's. Kept-alive connections are taken from and given
/// back to `lane`'s: the thread sending must be the lane's.
pub async fn send(
    lease: &Lease,
    lane: Lane,
    req: Request<RequestBody>,
    upgrade: bool,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let upstream = &lease.pool().name;
    let target = lease.target();
    let home = Home {
        stats: target.stats.clone(),
        lane,
    };
    // A future is as large as its largest state, and the common path's future
    // is moved with every request: the bodiless exchange is encoded before
    // it starts so its future never holds the request, and the rarer paths
    // are boxed.
    let exchanged = if !upgrade && req.body().is_end_stream() {
        let bodiless = Bodiless::encode(req);
        tokio::time::timeout(
            timeout,
            send_bodiless(target, home, bodiless, connect_timeout),
        )
        .await
    } else {
        let exchange = async move {
            if upgrade {
                let response =
                    conn::send_upgrade(target.authority.as_str(), connect_timeout, req).await?;
                return Ok(response.map(|b| UpstreamBody::Hyper(b, None)));
            }
            send_with_body(target, home, req, connect_timeout).await
        };
        tokio::time::timeout(timeout, Box::pin(exchange)).await
    };
    let sent = match exchanged {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(classify(e, upstream)),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.clone(),
            timeout,
        }),
    };
    passive(lease, &sent);
    sent
}

/// Tells the target's health how the request went (passive checks): no
/// answer, or an answer that says the target itself is failing (502, 503,
/// 504), is a failure; anything else ends a run of failures.
fn passive(lease: &Lease, sent: &Result<Response<UpstreamBody>, ProxyError>) {
    let reason = match sent {
        Ok(resp) => match resp.status().as_u16() {
            502 => "502",
            503 => "503",
            504 => "504",
            _ => "",
        },
        Err(ProxyError::Connect { .. }) => "connect failed",
        Err(ProxyError::ConnectTimeout { .. }) => "connect timeout",
        Err(ProxyError::Timeout { .. }) => "timeout",
        Err(_) => "no valid answer",
    };
    let health = &lease.target().stats.health;
    if reason.is_empty() {
        health.record(false, None, 0, reason);
    } else {
        let eject = lease.pool().eject.as_ref();
        health.record(true, eject, crate::upstream::health::now_ms(), reason);
    }
}

/// Everything a bodiless exchange needs from its request.
struct Bodiless {
    head: Vec<u8>,
    head_request: bool,
    idempotent: bool,
}

impl Bodiless {
    fn encode(req: Request<RequestBody>) -> Bodiless {
        let mut head = Vec::with_capacity(512);
        h1::encode_head(&req, &mut head);
        Bodiless {
            head,
            head_request: req.method() == Method::HEAD,
            idempotent: crate::fallback::is_idempotent(req.method()),
        }
    }
}

async fn send_bodiless(
    target: &Target,
    home: Home,
    req: Bodiless,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    let authority = target.authority.as_str();
    let (mut raw, reused) = match home.kept().raw.take() {
        Some(c) => (c, true),
        None => (
            Box::pin(RawConn::connect(authority, connect_timeout)).await?,
            false,
        ),
    };
    let answer = match h1::exchange(&mut raw, &req.head, req.head_request).await {
        Ok(a) => a,
        // A kept-alive connection the upstream closed as the request went out:
        // nothing came back, and the request is safe to send again.
        Err(h1::ExchangeError::Closed(_)) if reused && req.idempotent => {
            tracing::debug!("kept-alive connection was closed; sending on a new one");
            raw = Box::pin(RawConn::connect(authority, connect_timeout)).await?;
            h1::exchange(&mut raw, &req.head, req.head_request).await?
        }
        Err(e) => return Err(e.into()),
    };
    let (parts, body) = h1::RawBody::new(raw, answer, home);
    Ok(Response::from_parts(parts, UpstreamBody::Raw(body)))
}

async fn send_with_body(
    target: &Target,
    home: Home,
    req: Request<RequestBody>,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    let authority = target.authority.as_str();
    let mut active = conn::checkout(&home.kept().hyper, authority, connect_timeout).await?;
    let response = match active.send(req).await {
        Ok(r) => r,
        Err(mut e) => match e.take_message() {
            // The request never left (the kept-alive connection had closed):
            // it may go on a new connection.
            Some(req) if active.reused() => {
                active = conn::connect(authority, connect_timeout).await?;
                active
                    .send(req)
                    .await
                    .map_err(|e| SendError::Http(e.into_error()))?
            }
            _ => return Err(SendError::Http(e.into_error())),
        },
    };
    let driver = active.into_driver(home);
    Ok(response.map(|b| UpstreamBody::Hyper(b, Some(driver))))
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
        SendError::Exchange(source) => ProxyError::Upstream {
            upstream,
            source: Box::new(source) as BoxError,
        },
    }
}
