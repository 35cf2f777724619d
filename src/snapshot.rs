//! The compiled, immutable form of a config that requests run on: router,
//! upstream pools and the upstream client. A reload builds a new snapshot and
//! swaps it in whole; a request keeps the snapshot it started with until its
//! response is done.

use std::sync::Arc;

use crate::client::{self, HttpClient};
use crate::config::Config;
use crate::router::Router;
use crate::upstream::{Pool, Registry};

pub struct Snapshot {
    pub config: Config,
    pub router: Router,
    /// Same order as `config.upstreams`.
    pub pools: Vec<Arc<Pool>>,
    pub client: HttpClient,
}

impl Snapshot {
    /// Compiles `config`. The upstream client (and its pooled connections) is
    /// taken over from `previous` when the connect timeout did not change.
    pub fn build(config: Config, registry: &Registry, previous: Option<&Snapshot>) -> Snapshot {
        let router = Router::new(
            config
                .routes
                .iter()
                .map(|r| (r.pattern.clone(), r.conditions.clone())),
        );
        let pools = config
            .upstreams
            .iter()
            .map(|u| Arc::new(Pool::new(u, registry)))
            .collect();
        let client = match previous {
            Some(p) if p.config.server.connect_timeout == config.server.connect_timeout => {
                p.client.clone()
            }
            _ => client::build(config.server.connect_timeout),
        };
        Snapshot {
            config,
            router,
            pools,
            client,
        }
    }
}
