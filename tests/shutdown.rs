//! Graceful shutdown of the real binary (SPEC 3.6): on SIGTERM (or SIGINT)
//! the proxy stops accepting, lets requests in flight finish for up to
//! `drain_timeout`, closes idle keep-alive connections at once, and exits 0.
//! The upstream is a test backend in this process; the proxy is a child.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use http_body_util::{BodyExt, Full};
use support::process::{ProxyProcess, WAIT};
use support::raw::read_response;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The proxy binary as a child with `server` settings in front of `b`,
/// listening.
async fn start_in_front_of(b: &Server, server: &str) -> ProxyProcess {
    ProxyProcess::start(&format!("{server}\n{}", default_to(&b.url()))).await
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
    let mut p = start_in_front_of(&b, "drain_timeout = \"20s\"").await;
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
    let late = new_connection_unanswered(p.addr()).await;
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
    let mut p = start_in_front_of(&b, "drain_timeout = \"500ms\"").await;
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

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_on_sigterm() {
    let b = backend("backend").await;
    // Long drain and idle timeouts: only the shutdown may close the connection.
    let mut p = start_in_front_of(&b, "drain_timeout = \"60s\"\nidle_timeout = \"60s\"").await;
    let mut idle = TcpStream::connect(p.addr()).await.unwrap();
    idle.write_all(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut idle, false).await;
    assert!(first.head.starts_with("HTTP/1.1 200"), "{first:?}");

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
    let mut p = start_in_front_of(&b, "").await;
    let a = get(&p.url("/before")).await;
    assert_eq!(a.status, 200);
    p.signal("INT");
    let status = p.exit().await;
    assert_eq!(status.code(), Some(0), "{}", p.transcript());
}

/// A signal sent the moment "listening" is logged must drain, not kill: the
/// handlers are installed before the proxy announces itself. Several
/// proxies at once, because the window this guards was a scheduling race.
#[tokio::test]
async fn a_signal_right_after_listening_drains_cleanly() {
    let b = backend("backend").await;
    let mut procs = Vec::new();
    for _ in 0..6 {
        procs.push(start_in_front_of(&b, "").await);
    }
    for (i, p) in procs.iter().enumerate() {
        p.signal(if i % 2 == 0 { "INT" } else { "TERM" });
    }
    for mut p in procs {
        let status = p.exit().await;
        assert_eq!(status.code(), Some(0), "{}", p.transcript());
    }
}
