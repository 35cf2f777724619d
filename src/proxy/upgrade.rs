//! Protocol upgrades (WebSocket and other `Upgrade` requests): once the
//! upstream answers `101`, both connections are handed over and bytes are
//! copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client's and the upstream's upgraded connections. Runs detached;
/// the client connection's idle timeout ends a silent tunnel.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, request_id: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(request_id, error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::debug!(
                    request_id,
                    bytes_up = up,
                    bytes_down = down,
                    "tunnel closed"
                )
            }
            Err(e) => tracing::debug!(request_id, error = %e, "tunnel ended with an error"),
        }
    });
}
