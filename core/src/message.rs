//! Data messages, as sent and received.

use bytes::Bytes;

use crate::utf8::Utf8Bytes;

/// A complete text or binary message.
///
/// Payloads are reference-counted: receiving hands out the decoder's buffer
/// without copying, and sending the same `Message` to many connections shares
/// one payload. Received messages under 1 KiB share an allocation with their
/// neighbours; to keep many of them for long, copy them out
/// (`Bytes::copy_from_slice`) so they do not hold whole buffers alive.
///
/// ```
/// use sockeye_core::Message;
///
/// let hello = Message::text("hello");
/// assert_eq!(hello.as_text(), Some("hello"));
/// let raw = Message::binary(vec![1, 2, 3]);
/// assert_eq!(raw.payload().as_ref(), &[1, 2, 3]);
/// assert_eq!(raw.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message: valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Self::Binary(payload.into())
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The payload, without copying.
    pub fn into_payload(self) -> Bytes {
        match self {
            Self::Text(text) => text.into_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text.as_str()),
            Self::Binary(_) => None,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }
}
