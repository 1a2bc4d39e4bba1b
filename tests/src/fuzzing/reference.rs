//! A reference frame decoder: the rules of RFC 6455 §5 written as plainly as
//! possible, over a whole buffer at once, for [`super::frame_decoder`] to
//! compare the incremental [`Decoder`](sockeye_core::frame::Decoder) with.
//!
//! When a frame breaks several rules, the RFC does not say which to report;
//! this checks them in the order the core documents for its `Decoder`
//! (header, masking, reserved bits, control-frame rules, fragmentation,
//! sizes), so that the error itself can be compared, not just its presence.

use sockeye_core::frame::{Decoded, Role};
use sockeye_core::{CloseCode, CloseFrame, Config, Message, ProtocolError};

/// What decoding a whole stream gives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) items: Vec<Decoded>,
    /// The error that stopped decoding, if any.
    pub(crate) error: Option<ProtocolError>,
    /// Bytes held for an unfinished header, frame or message at the end.
    /// Only meaningful without an error.
    pub(crate) buffered: usize,
}

/// Decodes `stream` as a connection of `role` with `config`'s limits.
pub(crate) fn decode(role: Role, config: &Config, stream: &[u8]) -> Outcome {
    let mut items = Vec::new();
    // The data message in progress: whether it is text, and its payload.
    let mut message: Option<(bool, Vec<u8>)> = None;
    let mut pos = 0;
    let fail = |items, error| Outcome {
        items,
        error: Some(error),
        buffered: 0,
    };
    loop {
        let rest = &stream[pos..];
        let held = message.as_ref().map_or(0, |(_, m)| m.len());
        let incomplete = |items| Outcome {
            items,
            error: None,
            buffered: held + rest.len(),
        };
        let [b0, b1, ..] = *rest else {
            return incomplete(items);
        };
        let opcode = b0 & 0x0F;
        if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
            return fail(items, ProtocolError::ReservedOpcode(opcode));
        }
        let (len, mut at) = match b1 & 0x7F {
            126 => match rest.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return incomplete(items),
            },
            127 => match rest.get(2..10) {
                Some(b) => {
                    let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    if len >= 1 << 63 {
                        return fail(items, ProtocolError::InvalidLength);
                    }
                    (len, 10)
                }
                None => return incomplete(items),
            },
            n => (u64::from(n), 2),
        };
        let key = if b1 & 0x80 != 0 {
            match rest.get(at..at + 4) {
                Some(k) => {
                    at += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return incomplete(items),
            }
        } else {
            None
        };
        match (role, key) {
            (Role::Server, None) => return fail(items, ProtocolError::UnmaskedClientFrame),
            (Role::Client, Some(_)) => return fail(items, ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let rsv = (b0 >> 4) & 0x7;
        if rsv != 0 {
            return fail(items, ProtocolError::ReservedBits(rsv));
        }
        let fin = b0 & 0x80 != 0;
        let control = opcode >= 0x8;
        if control {
            if !fin {
                return fail(items, ProtocolError::FragmentedControl);
            }
            if len > 125 {
                return fail(items, ProtocolError::ControlTooLarge(len));
            }
        } else {
            match (opcode, &message) {
                (0x0, None) => return fail(items, ProtocolError::UnexpectedContinuation),
                (0x1 | 0x2, Some(_)) => return fail(items, ProtocolError::ExpectedContinuation),
                _ => {}
            }
            if len > config.max_frame_size as u64 {
                let max = config.max_frame_size;
                return fail(items, ProtocolError::FrameTooLarge { size: len, max });
            }
            let total = held as u64 + len;
            if total > config.max_message_size as u64 {
                let max = config.max_message_size;
                return fail(items, ProtocolError::MessageTooLarge { size: total, max });
            }
            if opcode != 0x0 {
                message = Some((opcode == 0x1, Vec::new()));
            }
        }
        // What of the payload has arrived, unmasked.
        let available = (rest.len() - at).min(len as usize);
        let mut payload = rest[at..at + available].to_vec();
        if let Some(key) = key {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        let complete = available as u64 == len;
        if control {
            if !complete {
                return Outcome {
                    items,
                    error: None,
                    buffered: held + available,
                };
            }
            items.push(match opcode {
                0x9 => Decoded::Ping(payload.into()),
                0xA => Decoded::Pong(payload.into()),
                _ => match close_frame(&payload) {
                    Ok(frame) => Decoded::Close(frame),
                    Err(error) => return fail(items, error),
                },
            });
        } else {
            let (text, body) = message.as_mut().expect("a message in progress");
            body.extend_from_slice(&payload);
            // Fail fast: a prefix that no continuation can make valid.
            if *text
                && let Err(e) = std::str::from_utf8(body)
                && e.error_len().is_some()
            {
                return fail(items, ProtocolError::InvalidUtf8);
            }
            if !complete {
                return Outcome {
                    items,
                    error: None,
                    buffered: body.len(),
                };
            }
            if fin {
                let (text, body) = message.take().expect("a message in progress");
                items.push(Decoded::Message(if text {
                    match String::from_utf8(body) {
                        Ok(text) => Message::text(text),
                        Err(_) => return fail(items, ProtocolError::InvalidUtf8),
                    }
                } else {
                    Message::binary(body)
                }));
            }
        }
        pos += at + available;
    }
}

/// A close frame's payload (§5.5.1, §7.4): empty, or a code that may be
/// sent and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::TruncatedCloseCode),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // 1000–1003 and 1007–1014 are assigned and may be sent (1004 is
            // reserved, 1005 and 1006 are local-only, 1015 is TLS); 3000–4999
            // belong to libraries and applications.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code: CloseCode::new(code),
                reason: reason.to_owned(),
            }))
        }
    }
}
