//! End-to-end tests of the generic test backend over real sockets: echo,
//! status, delay, the pattern byte streams (sized, chunked, reset mid-body),
//! streamed upload draining, h2c and the WebSocket echo.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, empty, get, h2_client, header, json, send};
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use legacy_stub::{Kind, Server, spawn_local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn backend(name: &str) -> Server {
    spawn_local(Kind::Test {
        name: name.to_owned(),
    })
    .await
    .expect("spawn")
}

/// Send a raw HTTP/1.1 request and read until the server closes.
async fn raw_exchange(server: &Server, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn health_and_small() {
    let server = backend("t1").await;
    let resp = get(&format!("{}/health", server.url())).await;
    assert_eq!(json(&resp), serde_json::json!({"status": "ok"}));
    assert_eq!(header(&resp, "x-served-by"), "t1");
    let resp = get(&format!("{}/small", server.url())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body().as_ref(), b"hello\n");
    assert_eq!(header(&resp, "content-type"), "text/plain");
    assert_eq!(header(&resp, "content-length"), "6");
}

#[tokio::test]
async fn echo_reports_the_request_exactly() {
    let server = backend("echo-a").await;
    let req = Request::put(format!("{}/some/Path%2Fx/?b=2&a=1&a=%20", server.url()))
        .header("x-repeat", "one")
        .header("x-repeat", "two")
        .header("X-Single", "Value")
        .body(common::full("12345"))
        .expect("request");
    let resp = send(&client(), req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-served-by"), "echo-a");
    assert_eq!(header(&resp, "content-type"), "application/json");
    let v = json(&resp);
    assert_eq!(v["server"], "echo-a");
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/some/Path%2Fx/?b=2&a=1&a=%20");
    assert_eq!(v["query"], "b=2&a=1&a=%20");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["x-repeat"], serde_json::json!(["one", "two"]));
    assert_eq!(v["headers"]["x-single"], "Value");
    assert_eq!(v["headers"]["host"], server.addr().to_string());
    assert_eq!(v["body_len"], 5);

    let v = json(&get(&format!("{}/", server.url())).await);
    assert_eq!(v["path"], "/");
    assert!(v["query"].is_null());
    assert_eq!(v["body_len"], 0);
}

#[tokio::test]
async fn echo_path_is_byte_exact_on_the_wire() {
    let server = backend("raw").await;
    let target = "/a/./b/../c%2f%7E?q=%41&q=&&x=y=z#";
    let target = target.trim_end_matches('#');
    let out = raw_exchange(
        &server,
        &format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    )
    .await;
    let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(v["path"], target);
}

#[tokio::test]
async fn status_codes() {
    let server = backend("s").await;
    let resp = get(&format!("{}/status/503?why=x", server.url())).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&resp)["path"], "/status/503?why=x");
    assert_eq!(header(&resp, "x-served-by"), "s");

    let req = Request::post(format!("{}/status/201", server.url()))
        .body(common::full("abc"))
        .expect("request");
    let resp = send(&client(), req).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json(&resp)["body_len"], 3);

    for code in [204, 304] {
        let resp = get(&format!("{}/status/{code}", server.url())).await;
        assert_eq!(resp.status().as_u16(), code);
        assert!(resp.body().is_empty());
    }
    for bad in [
        "100",
        "199",
        "abc",
        "99",
        "1000",
        "99999999999999999999",
        "",
    ] {
        let resp = get(&format!("{}/status/{bad}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "/status/{bad}");
    }
}

#[tokio::test]
async fn delay_waits_before_answering() {
    let server = backend("d").await;
    let start = Instant::now();
    let resp = get(&format!("{}/delay/300", server.url())).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(&resp)["path"], "/delay/300");

    // The response headers themselves are late, not just the body.
    let c = client();
    let req = Request::get(format!("{}/delay/5000", server.url()))
        .body(empty())
        .expect("request");
    let early = tokio::time::timeout(Duration::from_millis(200), c.request(req)).await;
    assert!(early.is_err(), "headers arrived before the delay");

    for bad in ["x", "-1", "99999999999999999999999"] {
        let resp = get(&format!("{}/delay/{bad}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}

fn assert_pattern(body: &[u8], n: u64) {
    assert_eq!(body.len() as u64, n);
    for (i, b) in body.iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8, "byte {i}");
    }
}

#[tokio::test]
async fn bytes_have_exact_length_and_pattern() {
    let server = backend("b").await;
    for n in [
        0u64,
        1,
        250,
        251,
        252,
        64_256,
        65_536,
        1024 * 1024,
        1024 * 1024 + 3,
    ] {
        let resp = get(&format!("{}/bytes/{n}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), n.to_string());
        assert_eq!(header(&resp, "content-type"), "application/octet-stream");
        assert_pattern(resp.body(), n);
    }
    for bad in ["abc", "-5", "10737418241", "99999999999999999999999"] {
        let resp = get(&format!("{}/bytes/{bad}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "/bytes/{bad}");
    }
}

#[tokio::test]
async fn huge_bytes_response_is_streamed_quickly() {
    let server = backend("big").await;
    let n: u64 = 100 * 1024 * 1024;
    let req = Request::get(format!("{}/bytes/{n}", server.url()))
        .body(empty())
        .expect("request");
    let start = Instant::now();
    let resp = client().request(req).await.expect("response");
    assert_eq!(header_of(&resp), n.to_string());
    let mut body = resp.into_body();
    let mut got = 0u64;
    let mut last = 0u8;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            got += data.len() as u64;
            last = data.last().copied().unwrap_or(last);
        }
    }
    assert_eq!(got, n);
    assert_eq!(last, ((n - 1) % 251) as u8);
    // Generous bound: debug builds on a loaded 2-core machine.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

fn header_of<B>(resp: &http::Response<B>) -> String {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn chunked_has_no_content_length() {
    let server = backend("c").await;
    for n in [0u64, 5, 200_000] {
        let resp = get(&format!("{}/chunked/{n}", server.url())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("content-length").is_none(), "n={n}");
        assert_eq!(header(&resp, "transfer-encoding"), "chunked");
        assert_pattern(resp.body(), n);
    }
}

#[tokio::test]
async fn reset_closes_mid_body() {
    let server = backend("r").await;
    let req = Request::get(format!("{}/reset/100000", server.url()))
        .body(empty())
        .expect("request");
    let resp = client().request(req).await.expect("headers arrive");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_of(&resp), "200000");
    let mut body = resp.into_body();
    let mut got = 0usize;
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got += f.into_data().map(|d| d.len()).unwrap_or(0),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "client must see an error");
    assert!(got <= 100_000, "got {got}");
}

#[tokio::test]
async fn drain_counts_a_streamed_upload() {
    let server = backend("up").await;
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let total = 5 * 1024 * 1024;
    let frames = (0..total / chunk.len())
        .map(move |_| Ok::<_, common::BoxError>(Frame::data(chunk.clone())));
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let req = Request::post(format!("{}/drain", server.url()))
        .body(body)
        .expect("request");
    let resp = send(&client(), req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(&resp), serde_json::json!({"received": total}));
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let server = backend("h2").await;
    let c = h2_client();
    for path in ["/echo/me?x=1", "/bytes/100000"] {
        let req = Request::get(format!("{}{path}", server.url()))
            .body(empty())
            .expect("request");
        let resp = c.request(req).await.expect("h2 response");
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.headers()["x-served-by"], "h2");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        if path.starts_with("/echo") {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["version"], "HTTP/2.0");
            assert_eq!(v["path"], "/echo/me?x=1");
        } else {
            assert_pattern(&body, 100_000);
        }
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn websocket_echo_round_trip() {
    let server = backend("ws").await;
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/ws", server.addr()), stream)
            .await
            .expect("handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["x-served-by"], "ws");
    ws.send(Message::text("hello tea")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::text("hello tea")
    );
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.expect("close");
    // After our close, the server's close reply and then the end of stream.
    while let Some(Ok(msg)) = ws.next().await {
        assert!(msg.is_close(), "{msg:?}");
    }
}

#[tokio::test]
async fn websocket_endpoint_without_upgrade_is_426() {
    let server = backend("ws").await;
    let resp = get(&format!("{}/ws", server.url())).await;
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(header(&resp, "upgrade"), "websocket");
}
