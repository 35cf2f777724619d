//! The compiled, immutable form of a config that requests run on: the router,
//! the upstream pools and, per route, the runtime state a shift steers by. A reload builds a new snapshot and swaps it in
//! whole; a request keeps the snapshot it started with until its response is
//! done.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::router::Router;
use crate::shadow::report::Report;
use crate::shift::state::{ShiftState, ShiftStates};
use crate::traffic::{Table, Traffic};
use crate::upstream::{Pool, Registry};

pub struct Snapshot {
    pub config: Config,
    pub router: Router,
    /// Same order as `config.upstreams`.
    pub pools: Vec<Arc<Pool>>,
    /// Same order as `config.routes`: the shift state of each route that shifts.
    pub shifts: Vec<Option<Arc<ShiftState>>>,
    /// Same order as `config.routes`: the shadow report of each route that
    /// shadows, so a mirrored request records without a lookup or a lock.
    pub shadows: Vec<Option<Arc<Report>>>,
    /// Where each (route, upstream) pair's requests are counted.
    pub traffic: Table,
}

impl Snapshot {
    /// Compiles `config`. Targets the registry already knows keep their
    /// counters and idle connections; kept shifted routes keep their share
    /// and ramp.
    pub fn build(
        config: Config,
        registry: &Registry,
        shifts: &ShiftStates,
        mut shadowed: HashMap<String, Arc<Report>>,
        traffic: &Arc<Traffic>,
    ) -> Snapshot {
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
        let shifts = shifts.sync(&config);
        let shadows = config
            .routes
            .iter()
            .map(|r| shadowed.remove(&r.name))
            .collect();
        let traffic = Table::new(traffic.clone(), &config);
        Snapshot {
            traffic,
            config,
            router,
            pools,
            shifts,
            shadows,
        }
    }
}
