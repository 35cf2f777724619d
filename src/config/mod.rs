//! Config: the file is parsed, validated and turned into typed settings here;
//! [`crate::snapshot`] compiles those into what the hot path runs on.
//!
//! Every problem carries `FILE:LINE:COL`, and all of them are reported at once.
//! Unknown keys are errors: a typo must never be silently ignored.

mod parse;
mod reader;
mod route;
pub mod source;
pub mod units;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::HeaderValue;
use http::uri::Authority;

use crate::router::{Conditions, PathMap, Pattern};
pub use source::{ConfigError, Located, SourceFile};

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file name as given, for messages.
    pub file: String,
    pub server: Server,
    /// In file order; routes refer to them by index.
    pub upstreams: Vec<Upstream>,
    /// Where unmatched requests go; `None` answers them 404.
    pub default: Option<Default>,
    /// In file order (the order that breaks ties between equal patterns).
    pub routes: Vec<Route>,
    /// Things that are valid but probably not what was meant.
    pub warnings: Vec<Located>,
}

/// `[server]`. Defaults are SPEC section 2's.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    /// Admin API listener; `None` disables it.
    pub admin: Option<SocketAddr>,
    /// Bearer token for admin writes; required when `admin` is not on loopback.
    pub admin_token: Option<String>,
    pub connect_timeout: Duration,
    /// Until the upstream's response headers arrive.
    pub request_timeout: Duration,
    /// How long a client connection may sit with no request in flight.
    pub idle_timeout: Duration,
    /// The whole request head must arrive within this, counted from accept (or,
    /// on a kept-alive connection, from the first byte of the next request).
    pub header_read_timeout: Duration,
    pub max_request_body: u64,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub merge_slashes: bool,
    /// Runtime worker threads; `None` = one per CPU. (An addition to SPEC.)
    pub workers: Option<usize>,
}

impl std::default::Default for Server {
    fn default() -> Self {
        Server {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
            admin: None,
            admin_token: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_request_body: 16 << 20,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            merge_slashes: true,
            workers: None,
        }
    }
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    pub balance: Balance,
    /// Host header sent upstream; `None` keeps the client's.
    pub host: Option<HeaderValue>,
}

/// One `scheme://host:port` of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Canonical form, `http://host:port`; also the key runtime state is kept under.
    pub url: String,
    pub authority: Authority,
}

/// How requests are spread over an upstream's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, std::default::Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequest => "least_request",
            Balance::Random => "random",
        }
    }
}

/// `[default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Default {
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique; defaults to the pattern as written.
    pub name: String,
    pub pattern: Pattern,
    pub conditions: Conditions,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub path_map: PathMap,
    /// Overrides `server.request_timeout`.
    pub timeout: Option<Duration>,
    /// Where the route starts in the file (1-based line), for messages.
    pub line: usize,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = SourceFile::read(path)?;
        Config::parse(&src)
    }

    /// Validates config text; `src.name()` is used in messages.
    pub fn parse(src: &SourceFile) -> Result<Config, ConfigError> {
        parse::parse(src)
    }

    pub fn upstream(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests;
