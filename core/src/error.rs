//! Every failure the core reports, as values.
//!
//! * [`ProtocolError`]: the peer broke RFC 6455 after the handshake. Each maps
//!   to the close code that was sent ([`ProtocolError::close_code`]).
//! * [`RequestError`]: a server refused an upgrade request. Each maps to the
//!   HTTP status that was sent ([`RequestError::status`]).
//! * [`ResponseError`]: a client refused the server's handshake response.
//! * [`Error`]: why a connection ended, carried by
//!   [`Closed`](crate::Closed).
//! * [`UsageError`]: the application asked for something the connection's
//!   state or the protocol does not allow. Nothing was changed.

use crate::close::CloseCode;
use crate::handshake::Header;

/// The peer violated the framing rules of RFC 6455. The connection was failed
/// with [`close_code`](Self::close_code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client sent a frame without a mask (§5.1).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server sent a masked frame (§5.1).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// RSV1–3 were set without an extension that defines them (§5.2).
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// The opcode is one of the reserved values (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame had FIN clear (§5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame carried more than 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLarge(u64),
    /// A continuation frame arrived with no message in progress (§5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived inside a fragmented message (§5.4).
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A 64-bit payload length had its most significant bit set (§5.2).
    #[error("payload length has the most significant bit set")]
    InvalidLength,
    /// A frame was longer than [`Config::max_frame_size`](crate::Config::max_frame_size).
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message was longer than [`Config::max_message_size`](crate::Config::max_message_size).
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The message length reached, counting the frame that overflowed.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A text message was not valid UTF-8 (§8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame had a 1-byte payload (§5.5.1).
    #[error("close frame payload of 1 byte")]
    TruncatedCloseCode,
    /// A close frame carried a code that may not be sent (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame's reason was not valid UTF-8 (§5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
}

impl ProtocolError {
    /// The close code the connection was failed with (§7.4.1).
    ///
    /// ```
    /// use sockeye_core::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// ```
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 | Self::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// Why a server refused an upgrade request. The response that was sent has
/// [`status`](Self::status) and the error's message as its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request head exceeded [`Config::max_handshake_size`](crate::Config::max_handshake_size).
    #[error("request head exceeds {0} bytes")]
    TooLarge(usize),
    /// The request had more than [`Config::max_headers`](crate::Config::max_headers) header lines.
    #[error("request has more than {0} headers")]
    TooManyHeaders(usize),
    /// The bytes were not an HTTP/1.x request.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// An upgrade request used a method other than GET (§4.1).
    #[error("WebSocket upgrade requires GET, not {0}")]
    MethodNotGet(String),
    /// An upgrade request was not HTTP/1.1 (§4.1).
    #[error("WebSocket upgrade requires HTTP/1.1")]
    NotHttp11,
    /// No Host header (§4.1).
    #[error("missing Host header")]
    MissingHost,
    /// The Upgrade header lacked the `websocket` token.
    #[error("Upgrade header must contain the websocket token")]
    MissingUpgrade,
    /// The Connection header lacked the `Upgrade` token.
    #[error("Connection header must contain the Upgrade token")]
    MissingConnectionUpgrade,
    /// Sec-WebSocket-Version was missing or not 13; the response carried
    /// `Sec-WebSocket-Version: 13`.
    #[error("{}; this server speaks 13", match .0 {
        Some(version) => format!("unsupported Sec-WebSocket-Version {version:?}"),
        None => "missing Sec-WebSocket-Version".to_owned(),
    })]
    UnsupportedVersion(Option<String>),
    /// No Sec-WebSocket-Key header.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// Sec-WebSocket-Key was not base64 of 16 bytes (§4.1).
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    InvalidKey,
    /// A header that must appear once appeared again.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// Sec-WebSocket-Protocol was not a list of tokens.
    #[error("malformed Sec-WebSocket-Protocol header")]
    MalformedProtocols,
    /// Sec-WebSocket-Extensions did not follow the grammar of §9.1.
    #[error("malformed Sec-WebSocket-Extensions header: {0}")]
    MalformedExtensions(String),
    /// The upgrade request declared a body.
    #[error("upgrade request must not have a body")]
    UnexpectedBody,
    /// The client sent more than `max_handshake_size` bytes of frames before
    /// the server answered its request.
    #[error("more than {0} bytes sent before the handshake completed")]
    EarlyData(usize),
    /// The request did not arrive within the handshake timeout.
    #[error("request not received within the handshake timeout")]
    Timeout,
}

impl RequestError {
    /// The HTTP status of the response that refused the request.
    ///
    /// ```
    /// use sockeye_core::RequestError;
    /// assert_eq!(RequestError::UnsupportedVersion(Some("8".into())).status(), 426);
    /// assert_eq!(RequestError::MissingHost.status(), 400);
    /// ```
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) | Self::TooManyHeaders(_) => 431,
            Self::UnsupportedVersion(_) => 426,
            Self::Timeout => 408,
            _ => 400,
        }
    }
}

/// Why a client refused the server's handshake response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The server answered with a status other than 101.
    #[error("server refused the upgrade with {status} {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The reason phrase.
        reason: String,
        /// The response headers.
        headers: Vec<Header>,
        /// The response body, up to the handshake size limit.
        body: bytes::Bytes,
    },
    /// The response head exceeded [`Config::max_handshake_size`](crate::Config::max_handshake_size)
    /// or [`Config::max_headers`](crate::Config::max_headers).
    #[error("response head exceeds the configured limits")]
    TooLarge,
    /// The bytes were not an HTTP/1.1 response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The 101 response's Upgrade header lacked `websocket`.
    #[error("response Upgrade header must contain the websocket token")]
    MissingUpgrade,
    /// The 101 response's Connection header lacked `Upgrade`.
    #[error("response Connection header must contain the Upgrade token")]
    MissingConnectionUpgrade,
    /// Sec-WebSocket-Accept was missing or did not match the key (§4.1).
    #[error("Sec-WebSocket-Accept missing or wrong")]
    BadAccept,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedProtocol(String),
    /// The server enabled an extension the client did not offer.
    #[error("server enabled extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// The connection ended before the response was complete.
    #[error("connection closed during the handshake")]
    Eof,
    /// No response within the handshake timeout.
    #[error("no response within the handshake timeout")]
    Timeout,
}

/// Why a connection ended, when it did not end with a clean close handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the close code went out in a close frame.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A server refused the upgrade request with an HTTP error.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A client refused the server's response, or the server refused the
    /// upgrade.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The peer left this many pings in a row unanswered.
    #[error("peer did not answer {0} pings")]
    PeerUnresponsive(u32),
    /// The peer did not finish the close handshake in time.
    #[error("close handshake timed out")]
    CloseTimeout,
    /// The transport ended without a close handshake.
    #[error("connection closed without a close frame")]
    UnexpectedEof,
    /// The transport failed (a reset, a broken pipe), as the driver reported
    /// with [`handle_transport_error`](crate::Connection::handle_transport_error).
    #[error("transport failed: {message}")]
    Transport {
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// The error's message.
        message: String,
    },
}

/// The application asked for something that the connection's state or the
/// protocol does not allow. The connection is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// Data can be sent only once the handshake is complete.
    #[error("the connection is not open yet")]
    NotOpen,
    /// The close handshake has started; no more data may be sent.
    #[error("the connection is closing")]
    Closing,
    /// `accept` or `respond` was called with no request waiting for an answer.
    #[error("no request is waiting for an answer")]
    NoPendingRequest,
    /// `accept` named a subprotocol the client did not offer.
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// A header name or value would break the HTTP message.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// A response status must be a 3-digit code other than 101.
    #[error("invalid response status {0}")]
    InvalidStatus(u16),
    /// Ping payloads are limited to 125 bytes.
    #[error("ping payload of {0} bytes exceeds 125")]
    PingTooLarge(usize),
    /// The code may not be sent in a close frame.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A client request could not be written as valid HTTP.
    #[error("invalid client request: {0}")]
    InvalidRequest(String),
    /// A close reason is limited to 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// A URL given to [`ClientRequest::from_url`](crate::ClientRequest::from_url)
    /// is not a WebSocket URL that can be connected to.
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
