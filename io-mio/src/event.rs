//! What the driver tells the application, and how connections are named.

use std::io;

/// A connection of a [`Driver`](crate::Driver). A closed connection's slot
/// (and its mio token) may be reused, but its id is not (until a 32-bit
/// counter per slot wraps), so a late [`send`](crate::Driver::send) gets
/// [`Error::Closed`](crate::Error::Closed) instead of reaching a newer
/// connection.
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
/// [`Driver::poll_event`](crate::Driver::poll_event): the core's events as
/// they are, and two of the driver's own.
///
/// The last event of every connection is `Core(CoreEvent::Closed(_))`,
/// exactly once, also for a connection whose handshake failed before the
/// application saw it; the id is invalid after it.
///
/// ```
/// use sockeye_mio::{Accept, CoreEvent, Driver, Event, Response};
/// # fn react(driver: &mut Driver, now: std::time::Instant) -> Result<(), sockeye_mio::Error> {
/// while let Some((id, event)) = driver.poll_event(now) {
///     match event {
///         Event::Core(CoreEvent::Request(request)) if request.path == "/chat" => {
///             driver.accept(id, Accept::default())?
///         }
///         Event::Core(CoreEvent::Request(_) | CoreEvent::HttpRequest(_)) => {
///             driver.respond(id, Response::new(404, "not here"))?
///         }
///         Event::Core(CoreEvent::Message(message)) => {
///             driver.send(id, now, message)?;
///         }
///         Event::Core(CoreEvent::Closed(closed)) => println!("{id:?}: {closed:?}"),
///         Event::Io(error) => println!("{id:?}: transport failed: {error}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum Event {
    /// What the core reported: the request to answer (server), `Open`,
    /// messages, pings and pongs, the close. See [`sockeye_core::Event`].
    Core(sockeye_core::Event),
    /// The bytes queued on the connection have fallen back to the
    /// high-water mark or below, after a [`send`](crate::Driver::send) that
    /// returned `false`.
    Drained,
    /// The transport failed (a reset, say). A `Core(CoreEvent::Closed(_))`
    /// with code 1006 follows.
    Io(io::Error),
}
