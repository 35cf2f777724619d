//! The admin listener (`server.admin`): a separate port for operators, never
//! reachable through the proxy's own listeners. Today it answers
//! `GET /healthz`; the rest of SPEC section 4 (routes, upstreams, reload,
//! metrics, dashboard) arrives with the live-controls and operability work.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Proxy;
use crate::proxy::body::ResponseBody;
use crate::proxy::error::problem;
use crate::reload::Reloader;

/// Serves admin requests until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    _reloader: Option<Arc<Reloader>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(&proxy, req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(_proxy: &Proxy, req: Request<Incoming>) -> Response<ResponseBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            let mut r = Response::new(ResponseBody::full("ok\n"));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            r
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such admin endpoint (this version serves GET /healthz)",
            "-",
        ),
    }
}
