//! Forwarding one request to one upstream target: the upstream request is
//! built from the client's (path, Host, `x-forwarded-*`, hop-by-hop headers),
//! sent on a kept-alive connection with the route's timeout, and failures are
//! told apart: never connected, timed out, or failed after leaving.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::Body as _;

use super::body::{BoxError, ClientBody, RequestBody};
use super::error::ProxyError;
use super::headers;
use crate::fallback::Held;
use crate::http1::encode::put_header;
use crate::http1::response::Asked;
use crate::upstream::body::UpstreamBody;
use crate::upstream::h1::{self, RawConn, SendError};
use crate::upstream::{Home, Lane, Lease, Target};

/// Where and how to send.
pub struct Outbound<'a> {
    pub lease: &'a Lease,
    /// The upstream path (normalized, after rewrite), without the query.
    pub path: String,
    /// The client's Host (or `:authority`).
    pub client_host: Option<HeaderValue>,
    pub request_id: &'a HeaderValue,
    pub upgrade: bool,
    /// The client's address, for `x-forwarded-for`.
    pub client_ip: &'a HeaderValue,
    /// What `x-forwarded-proto` says.
    pub scheme: &'static str,
}

/// The client's body as it goes upstream, and the flag it sets if it passes
/// `max_body` while streaming (only a body without `content-length` can).
pub fn client_body(
    parts: &Parts,
    body: ClientBody,
    max_body: u64,
) -> (RequestBody, Option<Arc<AtomicBool>>) {
    if let ClientBody::Streaming(body) = &body
        && body.is_end_stream()
    {
        return (RequestBody::empty(), None);
    }
    let unbounded = !parts.headers.contains_key(header::CONTENT_LENGTH);
    match body {
        ClientBody::Streaming(body) if body.is_end_stream() => (RequestBody::empty(), None),
        // The codec (hyper for HTTP/2) holds a body to its declared length,
        // checked against the limit on accept.
        ClientBody::Streaming(body) if !unbounded => {
            (RequestBody::streaming(body, max_body, None), None)
        }
        ClientBody::Streaming(body) => {
            let flag = Arc::new(AtomicBool::new(false));
            (
                RequestBody::streaming(body, max_body, Some(flag.clone())),
                Some(flag),
            )
        }
        ClientBody::Held(Held::Whole(bytes)) => (RequestBody::full(bytes), None),
        ClientBody::Held(Held::TooLarge { read, rest: None }) => (RequestBody::full(read), None),
        ClientBody::Held(Held::TooLarge {
            read,
            rest: Some(rest),
        }) => {
            let flag = unbounded.then(|| Arc::new(AtomicBool::new(false)));
            (
                RequestBody::resumed(read, rest, max_body, flag.clone()),
                flag,
            )
        }
    }
}

/// A copy of the client's request head, for a second attempt.
pub fn copy_head(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// The `host` the upstream gets: the upstream's own `host`, else the
/// client's, else the target's authority.
fn host_for(out: &Outbound<'_>) -> Option<HeaderValue> {
    out.lease
        .pool()
        .host
        .clone()
        .or_else(|| out.client_host.clone())
        .or_else(|| HeaderValue::from_str(out.lease.target().authority.as_str()).ok())
}

/// Turns the client's request head and body into the upstream's request.
pub fn build(
    mut parts: Parts,
    body: RequestBody,
    out: Outbound<'_>,
) -> Result<Request<RequestBody>, ProxyError> {
    let host = host_for(&out);

    let pq = match parts.uri.query() {
        Some(q) => format!("{}?{q}", out.path),
        None => out.path,
    };
    let pq = PathAndQuery::try_from(pq)
        .map_err(|_| ProxyError::BadRequest("the request target cannot be forwarded"))?;
    // Origin-form (RFC 9112 section 3.2.1): a low-level HTTP/1 connection
    // writes the target it is given, and servers route on it as sent.
    parts.uri = Uri::from(pq);
    parts.version = Version::HTTP_11;

    headers::strip_hop_by_hop(&mut parts.headers, out.upgrade);
    if let Some(h) = host {
        parts.headers.insert(header::HOST, h);
    }
    headers::add_forwarded(
        &mut parts.headers,
        out.client_ip,
        out.scheme,
        out.client_host.as_ref(),
    );
    parts
        .headers
        .insert(headers::X_REQUEST_ID, out.request_id.clone());
    Ok(Request::from_parts(parts, body))
}

/// Sends the request to the lease's target and returns the response head,
/// whose body streams off the connection. `timeout` runs until the response
/// head arrives; connecting has its own `connect_timeout` inside it.
///
/// Every request takes the one HTTP/1.1 client ([`h1`]): the head written
/// in origin-form, the body (if any) streamed while the answer is awaited.
/// Kept-alive connections are taken from and given back to `lane`'s: the
/// thread sending must be the lane's.
pub async fn send(
    lease: &Lease,
    lane: Lane,
    req: Request<RequestBody>,
    upgrade: bool,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let head = Encoded::encode(req, upgrade);
    Box::pin(send_head(lease, lane, head, timeout, connect_timeout)).await
}

/// [`send`] for a request already encoded; a bodiless one's future holds a
/// few hundred bytes of head, never the request.
pub async fn send_head(
    lease: &Lease,
    lane: Lane,
    head: Encoded,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let target = lease.target();
    let home = Home {
        stats: target.stats.clone(),
        lane,
    };
    let exchanged =
        tokio::time::timeout(timeout, exchange(target, home, head, connect_timeout)).await;
    settle(lease, exchanged, timeout)
}

/// The exchange's outcome as the journey sees it, told to passive health.
fn settle(
    lease: &Lease,
    exchanged: Result<Result<Response<UpstreamBody>, SendError>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let upstream = &lease.pool().name;
    let sent = match exchanged {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(classify(e, upstream)),
        Err(_) => Err(ProxyError::Timeout {
            upstream: upstream.clone(),
            timeout,
        }),
    };
    passive(lease, &sent);
    sent
}

/// Tells the target's health how the request went (passive checks): no
/// answer, or an answer that says the target itself is failing (502, 503,
/// 504), is a failure; anything else ends a run of failures.
fn passive(lease: &Lease, sent: &Result<Response<UpstreamBody>, ProxyError>) {
    let reason = match sent {
        Ok(resp) => match resp.status().as_u16() {
            502 => "502",
            503 => "503",
            504 => "504",
            _ => "",
        },
        Err(ProxyError::Connect { .. }) => "connect failed",
        Err(ProxyError::ConnectTimeout { .. }) => "connect timeout",
        Err(ProxyError::Timeout { .. }) => "timeout",
        // The client's own failure says nothing of the target.
        Err(ProxyError::ClientBody(_) | ProxyError::BodyTooLarge { .. }) => return,
        Err(_) => "no valid answer",
    };
    let health = &lease.target().stats.health;
    if reason.is_empty() {
        health.record(false, None, 0, reason);
    } else {
        let eject = lease.pool().eject.as_ref();
        health.record(true, eject, crate::upstream::health::now_ms(), reason);
    }
}

/// Whether a request target made of `path` and, after it, the query of an
/// already parsed URI (`len` bytes in all) is one `build` takes as it is:
/// a path of bytes valid in a URI path as they are (no `?`, `#`, or byte
/// outside ASCII), and a target within `http`'s length limit. A query from a
/// parsed URI passed the same checks when it was parsed.
fn plain_target(path: &[u8], len: usize) -> bool {
    len < u16::MAX as usize
        && path.iter().all(|&b| {
            matches!(b,
                0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E
                | b'"' | b'{' | b'}')
        })
}

/// Everything an exchange needs from its request: the head as it goes on
/// the wire, and the body (if any) to stream after it.
pub struct Encoded {
    head: Vec<u8>,
    head_request: bool,
    idempotent: bool,
    upgrade: bool,
    body: Option<Box<h1::Upload>>,
    /// The answer's headers may stay the upstream's lines
    /// ([`h1::RawHeaders`]): set only for a server that writes them itself.
    pub pass_head: bool,
}

impl Encoded {
    /// The upstream head for the client's bodiless request, written straight
    /// from the client's head: the request [`build`] then [`Encoded::encode`]
    /// make (a property test holds the two to the same headers), without
    /// building a header map in between.
    pub fn direct(parts: &Parts, out: &Outbound<'_>) -> Result<Encoded, ProxyError> {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        let start = head.len();
        head.extend_from_slice(out.path.as_bytes());
        if let Some(q) = parts.uri.query() {
            head.push(b'?');
            head.extend_from_slice(q.as_bytes());
        }
        // What `build` would refuse as a URI, refused the same way. A plain
        // path after a query from a parsed URI needs no second look.
        if !plain_target(out.path.as_bytes(), head.len() - start)
            && PathAndQuery::try_from(&head[start..]).is_err()
        {
            return Err(ProxyError::BadRequest(
                "the request target cannot be forwarded",
            ));
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let not_passed = headers::NotPassed::of(&parts.headers);
        let host = host_for(out);
        for (name, value) in &parts.headers {
            let ours = not_passed.skips(name);
            // Without a host of its own (never, in practice) the client's stays.
            let client_host =
                *name == header::HOST && host.is_none() && !not_passed.is_hop_by_hop(name);
            // The framing is this hop's: a bodiless request says no length
            // but the `0` below.
            if (ours && !client_host) || *name == header::CONTENT_LENGTH {
                continue;
            }
            put_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(h) = &host {
            put_header(&mut head, b"host", h.as_bytes());
        }
        head.extend_from_slice(b"x-forwarded-for: ");
        if !not_passed.is_hop_by_hop(&headers::X_FORWARDED_FOR) {
            for v in parts.headers.get_all(headers::X_FORWARDED_FOR) {
                head.extend_from_slice(v.as_bytes());
                head.extend_from_slice(b", ");
            }
        }
        head.extend_from_slice(out.client_ip.as_bytes());
        head.extend_from_slice(b"\r\n");
        put_header(&mut head, b"x-forwarded-proto", out.scheme.as_bytes());
        if let Some(h) = &out.client_host {
            put_header(&mut head, b"x-forwarded-host", h.as_bytes());
        }
        put_header(&mut head, b"x-request-id", out.request_id.as_bytes());
        if crate::http1::encode::expects_body(&parts.method) {
            head.extend_from_slice(b"content-length: 0\r\n");
        }
        head.extend_from_slice(b"\r\n");
        Ok(Encoded {
            head,
            head_request: parts.method == Method::HEAD,
            idempotent: crate::fallback::is_idempotent(&parts.method),
            upgrade: false,
            body: None,
            pass_head: false,
        })
    }

    /// The head of a request [`build`] made, and its body: sent with its
    /// exact length when that is known, else chunked. An upgrade is bodiless.
    fn encode(req: Request<RequestBody>, upgrade: bool) -> Encoded {
        use crate::http1::encode::BodyHeader;
        let (mut parts, body) = req.into_parts();
        // The length goes on the wire as this hop frames the body.
        parts.headers.remove(header::CONTENT_LENGTH);
        let (framing, body) = match body.size_hint().exact() {
            _ if body.is_end_stream() => (BodyHeader::None, None),
            Some(n) => (
                BodyHeader::Length(n),
                Some(Box::new(h1::Upload::new(body, Some(n)))),
            ),
            None => (
                BodyHeader::Chunked,
                Some(Box::new(h1::Upload::new(body, None))),
            ),
        };
        let req = Request::from_parts(parts, ());
        let mut head = Vec::with_capacity(512);
        crate::http1::encode::request_head(&req, framing, &mut head);
        Encoded {
            head,
            head_request: req.method() == Method::HEAD,
            idempotent: crate::fallback::is_idempotent(req.method()),
            upgrade,
            body,
            pass_head: false,
        }
    }
}

/// Sends `req` on a kept-alive connection of `home`'s, or a new one, and
/// reads the answer's head. A kept-alive connection the upstream closed as
/// the request went out is replaced once, when nothing came back and the
/// request is safe to send again (idempotent, its body not yet taken).
async fn exchange(
    target: &Target,
    home: Home,
    mut req: Encoded,
    connect_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    let authority = target.authority.as_str();
    let (mut raw, reused) = match home.kept().raw.take() {
        Some(c) => (c, true),
        None => (
            Box::pin(RawConn::connect(authority, connect_timeout)).await?,
            false,
        ),
    };
    let asked = Asked {
        head_request: req.head_request,
        upgrade: req.upgrade,
        pass: req.pass_head,
    };
    let upload = req.body.take();
    let bodiless = upload.is_none();
    let answer = match h1::exchange(&mut raw, &req.head, upload, asked).await {
        Ok(a) => a,
        Err(h1::ExchangeError::Closed(_)) if reused && req.idempotent && bodiless => {
            tracing::debug!("kept-alive connection was closed; sending on a new one");
            raw = Box::pin(RawConn::connect(authority, connect_timeout)).await?;
            h1::exchange(&mut raw, &req.head, None, asked).await?
        }
        Err(e) => return Err(e.into()),
    };
    let (head, upload) = answer;
    let (parts, body) = h1::RawBody::new(raw, head, upload, home);
    Ok(Response::from_parts(parts, UpstreamBody::H1(body)))
}

fn classify(e: SendError, upstream: &str) -> ProxyError {
    let upstream = upstream.to_owned();
    match e {
        SendError::ConnectTimeout => ProxyError::ConnectTimeout { upstream },
        SendError::Connect(source) => ProxyError::Connect {
            upstream,
            source: Box::new(source),
        },
        SendError::Exchange(h1::ExchangeError::ClientBody(source)) => {
            ProxyError::ClientBody(source)
        }
        SendError::Exchange(source) => ProxyError::Upstream {
            upstream,
            source: Box::new(source) as BoxError,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use http::HeaderName;
    use http::uri::Authority;
    use proptest::prelude::*;

    use super::*;
    use crate::config::{self, Balance};
    use crate::upstream::{Pool, Registry};

    fn pool(host: Option<&'static str>) -> Arc<Pool> {
        let cfg = config::Upstream {
            name: "u".into(),
            targets: vec![config::Target {
                url: "http://127.0.0.1:1000".into(),
                authority: Authority::from_static("127.0.0.1:1000"),
            }],
            balance: Balance::RoundRobin,
            host: host.map(HeaderValue::from_static),
            health: None,
            eject: None,
            retries: 0,
        };
        Arc::new(Pool::new(&cfg, &Registry::default()))
    }

    /// The request line and every header (by name, values in order) of a head.
    fn read(head: &[u8]) -> (String, BTreeMap<String, Vec<String>>) {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        let status = req.parse(head).expect("a valid head");
        assert!(status.is_complete(), "a complete head");
        let line = format!("{} {}", req.method.unwrap(), req.path.unwrap());
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in req.headers.iter() {
            headers
                .entry(h.name.to_ascii_lowercase())
                .or_default()
                .push(String::from_utf8_lossy(h.value).into_owned());
        }
        (line, headers)
    }

    const NAMES: &[&str] = &[
        "accept",
        "user-agent",
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
        "content-length",
        "x-custom",
        "x-other",
        "cookie",
    ];
    const VALUES: &[&str] = &[
        "a",
        "10.0.0.1",
        "0",
        "close",
        "keep-alive",
        "x-custom",
        "x-other, keep-alive",
        "X-Forwarded-For",
        "host, x-request-id",
        "Upgrade",
    ];
    const METHODS: &[&str] = &["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"];

    proptest! {
        #[test]
        fn the_direct_head_is_the_built_request_encoded(
            method in 0..METHODS.len(),
            query in proptest::option::of(Just("x=1&y=%20")),
            headers in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..12),
            client_host in proptest::option::of(Just("shop.example")),
            upstream_host in proptest::option::of(Just("svc.internal")),
        ) {
            let uri = match query {
                Some(q) => format!("/in?{q}"),
                None => "/in".to_owned(),
            };
            let mut req = Request::builder()
                .method(METHODS[method])
                .uri(uri)
                .body(())
                .unwrap();
            for (n, v) in headers {
                req.headers_mut().append(
                    HeaderName::from_static(NAMES[n]),
                    HeaderValue::from_static(VALUES[v]),
                );
            }
            let (parts, ()) = req.into_parts();
            let pool = pool(upstream_host);
            let lease = pool.pick().unwrap();
            let request_id = HeaderValue::from_static("rid-1");
            let client_ip = HeaderValue::from_static("192.0.2.7");
            let out = || Outbound {
                lease: &lease,
                path: "/up/path".to_owned(),
                client_host: client_host.map(HeaderValue::from_static),
                request_id: &request_id,
                upgrade: false,
                client_ip: &client_ip,
                scheme: "http",
            };
            let direct = Encoded::direct(&parts, &out()).unwrap();
            let built = build(copy_head(&parts), RequestBody::empty(), out()).unwrap();
            let encoded = Encoded::encode(built, false);
            prop_assert_eq!(read(&direct.head), read(&encoded.head));
            prop_assert_eq!(direct.head_request, encoded.head_request);
            prop_assert_eq!(direct.idempotent, encoded.idempotent);
        }

        /// A target `plain_target` passes is one `http` takes as it is:
        /// the fast check never lets through what `build` would refuse or
        /// change (a fragment cut off, a `?` moved into the query).
        #[test]
        fn a_plain_target_is_one_http_takes_as_it_is(
            path in proptest::collection::vec(any::<u8>(), 0..40),
            query in proptest::option::of(prop::sample::select(vec!["x=1&y=%20", "a=/b?c", "", "q={x}|~"])),
        ) {
            let mut target = vec![b'/'];
            target.extend_from_slice(&path);
            let path_len = target.len();
            if let Some(q) = query {
                // The query as a parsed URI has it.
                let uri: Uri = format!("/?{q}").parse().unwrap();
                target.push(b'?');
                target.extend_from_slice(uri.query().unwrap_or("").as_bytes());
            }
            if plain_target(&target[..path_len], target.len()) {
                let pq = PathAndQuery::try_from(&target[..]);
                prop_assert!(pq.is_ok(), "{:?} refused", String::from_utf8_lossy(&target));
                let pq = pq.unwrap();
                prop_assert_eq!(pq.as_str().as_bytes(), &target[..]);
            }
        }
    }
}
