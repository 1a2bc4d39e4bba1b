//! What the property tests (`properties.rs`, `model.rs`) share beyond
//! `sockeye_core::testing`: generated sides and message payloads, and the
//! documented input bound.

use proptest::prelude::*;
use sockeye_core::frame::MAX_HEADER_LEN;
use sockeye_core::testing::Side;
use sockeye_core::{Config, Message, State};

pub fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

/// A deterministic generator for payloads too big to let proptest build and
/// shrink byte by byte.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A message payload. Small ones are generated (and shrink) directly; big
/// ones are a length and a seed, so a failing case prints on one line.
#[derive(Debug, Clone)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
    /// About `len` bytes of text mixing 1- to 4-byte characters, so that
    /// fragment and chunk boundaries fall inside code points.
    BigText {
        len: usize,
        seed: u64,
    },
    BigBinary {
        len: usize,
        seed: u64,
    },
}

impl Payload {
    pub fn message(&self) -> Message {
        match self {
            Self::Text(text) => Message::text(text.as_str()),
            Self::Binary(bytes) => Message::binary(bytes.clone()),
            Self::BigText { len, seed } => {
                const PALETTE: [char; 8] = ['a', ' ', 'é', 'ж', '€', '中', '😀', '\u{10FFFF}'];
                let mut state = *seed;
                let mut text = String::with_capacity(len + 4);
                while text.len() < *len {
                    text.push(PALETTE[(splitmix(&mut state) % 8) as usize]);
                }
                Message::text(text)
            }
            Self::BigBinary { len, seed } => {
                let mut state = *seed;
                let bytes: Vec<u8> = (0..*len).map(|_| splitmix(&mut state) as u8).collect();
                Message::binary(bytes)
            }
        }
    }
}

/// The limit `buffered_input` documents once events are drained: twice the
/// handshake limit while handshaking, one message plus one control frame
/// (and a partial header) after.
pub fn input_bound(config: &Config, state: State) -> usize {
    match state {
        State::Handshaking => 2 * config.max_handshake_size,
        _ => config.max_message_size + 125 + MAX_HEADER_LEN,
    }
}
