//! A new connection's request, read and answered: plain HTTP requests get
//! `/healthz` (200) or 426, an upgrade past the connection limit gets 503,
//! and the rest are accepted as WebSocket connections.

use std::net::SocketAddr;

use sockeye_tokio::{Config, Handshake, Incoming, Response, WebSocket};
use tokio::net::TcpStream;

/// Reads the request and answers it: an upgrade is accepted (while there is
/// a connection slot), `/healthz` gets 200 and other plain requests 426.
pub(crate) async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    has_slot: bool,
) -> Option<(WebSocket<TcpStream>, String)> {
    let _ = stream.set_nodelay(true);
    let incoming = match Incoming::read(stream, config.clone()).await {
        Ok(incoming) => incoming,
        Err(error) => {
            tracing::info!(%peer, %error, "handshake refused");
            return None;
        }
    };
    if !incoming.is_upgrade() {
        let response = match incoming.request().path.as_str() {
            "/healthz" => Response::new(200, "ok\n"),
            _ => Response::upgrade_required(),
        };
        let status = response.status;
        let path = incoming.request().path.clone();
        let _ = incoming.respond(response).await;
        tracing::debug!(%peer, %path, status, "http");
        return None;
    }
    if !has_slot {
        tracing::warn!(%peer, "refused: connection limit reached");
        let _ = incoming
            .respond(Response::new(503, "too many connections\n"))
            .await;
        return None;
    }
    let path = incoming.request().path.clone();
    match incoming.accept(Handshake::default()).await {
        Ok(socket) => Some((socket, path)),
        Err(error) => {
            tracing::info!(%peer, %error, "accept failed");
            None
        }
    }
}
