//! `sockeye`: the WebSocket server.
//!
//! ```sh
//! sockeye serve                       # ws://127.0.0.1:9001, echo mode
//! sockeye serve --bind 0.0.0.0:8080 --max-connections 50000 --log-format json
//! sockeye serve --help                # every flag, with its environment variable
//! ```

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use futures_core::Stream;
use futures_sink::Sink;
use sockeye_tokio::{Accept, CloseCode, Config, Error, Incoming, Response, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(name = "sockeye", version, about = "The Sockeye WebSocket server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve WebSocket connections (and GET /healthz) on one port.
    Serve(Serve),
}

#[derive(Parser, Debug)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "SOCKEYE_BIND", default_value = "127.0.0.1:9001")]
    bind: SocketAddr,
    /// What to do with messages: `echo` sends every message back (the
    /// Autobahn testee behaviour).
    #[arg(long, env = "SOCKEYE_MODE", value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Largest frame a client may send, in bytes.
    #[arg(long, env = "SOCKEYE_MAX_FRAME_SIZE", default_value_t = Config::default().max_frame_size)]
    max_frame_size: usize,
    /// Largest message a client may send, in bytes.
    #[arg(long, env = "SOCKEYE_MAX_MESSAGE_SIZE", default_value_t = Config::default().max_message_size)]
    max_message_size: usize,
    /// Most connections at once; more are refused with 503.
    #[arg(long, env = "SOCKEYE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds of silence before the server pings a client (0: never).
    #[arg(long, env = "SOCKEYE_PING_INTERVAL", default_value_t = 30.0)]
    ping_interval: f64,
    /// Unanswered pings after which a client is considered dead.
    #[arg(long, env = "SOCKEYE_MAX_MISSED_PONGS", default_value_t = 3)]
    max_missed_pongs: u32,
    /// Seconds allowed for connections to close on shutdown.
    #[arg(long, env = "SOCKEYE_DRAIN_TIMEOUT", default_value_t = 10.0)]
    drain_timeout: f64,
    /// Kernel receive buffer of each connection, in bytes (`SO_RCVBUF`,
    /// capped by `net.core.rmem_max`; default: the kernel tunes it). Size it
    /// for what a client keeps in flight when clients send large messages
    /// back to back: connections take turns, and a buffer the kernel keeps
    /// smaller stalls the client on a zero window.
    #[arg(long, env = "SOCKEYE_RECV_BUFFER")]
    recv_buffer: Option<u32>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, env = "SOCKEYE_WORKERS")]
    workers: Option<usize>,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing
    /// directive such as `sockeye=debug`.
    #[arg(long, env = "SOCKEYE_LOG", default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, env = "SOCKEYE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Send every text and binary message back unchanged.
    Echo,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> std::process::ExitCode {
    let Command::Serve(serve) = Cli::parse().command;
    if let Err(message) = init_logging(&serve) {
        eprintln!("sockeye: {message}");
        return std::process::ExitCode::from(2);
    }
    let config = match serve.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("sockeye: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = serve.workers {
        if workers == 0 {
            eprintln!("sockeye: --workers must be at least 1");
            return std::process::ExitCode::from(2);
        }
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(serve, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(serve: &Serve) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&serve.log_level)
        .map_err(|e| format!("invalid --log-level {:?}: {e}", serve.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match serve.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

impl Serve {
    fn config(&self) -> Result<Config, String> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .map_err(|_| format!("--{name} must be a number of seconds ≥ 0, not {value}"))
        };
        let ping = seconds("ping-interval", self.ping_interval)?;
        seconds("drain-timeout", self.drain_timeout)?;
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        let config = Config {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            ping_interval: (!ping.is_zero()).then_some(ping),
            max_missed_pongs: self.max_missed_pongs,
            ..Config::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

async fn run(serve: Serve, config: Config) -> std::io::Result<()> {
    let listener = listen(serve.bind, serve.recv_buffer)?;
    tracing::info!(addr = %listener.local_addr()?, mode = ?serve.mode, "listening");
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
            tracing::info!(%peer, code = %closed.code, clean = closed.clean, duration_ms, "close")
        }
        (closed, Some(error)) => {
            tracing::info!(%peer, code = closed.map(|c| c.code.as_u16()), %error, duration_ms, "close")
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

/// How an echo loop ended.
enum Ended {
    /// The connection closed: cleanly (`None`) or not.
    Closed(Option<Error>),
    /// The server is shutting down; the connection is still open.
    ShuttingDown,
}

/// Bytes one connection echoes in one poll before it lets its worker run
/// the other connections. Without a turn, a peer that keeps large messages
/// coming holds the worker while the others wait: the tokio servers in
/// `BENCHMARKS.md`, ours included, had a p99 of 150-270 ms echoing 1 MiB
/// over ten connections. Taking turns brought ours to ~35-45 ms, and moved
/// 10-25 % more, as each connection's data keeps flowing.
const ECHO_TURN: usize = 1024 * 1024;

/// Sends every message back until the connection closes or the server shuts
/// down. One poll echoes all the messages that one read brought (up to
/// [`ECHO_TURN`]), through the `Stream` and `Sink` halves of the socket: no
/// future is built per message. The shutdown signal is looked at only when
/// the socket has to wait (no message ready, or a send held back by the
/// high-water mark), and its one waiter lives as long as the loop.
async fn echo<S>(socket: &mut WebSocket<S>, shutdown: &mut watch::Receiver<bool>) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shutting_down = shutdown.changed();
    tokio::pin!(shutting_down);
    poll_fn(|cx| {
        let mut echoed = 0;
        loop {
            if echoed >= ECHO_TURN {
                // The replies queued so far go out at the start of the next
                // turn, which this wake asks for.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Once the connection has closed, sends fail with `Closed`, and
            // the stream says how it ended.
            let next = match Pin::new(&mut *socket).poll_ready(cx) {
                Poll::Ready(Ok(()) | Err(Error::Closed)) => Pin::new(&mut *socket).poll_next(cx),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                Poll::Pending => Poll::Pending,
            };
            match next {
                Poll::Ready(Some(Ok(message))) => {
                    echoed += message.len();
                    match Pin::new(&mut *socket).start_send(message) {
                        Ok(()) | Err(Error::Closed) => {}
                        Err(error) => return Poll::Ready(Ended::Closed(Some(error))),
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Ended::Closed(Some(error))),
                Poll::Ready(None) => return Poll::Ready(Ended::Closed(None)),
                Poll::Pending => {
                    return shutting_down.as_mut().poll(cx).map(|_| Ended::ShuttingDown);
                }
            }
        }
    })
    .await
}

/// Reads the request and answers it: an upgrade is accepted (while there is
/// a connection slot), `/healthz` gets 200 and other plain requests 426.
async fn open(
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
            _ => Response::new(426, "this endpoint speaks WebSocket\n")
                .with_header("Upgrade", "websocket")
                .with_header("Sec-WebSocket-Version", "13"),
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
    match incoming.accept(Accept::default()).await {
        Ok(socket) => Some((socket, path)),
        Err(error) => {
            tracing::info!(%peer, %error, "accept failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Wake, Waker};

    use futures_util::FutureExt;
    use sockeye_tokio::{Role, Upgraded};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

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

    /// With more messages waiting than a turn's worth, one poll of the echo
    /// loop ends early, already woken for its next turn, and later turns echo
    /// the rest.
    #[tokio::test]
    async fn an_echo_loop_gives_up_its_turn_after_a_turn_of_messages() {
        let (mut peer, io) = tokio::io::duplex(16 << 20);
        let agreed = Upgraded {
            protocol: None,
            headers: Vec::new(),
        };
        let mut socket = WebSocket::from_upgraded(io, Role::Server, agreed, Config::default())
            .expect("a server socket");
        // Four masked binary messages of 512 KiB (mask key 0): two turns.
        let payload = 512 * 1024;
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend((payload as u64).to_be_bytes());
        frame.extend([0; 4]);
        frame.resize(frame.len() + payload, 7);
        for _ in 0..4 {
            peer.write_all(&frame).await.unwrap();
        }

        let (_stop, mut shutdown) = watch::channel(false);
        let mut echoing = std::pin::pin!(echo(&mut socket, &mut shutdown));
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        assert!(
            echoing
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // Without turns, the loop would have echoed all four and waited for
        // input, which no one is going to send: no wake.
        assert!(flag.0.load(Ordering::SeqCst), "the loop did not yield");

        // The server's frames: a 10-byte header and the payload, unmasked.
        // The first turn wrote at most its own two.
        let mut echoes = vec![0; 4 * (10 + payload)];
        let mut first_turn = 0;
        while let Some(read) = peer.read(&mut echoes[first_turn..]).now_or_never() {
            first_turn += read.unwrap();
        }
        assert!(
            first_turn <= 2 * (10 + payload),
            "{first_turn} bytes in one turn"
        );
        tokio::select! {
            _ = echoing => panic!("the echo loop ended"),
            read = peer.read_exact(&mut echoes[first_turn..]) => read.unwrap(),
        };
        assert!(
            echoes
                .chunks(10 + payload)
                .all(|echo| echo[0] == 0x82 && echo[10..] == frame[14..])
        );
    }
}
