//! Lifecycle tests of the server plumbing: request/connection counters,
//! `shutdown()` and drop really closing the port and the connections, raw
//! servers, and invalid names.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{client, empty, get, send};
use http::{Request, StatusCode};
use legacy_stub::{Kind, spawn, spawn_local, spawn_raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn test_kind(name: &str) -> Kind {
    Kind::Test {
        name: name.to_owned(),
    }
}

#[test]
fn labels() {
    assert_eq!(Kind::Monolith.label(), "legacy");
    assert_eq!(Kind::Orders.label(), "orders");
    assert_eq!(Kind::Customers.label(), "customers");
    assert_eq!(test_kind("b1").label(), "b1");
}

#[tokio::test]
async fn url_and_addr() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    assert_eq!(server.addr().ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(server.addr().port(), 0);
    assert_eq!(
        server.url(),
        format!("http://127.0.0.1:{}", server.addr().port())
    );
    let explicit = spawn(Kind::Orders, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("spawn");
    assert_ne!(explicit.addr(), server.addr());
}

#[tokio::test]
async fn keep_alive_requests_share_one_connection() {
    let server = spawn_local(test_kind("ka")).await.expect("spawn");
    assert_eq!((server.connections(), server.requests()), (0, 0));
    let c = client();
    for _ in 0..2 {
        let req = Request::get(format!("{}/small", server.url()))
            .body(empty())
            .expect("request");
        assert_eq!(send(&c, req).await.status(), StatusCode::OK);
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 2);

    // A second client means a second connection.
    get(&format!("{}/small", server.url())).await;
    assert_eq!(server.connections(), 2);
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn requests_are_counted_on_arrival() {
    let server = spawn_local(test_kind("arrival")).await.expect("spawn");
    let url = format!("{}/delay/10000", server.url());
    let pending = tokio::spawn(async move { get(&url).await });
    let start = Instant::now();
    while server.requests() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "request never counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pending.abort();
}

async fn port_is_closed(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn shutdown_closes_the_port_and_idle_connections() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    let addr = server.addr();
    // An idle keep-alive connection that has served one request.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let start = Instant::now();
    server.shutdown().await;
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(port_is_closed(addr).await);
    // The idle connection was closed by the server.
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_in_flight_requests() {
    let server = spawn_local(test_kind("slow")).await.expect("spawn");
    let addr = server.addr();
    let url = format!("{}/delay/600000", server.url());
    let pending = tokio::spawn(async move {
        let req = Request::get(url).body(empty()).expect("request");
        client().request(req).await
    });
    while server.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    server.shutdown().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(port_is_closed(addr).await);
    let outcome = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("client finished")
        .expect("task");
    assert!(outcome.is_err(), "the in-flight request was cut off");
}

#[tokio::test]
async fn drop_stops_the_server() {
    let server = spawn_local(test_kind("dropped")).await.expect("spawn");
    let addr = server.addr();
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /delay/600000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    while server.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("connection closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let start = Instant::now();
    while !port_is_closed(addr).await {
        assert!(start.elapsed() < Duration::from_secs(2), "port still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_closes_websockets() {
    use futures_util::StreamExt;
    let server = spawn_local(test_kind("ws")).await.expect("spawn");
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", server.addr()), stream)
        .await
        .expect("handshake");
    let start = Instant::now();
    server.shutdown().await;
    assert!(start.elapsed() < Duration::from_secs(2));
    let next = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("socket ended promptly");
    match next {
        None | Some(Err(_)) => {}
        Some(Ok(msg)) => assert!(msg.is_close(), "{msg:?}"),
    }
}

#[tokio::test]
async fn raw_server_hands_over_sockets_and_counts_them() {
    let server = spawn_raw(|mut stream: TcpStream| async move {
        let _ = stream.write_all(b"garbage, not HTTP\r\n").await;
    })
    .await
    .expect("spawn");
    for _ in 0..3 {
        let mut conn = TcpStream::connect(server.addr()).await.expect("connect");
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, b"garbage, not HTTP\r\n");
    }
    assert_eq!(server.connections(), 3);
    assert_eq!(server.requests(), 0);
    let addr = server.addr();
    server.shutdown().await;
    assert!(port_is_closed(addr).await);
}

#[tokio::test]
async fn raw_server_handlers_are_stopped_with_the_server() {
    // A handler that holds the socket open forever.
    let server = spawn_raw(|stream: TcpStream| async move {
        let _keep = stream;
        std::future::pending::<()>().await;
    })
    .await
    .expect("spawn");
    let mut conn = TcpStream::connect(server.addr()).await.expect("connect");
    while server.connections() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    server.shutdown().await;
    assert!(start.elapsed() < Duration::from_secs(2));
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn invalid_test_name_is_rejected() {
    let err = spawn_local(test_kind("bad\nname"))
        .await
        .expect_err("must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn binding_a_busy_port_fails() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    assert!(spawn(Kind::Orders, server.addr()).await.is_err());
}

#[tokio::test]
async fn garbage_requests_do_not_kill_the_server() {
    let server = spawn_local(Kind::Monolith).await.expect("spawn");
    for junk in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET /%%%%%/\xff HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /api/orders/18446744073709551616 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"POST /api/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(server.addr()).await.expect("connect");
        conn.write_all(junk).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut out)).await;
    }
    let resp = get(&format!("{}/health", server.url())).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
