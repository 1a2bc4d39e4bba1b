//! Payload throughput of the hot paths, against `memcpy` as the yardstick.
//!
//! ```text
//! cargo bench -p sockeye-core --bench throughput            # everything
//! cargo bench -p sockeye-core --bench throughput -- decode  # a filter
//! cargo bench -p sockeye-core --bench throughput -- summary # the table only
//! ```
//!
//! Every group reports bytes per second (criterion prints binary units,
//! GiB/s). After the criterion groups, a plain timing loop prints one compact
//! table in GB/s (10^9 B/s) for the notes: memcpy, unmask and decode per
//! size, each the median of several repetitions. From 1 KiB up it agrees with
//! criterion to within noise; at 16 B both measure per-call overhead, which
//! differs between the two harness loops.
//! Pin it to a core (`taskset -c 1 cargo bench ...`) for steadier numbers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use sockeye_core::frame::{Decoded, Decoder, Opcode, Role};
use sockeye_core::testing::{Endpoint, Frame, Pair, write_all};
use sockeye_core::{Config, Connection, Event, Message, Utf8Bytes, apply_mask};

const SIZES: [usize; 4] = [16, 1 << 10, 64 << 10, 1 << 20];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const ASCII_UNIT: &str = "The quick brown fox jumps over the lazy dog. ";
const MIXED_UNIT: &str = "héllo wörld κόσμε 😀 ";

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

// ---- inputs -----------------------------------------------------------------

/// Arbitrary bytes: masking and copying do not care what they are, but a
/// pattern the optimiser could see through would flatter them.
fn binary_payload(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..size)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect()
}

/// `unit` repeated up to exactly `size` bytes; whole characters only, padded
/// with spaces, so every size is valid UTF-8 of exactly that length.
fn text_payload(unit: &str, size: usize) -> String {
    let mut text = String::with_capacity(size);
    for c in unit.chars().cycle() {
        if text.len() + c.len_utf8() > size {
            break;
        }
        text.push(c);
    }
    while text.len() < size {
        text.push(' ');
    }
    text
}

/// One masked, final frame as a client sends it, built by the shared frame
/// builder so the input does not depend on the encoder or the `apply_mask`
/// under test.
fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    Frame::new(opcode.as_u8(), payload).masked(KEY).encode()
}

// ---- operations, shared by criterion and the summary table ------------------

fn memcpy_op(size: usize) -> impl FnMut() {
    let src = binary_payload(size);
    let mut dst = vec![0u8; size];
    move || {
        dst.copy_from_slice(black_box(&src));
        black_box(dst.as_mut_slice());
    }
}

fn unmask_op(size: usize) -> impl FnMut() {
    let mut buf = binary_payload(size);
    move || {
        // XOR twice is the identity, so the buffer never needs resetting.
        apply_mask(black_box(buf.as_mut_slice()), KEY, 0);
        black_box(buf.as_slice());
    }
}

/// Decodes one whole frame per call and hands the message out. The caller
/// drops it straight away, as an application that is done with the message
/// would, which lets the decoder reclaim its buffer instead of allocating.
fn decode_op(opcode: Opcode, payload: &[u8]) -> impl FnMut() -> Decoded + use<> {
    let frame = client_frame(opcode, payload);
    let mut decoder = Decoder::new(Role::Server, &Config::default());
    let expected = match opcode {
        Opcode::Text => Message::text(std::str::from_utf8(payload).expect("text payload")),
        _ => Message::binary(payload.to_vec()),
    };
    let mut input: &[u8] = &frame;
    let first = decoder.decode(&mut input).expect("valid frame");
    assert_eq!(
        first,
        Some(Decoded::Message(expected)),
        "decoder round trip"
    );
    assert!(input.is_empty());
    move || {
        let mut input: &[u8] = black_box(&frame);
        let item = decoder.decode(&mut input).expect("valid frame");
        item.expect("one complete frame per input")
    }
}

/// The length of the checked prefix, short only by a character split at the
/// end; `None` for bytes that no continuation can make valid.
fn std_validate(bytes: &[u8]) -> Option<usize> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Some(bytes.len()),
        Err(e) if e.error_len().is_none() => Some(e.valid_up_to()),
        Err(_) => None,
    }
}

fn simd_validate(bytes: &[u8]) -> Option<usize> {
    // The fast path is a plain pass; the error details are only computed
    // when it fails, as with the split character at a block end.
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Some(bytes.len()),
        Err(e) if e.error_len().is_none() => Some(e.valid_up_to()),
        Err(_) => None,
    }
}

/// A server connection past the handshake, its 101 response taken.
fn open_server(now: Instant) -> Connection {
    Endpoint::open_server(Config::default(), now).conn
}

/// A client connection past the handshake, done against a real server
/// connection so the response is whatever the server really sends.
fn open_client() -> (Connection, Instant) {
    let pair = Pair::new(Config::default(), Config::default()).open();
    (pair.client.conn, pair.now)
}

/// What a driver does with a message: queue it, and write out its frame.
fn send_and_drain(conn: &mut Connection, now: Instant, message: Message) -> usize {
    conn.send(now, message).expect("open connection");
    write_all(conn, now)
}

/// Messages in flight per connection in the echo benchmark, as in
/// wsbench's 100 × 8 scenarios: one read brings eight frames.
const BURST: usize = 8;

/// What an echo server does with one read of `BURST` client frames: decode
/// each message, send it back, queue the transmits and write them out in
/// vectored writes. The server's whole share of per-message work except the
/// system calls.
fn echo_op(size: usize) -> impl FnMut() -> usize {
    let now = Instant::now();
    let burst = client_frame(Opcode::Binary, &binary_payload(size)).repeat(BURST);
    let mut server = open_server(now);
    move || {
        server.handle_input(now, black_box(&burst));
        while let Some(event) = server.poll_event() {
            let Event::Message(message) = event else {
                panic!("expected a message, got {event:?}");
            };
            server.send(now, message).expect("open connection");
        }
        write_all(&mut server, now)
    }
}

// ---- criterion groups -------------------------------------------------------

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // About 2.3 s a benchmark with analysis: the 54 here, plus the summary
    // table, run in about 2 min 10 s, inside the three-minute budget. These
    // loops are steady; more samples would not move the medians.
    group
        .warm_up_time(Duration::from_millis(400))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
}

fn per_size<O>(
    c: &mut Criterion,
    name: &str,
    mut make: impl FnMut(usize) -> Box<dyn FnMut() -> O>,
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for size in SIZES {
        let mut op = make(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(&mut op)
        });
    }
    group.finish();
}

fn bench_reference_and_mask(c: &mut Criterion) {
    per_size(c, "memcpy", |size| Box::new(memcpy_op(size)));
    per_size(c, "unmask_in_place", |size| Box::new(unmask_op(size)));
}

fn bench_decode(c: &mut Criterion) {
    per_size(c, "decode_binary", |size| {
        Box::new(decode_op(Opcode::Binary, &binary_payload(size)))
    });
    let mut group = c.benchmark_group("decode_text");
    configure(&mut group);
    for (kind, unit) in [("ascii", ASCII_UNIT), ("mixed", MIXED_UNIT)] {
        for size in SIZES {
            let mut op = decode_op(Opcode::Text, text_payload(unit, size).as_bytes());
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(kind, label(size)), |b| b.iter(&mut op));
        }
    }
    group.finish();
}

fn bench_text_validation(c: &mut Criterion) {
    // Why the core validates with simdutf8 rather than std: the same answers,
    // several times faster on multi-byte text.
    let mut group = c.benchmark_group("utf8_validate");
    configure(&mut group);
    for (kind, unit) in [("ascii", ASCII_UNIT), ("mixed", MIXED_UNIT)] {
        for size in [64 << 10, 1 << 20] {
            let text = text_payload(unit, size);
            group.throughput(Throughput::Bytes(size as u64));
            let id = |f: &str| BenchmarkId::new(format!("{f}/{kind}"), label(size));
            group.bench_function(id("std"), |b| {
                b.iter(|| std_validate(black_box(text.as_bytes())))
            });
            group.bench_function(id("simdutf8_compat"), |b| {
                b.iter(|| simd_validate(black_box(text.as_bytes())))
            });
        }
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("encode");
    configure(&mut group);
    for size in SIZES {
        let message = Message::binary(binary_payload(size));
        group.throughput(Throughput::Bytes(size as u64));

        // Unmasked: a header and a reference-count bump, whatever the size.
        let mut server = open_server(now);
        group.bench_function(BenchmarkId::new("server", label(size)), |b| {
            b.iter(|| send_and_drain(&mut server, now, message.clone()))
        });

        // Masked, and the application still holds the message (a broadcast,
        // a retry): the payload must be copied before it is masked.
        let (mut client, now) = open_client();
        group.bench_function(BenchmarkId::new("client_shared", label(size)), |b| {
            b.iter(|| send_and_drain(&mut client, now, message.clone()))
        });

        // Masked, message handed over: masked in place, no copy. The untimed
        // setup makes each payload uniquely owned.
        let payload = message.payload().to_vec();
        group.bench_function(BenchmarkId::new("client_owned", label(size)), |b| {
            b.iter_batched(
                || Message::binary(Bytes::from(payload.clone())),
                |message| send_and_drain(&mut client, now, message),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_burst");
    configure(&mut group);
    for size in [16, 4 << 10] {
        let mut op = echo_op(size);
        group.throughput(Throughput::Bytes((BURST * size) as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(&mut op)
        });
    }
    group.finish();
}

fn bench_as_str(c: &mut Criterion) {
    // Why `Utf8Bytes::as_str` skips re-validation: the checked alternative is
    // a full pass over the payload on every access.
    let mut group = c.benchmark_group("utf8_bytes_as_str");
    configure(&mut group);
    for (kind, unit) in [("ascii", ASCII_UNIT), ("mixed", MIXED_UNIT)] {
        let size = 64 << 10;
        let text = Utf8Bytes::from(text_payload(unit, size));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("as_str", kind), |b| {
            b.iter(|| black_box(&text).as_str().len())
        });
        group.bench_function(BenchmarkId::new("std_from_utf8", kind), |b| {
            b.iter(|| std::str::from_utf8(black_box(&text).as_bytes()).map(str::len))
        });
    }
    group.finish();
}

// ---- the summary table ------------------------------------------------------

/// GB/s (10^9 bytes per second) of `op` over `bytes` per call: the median of
/// several ~20 ms repetitions, after a calibration run that also warms up.
fn gbps<O>(bytes: usize, mut op: impl FnMut() -> O) -> f64 {
    let run = |op: &mut dyn FnMut() -> O, iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(op());
        }
        start.elapsed()
    };
    let mut iters = 1u64;
    let mut elapsed = run(&mut op, iters);
    while elapsed < Duration::from_millis(5) {
        iters *= 2;
        elapsed = run(&mut op, iters);
    }
    iters = (iters as f64 * 0.020 / elapsed.as_secs_f64()).ceil() as u64;
    let mut rates: Vec<f64> = (0..9)
        .map(|_| (bytes as u64 * iters) as f64 / run(&mut op, iters).as_secs_f64() / 1e9)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A table row: its name and how to measure GB/s at a size.
type SummaryRow = (&'static str, fn(usize) -> f64);

fn summary() {
    let rows: [SummaryRow; 5] = [
        ("memcpy", |size| gbps(size, memcpy_op(size))),
        ("unmask_in_place", |size| gbps(size, unmask_op(size))),
        ("decode_binary", |size| {
            gbps(size, decode_op(Opcode::Binary, &binary_payload(size)))
        }),
        ("decode_text ascii", |size| {
            gbps(
                size,
                decode_op(Opcode::Text, text_payload(ASCII_UNIT, size).as_bytes()),
            )
        }),
        ("decode_text mixed", |size| {
            gbps(
                size,
                decode_op(Opcode::Text, text_payload(MIXED_UNIT, size).as_bytes()),
            )
        }),
    ];
    println!("\nThroughput summary, GB/s (10^9 B/s), median of 9 runs of ~20 ms:\n");
    print!("{:<24}", "");
    for size in SIZES {
        print!("{:>10}", label(size));
    }
    println!();
    for (name, measure) in rows {
        print!("{name:<24}");
        for size in SIZES {
            print!("{:>10.2}", measure(size));
        }
        println!();
    }
}

fn main() {
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    bench_reference_and_mask(&mut criterion);
    bench_decode(&mut criterion);
    bench_text_validation(&mut criterion);
    bench_encode(&mut criterion);
    bench_echo(&mut criterion);
    bench_as_str(&mut criterion);
    criterion.final_summary();

    // Only for real bench runs (`cargo test --benches` runs each benchmark
    // once, without `--bench`), and only when no filter excludes it.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if benching && filter.is_none_or(|f| "summary".contains(f.as_str())) {
        summary();
    }
}
