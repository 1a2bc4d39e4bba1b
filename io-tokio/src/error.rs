//! The driver's error type.

use std::io;

use sockeye_core::UsageError;

/// What can go wrong with a connection.
///
/// A clean close is not an error: [`recv`](crate::WebSocket::recv) returns
/// `None` and [`WebSocket::closed`](crate::WebSocket::closed) says how it
/// ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The connection failed: a protocol violation by the peer (with the
    /// close code that was sent, see
    /// [`ProtocolError::close_code`](sockeye_core::ProtocolError::close_code)),
    /// a refused or invalid handshake (with its HTTP status), a dead peer, or
    /// an end without a close handshake.
    #[error(transparent)]
    Connection(#[from] sockeye_core::Error),
    /// The server answered a request with a plain HTTP response instead of
    /// upgrading it (the application's choice, e.g. a 403 or a `/healthz`).
    #[error("answered with HTTP {status} instead of upgrading")]
    Responded {
        /// The status that was sent.
        status: u16,
    },
    /// The connection is closed (or closing): nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// The call was not valid for the connection's state or the protocol,
    /// or a URL cannot be connected to
    /// ([`UsageError::InvalidUrl`](sockeye_core::UsageError::InvalidUrl)).
    #[error(transparent)]
    Usage(#[from] UsageError),
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}
