//! Why an admin call did not do what was asked, and the one place that turns
//! that into an answer: `application/problem+json` (RFC 9457) like the
//! proxy's own errors, with extension members where a list helps the
//! operator (every config error of a failed reload, the routes that shift).

use http::{HeaderValue, Response, StatusCode, header};

use super::auth::Denied;
use crate::proxy::body::ResponseBody;
use crate::reload::ReloadError;
use crate::shift::state::ResumeError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such admin endpoint; this listener serves {}", super::ENDPOINTS)]
    NotFound,
    #[error("this endpoint accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("the config did not come from a file, so there is nothing to reload")]
    NoReloader,
    #[error("the reload failed and the old config keeps serving: {}", reload_errors(.0).join("; "))]
    Reload(#[source] ReloadError),
    #[error("the route name is not valid percent-encoded UTF-8")]
    BadRouteName,
    #[error("no route \"{name}\" shifts traffic (routes with a shift: {})", list(.shifted))]
    UnknownRoute { name: String, shifted: Vec<String> },
    #[error("route \"{route}\": {source}")]
    NotResumable {
        route: String,
        #[source]
        source: ResumeError,
    },
    #[error("the metrics could not be encoded")]
    Metrics(#[source] std::fmt::Error),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl AdminError {
    /// The status and the problem type, in one exhaustive match.
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            AdminError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
            }
            AdminError::Denied(Denied::Missing | Denied::Invalid) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            AdminError::Denied(Denied::NoToken) => (StatusCode::FORBIDDEN, "no-admin-token"),
            AdminError::NoReloader => (StatusCode::CONFLICT, "no-config-file"),
            AdminError::Reload(_) => (StatusCode::BAD_REQUEST, "invalid-config"),
            AdminError::BadRouteName => (StatusCode::BAD_REQUEST, "bad-route-name"),
            AdminError::UnknownRoute { .. } => (StatusCode::NOT_FOUND, "unknown-route"),
            AdminError::NotResumable { .. } => (StatusCode::CONFLICT, "nothing-to-resume"),
            AdminError::Metrics(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics-failed"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_type().0
    }

    /// Members added to the problem object besides the RFC 9457 ones.
    fn extensions(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut ext = serde_json::Map::new();
        match self {
            AdminError::Reload(e) => {
                ext.insert("errors".into(), reload_errors(e).into());
            }
            AdminError::UnknownRoute { shifted, .. } => {
                ext.insert("shifted_routes".into(), shifted.clone().into());
            }
            AdminError::NotResumable { route, .. } => {
                ext.insert("route".into(), route.clone().into());
            }
            AdminError::NotFound
            | AdminError::MethodNotAllowed { .. }
            | AdminError::Denied(_)
            | AdminError::NoReloader
            | AdminError::BadRouteName
            | AdminError::Metrics(_) => {}
        }
        ext
    }

    /// The answer: problem+json, plus `Allow` on a 405 and `WWW-Authenticate`
    /// on a 401 (RFC 9110 sections 15.5.6 and 11.6.1; RFC 6750 section 3 for
    /// the bearer scheme's `error`).
    pub fn to_response(&self, request_id: &str) -> Response<ResponseBody> {
        let (status, kind) = self.status_and_type();
        let mut body = serde_json::json!({
            "type": format!("urn:strangler:problem:{kind}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "request_id": request_id,
        });
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extensions());
        }
        let mut resp = Response::new(ResponseBody::full(body.to_string()));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            AdminError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            AdminError::Denied(Denied::Missing) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"strangler-admin\""),
                );
            }
            AdminError::Denied(Denied::Invalid) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"strangler-admin\", error=\"invalid_token\"",
                    ),
                );
            }
            _ => {}
        }
        resp
    }
}

/// Each problem of a failed reload, one a line: `FILE:LINE:COL: message` for
/// a bad config (a file that cannot be read has one line saying so).
fn reload_errors(e: &ReloadError) -> Vec<String> {
    match e {
        ReloadError::Config(c) => c.messages(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, Located};
    use http_body_util::BodyExt;

    async fn body(resp: Response<ResponseBody>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_failed_reload_lists_every_located_error() {
        let e = AdminError::Reload(ReloadError::Config(ConfigError::Invalid(vec![
            Located {
                file: "s.toml".into(),
                line: 3,
                col: 7,
                message: "one".into(),
            },
            Located {
                file: "s.toml".into(),
                line: 9,
                col: 1,
                message: "two".into(),
            },
        ])));
        let resp = e.to_response("r1");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v = body(resp).await;
        assert_eq!(v["type"], "urn:strangler:problem:invalid-config");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(
            v["errors"],
            serde_json::json!(["s.toml:3:7: one", "s.toml:9:1: two"])
        );
    }

    #[tokio::test]
    async fn a_401_says_how_to_authenticate_and_a_405_what_is_allowed() {
        let resp = AdminError::Denied(Denied::Invalid).to_response("-");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"strangler-admin\", error=\"invalid_token\""
        );
        let resp = AdminError::MethodNotAllowed { allow: "POST" }.to_response("-");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "POST");
        let v = body(resp).await;
        assert_eq!(v["detail"], "this endpoint accepts POST");
    }
}
