//! The wire protocol: JSON text messages, documented in `core/PROTOCOL.md`.
//!
//! Server messages are written here, each once: an event's message is
//! written once per publish and shared by every recipient. Client messages
//! are read here into [`ClientMessage`], with an [`ErrorCode`] for each way
//! one can be wrong.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::event::{Event, Priority};
use super::topic::{Topic, truncated};
use super::{ConnectionId, Epoch, Position, UserId};

/// Why a client message was refused: the `code` of an `error` message.
///
/// ```
/// use sockeye_core::hub::ErrorCode;
/// assert_eq!(ErrorCode::Forbidden.as_str(), "forbidden");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, or JSON that is not an object.
    BadJson,
    /// A `type` the hub does not know.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// Larger than [`HubConfig::max_client_message`](super::HubConfig::max_client_message).
    TooLarge,
    /// A topic name that is not one.
    InvalidTopic,
    /// The identity's patterns do not allow the topic.
    Forbidden,
    /// The connection is subscribed to the topic already.
    AlreadySubscribed,
    /// The connection is not subscribed to the topic.
    NotSubscribed,
    /// The connection has [`HubConfig::max_subscriptions`](super::HubConfig::max_subscriptions) already.
    TooManySubscriptions,
    /// The topic's namespace does not track presence.
    PresenceDisabled,
    /// The topic's namespace does not take publishes from clients.
    PublishDisabled,
    /// The event of a client publish is invalid.
    InvalidEvent,
    /// The hub cannot keep another stream now.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::TooLarge => "too_large",
            Self::InvalidTopic => "invalid_topic",
            Self::Forbidden => "forbidden",
            Self::AlreadySubscribed => "already_subscribed",
            Self::NotSubscribed => "not_subscribed",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::PresenceDisabled => "presence_disabled",
            Self::PublishDisabled => "publish_disabled",
            Self::InvalidEvent => "invalid_event",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A refused client message: the code, what exactly was wrong, and the
/// request's id if it had a readable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// What exactly was wrong, for people.
    pub message: String,
    /// The request's `id`, echoed.
    pub id: Option<RequestId>,
}

/// A client's request id: a string or a number of its choosing (at most 64
/// bytes), echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub(crate) Box<str>);

impl RequestId {
    /// The id as JSON (a string or a number, as it came).
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// A client message the hub understood.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Receive a topic's events, optionally resuming after a position.
    Subscribe {
        /// The topic.
        topic: Topic,
        /// Where the client was: the epoch and the last offset it got.
        resume: Option<Position>,
        /// The request id.
        id: Option<RequestId>,
    },
    /// Stop receiving a topic's events.
    Unsubscribe {
        /// The topic.
        topic: Topic,
        /// The request id.
        id: Option<RequestId>,
    },
    /// Who is in a topic.
    Presence {
        /// The topic.
        topic: Topic,
        /// The request id.
        id: Option<RequestId>,
    },
    /// Publish an event into a topic.
    Publish {
        /// The topic.
        topic: Topic,
        /// The event.
        event: Event,
        /// The request id.
        id: Option<RequestId>,
    },
}

impl ClientMessage {
    /// Reads a client message. `text` is already known to be at most the
    /// configured size.
    ///
    /// ```
    /// use sockeye_core::hub::{ClientMessage, ErrorCode};
    /// let message = ClientMessage::parse(r#"{"type":"subscribe","topic":"bill:42","id":1}"#)?;
    /// assert!(matches!(message, ClientMessage::Subscribe { resume: None, .. }));
    /// let refused = ClientMessage::parse(r#"{"type":"subscribe","id":"a"}"#).unwrap_err();
    /// assert_eq!(refused.code, ErrorCode::MissingField);
    /// assert_eq!(refused.message, "subscribe: the field `topic` is missing");
    /// assert_eq!(refused.id.unwrap().as_json(), "\"a\"");
    /// # Ok::<(), sockeye_core::hub::Refusal>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_str(text).map_err(|e| Refusal {
            code: ErrorCode::BadJson,
            message: format!("not JSON: {e}"),
            id: None,
        })?;
        let Value::Object(fields) = value else {
            return Err(Refusal {
                code: ErrorCode::BadJson,
                message: "a message is a JSON object".into(),
                id: None,
            });
        };
        let mut reader = Reader {
            kind: "message",
            fields,
            id: None,
        };
        reader.id = reader.request_id()?;
        let kind = reader.string("type")?;
        reader.kind = match kind.as_str() {
            "subscribe" => "subscribe",
            "unsubscribe" => "unsubscribe",
            "presence" => "presence",
            "publish" => "publish",
            _ => {
                return Err(reader.refuse(
                    ErrorCode::UnknownType,
                    format!(
                        "unknown type {:?}: subscribe, unsubscribe, presence or publish",
                        truncated(&kind)
                    ),
                ));
            }
        };
        let topic = reader.topic()?;
        let id = reader.id.clone();
        let message = match reader.kind {
            "subscribe" => Self::Subscribe {
                topic,
                resume: reader.resume()?,
                id,
            },
            "unsubscribe" => Self::Unsubscribe { topic, id },
            "presence" => Self::Presence { topic, id },
            _ => {
                let name = reader.string("event")?;
                let data = reader.fields.remove("data").unwrap_or(Value::Null);
                let event = Event::parse(&name, data)
                    .map_err(|e| reader.refuse(ErrorCode::InvalidEvent, format!("publish: {e}")))?;
                Self::Publish { topic, event, id }
            }
        };
        Ok(message)
    }
}

/// Takes the fields of one client message, with errors that name them.
struct Reader {
    kind: &'static str,
    fields: Map<String, Value>,
    id: Option<RequestId>,
}

impl Reader {
    fn refuse(&self, code: ErrorCode, message: String) -> Refusal {
        Refusal {
            code,
            message,
            id: self.id.clone(),
        }
    }

    fn missing(&self, field: &str) -> Refusal {
        self.refuse(
            ErrorCode::MissingField,
            format!("{}: the field `{field}` is missing", self.kind),
        )
    }

    fn invalid(&self, field: &str, what: &str) -> Refusal {
        self.refuse(
            ErrorCode::InvalidField,
            format!("{}: the field `{field}` must be {what}", self.kind),
        )
    }

    fn request_id(&mut self) -> Result<Option<RequestId>, Refusal> {
        let id = match self.fields.remove("id") {
            None | Some(Value::Null) => return Ok(None),
            Some(id @ (Value::String(_) | Value::Number(_))) => id.to_string(),
            Some(_) => return Err(self.invalid("id", "a string or a number")),
        };
        if id.len() > 64 {
            return Err(self.invalid("id", "at most 64 bytes"));
        }
        Ok(Some(RequestId(id.into())))
    }

    fn string(&mut self, field: &str) -> Result<String, Refusal> {
        match self.fields.remove(field) {
            Some(Value::String(s)) => Ok(s),
            None => Err(self.missing(field)),
            Some(_) => Err(self.invalid(field, "a string")),
        }
    }

    fn topic(&mut self) -> Result<Topic, Refusal> {
        let name = self.string("topic")?;
        Topic::new(&name)
            .map_err(|e| self.refuse(ErrorCode::InvalidTopic, format!("{}: {e}", self.kind)))
    }

    fn resume(&mut self) -> Result<Option<Position>, Refusal> {
        let resume = match self.fields.remove("resume") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(resume)) => resume,
            Some(_) => return Err(self.invalid("resume", "an object with `epoch` and `offset`")),
        };
        let epoch = match resume.get("epoch") {
            Some(Value::String(epoch)) => Epoch::parse(epoch)
                .ok_or_else(|| self.invalid("resume.epoch", "an epoch the hub sent"))?,
            None => return Err(self.missing("resume.epoch")),
            Some(_) => return Err(self.invalid("resume.epoch", "a string")),
        };
        let offset = match resume.get("offset") {
            Some(offset) => offset
                .as_u64()
                .ok_or_else(|| self.invalid("resume.offset", "a whole number of 0 or more"))?,
            None => return Err(self.missing("resume.offset")),
        };
        Ok(Some(Position { epoch, offset }))
    }
}

// ---- server messages ------------------------------------------------------

/// Writes a JSON string.
fn string(out: &mut String, s: &str) {
    // Writing a `str` into a `String` cannot fail.
    let json = serde_json::to_string(s).expect("a str serializes");
    out.push_str(&json);
}

fn position(out: &mut String, position: Position) {
    let _ = write!(
        out,
        "\"epoch\":\"{}\",\"offset\":{}",
        position.epoch, position.offset
    );
}

fn request_id(out: &mut String, id: Option<&RequestId>) {
    if let Some(id) = id {
        let _ = write!(out, ",\"id\":{}", id.as_json());
    }
}

/// An `event` message.
pub(crate) fn event(
    stream: &str,
    at: Position,
    event: &Event,
    priority: Priority,
    timestamp_ms: u64,
) -> Bytes {
    let mut out = String::with_capacity(128);
    out.push_str("{\"type\":\"event\",\"stream\":");
    string(&mut out, stream);
    out.push(',');
    position(&mut out, at);
    out.push_str(",\"event\":");
    string(&mut out, event.name());
    let _ = write!(
        out,
        ",\"priority\":\"{}\",\"ts\":{timestamp_ms},\"data\":",
        priority.as_str()
    );
    let mut bytes = out.into_bytes();
    event.write_data(&mut bytes);
    bytes.push(b'}');
    bytes.into()
}

/// A `join` or `leave` message.
pub(crate) fn presence_change(topic: &Topic, at: Position, user: &UserId, joined: bool) -> Bytes {
    let mut out = String::with_capacity(96);
    out.push_str(if joined {
        "{\"type\":\"join\",\"stream\":"
    } else {
        "{\"type\":\"leave\",\"stream\":"
    });
    string(&mut out, topic.as_str());
    out.push(',');
    position(&mut out, at);
    out.push_str(",\"user\":");
    string(&mut out, user.as_str());
    out.push('}');
    out.into()
}

/// A `gap` message: offsets `from..=to` of `stream` will not come live.
pub(crate) fn gap(stream: &str, epoch: Epoch, from: u64, to: u64) -> Bytes {
    let mut out = String::with_capacity(96);
    out.push_str("{\"type\":\"gap\",\"stream\":");
    string(&mut out, stream);
    let _ = write!(
        out,
        ",\"epoch\":\"{epoch}\",\"from\":{from},\"to\":{to},\"reason\":\"backpressure\"}}"
    );
    out.into()
}

/// The bytes of a `gap` message, without writing it. Stream names need no
/// escaping: `$user`, `$all` and topics are of characters JSON takes as
/// they are.
pub(crate) fn gap_size(stream: &str, from: u64, to: u64) -> usize {
    const FIXED: usize = r#"{"type":"gap","stream":"","epoch":"0123456789abcdef","from":,"to":,"reason":"backpressure"}"#.len();
    let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
    FIXED + stream.len() + digits(from) + digits(to)
}

/// Where a stream starts for a connection, in `welcome` and `subscribed`.
pub(crate) struct Start {
    pub(crate) position: Position,
    /// `Some` when the client asked to resume.
    pub(crate) recovered: Option<bool>,
}

/// The `welcome` message.
pub(crate) fn welcome(connection: ConnectionId, user: &UserId, streams: &[(&str, Start)]) -> Bytes {
    let mut out = String::with_capacity(192);
    let _ = write!(
        out,
        "{{\"type\":\"welcome\",\"connection\":\"{connection}\",\"user\":"
    );
    string(&mut out, user.as_str());
    out.push_str(",\"streams\":{");
    for (i, (name, start)) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, name);
        out.push_str(":{");
        start_fields(&mut out, start);
        out.push('}');
    }
    out.push_str("}}");
    out.into()
}

fn start_fields(out: &mut String, start: &Start) {
    position(out, start.position);
    if let Some(recovered) = start.recovered {
        let _ = write!(out, ",\"recovered\":{recovered}");
    }
}

/// The `subscribed` message.
pub(crate) fn subscribed(topic: &Topic, start: &Start, id: Option<&RequestId>) -> Bytes {
    let mut out = String::with_capacity(128);
    out.push_str("{\"type\":\"subscribed\",\"topic\":");
    string(&mut out, topic.as_str());
    out.push(',');
    start_fields(&mut out, start);
    request_id(&mut out, id);
    out.push('}');
    out.into()
}

/// The `unsubscribed` message.
pub(crate) fn unsubscribed(topic: &Topic, id: Option<&RequestId>) -> Bytes {
    let mut out = String::with_capacity(64);
    out.push_str("{\"type\":\"unsubscribed\",\"topic\":");
    string(&mut out, topic.as_str());
    request_id(&mut out, id);
    out.push('}');
    out.into()
}

/// The `presence` answer: each user in the topic with its subscribed
/// connections.
pub(crate) fn presence(topic: &Topic, users: &[(UserId, usize)], id: Option<&RequestId>) -> Bytes {
    let mut out = String::with_capacity(64 + users.len() * 24);
    out.push_str("{\"type\":\"presence\",\"topic\":");
    string(&mut out, topic.as_str());
    out.push_str(",\"users\":{");
    for (i, (user, connections)) in users.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, user.as_str());
        let _ = write!(out, ":{connections}");
    }
    out.push('}');
    request_id(&mut out, id);
    out.push('}');
    out.into()
}

/// The `published` answer to a client's publish.
pub(crate) fn published(topic: &Topic, at: Position, id: Option<&RequestId>) -> Bytes {
    let mut out = String::with_capacity(96);
    out.push_str("{\"type\":\"published\",\"topic\":");
    string(&mut out, topic.as_str());
    out.push(',');
    position(&mut out, at);
    request_id(&mut out, id);
    out.push('}');
    out.into()
}

/// An `error` message.
pub(crate) fn error(refusal: &Refusal) -> Bytes {
    let mut out = String::with_capacity(96 + refusal.message.len());
    out.push_str("{\"type\":\"error\",\"code\":\"");
    out.push_str(refusal.code.as_str());
    out.push_str("\",\"message\":");
    string(&mut out, &refusal.message);
    request_id(&mut out, refusal.id.as_ref());
    out.push('}');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_size_is_the_length_of_the_gap() {
        let epoch = Epoch::parse("00000000000000ff").unwrap();
        for (stream, from, to) in [
            ("$user", 0, 0),
            ("$all", 9, 10),
            ("room:a/b@c", 1, u64::MAX),
        ] {
            assert_eq!(
                gap(stream, epoch, from, to).len(),
                gap_size(stream, from, to)
            );
        }
    }
}
