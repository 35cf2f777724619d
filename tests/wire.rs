//! What crosses the wire to and from upstreams (SPEC 3.1), read byte for
//! byte by hand-written upstreams: every request goes upstream in
//! origin-form, whatever its method, body, protocol or upgrade; answers and
//! request bodies pass part by part as they arrive. Streaming is tested with
//! a gate, never a clock: the sender sends its first part and waits until the
//! receiver has it; a proxy that held the message until complete would never
//! deliver that first part.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use support::raw::recording_upstream;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Safety net: a part that has not arrived by then is held by the proxy.
const PART_WAIT: Duration = Duration::from_secs(10);

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The three ways a request may carry a body.
fn requests(method: &str) -> [(String, Vec<u8>); 3] {
    let head = |extra: &str| {
        format!("{method} /f/thing?q=1 HTTP/1.1\r\nhost: shop.example\r\n{extra}\r\n").into_bytes()
    };
    [
        ("no body".into(), head("")),
        (
            "content-length".into(),
            [head("content-length: 5\r\n"), b"hello".to_vec()].concat(),
        ),
        (
            "chunked".into(),
            [
                head("transfer-encoding: chunked\r\n"),
                b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
            ]
            .concat(),
        ),
    ]
}

#[tokio::test]
async fn every_http1_request_goes_upstream_in_origin_form() {
    let (up, seen) = recording_upstream().await;
    let p = start(&default_to(&up.url())).await;
    let mut failures = Vec::new();
    for method in METHODS {
        for (how, bytes) in requests(method) {
            let head = method == "HEAD";
            let mut s = TcpStream::connect(p.addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let r = support::raw::read_response(&mut s, head).await;
            let last = seen.lock().unwrap().pop();
            let want = format!("{method} /f/thing?q=1 HTTP/1.1");
            match last {
                Some(req) if r.status == 200 && req.line == want => {
                    let body: &[u8] = if how == "no body" { b"" } else { b"hello" };
                    if req.body != body {
                        failures.push(format!("{method} {how}: body {:?}", req.body));
                    }
                }
                Some(req) => failures.push(format!(
                    "{method} {how}: {} upstream saw {:?}",
                    r.status, req.line
                )),
                None => failures.push(format!("{method} {how}: {} not forwarded", r.status)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn h2c_requests_go_upstream_in_origin_form() {
    let (up, seen) = recording_upstream().await;
    let p = start(&default_to(&up.url())).await;
    let client = h2();
    for method in METHODS {
        for body in [&b""[..], b"hello"] {
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(p.url("/f/thing?q=1"))
                .body(Full::new(Bytes::from_static(body)))
                .unwrap();
            let a = send(&client, req).await;
            assert_eq!(a.status, 200, "{method} {body:?}: {}", a.text());
            let req = seen.lock().unwrap().pop().expect("forwarded");
            assert_eq!(req.line, format!("{method} /f/thing?q=1 HTTP/1.1"));
            assert_eq!(req.body, body, "{method}");
        }
    }
}

#[tokio::test]
async fn upgrades_go_upstream_in_origin_form() {
    let (up, seen) = recording_upstream().await;
    let p = start(&default_to(&up.url())).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws/echo?x=1 HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PART_WAIT, s.read(&mut buf))
            .await
            .expect("101 in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{got:?}");
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(PART_WAIT, s.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&echo, b"ping");
    let line = seen.lock().unwrap()[0].line.clone();
    assert_eq!(line, "GET /ws/echo?x=1 HTTP/1.1");
}

/// An upstream that answers with `head` and `first`, waits for `gate`, then
/// sends `rest`.
async fn gated_upstream(
    head: &'static str,
    first: &'static [u8],
    rest: &'static [u8],
    gate: Arc<Notify>,
) -> Server {
    support::raw::raw_upstream(move |mut s: TcpStream| {
        let gate = gate.clone();
        async move {
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(first).await;
            gate.notified().await;
            let _ = s.write_all(rest).await;
        }
    })
    .await
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const SSE_FIRST: &[u8] = b"d\r\ndata: first\n\n\r\n";
const SSE_REST: &[u8] = b"c\r\ndata: rest\n\n\r\n0\r\n\r\n";
const DRIP_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
const UNTIL_CLOSE_HEAD: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";

/// Reads off `s` until `want` has arrived; panics after [`PART_WAIT`].
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(PART_WAIT, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} held back; got {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(got)
                )
            })
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn trickling_answers_reach_http1_clients_part_by_part() {
    for (head, first, rest, first_seen, rest_seen) in [
        (
            SSE_HEAD,
            SSE_FIRST,
            SSE_REST,
            &b"data: first"[..],
            &b"data: rest"[..],
        ),
        (DRIP_HEAD, b"12345", b"67890", b"12345", b"67890"),
        // Until close: the answer ends when the upstream hangs up.
        (UNTIL_CLOSE_HEAD, b"first;", b"rest;", b"first;", b"rest;"),
    ] {
        let gate = Arc::new(Notify::new());
        let up = gated_upstream(head, first, rest, gate.clone()).await;
        let p = start(&default_to(&up.url())).await;
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, first_seen).await;
        gate.notify_one();
        read_until(&mut s, &mut got, rest_seen).await;
    }
}

#[tokio::test]
async fn trickling_answers_reach_h2c_clients_part_by_part() {
    let gate = Arc::new(Notify::new());
    let up = gated_upstream(SSE_HEAD, SSE_FIRST, SSE_REST, gate.clone()).await;
    let p = start(&default_to(&up.url())).await;
    let resp = h2()
        .request(
            Request::get(p.url("/events"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(PART_WAIT, body.frame())
        .await
        .expect("the first event held back")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data: first\n\n");
    gate.notify_one();
    let rest = tokio::time::timeout(PART_WAIT, body.collect())
        .await
        .expect("the rest in time")
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "data: rest\n\n");
}

/// The client sends the first part of a chunked upload and the rest only
/// once the upstream has the first: a proxy that held the body would stall.
#[tokio::test]
async fn request_bodies_reach_the_upstream_part_by_part() {
    let received = Arc::new(Notify::new());
    let told = received.clone();
    // Not `raw_upstream`: the first read may hold the head and the first part.
    let up = legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let told = told.clone();
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let mut notified = false;
            while !got.windows(5).any(|w| w == b"0\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if !notified && got.windows(5).any(|w| w == b"first") {
                    notified = true;
                    told.notify_one();
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone")
                .await;
        }
    })
    .await
    .unwrap();
    let p = start(&default_to(&up.url())).await;

    // HTTP/1.1, chunked.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    )
    .await
    .unwrap();
    tokio::time::timeout(PART_WAIT, received.notified())
        .await
        .expect("the first part of the body held back (HTTP/1.1)");
    s.write_all(b"4\r\nrest\r\n0\r\n\r\n").await.unwrap();
    let r = support::raw::read_response(&mut s, false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "done"));

    // h2c, a streamed body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::post(p.url("/up")).body(body).unwrap();
    let pending = tokio::spawn(client.request(req));
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    tokio::time::timeout(PART_WAIT, received.notified())
        .await
        .expect("the first part of the body held back (h2c)");
    tx.send(Ok(Frame::data(Bytes::from_static(b"rest"))))
        .await
        .unwrap();
    drop(tx);
    let resp = tokio::time::timeout(PART_WAIT, pending)
        .await
        .expect("answer in time")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A stream of the frames sent on `rx`.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Trailers of a chunked answer reach the client: in the last chunk over
/// HTTP/1.1, as a trailers frame over HTTP/2 (what gRPC's status rides on).
#[tokio::test]
async fn trailers_of_chunked_answers_reach_the_client() {
    let up = support::raw::raw_upstream(|mut s: TcpStream| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n2\r\nok\r\n0\r\nx-checksum: 42\r\n\r\n")
            .await;
    })
    .await;
    let p = start(&default_to(&up.url())).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /t HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, b"x-checksum: 42\r\n\r\n").await;
    let resp = h2()
        .request(Request::get(p.url("/t")).body(Full::default()).unwrap())
        .await
        .unwrap();
    let collected = tokio::time::timeout(PART_WAIT, resp.into_body().collect())
        .await
        .expect("the body in time")
        .unwrap();
    let trailers = collected.trailers().cloned().expect("trailers over h2");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(collected.to_bytes(), "ok");
}

/// Every way the proxy sends a request of its own goes in origin-form too:
/// a fallback's replay, a shadow copy, a composition leg.
#[tokio::test]
async fn replays_copies_and_legs_go_upstream_in_origin_form() {
    let (up, seen) = recording_upstream().await;
    let dead = dead_addr().await;
    let json = legacy_stub::spawn_local(legacy_stub::Kind::Test {
        name: "json".into(),
    })
    .await
    .unwrap();
    let p = start(&format!(
        r#"
[upstreams.gone]
targets = ["http://{dead}"]
[upstreams.rec]
targets = ["{rec}"]
[upstreams.json]
targets = ["{json}"]
[[routes]]
name = "replayed"
prefix = "/replayed"
upstream = "gone"
fallback = "rec"
[[routes]]
name = "shadowed"
prefix = "/shadowed"
upstream = "json"
shadow = {{ to = "rec", percent = 100, methods = ["POST"] }}
[[routes]]
name = "composed"
path = "/composed/{{id}}"
[routes.compose]
[[routes.compose.legs]]
name = "main"
upstream = "json"
path = "/echo/{{id}}"
[[routes.compose.legs]]
name = "extra"
upstream = "rec"
path = "/legs/{{id}}?x=1"
optional = true
"#,
        rec = up.url(),
        json = json.url(),
    ))
    .await;
    let client = h1();
    let post = |path: &str| {
        Request::post(p.url(path))
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap()
    };
    let lines = |seen: &std::sync::Mutex<Vec<support::raw::Seen>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| s.line.clone())
            .collect()
    };
    assert_eq!(send(&client, post("/replayed/a?q=1")).await.status, 200);
    assert_eq!(lines(&seen), ["POST /replayed/a?q=1 HTTP/1.1"]);
    assert_eq!(seen.lock().unwrap()[0].body, b"hello");
    seen.lock().unwrap().clear();

    assert_eq!(send(&client, post("/shadowed/b?q=2")).await.status, 200);
    let copy = eventually("the shadow copy sent", || lines(&seen).pop()).await;
    assert_eq!(copy, "POST /shadowed/b?q=2 HTTP/1.1");
    seen.lock().unwrap().clear();

    let a = get(&p.url("/composed/7")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(lines(&seen), ["GET /legs/7?x=1 HTTP/1.1"]);
}
