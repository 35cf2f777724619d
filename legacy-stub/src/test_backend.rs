//! The generic test backend (`Kind::Test`): the upstream strangler's routing,
//! rewrite, header, timeout, streaming and failure tests and the benchmarks
//! talk to. Everything not reserved below is an *echo*: a JSON description
//! of the request exactly as it arrived, which is what tests inspect.
//!
//! Reserved paths: `/health`, `/small`, `/status/{code}`,
//! `/status-on/{name}/{code}` (that status from the backend called `name`
//! only, 200 from any other: for tests where two backends see the same path,
//! such as fallback), `/delay/{ms}`, `/bytes/{n}`, `/chunked/{n}`,
//! `/reset/{n}`, `/drain`, `/ws`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::pattern::{Mode, PatternBody};
use crate::respond::{self, Resp};
use crate::server::Shared;

/// Longest `/delay/{ms}` honoured (10 minutes); larger values are capped.
pub(crate) const MAX_DELAY_MS: u64 = 600_000;

/// Largest `/bytes/{n}` (and `/chunked`, `/reset`) body: 10 GiB.
pub(crate) const MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Answer one request for the test backend called `name`.
pub(crate) async fn handle(name: &str, shared: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    if let Some(arg) = path.strip_prefix("/status/") {
        let arg = arg.to_owned();
        return status(name, req, &arg).await;
    }
    if let Some(arg) = path.strip_prefix("/status-on/") {
        let (who, code) = arg.split_once('/').unwrap_or((arg, ""));
        let code = if who == name {
            code.to_owned()
        } else {
            "200".to_owned()
        };
        return status(name, req, &code).await;
    }
    if let Some(arg) = path.strip_prefix("/delay/") {
        let arg = arg.to_owned();
        return delay(name, req, &arg).await;
    }
    for (prefix, mode) in [
        ("/bytes/", Mode::Sized),
        ("/chunked/", Mode::Chunked),
        ("/reset/", Mode::ResetAfter),
    ] {
        if let Some(arg) = path.strip_prefix(prefix) {
            return pattern(arg, mode);
        }
    }
    match path {
        "/health" => respond::json(StatusCode::OK, &json!({"status": "ok"})),
        "/small" => {
            respond::with_body(StatusCode::OK, "text/plain", Bytes::from_static(b"hello\n"))
        }
        "/drain" => drain(req).await,
        "/ws" => crate::ws::accept(shared, req),
        _ => echo(name, req, StatusCode::OK).await,
    }
}

/// `/status/{code}`: the echo with that status; informational (1xx) and
/// invalid codes are a 400, 204 and 304 carry no body.
async fn status(name: &str, req: Request<Incoming>, arg: &str) -> Resp {
    let code = arg
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| !c.is_informational());
    match code {
        None => respond::bad_request("invalid status code", Some(("code", arg))),
        Some(code @ (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)) => {
            // Still consume the body so the connection stays reusable.
            let _ = respond::count_body(req.into_body()).await;
            respond::status_only(code)
        }
        Some(code) => echo(name, req, code).await,
    }
}

/// `/delay/{ms}`: wait (capped at [`MAX_DELAY_MS`]) before sending any
/// response header, then the echo.
async fn delay(name: &str, req: Request<Incoming>, arg: &str) -> Resp {
    let Ok(ms) = arg.parse::<u64>() else {
        return respond::bad_request("invalid delay", Some(("ms", arg)));
    };
    tokio::time::sleep(Duration::from_millis(ms.min(MAX_DELAY_MS))).await;
    echo(name, req, StatusCode::OK).await
}

/// `/bytes/{n}`, `/chunked/{n}`, `/reset/{n}`: `n` pattern bytes, framed by
/// `content-length`, by chunked encoding, or with a `content-length` of `2n`
/// that the body never reaches because it fails after `n` bytes.
fn pattern(arg: &str, mode: Mode) -> Resp {
    let n = match arg.parse::<u64>() {
        Ok(n) if n <= MAX_BYTES => n,
        _ => return respond::bad_request("invalid byte count", Some(("n", arg))),
    };
    let mut resp = Resp::new(PatternBody::new(n, mode).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    match mode {
        Mode::Sized => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        Mode::ResetAfter => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n.saturating_mul(2)));
        }
        Mode::Chunked => {}
    }
    resp
}

/// `/drain`: count the request body frame by frame (never holding it) and
/// report `{"received": N}`.
async fn drain(req: Request<Incoming>) -> Resp {
    match respond::count_body(req.into_body()).await {
        Ok(n) => respond::json(StatusCode::OK, &json!({"received": n})),
        Err(e) => respond::bad_request(
            "could not read request body",
            Some(("detail", &e.to_string())),
        ),
    }
}

/// The echo: a JSON description of the request exactly as received,
/// answered with `status`. The body is counted, not kept.
pub(crate) async fn echo(name: &str, req: Request<Incoming>, status: StatusCode) -> Resp {
    let (parts, body) = req.into_parts();
    let mut description = describe(name, &parts);
    let body_len = match respond::count_body(body).await {
        Ok(n) => n,
        Err(e) => {
            return respond::bad_request(
                "could not read request body",
                Some(("detail", &e.to_string())),
            );
        }
    };
    if let Some(obj) = description.as_object_mut() {
        obj.insert("body_len".to_owned(), Value::from(body_len));
    }
    respond::json(status, &description)
}

/// Everything about a request head that the echo reports. `path` is the
/// request-target's path and query byte for byte; repeated headers become
/// arrays in arrival order.
fn describe(name: &str, parts: &http::request::Parts) -> Value {
    let uri = &parts.uri;
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_owned());
    let mut headers = Map::new();
    for key in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(key)
            .iter()
            .map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([single]) => single,
            Err(many) => Value::Array(many),
        };
        headers.insert(key.as_str().to_owned(), value);
    }
    json!({
        "server": name,
        "method": parts.method.as_str(),
        "path": path,
        "query": uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_reports_path_query_and_repeated_headers() {
        let req = Request::builder()
            .method("PATCH")
            .uri("/a/b%20c?x=1&x=2&y")
            .header("X-One", "1")
            .header("x-many", "a")
            .header("x-many", "b")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let v = describe("t1", &parts);
        assert_eq!(v["server"], "t1");
        assert_eq!(v["method"], "PATCH");
        assert_eq!(v["path"], "/a/b%20c?x=1&x=2&y");
        assert_eq!(v["query"], "x=1&x=2&y");
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["headers"]["x-one"], "1");
        assert_eq!(v["headers"]["x-many"], json!(["a", "b"]));
    }

    #[test]
    fn describe_without_query_reports_null() {
        let (parts, ()) = Request::builder()
            .uri("/plain")
            .body(())
            .expect("request")
            .into_parts();
        let v = describe("t", &parts);
        assert_eq!(v["path"], "/plain");
        assert!(v["query"].is_null());
    }
}
