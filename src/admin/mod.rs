//! The admin listener (`server.admin`, SPEC 4): a separate port for operators,
//! never reachable through the proxy's own listeners. This file owns the
//! listener, the dispatch from method and path to an endpoint, and the gate
//! in front of writes; each endpoint's answer lives in its own module, and
//! every error becomes a problem+json answer in [`error`].
//!
//! | call | module |
//! |---|---|
//! | `GET /healthz` | here |
//! | `GET /` (the dashboard page), `GET /admin/dashboard` (its numbers) | [`dashboard`] |
//! | `GET /metrics` | [`crate::metrics`] |
//! | `GET /admin/routes`, `POST /admin/routes/{name}/ramp/resume` | [`routes`] |
//! | `GET /admin/upstreams` | [`upstreams`] |
//! | `GET /admin/shadow` | [`shadow`] |
//! | `POST /admin/reload` | [`reload`] |
//!
//! Reads are open to whoever can reach the port; writes need
//! `Authorization: Bearer <admin_token>` when a token is set ([`auth`]). The
//! token is read from the config in force at each call, so a reload rotates it.

mod auth;
mod dashboard;
mod error;
mod reload;
mod routes;
mod shadow;
mod upstreams;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{self, Metrics};
use crate::proxy::Proxy;
use crate::proxy::body::ResponseBody;
use crate::proxy::headers::request_id;
use crate::reload::Reloader;
pub use error::AdminError;
pub(crate) use routes::rfc3339;

/// What the admin handlers share: the proxy whose state they show and change.
struct Admin {
    proxy: Arc<Proxy>,
    /// `None` when the config did not come from a file: nothing to reload.
    reloader: Option<Arc<Reloader>>,
    metrics: Metrics,
    /// Whether the listener is on a non-loopback address. With no token in
    /// force there, writes are refused rather than left open (a reload may
    /// have dropped the token while the listener stayed where it was).
    beyond_loopback: bool,
}

/// Serves admin requests until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    reloader: Option<Arc<Reloader>>,
    mut stop: watch::Receiver<bool>,
) {
    let beyond_loopback = listener
        .local_addr()
        .map_or(true, |a| !a.ip().is_loopback());
    let admin = Arc::new(Admin {
        metrics: Metrics::new(proxy.clone(), reloader.clone()),
        proxy,
        reloader,
        beyond_loopback,
    });
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An admin endpoint, from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `/`: the dashboard page.
    Dashboard,
    /// `/admin/dashboard`: the numbers the page's script polls.
    DashboardData,
    Healthz,
    Metrics,
    Routes,
    Upstreams,
    Shadow,
    Reload,
    /// `/admin/routes/{name}/ramp/resume`, the name still percent-encoded.
    Resume(String),
}

/// Every endpoint, for the 404 that lists them.
const ENDPOINTS: &str = "GET /, GET /admin/dashboard, GET /healthz, GET /metrics, GET /admin/routes, GET /admin/upstreams, \
                         GET /admin/shadow, POST /admin/reload, \
                         POST /admin/routes/{name}/ramp/resume";

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/" => Endpoint::Dashboard,
            "/admin/dashboard" => Endpoint::DashboardData,
            "/healthz" => Endpoint::Healthz,
            "/metrics" => Endpoint::Metrics,
            "/admin/routes" => Endpoint::Routes,
            "/admin/upstreams" => Endpoint::Upstreams,
            "/admin/shadow" => Endpoint::Shadow,
            "/admin/reload" => Endpoint::Reload,
            _ => {
                // A route name may hold `/` (it defaults to the pattern), sent
                // as is or as `%2F`: take everything between the fixed ends.
                let name = path
                    .strip_prefix("/admin/routes/")?
                    .strip_suffix("/ramp/resume")?;
                if name.is_empty() {
                    return None;
                }
                Endpoint::Resume(name.to_owned())
            }
        })
    }

    /// Writes change the proxy's state: POST only, and behind the token.
    fn is_write(&self) -> bool {
        match self {
            Endpoint::Dashboard
            | Endpoint::DashboardData
            | Endpoint::Healthz
            | Endpoint::Metrics
            | Endpoint::Routes
            | Endpoint::Upstreams
            | Endpoint::Shadow => false,
            Endpoint::Reload | Endpoint::Resume(_) => true,
        }
    }

    /// The `Allow` header of a 405.
    fn allow(&self) -> &'static str {
        if self.is_write() { "POST" } else { "GET, HEAD" }
    }

    fn accepts(&self, method: &Method) -> bool {
        if self.is_write() {
            method == Method::POST
        } else {
            method == Method::GET || method == Method::HEAD
        }
    }
}

impl Admin {
    /// Answers one request, never failing: errors become problem+json. Every
    /// answer carries the request id, as the proxy's do.
    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let id = request_id(req.headers());
        let mut resp = match self.dispatch(&req).await {
            Ok(resp) => resp,
            Err(e) => {
                let rid = id.to_str().unwrap_or("-");
                let path = req.uri().path();
                match &e {
                    AdminError::Denied(_) => {
                        tracing::warn!(event = "admin_refused", request_id = rid, path, error = %e, "admin write refused");
                    }
                    e if e.status().is_server_error() => {
                        tracing::error!(event = "admin_failed", request_id = rid, path, error = %e, "admin call failed");
                    }
                    _ => {}
                }
                e.to_response(rid)
            }
        };
        resp.headers_mut()
            .insert(crate::proxy::headers::X_REQUEST_ID, id);
        resp
    }

    async fn dispatch(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<ResponseBody>, AdminError> {
        let endpoint = Endpoint::parse(req.uri().path()).ok_or(AdminError::NotFound)?;
        if !endpoint.accepts(req.method()) {
            return Err(AdminError::MethodNotAllowed {
                allow: endpoint.allow(),
            });
        }
        if endpoint.is_write() {
            let snap = self.proxy.snapshot();
            auth::check(
                req.headers(),
                snap.config.server.admin_token.as_deref(),
                self.beyond_loopback,
            )?;
        }
        match endpoint {
            Endpoint::Dashboard => {
                let data = dashboard::data(&self.proxy, crate::traffic::now_ms());
                Ok(text(
                    StatusCode::OK,
                    dashboard::page(&data),
                    "text/html; charset=utf-8",
                ))
            }
            Endpoint::DashboardData => Ok(json(
                StatusCode::OK,
                &dashboard::data(&self.proxy, crate::traffic::now_ms()),
            )),
            Endpoint::Healthz => Ok(text(StatusCode::OK, "ok\n", "text/plain")),
            Endpoint::Metrics => {
                let body = self.metrics.encode().map_err(AdminError::Metrics)?;
                Ok(text(StatusCode::OK, body, metrics::CONTENT_TYPE))
            }
            Endpoint::Routes => Ok(json(StatusCode::OK, &routes::list(&self.proxy))),
            Endpoint::Upstreams => Ok(json(StatusCode::OK, &upstreams::list(&self.proxy))),
            Endpoint::Shadow => Ok(json(StatusCode::OK, &shadow::list(&self.proxy))),
            Endpoint::Reload => reload::reload(self.reloader.as_deref())
                .await
                .map(|v| json(StatusCode::OK, &v)),
            Endpoint::Resume(name) => {
                routes::resume(&self.proxy, &name).map(|v| json(StatusCode::OK, &v))
            }
        }
    }
}

/// A text answer with `content_type`.
fn text(
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer, pretty-printed: operators read these with `curl`.
fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    body.push('\n');
    text(status, body, "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_endpoints() {
        let p = Endpoint::parse;
        assert_eq!(p("/healthz"), Some(Endpoint::Healthz));
        assert_eq!(p("/metrics"), Some(Endpoint::Metrics));
        assert_eq!(p("/admin/routes"), Some(Endpoint::Routes));
        assert_eq!(p("/admin/upstreams"), Some(Endpoint::Upstreams));
        assert_eq!(p("/admin/shadow"), Some(Endpoint::Shadow));
        assert_eq!(p("/admin/reload"), Some(Endpoint::Reload));
        assert_eq!(
            p("/admin/routes/customers/ramp/resume"),
            Some(Endpoint::Resume("customers".into()))
        );
        assert_eq!(
            p("/admin/routes//api/x/ramp/resume"),
            Some(Endpoint::Resume("/api/x".into()))
        );
        assert_eq!(
            p("/admin/routes/%2Fapi%2Fx/ramp/resume"),
            Some(Endpoint::Resume("%2Fapi%2Fx".into()))
        );
        assert_eq!(p("/admin/routes//ramp/resume"), None);
        assert_eq!(p("/admin/routes/"), None);
        assert_eq!(p("/admin"), None);
        assert_eq!(p("/"), Some(Endpoint::Dashboard));
        assert_eq!(p("/admin/dashboard"), Some(Endpoint::DashboardData));
        assert_eq!(p(""), None);
        assert_eq!(p("/healthz/"), None);
    }

    #[test]
    fn reads_take_get_and_head_writes_take_post() {
        assert!(Endpoint::Routes.accepts(&Method::GET));
        assert!(Endpoint::Routes.accepts(&Method::HEAD));
        assert!(!Endpoint::Routes.accepts(&Method::POST));
        assert!(Endpoint::Reload.accepts(&Method::POST));
        assert!(!Endpoint::Reload.accepts(&Method::GET));
        assert!(!Endpoint::Resume("x".into()).accepts(&Method::PUT));
        assert_eq!(Endpoint::Reload.allow(), "POST");
        assert_eq!(Endpoint::Metrics.allow(), "GET, HEAD");
    }
}
