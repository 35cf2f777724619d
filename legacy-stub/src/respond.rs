//! Response and request-body plumbing shared by every program: the one
//! response body type all handlers return, constructors for JSON / text /
//! HTML / empty responses and the standard error answers (404, 405, 400,
//! 413), and the two ways a handler reads a request body — counting it
//! frame by frame without keeping it, or collecting it up to a hard limit.
//!
//! No constructor here can panic on request-controlled input: headers built
//! from request data go through fallible conversions and are skipped if
//! invalid.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

/// Error type of streaming response bodies (e.g. the deliberate mid-body
/// reset of `/reset/{n}`).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The single response body type: boxed so fixed bodies and lazily
/// generated streams can come out of the same handler.
pub(crate) type RespBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response as every handler returns it.
pub(crate) type Resp = Response<RespBody>;

pub(crate) const JSON: &str = "application/json";

/// A body with fixed contents.
pub(crate) fn full(data: impl Into<Bytes>) -> RespBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no contents.
pub(crate) fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response with `status`, a `content-type` and a fixed body.
pub(crate) fn with_body(status: StatusCode, content_type: &'static str, data: Bytes) -> Resp {
    let mut resp = Response::new(full(data));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response (`content-type: application/json`).
pub(crate) fn json(status: StatusCode, value: &Value) -> Resp {
    with_body(status, JSON, Bytes::from(value.to_string()))
}

/// A status-only response with an empty body.
pub(crate) fn status_only(status: StatusCode) -> Resp {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp
}

/// The generic 404 for paths no route knows.
pub(crate) fn not_found(path: &str) -> Resp {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": "not found", "path": path}),
    )
}

/// 405 for a known resource asked with a method it does not support; the
/// `allow` header lists the methods it does.
pub(crate) fn method_not_allowed(method: &http::Method, allow: &'static str) -> Resp {
    let mut resp = json(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method not allowed", "method": method.as_str(), "allow": allow}),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

/// 400 with a JSON `{"error": message, ...extra}` body.
pub(crate) fn bad_request(message: &str, extra: Option<(&str, &str)>) -> Resp {
    let mut body = json!({"error": message});
    if let (Some((k, v)), Some(obj)) = (extra, body.as_object_mut()) {
        obj.insert(k.to_owned(), Value::from(v));
    }
    json(StatusCode::BAD_REQUEST, &body)
}

/// Insert a header whose value comes from formatting request-derived data;
/// silently skipped if the value is not a valid header value.
pub(crate) fn set_header(resp: &mut Resp, name: http::header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Read a request body to its end, counting data bytes and dropping each
/// frame as soon as it is counted, so memory stays flat however large the
/// upload is.
pub(crate) async fn count_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n = n.saturating_add(data.len() as u64);
        }
    }
    Ok(n)
}

/// Why [`read_limited`] gave up.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body (declared or actual) is larger than the limit.
    TooLarge,
    /// The connection failed while reading.
    Body(hyper::Error),
}

/// Collect a request body of at most `limit` bytes. A `content-length`
/// above the limit is refused before reading anything; a body that turns
/// out longer is refused as soon as it crosses the limit.
pub(crate) async fn read_limited(
    headers: &http::HeaderMap,
    mut body: Incoming,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        if let Some(data) = frame.data_ref() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf)
}

/// The answer for a body that [`read_limited`] refused.
pub(crate) fn read_error(err: &ReadError, limit: usize) -> Resp {
    match err {
        ReadError::TooLarge => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": "request body too large", "limit": limit}),
        ),
        ReadError::Body(e) => bad_request(
            "could not read request body",
            Some(("detail", &e.to_string())),
        ),
    }
}
