//! The handshake parsers: arbitrary bytes into a server, and arbitrary
//! response bytes into a client.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use sockeye_core::Header;

use super::check::{Answer, Checked, HeaderSpec, ProtocolChoice, StatusChoice};
use super::peer::switch_head_open;
use super::{MAX_HANDSHAKE, chunks, small_config};

/// How the server answers a request, by the control byte's value.
fn server_answer(choice: u8) -> Option<Answer> {
    let accept = |protocol, header| Some(Answer::Accept { protocol, header });
    let respond = |status, header| {
        Some(Answer::Respond {
            status,
            body: b"go away".to_vec(),
            header,
        })
    };
    match choice % 8 {
        0 => accept(ProtocolChoice::None, None),
        1 => accept(ProtocolChoice::FirstOffered, Some(HeaderSpec::Good)),
        2 => accept(ProtocolChoice::Unoffered, None),
        3 => accept(
            ProtocolChoice::None,
            Some(HeaderSpec::Any(Header::new("Bad Name", "v"))),
        ),
        4 => respond(StatusChoice::Forbidden, None),
        5 => respond(StatusChoice::Any(101), None),
        6 => respond(StatusChoice::Ok, Some(HeaderSpec::Good)),
        _ => None,
    }
}

/// The server's request parser.
///
/// Input: three control bytes, then the bytes the client sends.
///
/// * byte 0: chunking seed (0: one chunk);
/// * byte 1: how to answer a request (accept, with or without a protocol or
///   header, with a bad protocol or header, refuse, or not at all);
/// * byte 2: bits 0–1 pick `max_handshake_size` (512, 1024, 8192, 8192),
///   bits 2–3 `max_headers` (8, 16, 64, 64); bit 4 ends with EOF, bit 5
///   with the handshake timeout, bit 6 answers only after all the bytes.
///
/// Real browser requests are around 500 bytes, so the seeds pick 8 KiB.
pub fn handshake_server(data: &[u8]) {
    run_server(data);
}

/// Runs [`handshake_server`] and returns the milestones reached.
pub(crate) fn run_server(data: &[u8]) -> BTreeSet<String> {
    let mut u = Unstructured::new(data);
    let seed: u8 = u.arbitrary().unwrap_or_default();
    let choice: u8 = u.arbitrary().unwrap_or_default();
    let flags: u8 = u.arbitrary().unwrap_or_default();
    let bytes = u.take_rest();

    let config = sockeye_core::Config {
        max_handshake_size: [MAX_HANDSHAKE, 1024, 8192, 8192][usize::from(flags & 3)],
        max_headers: [8, 16, 64, 64][usize::from((flags >> 2) & 3)],
        ..small_config()
    };
    let now = Instant::now();
    let mut server = Checked::server(config, now);
    let answer = server_answer(choice);
    let late = flags & 0x40 != 0;
    if !late {
        server.auto_answer = answer.clone();
    }
    for chunk in chunks(bytes, seed, 64) {
        server.input(chunk);
    }
    if late && let Some(answer) = &answer {
        server.answer(answer);
    }
    if flags & 0x10 != 0 {
        server.eof();
    }
    if flags & 0x20 != 0 {
        server.advance(Duration::from_secs(11));
    }
    server.checker.features
}

/// The client's response parser.
///
/// Input: three control bytes, then the bytes the server sends.
///
/// * byte 0: chunking seed (0: one chunk);
/// * byte 1: mode, modulo 3: 0 feeds the bytes alone; 1 feeds a valid 101
///   response for the client's real key first, so the bytes are frames;
///   2 feeds that response without its final blank line, so the bytes go
///   on with more headers;
/// * byte 2: bit 0 ends with EOF, bit 1 with the handshake timeout, bit 2
///   sends a message and a close once open, bit 3 picks the 8 KiB head
///   limit instead of 512 bytes.
pub fn handshake_client(data: &[u8]) {
    run_client(data);
}

/// Runs [`handshake_client`] and returns the milestones reached.
pub(crate) fn run_client(data: &[u8]) -> BTreeSet<String> {
    let mut u = Unstructured::new(data);
    let seed: u8 = u.arbitrary().unwrap_or_default();
    let mode: u8 = u.arbitrary().unwrap_or_default();
    let flags: u8 = u.arbitrary().unwrap_or_default();
    let bytes = u.take_rest();

    let config = sockeye_core::Config {
        max_handshake_size: if flags & 8 != 0 { 8192 } else { MAX_HANDSHAKE },
        ..small_config()
    };
    // A fixed seed gives a fixed key, so mode 0 can reach an accepted
    // handshake too (the seeds hold the matching response).
    let mut client = Checked::client(config, CLIENT_SEED, Instant::now());
    let mut stream = match mode % 3 {
        0 => Vec::new(),
        1 => [switch_head_open(&client.request_key()), b"\r\n".to_vec()].concat(),
        _ => switch_head_open(&client.request_key()),
    };
    stream.extend_from_slice(bytes);
    for chunk in chunks(&stream, seed, 64) {
        client.input(chunk);
    }
    if flags & 4 != 0 {
        client.send(sockeye_core::Message::text("hello"));
        client.close(sockeye_core::CloseCode::NORMAL, "done");
    }
    if flags & 1 != 0 {
        client.eof();
    }
    if flags & 2 != 0 {
        client.advance(Duration::from_secs(11));
    }
    client.checker.features
}

/// The seed of the client connection in [`handshake_client`]. Fixed, so its
/// key is too, and a complete 101 response in the corpus stays valid.
pub(crate) const CLIENT_SEED: u64 = 0x5eed;
