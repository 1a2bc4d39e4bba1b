//! The driver's error type.

use std::io;

use sockeye_core::UsageError;

/// What a call into the [`Driver`](crate::Driver) can fail with.
///
/// Failures of a connection itself (a protocol violation, a dead peer, a
/// broken transport) are not errors of a call: they arrive as
/// [`Event::Closed`](crate::Event::Closed).
///
/// ```
/// use sockeye_mio::Error;
/// let error = Error::Closed;
/// assert_eq!(error.to_string(), "the connection is closed or unknown");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Registering a socket with the poll failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The connection has closed (or is closing, for a send), or the id was
    /// never the driver's.
    #[error("the connection is closed or unknown")]
    Closed,
    /// The call was not valid for the connection's state or the protocol: a
    /// send before the handshake, a ping over 125 bytes, an invalid close
    /// code, an invalid configuration or client request.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Every token in the range given to [`Driver::new`](crate::Driver::new)
    /// is in use.
    #[error("every token in the driver's range is in use")]
    NoTokens,
}

impl From<sockeye_core::ConfigError> for Error {
    fn from(error: sockeye_core::ConfigError) -> Self {
        Self::Usage(error.into())
    }
}
