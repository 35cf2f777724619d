//! The test backend's WebSocket echo at `/ws`: the server half of the
//! HTTP/1.1 upgrade handshake (RFC 6455 §4.2) done by hand on top of hyper,
//! then tokio-tungstenite on the upgraded connection echoing every text and
//! binary message until the peer closes. strangler's tests use it to prove
//! that upgrades are tunnelled through the proxy.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::respond::{self, Resp};
use crate::server::Shared;

/// Whether a comma-separated header (e.g. `Connection: keep-alive, Upgrade`)
/// contains `token`, case-insensitively, in any of its occurrences.
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Answer a request to `/ws`: 101 and an echo task for a valid WebSocket
/// upgrade, 426 (with `upgrade: websocket`) for anything else.
pub(crate) fn accept(shared: &Arc<Shared>, mut req: Request<Incoming>) -> Resp {
    let headers = req.headers();
    let is_upgrade = req.method() == Method::GET
        && has_token(headers, UPGRADE, "websocket")
        && has_token(headers, CONNECTION, "upgrade")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec());
    let (true, Some(key)) = (is_upgrade, key) else {
        let mut resp = respond::json(
            StatusCode::UPGRADE_REQUIRED,
            &json!({"error": "this endpoint needs a WebSocket upgrade (HTTP/1.1, version 13)"}),
        );
        resp.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return resp;
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = Arc::clone(shared);
    shared.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(m)) if m.is_text() || m.is_binary() => {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    // Ping/pong and the close reply are handled by tungstenite.
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                () = task_shared.stopped() => {
                    let _ = ws.close(None).await;
                    break;
                }
            }
        }
    });

    let mut resp = respond::status_only(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(&key)) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}
