//! Raw HTTP/1.1 over TCP, for tests that must control the exact bytes: on the
//! client side, requests written byte for byte and responses parsed with
//! httparse (one at a time, or every one in a closed stream); on the upstream
//! side, hand-written upstreams that read a request head and answer whatever
//! the test wants.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Server;

/// Safety net for one raw exchange.
const EXCHANGE_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Responses

/// One response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The head as it came, status line included, without the final CRLFs.
    pub head: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        super::json_body(&self.body)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Decodes a complete chunked body (trailers included) from the start of
/// `buf`: the body and the bytes it took, or `Ok(None)` if more is needed.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("bad chunk size line".into()),
        };
        at += used;
        let size = usize::try_from(size).map_err(|e| format!("chunk size: {e}"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            let rest = &buf[at..];
            if rest.starts_with(b"\r\n") {
                return Ok(Some((out, at + 2)));
            }
            let end = rest.windows(4).position(|w| w == b"\r\n\r\n");
            return Ok(end.map(|end| (out, at + end + 4)));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// One response at the start of `buf` and the bytes it took; `Ok(None)`
/// while incomplete. `eof` says no more bytes will come (a body without
/// framing ends there, a truncated one is taken as it is); `head_request`
/// says the request was HEAD (no body, whatever the headers say). `Err`
/// says what is wrong when the bytes are not a response.
fn parse_one(
    buf: &[u8],
    eof: bool,
    head_request: bool,
) -> Result<Option<(RawResponse, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).map_err(|e| e.to_string())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.expect("status");
    let head = String::from_utf8_lossy(&buf[..head_len])
        .trim_end_matches(['\r', '\n'])
        .to_owned();
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
    let (body, used) = if head_request || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest)? {
            Some(done) => done,
            None if eof => (rest.to_vec(), rest.len()),
            None => return Ok(None),
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|e| format!("content-length {len:?}: {e}"))?;
        if rest.len() < len && !eof {
            return Ok(None);
        }
        let len = len.min(rest.len());
        (rest[..len].to_vec(), len)
    } else if eof {
        (rest.to_vec(), rest.len())
    } else {
        return Ok(None);
    };
    let response = RawResponse {
        status,
        head,
        headers,
        body,
    };
    Ok(Some((response, head_len + used)))
}

/// Parses one response from `buf`; `None` while incomplete. `eof` says no
/// more bytes will come; `head_request` that it answers a HEAD. Panics with
/// the bytes when they are not an HTTP/1.x response.
pub fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Option<RawResponse> {
    match parse_one(buf, eof, head_request) {
        Ok(r) => r.map(|(r, _)| r),
        Err(e) => panic!(
            "unparsable response ({e}): {}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// Every response in `data`, a stream the peer has closed, up to the first
/// that is incomplete or not HTTP.
pub fn parse_responses(mut data: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Ok(Some((r, used))) = parse_one(data, true, false) {
        out.push(r);
        data = &data[used..];
        if data.is_empty() {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Exchanges

/// Reads one response off `s` (10 s cap); `head_request` says it answers a
/// HEAD. Panics when the connection ends before a whole response.
pub async fn read_response(s: &mut TcpStream, head_request: bool) -> RawResponse {
    let fut = async {
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
    tokio::time::timeout(EXCHANGE_WAIT, fut)
        .await
        .expect("raw exchange timed out")
}

/// Writes `request` on a fresh connection and reads one response (10 s
/// cap). Returns the connection too, to see what happens next on it.
pub async fn exchange_keep(addr: SocketAddr, request: &[u8]) -> (RawResponse, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The proxy may answer and close before reading everything.
    let _ = s.write_all(request).await;
    let r = read_response(&mut s, request.starts_with(b"HEAD ")).await;
    (r, s)
}

/// Writes `request` on a fresh connection and reads one response (10 s cap).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    exchange_keep(addr, request).await.0
}

/// What came back on a connection before the peer closed it or time ran out.
pub struct Reply {
    pub bytes: Vec<u8>,
    /// The peer closed the connection (EOF or reset) in time.
    pub closed: bool,
}

impl Reply {
    /// The bytes as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Every response in the bytes, parsed.
    pub fn responses(&self) -> Vec<RawResponse> {
        parse_responses(&self.bytes)
    }
}

/// Reads from `s` until the peer closes it (EOF or reset) or `wait` passes.
pub async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Reply {
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let closed = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                bytes.extend_from_slice(&buf[..n]);
                continue;
            }
            // A reset is a close too (the peer may drop unread bytes).
            Ok(Err(_)) => true,
        };
        return Reply { bytes, closed };
    }
}

/// Writes `bytes` on a fresh connection and reads until the peer closes it
/// or `wait` passes.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_until_closed(&mut s, wait).await
}

/// Writes `bytes` on a fresh connection and reads until the peer closes or
/// `wait` passes; returns what came back as text.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    send_raw(addr, bytes, wait).await.text()
}

/// The status code of the first response in a raw answer.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
}

// ---------------------------------------------------------------------------
// Raw upstreams

/// Reads one request head from `s` (the tests' upstreams get no bodies);
/// false when the connection ends first.
pub async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A raw upstream: on each connection, reads one request head, then runs
/// `then` on the socket.
pub async fn raw_upstream<F, Fut>(then: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let then = then.clone();
        async move {
            if read_head(&mut s).await {
                then(s).await;
            }
        }
    })
    .await
    .expect("raw upstream")
}

/// A raw upstream that reads one request head per connection, writes
/// `answer`, and hangs up (closing is what delimits an until-close body).
pub async fn answers_with(answer: &'static [u8]) -> Server {
    raw_upstream(move |mut s: TcpStream| async move {
        let _ = s.write_all(answer).await;
    })
    .await
}

/// A raw upstream that takes each request and never answers, holding the
/// connection open (a stuck service).
pub async fn silent_upstream() -> Server {
    raw_upstream(|s: TcpStream| async move {
        let _held = s;
        std::future::pending::<()>().await;
    })
    .await
}

/// Writes a `200` JSON answer and ends the exchange (`connection: close`).
pub async fn write_json(s: &mut TcpStream, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
}

/// A request as an upstream read it off the wire.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line, exactly as sent (no CRLF).
    pub line: String,
    /// The header lines as sent, in order, `name: value` with the name's case kept.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of header `name` (any case), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads one request off `s`: its head as sent and its body by its framing
/// (content-length or chunked). `None` when the connection ends first.
pub async fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (seen, head_len, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let line = text.lines().next().unwrap_or("").to_owned();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let framing = match (find("transfer-encoding"), find("content-length")) {
                (Some(_), _) => None,
                (None, Some(n)) => Some(n.trim().parse::<usize>().unwrap_or(0)),
                (None, None) => Some(0),
            };
            break (
                Seen {
                    line,
                    headers,
                    body: Vec::new(),
                },
                n,
                framing,
            );
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut seen = seen;
    loop {
        let rest = &buf[head_len..];
        match framing {
            Some(len) if rest.len() >= len => {
                seen.body = rest[..len].to_vec();
                return Some(seen);
            }
            None => {
                if let Ok(Some((body, _))) = dechunk(rest) {
                    seen.body = body;
                    return Some(seen);
                }
            }
            Some(_) => {}
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An upstream that records every request as it came off the wire and
/// answers each `200 ok` on a kept-alive connection; an upgrade request
/// gets `101` and its bytes echoed back.
pub async fn recording_upstream() -> (Server, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = legacy_stub::spawn_raw(move |mut s: TcpStream| {
        let log = log.clone();
        async move {
            while let Some(req) = read_request(&mut s).await {
                let upgrade = !req.all("upgrade").is_empty();
                log.lock().unwrap().push(req);
                if upgrade {
                    let _ = s
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                        .await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    return;
                }
                if s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await
    .expect("recording upstream");
    (server, seen)
}
