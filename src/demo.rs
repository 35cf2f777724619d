//! `strangler demo`: the bundled Tea & Co. monolith and extracted services,
//! started in-process on the addresses `config/demo.toml` gives them, with the
//! proxy in front.

use std::net::SocketAddr;

use legacy_stub::{Kind, Server};

use crate::config::Config;
use crate::report;
use crate::run::{Bound, RunError};

/// The demo config, built in so `demo` also works outside a checkout.
pub const BUILTIN_CONFIG: &str = include_str!("../config/demo.toml");

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "cannot start the demo's \"{name}\" service on {addr}: {source} (is the port in use, perhaps by another demo?)"
    )]
    Stub {
        name: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream \"{name}\" target {addr} is not an IP:port the demo can listen on")]
    Address { name: String, addr: String },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The running demo: the stub services and the bound proxy.
pub struct Demo {
    pub services: Vec<(String, Server)>,
    pub proxy: Bound,
}

/// Which stub program plays an upstream: the shop's by name, the generic test
/// backend for anything else.
fn kind_for(upstream: &str) -> Kind {
    match upstream {
        "legacy" | "monolith" => Kind::Monolith,
        "orders" => Kind::Orders,
        "customers" => Kind::Customers,
        other => Kind::Test {
            name: other.to_owned(),
        },
    }
}

/// Starts a stub on every upstream target, then binds the proxy.
pub async fn start(config: Config) -> Result<Demo, DemoError> {
    let mut services = Vec::new();
    for u in &config.upstreams {
        for t in &u.targets {
            let addr: SocketAddr =
                t.authority
                    .as_str()
                    .parse()
                    .map_err(|_| DemoError::Address {
                        name: u.name.clone(),
                        addr: t.url.clone(),
                    })?;
            let server = legacy_stub::spawn(kind_for(&u.name), addr)
                .await
                .map_err(|source| DemoError::Stub {
                    name: u.name.clone(),
                    addr: addr.to_string(),
                    source,
                })?;
            services.push((u.name.clone(), server));
        }
    }
    let proxy = Bound::new(config).await?;
    Ok(Demo { services, proxy })
}

impl Demo {
    /// What to print when the demo is up: addresses, routes, things to try.
    pub fn banner(&self, config_name: &str) -> String {
        let snap = self.proxy.proxy.snapshot();
        let proxy = self
            .proxy
            .local_addrs()
            .first()
            .map_or_else(|| "?".to_owned(), |a| format!("http://{a}"));
        let mut out = format!(
            "strangler demo: the Tea & Co. shop, part-way through its migration\n\n  proxy        {proxy}   (config: {config_name})\n"
        );
        for (name, s) in &self.services {
            let role = if matches!(kind_for(name), Kind::Monolith) {
                "the monolith"
            } else {
                "an extracted service"
            };
            out.push_str(&format!("  {name:<12} {}   ({role})\n", s.url()));
        }
        if let Some(admin) = self.proxy.admin_addr() {
            out.push_str(&format!(
                "  dashboard    http://{admin}/   (the migration's progress; /metrics for Prometheus)\n"
            ));
        }
        out.push_str("\nRoutes, in matching order:\n");
        for line in report::route_table(&snap.config).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!(
            "\nTry (the x-served-by header says who answered):\n\
             \x20 curl -i {proxy}/                              # the monolith's shop page\n\
             \x20 curl -i {proxy}/api/orders/1001               # orders, moved to the orders service\n\
             \x20 curl -i -b session=alice {proxy}/api/customers/42   # alice's bucket (7236) keeps her on the monolith\n\
             \x20 curl -i -b session=dave {proxy}/api/customers/42    # dave's (1238) is in the 25% moved to the service\n\
             \x20 curl -i -H 'x-strangler-side: customers' {proxy}/api/customers/42   # testers force a side\n\
             \x20 curl -i -H 'x-beta: 1' {proxy}/api/customers/42   # beta testers reach the customers service\n\
             \x20 curl -i {proxy}/v2/orders/1001                # a rewritten path\n\
             \x20 curl -i {proxy}/api/order-details/1001        # one answer composed from three services\n\
             \x20 curl -i '{proxy}/api/%6Frders/./1001'          # another spelling, the same route\n\
             \x20 strangler explain --config {config_name} GET /api/orders/1001\n\
             \nCtrl-C stops everything.\n"
        ));
        out
    }

    pub async fn shutdown(self) {
        for (_, s) in self.services {
            s.shutdown().await;
        }
    }
}
