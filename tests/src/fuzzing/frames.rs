//! The frame decoder alone: against itself under any chunking, against
//! [`reference`](super::reference), and against `std::str::from_utf8`.

use arbitrary::Unstructured;
use sockeye_core::frame::{Decoded, Decoder, MAX_HEADER_LEN};
use sockeye_core::testing::Frame;
use sockeye_core::{Config, MAX_CLOSE_REASON, Message, ProtocolError, Role};

use super::{chunks, reference, small_config};

/// What a decoder made of a stream fed in given chunks.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    items: Vec<Decoded>,
    error: Option<ProtocolError>,
    buffered: usize,
    /// Stream offsets of the chunk whose decoding failed.
    failed_in: Option<(usize, usize)>,
}

/// Feeds `parts` to a fresh decoder, checking every item and the buffer
/// bound after every call, until the end or the first error.
fn run(role: Role, config: &Config, parts: &[&[u8]]) -> Run {
    let mut decoder = Decoder::new(role, config);
    let bound = config.max_message_size + 125 + MAX_HEADER_LEN;
    let mut items = Vec::new();
    let mut offset = 0;
    for part in parts {
        let mut input = *part;
        loop {
            let result = decoder.decode(&mut input);
            assert!(
                decoder.buffered() <= bound,
                "decoder holds {}",
                decoder.buffered()
            );
            match result {
                Ok(Some(item)) => {
                    check_item(config, &item);
                    items.push(item);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "None with input left");
                    break;
                }
                Err(error) => {
                    return Run {
                        items,
                        error: Some(error),
                        buffered: 0,
                        failed_in: Some((offset, offset + part.len())),
                    };
                }
            }
        }
        offset += part.len();
    }
    Run {
        items,
        error: None,
        buffered: decoder.buffered(),
        failed_in: None,
    }
}

/// What any decoded item must satisfy.
fn check_item(config: &Config, item: &Decoded) {
    match item {
        Decoded::Message(message) => {
            assert!(message.len() <= config.max_message_size);
            if let Message::Text(text) = message {
                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
            }
        }
        Decoded::Ping(payload) | Decoded::Pong(payload) => assert!(payload.len() <= 125),
        Decoded::Close(Some(frame)) => {
            assert!(frame.code.is_valid_on_wire());
            assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        }
        Decoded::Close(None) => {}
    }
}

/// The frame decoder, in either role.
///
/// Input: three control bytes, then the byte stream.
///
/// * byte 0: bit 0 set decodes as a client (unmasked server frames),
///   clear as a server (masked client frames); bits 1–2 pick the read
///   buffer size (1, 64, 4096, 64);
/// * byte 1: chunking seed (0: one chunk);
/// * byte 2: largest chunk.
///
/// The stream is decoded whole and in chunks: both must give the same
/// items, error and buffered byte count, and so must the reference decoder.
pub fn frame_decoder(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags: u8 = u.arbitrary().unwrap_or_default();
    let seed: u8 = u.arbitrary().unwrap_or_default();
    let max: u8 = u.arbitrary().unwrap_or_default();
    let stream = u.take_rest();

    let role = if flags & 1 != 0 {
        Role::Client
    } else {
        Role::Server
    };
    let config = Config {
        read_buffer_size: [1, 64, 4096, 64][usize::from((flags >> 1) & 3)],
        ..small_config()
    };
    let whole = run(role, &config, &[stream]);
    let chunked = run(role, &config, &chunks(stream, seed, max));
    assert_eq!(
        (&whole.items, &whole.error, whole.buffered),
        (&chunked.items, &chunked.error, chunked.buffered),
        "chunking changed the result"
    );
    let expected = reference::decode(role, &config, stream);
    assert_eq!(
        whole.items, expected.items,
        "items differ from the reference"
    );
    assert_eq!(
        whole.error, expected.error,
        "error differs from the reference"
    );
    if expected.error.is_none() {
        assert_eq!(whole.buffered, expected.buffered, "buffered differs");
    }
}

/// The text path against `std::str::from_utf8`.
///
/// Input: five control bytes, then the payload of one text message.
///
/// * byte 0: bit 0 set decodes as a client (the frames are a server's),
///   clear as a server; bit 1 puts a ping between fragments; bit 2 ends with
///   an empty final fragment; bits 3–4 pick the read buffer size (1, 16,
///   4096, 64);
/// * bytes 1–2: fragmentation seed and largest fragment (0: one frame);
/// * bytes 3–4: chunking seed and largest chunk of the wire bytes.
///
/// The message must decode iff the payload is UTF-8. If it is not, the
/// error must be `InvalidUtf8`, raised by the call that received the byte
/// that made the payload invalid (or an earlier one, though not before the
/// bad sequence started): fail fast (RFC 6455 §8.1).
pub fn utf8_differential(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags: u8 = u.arbitrary().unwrap_or_default();
    let frag_seed: u8 = u.arbitrary().unwrap_or_default();
    let frag_max: u8 = u.arbitrary().unwrap_or_default();
    let chunk_seed: u8 = u.arbitrary().unwrap_or_default();
    let chunk_max: u8 = u.arbitrary().unwrap_or_default();
    let payload = u.take_rest();

    let (role, sender) = if flags & 1 != 0 {
        (Role::Client, Role::Server)
    } else {
        (Role::Server, Role::Client)
    };
    let config = Config {
        read_buffer_size: [1, 16, 4096, 64][usize::from((flags >> 3) & 3)],
        ..Config::default()
    };
    let mut fragments = chunks(payload, frag_seed, frag_max);
    if flags & 4 != 0 {
        fragments.push(&[]);
    }
    // The wire bytes, and where each payload byte sits in them.
    let mut stream = Vec::new();
    let mut position = Vec::with_capacity(payload.len());
    let key = [frag_seed, frag_max, chunk_seed, 0x5a];
    // A client masks with a key from the input, so that the masking varies.
    let sent = |frame: Frame| match sender {
        Role::Client => frame.masked(key).encode(),
        Role::Server => frame.encode(),
    };
    let mut pings = 0;
    for (i, fragment) in fragments.iter().enumerate() {
        let last = i + 1 == fragments.len();
        // Text, then continuations.
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        let frame = sent(Frame::new(opcode, fragment.to_vec()).fin(last));
        let start = stream.len() + frame.len() - fragment.len();
        position.extend(start..start + fragment.len());
        stream.extend_from_slice(&frame);
        if flags & 2 != 0 && !last {
            stream.extend_from_slice(&sent(Frame::ping(vec![b'p'; i % 3])));
            pings += 1;
        }
    }
    let result = run(role, &config, &chunks(&stream, chunk_seed, chunk_max));
    let (messages, controls): (Vec<_>, Vec<_>) = result
        .items
        .iter()
        .partition(|item| matches!(item, Decoded::Message(_)));
    match std::str::from_utf8(payload) {
        Ok(text) => {
            assert_eq!(result.error, None, "valid UTF-8 refused");
            assert_eq!(messages, [&Decoded::Message(Message::text(text))]);
            assert_eq!(controls.len(), pings);
        }
        Err(e) => {
            assert_eq!(
                result.error,
                Some(ProtocolError::InvalidUtf8),
                "invalid UTF-8 accepted"
            );
            assert!(messages.is_empty());
            let (start, end) = result.failed_in.expect("failed somewhere");
            // The first byte of the bad sequence must have been fed...
            assert!(
                end > position[e.valid_up_to()],
                "failed before the bad sequence"
            );
            // ...and the failure must come no later than the call that fed
            // the byte proving it: the byte after the sequence, or the end
            // of the message for a sequence cut short.
            let proof = match e.error_len() {
                Some(len) => position[(e.valid_up_to() + len).min(payload.len() - 1)],
                None => stream.len() - 1,
            };
            assert!(
                start <= proof,
                "not fail-fast: fed {start} bytes, proof at {proof}"
            );
        }
    }
}
