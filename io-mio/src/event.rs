//! What the driver tells the application, and how connections are named.

use std::io;

use bytes::Bytes;
use sockeye_core::{CloseFrame, Closed, Message, Request, Upgraded};

/// A connection of a [`Driver`](crate::Driver). Ids are not reused: a
/// connection's slot (and its mio token) may be, but the id of a closed
/// connection stays closed, so a late [`send`](crate::Driver::send) cannot
/// reach a newer connection.
///
/// ```
/// # fn show(id: sockeye_mio::ConnectionId) {
/// let mut peers = std::collections::HashSet::new();
/// peers.insert(id);
/// println!("{id:?} joined");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    pub(crate) index: usize,
    pub(crate) generation: u32,
}

/// What happened on a connection, from
/// [`Driver::poll_event`](crate::Driver::poll_event).
///
/// The protocol events are the core's ([`sockeye_core::Event`]);
/// [`Drained`](Self::Drained) is the driver's own, and
/// [`Closed`](Self::Closed) also reports a broken transport.
///
/// ```
/// use sockeye_mio::{Driver, Event};
/// # fn react(driver: &mut Driver, now: std::time::Instant) -> Result<(), sockeye_mio::Error> {
/// while let Some((id, event)) = driver.poll_event(now) {
///     match event {
///         Event::Request(request) if request.path == "/chat" => {
///             driver.accept(id, sockeye_mio::Accept::default())?
///         }
///         Event::Request(_) | Event::HttpRequest(_) => {
///             driver.respond(id, sockeye_mio::Response::new(404, "not here"))?
///         }
///         Event::Message(message) => {
///             driver.send(id, now, message)?;
///         }
///         Event::Closed { closed, io_error } => println!("{id:?}: {closed:?} {io_error:?}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum Event {
    /// Server: a valid upgrade request. Answer it with
    /// [`Driver::accept`](crate::Driver::accept) or
    /// [`Driver::respond`](crate::Driver::respond); the handshake timeout
    /// runs meanwhile.
    Request(Box<Request>),
    /// Server: a request that is not a WebSocket upgrade (a health check,
    /// say). Answer it with [`Driver::respond`](crate::Driver::respond).
    HttpRequest(Box<Request>),
    /// The handshake is complete: messages can flow.
    Open(Upgraded),
    /// A complete message from the peer.
    Message(Message),
    /// The peer sent a ping; the pong is already queued.
    Ping(Bytes),
    /// The peer sent a pong.
    Pong(Bytes),
    /// The peer started or answered the close handshake; no more messages
    /// will arrive.
    CloseReceived(CloseFrame),
    /// The bytes queued on the connection have fallen back to the
    /// high-water mark or below, after a [`send`](crate::Driver::send) that
    /// returned `false`.
    Drained,
    /// The connection is over and its id no longer valid. Always the last
    /// event of a connection, and there is exactly one, also for a
    /// connection whose handshake failed before the application saw it.
    Closed {
        /// How it ended, as the core saw it.
        closed: Box<Closed>,
        /// The transport failure that ended it, if one did (the core then
        /// reports an abnormal close, 1006).
        io_error: Option<io::Error>,
    },
}

impl From<sockeye_core::Event> for Event {
    fn from(event: sockeye_core::Event) -> Self {
        use sockeye_core::Event as Core;
        match event {
            Core::Request(request) => Self::Request(request),
            Core::HttpRequest(request) => Self::HttpRequest(request),
            Core::Open(upgraded) => Self::Open(upgraded),
            Core::Message(message) => Self::Message(message),
            Core::Ping(payload) => Self::Ping(payload),
            Core::Pong(payload) => Self::Pong(payload),
            Core::CloseReceived(frame) => Self::CloseReceived(frame),
            Core::Closed(closed) => Self::Closed {
                closed,
                io_error: None,
            },
        }
    }
}
