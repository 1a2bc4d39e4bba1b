//! What a fuzzed peer sends: frames built from a structured description
//! (valid by default, with one optional deliberate flaw), and the handshake
//! messages of the other role. The encoder here is written independently of
//! the core's, so that a shared misreading of RFC 6455 would show.

use arbitrary::Arbitrary;
use sockeye_core::frame::Opcode;
use sockeye_core::testing::{Frame, Length};
use sockeye_core::{RequestError, Role, accept_key};

/// Payloads that may repeat a byte this many times at most: enough to cross
/// the fuzz limits (2 KiB frames, 4 KiB messages) without slow inputs.
const MAX_FILL: usize = 6000;

/// The codes a close frame may carry (RFC 6455 §7.4), to pick valid ones.
const VALID_CLOSE_CODES: [u16; 12] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 4999,
];

/// One frame, as the peer of the connection under test sends it.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) struct FrameSpec {
    pub(crate) fin: bool,
    /// One of the six defined opcodes; [`Flaw::ReservedOpcode`] picks the
    /// others.
    pub(crate) opcode: Opcode,
    pub(crate) payload: PayloadSpec,
    pub(crate) key: [u8; 4],
    /// A rule to break on purpose, if any.
    pub(crate) flaw: Option<Flaw>,
}

/// The frame's payload.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) enum PayloadSpec {
    Bytes(Vec<u8>),
    Text(String),
    /// A close payload: a code (a valid one if `valid`) and a reason.
    Close {
        valid: bool,
        code: u16,
        reason: String,
    },
    /// `byte` repeated: a large payload from a small input.
    Fill {
        byte: u8,
        len: u16,
    },
}

impl PayloadSpec {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Bytes(bytes) => bytes.clone(),
            Self::Text(text) => text.as_bytes().to_vec(),
            Self::Close {
                valid,
                code,
                reason,
            } => {
                let code = if *valid {
                    VALID_CLOSE_CODES[usize::from(*code) % VALID_CLOSE_CODES.len()]
                } else {
                    *code
                };
                let mut out = code.to_be_bytes().to_vec();
                out.extend_from_slice(reason.as_bytes());
                out
            }
            Self::Fill { byte, len } => vec![*byte; usize::from(*len) % MAX_FILL],
        }
    }
}

/// A deliberate violation.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum Flaw {
    /// Masked from a server, or unmasked from a client.
    WrongMask,
    /// RSV bits set (the low three bits of the value).
    Rsv(u8),
    /// A reserved opcode (3–7 or 0xB–0xF).
    ReservedOpcode(u8),
    /// A 64-bit length field whatever the length (legal, unusual).
    LongLength,
    /// A 64-bit length with the top bit set.
    HugeLength,
    /// The header (in the 64-bit form) claims this many more bytes than
    /// follow.
    ShortPayload(u8),
    /// Cut the frame after this many bytes.
    Truncate(u16),
}

/// Encodes a frame as a peer of role `sender` sends it, with the shared
/// frame builder.
pub(crate) fn encode_frame(spec: &FrameSpec, sender: Role) -> Vec<u8> {
    let payload = spec.payload.bytes();
    let len = payload.len() as u64;
    let mut frame = Frame::new(spec.opcode.as_u8(), payload).fin(spec.fin);
    let mut masked = sender == Role::Client;
    match spec.flaw {
        Some(Flaw::WrongMask) => masked = !masked,
        Some(Flaw::Rsv(bits)) => frame = frame.rsv((bits & 0x7).max(1)),
        Some(Flaw::ReservedOpcode(n)) => {
            frame.opcode = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF][usize::from(n) % 10]
        }
        Some(Flaw::LongLength) => frame = frame.length(Length::SixtyFour),
        Some(Flaw::HugeLength) => frame = frame.length(Length::Declared(len | 1 << 63)),
        Some(Flaw::ShortPayload(extra)) => {
            frame = frame.length(Length::Declared(len + u64::from(extra) + 1))
        }
        Some(Flaw::Truncate(_)) | None => {}
    }
    if masked {
        frame = frame.masked(spec.key);
    }
    let mut out = frame.encode();
    if let Some(Flaw::Truncate(keep)) = spec.flaw {
        out.truncate(usize::from(keep) % (out.len() + 1));
    }
    out
}

/// An upgrade request as a client sends it: valid, or broken in one way
/// whose refusal the documentation specifies.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) struct RequestSpec {
    /// Which of [`PROTOCOL_OFFERS`] to offer.
    pub(crate) protocols: u8,
    pub(crate) extensions: bool,
    pub(crate) origin: bool,
    /// The key's 16 bytes; `None` for the example key of RFC 6455 §1.3.
    pub(crate) key: Option<[u8; 16]>,
    pub(crate) breakage: Option<Breakage>,
}

/// The subprotocol offers a fuzzed request can make.
const PROTOCOL_OFFERS: [&str; 4] = ["", "chat", "chat, superchat", "v2.example.com"];

/// One way to break an upgrade request.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breakage {
    Post,
    Http10,
    NoHost,
    TwoHosts,
    NoUpgrade,
    NoConnection,
    Version8,
    NoVersion,
    NoKey,
    ShortKey,
    TwoKeys,
    Body,
    BadProtocol,
    BadExtension,
    /// No WebSocket headers at all: a plain HTTP request.
    Plain,
}

impl Breakage {
    /// How the server must refuse it; `None` for a plain request, which is
    /// reported as `HttpRequest`.
    pub(crate) fn error(self) -> Option<RequestError> {
        Some(match self {
            Self::Post => RequestError::MethodNotGet("POST".into()),
            Self::Http10 => RequestError::NotHttp11,
            Self::NoHost => RequestError::MissingHost,
            Self::TwoHosts => RequestError::DuplicateHeader("Host"),
            Self::NoUpgrade => RequestError::MissingUpgrade,
            Self::NoConnection => RequestError::MissingConnectionUpgrade,
            Self::Version8 => RequestError::UnsupportedVersion(Some("8".into())),
            Self::NoVersion => RequestError::UnsupportedVersion(None),
            Self::NoKey => RequestError::MissingKey,
            Self::ShortKey => RequestError::InvalidKey,
            Self::TwoKeys => RequestError::DuplicateHeader("Sec-WebSocket-Key"),
            Self::Body => RequestError::UnexpectedBody,
            Self::BadProtocol => RequestError::MalformedProtocols,
            Self::BadExtension => {
                RequestError::MalformedExtensions("invalid extension name \"a b\"".into())
            }
            Self::Plain => return None,
        })
    }
}

impl RequestSpec {
    /// The request head.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let b = self.breakage;
        let key = match self.key {
            Some(raw) => base64(&raw),
            None => "dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
        };
        let method = if b == Some(Breakage::Post) {
            "POST"
        } else {
            "GET"
        };
        let version = if b == Some(Breakage::Http10) {
            "1.0"
        } else {
            "1.1"
        };
        let mut lines = vec![format!("{method} /chat?room=1 HTTP/{version}")];
        if b == Some(Breakage::Plain) {
            lines.push("Host: server.example.com".into());
            lines.push("Accept: */*".into());
            return head(lines);
        }
        if b != Some(Breakage::NoHost) {
            lines.push("Host: server.example.com".into());
        }
        if b == Some(Breakage::TwoHosts) {
            lines.push("Host: other.example.com".into());
        }
        if b != Some(Breakage::NoUpgrade) {
            lines.push("Upgrade: websocket".into());
        }
        if b != Some(Breakage::NoConnection) {
            lines.push("Connection: keep-alive, Upgrade".into());
        }
        if b != Some(Breakage::NoKey) {
            let key = if b == Some(Breakage::ShortKey) {
                "c2hvcnQ="
            } else {
                &key
            };
            lines.push(format!("Sec-WebSocket-Key: {key}"));
        }
        if b == Some(Breakage::TwoKeys) {
            lines.push(format!("Sec-WebSocket-Key: {key}"));
        }
        match b {
            Some(Breakage::NoVersion) => {}
            Some(Breakage::Version8) => lines.push("Sec-WebSocket-Version: 8".into()),
            _ => lines.push("Sec-WebSocket-Version: 13".into()),
        }
        if b == Some(Breakage::Body) {
            lines.push("Content-Length: 5".into());
        }
        let offer = PROTOCOL_OFFERS[usize::from(self.protocols) % PROTOCOL_OFFERS.len()];
        if b == Some(Breakage::BadProtocol) {
            lines.push("Sec-WebSocket-Protocol: chat, a b".into());
        } else if !offer.is_empty() {
            lines.push(format!("Sec-WebSocket-Protocol: {offer}"));
        }
        if b == Some(Breakage::BadExtension) {
            lines.push("Sec-WebSocket-Extensions: a b".into());
        } else if self.extensions {
            lines.push(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits".into(),
            );
        }
        if self.origin {
            lines.push("Origin: http://example.com".into());
        }
        head(lines)
    }
}

/// A server's answer to the fuzzed client's request.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) enum ResponseSpec {
    /// A 101, valid unless broken.
    Switch {
        /// Choose the client's first subprotocol.
        protocol: bool,
        breakage: Option<ResponseBreakage>,
    },
    /// A refusal with a body; `Content-Length` is sent if `length`.
    Refuse {
        status: u16,
        length: bool,
        body: Vec<u8>,
    },
}

/// One way to break a 101 response.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseBreakage {
    NoUpgrade,
    NoConnection,
    NoAccept,
    WrongAccept,
    TwoAccepts,
    UnofferedProtocol,
    Extension,
}

impl ResponseSpec {
    /// The response head (and body) for a request whose key was `key`.
    pub(crate) fn encode(&self, key: &str) -> Vec<u8> {
        let accept = accept_key(key.as_bytes());
        match self {
            Self::Switch { protocol, breakage } => {
                let b = *breakage;
                let mut lines = vec!["HTTP/1.1 101 Switching Protocols".to_owned()];
                if b != Some(ResponseBreakage::NoUpgrade) {
                    lines.push("Upgrade: websocket".into());
                }
                if b != Some(ResponseBreakage::NoConnection) {
                    lines.push("Connection: Upgrade".into());
                }
                match b {
                    Some(ResponseBreakage::NoAccept) => {}
                    Some(ResponseBreakage::WrongAccept) => {
                        lines.push(format!("Sec-WebSocket-Accept: {}", accept_key(b"x")))
                    }
                    Some(ResponseBreakage::TwoAccepts) => {
                        lines.push(format!("Sec-WebSocket-Accept: {accept}"));
                        lines.push(format!("Sec-WebSocket-Accept: {accept}"));
                    }
                    _ => lines.push(format!("Sec-WebSocket-Accept: {accept}")),
                }
                if b == Some(ResponseBreakage::UnofferedProtocol) {
                    lines.push("Sec-WebSocket-Protocol: x-unoffered".into());
                } else if *protocol {
                    lines.push("Sec-WebSocket-Protocol: chat".into());
                }
                if b == Some(ResponseBreakage::Extension) {
                    lines.push("Sec-WebSocket-Extensions: permessage-deflate".into());
                }
                head(lines)
            }
            Self::Refuse {
                status,
                length,
                body,
            } => {
                // Any 3-digit status but 101.
                let status = match 100 + status % 900 {
                    101 => 400,
                    s => s,
                };
                let mut lines = vec![format!("HTTP/1.1 {status} Refused")];
                if *length {
                    lines.push(format!("Content-Length: {}", body.len()));
                }
                let mut out = head(lines);
                out.extend_from_slice(body);
                out
            }
        }
    }
}

/// The 101 response to a request with `key`, minus its final blank line, so
/// a fuzz input can add headers or end it.
pub(crate) fn switch_head_open(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key.as_bytes())
    )
    .into_bytes()
}

fn head(lines: Vec<String>) -> Vec<u8> {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n\r\n");
    out.into_bytes()
}

/// Standard base64 with padding, independent of the core's encoder.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw), encoded);
        }
    }

    #[test]
    fn frames_encode_as_rfc_6455_section_5_7() {
        let hello = FrameSpec {
            fin: true,
            opcode: Opcode::Text,
            payload: PayloadSpec::Text("Hello".into()),
            key: [0x37, 0xfa, 0x21, 0x3d],
            flaw: None,
        };
        assert_eq!(encode_frame(&hello, Role::Server), b"\x81\x05Hello");
        assert_eq!(
            encode_frame(&hello, Role::Client),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }
}
