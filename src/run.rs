//! Running the proxy: bind the listeners, serve until a shutdown signal, drain;
//! and while serving, reload the config file on SIGHUP or when it changes
//! (SPEC 3.5). What a reload does is [`crate::reload`]'s; this file only
//! decides when.

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admin;
use crate::config::Config;
use crate::proxy::Proxy;
use crate::reload::{Reloader, Trigger};
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
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
}

/// A proxy bound to its listeners, not yet serving. Splitting bind from serve
/// lets callers (tests, `demo`) learn the bound addresses first.
pub struct Bound {
    pub proxy: Arc<Proxy>,
    /// Re-reads the config file; `None` when the config did not come from a file.
    pub reloader: Option<Arc<Reloader>>,
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    /// SIGHUP and the file watcher, armed before anything is logged as
    /// listening; `None` without a file.
    triggers: Option<ReloadTriggers>,
}

impl Bound {
    pub async fn new(config: Config) -> Result<Bound, RunError> {
        for w in &config.warnings {
            tracing::warn!(event = "config_warning", "{w}");
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
        let triggers = match &reloader {
            Some(r) => Some(ReloadTriggers::arm(r.path()).map_err(RunError::Signal)?),
            None => None,
        };
        Ok(Bound {
            proxy,
            reloader,
            listeners,
            admin,
            triggers,
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
            tracing::info!(event = "listening", %addr, "listening");
        }
        let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
        if let Some(l) = self.admin {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(event = "admin_listening", %addr, "admin listening");
            }
            tokio::spawn(admin::serve(
                l,
                self.proxy.clone(),
                self.reloader.clone(),
                admin_stopped,
            ));
        }
        let reloading = match (self.triggers, &self.reloader) {
            (Some(t), Some(r)) => t.spawn(r.clone()),
            _ => Vec::new(),
        };
        server::serve(self.listeners, self.proxy, shutdown).await;
        for task in reloading {
            task.abort();
        }
        let _ = stop_admin.send(true);
        tracing::info!(event = "stopped", "stopped");
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
        tracing::info!(
            event = "signal",
            "signal received: draining (send it again to exit now)"
        );
        tokio::spawn(async move {
            self.next().await;
            tracing::warn!(event = "signal", "second signal: exiting without draining");
            std::process::exit(130);
        });
    }
}

// === reload triggers ===

/// How long the file must stay quiet after a change before it is re-read:
/// one save (truncate, several writes, close; or write a temporary file and
/// rename it over) is one reload, not several, and never a read of a
/// half-written file.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);

/// The longest a reload waits for a file that keeps changing.
const RELOAD_DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// What makes a running proxy re-read its file: SIGHUP and changes to the
/// file. Armed when the proxy binds, before "listening" is logged, so a
/// signal or a save right after start is never missed (or, for SIGHUP,
/// fatal: its default action ends the process).
struct ReloadTriggers {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    /// One `()` per file event that concerns the config file.
    changes: mpsc::UnboundedReceiver<()>,
    /// Dropping it stops the watch; `None` when the file cannot be watched.
    _watcher: Option<notify::RecommendedWatcher>,
    path: PathBuf,
}

impl ReloadTriggers {
    fn arm(path: &Path) -> std::io::Result<ReloadTriggers> {
        #[cfg(unix)]
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let (tx, changes) = mpsc::unbounded_channel();
        let watcher = match watch(path, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    event = "config_watch_failed",
                    file = %path.display(),
                    "cannot watch the config file ({e}); reload it with SIGHUP or POST /admin/reload"
                );
                None
            }
        };
        Ok(ReloadTriggers {
            #[cfg(unix)]
            hup,
            changes,
            _watcher: watcher,
            path: path.to_path_buf(),
        })
    }

    /// Starts one task per trigger; abort them to stop reloading.
    fn spawn(self, reloader: Arc<Reloader>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        #[cfg(unix)]
        {
            let mut hup = self.hup;
            let reloader = reloader.clone();
            tasks.push(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // The outcome is logged by the reload itself.
                    let _ = reloader.reload_by(Trigger::Signal).await;
                }
            }));
        }
        let (mut changes, watcher, path) = (self.changes, self._watcher, self.path);
        tasks.push(tokio::spawn(async move {
            let _watching = watcher;
            while next_burst(&mut changes, RELOAD_DEBOUNCE, RELOAD_DEBOUNCE_MAX)
                .await
                .is_some()
            {
                if !path.exists() {
                    // Moved away or deleted: an editor between rename and
                    // create, or an operator. Its return is a change too.
                    tracing::warn!(
                        event = "config_file_gone",
                        file = %path.display(),
                        "the config file is gone; the current config keeps serving until it is back"
                    );
                    continue;
                }
                let _ = reloader.reload_by(Trigger::File).await;
            }
        }));
        tasks
    }
}

/// Waits for the next burst of changes to end: the first one, then until
/// `quiet` passes with no other (but no longer than `max` after the first).
/// `None` once no more changes can come.
async fn next_burst(
    changes: &mut mpsc::UnboundedReceiver<()>,
    quiet: Duration,
    max: Duration,
) -> Option<()> {
    changes.recv().await?;
    let deadline = Instant::now() + max;
    loop {
        let until = (Instant::now() + quiet).min(deadline);
        match tokio::time::timeout_at(until, changes.recv()).await {
            Ok(Some(())) => {}
            Ok(None) | Err(_) => return Some(()),
        }
    }
}

/// A directory to watch, and which of its entries matter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    dir: PathBuf,
    /// `None`: every entry (the directory holds the symlink the config is
    /// reached through, and what it points to may be swapped by renaming
    /// other entries, as Kubernetes does with mounted ConfigMaps).
    name: Option<OsString>,
}

/// The directories to watch for `path`. The directory, not the file: editors
/// save by writing a new file and renaming it over the old one, which a
/// watch on the old file would never see. For a symlink, also the directory
/// of the file it points to, where in-place edits happen.
fn watch_list(path: &Path) -> std::io::Result<Vec<Watched>> {
    let split = |p: &Path| -> std::io::Result<(PathBuf, OsString)> {
        let name = p.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")
        })?;
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Ok((std::fs::canonicalize(dir)?, name.to_owned()))
    };
    let (dir, name) = split(path)?;
    if !std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Ok(vec![Watched {
            dir,
            name: Some(name),
        }]);
    }
    let target = std::fs::canonicalize(path)?;
    let (tdir, tname) = split(&target)?;
    let mut list = vec![Watched { dir, name: None }];
    if tdir != list[0].dir {
        list.push(Watched {
            dir: tdir,
            name: Some(tname),
        });
    }
    Ok(list)
}

/// Whether a file-system event can have changed what the config file reads.
/// Opening and reading it (as every reload does) cannot; closing it after
/// writing, creating, modifying, renaming and removing can.
fn concerns(event: &notify::Event, watched: &[Watched]) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    let kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Any
        | EventKind::Other => true,
    };
    kind && event.paths.iter().any(|p| {
        watched.iter().any(|w| {
            p.parent() == Some(w.dir.as_path())
                && w.name.as_ref().is_none_or(|n| p.file_name() == Some(n))
        })
    })
}

/// Watches what [`watch_list`] says, sending `()` on `tx` for each event
/// that [`concerns`] the file.
fn watch(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    use notify::Watcher as _;
    let list = watch_list(path)?;
    let dirs: Vec<PathBuf> = list.iter().map(|w| w.dir.clone()).collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(event) if concerns(&event, &list) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(event = "config_watch_failed", error = %e, "watching the config file: {e}")
            }
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Path(#[from] std::io::Error),
    #[error(transparent)]
    Notify(#[from] notify::Error),
}

#[cfg(test)]
mod tests;
