//! Helpers shared by legacy-stub's integration tests: a hyper-util legacy
//! client (HTTP/1.1 or h2c prior knowledge) with a boxed request body so the
//! same client can send fixed and streamed bodies, one-call request helpers
//! that collect the answer, and an RFC 3339 parser for comparing instants.

#![allow(dead_code)] // each test binary uses a different subset

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;
pub type TestClient = Client<HttpConnector, ReqBody>;

/// An HTTP/1.1 client with keep-alive pooling.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> ReqBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Send `req` and collect the whole response body.
pub async fn send(client: &TestClient, req: Request<ReqBody>) -> Response<Bytes> {
    let resp = client.request(req).await.expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body failed").to_bytes();
    Response::from_parts(parts, body)
}

/// `GET url` on a fresh HTTP/1.1 client.
pub async fn get(url: &str) -> Response<Bytes> {
    let req = Request::get(url).body(empty()).expect("request");
    send(&client(), req).await
}

/// Parse a JSON response body.
pub fn json(resp: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(resp.body()).expect("JSON body")
}

/// The value of header `name` as a string ("" if absent).
pub fn header<'a>(resp: &'a Response<Bytes>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)` into Unix milliseconds.
pub fn parse_rfc3339_utc(s: &str) -> i64 {
    let num = |r: std::ops::Range<usize>| -> i64 { s[r].parse().expect("digits") };
    assert_eq!(&s[10..11], "T", "{s}");
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    let (h, mi, sec) = (num(11..13), num(14..16), num(17..19));
    let rest = &s[19..];
    let (millis, zone) = match rest.strip_prefix('.') {
        Some(r) => (r[..3].parse::<i64>().expect("millis"), &r[3..]),
        None => (0, rest),
    };
    assert!(zone == "Z" || zone == "+00:00", "unexpected zone in {s}");
    ((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + millis
}
