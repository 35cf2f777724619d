//! Accepting client connections: listeners, the connection limit, HTTP/1.1
//! and h2c (prior knowledge) on the same port, and graceful shutdown. Knows no
//! routes: every request goes to [`Proxy::handle`].

pub mod conn;
pub mod h1_guard;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::proxy::{Downstream, Proxy};
use conn::{ClientIo, ConnShared, Timeouts};

/// Largest request head accepted; hyper answers 431 beyond it (SPEC 3.2).
pub const MAX_HEAD_BYTES: usize = h1_guard::MAX_HEAD;

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

/// The HTTP settings every client connection is served with.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // Heads past 64 KiB fill the buffer and get 431.
        .max_buf_size(MAX_HEAD_BYTES)
        // Header and idle timeouts are ClientIo's: hyper's would also cut
        // kept-alive connections that are merely idle.
        .header_read_timeout(None)
        .writev(false)
        .timer(TokioTimer::new());
    b.http2()
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .timer(TokioTimer::new());
    b
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
    let builder = Arc::new(http_builder());
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(
            listener,
            proxy.clone(),
            builder.clone(),
            open.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accepting.join_next().await.is_some() {}
    let drain = proxy.snapshot().config.server.drain_timeout;
    tracing::info!(
        connections = open.count(),
        drain_timeout_s = drain.as_secs_f64(),
        "shutting down: no new connections; finishing requests in flight"
    );
    if tokio::time::timeout(drain, open.all_closed())
        .await
        .is_err()
    {
        tracing::warn!("drain_timeout passed with requests still in flight; closing them");
    }
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
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
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = proxy.snapshot();
        let server = &snap.config.server;
        if open.count() >= server.max_connections {
            tracing::warn!(client = %remote, limit = server.max_connections, "max_connections reached; closing new connection");
            drop(stream);
            continue;
        }
        open.opened();
        let _ = stream.set_nodelay(true);
        let shared = Arc::new(ConnShared::default());
        let io = ClientIo::new(
            stream,
            shared.clone(),
            Timeouts {
                header_read: server.header_read_timeout,
                idle: server.idle_timeout,
            },
        );
        let down = Arc::new(Downstream {
            remote,
            client_ip: crate::proxy::headers::client_ip_value(remote.ip()),
            scheme: "http",
            shared,
        });
        let proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            let down = down.clone();
            // Boxed: the journey's future is a few KiB, and hyper moves the
            // service future around; a pointer is cheaper to move.
            Box::pin(async move { Ok::<_, Infallible>(proxy.handle(req, &down).await) })
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let open = open.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut stop) => {
                    // Finish what is in flight, close when idle (HTTP/2: GOAWAY).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(client = %remote, error = %e, "client connection ended with an error");
            }
            open.closed();
        });
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
