//! Mirroring (SPEC 2.4): a copy of a request goes to the shadow upstream,
//! marked `x-strangler-shadow: 1`, while the client's request goes on as
//! usual; when both answers are in, they are compared and the outcome is
//! recorded. With `calibrate`, some copies also go to the primary upstream a
//! second time, so the report learns which fields differ between two answers
//! of the same service (noise).
//!
//! The client never waits for, sees or suffers from any of it: the copies run
//! on the low-priority shadow thread ([`super::lane`]), the primary answer
//! streams to the client as always (a [`PrimaryCopy`] tee keeps at most
//! [`MAX_BODY`] of it), and when too many comparisons are in flight a copy is
//! not sent at all and counts as skipped. Memory is bounded by [`MAX_IN_FLIGHT`] × three bodies of at most
//! [`MAX_BODY`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::compare::{self, Difference};
use super::lane::ShadowThread;
use crate::config::Shadow;
use crate::proxy::Downstream;
use crate::proxy::body::{RequestBody, Tee};
use crate::snapshot::Snapshot;
use crate::upstream::Lane;
use crate::upstream::body::{ReadError, read_bounded};

/// Largest answer (either side) compared; a larger one is skipped.
pub const MAX_BODY: usize = 1 << 20;

/// Comparisons in flight per proxy; beyond it copies are skipped.
pub const MAX_IN_FLIGHT: usize = 64;

/// Marks a copy, so the service can tell it from real traffic.
pub const X_STRANGLER_SHADOW: HeaderName = HeaderName::from_static("x-strangler-shadow");

/// Where outcomes go: the route's shadow report.
pub trait Sink: Send + Sync + 'static {
    /// A primary answer and its shadow's were compared.
    fn compared(&self, diffs: &[Difference], method: &str, path: &str);
    /// Two answers of the primary were compared (calibration).
    fn calibrated(&self, diffs: &[Difference]);
    /// The shadow failed (no answer, or not in time).
    fn error(&self);
    /// Not compared: too many in flight, a body too large, the client gone.
    fn skipped(&self);
}

/// Per-proxy limits shared by every mirrored request, and the thread the
/// copies run on.
#[derive(Debug, Clone)]
pub struct Limits {
    permits: Arc<Semaphore>,
    thread: Arc<ShadowThread>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            thread: Arc::default(),
        }
    }
}

impl Limits {
    /// Whether every comparison slot is taken: the copy would be skipped, so
    /// nothing is prepared for it.
    pub fn full(&self) -> bool {
        self.permits.available_permits() == 0
    }
}

/// Whether this request is copied: its method is mirrored, the primary is
/// not already the shadow's upstream, and it falls in the share.
pub fn wanted(shadow: &Shadow, primary: usize, method: &Method) -> bool {
    primary != shadow.to
        && shadow.methods.contains(method)
        && (shadow.basis_points >= crate::shift::BUCKETS
            || fastrand::u16(..crate::shift::BUCKETS) < shadow.basis_points)
}

/// What a copy needs of the client's request.
pub struct Copy<'a> {
    pub snap: Arc<Snapshot>,
    pub head: &'a Parts,
    /// The whole body (held, at most 64 KiB); `None` when it was too large.
    pub body: Option<Bytes>,
    /// The primary's upstream, for calibration.
    pub primary: usize,
    /// The upstream path (after rewrite), query included.
    pub path: String,
    pub client_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
    pub down: &'a Downstream,
    pub timeout: Duration,
}

/// Starts the copies of one request; the returned tee must see the primary
/// answer. `None` (counted as skipped) when nothing was sent.
///
/// Only what the copies need is taken here, on the client's thread; the
/// copies' requests are built, sent and compared on the shadow thread.
pub fn start(
    shadow: &Shadow,
    copy: Copy<'_>,
    limits: &Limits,
    sink: Arc<dyn Sink>,
) -> Option<PrimaryCopy> {
    let Some(body) = copy.body else {
        sink.skipped();
        return None;
    };
    let Ok(permit) = limits.permits.clone().try_acquire_owned() else {
        sink.skipped();
        return None;
    };
    // A second copy to the primary is only ever sent for a method that is
    // safe to send twice: a calibrated POST would act twice on the real thing.
    let calibrate = (shadow.calibrate_basis_points > 0
        && crate::fallback::is_idempotent(&copy.head.method)
        && fastrand::u16(..crate::shift::BUCKETS) < shadow.calibrate_basis_points)
        .then_some(copy.primary);
    let (tx, rx) = oneshot::channel();
    let job = Job {
        request: Owned {
            snap: copy.snap,
            head: crate::proxy::forward::copy_head(copy.head),
            body,
            path: copy.path,
            client_host: copy.client_host,
            request_id: copy.request_id.clone(),
            client_ip: copy.down.client_ip.clone(),
            scheme: copy.down.scheme,
        },
        to: shadow.to,
        calibrate,
        primary: rx,
        timeout: copy.timeout,
        compare_headers: shadow.compare_headers.clone(),
        ignore: shadow.ignore.clone(),
        sink: sink.clone(),
        _permit: permit,
    };
    if !limits.thread.spawn(job.run()) {
        sink.skipped();
        return None;
    }
    Some(PrimaryCopy {
        head: None,
        body: BytesMut::new(),
        over: false,
        tx: Some(tx),
    })
}

/// The client's request as the copies are built from it.
struct Owned {
    snap: Arc<Snapshot>,
    /// A copy of the client's head (hop-by-hop headers still in).
    head: Parts,
    body: Bytes,
    /// The upstream path (after rewrite), query included.
    path: String,
    client_host: Option<HeaderValue>,
    request_id: HeaderValue,
    client_ip: HeaderValue,
    scheme: &'static str,
}

/// A request ready to send to one upstream, with the target it is for.
struct Prepared {
    req: Request<RequestBody>,
    lease: crate::upstream::Lease,
}

/// The copy of `request` for `upstream`; `None` when the upstream has no
/// target to take it or the request cannot be forwarded.
fn prepare(request: &Owned, upstream: usize) -> Option<Prepared> {
    let pool = &request.snap.pools[upstream];
    let lease = pool.pick()?;
    let mut parts = crate::proxy::forward::copy_head(&request.head);
    parts.uri = http::Uri::from_static("/");
    parts
        .headers
        .insert(X_STRANGLER_SHADOW, HeaderValue::from_static("1"));
    let req = crate::proxy::forward::build(
        parts,
        RequestBody::full(request.body.clone()),
        crate::proxy::forward::Outbound {
            lease: &lease,
            path: request.path.clone(),
            client_host: request.client_host.clone(),
            request_id: &request.request_id,
            upgrade: false,
            client_ip: &request.client_ip,
            scheme: request.scheme,
        },
    )
    .ok()?;
    Some(Prepared { req, lease })
}

/// An answer read for comparison.
struct Read {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

fn answer(r: &Read) -> compare::Answer<'_> {
    compare::Answer {
        status: r.status,
        headers: &r.headers,
        body: &r.body,
    }
}

/// Why an answer could not be compared.
enum Unread {
    /// No answer (or not in time).
    Failed,
    /// Over [`MAX_BODY`].
    TooLarge,
}

struct Job {
    request: Owned,
    /// The shadow's upstream.
    to: usize,
    /// The primary's upstream, when this copy is calibrated.
    calibrate: Option<usize>,
    primary: oneshot::Receiver<Result<Read, Unread>>,
    timeout: Duration,
    compare_headers: Vec<HeaderName>,
    ignore: compare::Ignore,
    sink: Arc<dyn Sink>,
    _permit: OwnedSemaphorePermit,
}

impl Job {
    async fn run(self) {
        let Some(shadow) = prepare(&self.request, self.to) else {
            return self.sink.skipped();
        };
        let calibrate = self.calibrate.and_then(|u| prepare(&self.request, u));
        let connect = self.request.snap.config.server.connect_timeout;
        let shadow = fetch(shadow, self.timeout, connect);
        let again = async {
            match calibrate {
                Some(p) => Some(fetch(p, self.timeout, connect).await),
                None => None,
            }
        };
        let (shadow, again) = tokio::join!(shadow, again);
        // The primary's copy arrives when its body has streamed to the client.
        let primary = match tokio::time::timeout(self.timeout * 2, self.primary).await {
            Ok(Ok(Ok(read))) => read,
            _ => return self.sink.skipped(),
        };
        if let Some(Ok(second)) = &again {
            let noise = compare::compare(
                &answer(&primary),
                &answer(second),
                &self.compare_headers,
                &self.ignore,
            );
            self.sink.calibrated(&noise);
        }
        match shadow {
            Ok(shadow) => {
                let diffs = compare::compare(
                    &answer(&primary),
                    &answer(&shadow),
                    &self.compare_headers,
                    &self.ignore,
                );
                let head = &self.request.head;
                let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
                self.sink.compared(&diffs, head.method.as_str(), path);
            }
            Err(Unread::TooLarge) => self.sink.skipped(),
            Err(Unread::Failed) => self.sink.error(),
        }
    }
}

async fn fetch(p: Prepared, timeout: Duration, connect: Duration) -> Result<Read, Unread> {
    let resp = crate::proxy::forward::send(&p.lease, Lane::Shadow, p.req, false, timeout, connect)
        .await
        .map_err(|_| Unread::Failed)?;
    let (parts, body) = resp.into_parts();
    let read = async {
        read_bounded(body, MAX_BODY).await.map_err(|e| match e {
            ReadError::TooLarge => Unread::TooLarge,
            ReadError::Failed => Unread::Failed,
        })
    };
    let body = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Unread::Failed)??;
    drop(p.lease);
    Ok(Read {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Keeps a bounded copy of the primary answer as it streams to the client,
/// and hands it to the comparison when the body ends.
pub struct PrimaryCopy {
    head: Option<(u16, HeaderMap)>,
    body: BytesMut,
    over: bool,
    tx: Option<oneshot::Sender<Result<Read, Unread>>>,
}

impl PrimaryCopy {
    /// The primary answer's status and headers (after hop-by-hop removal).
    pub fn head(&mut self, status: u16, headers: &HeaderMap) {
        self.head = Some((status, headers.clone()));
    }
}

impl Tee for PrimaryCopy {
    fn data(&mut self, data: &Bytes) {
        if self.over {
            return;
        }
        if self.body.len() + data.len() > MAX_BODY {
            self.over = true;
            self.body = BytesMut::new();
        } else {
            self.body.extend_from_slice(data);
        }
    }

    fn end(mut self: Box<Self>, complete: bool) {
        let result = match (self.head.take(), complete, self.over) {
            (Some((status, headers)), true, false) => Ok(Read {
                status,
                headers,
                body: std::mem::take(&mut self.body).freeze(),
            }),
            (_, _, true) => Err(Unread::TooLarge),
            _ => Err(Unread::Failed),
        };
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(result);
        }
    }
}

impl Sink for super::report::Report {
    fn compared(&self, diffs: &[Difference], method: &str, path: &str) {
        super::report::Report::compared(self, diffs, method, path);
    }
    fn calibrated(&self, diffs: &[Difference]) {
        super::report::Report::calibrated(self, diffs);
    }
    fn error(&self) {
        super::report::Report::error(self);
    }
    fn skipped(&self) {
        super::report::Report::skipped(self);
    }
}
