//! Server plumbing shared by every program: binding, the accept loop, the
//! per-connection HTTP/1.1 + h2c service (hyper-util's auto builder), the
//! request/connection counters, the `x-served-by` stamp, and the lifecycle of
//! a [`Server`] handle — graceful [`Server::shutdown`] and hard stop on drop.
//!
//! Every task a server starts (connection tasks, HTTP/2 stream tasks spawned
//! by hyper through [`TrackedExec`], upgraded WebSocket tasks) goes into one
//! tracked [`Tasks`] set, so stopping a server really stops all of its work.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Request;
use http::header::{HeaderName, HeaderValue};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::Kind;
use crate::respond::Resp;

/// How long [`Server::shutdown`] lets in-flight requests finish before it
/// aborts what is left. Short on purpose: tests shut upstreams down to
/// simulate outages and should not wait on a `/delay/600000`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Header naming the program that answered.
static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// A running server. Dropping it stops the server: the accept loop and every
/// connection task are aborted and the port is released.
#[must_use = "dropping a Server stops it"]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// The address the server listens on (with the real port if bound to 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` of the server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of HTTP requests received so far, counted when a request's
    /// head arrives (before it is answered). Always 0 for raw servers.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stop accepting (the port is closed when this returns), ask every
    /// connection to finish gracefully (idle keep-alive connections close at
    /// once, in-flight requests get up to one second), abort whatever is
    /// left, and wait until every task of this server has ended.
    pub async fn shutdown(mut self) {
        self.stop_tx.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            // Tasks may spawn tasks (h2 streams), so drain until the set
            // stays empty or the grace period is over.
            let mut set = self.shared.tasks.take();
            if set.is_empty() {
                break;
            }
            let drained = tokio::time::timeout_at(deadline, async {
                while set.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
        }
        let mut rest = self.shared.tasks.close();
        rest.abort_all();
        while rest.join_next().await.is_some() {}
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_tx.send_replace(true);
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.shared.tasks.close().abort_all();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .field("connections", &self.connections())
            .finish()
    }
}

/// State shared between a [`Server`] handle and its tasks.
pub(crate) struct Shared {
    requests: AtomicU64,
    connections: AtomicU64,
    /// Every task the server started.
    pub(crate) tasks: Tasks,
    /// Becomes `true` (or its sender is dropped) when the server stops.
    stop: watch::Receiver<bool>,
}

impl Shared {
    /// Resolves once the server is stopping (shutdown or drop).
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop.clone();
        // Err means the sender is gone, which also means "stop".
        let _ = stop.wait_for(|&s| s).await;
    }
}

/// A set of tracked tasks that can be closed: once closed, new spawns are
/// dropped instead of started, so nothing outlives the server.
pub(crate) struct Tasks {
    inner: Mutex<TaskSet>,
}

#[derive(Default)]
struct TaskSet {
    set: JoinSet<()>,
    closed: bool,
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, TaskSet> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start `fut` as a tracked task (dropped unstarted if the set is closed).
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut guard = self.lock();
        if guard.closed {
            return;
        }
        // Reap finished tasks so a long-running server's set stays small.
        while guard.set.try_join_next().is_some() {}
        guard.set.spawn(fut);
    }

    /// Take the tasks out for awaiting; new spawns go into a fresh set.
    fn take(&self) -> JoinSet<()> {
        std::mem::take(&mut self.lock().set)
    }

    /// Refuse further spawns and hand back what is still tracked.
    fn close(&self) -> JoinSet<()> {
        let mut guard = self.lock();
        guard.closed = true;
        std::mem::take(&mut guard.set)
    }
}

/// hyper executor that runs HTTP/2 stream tasks inside the server's tracked
/// task set instead of detached `tokio::spawn`s.
#[derive(Clone)]
struct TrackedExec(Arc<Shared>);

impl<F> hyper::rt::Executor<F> for TrackedExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.tasks.spawn(async move {
            let _ = fut.await;
        });
    }
}

/// Start the accept loop on `listener`; each accepted connection is counted
/// and handed to `on_conn` as a tracked task.
pub(crate) fn start<F, Fut>(listener: TcpListener, on_conn: F) -> std::io::Result<Server>
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        requests: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        tasks: Tasks {
            inner: Mutex::new(TaskSet::default()),
        },
        stop,
    });
    let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), on_conn));
    Ok(Server {
        addr,
        shared,
        stop_tx,
        accept: Some(accept),
    })
}

async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, on_conn: F)
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            biased;
            () = shared.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    shared.tasks.spawn(on_conn(stream, Arc::clone(&shared)));
                }
                // Typically EMFILE: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    // Dropping the listener here closes the port.
}

/// The per-server program state handed to every request.
pub(crate) struct App {
    pub(crate) kind: Kind,
    served_by: HeaderValue,
    /// Next id for `POST /api/orders` (per server, starting at 2001).
    pub(crate) next_order_id: AtomicU64,
}

/// Bind `addr` and serve `kind` over HTTP/1.1 and h2c.
pub(crate) async fn spawn_http(kind: Kind, addr: SocketAddr) -> std::io::Result<Server> {
    let served_by = HeaderValue::from_str(kind.label()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("server name {:?} is not a valid header value", kind.label()),
        )
    })?;
    let listener = TcpListener::bind(addr).await?;
    let app = Arc::new(App {
        kind,
        served_by,
        next_order_id: AtomicU64::new(2001),
    });
    start(listener, move |stream, shared| {
        serve_http(stream, shared, Arc::clone(&app))
    })
}

/// Serve one connection until it ends or the server stops; on stop, ask it
/// to finish gracefully (the server-side caller bounds how long).
async fn serve_http(stream: TcpStream, shared: Arc<Shared>, app: Arc<App>) {
    let builder = auto::Builder::new(TrackedExec(Arc::clone(&shared)));
    let svc_shared = Arc::clone(&shared);
    let service = service_fn(move |req: Request<Incoming>| {
        svc_shared.requests.fetch_add(1, Ordering::SeqCst);
        let app = Arc::clone(&app);
        let shared = Arc::clone(&svc_shared);
        async move { Ok::<_, Infallible>(dispatch(&app, &shared, req).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = shared.stopped() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Route a request to its program and stamp `x-served-by` on the answer.
async fn dispatch(app: &App, shared: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    let mut resp = match &app.kind {
        Kind::Test { name } => crate::test_backend::handle(name, shared, req).await,
        Kind::Monolith | Kind::Orders | Kind::Customers => crate::shop::handle(app, req).await,
    };
    resp.headers_mut()
        .insert(X_SERVED_BY.clone(), app.served_by.clone());
    resp
}
