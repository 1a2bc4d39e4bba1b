//! Model-based property test: time, heartbeat, deadlines, silence,
//! half-close and teardown.
//!
//! `properties.rs` checks conversations without a clock. This file wires a
//! real client [`Connection`] and a real server [`Connection`] through a
//! simulated network with a virtual clock. Each is driven by the shared
//! harness's [`Endpoint`], exactly as the contract in `connection.rs` says
//! (after every input: the events, then writes until nothing is offered,
//! then the transport action, then the timer re-armed with `poll_timeout`),
//! and the harness checks the event grammar and the order of outputs on the
//! way. The harness's `Pair` delivers at once; this network adds delays and
//! faults, so it keeps pipes of its own, and models TCP's end of stream and
//! resets as `Pair` does.
//!
//! * **Clock.** One base `Instant` plus a `Duration` offset. The simulation
//!   jumps straight to the earliest of: the next chunk that becomes
//!   deliverable, either side's `poll_timeout`, the next scripted operation.
//!   A side's timer fires exactly at its deadline, so deadlines can be checked
//!   for equality, not only as bounds.
//! * **Network.** Each direction is a FIFO byte pipe. A drain's output is cut
//!   into random chunks, and each chunk becomes deliverable at
//!   `now + delay` (never before the chunk ahead of it), with the delay drawn
//!   from a per-direction range of at most [`MAX_DELAY_MS`]. Each read (one
//!   `handle_input` call) takes one chunk, or several that have arrived,
//!   across writes, as a TCP read does. A side does what `poll_transport`
//!   says: `HalfClose` shuts its sending direction (the peer gets
//!   `handle_eof` after the bytes in flight); `Close` also stops its reading,
//!   and bytes that reach it after that make a reset: what the writer had
//!   not read yet is destroyed and its transport fails
//!   (`handle_transport_error`).
//! * **Faults.** `Freeze` (the side hangs: never driven again, and nothing
//!   more arrives from it), `Mute` (its outgoing direction stops delivering;
//!   it is still driven), `HalfClose` (it shuts down its writing side: the
//!   peer gets EOF after the bytes in flight, and later output is discarded),
//!   `Linger` (it ignores the core's transport actions: it never shuts its
//!   transport, so its peer never gets EOF). A peer is live while it is not
//!   frozen and neither direction is muted: what it sends arrives, and it
//!   hears our pings.
//! * **Scenarios.** Dozens to hundreds of operations: sends of every kind and
//!   size on both sides (empty, multi-byte UTF-8, tens of KiB, fragmented at
//!   random sizes), pings, closes with random valid codes from either side,
//!   clock advances from 0 ms to several heartbeat intervals, delay changes,
//!   faults, and optionally one side echoing every message it receives from
//!   inside its event loop (the only way, under a driver that drains fully, to
//!   have data queued when the peer's close arrives). At the end, the first
//!   driven, open side of `final_closer` and its peer closes, and the
//!   simulation runs until every side that is not frozen has been told to
//!   close its transport.
//!
//! The properties are rules, stated where they are checked, not a second
//! implementation of the engine:
//!
//! 1. Delivery: what the receiver got is a prefix of what was sent, all of
//!    it without faults, less exactly the tail a peer's close drops
//!    ([`Sim::check_delivery`], [`Sim::check_fault_free`]).
//! 2. The close handshake, every deadline and the teardown: every close is
//!    answered (with the code echoed), a clean close needs both frames,
//!    nothing follows a close frame, and once `Closed` the transport is
//!    closed within the close timeout; without faults there is no reset, the
//!    server half-closes first and closes at the client's end of stream
//!    ([`Sim::judge_closed`], [`Sim::judge_transport`],
//!    [`Sim::check_close_frame`], [`Sim::check_fault_free`], and the
//!    deadline checks in [`Sim::advance`] and [`Sim::settle`]).
//! 3. Framing of both byte streams, read by RFC 6455's rules: the
//!    concatenated fragments equal the message, each at most
//!    `fragment_size` ([`Stream`], [`Peer::on_output`]).
//! 4. Heartbeat: never kills a live peer, always kills a silent one, exactly
//!    at `last_seen + ping_interval * (max_missed_pongs + 1)`
//!    ([`Sim::judge_closed`], [`Peer::deadline`]).
//! 5. Memory bounds after every drain ([`Sim::drain`]).
//! 6. State and event grammar (the harness's `Grammar`, and [`Sim::drain`]).
//!
//! Failures shrink to a short scenario: operations are a small `Debug` enum,
//! durations in milliseconds, big payloads a length and a seed. A failing
//! case's seed is saved in `core/tests/model.proptest-regressions` (set
//! explicitly below with `FileFailurePersistence::WithSource`, which puts the
//! file next to this source file whatever the directory layout) and replayed
//! first on every later run: commit that file with the fix.
//!
//! `PROPTEST_CASES` overrides the number of cases, for longer runs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

mod common;
use common::{Payload, input_bound, side, splitmix};
use sockeye_core::testing::{Endpoint, Frame, Length, Side, base_instant, read_frames, split_head};
use sockeye_core::{
    ClientRequest, CloseCode, CloseFrame, Closed, Config, Connection, Error, Event, Handshake,
    Message, RequestError, ResponseError, State, TransportAction, UsageError,
};

// ---- settings -----------------------------------------------------------

/// Short intervals, so scenarios of a few virtual seconds exercise them.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one-way delay. A live peer must look live, so:
/// * `2 * MAX_DELAY_MS < CLOSE_TIMEOUT`: a close handshake between live peers
///   (close, reply, then the server's EOF) completes within the deadlines;
/// * `3 * MAX_DELAY_MS < PING_INTERVAL`: a ping is answered well before the
///   heartbeat gives up, even one sent just before the peer half-closes.
const MAX_DELAY_MS: u64 = 200;

/// Largest generated message (`BigText` overshoots by at most 3 bytes).
const MAX_BIG: usize = 70_000;
/// Both sides' `max_message_size` and `max_frame_size`: above every message
/// we send, and small enough that the `buffered_input` bound means something.
const MESSAGE_LIMIT: usize = 96 * 1024;

/// Virtual time allowed after the last operation for every driven side to
/// finish. The longest legitimate wait is a heartbeat death (5 intervals)
/// plus two close timeouts; anything near this is a liveness bug.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Inputs (deliveries and timeouts) handled in one case before it is
/// declared a runaway, such as a ping storm. Generated scenarios need a few
/// hundred at most; a low cap also keeps shrinking such a failure fast.
const MAX_STEPS: u64 = 20_000;

fn base() -> Instant {
    base_instant()
}

fn at(t: Duration) -> Instant {
    base() + t
}

fn ms(t: Duration) -> u128 {
    t.as_millis()
}

type Outcome = Result<(), TestCaseError>;

/// `assert!` that fails the proptest case (so it shrinks) instead of
/// panicking.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

// ---- scenarios ------------------------------------------------------------

const BOTH: [Side; 2] = [Side::Client, Side::Server];

fn index(side: Side) -> usize {
    side as usize
}

/// One step of a scenario. Everything but `Wait` happens at the current
/// virtual time; `Wait` lets the network and the timers run.
#[derive(Debug, Clone)]
enum Op {
    Send(Side, Payload),
    /// A ping with this many payload bytes: at least one, so that the
    /// heartbeat's pings (empty) can be told apart on the wire.
    Ping(Side, u8),
    Close {
        side: Side,
        code: u16,
        reason: String,
    },
    /// Application calls back to back, then one drain: an application that
    /// queues messages (and perhaps closes) before its driver writes.
    Burst(Side, Vec<Call>),
    Wait {
        ms: u64,
    },
    /// Later chunks from `from` take between `min_ms` and `max_ms`.
    Delay {
        from: Side,
        min_ms: u64,
        max_ms: u64,
    },
    /// The side hangs: it is never driven again, and what it had in flight
    /// and anything later is lost.
    Freeze(Side),
    /// Its outgoing direction stops delivering (what was in flight is lost),
    /// but it is still driven: a one-way partition.
    Mute(Side),
    /// It shuts down its writing side: the peer gets EOF after the bytes in
    /// flight; its later output is discarded; it still reads.
    HalfClose(Side),
    /// It ignores the core's transport actions and never shuts its
    /// transport (a driver with a teardown policy of its own, a lost FIN):
    /// its peer never gets EOF.
    Linger(Side),
}

/// One application call in a [`Op::Burst`].
#[derive(Debug, Clone)]
enum Call {
    Send(Payload),
    Ping(u8),
    Close { code: u16, reason: String },
}

#[derive(Debug, Clone)]
struct Setup {
    max_missed_pongs: u32,
    fragment_size: Option<usize>,
    /// The initial delay range of what this side writes.
    delay_ms: (u64, u64),
    idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Scenario {
    /// The client's masking seed, and the network's chunking and jitter.
    seed: u64,
    client: Setup,
    server: Setup,
    /// This side sends every message it receives straight back, from inside
    /// its event loop.
    echo: Option<Side>,
    final_closer: Side,
    /// A fault this many ms after the final close: faults during the close
    /// handshake (a reply that arrives without the server's FIN, say).
    final_fault: Option<(u64, Op)>,
    ops: Vec<Op>,
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        // Any scalar value, so multi-byte UTF-8 is common; empty included.
        4 => vec(any::<char>(), 0..40).prop_map(|c| Payload::Text(String::from_iter(c))),
        4 => vec(any::<u8>(), 0..300).prop_map(Payload::Binary),
        1 => (126..=MAX_BIG, any::<u64>()).prop_map(|(len, seed)| Payload::BigText { len, seed }),
        1 => (126..=MAX_BIG, any::<u64>()).prop_map(|(len, seed)| Payload::BigBinary { len, seed }),
    ]
}

fn fragment_size() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        2 => Just(None),
        1 => (4usize..=16).prop_map(Some),
        2 => (17usize..=2048).prop_map(Some),
        1 => (2049usize..=MAX_BIG).prop_map(Some),
    ]
}

fn delay() -> impl Strategy<Value = (u64, u64)> {
    (0..=MAX_DELAY_MS, 0..=MAX_DELAY_MS).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn wait_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..=50,
        3 => 51u64..=400,
        2 => 401u64..=1_500,
        // Several heartbeat intervals of silence.
        1 => 1_501u64..=6_000,
    ]
}

fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999]
}

fn reason() -> impl Strategy<Value = String> {
    // At most 20 scalar values of at most 4 bytes: within the 123-byte limit.
    vec(any::<char>(), 0..20).prop_map(String::from_iter)
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        6 => payload().prop_map(Call::Send),
        2 => (1u8..=125).prop_map(Call::Ping),
        1 => (close_code(), reason()).prop_map(|(code, reason)| Call::Close { code, reason }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (side(), payload()).prop_map(|(side, payload)| Op::Send(side, payload)),
        10 => (side(), 1u8..=125).prop_map(|(side, len)| Op::Ping(side, len)),
        40 => wait_ms().prop_map(|ms| Op::Wait { ms }),
        5 => (side(), delay()).prop_map(|(from, (min_ms, max_ms))| Op::Delay { from, min_ms, max_ms }),
        4 => (side(), vec(call(), 2..=5)).prop_map(|(side, calls)| Op::Burst(side, calls)),
        // Rare, so that about half the scenarios run long before a close.
        1 => (side(), close_code(), reason())
            .prop_map(|(side, code, reason)| Op::Close { side, code, reason }),
    ]
}

fn fault() -> impl Strategy<Value = Op> {
    prop_oneof![
        side().prop_map(Op::Freeze),
        side().prop_map(Op::Mute),
        side().prop_map(Op::HalfClose),
        side().prop_map(Op::Linger),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    // Half the scenarios have no fault at all, so the strong fault-free
    // properties get as many cases as the fault handling.
    let faults = prop_oneof![Just(Vec::new()), vec((any::<Index>(), fault()), 1..=2),];
    (vec(op(), 1..=150), faults).prop_map(|(mut ops, faults)| {
        for (index, fault) in faults {
            let at = index.index(ops.len() + 1);
            ops.insert(at, fault);
        }
        ops
    })
}

fn setup() -> impl Strategy<Value = Setup> {
    // The idle timeout is on in a quarter of the setups: it ends most
    // conversations it is on in, and the heartbeat needs long silences too.
    let idle = prop::option::weighted(0.25, 2_000u64..=8_000);
    (1u32..=4, fragment_size(), delay(), idle).prop_map(
        |(max_missed_pongs, fragment_size, delay_ms, idle_timeout_ms)| Setup {
            max_missed_pongs,
            fragment_size,
            delay_ms,
            idle_timeout_ms,
        },
    )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>(),
        setup(),
        setup(),
        prop::option::of(side()),
        side(),
        prop::option::weighted(0.3, (0..=2 * MAX_DELAY_MS, fault())),
        ops(),
    )
        .prop_map(
            |(seed, client, server, echo, final_closer, final_fault, ops)| Scenario {
                seed,
                client,
                server,
                echo,
                final_closer,
                final_fault,
                ops,
            },
        )
}

fn config(setup: &Setup) -> Config {
    Config {
        max_frame_size: MESSAGE_LIMIT,
        max_message_size: MESSAGE_LIMIT,
        fragment_size: setup.fragment_size,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        close_timeout: CLOSE_TIMEOUT,
        ping_interval: Some(PING_INTERVAL),
        max_missed_pongs: setup.max_missed_pongs,
        idle_timeout: setup.idle_timeout_ms.map(Duration::from_millis),
        ..Config::default()
    }
}

// ---- the network ----------------------------------------------------------

enum Chunk {
    Data(Vec<u8>),
    Eof,
}

/// One direction: FIFO chunks, each with the time it becomes deliverable.
struct Pipe {
    queue: VecDeque<(Duration, Chunk)>,
    /// When the last chunk becomes deliverable: later chunks never overtake.
    last_due: Duration,
    delay_ms: (u64, u64),
    /// A fault: nothing more is delivered.
    cut: bool,
    /// The writer sent its FIN: nothing more is written.
    shut: bool,
    seed: u64,
    /// The instant of the last random draw, and how many were drawn then.
    draws: (Duration, u64),
}

impl Pipe {
    fn new(delay_ms: (u64, u64), seed: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            last_due: Duration::ZERO,
            delay_ms,
            cut: false,
            shut: false,
            seed,
            draws: (Duration::ZERO, 0),
        }
    }

    /// A generator for one write or read, seeded by the scenario, the
    /// direction, the virtual time and the count of draws at that instant,
    /// not by everything that happened before: when shrinking removes an
    /// operation, the network behaves the same at every other instant, so
    /// failures shrink to short scenarios.
    fn rng(&mut self, now: Duration) -> u64 {
        if self.draws.0 != now {
            self.draws = (now, 0);
        }
        self.draws.1 += 1;
        let mut state = self.seed ^ (now.as_nanos() as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        state ^= self.draws.1.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        splitmix(&mut state);
        state
    }

    fn push(&mut self, now: Duration, chunk: Chunk, rng: &mut u64) {
        let (lo, hi) = self.delay_ms;
        let delay = lo + splitmix(rng) % (hi - lo + 1);
        let due = (now + Duration::from_millis(delay)).max(self.last_due);
        self.last_due = due;
        self.queue.push_back((due, chunk));
    }

    /// Writes one drain's output as random chunks: sometimes a few bytes,
    /// usually up to a packet or so, sometimes all of it.
    fn write(&mut self, now: Duration, bytes: Vec<u8>) {
        let rng = &mut self.rng(now);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let size = match splitmix(rng) % 10 {
                0 => 1 + splitmix(rng) as usize % 8,
                1..=6 => 1 + splitmix(rng) as usize % 2000,
                _ => rest.len(),
            };
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            self.push(now, Chunk::Data(chunk.to_vec()), rng);
            rest = tail;
        }
    }

    fn shut(&mut self, now: Duration) {
        if !self.shut {
            self.shut = true;
            let rng = &mut self.rng(now);
            self.push(now, Chunk::Eof, rng);
        }
    }

    fn cut(&mut self) {
        self.cut = true;
        self.queue.clear();
    }

    /// Whether a write reaches the pipe at all.
    fn writable(&self) -> bool {
        !self.cut && !self.shut
    }
}

// ---- one side and what it observed ------------------------------------------

fn summarize(event: &Event) -> String {
    match event {
        Event::Message(Message::Text(text)) => format!("Message(Text, {} bytes)", text.len()),
        Event::Message(Message::Binary(bytes)) => format!("Message(Binary, {} bytes)", bytes.len()),
        Event::Ping(p) => format!("Ping({} bytes)", p.len()),
        Event::Pong(p) => format!("Pong({} bytes)", p.len()),
        Event::Request(_) => "Request".into(),
        Event::Open(_) => "Open".into(),
        other => format!("{other:?}"),
    }
}

struct Peer {
    side: Side,
    /// The connection, driven as its contract says; its event grammar and
    /// transport actions are checked by the harness.
    endpoint: Endpoint,
    config: Config,
    /// The state after the last drain.
    state: State,
    frozen_at: Option<Duration>,
    muted_at: Option<Duration>,
    /// It ignores the core's transport actions: it never half-closes nor
    /// closes its transport.
    lingers: bool,
    /// When the core said to half-close, and to close, the transport. After
    /// closing, nothing is read: bytes that arrive make a reset.
    half_closed_at: Option<Duration>,
    transport_closed_at: Option<Duration>,
    /// When its transport failed with a reset.
    reset_at: Option<Duration>,

    requested: bool,
    opened_at: Option<Duration>,
    /// The application's `close`, or the idle timeout's.
    close_called: Option<(Duration, CloseFrame)>,
    close_received: Option<(Duration, CloseFrame)>,
    eof_at: Option<Duration>,
    /// When the connection last saw a sign of life while open: the `Open`
    /// itself, or any bytes received since. Mirrors the engine's
    /// `last_seen`, from the outside.
    last_rx: Duration,
    /// When a data message last went either way: `Open`, a `send` that
    /// returned `Ok` (at the time of the call), or a received message.
    last_data: Duration,
    closed: Option<(Duration, Closed)>,

    /// Messages `send` accepted, in order.
    sent: Vec<Message>,
    /// `sent.len()` at the end of the last transmit pass.
    flushed: usize,
    /// `sent[from..to]` were queued, not yet transmitted, when the peer's
    /// close arrived; the reply may drop them (documented in `close`).
    droppable: Option<(usize, usize)>,
    /// Messages the application received.
    received: Vec<Message>,

    /// Our own output, read by the rules as the peer would read it.
    out: Stream,
    /// What was actually handed to `handle_input`, read by the rules: the
    /// messages the application must have received.
    inp: Stream,
}

/// One direction's bytes, read by the rules of RFC 6455 rather than by the
/// core's decoder (a bug shared by both could not pass): an HTTP head, then
/// frames, masked exactly when a client wrote them, with no RSV bits and
/// lengths in their shortest form; a message is its first frame's opcode and
/// the concatenation of its fragments up to FIN, each fragment at most
/// `fragment_size` when that is set, and a text message is UTF-8; control
/// frames are final and at most 125 bytes; nothing follows the close frame,
/// and no frame follows an HTTP head that refused the upgrade.
struct Stream {
    /// Who wrote it.
    writer: Side,
    fragment_size: Option<usize>,
    /// Bytes not read yet: an incomplete head or frame.
    pending: Vec<u8>,
    head: Option<Vec<u8>>,
    /// The opcode and the payload so far of a fragmented message.
    partial: Option<(u8, Vec<u8>)>,
    messages: Vec<Message>,
    /// The close frame's code and reason, `None` for an empty one.
    close: Option<Option<CloseFrame>>,
}

/// A control frame read from a [`Stream`].
enum Control {
    Ping(Vec<u8>),
    Pong,
}

impl Stream {
    fn new(writer: Side, fragment_size: Option<usize>) -> Self {
        Self {
            writer,
            fragment_size,
            pending: Vec::new(),
            head: None,
            partial: None,
            messages: Vec::new(),
            close: None,
        }
    }

    /// Whether no frame can follow: a close frame, or a refusal.
    fn ended(&self) -> bool {
        self.close.is_some()
            || self.head.as_ref().is_some_and(|head| {
                !head.starts_with(b"HTTP/1.1 101 ") && !head.starts_with(b"GET ")
            })
    }

    /// Reads `bytes` and returns the control frames in them; an error says
    /// which rule the stream broke.
    fn read(&mut self, bytes: &[u8]) -> Result<Vec<Control>, String> {
        let mut controls = Vec::new();
        if self.ended() {
            // A refusal's body, or (once closed) bytes the rules forbid.
            return match self.close {
                Some(_) if !bytes.is_empty() => {
                    Err(format!("{} bytes after the close frame", bytes.len()))
                }
                _ => Ok(controls),
            };
        }
        self.pending.extend_from_slice(bytes);
        if self.head.is_none() {
            let Some((head, rest)) = split_head(&self.pending) else {
                return Ok(controls);
            };
            self.head = Some(head.to_vec());
            self.pending = rest.to_vec();
            if self.ended() {
                return Ok(controls);
            }
        }
        let (frames, rest) = read_frames(&self.pending);
        let rest = rest.to_vec();
        for frame in frames {
            if self.close.is_some() {
                return Err(format!("{frame:?} after the close frame"));
            }
            if let Some(control) = self.frame(frame)? {
                controls.push(control);
            }
        }
        if self.close.is_some() && !rest.is_empty() {
            return Err(format!("{} bytes after the close frame", rest.len()));
        }
        self.pending = rest;
        Ok(controls)
    }

    fn frame(&mut self, frame: Frame) -> Result<Option<Control>, String> {
        let client = self.writer == Side::Client;
        if frame.mask.is_some() != client || frame.rsv != 0 || frame.length != Length::Shortest {
            return Err(format!("mask, RSV or length form: {frame:?}"));
        }
        if frame.opcode >= 0x8 && (!frame.fin || frame.payload.len() > 125) {
            return Err(format!(
                "a control frame fragmented or over 125 bytes: {frame:?}"
            ));
        }
        match frame.opcode {
            0x0..=0x2 => {
                if self
                    .fragment_size
                    .is_some_and(|size| frame.payload.len() > size)
                {
                    return Err(format!("a fragment of {} bytes", frame.payload.len()));
                }
                let (opcode, mut payload) = match (self.partial.take(), frame.opcode) {
                    (None, 0) => return Err("a continuation outside a message".into()),
                    (Some(_), 0x1 | 0x2) => return Err("a new message inside another".into()),
                    (Some((opcode, payload)), _) => (opcode, payload),
                    (None, opcode) => (opcode, Vec::new()),
                };
                if self.fragment_size.is_none() && !frame.fin {
                    return Err("a message fragmented without a fragment size".into());
                }
                payload.extend_from_slice(&frame.payload);
                if !frame.fin {
                    self.partial = Some((opcode, payload));
                    return Ok(None);
                }
                let message = match opcode {
                    0x1 => Message::text(String::from_utf8(payload).map_err(|e| e.to_string())?),
                    _ => Message::binary(payload),
                };
                self.messages.push(message);
                Ok(None)
            }
            0x8 => {
                self.close = Some(match &frame.payload[..] {
                    [] => None,
                    [hi, lo, reason @ ..] => Some(CloseFrame {
                        code: CloseCode::new(u16::from_be_bytes([*hi, *lo])),
                        reason: String::from_utf8(reason.to_vec()).map_err(|e| e.to_string())?,
                    }),
                    [_] => return Err("a one-byte close payload".into()),
                });
                Ok(None)
            }
            0x9 => Ok(Some(Control::Ping(frame.payload))),
            0xA => Ok(Some(Control::Pong)),
            opcode => Err(format!("opcode {opcode:#x}")),
        }
    }
}

impl Peer {
    fn new(side: Side, conn: Connection, config: Config, peer: &Config) -> Self {
        Self {
            side,
            endpoint: Endpoint::new(conn),
            state: State::Handshaking,
            frozen_at: None,
            muted_at: None,
            lingers: false,
            half_closed_at: None,
            transport_closed_at: None,
            reset_at: None,
            requested: false,
            opened_at: None,
            close_called: None,
            close_received: None,
            eof_at: None,
            last_rx: Duration::ZERO,
            last_data: Duration::ZERO,
            closed: None,
            sent: Vec::new(),
            flushed: 0,
            droppable: None,
            received: Vec::new(),
            out: Stream::new(side, config.fragment_size),
            inp: Stream::new(side.other(), peer.fragment_size),
            config,
        }
    }

    /// Driven: handed input and timeouts.
    fn driven(&self) -> bool {
        self.frozen_at.is_none() && self.transport_closed_at.is_none()
    }

    fn heartbeat_limit(&self) -> Duration {
        self.last_rx + PING_INTERVAL * (self.config.max_missed_pongs + 1)
    }

    fn idle_limit(&self) -> Option<Duration> {
        Some(self.last_data + self.config.idle_timeout?)
    }

    /// The latest time by which the connection must leave its current state
    /// (or see input that moves the deadline), from the documented settings:
    ///
    /// * handshaking: `handshake_timeout` after creation;
    /// * open: the heartbeat gives up at `last_seen + ping_interval *
    ///   (max_missed_pongs + 1)`, and the idle timeout, if on, starts the
    ///   close handshake at `last_data + idle_timeout`;
    /// * closing, close frame received (a client waiting for TCP to end):
    ///   `close_timeout` after it arrived;
    /// * closing, our close sent and no reply: `close_timeout` after it;
    /// * over: the transport is closed within `close_timeout` of `Closed`
    ///   (the last bytes take no time to write here; then the wait for the
    ///   peer's end of stream is bounded by it).
    fn deadline(&self) -> Option<Duration> {
        match self.state {
            State::Handshaking => Some(HANDSHAKE_TIMEOUT),
            State::Open => Some(match self.idle_limit() {
                Some(idle) => idle.min(self.heartbeat_limit()),
                None => self.heartbeat_limit(),
            }),
            State::Closing => match (&self.close_received, &self.close_called) {
                (Some((t, _)), _) | (None, Some((t, _))) => Some(*t + CLOSE_TIMEOUT),
                // Checked after every drain not to happen.
                (None, None) => None,
            },
            State::Closed => match (&self.closed, self.transport_closed_at) {
                (Some((t, _)), None) => Some(*t + CLOSE_TIMEOUT),
                _ => None,
            },
        }
    }

    /// What the model observes of each event (the harness checks their
    /// grammar): the server accepts the upgrade; the echo side sends every
    /// message back from inside its event loop.
    fn on_event(&mut self, now: Duration, event: Event, echo: bool) -> Outcome {
        let side = self.side;
        match event {
            Event::Request(_) => {
                self.requested = true;
                let result = self.endpoint.conn.accept(at(now), Handshake::default());
                ensure!(result.is_ok(), "accept: {result:?}");
            }
            Event::HttpRequest(_) => ensure!(false, "{side:?}: HttpRequest for an upgrade"),
            Event::Open(_) => {
                self.opened_at = Some(now);
                self.last_rx = now;
                self.last_data = now;
            }
            Event::Message(message) => {
                if echo {
                    let conn = &mut self.endpoint.conn;
                    let state = conn.state();
                    let result = conn.send(at(now), message.clone());
                    check_usage(side, "echo send", state, &result)?;
                    if result.is_ok() {
                        self.sent.push(message.clone());
                    }
                }
                self.last_data = now;
                self.received.push(message);
            }
            Event::Ping(_) | Event::Pong(_) | Event::Drained => {}
            Event::CloseReceived(frame) => {
                if self.close_called.is_none() {
                    // The reply goes out now and drops what is still queued:
                    // only what was sent in this drain, before this event.
                    self.droppable = Some((self.flushed, self.sent.len()));
                }
                self.close_received = Some((now, frame));
            }
            Event::Closed(closed) => self.closed = Some((now, *closed)),
        }
        Ok(())
    }

    /// Property 3: our own output follows the rules, as the peer reads it
    /// ([`Stream`]), and property 4: the heartbeat pings only a peer that
    /// has been silent for whole intervals, and at most `max_missed_pongs`
    /// times: at `last_seen + k * ping_interval`, 1 <= k <= max_missed_pongs.
    fn on_output(&mut self, now: Duration, bytes: &[u8]) -> Outcome {
        let side = self.side;
        let controls = self.out.read(bytes);
        let controls =
            controls.map_err(|e| TestCaseError::fail(format!("{side:?}'s own output: {e}")))?;
        for control in controls {
            if let Control::Ping(payload) = control
                && payload.is_empty()
            {
                let silent = now.saturating_sub(self.last_rx);
                let k = silent.as_nanos() / PING_INTERVAL.as_nanos();
                ensure!(
                    self.state == State::Open
                        && silent == PING_INTERVAL * k as u32
                        && (1..=u128::from(self.config.max_missed_pongs)).contains(&k),
                    "{side:?}: heartbeat ping at {} ms in {:?}, last sign of life {} ms",
                    ms(now),
                    self.state,
                    ms(self.last_rx)
                );
            }
        }
        Ok(())
    }

    /// The rules' reading of what was handed to `handle_input`.
    fn on_input(&mut self, bytes: &[u8]) -> Outcome {
        let side = self.side;
        match self.inp.read(bytes) {
            Ok(_) => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!(
                "the stream to the {side:?}: {e}"
            ))),
        }
    }
}

/// `send`, `ping` and `close` succeed exactly when the connection is open,
/// and otherwise say why.
fn check_usage(side: Side, what: &str, state: State, result: &Result<(), UsageError>) -> Outcome {
    let fine = matches!(
        (state, result),
        (State::Open, Ok(()))
            | (State::Handshaking, Err(UsageError::NotOpen))
            | (State::Closing | State::Closed, Err(UsageError::Closing))
    );
    ensure!(fine, "{side:?}: {what} in {state:?} gave {result:?}");
    Ok(())
}

// ---- the simulation -----------------------------------------------------------

struct Sim {
    now: Duration,
    peers: [Peer; 2],
    /// `pipes[i]` carries what `peers[i]` writes.
    pipes: [Pipe; 2],
    echo: Option<Side>,
    /// A fault took effect while a side was still running.
    faulted: bool,
    /// Bytes that reached a side whose transport was closed: each a TCP
    /// reset, which destroys what the writer had not read yet.
    resets: usize,
    steps: u64,
    /// The last notable things that happened, for failure reports.
    trace: VecDeque<String>,
}

impl Sim {
    fn new(scenario: &Scenario) -> Result<Self, TestCaseError> {
        let client_config = config(&scenario.client);
        let server_config = config(&scenario.server);
        let request = ClientRequest::new("example.com", 80, "/model");
        let client = Connection::client(request, client_config.clone(), scenario.seed, base())
            .map_err(|e| TestCaseError::fail(format!("client: {e}")))?;
        let server = Connection::server(server_config.clone(), base())
            .map_err(|e| TestCaseError::fail(format!("server: {e}")))?;
        let mut sim = Self {
            now: Duration::ZERO,
            peers: [
                Peer::new(Side::Client, client, client_config.clone(), &server_config),
                Peer::new(Side::Server, server, server_config, &client_config),
            ],
            pipes: [
                Pipe::new(scenario.client.delay_ms, splitmix(&mut { scenario.seed })),
                Pipe::new(scenario.server.delay_ms, splitmix(&mut { !scenario.seed })),
            ],
            echo: scenario.echo,
            faulted: false,
            resets: 0,
            steps: 0,
            trace: VecDeque::new(),
        };
        // Creating a connection is an input too: the client's request.
        for side in BOTH {
            sim.drain(side)?;
        }
        Ok(sim)
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == 120 {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>6} ms  {what}", ms(self.now)));
    }

    fn peer(&self, side: Side) -> &Peer {
        &self.peers[index(side)]
    }

    fn peer_mut(&mut self, side: Side) -> &mut Peer {
        &mut self.peers[index(side)]
    }

    /// Drains `side` as the contract says (the harness checks the event
    /// grammar and the order of outputs), carries out its transport
    /// actions, and checks properties 3 and 5 after every drain:
    /// * `buffered_input()` is within its documented bound for the state
    ///   (events are drained, so nothing undecoded may remain);
    /// * `buffered_amount()` is 0: everything queued was taken;
    /// * the state is `Closed` exactly when `Closed` was reported, and
    ///   `Closing` only after a close frame went one way;
    /// * once over, a timer runs exactly until the transport is closed.
    fn drain(&mut self, side: Side) -> Outcome {
        let now = self.now;
        let echo = self.echo == Some(side);
        let mut notes = Vec::new();
        let me = &mut self.peers[index(side)];
        loop {
            let events = me.endpoint.events();
            if events.is_empty() {
                break;
            }
            for event in events {
                notes.push(format!("{side:?}: {}", summarize(&event)));
                me.on_event(now, event, echo)?;
            }
        }
        let out = me.endpoint.drain(at(now));
        for event in out.events {
            notes.push(format!("{side:?}: {}", summarize(&event)));
            me.on_event(now, event, echo)?;
        }
        me.on_output(now, &out.wire)?;
        me.flushed = me.sent.len();
        let pipe = &mut self.pipes[index(side)];
        if pipe.writable() && !out.wire.is_empty() {
            pipe.write(now, out.wire);
        }
        for action in out.transport {
            notes.push(format!("{side:?}: {action:?}"));
            match action {
                TransportAction::HalfClose => me.half_closed_at = Some(now),
                TransportAction::Close => me.transport_closed_at = Some(now),
            }
            if !me.lingers {
                pipe.shut(now);
            }
        }

        let state = me.endpoint.conn.state();
        me.state = state;
        ensure!(
            (state == State::Closed) == me.closed.is_some(),
            "{side:?}: state {state:?} but Closed reported: {}",
            me.closed.is_some()
        );
        ensure!(
            state != State::Closing || me.close_called.is_some() || me.close_received.is_some(),
            "{side:?}: closing, but no close was sent or received"
        );
        let held = me.endpoint.conn.buffered_input();
        let bound = input_bound(&me.config, state);
        ensure!(
            held <= bound,
            "{side:?}: buffered_input {held} over {bound} in {state:?}"
        );
        let queued = me.endpoint.conn.buffered_amount();
        ensure!(
            queued == 0,
            "{side:?}: buffered_amount {queued} after draining transmits"
        );
        if state == State::Closed {
            let timer = me.endpoint.conn.poll_timeout().is_some();
            ensure!(
                timer == me.transport_closed_at.is_none(),
                "{side:?}: closed, a timer: {timer}, the transport closed: {:?}",
                me.transport_closed_at.map(ms)
            );
        }
        for note in notes {
            self.note(note);
        }
        Ok(())
    }

    fn step(&mut self) -> Outcome {
        self.steps += 1;
        ensure!(
            self.steps <= MAX_STEPS,
            "runaway: {MAX_STEPS} inputs in one case"
        );
        Ok(())
    }

    /// When the front chunk from `from` can be delivered: to a peer that is
    /// driven, or (as a reset) to one that has closed its transport.
    fn deliverable(&self, from: Side) -> Option<Duration> {
        let pipe = &self.pipes[index(from)];
        let to = self.peer(from.other());
        let reset = to.transport_closed_at.is_some() && !to.lingers && to.frozen_at.is_none();
        if pipe.cut || !(to.driven() || reset) {
            return None;
        }
        pipe.queue.front().map(|(due, _)| *due)
    }

    /// Bytes from `from` reached a peer whose transport is closed: the
    /// peer's kernel answers with a reset, which destroys what `from` had
    /// not read yet and fails its transport.
    fn reset(&mut self, from: Side) -> Outcome {
        let to = from.other();
        self.resets += 1;
        self.note(format!("{to:?}: reset by bytes from the {from:?}"));
        self.pipes[index(from)].cut();
        self.pipes[index(to)].cut();
        let now = self.now;
        let writer = self.peer_mut(from);
        writer.reset_at = Some(now);
        if writer.driven() {
            let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            writer.endpoint.conn.handle_transport_error(at(now), &reset);
            self.drain(from)?;
        }
        Ok(())
    }

    /// Delivers every chunk due by now, one `handle_input` (or
    /// `handle_eof`) and one drain each. Returns whether anything happened.
    fn deliver_due(&mut self) -> Result<bool, TestCaseError> {
        let mut any = false;
        for from in BOTH {
            while self.deliverable(from).is_some_and(|due| due <= self.now) {
                self.step()?;
                any = true;
                let now = self.now;
                let pipe = &mut self.pipes[index(from)];
                let (_, mut chunk) = pipe.queue.pop_front().expect("front");
                // A read takes whatever has arrived: often several writes
                // at once. That is what puts a message and the close behind
                // it into one `handle_input`, so a peer that reacts to the
                // message (the echo) has it queued when the close arrives.
                if let Chunk::Data(bytes) = &mut chunk {
                    let rng = &mut pipe.rng(now);
                    while splitmix(rng).is_multiple_of(2)
                        && let Some((due, Chunk::Data(more))) = pipe.queue.front()
                        && *due <= now
                    {
                        bytes.extend_from_slice(more);
                        pipe.queue.pop_front();
                    }
                }
                let to = from.other();
                if self.peer(to).transport_closed_at.is_some() {
                    // An end of stream to a closed socket ends nothing more.
                    if let Chunk::Data(_) = chunk {
                        self.reset(from)?;
                    }
                    continue;
                }
                match chunk {
                    Chunk::Data(bytes) => {
                        let peer = self.peer_mut(to);
                        let before = peer.endpoint.conn.state();
                        peer.endpoint.conn.handle_input(at(now), &bytes);
                        if before == State::Open {
                            peer.last_rx = now;
                        }
                        peer.on_input(&bytes)?;
                        self.drain(to)?;
                    }
                    Chunk::Eof => {
                        self.note(format!("{to:?}: handle_eof"));
                        let peer = self.peer_mut(to);
                        peer.eof_at = Some(now);
                        peer.endpoint.conn.handle_eof(at(now));
                        self.drain(to)?;
                    }
                }
                // Property 1, as it happens: a message fully handed over is
                // reported by the end of the drain.
                let peer = self.peer(to);
                ensure!(
                    peer.received.len() == peer.inp.messages.len(),
                    "{to:?} was handed {} messages and reported {}",
                    peer.inp.messages.len(),
                    peer.received.len()
                );
            }
        }
        Ok(any)
    }

    /// Fires every timer due by now. After `handle_timeout` and its drain,
    /// `poll_timeout` must have moved past now: a deadline that stays put
    /// would have a driver spin.
    fn fire_timers(&mut self) -> Result<bool, TestCaseError> {
        let mut any = false;
        for side in BOTH {
            let peer = self.peer(side);
            if !peer.driven() {
                continue;
            }
            let Some(deadline) = peer.endpoint.conn.poll_timeout() else {
                continue;
            };
            if deadline > at(self.now) {
                continue;
            }
            let state = peer.state;
            let idle_limit = peer.idle_limit();
            self.step()?;
            any = true;
            self.note(format!("{side:?}: handle_timeout in {state:?}"));
            let now = at(self.now);
            let t = self.now;
            let peer = self.peer_mut(side);
            peer.endpoint.conn.handle_timeout(now);
            if state == State::Open && peer.endpoint.conn.state() == State::Closing {
                // Only the idle timeout starts a close from a timer: with
                // 1001, exactly `idle_timeout` after the last data message.
                // From here on it is as if the application had closed.
                ensure!(
                    idle_limit == Some(t),
                    "{side:?} started closing at {} ms; idle limit {:?} ms",
                    ms(t),
                    idle_limit.map(ms)
                );
                let frame = CloseFrame {
                    code: CloseCode::GOING_AWAY,
                    reason: "idle timeout".into(),
                };
                peer.close_called = Some((t, frame));
                self.note(format!("{side:?}: idle timeout"));
            }
            self.drain(side)?;
            let next = self.peer(side).endpoint.conn.poll_timeout();
            ensure!(
                next.is_none_or(|next| next > now),
                "{side:?}: poll_timeout still {:?} ms after handle_timeout at {} ms",
                next.map(|n| ms(n - base())),
                ms(self.now)
            );
        }
        Ok(any)
    }

    /// Handles everything due at `now`. Then no driven side may still be in
    /// a state whose deadline is now or past (properties 2 and 4: the
    /// heartbeat has given up on a silent peer, the close handshake or the
    /// handshake has timed out).
    fn settle(&mut self) -> Outcome {
        while self.deliver_due()? | self.fire_timers()? {}
        for (side, peer, deadline) in self.deadlines() {
            ensure!(
                self.now < deadline,
                "{side:?} still {:?} at {} ms, its deadline was {} ms",
                peer.state,
                ms(self.now),
                ms(deadline)
            );
        }
        Ok(())
    }

    /// Each driven side with the deadline ([`Peer::deadline`]) by which it
    /// must leave its state.
    fn deadlines(&self) -> impl Iterator<Item = (Side, &Peer, Duration)> {
        BOTH.into_iter().filter_map(|side| {
            let peer = self.peer(side);
            let deadline = peer.driven().then(|| peer.deadline()).flatten()?;
            Some((side, peer, deadline))
        })
    }

    /// The next time anything is due: a deliverable chunk or a timer.
    fn next_due(&self) -> Option<Duration> {
        let chunks = BOTH.into_iter().filter_map(|from| self.deliverable(from));
        let timers = BOTH.into_iter().filter_map(|side| {
            let peer = self.peer(side);
            peer.driven()
                .then(|| peer.endpoint.conn.poll_timeout())
                .flatten()
                .map(|t| t.saturating_duration_since(base()))
        });
        chunks.chain(timers).min()
    }

    /// Moves the clock. Jumping past a driven side's deadline means its
    /// timer was armed too late (or not at all): fail here, with the times.
    fn advance(&mut self, to: Duration) -> Outcome {
        for (side, peer, deadline) in self.deadlines() {
            ensure!(
                to <= deadline,
                "{side:?} in {:?} must act by {} ms, but nothing is due before {} ms \
                 (poll_timeout {:?})",
                peer.state,
                ms(deadline),
                ms(to),
                peer.endpoint.conn.poll_timeout().map(|t| ms(t - base()))
            );
        }
        self.now = to;
        self.settle()
    }

    fn run_until(&mut self, target: Duration) -> Outcome {
        self.settle()?;
        while let Some(next) = self.next_due().filter(|&next| next <= target) {
            self.advance(next.max(self.now))?;
        }
        if target > self.now {
            self.advance(target)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Wait { ms } => return self.run_until(self.now + Duration::from_millis(*ms)),
            Op::Delay {
                from,
                min_ms,
                max_ms,
            } => self.pipes[index(*from)].delay_ms = (*min_ms, *max_ms),
            Op::Send(side, payload) => {
                if self.peer(*side).frozen_at.is_none() {
                    let message = payload.message();
                    let now = self.now;
                    let peer = self.peer_mut(*side);
                    let state = peer.endpoint.conn.state();
                    let result = peer.endpoint.conn.send(at(now), message.clone());
                    check_usage(*side, "send", state, &result)?;
                    if result.is_ok() {
                        peer.sent.push(message);
                        peer.last_data = now;
                    }
                    self.drain(*side)?;
                }
            }
            Op::Ping(side, len) => {
                if self.peer(*side).frozen_at.is_none() {
                    let now = at(self.now);
                    let conn = &mut self.peer_mut(*side).endpoint.conn;
                    let state = conn.state();
                    let result = conn.ping(now, (0..*len).collect::<Vec<u8>>().into());
                    check_usage(*side, "ping", state, &result)?;
                    self.drain(*side)?;
                }
            }
            Op::Close { side, code, reason } => self.close(*side, CloseCode::new(*code), reason)?,
            Op::Burst(side, calls) => self.burst(*side, calls)?,
            Op::Freeze(side) => {
                if self.peer(*side).frozen_at.is_none() {
                    self.fault(format!("{side:?} freezes"));
                    self.peer_mut(*side).frozen_at = Some(self.now);
                    self.pipes[index(*side)].cut();
                }
            }
            Op::Mute(side) => {
                if self.peer(*side).muted_at.is_none() {
                    self.fault(format!("{side:?} is muted"));
                    self.peer_mut(*side).muted_at = Some(self.now);
                    self.pipes[index(*side)].cut();
                }
            }
            Op::Linger(side) => {
                if !self.peer(*side).lingers {
                    self.fault(format!("{side:?} will not close its transport"));
                    self.peer_mut(*side).lingers = true;
                }
            }
            Op::HalfClose(side) => {
                if !self.pipes[index(*side)].shut {
                    self.fault(format!("{side:?} half-closes"));
                    self.pipes[index(*side)].shut(self.now);
                }
            }
        }
        self.settle()
    }

    /// Makes the calls without draining in between. Before the one drain,
    /// `buffered_amount()` is exactly the payload bytes the successful calls
    /// queued (the outbox was empty after the previous drain): messages,
    /// ping payloads, and the close's code and reason.
    fn burst(&mut self, side: Side, calls: &[Call]) -> Outcome {
        if self.peer(side).frozen_at.is_some() {
            return Ok(());
        }
        let now = self.now;
        let mut queued = 0;
        let mut notes = Vec::new();
        let peer = self.peer_mut(side);
        for call in calls {
            let state = peer.endpoint.conn.state();
            match call {
                Call::Send(payload) => {
                    let message = payload.message();
                    let result = peer.endpoint.conn.send(at(now), message.clone());
                    check_usage(side, "send", state, &result)?;
                    if result.is_ok() {
                        queued += message.len();
                        peer.sent.push(message);
                        peer.last_data = now;
                    }
                }
                Call::Ping(len) => {
                    let result = peer
                        .endpoint
                        .conn
                        .ping(at(now), (0..*len).collect::<Vec<u8>>().into());
                    check_usage(side, "ping", state, &result)?;
                    if result.is_ok() {
                        queued += usize::from(*len);
                    }
                }
                Call::Close { code, reason } => {
                    let code = CloseCode::new(*code);
                    let result = peer.endpoint.conn.close(at(now), code, reason);
                    check_usage(side, "close", state, &result)?;
                    if result.is_ok() {
                        queued += 2 + reason.len();
                        let frame = CloseFrame {
                            code,
                            reason: reason.clone(),
                        };
                        peer.close_called = Some((now, frame));
                        notes.push(format!("{side:?}: close({code}, {reason:?})"));
                    }
                }
            }
            let amount = peer.endpoint.conn.buffered_amount();
            ensure!(
                amount == queued,
                "{side:?}: buffered_amount {amount} after queueing {queued} payload bytes"
            );
        }
        for note in notes {
            self.note(note);
        }
        self.drain(side)
    }

    fn fault(&mut self, what: String) {
        if BOTH.iter().any(|&side| self.peer(side).driven()) {
            self.faulted = true;
        }
        self.note(what);
    }

    fn close(&mut self, side: Side, code: CloseCode, reason: &str) -> Outcome {
        if self.peer(side).frozen_at.is_some() {
            return Ok(());
        }
        let now = self.now;
        let peer = self.peer_mut(side);
        let state = peer.endpoint.conn.state();
        let result = peer.endpoint.conn.close(at(now), code, reason);
        check_usage(side, "close", state, &result)?;
        if result.is_ok() {
            let frame = CloseFrame {
                code,
                reason: reason.to_owned(),
            };
            peer.close_called = Some((now, frame));
            self.note(format!("{side:?}: close({code}, {reason:?})"));
        }
        self.drain(side)
    }

    fn run(&mut self, scenario: &Scenario) -> Outcome {
        for op in &scenario.ops {
            self.note(format!("op {op:?}"));
            self.apply(op)?;
        }
        // Wind down: as soon as a side is open (the handshake may still be
        // in flight), the first driven, open side of `final_closer` and its
        // peer closes; then everything runs until every driven side has
        // reported Closed.
        let limit = self.now + SETTLE_LIMIT;
        let mut closer = Some([scenario.final_closer, scenario.final_closer.other()]);
        loop {
            if let Some(candidates) = closer
                && let Some(side) = candidates
                    .into_iter()
                    .find(|&side| self.peer(side).driven() && self.peer(side).state == State::Open)
            {
                closer = None;
                self.close(side, CloseCode::NORMAL, "end of scenario")?;
                self.settle()?;
                if let Some((ms, fault)) = &scenario.final_fault {
                    self.run_until(self.now + Duration::from_millis(*ms))?;
                    self.note(format!("op {fault:?}"));
                    self.apply(fault)?;
                }
            }
            let Some(next) = self.next_due() else { break };
            ensure!(
                next <= limit,
                "still running {} ms after the last operation",
                ms(SETTLE_LIMIT)
            );
            self.advance(next.max(self.now))?;
        }
        for side in BOTH {
            let peer = self.peer(side);
            ensure!(
                !peer.driven(),
                "{side:?} is driven, in {:?}, and has nothing left to wait for",
                peer.state
            );
            if peer.closed.is_some() {
                self.judge_closed(side)?;
                self.judge_transport(side)?;
            }
            if peer.transport_closed_at.is_some() {
                // Closed is the last event, and for good.
                let t = at(self.now);
                let endpoint = &mut self.peer_mut(side).endpoint;
                ensure!(
                    endpoint.conn.poll_event().is_none()
                        && endpoint.write(t, usize::MAX).is_empty()
                        && endpoint.conn.poll_transport().is_none()
                        && endpoint.conn.poll_timeout().is_none(),
                    "{side:?}: output after Closed"
                );
                let result = endpoint.conn.send(t, Message::text("late"));
                check_usage(side, "send", State::Closed, &result)?;
            }
            self.check_close_frame(side)?;
            self.check_delivery(side)?;
        }
        if !self.faulted {
            self.check_fault_free()?;
        }
        Ok(())
    }

    /// Properties 2 and 4: why and when `side` reported `Closed`, from what
    /// it observed, with `CT` the close timeout:
    ///
    /// * **It read the peer's close frame** at `t_cr`: a clean close with the
    ///   frame's code and reason. A server closes at `t_cr`. A client closes
    ///   when the server's TCP ends (`handle_eof`), no later than
    ///   `t_cr + CT`, or exactly at `t_cr + CT`. If it had closed first at
    ///   `t_cs`, the reply came by `t_cs + CT`.
    /// * **It closed at `t_cs` and read no close frame**: EOF first gives
    ///   1006 `UnexpectedEof` at the EOF; otherwise 1006 `CloseTimeout`
    ///   exactly at `t_cs + CT`.
    /// * **It was open throughout**: EOF gives 1006 `UnexpectedEof` at the
    ///   EOF. Otherwise the heartbeat: `PeerUnresponsive(max_missed_pongs)`
    ///   exactly at `last_seen + ping_interval * (max_missed_pongs + 1)` —
    ///   the engine's formula at the final miss, and the earliest legal time —
    ///   and only if the peer was not live: frozen, either direction muted,
    ///   or closed (without a close frame) and lingering. A live peer
    ///   answers pings within a round trip, well inside one interval; a
    ///   half-close is not an excuse, since the EOF it causes arrives within
    ///   a round trip too.
    /// * **It never opened**: EOF gives the client `Response(Eof)` and the
    ///   server `UnexpectedEof`; a client may read the server's 408; else the
    ///   role's `Timeout` exactly at `handshake_timeout`.
    fn judge_closed(&self, side: Side) -> Outcome {
        let peer = self.peer(side);
        let other = self.peer(side.other());
        let (t, closed) = peer.closed.clone().expect("closed");
        let when = ms(t);
        let abnormal = |error: Error| Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(error),
        };
        if let Some(Error::Transport { kind, .. }) = &closed.error {
            // Only a reset (a fault's consequence) fails a transport here.
            ensure!(
                *kind == std::io::ErrorKind::ConnectionReset
                    && peer.reset_at == Some(t)
                    && closed == abnormal(closed.error.clone().expect("an error")),
                "{side:?}: {closed:?} at {when} ms, reset at {:?}",
                peer.reset_at.map(ms)
            );
        } else if let Some((t_cr, frame)) = &peer.close_received {
            let expected = Closed {
                code: frame.code,
                reason: frame.reason.clone(),
                clean: true,
                error: None,
            };
            ensure!(
                closed == expected,
                "{side:?} read {frame:?} but reported {closed:?}"
            );
            if let Some((t_cs, _)) = &peer.close_called {
                ensure!(
                    *t_cr <= *t_cs + CLOSE_TIMEOUT,
                    "{side:?}: the reply at {} ms came after its close timed out",
                    ms(*t_cr)
                );
            }
            match (side, peer.eof_at) {
                (Side::Server, _) => ensure!(
                    t == *t_cr,
                    "the server read the close at {} ms but closed at {when} ms",
                    ms(*t_cr)
                ),
                (Side::Client, Some(eof)) => ensure!(
                    t == eof && eof <= *t_cr + CLOSE_TIMEOUT,
                    "the client read the close at {} ms, EOF at {} ms, closed at {when} ms",
                    ms(*t_cr),
                    ms(eof)
                ),
                (Side::Client, None) => ensure!(
                    t == *t_cr + CLOSE_TIMEOUT,
                    "the client read the close at {} ms, no EOF, closed at {when} ms",
                    ms(*t_cr)
                ),
            }
        } else if let Some((t_cs, _)) = &peer.close_called {
            match peer.eof_at {
                Some(eof) => ensure!(
                    t == eof && closed == abnormal(Error::UnexpectedEof),
                    "{side:?} closed at {} ms, EOF at {} ms: {closed:?} at {when} ms",
                    ms(*t_cs),
                    ms(eof)
                ),
                None => ensure!(
                    t == *t_cs + CLOSE_TIMEOUT && closed == abnormal(Error::CloseTimeout),
                    "{side:?} closed at {} ms, no reply, no EOF: {closed:?} at {when} ms",
                    ms(*t_cs)
                ),
            }
        } else if peer.opened_at.is_some() {
            match peer.eof_at {
                Some(eof) => ensure!(
                    t == eof && closed == abnormal(Error::UnexpectedEof),
                    "{side:?} open, EOF at {} ms: {closed:?} at {when} ms",
                    ms(eof)
                ),
                None => {
                    let max = peer.config.max_missed_pongs;
                    let limit = peer.heartbeat_limit();
                    ensure!(
                        closed == abnormal(Error::PeerUnresponsive(max)),
                        "{side:?} open, no EOF: {closed:?} at {when} ms"
                    );
                    ensure!(
                        t == limit,
                        "{side:?}: heartbeat gave up at {when} ms; last sign of life {} ms, \
                         so exactly {} ms",
                        ms(peer.last_rx),
                        ms(limit)
                    );
                    // Pings and pongs need both directions: a muted side's
                    // pings never arrive, so its peer (which may not even be
                    // open, and so never pings) cannot answer them. A peer
                    // that closed without a close frame and lingers is as
                    // silent as a frozen one.
                    let silent = other.frozen_at.is_some_and(|f| f <= t)
                        || other.muted_at.is_some_and(|f| f <= t)
                        || peer.muted_at.is_some_and(|f| f <= t)
                        || (other.lingers && other.closed.as_ref().is_some_and(|c| c.0 <= t));
                    ensure!(
                        silent,
                        "{side:?} declared a live peer dead at {when} ms (last sign of life {} ms)",
                        ms(peer.last_rx)
                    );
                }
            }
        } else {
            let expected = match (side, peer.eof_at) {
                (Side::Client, Some(_)) => abnormal(ResponseError::Eof.into()),
                (Side::Server, Some(_)) => abnormal(Error::UnexpectedEof),
                (Side::Client, None) => abnormal(ResponseError::Timeout.into()),
                (Side::Server, None) => abnormal(RequestError::Timeout.into()),
            };
            let refused = side == Side::Client
                && matches!(
                    &closed.error,
                    Some(Error::Response(ResponseError::Rejected { status: 408, .. }))
                )
                && matches!(
                    &other.closed,
                    Some((_, c)) if c.error == Some(RequestError::Timeout.into())
                );
            let at_time = peer.eof_at.unwrap_or(HANDSHAKE_TIMEOUT);
            ensure!(
                refused || (closed == expected && t == at_time),
                "{side:?} never opened: {closed:?} at {when} ms, expected {expected:?} at {} ms",
                ms(at_time)
            );
        }
        Ok(())
    }

    /// Property 2, the transport: once `side` reported `Closed` at `t`, the
    /// core closes its transport by `t + CT`: at `t` (nothing to wait for:
    /// a failed transport, a dead or silent peer, a peer that already ended
    /// its stream), or after half-closing at `t` (every byte written), at
    /// the peer's end of stream, at a reset, or exactly at `t + CT`.
    fn judge_transport(&self, side: Side) -> Outcome {
        let peer = self.peer(side);
        let (t, _) = peer.closed.as_ref().expect("closed");
        let Some(t_c) = peer.transport_closed_at else {
            // Frozen before its transport closed.
            ensure!(
                peer.frozen_at.is_some(),
                "{side:?}: Closed, but the transport is open"
            );
            return Ok(());
        };
        let (t, when) = (*t, ms(t_c));
        match peer.half_closed_at {
            None => ensure!(
                t_c == t,
                "{side:?} closed at {} ms, its transport at {when} ms without half-closing",
                ms(t)
            ),
            Some(t_h) => ensure!(
                t_h == t
                    && (peer.eof_at == Some(t_c)
                        || peer.reset_at == Some(t_c)
                        || t_c == t + CLOSE_TIMEOUT),
                "{side:?} closed at {} ms, half-closed at {} ms, closed its transport at \
                 {when} ms (EOF {:?}, reset {:?})",
                ms(t),
                ms(t_h),
                peer.eof_at.map(ms),
                peer.reset_at.map(ms)
            ),
        }
        Ok(())
    }

    /// Property 2, the wire side: a side that called `close` sent its own
    /// code and reason; one that answered the peer's close echoed the code
    /// (with no reason); one that did neither sent no close frame (heartbeat,
    /// timeouts and EOF end without one).
    fn check_close_frame(&self, side: Side) -> Outcome {
        let peer = self.peer(side);
        let expected = match (&peer.close_called, &peer.close_received) {
            (Some((_, frame)), _) => Some(Some(frame.clone())),
            (None, Some((_, frame))) if frame.code == CloseCode::NO_STATUS => Some(None),
            (None, Some((_, frame))) => Some(Some(CloseFrame {
                code: frame.code,
                reason: String::new(),
            })),
            (None, None) => None,
        };
        ensure!(
            peer.out.close == expected,
            "{side:?} sent close {:?}, expected {expected:?}",
            peer.out.close
        );
        Ok(())
    }

    /// Property 1, in every scenario, for messages from `side` to its peer:
    ///
    /// * what the sender transmitted is `sent[..k]`: every message `send`
    ///   accepted, in order, except the tail that the reply to the peer's
    ///   close dropped, as `close` documents. That tail is exactly the
    ///   messages still queued at that moment: sent after the last transmit
    ///   pass and before the `CloseReceived` that caused the reply (here:
    ///   echoes sent from inside the event loop). Without such a close,
    ///   `k == sent.len()`;
    /// * the receiving application got exactly the messages whose every byte
    ///   was handed to its `handle_input` (parsed independently from the
    ///   same chunks), once each and in order; that is a prefix of what was
    ///   transmitted, since the network only ever loses a suffix.
    ///
    /// Without faults the prefix is everything: see
    /// [`check_fault_free`](Self::check_fault_free).
    fn check_delivery(&self, side: Side) -> Outcome {
        let sender = self.peer(side);
        let receiver = self.peer(side.other());
        let out = &sender.out.messages;
        let k = out.len();
        ensure!(
            k <= sender.sent.len() && out[..] == sender.sent[..k],
            "the {side:?} transmitted {k} messages, not a prefix of the {} it sent",
            sender.sent.len()
        );
        let kept = match sender.droppable {
            Some((from, to)) => {
                ensure!(
                    to == sender.sent.len(),
                    "the {side:?} sent after the peer's close"
                );
                from
            }
            None => sender.sent.len(),
        };
        ensure!(
            k == kept,
            "the {side:?} transmitted {k} of {} messages; it should have dropped exactly \
             those after {kept} (queued when the peer's close arrived: {:?})",
            sender.sent.len(),
            sender.droppable
        );
        ensure!(
            receiver.received == receiver.inp.messages,
            "the {:?} was handed {} messages and reported {}",
            side.other(),
            receiver.inp.messages.len(),
            receiver.received.len()
        );
        let n = receiver.received.len();
        ensure!(
            n <= k && receiver.received[..] == out[..n],
            "the {:?} received {n} messages, not a prefix of the {k} the {side:?} transmitted",
            side.other()
        );
        Ok(())
    }

    /// Without faults (both sides live and reachable until both closed):
    ///
    /// * both opened and both closed cleanly; each reported the peer's close
    ///   code: the initiator's code on both sides, or with simultaneous
    ///   closes each the other's;
    /// * the client closed on the server's EOF (the server closes TCP
    ///   first, §7.1.1), not at its timeout, and after the server;
    /// * every transmitted message arrived: the receiver got exactly
    ///   `sent` minus the documented dropped tail.
    fn check_fault_free(&self) -> Outcome {
        for side in BOTH {
            let peer = self.peer(side);
            let other = self.peer(side.other());
            ensure!(
                peer.opened_at.is_some(),
                "no fault, but the {side:?} never opened"
            );
            let Some((_, closed)) = &peer.closed else {
                return Err(TestCaseError::fail(format!(
                    "no fault, but the {side:?} never closed"
                )));
            };
            let expected = match (&other.close_called, &peer.close_called) {
                (Some((_, frame)), _) => frame.clone(),
                (None, Some((_, frame))) => CloseFrame {
                    code: frame.code,
                    reason: String::new(),
                },
                (None, None) => {
                    return Err(TestCaseError::fail(format!(
                        "no fault and no close, but the {side:?} closed: {closed:?}"
                    )));
                }
            };
            ensure!(
                closed.clean
                    && closed.error.is_none()
                    && closed.code == expected.code
                    && closed.reason == expected.reason,
                "no fault: the {side:?} should close cleanly with {expected:?}, got {closed:?}"
            );
            ensure!(
                other.received == peer.out.messages,
                "no fault: the {side:?} transmitted {} messages, the {:?} received {}",
                peer.out.messages.len(),
                side.other(),
                other.received.len()
            );
        }
        let client = self.peer(Side::Client);
        let server = self.peer(Side::Server);
        let (t_client, _) = client.closed.as_ref().expect("checked");
        let (t_server, _) = server.closed.as_ref().expect("checked");
        ensure!(self.resets == 0, "no fault, but {} resets", self.resets);
        ensure!(
            server.half_closed_at == Some(*t_server)
                && server.transport_closed_at.is_some()
                && server.transport_closed_at == server.eof_at,
            "no fault: the server should half-close at its Closed ({} ms) and close at the \
             client's end of stream; half-closed {:?}, closed {:?}, EOF {:?}",
            ms(*t_server),
            server.half_closed_at.map(ms),
            server.transport_closed_at.map(ms),
            server.eof_at.map(ms)
        );
        ensure!(
            client.transport_closed_at == Some(*t_client),
            "no fault: the client should close its transport at its Closed ({} ms), not {:?}",
            ms(*t_client),
            client.transport_closed_at.map(ms)
        );
        ensure!(
            client.eof_at == Some(*t_client) && t_server <= t_client,
            "no fault: the client should close on the server's EOF; server closed at {} ms, \
             client at {} ms, EOF {:?}",
            ms(*t_server),
            ms(*t_client),
            client.eof_at.map(ms)
        );
        Ok(())
    }
}

fn run(scenario: &Scenario) -> Outcome {
    let mut sim = Sim::new(scenario)?;
    sim.run(scenario).map_err(|error| {
        let trace: Vec<&str> = sim.trace.iter().map(String::as_str).collect();
        TestCaseError::fail(format!(
            "{error}\n-- last steps, at virtual time --\n{}",
            trace.join("\n")
        ))
    })
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        // About 30 ms a case in a debug build: 512 cases take some 15 s on
        // one core. `PROPTEST_CASES=5000` for a deeper run.
        cases: cases(512),
        // Failing cases go to `core/tests/model.proptest-regressions`, next
        // to this file, and are replayed first on every run; commit it. Set
        // explicitly: the default (`SourceParallel`) picks the place by
        // looking for a lib.rs above this file, which a layout change moves.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Two real connections over a simulated network with a virtual clock:
    /// every property in the module documentation, after every step.
    #[test]
    fn conversations_with_time_silence_and_half_close(scenario in scenario()) {
        run(&scenario)?;
    }
}
