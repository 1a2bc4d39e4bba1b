//! The command line: `sockeye serve` and its flags (each with its
//! environment variable), and turning them into a checked [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sockeye_tokio::Config;

#[derive(Parser, Debug)]
#[command(name = "sockeye", version, about = "The Sockeye WebSocket server")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve WebSocket connections (and GET /healthz) on one port.
    Serve(Serve),
}

#[derive(Parser, Debug)]
pub(crate) struct Serve {
    /// Address to listen on.
    #[arg(long, env = "SOCKEYE_BIND", default_value = "127.0.0.1:9001")]
    pub(crate) bind: SocketAddr,
    /// What to do with messages: `echo` sends every message back (the
    /// Autobahn testee behaviour).
    #[arg(long, env = "SOCKEYE_MODE", value_enum, default_value_t = Mode::Echo)]
    pub(crate) mode: Mode,
    /// Largest frame a client may send, in bytes.
    #[arg(long, env = "SOCKEYE_MAX_FRAME_SIZE", default_value_t = Config::default().max_frame_size)]
    pub(crate) max_frame_size: usize,
    /// Largest message a client may send, in bytes.
    #[arg(long, env = "SOCKEYE_MAX_MESSAGE_SIZE", default_value_t = Config::default().max_message_size)]
    pub(crate) max_message_size: usize,
    /// Most connections at once; more are refused with 503.
    #[arg(long, env = "SOCKEYE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub(crate) max_connections: usize,
    /// Seconds of silence before the server pings a client (0: never).
    #[arg(long, env = "SOCKEYE_PING_INTERVAL", default_value_t = 30.0)]
    pub(crate) ping_interval: f64,
    /// Unanswered pings after which a client is considered dead.
    #[arg(long, env = "SOCKEYE_MAX_MISSED_PONGS", default_value_t = 3)]
    pub(crate) max_missed_pongs: u32,
    /// Seconds allowed for connections to close on shutdown.
    #[arg(long, env = "SOCKEYE_DRAIN_TIMEOUT", default_value_t = 10.0)]
    pub(crate) drain_timeout: f64,
    /// Kernel receive buffer of each connection, in bytes (`SO_RCVBUF`,
    /// capped by `net.core.rmem_max`; default: the kernel tunes it). Size it
    /// for what a client keeps in flight when clients send large messages
    /// back to back: connections take turns, and a buffer the kernel keeps
    /// smaller stalls the client on a zero window.
    #[arg(long, env = "SOCKEYE_RECV_BUFFER")]
    pub(crate) recv_buffer: Option<u32>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, env = "SOCKEYE_WORKERS")]
    pub(crate) workers: Option<usize>,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing
    /// directive such as `sockeye=debug`.
    #[arg(long, env = "SOCKEYE_LOG", default_value = "info")]
    pub(crate) log_level: String,
    /// Log line format.
    #[arg(long, env = "SOCKEYE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Send every text and binary message back unchanged.
    Echo,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl Serve {
    /// The connections' [`Config`], once the flags it is made of and the
    /// server's own (`--drain-timeout`, `--max-connections`) are checked;
    /// the error is the message for the user.
    pub(crate) fn config(&self) -> Result<Config, String> {
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
