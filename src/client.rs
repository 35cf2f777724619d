//! The HTTP/1.1 client that carries requests to upstreams: one keep-alive
//! connection pool shared by every upstream, kept across reloads.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::proxy::body::RequestBody;

pub type HttpClient = Client<HttpConnector, RequestBody>;

/// Idle upstream connections kept per target. Enough for bursts of a few
/// hundred concurrent requests without reconnecting, bounded so a spike does
/// not leave thousands of sockets open afterwards.
const MAX_IDLE_PER_TARGET: usize = 256;
/// How long an idle upstream connection is kept. Below the 60 s that common
/// backends (nginx, Node) keep idle connections, so the proxy closes first
/// and never sends on a connection the upstream is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

pub fn build(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_TARGET)
        // The journey always sets Host itself (the client's, or the upstream's `host`).
        .set_host(false)
        .build(connector)
}
