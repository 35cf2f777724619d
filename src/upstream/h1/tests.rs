use super::*;

fn head(raw: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    parse_head(&mut BytesMut::from(raw), head_request)
}

#[test]
fn encodes_bodiless_requests() {
    let req = Request::get("http://u:1/a/b?x=1")
        .header("host", "shop")
        .header("x-request-id", "abc")
        .body(())
        .unwrap();
    let mut out = Vec::new();
    encode_head(&req, &mut out);
    assert_eq!(
        out,
        b"GET /a/b?x=1 HTTP/1.1\r\nhost: shop\r\nx-request-id: abc\r\n\r\n"
    );
    let post = Request::post("http://u:1/").body(()).unwrap();
    out.clear();
    encode_head(&post, &mut out);
    assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
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
        Ok(Some((Framing::Done, true)))
    );
    assert_eq!(
        f("HTTP/1.1 204 No Content\r\n\r\n", false),
        Ok(Some((Framing::Done, true)))
    );
    assert_eq!(
        f(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false
        ),
        Ok(Some((Framing::Chunked(Chunk::START), true)))
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
    ] {
        assert!(f(bad, false).is_err(), "{bad}");
    }
}

#[test]
fn interim_answers_are_skipped_and_values_kept() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc",
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
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
