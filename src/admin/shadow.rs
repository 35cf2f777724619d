//! `GET /admin/shadow`: the shadow report of every route that has one, by
//! route name (SPEC 2.4, 4). The reports live in the proxy, outside
//! snapshots; what a view holds is [`crate::shadow::report::Report::view`]'s.

use serde_json::{Map, Value, json};

use crate::proxy::Proxy;

/// `{"routes": {name: view, ...}}`, names sorted.
pub fn list(proxy: &Proxy) -> Value {
    let routes: Map<String, Value> = proxy
        .shadow
        .all()
        .into_iter()
        .map(|(name, report)| (name, report.view()))
        .collect();
    json!({ "routes": routes })
}
