//! The hub's one error type.

use super::ConnectionId;

/// What went wrong with a call into the hub: a refused connection, an
/// invalid name, a publish that cannot be made, a setting that cannot work.
///
/// A refusal of a new connection carries the HTTP status to answer the
/// upgrade request with ([`Error::http_status`]); nothing is refused
/// silently.
///
/// ```
/// use sockeye_core::hub::{Error, Hub, HubConfig, Identity, Resume};
///
/// let config = HubConfig { max_connections_per_user: 1, ..HubConfig::default() };
/// let mut hub = Hub::new(config)?;
/// hub.connect(Identity::new("alice")?, Resume::default())?;
/// let refused = hub.connect(Identity::new("alice")?, Resume::default()).unwrap_err();
/// assert_eq!(refused.http_status(), 429);
/// assert_eq!(refused.to_string(), "user \"alice\" already has 1 connection(s), the most allowed");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work.
    #[error("hub setting `{field}` {reason}")]
    Config {
        /// The field of [`HubConfig`](super::HubConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The hub holds as many connections as it may.
    #[error("the hub already holds {limit} connection(s), the most allowed")]
    TooManyConnections {
        /// [`HubConfig::max_connections`](super::HubConfig::max_connections).
        limit: usize,
    },
    /// The user holds as many connections as one user may.
    #[error("user {user:?} already has {limit} connection(s), the most allowed")]
    TooManyUserConnections {
        /// The user.
        user: String,
        /// [`HubConfig::max_connections_per_user`](super::HubConfig::max_connections_per_user).
        limit: usize,
    },
    /// No connection of the hub has this id (it disconnected, or never was).
    #[error("no connection {0}")]
    UnknownConnection(ConnectionId),
    /// A topic name that is not one.
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic {
        /// The name, cut to 64 bytes.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A user id that is not one.
    #[error("invalid user id {user:?}: {reason}")]
    InvalidUser {
        /// The id, cut to 64 bytes.
        user: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A topic pattern that is not one.
    #[error("invalid topic pattern {pattern:?}: a topic name, optionally ending in `*`, or `*`")]
    InvalidPattern {
        /// The pattern, cut to 64 bytes.
        pattern: String,
    },
    /// A publish to a list of users that names none, or too many.
    #[error("a publish must name 1 to {limit} users, not {count}")]
    Recipients {
        /// How many it named.
        count: usize,
        /// The most one publish may name.
        limit: usize,
    },
    /// A new stream is needed and every stream kept has subscribers.
    #[error("the hub already keeps {limit} streams with subscribers, the most allowed")]
    TooManyStreams {
        /// [`HubConfig::max_streams`](super::HubConfig::max_streams).
        limit: usize,
    },
    /// An event name that cannot be used.
    #[error("invalid event name {name:?}: {reason}")]
    InvalidEventName {
        /// The name, cut to 64 bytes.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    /// The HTTP status that answers a request this error refused: 503 when
    /// the hub is full, 429 when the user is, 400 for what the request got
    /// wrong, 500 for the rest.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::TooManyConnections { .. } | Self::TooManyStreams { .. } => 503,
            Self::TooManyUserConnections { .. } => 429,
            Self::InvalidTopic { .. }
            | Self::InvalidUser { .. }
            | Self::InvalidPattern { .. }
            | Self::Recipients { .. }
            | Self::InvalidEventName { .. } => 400,
            Self::Config { .. } | Self::UnknownConnection(_) => 500,
        }
    }
}
