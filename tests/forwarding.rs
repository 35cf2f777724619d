//! Forwarding over real sockets (SPEC 3.1): hop-by-hop headers are dropped in
//! both directions while end-to-end ones pass untouched; `x-forwarded-*` and
//! `x-request-id` are set; Host is kept or replaced by the upstream's `host`;
//! rewrites keep the query string byte for byte; bodies stream both ways
//! through the real binary with flat memory; h2c clients reach HTTP/1.1
//! upstreams; the three balancing policies spread requests as promised;
//! upstream connections are pooled; WebSocket upgrades are tunnelled; and
//! bodiless answers (HEAD, 204, 304) neither carry a body nor hang.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 exchanges: exact bytes out, one parsed response back.

/// One response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Names lowercased, in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Decodes a complete chunked body from `buf`, or `None` if more is needed.
fn dechunk(mut buf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => panic!("bad chunk size line"),
        };
        buf = &buf[used..];
        let size = usize::try_from(size).expect("chunk size");
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            return buf.windows(2).any(|w| w == b"\r\n").then_some(out);
        }
        if buf.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

/// Parses one response from `buf`; `None` while incomplete. `eof` says no
/// more bytes will come (a body without framing ends there).
fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Option<RawResponse> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).expect("unparsable response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let status = resp.code.expect("status");
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &buf[head_len..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if head_request || status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest) {
            Some(b) => b,
            None if eof => rest.to_vec(),
            None => return None,
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.trim().parse().expect("content-length");
        if rest.len() < len && !eof {
            return None;
        }
        rest[..len.min(rest.len())].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Writes `request` on a fresh connection and reads one response (10 s cap).
async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let head_request = request.starts_with(b"HEAD ");
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(request).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(r) = parse_response(&buf, n == 0, head_request) {
                return r;
            }
            assert!(
                n != 0,
                "connection ended before a whole response: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("raw exchange timed out")
}

// ---------------------------------------------------------------------------
// 1. Hop-by-hop headers

#[tokio::test]
async fn hop_by_hop_headers_are_removed_upstream_and_end_to_end_ones_pass() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let request = format!(
        "GET /echo/hop HTTP/1.1\r\n\
         host: hop.example\r\n\
         connection: x-secret, X-Also-Secret\r\n\
         connection: close\r\n\
         keep-alive: timeout=5, max=100\r\n\
         proxy-connection: keep-alive\r\n\
         te: trailers\r\n\
         trailer: x-checksum\r\n\
         upgrade: websocket\r\n\
         x-secret: s3cr3t\r\n\
         x-also-secret: also\r\n\
         authorization: Bearer abc.def.ghi\r\n\
         cookie: session=1; theme=dark\r\n\
         accept-language: de-CH, en;q=0.5\r\n\
         traceparent: {traceparent}\r\n\
         tracestate: {tracestate}\r\n\
         x-kept: yes\r\n\
         \r\n"
    );
    let a = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-served-by"), Some("b"));
    let echo = a.json();
    let seen = &echo["headers"];
    for gone in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "x-secret",
        "x-also-secret",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "hop-by-hop header `{gone}` reached the upstream: {seen}"
        );
    }
    for (name, value) in [
        ("authorization", "Bearer abc.def.ghi"),
        ("cookie", "session=1; theme=dark"),
        ("accept-language", "de-CH, en;q=0.5"),
        ("traceparent", traceparent),
        ("tracestate", tracestate),
        ("x-kept", "yes"),
    ] {
        assert_eq!(seen[name], value, "end-to-end header `{name}`: {seen}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_from_upstream_answers() {
    // An upstream answering with every kind of hop-by-hop header.
    let up = legacy_stub::spawn_raw(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = "HTTP/1.1 200 OK\r\n\
                      content-length: 2\r\n\
                      connection: keep-alive, x-internal\r\n\
                      keep-alive: timeout=5\r\n\
                      proxy-connection: keep-alive\r\n\
                      x-internal: secret\r\n\
                      trailer: x-sum\r\n\
                      upgrade: h2c\r\n\
                      x-kept: yes\r\n\
                      \r\nok";
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        // Keep the connection until the proxy lets it go.
        while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
    })
    .await
    .expect("raw upstream");
    let proxy = start(&default_to(&up.url())).await;
    let a = get(&proxy.url("/x")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "ok");
    assert_eq!(a.header("x-kept"), Some("yes"));
    for gone in [
        "keep-alive",
        "proxy-connection",
        "x-internal",
        "trailer",
        "upgrade",
    ] {
        assert!(
            a.headers.get(gone).is_none(),
            "hop-by-hop header `{gone}` reached the client: {:?}",
            a.headers
        );
    }
    if let Some(c) = a.header("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-internal"),
            "upstream connection header passed through: {c}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. x-forwarded-* and x-request-id

fn is_generated_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn forwarded_headers_are_added_and_request_ids_kept_or_generated() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let client = h1();

    let req = Request::get(proxy.url("/who"))
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-request-id", "abc-123")
        .body(Full::default())
        .unwrap();
    let a = send(&client, req).await;
    assert_eq!(a.status, 200);
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{seen}");
    assert_eq!(seen["x-forwarded-proto"], "http", "{seen}");
    assert_eq!(seen["x-forwarded-host"], "shop.example.com", "{seen}");
    assert_eq!(seen["x-request-id"], "abc-123", "{seen}");
    assert_eq!(a.header("x-request-id"), Some("abc-123"));

    // No x-forwarded-for from the client: just the client's address.
    let a = get(&proxy.url("/who")).await;
    let seen = &a.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "{seen}");

    // Missing, with a space, or far too long: replaced by one generated id,
    // the same upstream and on the response.
    let long = "a".repeat(200);
    for sent in [None, Some("has space"), Some(long.as_str())] {
        let mut req = Request::get(proxy.url("/who"));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let a = send(&client, req.body(Full::default()).unwrap()).await;
        assert_eq!(a.status, 200);
        let echo = a.json();
        let upstream_id = echo["headers"]["x-request-id"]
            .as_str()
            .unwrap_or_else(|| panic!("no x-request-id upstream for {sent:?}: {echo}"));
        let response_id = a
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on the response for {sent:?}"));
        assert!(
            is_generated_id(upstream_id),
            "{sent:?}: upstream got {upstream_id:?}, not a 32-hex id"
        );
        assert_eq!(upstream_id, response_id, "{sent:?}");
    }
}

// ---------------------------------------------------------------------------
// 3. Host

#[tokio::test]
async fn the_clients_host_is_kept_unless_the_upstream_sets_one() {
    let legacy = backend("legacy").await;
    let orders = backend("orders").await;
    let proxy = start(&format!(
        r#"
[upstreams.legacy]
targets = ["{}"]
[upstreams.orders]
targets = ["{}"]
host = "orders.internal"
[default]
upstream = "legacy"
[[routes]]
prefix = "/api/orders"
upstream = "orders"
"#,
        legacy.url(),
        orders.url()
    ))
    .await;
    let client = h1();
    let req = |path: &str| {
        Request::get(proxy.url(path))
            .header("host", "Shop.Example.com:8080")
            .body(Full::default())
            .unwrap()
    };

    let a = send(&client, req("/home")).await;
    assert_eq!(a.header("x-served-by"), Some("legacy"));
    let seen = &a.json()["headers"];
    assert_eq!(seen["host"], "Shop.Example.com:8080", "{seen}");

    let a = send(&client, req("/api/orders/1")).await;
    assert_eq!(a.header("x-served-by"), Some("orders"));
    let seen = &a.json()["headers"];
    assert_eq!(seen["host"], "orders.internal", "{seen}");
    assert_eq!(seen["x-forwarded-host"], "Shop.Example.com:8080", "{seen}");
}

// ---------------------------------------------------------------------------
// 4. Query strings

#[tokio::test]
async fn rewrite_and_strip_prefix_keep_the_query_string_exactly() {
    let orders = backend("orders").await;
    let customers = backend("customers").await;
    let proxy = start(&format!(
        r#"
[upstreams.orders]
targets = ["{}"]
[upstreams.customers]
targets = ["{}"]
[[routes]]
path = "/api/orders/{{*rest}}"
upstream = "orders"
rewrite = "/orders/{{rest}}"
[[routes]]
prefix = "/api/customers"
upstream = "customers"
strip_prefix = "/api"
"#,
        orders.url(),
        customers.url()
    ))
    .await;
    let query = "x=%2F&q=a+b&sp=%20&u=%41&slash=/a/b&next=%3Fk%3Dv&ask=1?2&empty=&flag&x=2";
    for (sent, server, expected) in [
        ("/api/orders/17", "orders", "/orders/17"),
        ("/api//orders/%31%37", "orders", "/orders/17"),
        ("/api/customers/42", "customers", "/customers/42"),
    ] {
        let a = exchange(
            proxy.addr,
            format!("GET {sent}?{query} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(a.status, 200, "{sent}: {a:?}");
        assert_eq!(a.header("x-served-by"), Some(server), "{sent}");
        let echo = a.json();
        assert_eq!(echo["path"], format!("{expected}?{query}"), "{sent}");
        assert_eq!(echo["query"], query, "{sent}");
    }
}

// ---------------------------------------------------------------------------
// 5. Streaming through the real binary with flat memory

const STREAM_BYTES: u64 = 100 * 1024 * 1024;
/// How much the proxy's resident memory may grow while a body passes.
const RSS_HEADROOM_KIB: u64 = 40 * 1024;

/// The `strangler` binary running with a config in a temp dir; killed (and
/// the dir removed) on drop, also when a test panics.
struct ProxyProcess {
    child: std::process::Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl ProxyProcess {
    async fn start(config_body: &str) -> ProxyProcess {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "strangler-forwarding-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("strangler.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"{addr}\"\n{config_body}"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strangler"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn strangler");
        let mut p = ProxyProcess { child, dir, addr };
        p.wait_until_answering().await;
        p
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    async fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri: http::Uri = format!("http://{}/health", self.addr).parse().unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("strangler exited with {status}:\n{}", self.stderr());
            }
            let probe =
                tokio::time::timeout(Duration::from_millis(500), client.get(uri.clone())).await;
            if let Ok(Ok(resp)) = probe
                && resp.status() == StatusCode::OK
            {
                let _ = resp.into_body().collect().await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "strangler did not answer on {}:\n{}",
                self.addr,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's VmRSS every few ms on its own thread, keeping the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
            pid,
        }
    }

    /// Stops sampling; returns the peak in KiB.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(kib) = rss_kib(self.pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Bytes a pattern body is compared against in one go.
const BLOCK: usize = 64 * 1024;

/// `251 + BLOCK` bytes of the pattern (byte i = i % 251), so any block at
/// any pattern offset is one slice of it.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..251 + BLOCK).map(|i| (i % 251) as u8).collect())
}

/// Whether `data`, found at `offset` of a pattern body, is the pattern.
fn is_pattern(data: &[u8], offset: u64) -> bool {
    let pat = pattern();
    let mut off = offset;
    for piece in data.chunks(BLOCK) {
        let start = (off % 251) as usize;
        if piece != &pat[start..start + piece.len()] {
            return false;
        }
        off += piece.len() as u64;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_through_the_binary_with_flat_memory() {
    let b = backend("big").await;
    let proxy = ProxyProcess::start(&format!(
        "max_request_body = \"1GiB\"\n{}",
        default_to(&b.url())
    ))
    .await;
    let pid = proxy.pid();

    // (a) Download, read frame by frame, never collected.
    let baseline = rss_kib(pid).expect("VmRSS");
    let sampler = RssSampler::start(pid);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{}/bytes/{STREAM_BYTES}", proxy.addr)
        .parse()
        .unwrap();
    let download = async {
        let resp = client.get(uri).await.expect("download request");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download body failed");
            if let Ok(data) = frame.into_data() {
                assert!(
                    is_pattern(&data, received),
                    "download: wrong bytes at offset {received}"
                );
                received += data.len() as u64;
            }
        }
        received
    };
    let received = tokio::time::timeout(Duration::from_secs(60), download)
        .await
        .expect("download timed out");
    let peak = sampler.finish();
    assert_eq!(received, STREAM_BYTES, "download length");
    assert!(
        peak < baseline + RSS_HEADROOM_KIB,
        "download: proxy RSS peaked at {peak} KiB from a baseline of {baseline} KiB"
    );

    // (b) Upload, a chunked body generated lazily.
    let baseline = rss_kib(pid).expect("VmRSS");
    let sampler = RssSampler::start(pid);
    let client = Client::builder(TokioExecutor::new()).build_http::<BoxBody<Bytes, Infallible>>();
    let chunk = Bytes::from(vec![0x5a_u8; 64 * 1024]);
    let chunks = STREAM_BYTES / chunk.len() as u64;
    let frames = futures_util::stream::iter(0..chunks)
        .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
    let req = Request::post(format!("http://{}/drain", proxy.addr))
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    let upload = async {
        let resp = client.request(req).await.expect("upload request");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("upload answer");
        (status, body.to_bytes())
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("upload timed out");
    let peak = sampler.finish();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("drain JSON");
    assert_eq!(v["received"], STREAM_BYTES, "{v}");
    assert!(
        peak < baseline + RSS_HEADROOM_KIB,
        "upload: proxy RSS peaked at {peak} KiB from a baseline of {baseline} KiB"
    );
}

// ---------------------------------------------------------------------------
// 6. HTTP/2 from clients

#[tokio::test]
async fn h2c_clients_reach_http1_upstreams() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let client = h2();

    let resp = client
        .request(
            Request::get(proxy.url("/over/h2?x=1"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-served-by"], "b");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/1.1", "{echo}");
    assert_eq!(echo["path"], "/over/h2?x=1", "{echo}");
    assert_eq!(
        echo["headers"]["x-forwarded-host"],
        proxy.addr.to_string(),
        "{echo}"
    );

    // A request body crosses from h2 to HTTP/1.1 too.
    let req = Request::post(proxy.url("/upload"))
        .body(Full::new(Bytes::from(vec![7u8; 10_000])))
        .unwrap();
    let a = send(&client, req).await;
    assert_eq!(a.status, 200);
    let echo = a.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["body_len"], 10_000, "{echo}");
}

// ---------------------------------------------------------------------------
// 7. Balancing

fn balanced(balance: &str, servers: &[&Server]) -> String {
    let targets: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.url())).collect();
    format!(
        "[upstreams.pool]\ntargets = [{}]\nbalance = \"{balance}\"\n[default]\nupstream = \"pool\"\n",
        targets.join(", ")
    )
}

async fn served_by_counts(proxy: &TestProxy, n: usize) -> HashMap<String, usize> {
    let client = h1();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let a = send(
            &client,
            Request::get(proxy.url("/small"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
        let by = a.header("x-served-by").expect("x-served-by").to_owned();
        *counts.entry(by).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let proxy = start(&balanced("round_robin", &[&a, &b, &c])).await;
    let counts = served_by_counts(&proxy, 30).await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts.get(name), Some(&10), "{counts:?}");
    }
}

#[tokio::test]
async fn random_reaches_every_target() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let proxy = start(&balanced("random", &[&a, &b, &c])).await;
    let counts = served_by_counts(&proxy, 60).await;
    assert_eq!(counts.values().sum::<usize>(), 60);
    for name in ["a", "b", "c"] {
        assert!(counts.get(name).is_some_and(|&n| n > 0), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_busy_target() {
    let (a, b) = (backend("a").await, backend("b").await);
    let proxy = start(&balanced("least_request", &[&a, &b])).await;

    // A slow request holds one target until the test ends.
    let slow_url = proxy.url("/delay/20000");
    let slow = tokio::spawn(async move {
        let _ = h1()
            .request(Request::get(slow_url).body(Full::default()).unwrap())
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.requests() + b.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached a backend"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let idle = if a.requests() == 1 { "b" } else { "a" };

    let client = h1();
    for i in 0..5 {
        let r = send(
            &client,
            Request::get(proxy.url("/small"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-served-by"),
            Some(idle),
            "quick request {i} went to the busy target"
        );
    }
    slow.abort();
}

// ---------------------------------------------------------------------------
// 8. Upstream keep-alive

#[tokio::test]
async fn upstream_connections_are_pooled() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    for i in 0..20 {
        // A new client connection each time: the upstream pool is the proxy's.
        let a = get(&proxy.url(&format!("/n/{i}"))).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(b.requests(), 20);
    assert_eq!(b.connections(), 1, "upstream connections opened");
}

// ---------------------------------------------------------------------------
// 9. WebSocket

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    let talk = async {
        let stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let (mut ws, resp) =
            tokio_tungstenite::client_async(format!("ws://{}/ws", proxy.addr), stream)
                .await
                .expect("WebSocket handshake through the proxy");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);

        ws.send(Message::text("hello through the proxy"))
            .await
            .unwrap();
        let m = ws.next().await.expect("echo").expect("echo");
        assert_eq!(m, Message::text("hello through the proxy"));

        let bin: Vec<u8> = (0..=255u8).cycle().take(300 * 1024).collect();
        ws.send(Message::binary(bin.clone())).await.unwrap();
        let m = ws.next().await.expect("echo").expect("echo");
        assert_eq!(m, Message::binary(bin));

        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        let m = ws.next().await.expect("echo").expect("echo");
        assert_eq!(m, Message::binary(vec![0u8, 1, 2, 255]));

        ws.close(None).await.expect("close");
        // The close handshake completes and the stream ends.
        let mut saw_close = false;
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) => saw_close = true,
                Ok(other) => panic!("unexpected message after close: {other:?}"),
                Err(e) => panic!("unclean close: {e}"),
            }
        }
        saw_close
    };
    let saw_close = tokio::time::timeout(Duration::from_secs(5), talk)
        .await
        .expect("WebSocket exchange timed out");
    assert!(saw_close, "the server's close frame never came back");
}

// ---------------------------------------------------------------------------
// 10. Answers without bodies

#[tokio::test]
async fn head_204_and_304_come_back_without_bodies() {
    let b = backend("b").await;
    let proxy = start(&default_to(&b.url())).await;
    // One keep-alive client: a stray body byte would break the next answer.
    let client = h1();
    let req = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(proxy.url(path))
            .body(Full::default())
            .unwrap()
    };

    let a = send(&client, req(Method::HEAD, "/bytes/5000")).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty(), "HEAD answer has a body: {:?}", a.body);

    let a = send(&client, req(Method::HEAD, "/echo")).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty(), "HEAD answer has a body: {:?}", a.body);

    let a = send(&client, req(Method::GET, "/status/204")).await;
    assert_eq!(a.status, 204);
    assert!(a.body.is_empty());

    let a = send(&client, req(Method::GET, "/status/304")).await;
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());

    let a = send(&client, req(Method::GET, "/small")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hello\n");

    // The same on the wire: nothing follows the heads.
    for (request, status) in [
        ("HEAD /bytes/5000 HTTP/1.1\r\nhost: t\r\n\r\n", 200),
        ("GET /status/204 HTTP/1.1\r\nhost: t\r\n\r\n", 204),
        ("GET /status/304 HTTP/1.1\r\nhost: t\r\n\r\n", 304),
    ] {
        let pipelined =
            format!("{request}GET /small HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(pipelined.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("pipelined exchange hung")
            .expect("read");
        let text = String::from_utf8_lossy(&out);
        let second = text
            .match_indices("HTTP/1.1 ")
            .nth(1)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{request:?}: second answer missing: {text}"));
        let first = &text[..second];
        assert!(
            first.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {text}"
        );
        assert!(
            first.ends_with("\r\n\r\n"),
            "{request:?}: bytes after the head: {first:?}"
        );
        assert!(
            text[second..].ends_with("\r\n\r\nhello\n"),
            "{request:?}: {text}"
        );
    }
}
