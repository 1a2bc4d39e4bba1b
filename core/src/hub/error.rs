//! The hub's one error type.

use super::ConnectionId;

/// What went wrong with a call into the hub: a refused connection, an
/// invalid name, an event that fails its checks (each message names the
/// event and the field; see [`Event::parse`](super::event::Event::parse)),
/// a publish that cannot be made, a setting that cannot work.
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
#[non_exhaustive]
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
    /// A typed event's data was not a JSON object.
    #[error("`{event}` data must be a JSON object, found {found}")]
    NotAnObject {
        /// The event's name.
        event: &'static str,
        /// What the data was instead: `an array`, `a string`, `null`, ...
        found: &'static str,
    },
    /// A typed event lacks a field it requires. Some fields are required only
    /// with a given `status` of
    /// [`AgentCompleted`](super::event::AgentCompleted).
    #[error("`{event}` is missing the required field `{field}`")]
    MissingField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
    },
    /// A typed event has a field its schema does not define.
    #[error("`{event}` has no field `{field}`")]
    UnknownField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
    },
    /// A typed event's field has the wrong type or a value that is not
    /// allowed.
    #[error("`{event}` field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The event's name.
        event: &'static str,
        /// The field's path in the data.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A typed event must carry exactly one of these fields, and it carried
    /// none or several.
    #[error(
        "`{event}` must have exactly one of the fields {}",
        list(fields, '`', " and ")
    )]
    ExactlyOneOf {
        /// The event's name.
        event: &'static str,
        /// The fields of which one, and only one, must be present.
        fields: &'static [&'static str],
    },
    /// A custom event's name breaks the naming rule (see
    /// [`CustomEvent`](super::event::CustomEvent)).
    #[error("invalid event name {name:?}: {reason}")]
    InvalidEventName {
        /// The name as given.
        name: String,
        /// Which part of the rule it breaks.
        reason: String,
    },
    /// A custom event used the name of one of the typed events.
    #[error("event name {name:?} belongs to a typed event and cannot name a custom event")]
    ReservedEventName {
        /// The name as given.
        name: String,
    },
    /// A string is not one of the four priorities.
    #[error(
        "unknown priority {value:?}, expected one of \"low\", \"normal\", \"high\", \"critical\""
    )]
    InvalidPriority {
        /// The string as given.
        value: String,
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
            | Self::NotAnObject { .. }
            | Self::MissingField { .. }
            | Self::UnknownField { .. }
            | Self::InvalidField { .. }
            | Self::ExactlyOneOf { .. }
            | Self::InvalidEventName { .. }
            | Self::ReservedEventName { .. }
            | Self::InvalidPriority { .. } => 400,
            Self::Config { .. } | Self::UnknownConnection(_) => 500,
        }
    }
}

/// `items` for a message: each between `quote`s, separated by commas, and
/// the last two by `last` (` and `, ` or `).
pub(super) fn list(items: &[&str], quote: char, last: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { last } else { ", " });
        }
        out.push(quote);
        out.push_str(item);
        out.push(quote);
    }
    out
}
