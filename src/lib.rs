//! strangler: a reverse proxy for strangler-fig migrations.
//!
//! A request's journey, and the module that owns each step:
//!
//! | step | module |
//! |---|---|
//! | accept the connection; limits, client timeouts; HTTP/1 on the codec, HTTP/2 on hyper | [`server`] |
//! | the journey itself, phase by phase | [`proxy`] |
//! | normalize the path | [`path`] |
//! | match a route | [`router`] |
//! | pick a side: a shifted route's share and sticky users | [`shift`] |
//! | answer a composed route from several legs | [`compose`] |
//! | replay a failed request on the route's fallback | [`fallback`] |
//! | copy it to a shadow and compare the answers | [`shadow`] |
//! | pick a target, reuse a kept-alive connection | [`upstream`] |
//!
//! Around it:
//!
//! - [`config`] reads the TOML file (every error with `FILE:LINE:COL`), and
//!   [`snapshot`] compiles it into the immutable form requests run on; a
//!   reload swaps snapshots whole.
//! - [`run`] binds listeners and serves until a signal, then drains;
//!   [`admin`] is the operators' listener (its dashboard included), and
//!   [`metrics`] the families its `/metrics` shows; [`traffic`] counts what
//!   each route sent to each upstream, for both.
//! - [`http1`] is the one HTTP/1 codec: heads, bodies (length, chunked,
//!   until close) and keep-alive rules, for the server and the upstream
//!   client alike.
//! - [`reload`] re-reads the file on SIGHUP, on change and on `POST
//!   /admin/reload`, and says what changed; [`edit`] is `strangler shift`,
//!   which changes one number in the file.
//! - [`shadow`] mirrors copies of requests to the service being verified and
//!   compares its answers with the primary's, on a low-priority thread of
//!   its own.
//! - [`report`] prints what `check` and `explain` show; [`demo`] starts the
//!   bundled monolith and services; [`telemetry`] sets up logging.
#![forbid(unsafe_code)]

pub mod admin;
pub mod compose;
pub mod config;
pub mod demo;
pub mod edit;
pub mod fallback;
pub mod http1;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod router;
pub mod run;
pub mod server;
pub mod shadow;
pub mod shift;
pub mod snapshot;
pub mod telemetry;
pub mod traffic;
pub mod upstream;
