//! legacy-stub: the programs that stand *behind* strangler. It owns the
//! public library API — [`Kind`], [`Server`], [`spawn`], [`spawn_local`] and
//! [`spawn_raw`] — that `strangler demo`, strangler's integration tests, the
//! benchmarks and the `legacy-stub` binary use to start, in-process, the fake
//! legacy monolith ("Tea & Co."), the two services extracted from it (orders
//! and customers), a generic echo/streaming test backend, or a raw TCP server
//! for misbehaving-upstream tests.
//!
//! Every server binds a real TCP socket (port 0 is fine), speaks HTTP/1.1 and
//! h2c on the same port, counts the connections and requests it receives, and
//! stops when its [`Server`] handle is dropped or shut down.

#![forbid(unsafe_code)]

mod catalog;
mod clock;
mod pattern;
mod raw;
mod respond;
mod server;
mod shop;
mod test_backend;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};

pub use raw::spawn_raw;
pub use server::Server;

/// Which program a server runs.
///
/// The label of a kind ([`Kind::label`]) is sent in the `x-served-by` header
/// of every response, which is how strangler's tests and the demo tell which
/// upstream answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The legacy online shop: HTML home page plus the orders, customers and
    /// inventory JSON APIs.
    Monolith,
    /// The extracted orders service: the orders API only, with one deliberate
    /// difference from the monolith (the `created_at` format).
    Orders,
    /// The extracted customers service: the customers API only, identical to
    /// the monolith's.
    Customers,
    /// The generic test backend (echo, status, delay, byte streams, resets,
    /// upload draining, WebSocket echo). `name` appears in `x-served-by` and
    /// in the echo JSON so tests can tell several test backends apart.
    Test {
        /// Name reported as `x-served-by` and as `"server"` in echo JSON.
        name: String,
    },
}

impl Kind {
    /// The name this kind answers with in `x-served-by`: `"legacy"`,
    /// `"orders"`, `"customers"`, or the test backend's name.
    pub fn label(&self) -> &str {
        match self {
            Kind::Monolith => "legacy",
            Kind::Orders => "orders",
            Kind::Customers => "customers",
            Kind::Test { name } => name,
        }
    }
}

/// Bind `addr` (port 0 allowed) and serve `kind` on it, HTTP/1.1 and h2c.
///
/// Returns once the socket is listening, so the caller can send requests to
/// [`Server::addr`] immediately. Fails with `InvalidInput` if the kind's label
/// (a test backend's name) cannot be sent as an HTTP header value.
pub async fn spawn(kind: Kind, addr: SocketAddr) -> std::io::Result<Server> {
    server::spawn_http(kind, addr).await
}

/// Shorthand for [`spawn`] on `127.0.0.1:0` (an ephemeral loopback port).
pub async fn spawn_local(kind: Kind) -> std::io::Result<Server> {
    spawn(kind, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}
