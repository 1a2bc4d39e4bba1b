//! How the driver names connections.

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
