//! After a `101`: the client's connection and the upstream's are joined,
//! and bytes are copied both ways until either side closes. Bytes each side
//! sent right behind its head go first. The client connection's idle
//! timeout ([`ClientIo`]'s tunnel phase) ends a silent tunnel.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::server::conn::ClientIo;
use crate::upstream::h1::Upgraded;

/// Runs the tunnel until either side closes or the idle timeout passes.
pub(super) async fn run(client: &mut ClientIo, client_rest: BytesMut, upstream: Upgraded) {
    let Upgraded {
        io: mut upstream,
        read: upstream_rest,
    } = upstream;
    if !upstream_rest.is_empty() && client.write_all(&upstream_rest).await.is_err() {
        return;
    }
    if !client_rest.is_empty() && upstream.write_all(&client_rest).await.is_err() {
        return;
    }
    match tokio::io::copy_bidirectional(client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
    }
}
