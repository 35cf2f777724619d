//! Phases 4 and 5 of the journey for what is more than one plain call: the
//! side a shifted route picks (and what the ramp is told of it), an attempt
//! on one upstream, the replay on a route's fallback, and a composed route's
//! legs. [`super::Proxy::journey`] calls these in order; each is one step.

use std::sync::atomic::Ordering;

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;

use super::body::{ClientBody, Inbound, RequestBody, ResponseBody};
use super::{Completion, Downstream, ProxyError, forward};
use crate::fallback;
use crate::shift::state::ShiftState;
use crate::shift::{self, Side};
use crate::snapshot::Snapshot;
use crate::upstream::body::UpstreamBody;
use crate::upstream::{Lease, Tried};

/// Phases 4-5 for a composed route (SPEC 2.5): the legs, merged. Its
/// `route.compose` is `Some` (the router only sends such routes here).
#[allow(clippy::too_many_arguments)]
pub(super) async fn composite(
    snap: &Snapshot,
    route: &crate::config::Route,
    params: &[(&str, String)],
    req: Request<Inbound>,
    client_host: Option<HeaderValue>,
    request_id: &HeaderValue,
    down: &Downstream,
    timeout: std::time::Duration,
    log: &mut Completion,
    recorded: &crate::metrics::Recorded,
) -> Result<Response<ResponseBody>, ProxyError> {
    let Some(compose) = &route.compose else {
        return Err(ProxyError::NoRoute);
    };
    // Legs carry the client's headers, not its body: it is not read.
    let (head, _body) = req.into_parts();
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let call = crate::compose::Call {
        snap,
        head: &head,
        params: &params,
        client_host,
        request_id,
        down,
        timeout,
    };
    let mut report = crate::compose::Report::default();
    let answer = crate::compose::answer(compose, &call, &mut report).await;
    log.legs = Some(report.summary());
    for (leg, outcome) in &report.legs {
        if let Some(o) = outcome {
            recorded.leg(&route.name, leg, o.took(), o.failed());
        }
    }
    Ok(answer?)
}

/// How every attempt of one request is sent, whichever upstream it goes to.
pub(super) struct How<'a> {
    pub(super) client_host: Option<HeaderValue>,
    pub(super) request_id: &'a HeaderValue,
    pub(super) upgrade: bool,
    pub(super) timeout: std::time::Duration,
    pub(super) connect_timeout: std::time::Duration,
    /// Answers may keep the upstream's header lines (see
    /// [`crate::upstream::h1::RawHeaders`]): the client's server writes them
    /// itself and nothing on the way reads them.
    pub(super) pass_head: bool,
}

/// A shifted route's choice for this request.
#[derive(Clone, Copy)]
pub(super) struct Shifted<'s> {
    pub(super) state: &'s ShiftState,
    pub(super) side: Side,
    /// The new side's upstream.
    pub(super) to: usize,
}

/// Phase 4 for a route that shifts: which side this request goes to.
pub(super) fn pick_side<'s>(
    snap: &'s Snapshot,
    route: usize,
    req: &Request<Inbound>,
    down: &Downstream,
) -> Option<Shifted<'s>> {
    let r = &snap.config.routes[route];
    let shift = r.shift.as_ref()?;
    let state = snap.shifts[route].as_deref()?;
    let names = [
        snap.config.upstreams[r.upstream?].name.as_str(),
        snap.config.upstreams[shift.to].name.as_str(),
    ];
    let view = shift::Request {
        uri: req.uri(),
        headers: req.headers(),
        client_ip: down.remote.ip(),
    };
    let side = shift::choose(shift, state.basis_points(), names, &view);
    Some(Shifted {
        state,
        side,
        to: shift.to,
    })
}

/// Tells the shift's window how the side did: time to the response head,
/// and whether it failed (a 5xx, or no answer). The client's own failures
/// (a body over the limit, a body that never came) are not the side's.
/// `started` is when the request went out, timed only when it shifts.
pub(super) fn record(
    shifted: Option<Shifted<'_>>,
    started: Option<Instant>,
    sent: &Result<(Response<UpstreamBody>, Lease), ProxyError>,
) {
    let (Some(s), Some(started)) = (shifted, started) else {
        return;
    };
    let failed = match sent {
        Ok((resp, _)) => resp.status().is_server_error(),
        Err(ProxyError::BodyTooLarge { .. } | ProxyError::ClientBody(_)) => return,
        Err(_) => true,
    };
    s.state.window.record(s.side, started.elapsed(), failed);
}

/// One attempt: a target of `upstream`, the request built for it, sent.
pub(super) async fn attempt(
    snap: &Snapshot,
    upstream: usize,
    parts: http::request::Parts,
    body: RequestBody,
    path: String,
    how: &How<'_>,
    down: &Downstream,
) -> Result<(Response<UpstreamBody>, Lease), ProxyError> {
    let pool = &snap.pools[upstream];
    let lease = pool.pick().ok_or_else(|| ProxyError::NoTarget {
        upstream: pool.name.clone(),
    })?;
    send_on(lease, parts, body, path, how, down).await
}

/// The request built for the lease's target, sent.
async fn send_on(
    lease: Lease,
    parts: http::request::Parts,
    body: RequestBody,
    path: String,
    how: &How<'_>,
    down: &Downstream,
) -> Result<(Response<UpstreamBody>, Lease), ProxyError> {
    let out = forward::Outbound {
        lease: &lease,
        path,
        client_host: how.client_host.clone(),
        request_id: how.request_id,
        upgrade: how.upgrade,
        client_ip: &down.client_ip,
        scheme: down.scheme,
    };
    if !how.upgrade && http_body::Body::is_end_stream(&body) {
        // The common case: the upstream head is written straight from the
        // client's, with no request built in between.
        let mut head = forward::Encoded::direct(&parts, &out)?;
        head.pass_head = how.pass_head;
        drop(out);
        // The client's head is written out: its map is spare.
        crate::http1::spare::give(parts.headers);
        let resp = forward::send_head(
            &lease,
            crate::upstream::Lane::Client,
            head,
            how.timeout,
            how.connect_timeout,
        )
        .await?;
        return Ok((resp, lease));
    }
    let req = forward::build(parts, body, out)?;
    let resp = forward::send(
        &lease,
        crate::upstream::Lane::Client,
        req,
        how.upgrade,
        how.timeout,
        how.connect_timeout,
    )
    .await?;
    Ok((resp, lease))
}

/// Whether the upstream's `retries` apply to this request: an idempotent,
/// non-upgrade request to an upstream that has retries. Only such a request's
/// body is held (up to [`fallback::REPLAY_LIMIT`]) for a second send.
pub(super) fn may_retry(
    snap: &Snapshot,
    upstream: usize,
    parts: &http::request::Parts,
    how: &How<'_>,
) -> bool {
    snap.pools[upstream].retries > 0 && !how.upgrade && fallback::is_idempotent(&parts.method)
}

/// Holds the client's body (up to [`fallback::REPLAY_LIMIT`]) so the request
/// can be sent again (a retry, a fallback, a shadow copy): the body to send
/// first, and the bytes to send again when the whole body was held. A larger
/// body streams, and is sent once.
pub(super) async fn hold_replayable(
    parts: &http::request::Parts,
    body: ClientBody,
    max_body: u64,
) -> Result<(ClientBody, Option<bytes::Bytes>), ProxyError> {
    let held = match body {
        ClientBody::Held(held) => held,
        ClientBody::Streaming(b) => fallback::hold_body(&parts.headers, b, max_body).await?,
    };
    let replay = match &held {
        fallback::Held::Whole(bytes) => Some(bytes.clone()),
        fallback::Held::TooLarge { .. } => None,
    };
    Ok((ClientBody::Held(held), replay))
}

/// Whether an attempt's outcome is retried (SPEC 2): the target could not be
/// connected to, or answered 502 or 503. A timeout or a reset is not: the
/// request may have been carried out.
fn retryable(sent: &Result<(Response<UpstreamBody>, Lease), ProxyError>) -> bool {
    match sent {
        Ok((resp, _)) => matches!(resp.status().as_u16(), 502 | 503),
        Err(ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }) => true,
        Err(_) => false,
    }
}

/// [`attempt`], sent again on other targets of the same upstream while the
/// outcome is [`retryable`], up to the upstream's `retries` and within its
/// retry budget. `replay` is the whole body when the request may be retried
/// ([`may_retry`] and small enough to have been held); without it this is a
/// single attempt. The decision is made on the response head, before any
/// byte reaches the client; a failed answer is dropped unread. `retried`
/// counts the retries sent, for the access log.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt_retrying(
    snap: &Snapshot,
    upstream: usize,
    parts: http::request::Parts,
    body: RequestBody,
    replay: Option<bytes::Bytes>,
    path: String,
    how: &How<'_>,
    down: &Downstream,
    retried: &mut u8,
) -> Result<(Response<UpstreamBody>, Lease), ProxyError> {
    let pool = &snap.pools[upstream];
    let Some(bytes) = replay.filter(|_| may_retry(snap, upstream, &parts, how)) else {
        return attempt(snap, upstream, parts, body, path, how, down).await;
    };
    pool.budget.request();
    let head = forward::copy_head(&parts);
    let lease = pool.pick().ok_or_else(|| ProxyError::NoTarget {
        upstream: pool.name.clone(),
    })?;
    let mut tried = Tried::default();
    tried.add(&lease);
    let mut sent = send_on(lease, parts, body, path.clone(), how, down).await;
    for _ in 0..pool.retries {
        if !retryable(&sent) || !pool.has_other(tried) {
            break;
        }
        if !pool.budget.try_retry() {
            tracing::debug!(
                event = "retry",
                request_id = how.request_id.to_str().unwrap_or("-"),
                upstream = pool.name,
                result = "over_budget",
                "not retried: the upstream's retry budget is spent"
            );
            break;
        }
        let Some(lease) = pool.pick_other(tried) else {
            break;
        };
        tried.add(&lease);
        tracing::debug!(
            event = "retry",
            request_id = how.request_id.to_str().unwrap_or("-"),
            upstream = pool.name,
            url = lease.target().url,
            result = "sent",
            "retrying on another target"
        );
        // The failed answer is dropped unread.
        drop(sent);
        *retried += 1;
        let again = forward::copy_head(&head);
        sent = send_on(
            lease,
            again,
            RequestBody::full(bytes.clone()),
            path.clone(),
            how,
            down,
        )
        .await;
    }
    sent
}

/// The first attempt of a request that may fall back.
pub(super) struct First<'s> {
    pub(super) upstream: usize,
    pub(super) path: String,
    pub(super) shifted: Option<Shifted<'s>>,
}

/// Phase 5 for a route with `fallback`: holds the body (up to
/// [`fallback::REPLAY_LIMIT`]), sends to the chosen upstream, and replays on
/// the fallback when [`fallback::should_replay`] says so.
#[allow(clippy::too_many_arguments)]
pub(super) async fn with_fallback(
    snap: &Snapshot,
    first: First<'_>,
    (to, fallback_on): (usize, &Vec<u16>),
    parts: http::request::Parts,
    body: ClientBody,
    how: &How<'_>,
    down: &Downstream,
    log: &mut Completion,
) -> Result<(Response<UpstreamBody>, Lease), ProxyError> {
    let max_body = snap.config.server.max_request_body;
    let (held, replay) = hold_replayable(&parts, body, max_body).await?;
    let (body, tripped) = forward::client_body(&parts, held, max_body);
    let again = replay.map(|bytes| (bytes, forward::copy_head(&parts), first.path.clone()));
    let idempotent = fallback::is_idempotent(&parts.method);
    // Timed only for a shift's window.
    let started = first.shifted.map(|_| Instant::now());
    // Retries on the first upstream come before the fallback.
    let retry_body = again.as_ref().map(|(bytes, _, _)| bytes.clone());
    let sent = attempt_retrying(
        snap,
        first.upstream,
        parts,
        body,
        retry_body,
        first.path,
        how,
        down,
        &mut log.retries,
    )
    .await;
    record(first.shifted, started, &sent);
    if tripped.is_some_and(|t| t.load(Ordering::Acquire)) {
        return Err(ProxyError::BodyTooLarge { limit: max_body });
    }
    let Some((bytes, head, path)) = again else {
        return sent;
    };
    let outcome = match &sent {
        Ok((resp, _)) => fallback::Outcome::Answered(resp.status().as_u16()),
        Err(e) => match fallback::Outcome::of_error(e) {
            Some(o) => o,
            None => return sent,
        },
    };
    if !fallback::should_replay(outcome, idempotent, fallback_on) {
        return sent;
    }
    tracing::info!(
        event = "fallback",
        request_id = how.request_id.to_str().unwrap_or("-"),
        route = log.route.map(|i| snap.config.routes[i].name.as_str()),
        upstream = snap.config.upstreams[first.upstream].name,
        fallback = snap.config.upstreams[to].name,
        outcome = %outcome,
        "falling back"
    );
    // The first answer (a status in `fallback_on`) is dropped unread.
    drop(sent);
    log.upstream = Some(to);
    log.fell_back_from = Some(first.upstream);
    attempt(snap, to, head, RequestBody::full(bytes), path, how, down).await
}

/// What mirroring one request needs besides the request itself.
pub(super) struct Mirrored<'a> {
    pub(super) snap: std::sync::Arc<Snapshot>,
    pub(super) shadow: &'a crate::config::Shadow,
    /// The primary's upstream.
    pub(super) primary: usize,
    /// The upstream path (after rewrite), without the query.
    pub(super) path: &'a str,
    pub(super) limits: &'a crate::shadow::mirror::Limits,
    pub(super) sink: std::sync::Arc<dyn crate::shadow::mirror::Sink>,
}

/// Phase 5 for a mirrored request (SPEC 2.4): holds the body (up to
/// [`fallback::REPLAY_LIMIT`]; a larger one is not mirrored) and starts the
/// copy. Returns the body to send on and the tee the primary answer must
/// pass through.
pub(super) async fn mirror(
    m: Mirrored<'_>,
    parts: &http::request::Parts,
    body: ClientBody,
    how: &How<'_>,
    down: &Downstream,
) -> Result<(ClientBody, Option<crate::shadow::mirror::PrimaryCopy>), ProxyError> {
    let max_body = m.snap.config.server.max_request_body;
    let (held, copy_body) = hold_replayable(parts, body, max_body).await?;
    let path = match parts.uri.query() {
        Some(q) => format!("{}?{q}", m.path),
        None => m.path.to_owned(),
    };
    let copy = crate::shadow::mirror::Copy {
        snap: m.snap.clone(),
        head: parts,
        body: copy_body,
        primary: m.primary,
        path,
        client_host: how.client_host.clone(),
        request_id: how.request_id,
        down,
        timeout: how.timeout,
    };
    let tap = crate::shadow::mirror::start(m.shadow, copy, m.limits, m.sink);
    Ok((held, tap))
}
