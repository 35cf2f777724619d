//! Connections to upstream targets, kept alive and reused.
//!
//! An upstream HTTP/1.1 connection is a hyper client connection driven by the
//! request that is using it, not by a task of its own: the request's future
//! polls it while waiting for the response head, and the response body polls
//! it while streaming. That saves a task hand-off and two cross-task wake-ups
//! per request compared with a connection task. Between requests the
//! connection rests in its target's idle list; whoever takes it next first
//! checks that the upstream has not closed it meanwhile.
//!
//! Upgrade requests (WebSocket) get a fresh connection with a task of its own,
//! because after `101` the connection must outlive the request.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::body::RequestBody;

type Io = TokioIo<TcpStream>;
type Conn = http1::Connection<Io, RequestBody>;

/// Idle connections kept per target: enough for bursts of a few hundred
/// concurrent requests without reconnecting, bounded so a spike does not leave
/// thousands of sockets open afterwards.
pub const MAX_IDLE_PER_TARGET: usize = 256;
/// How long an idle connection is kept. Below the 60 s that common backends
/// (nginx, Node) keep idle connections, so the proxy closes first and rarely
/// sends on a connection the upstream is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// A target's idle connections.
#[derive(Default)]
pub struct IdleList(Mutex<Vec<Idle>>);

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    conn: Box<Conn>,
    since: Instant,
}

impl IdleList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection the upstream has not closed, if one is idle.
    fn take(&self) -> Option<Active> {
        loop {
            let mut idle = self.lock().pop()?;
            let idle_for = idle.since.elapsed();
            if idle_for >= IDLE_TIMEOUT || !still_open(&mut idle) {
                continue;
            }
            return Some(Active {
                sender: idle.sender,
                conn: idle.conn,
                idle_for: Some(idle_for),
            });
        }
    }

    fn put(&self, sender: http1::SendRequest<RequestBody>, conn: Box<Conn>) {
        let mut list = self.lock();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                sender,
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Drops connections idle for longer than [`IDLE_TIMEOUT`].
    pub fn sweep(&self) {
        self.lock().retain(|i| i.since.elapsed() < IDLE_TIMEOUT);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for IdleList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdleList({})", self.len())
    }
}

/// Lets hyper notice a close or stray bytes that arrived while the connection
/// sat idle, without waiting.
fn still_open(idle: &mut Idle) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut idle.conn).poll(&mut cx) {
        Poll::Ready(_) => false,
        Poll::Pending => idle.sender.is_ready(),
    }
}

/// True for the errors of a connection the upstream closed or reset before
/// answering: what a kept-alive connection does when the upstream's idle
/// timeout fires just as a request is sent on it.
pub fn is_stale_connection(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        cur = err.source();
    }
    false
}

/// Why no response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Exchange(#[from] super::h1::ExchangeError),
}

impl From<super::h1::ConnectError> for SendError {
    fn from(e: super::h1::ConnectError) -> Self {
        match e {
            super::h1::ConnectError::Refused(e) => SendError::Connect(e),
            super::h1::ConnectError::TimedOut => SendError::ConnectTimeout,
        }
    }
}

/// A connection in use by one request.
pub struct Active {
    sender: http1::SendRequest<RequestBody>,
    conn: Box<Conn>,
    /// How long it sat in the idle list; `None` for a new connection. A
    /// failure on a reused connection may just mean the upstream closed it.
    idle_for: Option<Duration>,
}

/// Opens a new connection (bounded by `timeout`) and does the HTTP/1.1 handshake.
async fn open(
    authority: &str,
    timeout: Duration,
) -> Result<(http1::SendRequest<RequestBody>, Conn), SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(SendError::Connect(e)),
        Err(_) => return Err(SendError::ConnectTimeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?)
}

/// A connection to `authority`: an idle one when there is one, else a new one.
pub async fn checkout(
    idle: &IdleList,
    authority: &str,
    connect_timeout: Duration,
) -> Result<Active, SendError> {
    match idle.take() {
        Some(active) => Ok(active),
        None => connect(authority, connect_timeout).await,
    }
}

/// A new connection to `authority`.
pub async fn connect(authority: &str, connect_timeout: Duration) -> Result<Active, SendError> {
    let (sender, conn) = open(authority, connect_timeout).await?;
    Ok(Active {
        sender,
        // Boxed: the connection is large and moves between the idle list,
        // the request and the response body.
        conn: Box::new(conn),
        idle_for: None,
    })
}

/// Sends an upgrade request on a fresh connection with a task of its own.
pub async fn send_upgrade(
    authority: &str,
    connect_timeout: Duration,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, SendError> {
    let (mut sender, conn) = open(authority, connect_timeout).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgraded upstream connection ended with an error");
        }
    });
    Ok(sender.send_request(req).await?)
}

impl Active {
    pub fn reused(&self) -> bool {
        self.idle_for.is_some()
    }

    /// How long the connection sat idle before this request, if it was reused.
    pub fn idle_for(&self) -> Option<Duration> {
        self.idle_for
    }

    /// Sends `req` and drives the connection until the response head arrives.
    /// When the request could not even be handed to the connection (it had
    /// closed), the error carries the request back so it can go elsewhere.
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        let conn = &mut self.conn;
        let mut conn_done = false;
        poll_fn(|cx| {
            if let Poll::Ready(r) = response.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if !conn_done && Pin::new(&mut *conn).poll(cx).is_ready() {
                // The connection ended; hyper has handed the pending request
                // its error, which the next poll of `response` returns.
                conn_done = true;
                return response.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }

    /// The connection, to be driven by the response body from now on.
    pub fn into_driver(self, home: super::Home) -> Driver {
        Driver {
            sender: self.sender,
            conn: self.conn,
            home,
            finished: false,
        }
    }
}

/// Drives an upstream connection while its response body streams, and puts
/// it back in the idle list when the body has ended cleanly.
pub struct Driver {
    sender: http1::SendRequest<RequestBody>,
    conn: Box<Conn>,
    home: super::Home,
    finished: bool,
}

impl Driver {
    /// Lets the connection read and write; the body's data arrives through it.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.finished && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.finished = true;
        }
    }

    /// The body ended cleanly: keep the connection if it can take another request.
    pub fn release(mut self, cx: &mut Context<'_>) {
        self.drive(cx);
        if !self.finished && self.sender.is_ready() {
            self.home.kept().hyper.put(self.sender, self.conn);
        }
    }
}
