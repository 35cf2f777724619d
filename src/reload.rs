//! Reloading the config file while serving (SPEC 3.5): re-read, validate,
//! and swap the snapshot whole — or, when the file is bad, change nothing and
//! say exactly what is wrong.
//!
//! Every trigger (SIGHUP, the file watcher, `POST /admin/reload`) goes through
//! [`Reloader::reload_by`], one at a time. Each reload logs what changed
//! ([`ConfigDiff`]) or that nothing did, and a failed one logs every error
//! with its `FILE:LINE:COL`. What sets reloads off lives in [`crate::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Config, ConfigDiff, ConfigError};
use crate::proxy::Proxy;

/// Reloads one proxy from one file.
pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
    /// Held for the whole of a reload, so two triggers never interleave (and
    /// neither do their log lines).
    busy: tokio::sync::Mutex<()>,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// What set a reload off; logged with it as `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The file watcher saw the file change.
    File,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::File => "file",
            Trigger::Admin => "admin",
        }
    }
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    /// Human-readable lines: what changed (or `nothing changed`), including
    /// settings that need a restart. The same lines the reload logged, and
    /// what `strangler check --against` prints.
    pub summary: Vec<String>,
    /// The same, structured.
    pub diff: ConfigDiff,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is invalid; the old config keeps serving.
    /// [`ConfigError::messages`] gives one `FILE:LINE:COL: message` per problem.
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

    /// A reload asked for by `POST /admin/reload`; see [`Reloader::reload_by`].
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.reload_by(Trigger::Admin).await
    }

    /// Re-reads the file and, when it is valid, makes it the config new
    /// requests run on. Requests in flight finish on the snapshot they began
    /// with. Logs what changed; on error logs every problem and changes
    /// nothing.
    pub async fn reload_by(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.busy.lock().await;
        let trigger = trigger.as_str();
        let config = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let problems = e.messages();
                for line in &problems {
                    tracing::error!(
                        event = "config_error",
                        trigger,
                        "config reload failed: {line}"
                    );
                }
                tracing::warn!(
                    event = "reload_failed",
                    trigger,
                    errors = problems.len(),
                    "config not reloaded: the current config keeps serving"
                );
                return Err(e.into());
            }
        };
        let diff = ConfigDiff::between(&self.proxy.snapshot().config, &config);
        for w in &config.warnings {
            tracing::warn!(event = "config_warning", trigger, "{w}");
        }
        self.proxy.install(config);
        self.ok.fetch_add(1, Ordering::Relaxed);
        let lines = diff.lines();
        for line in &lines {
            if line.needs_restart {
                tracing::warn!(
                    event = "config_change",
                    trigger,
                    needs_restart = true,
                    "config change: {line}"
                );
            } else {
                tracing::info!(
                    event = "config_change",
                    trigger,
                    needs_restart = false,
                    "config change: {line}"
                );
            }
        }
        if lines.is_empty() {
            tracing::info!(
                event = "reload",
                trigger,
                changes = 0,
                "config reloaded: nothing changed"
            );
        } else {
            tracing::info!(
                event = "reload",
                trigger,
                changes = lines.len(),
                "config reloaded"
            );
        }
        Ok(Reloaded {
            summary: diff.summary(),
            diff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str =
        "[upstreams.a]\ntargets = [\"http://127.0.0.1:1\"]\n[default]\nupstream = \"a\"\n";

    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "strangler-reload-unit-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[tokio::test]
    async fn a_good_file_is_installed_and_the_change_reported() {
        let f = TempFile::new(A);
        let proxy = Proxy::new(Config::load(&f.0).unwrap());
        let r = Reloader::new(f.0.clone(), proxy.clone());

        let same = r.reload_by(Trigger::Signal).await.unwrap();
        assert_eq!(same.summary, ["nothing changed"]);
        assert!(same.diff.is_empty());

        std::fs::write(&f.0, A.replace(":1\"", ":2\"")).unwrap();
        let changed = r.reload().await.unwrap();
        assert_eq!(
            changed.summary,
            ["upstream \"a\": targets http://127.0.0.1:1 -> http://127.0.0.1:2"]
        );
        assert_eq!(
            proxy.snapshot().config.upstreams[0].targets[0].url,
            "http://127.0.0.1:2"
        );
        assert_eq!(r.counts(), (2, 0));
    }

    #[tokio::test]
    async fn a_bad_file_changes_nothing_and_says_where() {
        let f = TempFile::new(A);
        let proxy = Proxy::new(Config::load(&f.0).unwrap());
        let r = Reloader::new(f.0.clone(), proxy.clone());
        std::fs::write(&f.0, A.replace("upstream = \"a\"", "upstream = \"b\"")).unwrap();
        let Err(ReloadError::Config(e)) = r.reload_by(Trigger::File).await else {
            panic!("a bad file was accepted");
        };
        let messages = e.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        let expected = format!("{}:4:12: [default]: unknown upstream \"b\"", f.0.display());
        assert!(messages[0].starts_with(&expected), "{messages:?}");
        assert_eq!(
            proxy.snapshot().config.default.as_ref().map(|d| d.upstream),
            Some(0)
        );
        assert_eq!(r.counts(), (0, 1));

        std::fs::remove_file(&f.0).unwrap();
        assert!(r.reload_by(Trigger::File).await.is_err());
        assert_eq!(r.counts(), (0, 2));
    }
}
