//! Shared helpers for the integration tests: a proxy started in-process on
//! 127.0.0.1:0 from a TOML snippet, legacy-stub backends, small HTTP clients
//! (hyper here for well-formed requests; [`raw`] for exact bytes on the wire
//! and hand-written upstreams), and the test backend's byte pattern.
//! [`process`] runs the real binary as a child.
#![allow(dead_code)]

pub mod flaky;
pub mod process;
pub mod raw;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

pub use legacy_stub::{Kind, Server};
use strangler::config::{Config, SourceFile};

/// A proxy running in this process.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// The admin listener, when the config has `server.admin`.
    pub admin: Option<SocketAddr>,
    pub proxy: Arc<strangler::proxy::Proxy>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// `http://ADDR{path}` on the proxy's listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits until the proxy has drained and returned.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses a config snippet; panics with every error if it is invalid.
pub fn config(toml: &str) -> Config {
    match Config::parse(&SourceFile::new("test.toml", toml)) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid:\n{e}\n---\n{toml}"),
    }
}

/// Starts the proxy with `toml`, listening on 127.0.0.1:0 whatever `listen` says.
pub async fn start(toml: &str) -> TestProxy {
    start_config(config(toml)).await
}

/// Starts the proxy with an already parsed `config`, listening on
/// 127.0.0.1:0 whatever `listen` says.
pub async fn start_config(mut config: Config) -> TestProxy {
    config.server.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    let bound = strangler::run::Bound::new(config).await.expect("bind");
    let addr = bound.local_addrs()[0];
    let admin = bound.admin_addr();
    let proxy = bound.proxy.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        bound
            .serve(async {
                let _ = rx.await;
            })
            .await;
    });
    TestProxy {
        addr,
        admin,
        proxy,
        stop: Some(tx),
        task,
    }
}

/// A test backend named `name` (its answers carry `x-served-by: name`).
pub async fn backend(name: &str) -> Server {
    legacy_stub::spawn_local(Kind::Test { name: name.into() })
        .await
        .expect("spawn backend")
}

/// An address nothing listens on: connecting is refused. The port stays
/// bound (never listening) for the rest of the test process, so that no
/// backend another test starts in parallel can be given it.
pub async fn dead_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let a = socket.local_addr().unwrap();
    std::mem::forget(socket);
    a
}

/// A config with one upstream `backend` at `url` as the default.
pub fn default_to(url: &str) -> String {
    format!("[upstreams.backend]\ntargets = [\"{url}\"]\n[default]\nupstream = \"backend\"\n")
}

/// An HTTP/1.1 client (keep-alive).
pub fn h1() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read in full.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `body` parsed as JSON; panics with the body when it is not.
pub fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

impl Answer {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        json_body(&self.body)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The header `name`, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `req` with `client` and reads the whole answer (10 s cap).
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Answer {
    let fut = async {
        let resp = client.request(req).await.expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body failed").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("request timed out")
}

/// GET `url` over HTTP/1.1.
pub async fn get(url: &str) -> Answer {
    send(&h1(), Request::get(url).body(Full::default()).unwrap()).await
}

/// Bytes a pattern body is compared against in one go.
const PATTERN_BLOCK: usize = 64 * 1024;

/// `251 + PATTERN_BLOCK` bytes of the test backend's pattern (byte i is
/// i % 251), so any block at any pattern offset is one slice of it.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..251 + PATTERN_BLOCK).map(|i| (i % 251) as u8).collect())
}

/// Whether `data`, found at `offset` of a body from the test backend's
/// `/bytes/{n}` or `/chunked/{n}`, is that body's pattern (byte i is i % 251).
pub fn is_pattern(data: &[u8], offset: u64) -> bool {
    let pat = pattern();
    let mut off = offset;
    for piece in data.chunks(PATTERN_BLOCK) {
        let start = (off % 251) as usize;
        if piece != &pat[start..start + piece.len()] {
            return false;
        }
        off += piece.len() as u64;
    }
    true
}

/// Waits until the proxy has counted `n` responses: a response is counted
/// when its body ends, which the client may see a moment before.
pub async fn counted(p: &TestProxy, n: u64) {
    let total = || -> u64 {
        p.proxy
            .traffic
            .all()
            .iter()
            .map(|(_, _, s)| s.totals().count())
            .sum()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while total() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} counted",
            total()
        );
        tokio::task::yield_now().await;
    }
}

/// Polls `check` until it gives a value (returned), yielding to the runtime
/// between polls; panics naming `what` after 10 s. For state that changes
/// when background work finishes (a shadow copy sent, a count recorded),
/// where nothing can be awaited directly.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::task::yield_now().await;
    }
}
