//! Bodies and protocols through the proxy (SPEC 3.1): bodies stream both ways
//! through the real binary with flat memory; h2c clients reach HTTP/1.1
//! upstreams; WebSocket upgrades are tunnelled; and bodiless answers (HEAD,
//! 204, 304) neither carry a body nor hang.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::process::{ProxyProcess, RssSampler, rss_kib};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------
// 1. Streaming through the real binary with flat memory

const STREAM_BYTES: u64 = 100 * 1024 * 1024;
/// How much the proxy's resident memory may grow while a body passes.
const RSS_HEADROOM_KIB: u64 = 40 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_through_the_binary_with_flat_memory() {
    let b = backend("big").await;
    let proxy = ProxyProcess::start(&format!(
        "max_request_body = \"1GiB\"\n{}",
        default_to(&b.url())
    ))
    .await;
    // One request through it first, so that the baselines below include the
    // upstream connection it keeps, as in a proxy that has served before.
    let a = get(&proxy.url("/health")).await;
    assert_eq!(a.status, 200, "{}", proxy.transcript());
    let pid = proxy.pid();

    // (a) Download, read frame by frame, never collected.
    let baseline = rss_kib(pid).expect("VmRSS");
    let sampler = RssSampler::start(pid);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{}/bytes/{STREAM_BYTES}", proxy.addr())
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
    let req = Request::post(format!("http://{}/drain", proxy.addr()))
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
// 2. HTTP/2 from clients

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
// 3. WebSocket

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
// 4. Answers without bodies

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
