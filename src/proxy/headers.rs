//! Header rules for both directions (SPEC 3.1): hop-by-hop removal, the
//! `x-forwarded-*` set, `x-request-id`, and recognising upgrade requests.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1),
/// plus `proxy-connection` and `keep-alive` that old clients still send.
/// `expect` is answered by this hop (the server sends `100 Continue` when the
/// body is first read), so it is not passed on either; nor is
/// `http2-settings`, which belongs to an h2c upgrade (RFC 7540 section
/// 3.2.1) that this proxy never makes. `connection` comes first: its bit is
/// 1 in [`strip_hop_by_hop`].
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
    HeaderName::from_static("http2-settings"),
];

/// Longest `x-request-id` kept from a client; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Removes hop-by-hop headers and every header named in `connection`. With
/// `upgrade`, the `upgrade` header survives and `connection: upgrade` is set,
/// which is how a WebSocket handshake crosses the proxy.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.is_empty() && !upgrade {
        // An answer whose headers pass through as lines (see
        // `upstream::h1::RawHeaders`) has none to strip here.
        return;
    }
    // One pass over the names finds which are present: most messages carry
    // none, and most of the rest only `connection`, so only those are
    // looked up again to be removed.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        // Names the `connection` header lists go too; listed hop-by-hop names
        // are already marked if present.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && hop_by_hop_index(t).is_none())
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 && !(upgrade && *name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Which request headers do not cross this hop as they are: hop-by-hop
/// headers, the names `connection` lists, and the ones this hop sets itself
/// (`host`, `x-forwarded-*`, `x-request-id`). For writing an upstream head
/// straight from the client's; [`strip_hop_by_hop`] and [`add_forwarded`]
/// apply the same rules to a header map.
pub(crate) struct NotPassed {
    listed: Vec<HeaderName>,
}

impl NotPassed {
    pub fn of(headers: &HeaderMap) -> Self {
        let listed = if headers.contains_key(header::CONNECTION) {
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect()
        } else {
            Vec::new()
        };
        NotPassed { listed }
    }

    /// Removed by the hop-by-hop rule (whatever this hop then sets).
    pub fn is_hop_by_hop(&self, name: &HeaderName) -> bool {
        hop_by_hop_index(name.as_str()).is_some() || self.listed.contains(name)
    }

    /// Not written as the client sent it.
    pub fn skips(&self, name: &HeaderName) -> bool {
        *name == header::HOST
            || *name == X_FORWARDED_FOR
            || *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || *name == X_REQUEST_ID
            || self.is_hop_by_hop(name)
    }
}

/// The hop-by-hop header names, for tests of code that must agree with
/// this rule.
#[cfg(test)]
pub(crate) fn hop_by_hop_names() -> Vec<String> {
    HOP_BY_HOP.iter().map(|n| n.as_str().to_owned()).collect()
}

/// Where `name` (any case) is in [`HOP_BY_HOP`], if it is a hop-by-hop header.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    HOP_BY_HOP
        .iter()
        .position(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// The checks an HTTP/2 request needs before it goes on as HTTP/1.1, and
/// the one change: no userinfo in `:authority` (RFC 9113 section 8.3.1),
/// no field value that starts or ends with whitespace (section 8.2.1: the
/// request is malformed), and cookie crumbs joined into one `cookie` with
/// `; ` (section 8.2.3), as an HTTP/1.1 server expects one.
pub fn accept_h2<B>(req: &mut http::Request<B>) -> Result<(), super::ProxyError> {
    use super::ProxyError;
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(ProxyError::BadRequest(
            "the :authority must not carry userinfo",
        ));
    }
    let padded = |v: &HeaderValue| {
        let b = v.as_bytes();
        matches!(b.first(), Some(b' ' | b'\t')) || matches!(b.last(), Some(b' ' | b'\t'))
    };
    let headers = req.headers_mut();
    if headers.values().any(padded) {
        return Err(ProxyError::BadRequest(
            "a field value starts or ends with whitespace",
        ));
    }
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for v in headers.get_all(header::COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(v.as_bytes());
        }
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
    Ok(())
}

/// The client's `x-request-id` when it is sane (printable, no spaces, at most
/// 128 bytes), otherwise a fresh random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if is_sane_request_id(v.as_bytes()) => v.clone(),
        _ => generate_request_id(),
    }
}

fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// 128 random bits as 32 lowercase hex digits.
pub fn generate_request_id() -> HeaderValue {
    /// Each byte's two lowercase hex digits.
    const HEX: [[u8; 2]; 256] = {
        let digits = b"0123456789abcdef";
        let mut t = [[0; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [digits[i >> 4], digits[i & 15]];
            i += 1;
        }
        t
    };
    /// Ids cut from one buffer: an allocation per this many ids, not per id.
    const PER_SLAB: usize = 128;
    thread_local! {
        static SLAB: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::default();
    }
    let mut id = [0u8; 32];
    for (pair, byte) in id.chunks_exact_mut(2).zip(fastrand::u128(..).to_be_bytes()) {
        pair.copy_from_slice(&HEX[usize::from(byte)]);
    }
    let bytes = SLAB.with(|slab| {
        let mut slab = slab.borrow_mut();
        if slab.capacity() < id.len() {
            *slab = bytes::BytesMut::with_capacity(id.len() * PER_SLAB);
        }
        slab.extend_from_slice(&id);
        slab.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The client's address as a header value, made once per connection.
pub fn client_ip_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string()).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Sets `x-forwarded-for` (client appended to any earlier hops), and replaces
/// `x-forwarded-proto` and `x-forwarded-host` with what this hop saw.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined: Vec<u8> = Vec::with_capacity(64);
        for v in headers.get_all(&X_FORWARDED_FOR) {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(client.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    } else {
        headers.insert(X_FORWARDED_FOR, client.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_listed_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn upgrades_keep_their_upgrade_header() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
        let a = generate_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, generate_request_id());
    }

    #[test]
    fn generated_ids_share_buffers_but_never_change() {
        // More than one buffer's worth: ids made later, in the same buffer or
        // a new one, leave the earlier ones as they were.
        let ids: Vec<(HeaderValue, String)> = (0..300)
            .map(|_| {
                let id = generate_request_id();
                let text = id.to_str().unwrap().to_owned();
                (id, text)
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (id, text) in &ids {
            assert_eq!(id.to_str().unwrap(), text);
            assert_eq!(text.len(), 32);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(text.clone()), "{text} twice");
        }
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let host = HeaderValue::from_static("shop.example.com");
        let ip = client_ip_value("10.0.0.9".parse().unwrap());
        add_forwarded(&mut h, &ip, "http", Some(&host));
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "shop.example.com");
    }

    /// The plain statement of the rule, without the one-pass shortcut.
    fn strip_reference(h: &mut HeaderMap, upgrade: bool) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && *n == header::UPGRADE))
            .collect();
        for name in listed {
            h.remove(name);
        }
        for name in &HOP_BY_HOP {
            if !(upgrade && *name == header::UPGRADE) {
                h.remove(name);
            }
        }
        if upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }

    proptest::proptest! {
        #[test]
        fn stripping_matches_the_plain_rule(
            names in proptest::collection::vec(0usize..12, 0..8),
            listed in proptest::collection::vec(0usize..12, 0..4),
            upgrade: bool,
        ) {
            const POOL: [&str; 12] = [
                "connection", "keep-alive", "proxy-connection", "te", "trailer",
                "transfer-encoding", "upgrade", "expect", "accept", "x-secret",
                "cookie", "x-other",
            ];
            let mut h = HeaderMap::new();
            for &i in &names {
                h.append(POOL[i], HeaderValue::from_static("v"));
            }
            if !listed.is_empty() {
                // Tokens in mixed case and with spaces, as clients send them.
                let tokens: Vec<String> = listed
                    .iter()
                    .map(|&i| format!(" {}", POOL[i].to_ascii_uppercase()))
                    .collect();
                let value = HeaderValue::from_str(&tokens.join(",")).unwrap();
                h.append(header::CONNECTION, value);
            }
            let mut want = h.clone();
            strip_reference(&mut want, upgrade);
            strip_hop_by_hop(&mut h, upgrade);
            let mut got: Vec<(String, Vec<u8>)> =
                h.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            let mut exp: Vec<(String, Vec<u8>)> =
                want.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
            got.sort();
            exp.sort();
            proptest::prop_assert_eq!(got, exp);
        }
    }
}
