//! `POST /admin/reload` (SPEC 3.5): reload the config file through the same
//! [`Reloader`] as SIGHUP and the file watcher, and say what changed — or,
//! when the file is bad, every error with its place (the old config keeps
//! serving).

use serde_json::json;

use super::AdminError;
use crate::reload::Reloader;

/// `{"result": "ok", "changes": [...]}` after a reload; the summary lines
/// are the reloader's, one change or warning each.
pub async fn reload(reloader: Option<&Reloader>) -> Result<serde_json::Value, AdminError> {
    let reloader = reloader.ok_or(AdminError::NoReloader)?;
    let done = reloader.reload().await.map_err(AdminError::Reload)?;
    Ok(json!({
        "result": "ok",
        "changes": done.summary,
    }))
}
