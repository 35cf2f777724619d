//! The request journey: one function, [`Proxy::journey`], reads top to bottom
//! through the phases every request passes —
//!
//! 1. **accept**: framing and size checks that must happen before anything is sent;
//! 2. **normalize**: the one spelling of the path that is matched and forwarded;
//! 3. **match**: the route (or the default) that takes the request;
//! 4. **pick a side**: the upstream and the target within it;
//! 5. **forward**: the upstream request, sent with the route's timeout;
//! 6. **respond**: the upstream's answer, cleaned of hop-by-hop headers, streamed back.
//!
//! Each phase returns early with a [`ProxyError`]; [`Proxy::handle`] turns that
//! into a problem+json answer and writes the access-log line when the response
//! is done.

pub mod body;
pub mod error;
pub(crate) mod forward;
pub mod headers;
mod sides;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use tokio::time::Instant;

use crate::config::Config;
use crate::path;
use crate::router::RequestInfo;
use crate::server::conn::ConnShared;
use crate::shift::Side;
use crate::shift::state::ShiftStates;
use crate::snapshot::Snapshot;
use crate::upstream::{Lease, Registry};
use body::{Inbound, OnComplete, ResponseBody};
pub use error::ProxyError;
use sides::{
    First, How, Mirrored, attempt, attempt_retrying, composite, hold_replayable, mirror, pick_side,
    record, with_fallback,
};

/// The proxy: the current snapshot, swapped whole on reload, and the state
/// that outlives snapshots.
pub struct Proxy {
    snapshot: ArcSwap<Snapshot>,
    registry: Registry,
    /// Shares and ramps of shifted routes, by route name.
    pub shifts: ShiftStates,
    /// Metric families requests record into.
    pub recorded: crate::metrics::Recorded,
    /// Every (route, upstream) pair's counts, by name: they outlive reloads.
    pub traffic: Arc<crate::traffic::Traffic>,
    /// Shadow reports of shadowed routes, by route name.
    pub shadow: crate::shadow::report::Reports,
    /// Bounds on shadow comparisons in flight.
    mirror_limits: crate::shadow::mirror::Limits,
    /// Tells the health probe driver the config changed.
    health_changed: Arc<tokio::sync::Notify>,
}

/// One request as its connection's server hands it over.
#[derive(Clone, Copy)]
struct Call {
    /// The server writes the answer's head itself (see
    /// [`Proxy::handle_passing_head`]).
    pass_head: bool,
}

/// What the journey knows about the client connection a request came on.
#[derive(Debug)]
pub struct Downstream {
    pub remote: SocketAddr,
    /// `remote`'s IP as a header value, for `x-forwarded-for`.
    pub client_ip: HeaderValue,
    /// `http` (or `https` once TLS is served): what `x-forwarded-proto` says.
    pub scheme: &'static str,
    pub shared: Arc<ConnShared>,
}

impl Proxy {
    pub fn new(config: Config) -> Arc<Proxy> {
        let registry = Registry::default();
        let shifts = ShiftStates::default();
        let reports = crate::shadow::report::Reports::default();
        let shadowed = sync_reports(&reports, &config);
        let traffic = Arc::new(crate::traffic::Traffic::default());
        let snapshot = Snapshot::build(config, &registry, &shifts, shadowed, &traffic);
        let proxy = Arc::new(Proxy {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            shifts,
            recorded: crate::metrics::Recorded::default(),
            traffic,
            shadow: reports,
            mirror_limits: crate::shadow::mirror::Limits::default(),
            health_changed: Arc::default(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep_idle(Arc::downgrade(&proxy)));
            rt.spawn(crate::shift::ramp::drive(Arc::downgrade(&proxy)));
            rt.spawn(crate::upstream::probe::drive(Arc::downgrade(&proxy)));
        }
        proxy
    }

    /// The snapshot new requests run on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Compiles `config` and makes it the one new requests run on. Requests in
    /// flight keep the snapshot they started with.
    pub fn install(&self, config: Config) {
        let shadowed = sync_reports(&self.shadow, &config);
        let next = Arc::new(Snapshot::build(
            config,
            &self.registry,
            &self.shifts,
            shadowed,
            &self.traffic,
        ));
        self.snapshot.store(next.clone());
        self.registry.retain(&next.pools);
        self.traffic.retain(&next.config);
        for pool in next.pools.iter().filter(|p| p.eject.is_none()) {
            for t in &pool.targets {
                t.stats
                    .health
                    .end_ejection("eject removed from the upstream");
            }
        }
        self.health_changed.notify_one();
    }

    /// Where per-target state and retry budgets live across reloads.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves one request, never failing: errors become problem+json answers.
    pub async fn handle(&self, req: Request<Inbound>, down: &Downstream) -> Response<ResponseBody> {
        self.serve(req, down, false).await
    }

    /// [`Proxy::handle`] for a server that writes the answer's head itself
    /// (the HTTP/1 server): a plain answer's headers may stay the upstream's
    /// lines, taken with [`ResponseBody::take_raw_headers`], and the
    /// answer's header map then holds only what the proxy set.
    pub(crate) async fn handle_passing_head(
        &self,
        req: Request<Inbound>,
        down: &Downstream,
    ) -> Response<ResponseBody> {
        self.serve(req, down, true).await
    }

    /// The answer to a request the server could not hand on as one (the
    /// HTTP/1 codec refused its head): the problem answer for `e`, which
    /// closes the connection, and the request's access-log line.
    pub fn refuse(&self, e: ProxyError, down: &Downstream) -> Response<ResponseBody> {
        let snap = self.snapshot.load_full();
        let request_id = headers::generate_request_id();
        let id = request_id.to_str().unwrap_or("-");
        log_failure(&e, id);
        let mut resp = e.to_response(id);
        let mut log = Completion::start(down, snap, request_id.clone(), None);
        log.status = resp.status().as_u16();
        log.problem = Some(e.status_and_type().1);
        resp.headers_mut().insert(headers::X_REQUEST_ID, request_id);
        resp.body_mut().on_complete(log);
        resp
    }

    async fn serve(
        &self,
        req: Request<Inbound>,
        down: &Downstream,
        pass_head: bool,
    ) -> Response<ResponseBody> {
        let snap = self.snapshot.load_full();
        let request_id = headers::request_id(req.headers());
        let mut log = Completion::start(
            down,
            snap.clone(),
            request_id.clone(),
            Some((req.method(), req.uri())),
        );
        let mut resp = match self
            .journey(&snap, req, down, Call { pass_head }, &request_id, &mut log)
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                let id = request_id.to_str().unwrap_or("-");
                log_failure(&e, id);
                log.problem = Some(e.status_and_type().1);
                e.to_response(id)
            }
        };
        resp.headers_mut().insert(headers::X_REQUEST_ID, request_id);
        log.status = resp.status().as_u16();
        resp.body_mut().on_complete(log);
        resp
    }

    async fn journey(
        &self,
        snap: &Snapshot,
        mut req: Request<Inbound>,
        down: &Downstream,
        call: Call,
        request_id: &HeaderValue,
        log: &mut Completion,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let server = &snap.config.server;

        // 1. accept
        let client_host = client_host(&req);
        let has_host = client_host.is_some();
        accept(&mut req, server.max_request_body, has_host)?;

        // 2. normalize
        let path = path::normalize(req.uri().path(), server.merge_slashes)?;

        // 3. match
        let info = RequestInfo {
            method: req.method(),
            path: &path,
            host: client_host.as_ref().and_then(|h| h.to_str().ok()),
            headers: req.headers(),
        };
        let (route, upstream, upstream_path, timeout) = match snap.router.find(&info) {
            Some(m) => {
                let route = &snap.config.routes[m.route];
                log.route = Some(m.route);
                let timeout = route.timeout.unwrap_or(server.request_timeout);
                let (Some(upstream), None) = (route.upstream, &route.compose) else {
                    // 4-5. a composed route: its legs are its sides
                    let params: Vec<(&str, String)> = route
                        .pattern
                        .params()
                        .zip(&m.captures)
                        .map(|(name, range)| (name, path[range.clone()].to_owned()))
                        .collect();
                    // Boxed, like the other feature paths below: a future is as
                    // large as its largest state, and the plain path's future is
                    // moved with every request.
                    return Box::pin(composite(
                        snap,
                        route,
                        &params,
                        req,
                        client_host,
                        request_id,
                        down,
                        timeout,
                        log,
                        &self.recorded,
                    ))
                    .await;
                };
                (
                    Some(m.route),
                    upstream,
                    route.path_map.apply(&path, &m.captures),
                    timeout,
                )
            }
            None => match &snap.config.default {
                Some(d) => (None, d.upstream, path.into_owned(), server.request_timeout),
                None => return Err(ProxyError::NoRoute),
            },
        };

        // 4. pick a side: the shift's choice, and where a failure falls back to
        let shifted = route.and_then(|i| pick_side(snap, i, &req, down));
        let upstream = match shifted {
            Some(s) if s.side == Side::New => s.to,
            _ => upstream,
        };
        let fallback = route.and_then(|i| {
            let r = &snap.config.routes[i];
            Some((r.fallback.filter(|&f| f != upstream)?, &r.fallback_on))
        });
        log.upstream = Some(upstream);

        // 5. forward
        // The codec decided, reading the head, whether it asks to switch
        // protocols (never on HTTP/2).
        let upgrade = req
            .extensions()
            .get::<crate::http1::request::Upgrade>()
            .is_some();
        let (parts, body) = req.into_parts();
        let mut how = How {
            client_host,
            request_id,
            upgrade,
            timeout,
            connect_timeout: server.connect_timeout,
            pass_head: call.pass_head,
        };
        // A mirrored request's copy is on its way before the primary is sent.
        let mut body = body::ClientBody::Streaming(body);
        let mut tap = None;
        // The snapshot holds a report for exactly the routes that shadow.
        if let Some((sh, report)) = route.and_then(|i| {
            Some((
                snap.config.routes[i].shadow.as_ref()?,
                snap.shadows[i].as_ref()?,
            ))
        }) && !upgrade
            && crate::shadow::mirror::wanted(sh, upstream, &parts.method)
        {
            let sink: Arc<dyn crate::shadow::mirror::Sink> = report.clone();
            if self.mirror_limits.full() {
                // Too many comparisons in flight: skipped before anything is
                // held or copied, so the overload costs the client nothing.
                sink.skipped();
            } else {
                let copy = Mirrored {
                    snap: log.snap.clone(),
                    shadow: sh,
                    primary: upstream,
                    path: &upstream_path,
                    limits: &self.mirror_limits,
                    sink,
                };
                (body, tap) = Box::pin(mirror(copy, &parts, body, &how, down)).await?;
            }
        }
        // A shadowed answer's headers are compared: they go into a map.
        how.pass_head &= tap.is_none();
        let (resp, lease) = match fallback.filter(|_| !upgrade) {
            None => {
                let mut replay = None;
                if sides::may_retry(snap, upstream, &parts, &how) {
                    (body, replay) =
                        Box::pin(hold_replayable(&parts, body, server.max_request_body)).await?;
                }
                let (body, tripped) = forward::client_body(&parts, body, server.max_request_body);
                // Timed only for a shift's window.
                let started = shifted.map(|_| Instant::now());
                let sent = match replay {
                    None => attempt(snap, upstream, parts, body, upstream_path, &how, down).await,
                    replay => {
                        Box::pin(attempt_retrying(
                            snap,
                            upstream,
                            parts,
                            body,
                            replay,
                            upstream_path,
                            &how,
                            down,
                            &mut log.retries,
                        ))
                        .await
                    }
                };
                record(shifted, started, &sent);
                match sent {
                    Err(_) if tripped.is_some_and(|t| t.load(Ordering::Acquire)) => {
                        return Err(ProxyError::BodyTooLarge {
                            limit: server.max_request_body,
                        });
                    }
                    sent => sent?,
                }
            }
            Some((to, on)) => {
                let first = First {
                    upstream,
                    path: upstream_path,
                    shifted,
                };
                Box::pin(with_fallback(
                    snap,
                    first,
                    (to, on),
                    parts,
                    body,
                    &how,
                    down,
                    log,
                ))
                .await?
            }
        };
        // 6. respond
        // A `101` (only ever the answer to an upgrade): the server joins the
        // two connections once the head is out; the body carries the upstream's.
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            down.shared.set_upgraded();
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, switching);
        log.lease = Some(lease);
        let mut body = ResponseBody::upstream(body);
        if let Some(mut tap) = tap.filter(|_| !switching) {
            tap.head(parts.status.as_u16(), &parts.headers);
            body.tee(Box::new(tap));
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// Keeps each shadowed route's report across reloads while what it compares
/// stays the same: the shadow's upstream, `ignore` and `compare_headers`.
fn sync_reports(
    reports: &crate::shadow::report::Reports,
    config: &Config,
) -> std::collections::HashMap<String, Arc<crate::shadow::report::Report>> {
    let basis: Vec<(&str, String)> = config
        .routes
        .iter()
        .filter_map(|r| {
            let sh = r.shadow.as_ref()?;
            let headers: Vec<&str> = sh.compare_headers.iter().map(|h| h.as_str()).collect();
            Some((
                r.name.as_str(),
                format!(
                    "to {} ignore {:?} compare_headers {}",
                    config.upstreams[sh.to].name,
                    sh.ignore,
                    headers.join(",")
                ),
            ))
        })
        .collect();
    reports.sync(basis.iter().map(|(n, b)| (*n, b.as_str())))
}

impl crate::upstream::probe::Owner for Proxy {
    fn probed(&self) -> Vec<crate::upstream::probe::Probed> {
        let snap = self.snapshot();
        snap.config
            .upstreams
            .iter()
            .zip(&snap.pools)
            .filter_map(|(cfg, pool)| Some((cfg.health.as_ref()?, pool)))
            .flat_map(|(health, pool)| {
                pool.targets
                    .iter()
                    .map(move |t| crate::upstream::probe::Probed {
                        upstream: pool.name.clone(),
                        url: t.url.clone(),
                        authority: t.authority.to_string(),
                        host: pool
                            .host
                            .as_ref()
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or(t.authority.as_str())
                            .to_owned(),
                        cfg: health.clone(),
                        stats: t.stats.clone(),
                    })
            })
            .collect()
    }

    fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.health_changed.clone()
    }
}

/// Closes upstream connections left idle too long, until the proxy is gone.
async fn sweep_idle(proxy: std::sync::Weak<Proxy>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match proxy.upgrade() {
            Some(p) => p.registry.sweep_idle(),
            None => return,
        }
    }
}

/// Phase 1: what must be refused before anything is sent upstream. An
/// HTTP/1 request's framing and `Host` were checked by the codec as it was
/// read; an HTTP/2 request's are checked here, with the rules that apply
/// when it goes on as HTTP/1.1.
fn accept(req: &mut Request<Inbound>, max_body: u64, has_host: bool) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotSupported(Method::CONNECT));
    }
    if !req.uri().path().starts_with('/') {
        return Err(ProxyError::BadRequest(
            "the request target must be a path (asterisk-form is not routed)",
        ));
    }
    if req.version() == Version::HTTP_11 && req.uri().authority().is_none() && !has_host {
        return Err(ProxyError::BadRequest(
            "HTTP/1.1 requests need a Host header",
        ));
    }
    if req.version() == Version::HTTP_2 {
        headers::accept_h2(req)?;
    }
    if let Inbound::Empty = req.body() {
        return Ok(());
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH)
        && crate::http1::content_length(len.as_bytes()).is_some_and(|n| n > max_body)
    {
        return Err(ProxyError::BodyTooLarge { limit: max_body });
    }
    Ok(())
}

/// The host the client asked for: the authority of an absolute-form or
/// HTTP/2 request target, else the Host header (RFC 9112 section 3.2.2).
fn client_host(req: &Request<Inbound>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

fn log_failure(e: &ProxyError, request_id: &str) {
    use std::error::Error as _;
    let cause = e.source().map(|s| s.to_string());
    if e.status().is_server_error() {
        tracing::warn!(event = "request_failed", request_id, error = %e, cause, "upstream request failed");
    } else {
        tracing::debug!(request_id, error = %e, "request refused");
    }
}

/// Everything the access-log line needs, completed when the response ends.
struct Completion {
    started: Instant,
    request_id: HeaderValue,
    client: SocketAddr,
    /// `None` for a request whose head was refused before it was a request.
    method: Option<Method>,
    uri: Option<Uri>,
    route: Option<usize>,
    upstream: Option<usize>,
    /// The upstream that failed first, when the request fell back.
    fell_back_from: Option<usize>,
    /// Retries sent on other targets of the upstream (its `retries`).
    retries: u8,
    /// A composite's legs and how each did (`order=200 stock=timeout`).
    legs: Option<String>,
    status: u16,
    /// The problem type when the proxy answered itself.
    problem: Option<&'static str>,
    /// Holds the target's in-flight count until the response is done.
    lease: Option<Lease>,
    conn: Arc<ConnShared>,
    /// Keeps the config the request started on, for names in the log.
    snap: Arc<Snapshot>,
    /// The line is written (once, whichever way the request ends).
    logged: bool,
}

impl OnComplete for Completion {
    fn complete(mut self: Box<Self>, bytes: u64, complete: bool) {
        self.write_log(bytes, complete);
    }
}

/// A request that ends without its answer being handed on — the client
/// reset its HTTP/2 stream or hung up before the answer came, which drops
/// the request's future — still ends its in-flight count and gets its
/// access-log line, with status 499 as nginx writes it (SPEC 3.4).
impl Drop for Completion {
    fn drop(&mut self) {
        if !self.logged {
            self.status = CLIENT_CLOSED;
            self.write_log(0, false);
        }
    }
}

/// What the access log says of a request whose client went away first.
const CLIENT_CLOSED: u16 = 499;

impl Completion {
    /// The record of a request that starts now, counted in flight on its
    /// connection until the record is written (or dropped); `request` is
    /// its method and target, when it got as far as having them.
    fn start(
        down: &Downstream,
        snap: Arc<Snapshot>,
        request_id: HeaderValue,
        request: Option<(&Method, &Uri)>,
    ) -> Box<Completion> {
        down.shared.begin();
        Box::new(Completion {
            started: Instant::now(),
            request_id,
            client: down.remote,
            method: request.map(|(m, _)| m.clone()),
            uri: request.map(|(_, u)| u.clone()),
            route: None,
            upstream: None,
            fell_back_from: None,
            retries: 0,
            legs: None,
            status: 0,
            problem: None,
            lease: None,
            conn: down.shared.clone(),
            snap,
            logged: false,
        })
    }

    fn write_log(&mut self, bytes: u64, complete: bool) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        self.conn.end();
        let route = match self.route {
            Some(i) => self.snap.config.routes[i].name.as_str(),
            None if self.upstream.is_some() => "(default)",
            None => "-",
        };
        let upstream = self
            .upstream
            .map_or("-", |i| self.snap.config.upstreams[i].name.as_str());
        let fell_back_from = self
            .fell_back_from
            .map(|i| self.snap.config.upstreams[i].name.as_str());
        let path = self
            .uri
            .as_ref()
            .and_then(|u| u.path_and_query())
            .map_or("-", |pq| pq.as_str());
        let method = self.method.as_ref().map_or("-", Method::as_str);
        let took = self.started.elapsed();
        self.snap
            .traffic
            .series(&self.snap.config, self.route, self.upstream)
            .record(self.status, took, crate::traffic::now_ms());
        tracing::info!(
            target: "strangler::access",
            event = "request",
            request_id = self.request_id.to_str().unwrap_or("-"),
            client = %self.client,
            method,
            path,
            route,
            upstream,
            status = self.status,
            duration_us = took.as_micros() as u64,
            bytes,
            complete,
            problem = self.problem,
            fell_back_from,
            retries = (self.retries > 0).then_some(self.retries),
            legs = self.legs.as_deref(),
            "request"
        );
        drop(self.lease.take());
    }
}
