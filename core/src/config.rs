//! Connection settings and their validation.

use std::time::Duration;

/// Settings for one connection, in either role.
///
/// The defaults suit a public server; every limit exists so that no peer can
/// make the connection buffer without bound. [`Config::validate`] checks a
/// configuration; the connection constructors call it too.
///
/// ```
/// use std::time::Duration;
/// use sockeye_core::Config;
///
/// let config = Config {
///     max_message_size: 1 << 20,
///     ping_interval: Some(Duration::from_secs(15)),
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
///
/// let broken = Config { max_missed_pongs: 0, ..Config::default() };
/// assert_eq!(
///     broken.validate().unwrap_err().to_string(),
///     "invalid config: max_missed_pongs must be at least 1",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest HTTP request (server) or response head (client), in bytes.
    /// A larger request is refused with 431. Default 8 KiB.
    pub max_handshake_size: usize,
    /// Most header lines in the request or response. More get 431.
    /// Default 64.
    pub max_headers: usize,
    /// Largest payload of one received frame. Larger frames close the
    /// connection with 1009. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest received message, all fragments together. Larger ones close
    /// the connection with 1009. Default 64 MiB.
    pub max_message_size: usize,
    /// Split outgoing messages into frames of at most this many payload bytes.
    /// `None` (the default) sends every message as one frame.
    pub fragment_size: Option<usize>,
    /// Smallest allocation for received payloads. Small messages share one
    /// buffer of this size, so receiving them does not allocate per frame.
    /// Default 4 KiB.
    pub read_buffer_size: usize,
    /// Time allowed from the connection's creation until the handshake is
    /// complete. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time allowed for the close handshake, and for a client to wait for the
    /// server to close TCP after it. Default 5 s.
    pub close_timeout: Duration,
    /// Send a ping after this much silence from the peer. Any received frame
    /// counts as a sign of life. `None` disables the heartbeat. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// Consider the peer dead when this many pings in a row go unanswered.
    /// Default 3.
    pub max_missed_pongs: u32,
    /// Close the connection with 1001 after this long without a data message
    /// in either direction. `None` (the default) never does.
    pub idle_timeout: Option<Duration>,
    /// Backpressure for drivers: while more than this many bytes wait for
    /// the transport ([`buffered_amount`](crate::Connection::buffered_amount)
    /// plus what the driver holds), a driver stops taking sends (tokio's
    /// `send` waits) or reports it (mio). The core itself queues whatever it
    /// is given. Default 256 KiB.
    ///
    /// A peer that stops reading holds the sender at this mark, as TCP
    /// would. Two ends that both only send, each waiting at its mark without
    /// reading (the mio driver also stops reading meanwhile), wait for each
    /// other for ever: receive on another task (tokio's `split`), or bound
    /// the wait with a timeout.
    pub write_buffer_high_water: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_handshake_size: 8 * 1024,
            max_headers: 64,
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            fragment_size: None,
            read_buffer_size: 4 * 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(30)),
            max_missed_pongs: 3,
            idle_timeout: None,
            write_buffer_high_water: 256 * 1024,
        }
    }
}

/// A [`Config`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field} {problem}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The smallest request head that can hold a valid upgrade request.
const MIN_HANDSHAKE_SIZE: usize = 256;
/// The request needs Host, Upgrade, Connection, Sec-WebSocket-Key and
/// Sec-WebSocket-Version, plus room for the usual extras.
const MIN_HEADERS: usize = 8;

impl Config {
    /// Checks that every setting is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, problem| Err(ConfigError { field, problem });
        if self.max_handshake_size < MIN_HANDSHAKE_SIZE {
            return fail("max_handshake_size", "must be at least 256 bytes");
        }
        if self.max_headers < MIN_HEADERS {
            return fail("max_headers", "must be at least 8");
        }
        if self.max_frame_size == 0 {
            return fail("max_frame_size", "must be at least 1 byte");
        }
        if self.max_message_size == 0 {
            return fail("max_message_size", "must be at least 1 byte");
        }
        if self.fragment_size == Some(0) {
            return fail("fragment_size", "must be at least 1 byte");
        }
        if self.read_buffer_size == 0 {
            return fail("read_buffer_size", "must be at least 1 byte");
        }
        if self.handshake_timeout.is_zero() {
            return fail("handshake_timeout", "must be longer than zero");
        }
        if self.close_timeout.is_zero() {
            return fail("close_timeout", "must be longer than zero");
        }
        if self.ping_interval.is_some_and(|d| d.is_zero()) {
            return fail("ping_interval", "must be longer than zero");
        }
        if self.max_missed_pongs == 0 {
            return fail("max_missed_pongs", "must be at least 1");
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return fail("idle_timeout", "must be longer than zero");
        }
        if self.write_buffer_high_water == 0 {
            return fail("write_buffer_high_water", "must be at least 1 byte");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    max_handshake_size: 10,
                    ..Config::default()
                },
                "max_handshake_size",
            ),
            (
                Config {
                    max_headers: 2,
                    ..Config::default()
                },
                "max_headers",
            ),
            (
                Config {
                    max_frame_size: 0,
                    ..Config::default()
                },
                "max_frame_size",
            ),
            (
                Config {
                    max_message_size: 0,
                    ..Config::default()
                },
                "max_message_size",
            ),
            (
                Config {
                    fragment_size: Some(0),
                    ..Config::default()
                },
                "fragment_size",
            ),
            (
                Config {
                    read_buffer_size: 0,
                    ..Config::default()
                },
                "read_buffer_size",
            ),
            (
                Config {
                    handshake_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "handshake_timeout",
            ),
            (
                Config {
                    close_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "close_timeout",
            ),
            (
                Config {
                    ping_interval: Some(Duration::ZERO),
                    ..Config::default()
                },
                "ping_interval",
            ),
            (
                Config {
                    max_missed_pongs: 0,
                    ..Config::default()
                },
                "max_missed_pongs",
            ),
            (
                Config {
                    idle_timeout: Some(Duration::ZERO),
                    ..Config::default()
                },
                "idle_timeout",
            ),
            (
                Config {
                    write_buffer_high_water: 0,
                    ..Config::default()
                },
                "write_buffer_high_water",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
