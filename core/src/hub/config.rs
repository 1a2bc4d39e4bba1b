//! The hub's settings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Error;

/// The hub's settings: limits, budgets, and per-namespace stream settings.
///
/// The defaults suit a public port: three connections per user, a 1 MiB
/// outbound budget per connection, 64 subscriptions per connection and
/// 64 KiB client messages.
///
/// ```
/// use std::time::Duration;
/// use sockeye_core::hub::{HubConfig, Namespace};
///
/// let mut config = HubConfig::default();
/// config.namespaces.insert(
///     "room".into(),
///     Namespace { presence: true, client_publish: true, ..Namespace::default() },
/// );
/// config.namespaces.insert(
///     "bill".into(),
///     Namespace { history_size: 1000, history_age: Duration::from_secs(3600), ..Namespace::default() },
/// );
/// config.validate()?;
/// assert!(config.namespace(Some("room")).presence);
/// assert!(!config.namespace(Some("unknown")).presence);
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Connections the hub holds at once; the next is refused with 503.
    pub max_connections: usize,
    /// Connections one user may hold at once; the next is refused with 429.
    pub max_connections_per_user: usize,
    /// Bytes a connection's outbound queue may hold (the serialized
    /// messages). Over it, events are dropped lowest priority first; a
    /// CRITICAL event that cannot fit closes the connection as a slow
    /// consumer.
    pub queue_budget: usize,
    /// Topics one connection may be subscribed to.
    pub max_subscriptions: usize,
    /// The largest client message the hub reads, in bytes; a larger one is
    /// answered with an `error`.
    pub max_client_message: usize,
    /// Client messages answered with an `error` before the connection is
    /// closed for it.
    pub max_errors: u32,
    /// Streams whose epoch, offset and history are kept. Past it the
    /// stream used least recently that nobody is subscribed to is
    /// forgotten (its next use starts a new epoch).
    pub max_streams: usize,
    /// Settings of the personal streams, `$all`, and topics in a namespace
    /// that has no entry in `namespaces`.
    pub defaults: Namespace,
    /// Settings by namespace: the part of a topic before its first `:`.
    pub namespaces: BTreeMap<String, Namespace>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_user: 3,
            queue_budget: 1 << 20,
            max_subscriptions: 64,
            max_client_message: 64 << 10,
            max_errors: 32,
            max_streams: 1 << 20,
            defaults: Namespace::default(),
            namespaces: BTreeMap::new(),
        }
    }
}

impl HubConfig {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |field: &'static str, reason: &'static str| Err(Error::Config { field, reason });
        if self.max_connections == 0 {
            return fail("max_connections", "must be at least 1");
        }
        if self.max_connections_per_user == 0 {
            return fail("max_connections_per_user", "must be at least 1");
        }
        if self.queue_budget < 4096 {
            return fail("queue_budget", "must be at least 4 KiB");
        }
        if self.max_client_message < 256 {
            return fail("max_client_message", "must be at least 256 bytes");
        }
        if self.max_streams == 0 {
            return fail("max_streams", "must be at least 1");
        }
        for namespace in std::iter::once(&self.defaults).chain(self.namespaces.values()) {
            namespace.validate()?;
        }
        Ok(())
    }

    /// The settings of a namespace (`None`: the default namespace).
    pub fn namespace(&self, name: Option<&str>) -> &Namespace {
        name.and_then(|name| self.namespaces.get(name))
            .unwrap_or(&self.defaults)
    }
}

/// What a namespace's streams keep and allow.
///
/// History is bounded three ways at once: by count, by age and by bytes.
/// An event leaves history at the first bound it passes; a resume that
/// needs it then gets `recovered: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Events kept per stream (0: no history, so no resume).
    pub history_size: usize,
    /// How long an event stays in history.
    pub history_age: Duration,
    /// Bytes of serialized events kept per stream.
    pub history_bytes: usize,
    /// Whether the hub tracks who is subscribed, and sends `join` and
    /// `leave` to subscribers.
    pub presence: bool,
    /// Whether clients may publish into the namespace's topics.
    pub client_publish: bool,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            history_size: 100,
            history_age: Duration::from_secs(300),
            history_bytes: 1 << 20,
            presence: false,
            client_publish: false,
        }
    }
}

impl Namespace {
    fn validate(&self) -> Result<(), Error> {
        if self.history_size > 0 && self.history_age.is_zero() {
            return Err(Error::Config {
                field: "history_age",
                reason: "must be above zero where history is kept",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_limits_are_refused_by_name() {
        type Edit = fn(&mut HubConfig);
        let cases: [(Edit, &str); 6] = [
            (|c| c.max_connections = 0, "max_connections"),
            (
                |c| c.max_connections_per_user = 0,
                "max_connections_per_user",
            ),
            (|c| c.queue_budget = 100, "queue_budget"),
            (|c| c.max_client_message = 10, "max_client_message"),
            (|c| c.max_streams = 0, "max_streams"),
            (|c| c.defaults.history_age = Duration::ZERO, "history_age"),
        ];
        for (edit, name) in cases {
            let mut config = HubConfig::default();
            edit(&mut config);
            match config.validate() {
                Err(Error::Config { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(HubConfig::default().validate(), Ok(()));
    }
}
