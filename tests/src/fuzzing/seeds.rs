//! The seed corpus: what `fuzz/corpus/*/seed-*` holds, generated here so
//! that each seed says where it comes from.
//!
//! * Handshake seeds are RFC 6455 §1.3's example and the upgrade requests of
//!   Chrome, Firefox, Safari and curl as they send them (header order and
//!   values typical of current versions), plus the ways a server refuses.
//! * Frame seeds are RFC 6455 §5.7's examples and the frames of the core's
//!   unit tests, valid and invalid.
//! * UTF-8 seeds are the samples of the core's validator tests.
//! * The structured targets' seeds are found by a small search: random
//!   inputs are run, and each one that reaches a milestone no earlier seed
//!   reached (an event, an error, a state, a usage error) is kept.
//!
//! `cargo test -p sockeye-tests --test fuzz_corpus -- --ignored` rewrites
//! them; the output is deterministic.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use sockeye_core::testing::{Endpoint, Frame, base_instant};
use sockeye_core::{Config, Connection, Role};

use super::SplitMix64;
use super::handshake::CLIENT_SEED;
use super::peer::switch_head_open;

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// Its file name, without the `seed-` prefix.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
}

/// Writes every seed to `corpus/<target>/seed-<name>`, after removing the
/// `seed-*` files already there (inputs the fuzzer found are kept).
/// Returns how many seeds each target got.
pub fn write(corpus: &Path) -> io::Result<Vec<(&'static str, usize)>> {
    let seeds = all();
    let mut counts = Vec::new();
    for (target, _) in super::TARGETS {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        let mut count = 0;
        for seed in seeds.iter().filter(|s| s.target == *target) {
            std::fs::write(dir.join(format!("seed-{}", seed.name)), &seed.data)?;
            count += 1;
        }
        counts.push((*target, count));
    }
    Ok(counts)
}

/// Every seed, for every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    server_handshakes(&mut seeds);
    client_handshakes(&mut seeds);
    frames(&mut seeds);
    utf8(&mut seeds);
    for (name, data) in super::hub::seeds() {
        seeds.push(Seed {
            target: "hub_client",
            name: name.into(),
            data,
        });
    }
    for (target, run) in [
        (
            "connection_server",
            connection_server as fn(&[u8]) -> BTreeSet<String>,
        ),
        ("connection_client", connection_client),
        ("round_trip", super::round_trip::run),
    ] {
        for (i, data) in search(run, 0x5eed_0000 + target.len() as u64)
            .into_iter()
            .enumerate()
        {
            seeds.push(Seed {
                target,
                name: format!("search-{i:02}"),
                data,
            });
        }
    }
    seeds
}

fn connection_server(data: &[u8]) -> BTreeSet<String> {
    super::connection::run(Role::Server, data)
}

fn connection_client(data: &[u8]) -> BTreeSet<String> {
    super::connection::run(Role::Client, data)
}

/// Random inputs tried per structured target.
const SEARCH_BUDGET: usize = 100_000;
/// Seeds kept per structured target at most.
const SEARCH_KEEP: usize = 32;

/// Keeps each random input that reaches a milestone none before it did.
fn search(run: fn(&[u8]) -> BTreeSet<String>, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64(seed);
    let mut reached = BTreeSet::new();
    let mut kept = Vec::new();
    for _ in 0..SEARCH_BUDGET {
        let len = 32 + (rng.next() % 2000) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let features = run(&data);
        if !features.is_subset(&reached) {
            reached.extend(features);
            kept.push(data);
            if kept.len() == SEARCH_KEEP {
                break;
            }
        }
    }
    kept
}

/// The request of RFC 6455 §1.3.
pub(crate) const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Chrome's upgrade request (as of version 124).
const CHROME_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=8f2a1c; theme=dark\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// Firefox's upgrade request (as of version 125).
const FIREFOX_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Protocol: chat\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: 9oKY7WUa0cWsXdXJbqDnTQ==\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-site\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\r\n";

/// Safari's upgrade request (as of version 17).
const SAFARI_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
Origin: http://localhost:8080\r\n\
Pragma: no-cache\r\n\
Accept: */*\r\n\
Sec-WebSocket-Key: ZyN3c0u8rBH6Q5Fu4XGJ6w==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Cache-Control: no-cache\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Upgrade: websocket\r\n\
Accept-Encoding: gzip, deflate\r\n\
User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15\r\n\
Connection: Upgrade\r\n\r\n";

/// What `curl --include --no-buffer -H "Connection: Upgrade" -H "Upgrade:
/// websocket" -H "Sec-WebSocket-Key: ..." -H "Sec-WebSocket-Version: 13"`
/// sends, with the key from curl's and many tutorials' examples, which is
/// base64 of 13 bytes, not 16: a server must refuse it.
const CURL_REQUEST_TUTORIAL_KEY: &str = "GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-WebSocket-Key: SGVsbG8sIHdvcmxkIQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// The same curl command with a valid key.
const CURL_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: localhost:9001\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// A load balancer's health check: a plain request.
const HEALTH_CHECK: &str = "GET /healthz HTTP/1.1\r\n\
Host: 10.0.0.7:9001\r\n\
User-Agent: kube-probe/1.29\r\n\
Accept: */*\r\n\
Connection: close\r\n\r\n";

/// RFC 6455 §5.7: a masked "Hello" from a client.
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// RFC 6455 §5.7: an unmasked "Hello" from a server.
const HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];

fn push(seeds: &mut Vec<Seed>, target: &'static str, name: &str, control: &[u8], body: &[u8]) {
    seeds.push(Seed {
        target,
        name: name.to_owned(),
        data: [control, body].concat(),
    });
}

/// Control bytes for [`super::handshake_server`]: a chunking seed, an answer,
/// and flags (0x0A: 8 KiB heads and 64 headers, room for real browsers).
fn server_handshakes(seeds: &mut Vec<Seed>) {
    let t = "handshake_server";
    let roomy = 0x0A;
    let with_early = [RFC_REQUEST.as_bytes(), &MASKED_HELLO].concat();
    let cases: [(&str, [u8; 3], &[u8]); 18] = [
        ("rfc6455-1.3", [0, 0, roomy], RFC_REQUEST.as_bytes()),
        (
            "rfc6455-1.3-protocol-bytewise",
            [1, 1, roomy],
            RFC_REQUEST.as_bytes(),
        ),
        (
            "rfc6455-1.3-small-limits",
            [0, 0, 0],
            RFC_REQUEST.as_bytes(),
        ),
        ("rfc6455-1.3-early-frame", [0, 0, roomy], &with_early),
        (
            "rfc6455-1.3-early-frame-late-answer",
            [3, 1, roomy | 0x40],
            &with_early,
        ),
        (
            "rfc6455-1.3-unoffered-protocol",
            [0, 2, roomy],
            RFC_REQUEST.as_bytes(),
        ),
        (
            "rfc6455-1.3-bad-header",
            [0, 3, roomy],
            RFC_REQUEST.as_bytes(),
        ),
        ("rfc6455-1.3-refused", [0, 4, roomy], RFC_REQUEST.as_bytes()),
        (
            "rfc6455-1.3-eof-unanswered",
            [0, 7, roomy | 0x10],
            RFC_REQUEST.as_bytes(),
        ),
        (
            "rfc6455-1.3-timeout-unanswered",
            [0, 7, roomy | 0x20],
            RFC_REQUEST.as_bytes(),
        ),
        ("chrome", [0, 0, roomy], CHROME_REQUEST.as_bytes()),
        ("chrome-chunked", [9, 1, roomy], CHROME_REQUEST.as_bytes()),
        ("chrome-too-large", [0, 0, 0], CHROME_REQUEST.as_bytes()),
        ("firefox", [0, 1, roomy], FIREFOX_REQUEST.as_bytes()),
        ("safari", [0, 0, roomy], SAFARI_REQUEST.as_bytes()),
        ("curl", [0, 0, roomy], CURL_REQUEST.as_bytes()),
        (
            "curl-tutorial-key",
            [0, 0, roomy],
            CURL_REQUEST_TUTORIAL_KEY.as_bytes(),
        ),
        ("health-check", [0, 6, roomy], HEALTH_CHECK.as_bytes()),
    ];
    for (name, control, body) in cases {
        push(seeds, t, name, &control, body);
    }
    let refusals: [(&str, &str); 7] = [
        ("hybi-version-8", "Sec-WebSocket-Version: 13\r\n"),
        ("http-1.0", " HTTP/1.1\r\n"),
        ("post", "GET "),
        ("no-host", "Host: server.example.com\r\n"),
        ("duplicate-key", "Origin:"),
        ("body", "Origin:"),
        ("bare-lf", "\r\n"),
    ];
    for (name, what) in refusals {
        let request = match name {
            "hybi-version-8" => RFC_REQUEST.replace(what, "Sec-WebSocket-Version: 8\r\n"),
            "http-1.0" => RFC_REQUEST.replace(what, " HTTP/1.0\r\n"),
            "post" => RFC_REQUEST.replace(what, "POST "),
            "no-host" => RFC_REQUEST.replace(what, ""),
            "duplicate-key" => RFC_REQUEST.replace(
                what,
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin:",
            ),
            "body" => RFC_REQUEST.replace(what, "Content-Length: 3\r\nOrigin:"),
            _ => RFC_REQUEST.replace(what, "\n"),
        };
        push(seeds, t, name, &[0, 0, roomy], request.as_bytes());
    }
}

/// The `Sec-WebSocket-Key` the client of [`super::handshake_client`] sends.
fn client_key() -> String {
    let request = super::check::client_request();
    let now = base_instant();
    let conn = Connection::client(request, Config::default(), CLIENT_SEED, now).expect("valid");
    super::check::request_key(&Endpoint::new(conn).drain(now).wire)
}

/// Control bytes for [`super::handshake_client`]: a chunking seed, a mode
/// (0 raw, 1 after a valid 101, 2 inside a valid 101's headers) and flags.
fn client_handshakes(seeds: &mut Vec<Seed>) {
    let t = "handshake_client";
    let key = client_key();
    let full = [switch_head_open(&key), b"\r\n".to_vec()].concat();
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let close = [0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e'];
    let frames = [&HELLO[..], &fragmented, &ping, &close].concat();
    let with_frames = [&full[..], &frames].concat();
    let protocol_then_frame = [&b"Sec-WebSocket-Protocol: chat\r\n\r\n"[..], &HELLO].concat();
    let cases: Vec<(&str, [u8; 3], Vec<u8>)> = vec![
        ("valid-101", [0, 0, 0], full.clone()),
        ("valid-101-frames", [0, 0, 0], with_frames.clone()),
        ("valid-101-frames-bytewise", [1, 0, 4], with_frames),
        ("after-101-rfc-frames", [0, 1, 0], frames.clone()),
        ("after-101-rfc-frames-chunked", [5, 1, 1], frames),
        ("after-101-masked-frame", [0, 1, 0], MASKED_HELLO.to_vec()),
        ("after-101-silence", [0, 1, 2], Vec::new()),
        ("inside-101-protocol", [0, 2, 0], protocol_then_frame),
        ("inside-101-unoffered-protocol", [0, 2, 0], b"Sec-WebSocket-Protocol: x\r\n\r\n".to_vec()),
        ("inside-101-extension", [0, 2, 0], b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".to_vec()),
        ("rfc6455-1.3-accept-wrong-key", [0, 0, 0], switch_head_open("dGhlIHNhbXBsZSBub25jZQ==").into_iter().chain(*b"\r\n").collect()),
        ("403-with-body", [0, 0, 0], b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nforbidden".to_vec()),
        ("426-version", [0, 0, 0], b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("302-no-length-eof", [0, 0, 1], b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\nmoved".to_vec()),
        ("http-1.0-200", [0, 0, 1], b"HTTP/1.0 200 OK\r\n\r\nhello".to_vec()),
        ("garbage", [0, 0, 0], b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
        ("eof-mid-head", [0, 0, 1], b"HTTP/1.1 101 Switching".to_vec()),
        ("open-send-close", [0, 1, 4], close.to_vec()),
    ];
    for (name, control, body) in cases {
        push(seeds, t, name, &control, &body);
    }
}

/// Control bytes for [`super::frame_decoder`]: flags (bit 0: decode as a
/// client), a chunking seed and the largest chunk.
fn frames(seeds: &mut Vec<Seed>) {
    let t = "frame_decoder";
    let client = 1;
    let server = 0;
    let binary_256: Vec<u8> = [0x82, 0x7E, 0x01, 0x00]
        .into_iter()
        .chain((0..=255).map(|i| i as u8))
        .collect();
    // As a client sends them, masked with the harness's key.
    let masked = |frame: Frame| frame.from_client().encode();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("rfc5.7-unmasked-text", client, HELLO.to_vec()),
        ("rfc5.7-masked-text", server, MASKED_HELLO.to_vec()),
        (
            "rfc5.7-fragmented",
            client,
            vec![0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
        ),
        (
            "rfc5.7-ping",
            client,
            vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ),
        (
            "rfc5.7-masked-pong",
            server,
            vec![
                0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        ),
        ("rfc5.7-256-binary", client, binary_256),
        (
            "rfc5.7-64bit-length-header",
            client,
            vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0],
        ),
        (
            "close-1000-bye",
            client,
            vec![0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e'],
        ),
        ("close-empty-masked", server, masked(Frame::empty_close())),
        ("close-1-byte", server, masked(Frame::new(0x8, b"\x03"))),
        ("close-1005", server, masked(Frame::new(0x8, b"\x03\xed"))),
        (
            "close-bad-reason",
            server,
            masked(Frame::new(0x8, b"\x03\xe8\xff")),
        ),
        (
            "text-invalid-utf8",
            server,
            masked(Frame::new(0x1, b"\xc3\x28")),
        ),
        (
            "text-split-code-point",
            server,
            [
                masked(Frame::new(0x1, b"\xe2\x82").fin(false)),
                masked(Frame::continuation(b"\xac")),
            ]
            .concat(),
        ),
        (
            "ping-between-fragments",
            server,
            [
                masked(Frame::text("Hel").fin(false)),
                masked(Frame::ping("p")),
                masked(Frame::continuation("lo")),
            ]
            .concat(),
        ),
        ("rsv2", server, vec![0xA1, 0x80, 0, 0, 0, 0]),
        ("reserved-opcode-3", client, vec![0x83, 0x00]),
        ("reserved-opcode-b", client, vec![0x8B, 0x00]),
        (
            "length-top-bit",
            client,
            vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
        ),
        ("control-126", client, vec![0x89, 0x7E, 0x00, 0x7E]),
        ("fragmented-ping", client, vec![0x09, 0x00]),
        ("unexpected-continuation", client, vec![0x80, 0x00]),
        (
            "expected-continuation",
            client,
            vec![0x01, 0x01, b'a', 0x81, 0x00],
        ),
        ("frame-too-large", client, vec![0x82, 0x7E, 0x08, 0x01]),
        (
            "message-too-large",
            client,
            // 2048 + 1 bytes held, then a header announcing 2048 more: the
            // message limit (4096) is crossed at the header, in < 4 KiB.
            [
                vec![0x02, 0x7E, 0x08, 0x00],
                vec![0; 2048],
                vec![0x00, 0x01, 0],
                vec![0x80, 0x7E, 0x08, 0x00],
            ]
            .concat(),
        ),
        ("unmasked-from-client", server, HELLO.to_vec()),
        ("masked-from-server", client, MASKED_HELLO.to_vec()),
        (
            "bytewise",
            server | 2,
            [
                MASKED_HELLO.to_vec(),
                masked(Frame::ping("ping")),
                masked(Frame::close(1000, "")),
            ]
            .concat(),
        ),
    ];
    for (name, flags, body) in cases {
        let chunking = if name == "bytewise" { [1, 1] } else { [7, 5] };
        push(seeds, t, name, &[flags, chunking[0], chunking[1]], &body);
    }
}

/// Control bytes for [`super::utf8_differential`]: flags (bit 0: client
/// decoder, bit 1: pings between fragments, bit 2: empty final fragment),
/// fragmentation seed and size, chunking seed and size.
fn utf8(seeds: &mut Vec<Seed>) {
    let t = "utf8_differential";
    let long: String = "Grüße, κόσμε, こんにちは, 😀! ".repeat(20);
    let long_bad = [long.as_bytes(), b"\xed\xa0\x80 tail"].concat();
    let cases: Vec<(&str, [u8; 5], Vec<u8>)> = vec![
        ("ascii", [0, 0, 0, 0, 0], b"Hello".to_vec()),
        ("empty", [0, 0, 0, 0, 0], Vec::new()),
        ("kosme", [1, 1, 3, 1, 2], "κόσμε".as_bytes().to_vec()),
        (
            "emoji-bytewise",
            [2, 1, 1, 1, 1],
            "😀😃".as_bytes().to_vec(),
        ),
        ("u10000", [0, 1, 2, 0, 0], b"\xf0\x90\x80\x80".to_vec()),
        ("u10ffff", [1, 1, 1, 0, 0], b"\xf4\x8f\xbf\xbf".to_vec()),
        (
            "above-u10ffff",
            [0, 0, 0, 1, 1],
            b"ok\xf4\x90\x80\x80".to_vec(),
        ),
        (
            "surrogate",
            [0, 1, 5, 0, 0],
            "κόσμε".bytes().chain(*b"\xed\xa0\x80edited").collect(),
        ),
        ("surrogate-dfff", [1, 0, 0, 0, 0], b"\xed\xbf\xbf".to_vec()),
        ("overlong-2", [0, 0, 0, 0, 0], b"\xc0\xaf".to_vec()),
        ("overlong-3", [2, 1, 1, 0, 0], b"\xe0\x80\xaf".to_vec()),
        (
            "truncated-at-end",
            [4, 1, 2, 1, 3],
            b"abc\xf0\x9f\x98".to_vec(),
        ),
        ("lone-continuation", [0, 0, 0, 0, 0], b"a\x80b".to_vec()),
        ("ff", [0, 0, 0, 0, 0], b"\xff".to_vec()),
        ("long-valid", [3, 9, 200, 5, 100], long.into_bytes()),
        ("long-invalid-late", [8 | 1, 9, 200, 5, 100], long_bad),
    ];
    for (name, control, body) in cases {
        push(seeds, t, name, &control, &body);
    }
}
