//! The fuzz targets' logic: input decoding and invariant checks.
//!
//! Each target is one `pub fn NAME(data: &[u8])` here. The cargo-fuzz
//! binaries in `fuzz/fuzz_targets/` are one-line wrappers around them, and
//! `tests/tests/fuzz_corpus.rs` replays the committed corpus
//! (`fuzz/corpus/NAME/`) through the very same functions under plain
//! `cargo test`, so a regression input replays without nightly or libFuzzer.
//!
//! Every target asserts invariants, so a violation is a crash the fuzzer
//! reports, not just a panic-free run. The connection targets drive the core
//! with the shared harness, [`sockeye_core::testing`] (an `Endpoint` per
//! scripted connection, a `Pair` for [`round_trip`]), so they check the
//! rules every test checks, and `check.rs` adds what each scenario predicts:
//!
//! * received bytes held by a connection stay under the documented caps;
//! * the state only moves forward, and `Closed` is the last event, once,
//!   with the close code its cause documents (`Grammar`);
//! * our own output reads back as RFC 6455 allows a sender to write it
//!   (`Wire`), and nothing is written after a close frame or once the
//!   transport is half-closed;
//! * every failure sends its documented close code or HTTP status;
//! * usage errors are the documented ones and leave the connection
//!   unchanged.
//!
//! The byte-oriented targets ([`handshake_server`], [`handshake_client`],
//! [`frame_decoder`], [`utf8_differential`]) take a few control bytes and
//! then raw bytes, so real handshakes and frames make readable seeds. The
//! scenario targets ([`connection_server`], [`connection_client`],
//! [`round_trip`]) decode a structured input with [`arbitrary`].

mod check;
mod connection;
mod frames;
mod handshake;
mod hub;
mod peer;
mod reference;
mod round_trip;
pub mod seeds;

use std::time::Duration;

use sockeye_core::Config;

pub use connection::{connection_client, connection_server};
pub use frames::{frame_decoder, utf8_differential};
pub use handshake::{handshake_client, handshake_server};
pub use hub::hub_client;
pub use round_trip::round_trip;

/// A fuzz target: the name of its cargo-fuzz binary and corpus directory,
/// and the function that runs one input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name. The corpus replay test and the CI script iterate
/// over this list, and the replay test checks that `fuzz/` has a binary for
/// each.
pub const TARGETS: &[Target] = &[
    ("handshake_server", handshake_server),
    ("handshake_client", handshake_client),
    ("frame_decoder", frame_decoder),
    ("connection_server", connection_server),
    ("connection_client", connection_client),
    ("utf8_differential", utf8_differential),
    ("round_trip", round_trip),
    ("hub_client", hub_client),
];

/// Largest message a fuzzed connection accepts. Small, so that the size
/// limits are reachable with inputs of a few kilobytes.
const MAX_MESSAGE: usize = 4096;
/// Largest frame a fuzzed connection accepts.
const MAX_FRAME: usize = 2048;
/// Largest handshake head a fuzzed connection accepts (unless a target picks
/// a larger one to fit real browser requests).
const MAX_HANDSHAKE: usize = 512;

/// The configuration the connection targets start from: limits small enough
/// for fuzz inputs to reach, and a small read buffer so that buffer growth
/// and sharing are exercised too.
fn small_config() -> Config {
    Config {
        max_handshake_size: MAX_HANDSHAKE,
        max_headers: 16,
        max_frame_size: MAX_FRAME,
        max_message_size: MAX_MESSAGE,
        fragment_size: None,
        read_buffer_size: 64,
        handshake_timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(5),
        ping_interval: Some(Duration::from_secs(30)),
        max_missed_pongs: 2,
        idle_timeout: None,
        write_buffer_high_water: 256 * 1024,
    }
}

/// Splits `data` into chunks whose lengths (1 to `max`) come from a
/// SplitMix64 stream seeded with `seed`. Seed 0 or `max` 0 keeps `data`
/// whole. Deterministic, so a crash replays with the same chunking.
fn chunks(data: &[u8], seed: u8, max: u8) -> Vec<&[u8]> {
    if seed == 0 || max == 0 || data.is_empty() {
        return vec![data];
    }
    let mut rng = SplitMix64(u64::from(seed));
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = 1 + (rng.next() % u64::from(max)) as usize;
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// The generator behind [`chunks`]: tiny, and independent of the core's own.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for (seed, max) in [(0, 9), (1, 1), (7, 3), (200, 64), (5, 0)] {
            let parts = chunks(&data, seed, max);
            assert_eq!(parts.concat(), data);
            if seed != 0 && max != 0 {
                assert!(
                    parts
                        .iter()
                        .all(|c| !c.is_empty() && c.len() <= max as usize)
                );
            }
        }
    }
}
