//! What a connection tells the application.

use bytes::Bytes;

use crate::close::{CloseCode, CloseFrame};
use crate::error::Error;
use crate::handshake::{Header, Request};
use crate::message::Message;

/// An event from [`Connection::poll_event`](crate::Connection::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: a valid upgrade request. Answer it with
    /// [`accept`](crate::Connection::accept) or
    /// [`respond`](crate::Connection::respond).
    Request(Box<Request>),
    /// Server: a request that is not a WebSocket upgrade (a health check, say).
    /// Answer it with [`respond`](crate::Connection::respond); the transport
    /// closes after the response.
    HttpRequest(Box<Request>),
    /// The handshake is complete; messages can flow.
    Open(Upgraded),
    /// A complete message from the peer.
    Message(Message),
    /// The peer sent a ping. The pong is already queued.
    Ping(Bytes),
    /// The peer sent a pong.
    Pong(Bytes),
    /// The peer started or answered the close handshake. No more messages
    /// will arrive.
    CloseReceived(CloseFrame),
    /// The connection is over: write what
    /// [`poll_transmit`](crate::Connection::poll_transmit) still returns, then
    /// close the transport. This is always the last event, and there is
    /// always exactly one. (Boxed: it is large, and comes once.)
    Closed(Box<Closed>),
}

/// The outcome of a completed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    /// The subprotocol in use, if one was chosen.
    pub protocol: Option<String>,
    /// Client: the headers of the server's 101 response. Server: the extra
    /// headers it sent.
    pub headers: Vec<Header>,
}

/// How a connection ended.
///
/// ```
/// use sockeye_core::{Closed, CloseCode};
/// # fn report(closed: &Closed) {
/// if closed.clean {
///     println!("closed with {} {}", closed.code, closed.reason);
/// } else if let Some(error) = &closed.error {
///     println!("failed: {error}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code: the peer's in a clean close, the one sent when this
    /// end failed the connection, [`CloseCode::NO_STATUS`] for a close frame
    /// without a code, and [`CloseCode::ABNORMAL`] when no close frame was
    /// exchanged (including a connection that never opened).
    pub code: CloseCode,
    /// The reason that went with the code.
    pub reason: String,
    /// Whether both close frames were exchanged (RFC 6455 §7.1.4).
    pub clean: bool,
    /// What went wrong, if anything did.
    pub error: Option<Error>,
}
