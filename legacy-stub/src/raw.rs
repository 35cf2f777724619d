//! Raw TCP servers for misbehaving-upstream tests: strangler's tests need
//! upstreams that send garbage, hang up after the headers, never answer, and
//! so on. [`spawn_raw`] hands each accepted socket to a test-supplied
//! handler and gives it the same [`Server`] lifecycle (counters, shutdown,
//! stop-on-drop) as the HTTP programs.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

use crate::server::{self, Server};

/// A raw TCP server on `127.0.0.1:0`: each accepted connection is handed to
/// `handler` as its own tracked task.
///
/// [`Server::connections`] counts accepts; [`Server::requests`] stays 0
/// (nothing here parses HTTP). When the server stops, running handlers are
/// dropped at once (closing their sockets) — they have no graceful protocol.
pub async fn spawn_raw<F, Fut>(handler: F) -> std::io::Result<Server>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    server::start(listener, move |stream, shared| {
        let conn = handler(stream);
        async move {
            tokio::select! {
                () = conn => {}
                () = shared.stopped() => {}
            }
        }
    })
}
