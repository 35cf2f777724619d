//! Running the proxy: bind the listeners, serve until a shutdown signal, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin;
use crate::config::Config;
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::server;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// Config validation refuses this too; checked again here because a
    /// `Config` can be built or changed in code.
    #[error(
        "the admin API would listen on {0}, beyond loopback, without `admin_token`: set a token or listen on 127.0.0.1"
    )]
    AdminWithoutToken(SocketAddr),
}

/// A proxy bound to its listeners, not yet serving. Splitting bind from serve
/// lets callers (tests, `demo`) learn the bound addresses first.
pub struct Bound {
    pub proxy: Arc<Proxy>,
    /// Re-reads the config file; `None` when the config did not come from a file.
    pub reloader: Option<Arc<Reloader>>,
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
}

impl Bound {
    pub async fn new(config: Config) -> Result<Bound, RunError> {
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        if let Some(addr) = config.server.admin
            && !addr.ip().is_loopback()
            && config.server.admin_token.is_none()
        {
            return Err(RunError::AdminWithoutToken(addr));
        }
        let listeners = server::bind(&config.server.listen).await?;
        let admin = match config.server.admin {
            Some(addr) => Some(server::bind(&[addr]).await?.remove(0)),
            None => None,
        };
        let path = config.path.clone();
        let proxy = Proxy::new(config);
        let reloader = path.map(|p| Arc::new(Reloader::new(p, proxy.clone())));
        Ok(Bound {
            proxy,
            reloader,
            listeners,
            admin,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains (up to `drain_timeout`).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        for addr in self.local_addrs() {
            tracing::info!(%addr, "listening");
        }
        let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
        if let Some(l) = self.admin {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "admin listening");
            }
            tokio::spawn(admin::serve(
                l,
                self.proxy.clone(),
                self.reloader.clone(),
                admin_stopped,
            ));
        }
        server::serve(self.listeners, self.proxy, shutdown).await;
        let _ = stop_admin.send(true);
        tracing::info!("stopped");
    }
}

/// SIGTERM and SIGINT, listened for from the moment this is built.
///
/// Built before the listeners are bound and "listening" is logged: a signal
/// that arrives between the two must start a drain, not hit the default
/// action and kill the process mid-request.
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignals {})
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }

    /// Resolves on the first signal. A second one exits at once, without
    /// draining (status 130, as a shell reports an interrupted program).
    pub async fn first(mut self) {
        self.next().await;
        tracing::info!("signal received: draining (send it again to exit now)");
        tokio::spawn(async move {
            self.next().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
    }
}
