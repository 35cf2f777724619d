//! Reloading the config file while serving (SPEC 3.5): re-read, validate,
//! and swap the snapshot whole — or, when the file is bad, change nothing and
//! say exactly what is wrong.
//!
//! Every trigger (SIGHUP, the file watcher, `POST /admin/reload`) goes through
//! [`Reloader::reload`], one at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Config, ConfigError};
use crate::proxy::Proxy;

/// Reloads one proxy from one file.
pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
    /// Held for the whole of a reload, so two triggers never interleave.
    busy: tokio::sync::Mutex<()>,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// Human-readable lines: what changed (or that nothing did), and warnings
    /// such as settings that need a restart.
    pub summary: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is invalid; the old config keeps serving.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Reloader {
    pub fn new(path: PathBuf, proxy: Arc<Proxy>) -> Reloader {
        Reloader {
            path,
            proxy,
            busy: tokio::sync::Mutex::new(()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reloads (`ok`, `error`) so far: `strangler_config_reloads_total`.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Re-reads the file and, when it is valid, makes it the config new
    /// requests run on. Requests in flight finish on the snapshot they began
    /// with.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.busy.lock().await;
        let config = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let old = self.proxy.snapshot();
        let mut summary = Vec::new();
        if config.server.listen != old.config.server.listen {
            summary
                .push("`server.listen` changed: the new addresses take effect on restart".into());
        }
        if config.server.admin != old.config.server.admin {
            summary.push("`server.admin` changed: the new address takes effect on restart".into());
        }
        self.proxy.install(config);
        self.ok.fetch_add(1, Ordering::Relaxed);
        Ok(Reloaded { summary })
    }
}
