//! Stream names, topic names and the patterns an identity may subscribe to.

use std::fmt;
use std::sync::Arc;

use super::Error;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A topic: a stream clients subscribe to by name, such as `bill:42`.
///
/// A name is 1 to [`MAX_TOPIC_LEN`] bytes of ASCII letters, digits and
/// `_ - . : @ /`. The part before the first `:` is its namespace (`bill`
/// in `bill:42`), which selects its settings; a name without `:` is in the
/// default namespace. `$` and `*` never appear in a topic, so the system
/// streams (`$user`, `$all`) and patterns cannot be mistaken for one.
///
/// ```
/// use sockeye_core::hub::Topic;
/// let topic = Topic::new("bill:42")?;
/// assert_eq!(topic.namespace(), Some("bill"));
/// assert!(Topic::new("bill:*").is_err());
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Checks `name` and makes it a topic.
    pub fn new(name: &str) -> Result<Self, Error> {
        let invalid = |reason: &'static str| Error::InvalidTopic {
            topic: truncated(name),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > MAX_TOPIC_LEN {
            return Err(invalid("it is longer than 128 bytes"));
        }
        if !name.bytes().all(is_topic_byte) {
            return Err(invalid(
                "only ASCII letters, digits and _ - . : @ / may appear in it",
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, if there is one.
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once(':').map(|(namespace, _)| namespace)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/')
}

/// At most 64 bytes of a rejected name, for an error message: the name came
/// from a client and may be of any size.
pub(crate) fn truncated(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// A user id: what an authenticated identity's subject is.
///
/// 1 to 128 bytes of UTF-8 without control characters.
///
/// ```
/// use sockeye_core::hub::UserId;
/// assert_eq!(UserId::new("alice")?.as_str(), "alice");
/// assert!(UserId::new("").is_err());
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Checks `id` and makes it a user id.
    pub fn new(id: &str) -> Result<Self, Error> {
        let reason = if id.is_empty() {
            "it is empty"
        } else if id.len() > 128 {
            "it is longer than 128 bytes"
        } else if id.chars().any(char::is_control) {
            "it contains a control character"
        } else {
            return Ok(Self(id.into()));
        };
        Err(Error::InvalidUser {
            user: truncated(id),
            reason,
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream: a sequence of events with one epoch and gap-free offsets.
///
/// Every user has a personal stream, which all of the user's connections
/// receive and which clients call `$user`; `$all` is the stream every
/// connection receives; every topic is a stream of its own.
///
/// ```
/// use sockeye_core::hub::{Stream, Topic, UserId};
/// assert_eq!(Stream::User(UserId::new("alice")?).wire_name(), "$user");
/// assert_eq!(Stream::All.wire_name(), "$all");
/// assert_eq!(Stream::Topic(Topic::new("bill:42")?).wire_name(), "bill:42");
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// A user's personal stream.
    User(UserId),
    /// The stream of events published to everyone.
    All,
    /// A topic.
    Topic(Topic),
}

impl Stream {
    /// The name clients know the stream by. A user's stream is `$user` to
    /// each of the user's connections: only that user ever sees it.
    pub fn wire_name(&self) -> &str {
        match self {
            Self::User(_) => "$user",
            Self::All => "$all",
            Self::Topic(topic) => topic.as_str(),
        }
    }

    /// The topic, if the stream is one.
    pub fn topic(&self) -> Option<&Topic> {
        match self {
            Self::Topic(topic) => Some(topic),
            _ => None,
        }
    }
}

/// A pattern of topics an identity may subscribe to: `*` for any topic,
/// `prefix*` for the topics that start with `prefix`, or one topic's name.
///
/// ```
/// use sockeye_core::hub::{Topic, TopicPattern};
/// let bills = TopicPattern::new("bill:*")?;
/// assert!(bills.matches(&Topic::new("bill:42")?));
/// assert!(!bills.matches(&Topic::new("billing")?));
/// assert!(TopicPattern::new("*:42").is_err());
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    prefix: Box<str>,
    wildcard: bool,
}

impl TopicPattern {
    /// Parses a pattern.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let (prefix, wildcard) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (pattern, false),
        };
        let valid = prefix.len() <= MAX_TOPIC_LEN
            && prefix.bytes().all(is_topic_byte)
            && (wildcard || !prefix.is_empty());
        if !valid {
            return Err(Error::InvalidPattern {
                pattern: truncated(pattern),
            });
        }
        Ok(Self {
            prefix: prefix.into(),
            wildcard,
        })
    }

    /// Whether `topic` is one of the pattern's.
    pub fn matches(&self, topic: &Topic) -> bool {
        if self.wildcard {
            topic.as_str().starts_with(&*self.prefix)
        } else {
            topic.as_str() == &*self.prefix
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for good in ["a", "bill:42", "room:a/b@c.d-e_f", &"x".repeat(128)] {
            assert!(Topic::new(good).is_ok(), "{good}");
        }
        for bad in ["", "$user", "bill:*", "with space", "é", &"x".repeat(129)] {
            assert!(
                matches!(Topic::new(bad), Err(Error::InvalidTopic { .. })),
                "{bad}"
            );
        }
        assert_eq!(Topic::new("plain").unwrap().namespace(), None);
        assert_eq!(Topic::new("a:b:c").unwrap().namespace(), Some("a"));
    }

    #[test]
    fn patterns() {
        let topic = |name| Topic::new(name).unwrap();
        let any = TopicPattern::new("*").unwrap();
        assert!(any.matches(&topic("anything:at-all")));
        let exact = TopicPattern::new("bill:42").unwrap();
        assert!(exact.matches(&topic("bill:42")));
        assert!(!exact.matches(&topic("bill:421")));
        for bad in ["", "a*b", "**", "$all", "a b*"] {
            assert!(TopicPattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_error_names_at_most_64_bytes_of_what_came() {
        let long = "é".repeat(100);
        match Topic::new(&long) {
            Err(Error::InvalidTopic { topic, .. }) => assert_eq!(topic.len(), 64),
            other => panic!("{other:?}"),
        }
    }
}
