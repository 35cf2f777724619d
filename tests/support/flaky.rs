//! A hand-written upstream whose answers a test switches while it runs: the
//! status of `/health` (or no answer at all), the status of every other path,
//! and a record of the requests it got. Each answer closes its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `health` value that makes `/health` never answer (a probe times out).
pub const HANG: u16 = 0;

/// What the upstream answers, and what it saw.
#[derive(Debug)]
pub struct State {
    pub name: String,
    /// Status of `/health`; [`HANG`] holds the connection without answering.
    pub health: AtomicU16,
    /// Status of every other path.
    pub answer: AtomicU16,
    /// Requests to paths other than `/health`.
    pub requests: AtomicU64,
    /// Requests to `/health`.
    pub probes: AtomicU64,
    /// Method and body of each request to another path, in order.
    pub seen: Mutex<Vec<(String, Vec<u8>)>>,
}

impl State {
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    pub fn set_answer(&self, status: u16) {
        self.answer.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A running flaky upstream; stops when dropped.
pub struct Flaky {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl std::ops::Deref for Flaky {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an upstream named `name` (sent as `x-served-by`) that answers 200
/// everywhere.
pub async fn flaky(name: &str) -> Flaky {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State {
        name: name.to_owned(),
        health: AtomicU16::new(200),
        answer: AtomicU16::new(200),
        requests: AtomicU64::new(0),
        probes: AtomicU64::new(0),
        seen: Mutex::new(Vec::new()),
    });
    let st = state.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, st.clone()));
        }
    });
    Flaky { addr, state, task }
}

async fn serve(mut s: TcpStream, st: Arc<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let status = if path == "/health" {
        st.probes.fetch_add(1, Ordering::SeqCst);
        let status = st.health.load(Ordering::SeqCst);
        if status == HANG {
            let _held = s;
            std::future::pending::<()>().await;
            return;
        }
        status
    } else {
        st.requests.fetch_add(1, Ordering::SeqCst);
        st.seen.lock().unwrap().push((method, body));
        st.answer.load(Ordering::SeqCst)
    };
    let answer = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\nx-served-by: {name}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n{name}",
        name = st.name,
        len = st.name.len(),
    );
    let _ = s.write_all(answer.as_bytes()).await;
    let _ = s.shutdown().await;
}
