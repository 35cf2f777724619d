//! Accepting client connections: listeners, the connection limit, HTTP/1.x
//! and h2c (prior knowledge) on the same port, and graceful shutdown. Knows no
//! routes: every request goes to [`Proxy::handle`].
//!
//! The first bytes tell the protocol: the HTTP/2 preface goes to hyper's
//! HTTP/2 server, anything else to the [`h1`] server on the project's one
//! HTTP/1 codec.

pub mod conn;
pub mod h1;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::proxy::body::Inbound;
use crate::proxy::{Downstream, Proxy};
use conn::{ClientIo, ConnShared, Timeouts};

/// Largest request head accepted: 431 beyond it (SPEC 3.2).
pub const MAX_HEAD_BYTES: usize = crate::http1::MAX_HEAD;

/// Binds every address, or fails naming the one that could not be bound.
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        out.push(l);
    }
    Ok(out)
}

/// HTTP/2 with prior knowledge starts with this (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most streams a client may have open at once on one HTTP/2 connection
/// (what hyper and nginx default to, near enough).
const H2_MAX_STREAMS: u32 = 128;
/// Streams a client may reset before the proxy has even taken them: past
/// this, the connection gets GOAWAY (rapid reset, CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the proxy may have to reset for a client's errors before it
/// answers GOAWAY.
const H2_MAX_LOCAL_RESETS: usize = 1024;

/// The HTTP/2 settings every h2c connection is served with.
fn h2_builder() -> http2::Builder<TokioExecutor> {
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .timer(TokioTimer::new());
    h2
}

/// Reads the connection's first bytes until they tell the protocol: true
/// when they are the HTTP/2 preface, false for anything else (HTTP/1.x),
/// with what was read, for the chosen server to start from. Each read waits
/// for the socket to be readable: a client that sends a byte and stalls
/// costs nothing, and `header_read_timeout` (the connection's head phase)
/// cuts it off.
async fn opens_with_h2_preface(io: &mut ClientIo) -> io::Result<(bool, BytesMut)> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok((false, buf));
        }
        if n == H2_PREFACE.len() {
            return Ok((true, buf));
        }
    }
}

/// A served connection that can be asked to finish gracefully.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Drives `conn` to its end; on shutdown, or once the connection has been
/// idle for `idle_timeout` (`shared`), lets it finish what is in flight and
/// close when idle (HTTP/2: GOAWAY).
///
/// The connection task is polled several times per request. Polling the stop
/// signal each time would re-register its waker under a lock, so it is polled
/// once to register, and again only when the signal has changed (an atomic
/// read of a second receiver); the registration wakes the task on shutdown.
async fn drive(
    conn: impl Graceful,
    stop: &mut watch::Receiver<bool>,
    shared: &ConnShared,
) -> hyper::Result<()> {
    let changed = stop.clone();
    let stopping = stopped(stop);
    tokio::pin!(conn, stopping);
    let mut armed = false;
    let ended = std::future::poll_fn(|cx| {
        if !armed || changed.has_changed().unwrap_or(true) {
            armed = true;
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        let polled = conn.as_mut().poll(cx).map(Some);
        if polled.is_pending() && shared.idle_expired() {
            return Poll::Ready(None);
        }
        polled
    })
    .await;
    match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Serves client connections on `listeners` until `shutdown` resolves, then
/// stops accepting, lets requests in flight finish for up to the config's
/// `drain_timeout`, and returns.
pub async fn serve(
    listeners: Vec<TcpListener>,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(Open::default());
    let builders = Arc::new(h2_builder());
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(
            listener,
            proxy.clone(),
            builders.clone(),
            open.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accepting.join_next().await.is_some() {}
    let drain = proxy.snapshot().config.server.drain_timeout;
    tracing::info!(
        event = "drain",
        connections = open.count(),
        drain_timeout_s = drain.as_secs_f64(),
        "shutting down: no new connections; finishing requests in flight"
    );
    if tokio::time::timeout(drain, open.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "drain_timeout",
            "drain_timeout passed with requests still in flight; closing them"
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    builders: Arc<http2::Builder<TokioExecutor>>,
    open: Arc<Open>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(event = "accept_failed", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = proxy.snapshot();
        let server = &snap.config.server;
        if open.count() >= server.max_connections {
            tracing::warn!(event = "max_connections", client = %remote, limit = server.max_connections, "max_connections reached; closing new connection");
            drop(stream);
            continue;
        }
        open.opened();
        let timeouts = Timeouts {
            header_read: server.header_read_timeout,
            idle: server.idle_timeout,
        };
        let guard = OpenGuard(open.clone());
        tokio::spawn(serve_connection(
            stream,
            remote,
            proxy.clone(),
            builders.clone(),
            timeouts,
            stop.clone(),
            guard,
        ));
    }
}

/// Serves one client connection, HTTP/1.x or h2c, until it ends.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    proxy: Arc<Proxy>,
    h2: Arc<http2::Builder<TokioExecutor>>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    _open: OpenGuard,
) {
    let accepted = tokio::time::Instant::now();
    let _ = stream.set_nodelay(true);
    let shared = Arc::new(ConnShared::default());
    // The first bytes must arrive within header_read_timeout, like the rest of the head.
    let mut client = ClientIo::new(stream, shared.clone(), timeouts, accepted);
    let Ok((http2, read)) = opens_with_h2_preface(&mut client).await else {
        return;
    };
    let down = Arc::new(Downstream {
        remote,
        client_ip: crate::proxy::headers::client_ip_value(remote.ip()),
        scheme: "http",
        shared,
    });
    if !http2 {
        h1::serve(&mut client, read, &proxy, &down, &mut stop).await;
        let _ = client.shutdown().await;
        return;
    }
    client.serve_http2(read);
    let conn_state = down.shared.clone();
    let io = TokioIo::new(client);
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let down = down.clone();
        async move {
            Ok::<_, Infallible>(
                proxy
                    .handle(req.map(|b| Inbound::H2(Box::new(b))), &down)
                    .await,
            )
        }
    });
    if let Err(e) = drive(h2.serve_connection(io, service), &mut stop, &conn_state).await {
        tracing::debug!(client = %remote, error = %e, "client connection ended with an error");
    }
}

/// Counts a connection as open until dropped, however its task ends.
struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// Resolves once shutdown has been signalled.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, which also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

/// Open client connections, and a way to wait until there are none.
#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    none_left: Notify,
}

impl Open {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn opened(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn closed(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.none_left.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}
