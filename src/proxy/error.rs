//! The errors a request can meet on its journey, and the one place that turns
//! them into answers: `application/problem+json` (RFC 9457) bodies that name
//! upstreams by their config name and never show an internal address. The
//! causes, addresses included, go to the log instead.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{BoxError, ResponseBody};
use crate::path::PathError;

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A request head the HTTP/1 codec refused: malformed, ambiguous
    /// framing (SPEC 3.4), too large, an unknown version or expectation.
    #[error(transparent)]
    Head(#[from] crate::http1::request::HeadError),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error(transparent)]
    BadPath(#[from] PathError),
    #[error("no route matches this request and no default upstream is configured")]
    NoRoute,
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the {0} method is not supported by this proxy")]
    MethodNotSupported(http::Method),
    #[error("upstream \"{upstream}\" has no healthy target")]
    NoTarget { upstream: String },
    #[error("upstream \"{upstream}\" could not be reached")]
    Connect {
        upstream: String,
        #[source]
        source: BoxError,
    },
    #[error("connecting to upstream \"{upstream}\" timed out")]
    ConnectTimeout { upstream: String },
    #[error("upstream \"{upstream}\" did not answer within {}", humanize(*.timeout))]
    Timeout { upstream: String, timeout: Duration },
    #[error("the request body could not be read from the client")]
    ClientBody(#[source] BoxError),
    /// A required leg of a composed route failed (SPEC 2.5).
    #[error(transparent)]
    Compose(#[from] crate::compose::ComposeError),
    #[error("upstream \"{upstream}\" failed to answer")]
    Upstream {
        upstream: String,
        #[source]
        source: BoxError,
    },
}

/// nginx's status for a request whose client went away before its answer.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Whether a body error is the client hanging up mid-body.
fn client_closed(e: &BoxError) -> bool {
    e.downcast_ref::<crate::http1::incoming::IncomingError>()
        == Some(&crate::http1::incoming::IncomingError::Closed)
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl ProxyError {
    /// The status and the problem type, in one exhaustive match.
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::Head(e) => {
                use crate::http1::request::HeadError;
                let kind = match e {
                    HeadError::Framing(_) => "bad-framing",
                    HeadError::Malformed(_) => "bad-request",
                    HeadError::TooLarge => "head-too-large",
                    HeadError::Version => "version-not-supported",
                    HeadError::Expectation => "expectation-failed",
                };
                (e.status(), kind)
            }
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ProxyError::ClientBody(e) if client_closed(e) => (CLIENT_CLOSED, "client-closed"),
            ProxyError::ClientBody(_) => (StatusCode::BAD_REQUEST, "bad-request-body"),
            ProxyError::BadPath(_) => (StatusCode::BAD_REQUEST, "bad-path"),
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "no-route"),
            ProxyError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
            ProxyError::MethodNotSupported(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-supported")
            }
            ProxyError::NoTarget { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no-healthy-target"),
            ProxyError::Connect { .. } => (StatusCode::BAD_GATEWAY, "upstream-unreachable"),
            ProxyError::ConnectTimeout { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream-connect-timeout")
            }
            ProxyError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream-timeout"),
            ProxyError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "upstream-failed"),
            ProxyError::Compose(e) => match e.failure.status() {
                StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, "compose-leg-not-found"),
                StatusCode::GATEWAY_TIMEOUT => (StatusCode::GATEWAY_TIMEOUT, "compose-leg-timeout"),
                _ => (StatusCode::BAD_GATEWAY, "compose-leg-failed"),
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_type().0
    }

    /// Whether the client connection must close after this answer: after a
    /// framing problem the rest of the byte stream cannot be trusted, and an
    /// unread oversized body is cheaper to drop with the connection.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::Head(_) | ProxyError::BodyTooLarge { .. } | ProxyError::ClientBody(_)
        )
    }

    /// The answer the client gets.
    pub fn to_response(&self, request_id: &str) -> Response<ResponseBody> {
        let (status, kind) = self.status_and_type();
        let mut resp = problem(status, kind, &self.to_string(), request_id);
        if let ProxyError::MethodNotSupported(_) = self {
            // RFC 9110 section 15.5.6: a 405 says what is allowed.
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if self.closes_connection() {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A `problem+json` answer. `detail` must not carry internal addresses.
pub fn problem(
    status: StatusCode,
    kind: &str,
    detail: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "type": format!("urn:strangler:problem:{kind}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "request_id": request_id,
    });
    let mut resp = Response::new(ResponseBody::full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn problems_are_rfc9457_json_without_addresses() {
        let err = ProxyError::Connect {
            upstream: "orders".into(),
            source: "tcp connect error: 10.1.2.3:9101: Connection refused".into(),
        };
        let resp = err.to_response("abc");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "urn:strangler:problem:upstream-unreachable");
        assert_eq!(v["title"], "Bad Gateway");
        assert_eq!(v["status"], 502);
        assert_eq!(v["detail"], "upstream \"orders\" could not be reached");
        assert_eq!(v["request_id"], "abc");
        assert!(!String::from_utf8_lossy(&body).contains("10.1.2.3"));
    }

    #[test]
    fn statuses() {
        let t = |e: ProxyError| e.status().as_u16();
        assert_eq!(t(ProxyError::NoRoute), 404);
        assert_eq!(t(ProxyError::BodyTooLarge { limit: 1 }), 413);
        assert_eq!(t(ProxyError::BadPath(PathError::AboveRoot)), 400);
        assert_eq!(
            t(ProxyError::NoTarget {
                upstream: "u".into()
            }),
            503
        );
        assert_eq!(
            t(ProxyError::Timeout {
                upstream: "u".into(),
                timeout: Duration::from_secs(1)
            }),
            504
        );
        assert_eq!(
            ProxyError::Timeout {
                upstream: "u".into(),
                timeout: Duration::from_millis(1500)
            }
            .to_string(),
            "upstream \"u\" did not answer within 1500ms"
        );
    }
}
