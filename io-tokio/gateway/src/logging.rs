//! Logging: a tracing subscriber that writes to stderr, filtered by
//! `--log-level`, as text or JSON lines (`--log-format`).

use crate::cli::{LogFormat, Serve};

/// Installs the global subscriber; the error is the message for the user.
pub(crate) fn init(serve: &Serve) -> Result<(), String> {
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
