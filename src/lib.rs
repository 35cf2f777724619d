//! strangler: a reverse proxy for strangler-fig migrations.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod path;
pub mod proxy;
pub mod report;
pub mod router;
pub mod run;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod upstream;
