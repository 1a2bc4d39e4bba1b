//! `sockeye`: the WebSocket server.
//!
//! ```sh
//! sockeye serve                       # ws://127.0.0.1:9001, echo mode
//! sockeye serve --bind 0.0.0.0:8080 --max-connections 50000 --log-format json
//! sockeye serve --help                # every flag, with its environment variable
//! ```
//!
//! This file parses the command line and runs the server; the rest is in
//! modules named for what they do:
//!
//! * [`cli`]: the flags of `sockeye serve`, and turning them into a checked
//!   [`Config`](sockeye_tokio::Config);
//! * [`logging`]: the tracing subscriber (`--log-level`, `--log-format`);
//! * [`server`]: the listener, the accept loop, connection slots, and the
//!   graceful shutdown that drains connections;
//! * [`http`]: a new connection's request: plain HTTP (`/healthz`, 426), the
//!   connection limit (503), the upgrade;
//! * [`echo`]: echo mode, connections taking turns.
//!
//! The hub, HTTP API, auth and config modules join later (the next issues).

mod cli;
mod echo;
mod http;
mod logging;
mod server;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let Command::Serve(serve) = Cli::parse().command;
    if let Err(message) = logging::init(&serve) {
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
    match runtime.block_on(server::run(serve, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}
