//! Graceful shutdown of the real binary (SPEC 3.6): on SIGTERM (or SIGINT)
//! the proxy stops accepting, lets requests in flight finish for up to
//! `drain_timeout`, closes idle keep-alive connections at once, and exits 0.
//! The upstream is a test backend in this process; the proxy is a child.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Safety net for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(10);

/// A config file under the temp dir, removed on drop.
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    fn new(text: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "strangler-shutdown-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig { path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The proxy binary running as a child, its JSON log lines read as they come.
struct Child {
    child: tokio::process::Child,
    log: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    addr: SocketAddr,
    _config: TempConfig,
}

impl Child {
    /// Runs `strangler run` with `server` settings in front of `b` and waits
    /// until it listens.
    async fn start(b: &Server, server: &str) -> Child {
        let config = TempConfig::new(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n{}",
            default_to(&b.url())
        ));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_strangler"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config.path)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .env_remove("STRANGLER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn strangler");
        let (tx, log) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut c = Child {
            child,
            log,
            seen: Vec::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            _config: config,
        };
        let line = c.log_line(|v| v["message"] == "listening").await;
        c.addr = line["addr"].as_str().unwrap().parse().unwrap();
        c
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn transcript(&self) -> String {
        self.seen.join("\n")
    }

    /// Waits for a log object matching `pred`.
    async fn log_line(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let fut = async {
            while let Some(l) = self.log.recv().await {
                self.seen.push(l.clone());
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                    && pred(&v)
                {
                    return Some(v);
                }
            }
            None
        };
        match timeout(WAIT, fut).await {
            Ok(Some(v)) => v,
            Ok(None) => panic!("log ended first:\n{}", self.transcript()),
            Err(_) => panic!("no such log line in {WAIT:?}:\n{}", self.transcript()),
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("child still running");
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits (up to [`WAIT`]) for the child to exit.
    async fn exit(&mut self) -> ExitStatus {
        match timeout(WAIT, self.child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                while let Ok(l) = self.log.try_recv() {
                    self.seen.push(l);
                }
                panic!(
                    "strangler did not exit within {WAIT:?}:\n{}",
                    self.transcript()
                )
            }
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

/// Waits until `b` has received `n` requests (the request is in flight).
async fn until_received(b: &Server, n: u64) {
    let deadline = Instant::now() + WAIT;
    while b.requests() < n {
        assert!(
            Instant::now() < deadline,
            "the backend never got the request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// GETs `url` in the background; the result is the status, or the error.
fn get_in_background(url: String) -> tokio::task::JoinHandle<Result<(u16, Vec<u8>), String>> {
    tokio::spawn(async move {
        let resp = h1()
            .request(Request::get(url).body(Full::default()).unwrap())
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body failed: {e:?}"))?
            .to_bytes();
        Ok((status, body.to_vec()))
    })
}

/// True when a new connection gets no answer: refused, or closed unanswered.
async fn new_connection_unanswered(addr: SocketAddr) -> Result<(), String> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Ok(());
    };
    let _ = s
        .write_all(b"GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    match timeout(WAIT, s.read_to_end(&mut out)).await {
        Ok(_) if out.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "a new connection was answered: {:?}",
            String::from_utf8_lossy(&out)
        )),
        Err(_) => Err("a new connection was accepted and kept open".into()),
    }
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let b = backend("backend").await;
    let mut p = Child::start(&b, "drain_timeout = \"20s\"").await;
    // Long enough that the proxy is certainly still draining while we look.
    let slow = get_in_background(p.url("/delay/3000"));
    until_received(&b, 1).await;

    p.signal("TERM");
    // Once it says so, the listener is closed.
    p.log_line(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))
    })
    .await;
    let late = new_connection_unanswered(p.addr).await;
    assert!(
        p.still_running(),
        "the proxy exited with a request in flight:\n{}",
        p.transcript()
    );
    late.unwrap();

    let (status, body) = timeout(WAIT, slow)
        .await
        .expect("the slow request never finished")
        .unwrap()
        .unwrap_or_else(|e| panic!("the request in flight failed: {e}\n{}", p.transcript()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["path"], "/delay/3000");

    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());
    assert_eq!(b.requests(), 1, "the late request was not forwarded");
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait_for_requests_in_flight() {
    let b = backend("backend").await;
    let mut p = Child::start(&b, "drain_timeout = \"500ms\"").await;
    // Far longer than drain_timeout and than the exit safety net.
    let slow = get_in_background(p.url("/delay/60000"));
    until_received(&b, 1).await;

    p.signal("TERM");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());

    // The request was cut off, not answered 200.
    let result = timeout(WAIT, slow)
        .await
        .expect("the cut-off request still hangs")
        .unwrap();
    assert!(
        !matches!(result, Ok((200, _))),
        "the request completed: {result:?}"
    );
}

/// Reads one content-length framed response from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                if buf.len() >= end + 4 + len {
                    return text;
                }
            }
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed early: {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no response")
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_on_sigterm() {
    let b = backend("backend").await;
    // Long drain and idle timeouts: only the shutdown may close the connection.
    let mut p = Child::start(&b, "drain_timeout = \"60s\"\nidle_timeout = \"60s\"").await;
    let mut idle = TcpStream::connect(p.addr).await.unwrap();
    idle.write_all(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut idle).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    p.signal("TERM");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());

    let mut rest = Vec::new();
    let closed = timeout(WAIT, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection is still open");
    assert!(
        rest.is_empty(),
        "unexpected bytes: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn sigint_shuts_down_like_sigterm() {
    let b = backend("backend").await;
    let mut p = Child::start(&b, "").await;
    let a = get(&p.url("/before")).await;
    assert_eq!(a.status, 200);
    p.signal("INT");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());
}
