//! Composition (SPEC 2.5): one route answered by several upstream calls, the
//! *legs*, whose JSON answers are merged into one.
//!
//! The legs form a graph from their placeholders (checked acyclic when the
//! config is read). A leg starts the moment every leg it reads from is done,
//! so independent legs run concurrently and the composite takes as long as
//! its critical path. A `*` placeholder runs the leg once per element of an
//! array, at most [`EACH_CONCURRENCY`] at a time, and the leg's value is the
//! array of answers in element order.
//!
//! Failure is decided per leg: a required leg that fails ends the composite
//! at once (404 when it answered 404, 504 on timeout, else 502, naming the
//! leg); an optional leg that fails — or reads from one that failed — becomes
//! `null` and is listed in `x-strangler-partial`.
//!
//! Leg answers are read whole (they must be parsed), each bounded by
//! [`MAX_LEG_BODY`]; a larger answer fails the leg.

pub mod template;

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use serde_json::{Map, Value};

use crate::config::{Compose, Leg, Merge};
use crate::proxy::Downstream;
use crate::proxy::body::ResponseBody;
use crate::snapshot::Snapshot;
use crate::upstream::body::{ReadError, read_bounded};
use template::Source;

/// Largest leg answer read; a larger one fails the leg.
pub const MAX_LEG_BODY: usize = 8 << 20;

/// Calls of one `*` leg in flight at once.
pub const EACH_CONCURRENCY: usize = 16;

/// Marks an answer some optional legs of which failed: their names, comma
/// separated, in leg order.
pub const X_STRANGLER_PARTIAL: header::HeaderName =
    header::HeaderName::from_static("x-strangler-partial");

/// Why one leg failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegFailure {
    #[error("answered {0}")]
    Status(u16),
    #[error("did not answer within {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("could not be reached")]
    Unreachable,
    #[error("failed to answer")]
    Failed,
    #[error("answered with a body that is not JSON")]
    NotJson,
    #[error("answered with a body over {} bytes", MAX_LEG_BODY)]
    TooLarge,
    #[error("needs `{{{0}}}`, which is missing")]
    Missing(String),
    #[error("reads from optional leg \"{0}\", which failed")]
    DependencyFailed(String),
}

impl LegFailure {
    /// The composite's status when a required leg fails like this.
    pub fn status(&self) -> StatusCode {
        match self {
            LegFailure::Status(404) => StatusCode::NOT_FOUND,
            LegFailure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short word for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            LegFailure::Status(_) => "status",
            LegFailure::Timeout(_) => "timeout",
            LegFailure::Unreachable => "unreachable",
            LegFailure::Failed => "failed",
            LegFailure::NotJson => "not_json",
            LegFailure::TooLarge => "too_large",
            LegFailure::Missing(_) => "missing_field",
            LegFailure::DependencyFailed(_) => "dependency_failed",
        }
    }
}

/// A required leg failed: the composite fails with it.
#[derive(Debug, thiserror::Error)]
#[error("leg \"{leg}\" {failure}")]
pub struct ComposeError {
    pub leg: String,
    pub failure: LegFailure,
}

/// What one leg came to.
#[derive(Debug, Clone, PartialEq)]
pub enum LegOutcome {
    Done {
        status: u16,
        took: Duration,
    },
    Failed {
        failure: LegFailure,
        took: Duration,
    },
    /// Never sent: a leg it reads from failed.
    Skipped(LegFailure),
}

impl LegOutcome {
    /// How long the leg ran, when it did.
    pub fn took(&self) -> Option<Duration> {
        match self {
            LegOutcome::Done { took, .. } | LegOutcome::Failed { took, .. } => Some(*took),
            LegOutcome::Skipped(_) => None,
        }
    }

    pub fn failed(&self) -> bool {
        !matches!(self, LegOutcome::Done { .. })
    }
}

/// Everything about a composite the access log and metrics need.
#[derive(Debug, Default)]
pub struct Report {
    /// In leg order; `None` for legs never started (the composite failed first).
    pub legs: Vec<(String, Option<LegOutcome>)>,
}

impl Report {
    /// `order=200 customer=200 stock=timeout`: the access log's `legs` field.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, outcome) in &self.legs {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
            out.push('=');
            match outcome {
                None => out.push_str("cancelled"),
                Some(LegOutcome::Done { status, .. }) => out.push_str(&status.to_string()),
                Some(LegOutcome::Failed { failure, .. } | LegOutcome::Skipped(failure)) => {
                    out.push_str(failure.kind());
                }
            }
        }
        out
    }
}

/// How the legs of one request are sent.
pub struct Call<'a> {
    pub snap: &'a Snapshot,
    /// The client's request head: its end-to-end headers go to every leg.
    pub head: &'a Parts,
    /// The route's parameters by name.
    pub params: &'a [(&'a str, &'a str)],
    pub client_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
    pub down: &'a Downstream,
    /// The route's timeout, for legs without their own.
    pub timeout: Duration,
}

/// Answers a composed route: runs the legs, merges their answers.
pub async fn answer(
    compose: &Compose,
    call: &Call<'_>,
    report: &mut Report,
) -> Result<Response<ResponseBody>, ComposeError> {
    let n = compose.legs.len();
    report.legs = compose
        .legs
        .iter()
        .map(|l| (l.name.clone(), None))
        .collect();
    // `Some(Ok(value))` done, `Some(Err(()))` failed (optional) or skipped.
    let mut results: Vec<Option<Result<Arc<Value>, ()>>> = vec![None; n];
    let mut started = vec![false; n];
    let mut partial = vec![false; n];
    let mut running = FuturesUnordered::new();
    loop {
        // Start what is ready; settle what can never run.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for &i in &compose.order {
                if started[i] {
                    continue;
                }
                let leg = &compose.legs[i];
                if !leg.deps.iter().all(|&d| results[d].is_some()) {
                    continue;
                }
                started[i] = true;
                progressed = true;
                if let Some(&bad) = leg
                    .deps
                    .iter()
                    .find(|&&d| matches!(results[d], Some(Err(()))))
                {
                    let failure = LegFailure::DependencyFailed(compose.legs[bad].name.clone());
                    report.legs[i].1 = Some(LegOutcome::Skipped(failure.clone()));
                    if !leg.optional {
                        return Err(ComposeError {
                            leg: leg.name.clone(),
                            failure,
                        });
                    }
                    partial[i] = true;
                    results[i] = Some(Err(()));
                    continue;
                }
                // The answers it reads, shared rather than copied.
                let inputs: Vec<Option<Arc<Value>>> = results
                    .iter()
                    .map(|r| r.as_ref().and_then(|r| r.as_ref().ok()).cloned())
                    .collect();
                running.push(async move { (i, run_leg(compose, leg, call, &inputs).await) });
            }
        }
        let Some((i, (outcome, value))) = running.next().await else {
            break;
        };
        let leg = &compose.legs[i];
        report.legs[i].1 = Some(outcome.clone());
        match (outcome, value) {
            (LegOutcome::Done { .. }, Some(v)) => results[i] = Some(Ok(Arc::new(v))),
            (LegOutcome::Failed { failure, .. }, _) if !leg.optional => {
                return Err(ComposeError {
                    leg: leg.name.clone(),
                    failure,
                });
            }
            _ => {
                partial[i] = true;
                results[i] = Some(Err(()));
            }
        }
    }
    drop(running);
    let values: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Some(Ok(v)) => Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()),
            _ => Value::Null,
        })
        .collect();
    let body = merge(compose, values);
    let mut resp = Response::new(ResponseBody::full(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let failed: Vec<&str> = compose
        .legs
        .iter()
        .zip(&partial)
        .filter(|(_, p)| **p)
        .map(|(l, _)| l.name.as_str())
        .collect();
    if !failed.is_empty()
        && let Ok(v) = HeaderValue::from_str(&failed.join(","))
    {
        resp.headers_mut().insert(X_STRANGLER_PARTIAL, v);
    }
    Ok(resp)
}

/// Runs one leg: once, or once per element for a `*` leg. The value is the
/// answer (after `pick`), or the array of answers.
async fn run_leg(
    compose: &Compose,
    leg: &Leg,
    call: &Call<'_>,
    inputs: &[Option<Arc<Value>>],
) -> (LegOutcome, Option<Value>) {
    let started = tokio::time::Instant::now();
    let paths = match paths(compose, leg, call, inputs) {
        Ok(p) => p,
        Err(missing) => {
            let failure = LegFailure::Missing(missing);
            let took = started.elapsed();
            return (LegOutcome::Failed { failure, took }, None);
        }
    };
    let result = match paths {
        Paths::One(path) => fetch(leg, call, path).await,
        Paths::Each(paths) => {
            let answers: Vec<Result<(u16, Value), LegFailure>> =
                futures_util::stream::iter(paths.into_iter().map(|p| fetch(leg, call, p)))
                    .buffered(EACH_CONCURRENCY)
                    .collect()
                    .await;
            let mut out = Vec::with_capacity(answers.len());
            let mut status = 200;
            for a in answers {
                match a {
                    Ok((s, v)) => {
                        status = s;
                        out.push(v);
                    }
                    Err(failure) => {
                        let took = started.elapsed();
                        return (LegOutcome::Failed { failure, took }, None);
                    }
                }
            }
            Ok((status, Value::Array(out)))
        }
    };
    match result {
        Ok((status, value)) => (
            LegOutcome::Done {
                status,
                took: started.elapsed(),
            },
            Some(value),
        ),
        Err(failure) => (
            LegOutcome::Failed {
                failure,
                took: started.elapsed(),
            },
            None,
        ),
    }
}

enum Paths {
    One(String),
    Each(Vec<String>),
}

/// The leg's path(s) with every placeholder filled; `Err` names a missing one.
fn paths(
    compose: &Compose,
    leg: &Leg,
    call: &Call<'_>,
    inputs: &[Option<Arc<Value>>],
) -> Result<Paths, String> {
    let value_of = |source: &Source, element: Option<&Value>| -> Option<Vec<u8>> {
        match source {
            Source::Param(p) => call
                .params
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| template::percent_decode(v)),
            Source::Field { leg: from, path } => {
                let dep = index_of(compose, from)?;
                let root: &Value = inputs.get(dep)?.as_ref()?;
                let star = path.iter().position(|s| s == "*");
                let v = match (star, element) {
                    (Some(at), Some(el)) => walk(el, &path[at + 1..])?,
                    _ => walk(root, path)?,
                };
                scalar(v).map(String::into_bytes)
            }
        }
    };
    let Some(each) = leg.path.each() else {
        return leg
            .path
            .render(|s| value_of(s, None))
            .map(Paths::One)
            .ok_or_else(|| first_missing(leg, |s| value_of(s, None)));
    };
    // The array the `*` walks over.
    let Source::Field { leg: from, path } = each else {
        return Err(each.to_string());
    };
    let at = path.iter().position(|s| s == "*").unwrap_or(path.len());
    let dep = index_of(compose, from).ok_or_else(|| each.to_string())?;
    let root: &Value = inputs
        .get(dep)
        .and_then(|r| r.as_deref())
        .ok_or_else(|| each.to_string())?;
    let elements = walk(root, &path[..at])
        .and_then(Value::as_array)
        .ok_or_else(|| each.to_string())?;
    let mut out = Vec::with_capacity(elements.len());
    for el in elements {
        let rendered = leg.path.render(|s| {
            if s == each {
                value_of(s, Some(el))
            } else {
                value_of(s, None)
            }
        });
        out.push(rendered.ok_or_else(|| each.to_string())?);
    }
    Ok(Paths::Each(out))
}

/// The index of the leg called `name`.
fn index_of(compose: &Compose, name: &str) -> Option<usize> {
    compose.legs.iter().position(|l| l.name == name)
}

fn first_missing(leg: &Leg, mut value: impl FnMut(&Source) -> Option<Vec<u8>>) -> String {
    leg.path
        .sources()
        .find(|s| value(s).is_none())
        .map_or_else(|| leg.path.to_string(), ToString::to_string)
}

/// Follows object keys and array indexes.
fn walk<'v>(mut v: &'v Value, path: &[String]) -> Option<&'v Value> {
    for step in path {
        v = match v {
            Value::Object(m) => m.get(step)?,
            Value::Array(a) => a.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// A placeholder's text: strings as they are, numbers and booleans as JSON
/// writes them; null, objects and arrays are not a path segment.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One upstream call of a leg: the answer's status and JSON body.
async fn fetch(leg: &Leg, call: &Call<'_>, path: String) -> Result<(u16, Value), LegFailure> {
    let pool = &call.snap.pools[leg.upstream];
    let lease = pool.pick().ok_or(LegFailure::Unreachable)?;
    let parts = leg_request(leg, call.head);
    let timeout = leg.timeout.unwrap_or(call.timeout);
    // A leg carries no body: its upstream head is written straight from its
    // own, as a plain route's bodiless request is.
    let head = crate::proxy::forward::Encoded::direct(
        &parts,
        &crate::proxy::forward::Outbound {
            lease: &lease,
            path,
            client_host: call.client_host.clone(),
            request_id: call.request_id,
            upgrade: false,
            client_ip: &call.down.client_ip,
            scheme: call.down.scheme,
        },
    )
    .map_err(|_| LegFailure::Failed)?;
    drop(parts);
    let started = tokio::time::Instant::now();
    let connect_timeout = call.snap.config.server.connect_timeout;
    let resp = crate::proxy::forward::send_head(
        &lease,
        crate::upstream::Lane::Client,
        head,
        timeout,
        connect_timeout,
    )
    .await
    .map_err(|e| match e {
        crate::proxy::ProxyError::Timeout { .. } => LegFailure::Timeout(timeout),
        // A timeout, like a plain route's 504, whichever clock ran out.
        crate::proxy::ProxyError::ConnectTimeout { .. } => {
            LegFailure::Timeout(connect_timeout.min(timeout))
        }
        crate::proxy::ProxyError::Connect { .. } => LegFailure::Unreachable,
        _ => LegFailure::Failed,
    })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(LegFailure::Status(status));
    }
    // The body must arrive within what is left of the leg's timeout too.
    let left = timeout.saturating_sub(started.elapsed());
    let read = read_bounded(resp.into_body(), MAX_LEG_BODY);
    let bytes = tokio::time::timeout(left, async {
        read.await.map_err(|e| match e {
            ReadError::TooLarge => LegFailure::TooLarge,
            ReadError::Failed => LegFailure::Failed,
        })
    })
    .await
    .map_err(|_| LegFailure::Timeout(timeout))??;
    drop(lease);
    let value = serde_json::from_slice(&bytes).map_err(|_| LegFailure::NotJson)?;
    Ok((status, value))
}

/// The leg's request head: its method, the client's end-to-end headers
/// without those that describe a body (a leg carries none), asking for JSON
/// in plain (uncompressed) form since the proxy must parse it.
fn leg_request(leg: &Leg, client: &Parts) -> Parts {
    let (mut req, ()) = Request::new(()).into_parts();
    req.method = leg.method.clone();
    let headers = &mut req.headers;
    *headers = client.headers.clone();
    for h in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(h);
    }
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    req
}

/// Keeps only the `pick`ed top-level fields of an answer (of each answer of
/// a `*` leg). Applied when the composite is built: legs that read from this
/// one see its whole answer.
fn picked(leg: &Leg, v: Value) -> Value {
    match v {
        Value::Array(items) if leg.path.each().is_some() => {
            Value::Array(items.into_iter().map(|i| pick(leg, i)).collect())
        }
        v => pick(leg, v),
    }
}

/// Keeps only the `pick`ed top-level fields of an object answer.
fn pick(leg: &Leg, v: Value) -> Value {
    match (&leg.pick, v) {
        (Some(keep), Value::Object(mut m)) => {
            m.retain(|k, _| keep.iter().any(|p| p == k));
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// The composite body, keys in file order: `nest` puts each leg's value
/// (after `pick`) under its name; `flat` merges the legs' objects in leg
/// order (later legs win) and puts any other value (an array, a `null`)
/// under the leg's name.
pub fn merge(compose: &Compose, values: Vec<Value>) -> Value {
    let mut out = Map::new();
    for (leg, v) in compose.legs.iter().zip(values) {
        match (compose.merge, picked(leg, v)) {
            (Merge::Flat, Value::Object(m)) => out.extend(m),
            (_, v) => {
                out.insert(leg.name.clone(), v);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
