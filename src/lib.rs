//! strangler: a reverse proxy for strangler-fig migrations.
#![forbid(unsafe_code)]

pub mod config;
pub mod path;
pub mod router;
pub mod server;
