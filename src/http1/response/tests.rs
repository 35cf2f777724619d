use super::*;

fn asked(head_request: bool, pass: bool) -> Asked {
    Asked {
        head_request,
        upgrade: false,
        pass,
    }
}

fn head(raw: &str, head_request: bool) -> Result<Option<ResponseHead>, Invalid> {
    parse(&mut BytesMut::from(raw), asked(head_request, false))
}

#[test]
fn framing_follows_rfc9112() {
    let f = |raw: &str, head_req: bool| {
        head(raw, head_req)
            .map(|h| h.map(|h| (h.framing, h.keep_alive)))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        Ok(Some((Framing::Length(5), true)))
    );
    assert_eq!(
        f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
        Ok(Some((Framing::Empty, true)))
    );
    assert_eq!(
        f("HTTP/1.1 204 No Content\r\n\r\n", false),
        Ok(Some((Framing::Empty, true)))
    );
    assert_eq!(
        f(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false
        ),
        Ok(Some((Framing::Chunked, true)))
    );
    assert_eq!(
        f("HTTP/1.1 200 OK\r\n\r\n", false),
        Ok(Some((Framing::UntilClose, false)))
    );
    assert_eq!(
        f(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        Ok(Some((Framing::Length(1), false)))
    );
    assert_eq!(
        f("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
        Ok(Some((Framing::Length(1), false)))
    );
    assert_eq!(
        f(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            false
        ),
        Ok(Some((Framing::Length(1), true)))
    );
    assert_eq!(f("HTTP/1.1 200 OK\r\ncontent-le", false), Ok(None));
    for bad in [
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
        "HTTP/1.1 101 Switching\r\n\r\n",
        "HELLO\r\n\r\n",
        // Ambiguous framing is refused, not passed or tidied.
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\ncontent-length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        // Statuses outside 100-599.
        "HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n",
    ] {
        assert!(f(bad, false).is_err(), "{bad}");
    }
}

#[test]
fn interim_answers_are_skipped_and_values_kept() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc",
    );
    let h = parse(&mut buf, Asked::default()).unwrap().unwrap();
    assert_eq!(h.parts.status, 200);
    let values: Vec<&str> = h
        .parts
        .headers
        .get_all("x-a")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buf[..], b"abc", "the body stays in the buffer");
}

#[test]
fn connection_headers_are_read_not_kept_unless_they_name_others() {
    let names = |raw: &str| {
        let h = head(raw, false).unwrap().unwrap();
        let names: Vec<String> = h.parts.headers.keys().map(|n| n.to_string()).collect();
        (names, h.keep_alive)
    };
    // Plain tokens: read for keep-alive, then dropped (hop-by-hop).
    assert_eq!(
        names(
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
        ),
        (vec!["x-a".to_owned(), "content-length".to_owned()], true)
    );
    assert_eq!(
        names(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nconnection: CLOSE\r\ncontent-length: 0\r\n\r\n"
        ),
        (vec!["content-length".to_owned()], false)
    );
    // A header named in `connection` goes too, by the proxy's hop-by-hop
    // rule: `connection` stays for it to read.
    let (kept, keep_alive) = names(
        "HTTP/1.1 200 OK\r\nconnection: x-secret, close\r\nx-secret: 1\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(kept, ["connection", "x-secret", "content-length"]);
    assert!(!keep_alive);
    let mut h = head(
        "HTTP/1.1 200 OK\r\nconnection: x-secret\r\nx-secret: 1\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    crate::proxy::headers::strip_hop_by_hop(&mut h.parts.headers, false);
    let left: Vec<&str> = h.parts.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(left, ["content-length"]);
}

/// A head's headers as its map has them, names lowercase, grouped by name
/// in the order each name first came (as a map iterates).
fn map_pairs(h: &ResponseHead) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    h.parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), text(v.as_bytes())))
        .collect()
}

/// The same, from a head's lines.
fn line_pairs(raw: &RawHeaders) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (n, v) in raw.pairs() {
        // Grouped by name, as a map iterates.
        let at = pairs
            .iter()
            .rposition(|(m, _)| m.as_bytes() == n)
            .map_or(pairs.len(), |i| i + 1);
        pairs.insert(at, (text(n), text(v)));
    }
    pairs
}

fn both(raw: &str, head_request: bool) -> (ResponseHead, ResponseHead, BytesMut, BytesMut) {
    let (mut a, mut b) = (BytesMut::from(raw), BytesMut::from(raw));
    let mapped = parse(&mut a, asked(head_request, false)).unwrap().unwrap();
    let passed = parse(&mut b, asked(head_request, true)).unwrap().unwrap();
    (mapped, passed, a, b)
}

#[test]
fn a_passed_head_is_lowercase_lines_without_hop_by_hop_headers() {
    let (mapped, passed, _, rest) = both(
        "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nX-A:1\nKeep-Alive: timeout=5\r\nx-a:   2  \r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello",
        false,
    );
    let raw = passed.raw.as_ref().expect("a plain head passes");
    assert!(passed.parts.headers.is_empty(), "the lines are the headers");
    assert_eq!(
        raw.bytes(),
        b"server: up\r\nx-a: 1\r\nx-a: 2\r\ndate: Tue, 01 Jan 2030 00:00:00 GMT\r\ncontent-length: 5\r\n"
    );
    assert_eq!((raw.declared(), raw.has_date), (Some(5), true));
    assert_eq!(line_pairs(raw), map_pairs(&mapped));
    assert_eq!(&rest[..], b"hello", "the body stays in the buffer");
    assert_eq!(
        (passed.framing, passed.keep_alive),
        (mapped.framing, mapped.keep_alive)
    );
}

#[test]
fn heads_the_proxy_must_act_on_are_mapped_not_passed() {
    for head in [
        "HTTP/1.1 200 OK\r\nconnection: x-secret\r\nx-secret: 1\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nupgrade: h2c\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntrailer: x-sum\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nte: trailers\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nproxy-connection: keep-alive\r\ncontent-length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
    ] {
        let (mapped, passed, _, _) = both(head, false);
        assert!(passed.raw.is_none(), "{head:?} passed");
        assert_eq!(map_pairs(&passed), map_pairs(&mapped), "{head:?}");
    }
    let (_, passed, _, _) = both("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false);
    assert!(passed.raw.is_some(), "a plain head passes");
    // Not asked: never passed.
    let plain = head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", false);
    assert!(plain.unwrap().unwrap().raw.is_none());
}

#[test]
fn a_head_too_odd_to_rewrite_in_place_is_mapped_whole() {
    // Each `a:N\n` grows by two bytes as `a: N\r\n`: twenty of them need
    // more room than the status line leaves.
    let lines: String = (0..20).map(|i| format!("a:{i}\n")).collect();
    let text = format!("HTTP/1.1 200 OK\n{lines}content-length: 0\n\n");
    let (mapped, passed, _, _) = both(&text, false);
    assert!(passed.raw.is_none());
    let values: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let got: Vec<&str> = passed
        .parts
        .headers
        .get_all("a")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(got, values, "nothing was overwritten");
    assert_eq!(map_pairs(&passed), map_pairs(&mapped));
}

#[test]
fn names_the_proxy_set_replace_the_upstreams_lines() {
    let (_, passed, _, _) = both(
        "HTTP/1.1 200 OK\r\nx-request-id: up\r\nx-request-idx: 1\r\nserver: s\r\ncontent-length: 0\r\n\r\n",
        false,
    );
    let raw = passed.raw.expect("passed");
    let mut set = http::HeaderMap::new();
    set.insert("x-request-id", http::HeaderValue::from_static("ours"));
    let mut out = Vec::new();
    raw.write_to(&mut out, &set);
    assert_eq!(
        out, b"x-request-idx: 1\r\nserver: s\r\ncontent-length: 0\r\n",
        "only the exact name is replaced"
    );
    out.clear();
    raw.write_to(&mut out, &http::HeaderMap::new());
    assert_eq!(out, raw.bytes());
    // A name the upstream did not send (`x-request-idx` is not it), and one
    // it sent mid-head.
    for (head, want) in [
        (
            "HTTP/1.1 200 OK\r\nx-request-idx: 1\r\ncontent-length: 0\r\n\r\n",
            &b"x-request-idx: 1\r\ncontent-length: 0\r\n"[..],
        ),
        (
            "HTTP/1.1 200 OK\r\nserver: s\r\nX-Request-Id: up\r\ncontent-length: 0\r\n\r\n",
            &b"server: s\r\ncontent-length: 0\r\n"[..],
        ),
    ] {
        let (_, passed, _, _) = both(head, false);
        out.clear();
        passed.raw.expect("passed").write_to(&mut out, &set);
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
    }
}

mod passing {
    use proptest::prelude::*;

    use super::*;

    /// A header line in one of the spellings httparse reads.
    fn line() -> impl Strategy<Value = (String, String, &'static str, &'static str)> {
        let name = prop::sample::select(vec![
            "Server",
            "date",
            "Content-Type",
            "X-Request-Id",
            "x-a",
            "X-A",
            "Keep-Alive",
            "Cache-Control",
            "vary",
            "Connection",
        ]);
        (
            name,
            "[a-zA-Z0-9,;=/.]([a-zA-Z0-9 ,;=/.]{0,16}[a-zA-Z0-9,;=/.])?",
            prop::sample::select(vec![": ", ":", ":   "]),
            prop::sample::select(vec!["\r\n", "\n", " \r\n"]),
        )
            .prop_map(|(n, v, sep, end)| {
                // Only plain connection tokens, so such heads may pass.
                let v = if n == "Connection" {
                    if v.len() % 2 == 0 {
                        "close"
                    } else {
                        "keep-alive"
                    }
                    .to_owned()
                } else {
                    v
                };
                (n.to_owned(), v, sep, end)
            })
    }

    proptest! {
        /// Passed or mapped, a head tells the same: status, framing,
        /// reuse, the body left in the buffer, and (but for
        /// `transfer-encoding`, which the server writes itself) the same
        /// headers.
        #[test]
        fn a_passed_head_says_what_its_map_says(
            status in prop::sample::select(vec![200u16, 404, 304, 204]),
            lines in prop::collection::vec(line(), 0..12),
            body in prop::sample::select(vec!["length", "chunked", "none"]),
            head_request in any::<bool>(),
        ) {
            let mut text = format!("HTTP/1.1 {status} X\r\n");
            for (n, v, sep, end) in &lines {
                text.push_str(&format!("{n}{sep}{v}{end}"));
            }
            match body {
                "length" => text.push_str("Content-Length: 3\r\n"),
                "chunked" => text.push_str("Transfer-Encoding: chunked\r\n"),
                _ => {}
            }
            text.push_str("\r\nabc");
            let (mapped, passed, rest_m, rest_p) = both(&text, head_request);
            prop_assert_eq!(passed.parts.status, mapped.parts.status);
            prop_assert_eq!(passed.framing, mapped.framing);
            prop_assert_eq!(passed.keep_alive, mapped.keep_alive);
            prop_assert_eq!(&rest_p[..], &rest_m[..]);
            let plain = status != 204 || body != "length";
            match &passed.raw {
                Some(raw) => {
                    let mut want = map_pairs(&mapped);
                    want.retain(|(n, _)| n != "transfer-encoding");
                    prop_assert_eq!(line_pairs(raw), want);
                    prop_assert_eq!(raw.has_date, mapped.parts.headers.contains_key("date"));
                    let length = mapped.parts.headers.get("content-length")
                        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                    prop_assert_eq!(raw.declared(), length);
                    prop_assert!(passed.parts.headers.is_empty());
                }
                // Few odd lines always fit: the status line leaves room.
                None => prop_assert!(!plain || lines.len() > 6, "{text:?} was not passed"),
            }
        }
    }
}

mod kinds {
    use proptest::prelude::*;

    use super::Kind;

    const NAMES: [(&str, Kind); 11] = [
        ("http2-settings", Kind::OtherHop),
        ("te", Kind::OtherHop),
        ("date", Kind::Date),
        ("expect", Kind::OtherHop),
        ("trailer", Kind::OtherHop),
        ("upgrade", Kind::OtherHop),
        ("connection", Kind::Connection),
        ("keep-alive", Kind::KeepAlive),
        ("content-length", Kind::ContentLength),
        ("proxy-connection", Kind::OtherHop),
        ("transfer-encoding", Kind::TransferEncoding),
    ];

    /// The same, the slow way.
    fn reference(name: &str) -> Kind {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Kind::Plain, |(_, k)| *k)
    }

    #[test]
    fn every_hop_by_hop_name_keeps_a_head_from_passing_as_it_is() {
        for name in crate::proxy::headers::hop_by_hop_names() {
            assert_ne!(Kind::of(&name), Kind::Plain, "{name}");
        }
    }

    proptest! {
        /// Any token, and the names themselves in any case.
        #[test]
        fn kinds_are_read_case_blind(
            token in "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,18}",
            pick in 0..NAMES.len(),
            case in prop::collection::vec(any::<bool>(), 18),
        ) {
            prop_assert_eq!(Kind::of(&token), reference(&token));
            let name: String = NAMES[pick].0.chars().zip(&case)
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert_eq!(Kind::of(&name), NAMES[pick].1);
        }
    }
}

#[test]
fn a_101_is_taken_only_for_an_upgrade() {
    let raw = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nframes";
    let upgrade = Asked {
        head_request: false,
        upgrade: true,
        pass: true,
    };
    let mut buf = BytesMut::from(raw);
    let h = parse(&mut buf, upgrade).unwrap().unwrap();
    assert!(h.upgraded && !h.keep_alive && h.raw.is_none());
    assert_eq!(h.parts.status, 101);
    assert_eq!(h.parts.headers["upgrade"], "websocket");
    assert_eq!(&buf[..], b"frames", "what follows is the new protocol's");
    assert!(head(raw, false).is_err());
}
