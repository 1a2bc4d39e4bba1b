//! The server: a listener (with the `SO_RCVBUF` of `--recv-buffer`), the
//! accept loop, a slot per connection up to `--max-connections`, and the
//! graceful shutdown on SIGINT or SIGTERM: every connection is closed with
//! 1001 and given `--drain-timeout` to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sockeye_tokio::{CloseCode, Config};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::Serve;
use crate::echo::{Ended, echo};
use crate::http::open;

/// Serves until a shutdown signal, then drains the connections.
pub(crate) async fn run(serve: Serve, config: Config) -> std::io::Result<()> {
    let listener = listen(serve.bind, serve.recv_buffer)?;
    tracing::info!(
        addr = %listener.local_addr()?,
        mode = ?serve.mode,
        "listening"
    );
    let (shutdown_tx, shutdown) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(serve.max_connections));
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = slots.clone().try_acquire_owned().ok();
                let config = config.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    serve_connection(stream, peer, &config, slot.is_some(), shutdown).await;
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "shutting down: closing connections with 1001"
    );
    let _ = shutdown_tx.send(true);
    let drain = Duration::from_secs_f64(serve.drain_timeout);
    if tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "drain timeout: dropping the remaining connections"
        );
        connections.abort_all();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be handled");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Config,
    has_slot: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    // The handshake's futures are large (the request, the driver moved from
    // `Incoming` into the socket); boxed, they are freed once it is done
    // instead of sizing every idle connection's task.
    let Some((mut socket, path)) = Box::pin(open(stream, peer, config, has_slot)).await else {
        return;
    };
    tracing::info!(%peer, %path, "open");
    let error = match echo(&mut socket, &mut shutdown).await {
        Ended::Closed(error) => error,
        Ended::ShuttingDown => socket
            .close(CloseCode::GOING_AWAY, "server shutting down")
            .await
            .err(),
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match (socket.closed(), error) {
        (Some(closed), None) => {
            tracing::info!(
                %peer, code = %closed.code, clean = closed.clean, duration_ms, "close"
            )
        }
        (closed, Some(error)) => {
            tracing::info!(
                %peer, code = closed.map(|c| c.code.as_u16()), %error, duration_ms, "close"
            )
        }
        (None, None) => tracing::info!(%peer, duration_ms, "close"),
    }
}

/// A listener on `bind` whose connections get `recv_buffer` as their
/// `SO_RCVBUF` (they inherit it), or the kernel's tuning without one.
fn listen(bind: SocketAddr, recv_buffer: Option<u32>) -> std::io::Result<TcpListener> {
    let socket = match bind {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(bind)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receive buffer of an accepted connection, with `recv_buffer`.
    async fn accepted_recv_buffer(recv_buffer: Option<u32>) -> u32 {
        let listener = listen("127.0.0.1:0".parse().unwrap(), recv_buffer).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        TcpSocket::from_std_stream(accepted.into_std().unwrap())
            .recv_buffer_size()
            .unwrap()
    }

    #[tokio::test]
    async fn accepted_connections_get_the_receive_buffer_asked_for() {
        // Linux doubles the size asked for (for its bookkeeping) and caps it
        // at net.core.rmem_max (at least 208 KiB); its default is 128 KiB.
        let asked = accepted_recv_buffer(Some(1 << 20)).await;
        let tuned = accepted_recv_buffer(None).await;
        assert!(asked > 256 * 1024 && asked > tuned, "{asked} vs {tuned}");
    }
}
