//! What a connection tells the application, and what it tells the driver to
//! do with the transport.

use bytes::Bytes;

use crate::close::{CloseCode, CloseFrame};
use crate::error::Error;
use crate::handshake::{Handshake, Request};
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
    /// The handshake is complete; messages can flow. The server's event
    /// carries the [`Handshake`] it accepted with, the client's what the
    /// server's 101 response said.
    Open(Handshake),
    /// A complete message from the peer.
    Message(Message),
    /// The peer sent a ping. The pong is already queued.
    Ping(Bytes),
    /// The peer sent a pong.
    Pong(Bytes),
    /// The bytes waiting to be written fell to
    /// [`Config::write_buffer_high_water`](crate::Config::write_buffer_high_water)
    /// or below, after being above it: an application holding messages back
    /// (see [`Connection::is_backpressured`](crate::Connection::is_backpressured))
    /// may send again. Only while the connection is open.
    Drained,
    /// The peer started or answered the close handshake. No more messages
    /// will arrive.
    CloseReceived(CloseFrame),
    /// The connection is over, for the application: nothing more can be
    /// sent or received. This is always the last event, and there is always
    /// exactly one. The driver's work is not over yet: it keeps writing,
    /// reading and waking at [`poll_timeout`](crate::Connection::poll_timeout)
    /// until [`poll_transport`](crate::Connection::poll_transport) says
    /// [`TransportAction::Close`]. (Boxed: it is large, and comes once.)
    Closed(Box<Closed>),
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

/// What to do with the transport, from
/// [`Connection::poll_transport`](crate::Connection::poll_transport).
///
/// Closing a TCP socket while the peer is still sending makes the kernel
/// answer with a reset, and a reset can destroy the last bytes written
/// before it (a close frame, a 4xx response) in the peer's receive buffer.
/// So once a connection is over, the core decides how its transport ends,
/// and every driver does the same: it half-closes when told, keeps reading
/// (the core discards what arrives) until the core says to close, which it
/// does at the peer's end of stream or a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportAction {
    /// Everything is written: shut down the sending side (TCP `FIN`,
    /// `shutdown(Write)`), and keep reading into
    /// [`handle_input`](crate::Connection::handle_input) and
    /// [`handle_eof`](crate::Connection::handle_eof), and waking at
    /// [`poll_timeout`](crate::Connection::poll_timeout).
    HalfClose,
    /// Close the transport now; the connection is done with it. Whatever
    /// [`poll_transmit`](crate::Connection::poll_transmit) had left is
    /// dropped (only when the transport failed or the peer stopped
    /// responding is there any).
    Close,
}
