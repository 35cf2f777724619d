//! Config: the file is parsed, validated and turned into typed settings here;
//! [`crate::snapshot`] compiles those into what the hot path runs on.
//!
//! Every problem carries `FILE:LINE:COL`, and all of them are reported at once.
//! Unknown keys are errors: a typo must never be silently ignored.

mod compose;
pub mod diff;
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
pub use compose::{Compose, Leg, Merge};
pub use diff::ConfigDiff;
pub use reader::suggestion;
pub use source::{ConfigError, Located, SourceFile};

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file name as given, for messages.
    pub file: String,
    /// The file it was read from, when it was: reloads re-read it, and the
    /// ramp keeps its position next to it. `None` for text parsed in memory.
    pub path: Option<std::path::PathBuf>,
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
    /// Active health checks; `None`: targets are never probed.
    pub health: Option<Health>,
    /// Passive ejection of a target that keeps failing; `None`: never ejected.
    pub eject: Option<Eject>,
    /// Further attempts on other targets for an idempotent request that could
    /// not connect or was answered 502/503 (0 = none).
    pub retries: u32,
}

/// `health = { path, interval, timeout, unhealthy_after, healthy_after }`.
/// Defaults are SPEC section 2's example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Probed with `GET`; starts with `/`. Default `/health`.
    pub path: String,
    /// Time between the starts of two probes of a target. Default 2s.
    pub interval: Duration,
    /// A probe without a 2xx head within this failed; at most `interval`. Default 1s.
    pub timeout: Duration,
    /// Failed probes in a row that take a target out. Default 2.
    pub unhealthy_after: u32,
    /// Good probes in a row that bring a down target back. Default 1.
    pub healthy_after: u32,
}

impl std::default::Default for Health {
    fn default() -> Self {
        Health {
            path: "/health".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// `eject = { consecutive_failures, for }`. Defaults are SPEC section 2's example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eject {
    /// Failed requests in a row that eject a target. Default 5.
    pub consecutive_failures: u32,
    /// How long an ejected target is skipped. Default 30s.
    pub duration: Duration,
}

impl std::default::Default for Eject {
    fn default() -> Self {
        Eject {
            consecutive_failures: 5,
            duration: Duration::from_secs(30),
        }
    }
}

/// The most `retries` an upstream may have: each is a further request to
/// the upstream, and the budget caps them at a fifth of the traffic anyway.
pub const MAX_RETRIES: u32 = 10;

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
    /// Index into [`Config::upstreams`]; `None` exactly when the route is composed.
    pub upstream: Option<usize>,
    /// The legs that answer a composed route (SPEC 2.5).
    pub compose: Option<Compose>,
    pub path_map: PathMap,
    /// Overrides `server.request_timeout`.
    pub timeout: Option<Duration>,
    /// Part of the traffic moved to another upstream (SPEC 2.2).
    pub shift: Option<Shift>,
    /// Where a failed request is replayed (SPEC 2.3): index into [`Config::upstreams`].
    pub fallback: Option<usize>,
    /// The answers that count as failures for `fallback`; default 502, 503, 504.
    pub fallback_on: Vec<u16>,
    /// Copies of requests sent to another upstream and compared (SPEC 2.4).
    pub shadow: Option<Shadow>,
    /// Where the route starts in the file (1-based line), for messages.
    pub line: usize,
}

/// `shift = { to, percent, sticky, force_header, ramp }` on a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// Index into [`Config::upstreams`]: the new side.
    pub to: usize,
    /// The file's share for `to`, in hundredths of a percent (0..=10000), the
    /// same unit as the sticky buckets.
    pub basis_points: u16,
    pub sticky: Option<Sticky>,
    /// A request carrying this header with one side's upstream name goes there.
    pub force_header: Option<http::HeaderName>,
    pub ramp: Option<Ramp>,
}

/// What identifies a user for sticky shifting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    Cookie(String),
    Header(http::HeaderName),
    Query(String),
    Ip,
}

impl std::fmt::Display for Sticky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sticky::Cookie(n) => write!(f, "cookie:{n}"),
            Sticky::Header(n) => write!(f, "header:{n}"),
            Sticky::Query(n) => write!(f, "query:{n}"),
            Sticky::Ip => f.write_str("ip"),
        }
    }
}

/// `ramp = { step, every, max_error_rate, max_latency_ratio, min_requests,
/// max_mismatch_rate }`: the automatic raise of a shift, and when to stop it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    /// Added to the share at each step, in hundredths of a percent (> 0).
    pub step_basis_points: u16,
    pub every: Duration,
    /// Highest share of 5xx answers and failures on the new side.
    pub max_error_rate: f64,
    /// Highest new-side p99 as a multiple of the old side's.
    pub max_latency_ratio: f64,
    /// Fewer new-side requests in a window: no step (and no verdict).
    pub min_requests: u64,
    /// Highest shadow mismatch rate, when the route shadows to the same service.
    pub max_mismatch_rate: f64,
}

impl std::default::Default for Ramp {
    fn default() -> Self {
        Ramp {
            step_basis_points: 1000,
            every: Duration::from_secs(600),
            max_error_rate: 0.01,
            max_latency_ratio: 2.0,
            min_requests: 100,
            max_mismatch_rate: 0.02,
        }
    }
}

/// `shadow = { to, percent, methods, ignore, compare_headers, calibrate }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// Index into [`Config::upstreams`]: the service being verified.
    pub to: usize,
    /// Share of the route's requests copied, in hundredths of a percent.
    pub basis_points: u16,
    /// Methods copied; default GET, HEAD, OPTIONS (safe to send twice).
    pub methods: Vec<http::Method>,
    /// JSON pointers left out of the comparison.
    pub ignore: crate::shadow::compare::Ignore,
    /// Headers compared besides `content-type`.
    pub compare_headers: Vec<http::HeaderName>,
    /// Share of copied requests also sent to the primary a second time, to
    /// learn which fields differ anyway (noise), in hundredths of a percent.
    pub calibrate_basis_points: u16,
}

impl Shadow {
    /// `shadow→customers 100%`: the route table's note (SPEC 1.1).
    pub fn summary(&self, upstreams: &[Upstream]) -> String {
        format!(
            "shadow→{} {}%",
            upstreams[self.to].name,
            percent_text(self.basis_points)
        )
    }
}

/// Hundredths of a percent as the percent an operator writes: `1050` → `"10.5"`.
pub fn percent_text(basis_points: u16) -> String {
    let whole = basis_points / 100;
    match basis_points % 100 {
        0 => whole.to_string(),
        frac if frac % 10 == 0 => format!("{whole}.{}", frac / 10),
        frac => format!("{whole}.{frac:02}"),
    }
}

/// Hundredths of a percent as a number, for log fields: `1050` → `10.5`.
pub fn percent_number(basis_points: u16) -> f64 {
    f64::from(basis_points) / 100.0
}

/// `fallback_on` when the file does not say.
pub const DEFAULT_FALLBACK_ON: [u16; 3] = [502, 503, 504];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = SourceFile::read(path)?;
        let mut config = Config::parse(&src)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
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
