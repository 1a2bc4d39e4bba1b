//! Property tests for the whole engine, driven only through the public API.
//!
//! * (a) `conversations_arrive_intact_and_close_cleanly`: a client and a
//!   server exchange random messages and pings through random chunkings, and
//!   every event each side reports equals what a small reference model of the
//!   protocol predicts; then a close from either side completes cleanly.
//! * (b) `*_events_do_not_depend_on_how_input_is_split`: one byte stream fed
//!   whole and fed in random pieces gives the same events and output.
//! * (c) `*_survives_*`: arbitrary input never panics, never breaks the event
//!   grammar or the output framing, and never buffers more than the limits.
//!
//! Every run starts from one `Instant` taken once, plus offsets, so a failure
//! replays exactly: the engine itself is deterministic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use sockeye_core::testing::{Endpoint, Frame, Length, Side, read_frames, split_head};
use sockeye_core::{
    ClientRequest, CloseCode, CloseFrame, Closed, Config, Connection, Error, Event, Handshake,
    Message, Response, State, TransportAction, UsageError,
};

mod common;
use common::{Payload, input_bound, side, splitmix};

// ---- shared helpers ----------------------------------------------------

/// Every run starts from the harness's one base instant.
fn base() -> Instant {
    sockeye_core::testing::base_instant()
}

fn request() -> ClientRequest {
    ClientRequest::new("example.com", 80, "/chat?room=1")
}

/// `Event::Closed` from its fields. `.into()` keeps this independent of
/// whether the variant boxes its payload.
fn closed_event(code: CloseCode, reason: &str, clean: bool, error: Option<Error>) -> Event {
    Event::Closed(
        Closed {
            code,
            reason: reason.to_owned(),
            clean,
            error,
        }
        .into(),
    )
}

fn clean_close(code: CloseCode, reason: &str) -> Event {
    closed_event(code, reason, true, None)
}

fn abnormal_eof() -> Event {
    closed_event(CloseCode::ABNORMAL, "", false, Some(Error::UnexpectedEof))
}

/// Checks `buffered_input` against [`input_bound`]. Events are decoded one
/// message at a time, as the application polls them, so between an input and
/// the drain of its events the connection may also hold the not yet decoded
/// rest of that input: `undrained` bytes.
fn check_input_held(conn: &Connection, config: &Config, undrained: usize) {
    let state = conn.state();
    let bound = input_bound(config, state) + undrained;
    let held = conn.buffered_input();
    assert!(
        held <= bound,
        "buffered_input {held} over {bound} in {state:?}"
    );
}

/// A client connection, or a server one, driven by the harness.
fn endpoint(role: Side, config: Config, seed: u64) -> Endpoint {
    match role {
        Side::Client => Endpoint::new(Connection::client(request(), config, seed, base()).unwrap()),
        Side::Server => Endpoint::server(config, base()),
    }
}

fn small_text() -> impl Strategy<Value = String> {
    // Any scalar value, so multi-byte UTF-8 is common.
    vec(any::<char>(), 0..64).prop_map(String::from_iter)
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        4 => small_text().prop_map(Payload::Text),
        4 => vec(any::<u8>(), 0..300).prop_map(Payload::Binary),
        1 => (1000usize..=100 * 1024, any::<u64>()).prop_map(|(len, seed)| Payload::BigText { len, seed }),
        1 => (1000usize..=100 * 1024, any::<u64>()).prop_map(|(len, seed)| Payload::BigBinary { len, seed }),
    ]
}

fn fragment_size() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        2 => Just(None),
        1 => (1usize..=16).prop_map(Some),
        2 => (1usize..=2048).prop_map(Some),
        1 => (1usize..=70_000).prop_map(Some),
    ]
}

fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(1000u16),
        1000u16..=1003,
        1007u16..=1014,
        3000u16..=4999
    ]
}

fn close_reason() -> impl Strategy<Value = String> {
    // At most 30 scalar values of at most 4 bytes: within the 123-byte limit.
    vec(any::<char>(), 0..30).prop_map(String::from_iter)
}

/// How a byte stream is cut into `handle_input` calls.
#[derive(Debug, Clone)]
enum Chunking {
    /// One call with everything.
    Whole,
    /// Calls of these sizes, cycled.
    Sizes(Vec<usize>),
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        1 => Just(Chunking::Whole),
        2 => vec(1usize..=8, 1..6).prop_map(Chunking::Sizes),
        2 => vec(1usize..=300, 1..6).prop_map(Chunking::Sizes),
        1 => vec(1usize..=70_000, 1..4).prop_map(Chunking::Sizes),
    ]
}

impl Chunking {
    /// The sizes, cycled.
    fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        let sizes = match self {
            Self::Whole => &[usize::MAX][..],
            Self::Sizes(sizes) => &sizes[..],
        };
        sizes.iter().copied().cycle()
    }
}

fn split_bytes(bytes: &[u8], chunking: &Chunking) -> Vec<Vec<u8>> {
    match chunking {
        Chunking::Whole => vec![bytes.to_vec()],
        Chunking::Sizes(sizes) => {
            let mut writes = Vec::new();
            let mut rest = bytes;
            for &size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at(size.min(rest.len()));
                writes.push(head.to_vec());
                rest = tail;
            }
            writes
        }
    }
}

/// A frame as `from` sends it: masked with `key` from a client.
fn sent_by(frame: Frame, from: Side, key: [u8; 4]) -> Frame {
    match from {
        Side::Client => frame.masked(key),
        Side::Server => frame,
    }
}

/// The frames of a byte stream that `role` wrote: its HTTP head first
/// (checked to be whole), then whole frames and nothing else.
fn parse_output(role: Side, wire: &[u8]) -> (Vec<u8>, Vec<Frame>) {
    let (head, frames) = split_head(wire).expect("an HTTP head first");
    let start: &[u8] = match role {
        Side::Client => b"GET /chat?room=1 HTTP/1.1\r\n",
        Side::Server => b"HTTP/1.1 ",
    };
    assert!(head.starts_with(start), "{head:?}");
    let (frames, rest) = read_frames(frames);
    assert!(rest.is_empty(), "a frame cut short: {rest:?}");
    (head.to_vec(), frames)
}

/// A client and a server endpoint, both open, with their outputs drained;
/// each handshake message reaches the other side in reads as `chunking`
/// says. The server's request event and both open events are checked.
fn open_pair(
    client_config: Config,
    server_config: Config,
    seed: u64,
    chunking: (&Chunking, &Chunking),
) -> (Endpoint, Endpoint) {
    let mut client = endpoint(Side::Client, client_config, seed);
    let mut server = endpoint(Side::Server, server_config, seed);
    let mut events = Vec::new();
    for read in split_bytes(&client.drain(base()).wire, chunking.0) {
        server.conn.handle_input(base(), &read);
        for event in server.events() {
            if matches!(event, Event::Request(_)) {
                server.conn.accept(base(), Handshake::default()).unwrap();
            }
            events.push(event);
        }
    }
    events.extend(server.events());
    match &events[..] {
        [Event::Request(request), Event::Open(handshake)] => {
            assert_eq!(
                (request.path.as_str(), request.query.as_deref()),
                ("/chat", Some("room=1"))
            );
            assert_eq!(handshake, &Handshake::default());
        }
        other => panic!("server handshake events: {other:?}"),
    }
    let mut events = Vec::new();
    for read in split_bytes(&server.drain(base()).wire, chunking.1) {
        client.conn.handle_input(base(), &read);
        events.extend(client.events());
    }
    assert!(
        matches!(&events[..], [Event::Open(handshake)] if handshake.protocol.is_none()),
        "client handshake events: {events:?}"
    );
    assert!(client.drain(base()).is_empty());
    (client, server)
}

// ---- (a) a conversation against a reference model ----------------------

/// What one side's outbox holds and what its application should have seen,
/// as the protocol (and the engine's documented queueing) predicts it:
///
/// * a frame is, in order: a queued ping, else a queued pong, else the
///   next fragment of the front message, else the close frame; nothing
///   follows the close frame;
/// * where a message is cut is the engine's choice, within the rule: each
///   fragment at most `fragment_size` (the whole message without one), none
///   empty but that of an empty message; the fragments' concatenation is
///   the message the receiver must report;
/// * every received ping is answered while at most [`PENDING_PONGS`] pongs
///   wait, the oldest being dropped beyond that (§5.5.3 allows answering
///   only the latest); none is answered once a close frame is queued;
/// * a received close is answered at once: queued pings, pongs and data are
///   dropped (§5.5.1, "as soon as practical");
/// * the server reports `Closed` on the peer's close; the client waits for
///   the transport to end.
#[derive(Debug, Default)]
struct Model {
    fragment_size: Option<usize>,
    pings: VecDeque<Bytes>,
    pongs: VecDeque<Bytes>,
    data: VecDeque<Message>,
    front_sent: usize,
    close: Option<CloseFrame>,
    /// A close frame is queued or sent: pings are no longer answered.
    close_queued: bool,
    /// The close frame went out: nothing follows it.
    close_out: bool,
    /// Input is ignored: the peer's close frame was read.
    close_received: Option<CloseFrame>,
    /// Payload bytes of the fragmented message being received.
    partial: usize,
    expected: Vec<Event>,
}

/// The engine's bound on unanswered pings (an internal constant, mirrored
/// here because a flood of pings is part of what the model checks).
const PENDING_PONGS: usize = 16;

/// One frame as the model predicts it.
#[derive(Debug)]
enum Wire {
    Ping(Bytes),
    Pong(Bytes),
    Data {
        opcode: u8,
        fin: bool,
        len: usize,
        /// The whole message, on its final fragment.
        message: Option<Message>,
    },
    Close(CloseFrame),
}

impl Wire {
    /// What the frame header must say: FIN, opcode and payload length.
    fn shape(&self) -> (bool, u8, usize) {
        match self {
            Self::Ping(p) => (true, 0x9, p.len()),
            Self::Pong(p) => (true, 0xA, p.len()),
            Self::Data {
                opcode, fin, len, ..
            } => (*fin, *opcode, *len),
            Self::Close(frame) => (true, 0x8, 2 + frame.reason.len()),
        }
    }
}

impl Model {
    /// The next frame, if any. `written` is the payload length of the frame
    /// the engine wrote, if it wrote one: a data fragment takes that length
    /// once it is checked against the rule.
    fn poll(&mut self, written: Option<usize>) -> Option<Wire> {
        if self.close_out {
            return None;
        }
        if let Some(ping) = self.pings.pop_front() {
            return Some(Wire::Ping(ping));
        }
        if let Some(pong) = self.pongs.pop_front() {
            return Some(Wire::Pong(pong));
        }
        if let Some(message) = self.data.front() {
            let total = message.len();
            let start = self.front_sent;
            let left = total - start;
            let len = written.unwrap_or(left);
            assert!(
                len <= left
                    && (len > 0 || left == 0)
                    && self.fragment_size.map_or(len == left, |size| len <= size),
                "a fragment of {len} bytes, with {left} left and fragment size {:?}",
                self.fragment_size
            );
            let end = start + len;
            let opcode = match (start, message) {
                (0, Message::Text(_)) => 0x1,
                (0, Message::Binary(_)) => 0x2,
                _ => 0x0,
            };
            let fin = end == total;
            self.front_sent = if fin { 0 } else { end };
            let message = if fin { self.data.pop_front() } else { None };
            return Some(Wire::Data {
                opcode,
                fin,
                len: end - start,
                message,
            });
        }
        let close = self.close.take()?;
        self.close_out = true;
        Some(Wire::Close(close))
    }

    fn receive(&mut self, wire: &Wire, role: Side) {
        if self.close_received.is_some() {
            return;
        }
        match wire {
            Wire::Ping(payload) => {
                self.expected.push(Event::Ping(payload.clone()));
                if !self.close_queued {
                    if self.pongs.len() == PENDING_PONGS {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(payload.clone());
                }
            }
            Wire::Pong(payload) => self.expected.push(Event::Pong(payload.clone())),
            Wire::Data {
                fin, len, message, ..
            } => {
                if *fin {
                    self.partial = 0;
                    self.expected
                        .push(Event::Message(message.clone().expect("final fragment")));
                } else {
                    self.partial += len;
                }
            }
            Wire::Close(frame) => {
                if !self.close_queued {
                    self.pings.clear();
                    self.pongs.clear();
                    self.data.clear();
                    self.front_sent = 0;
                    // The reply echoes the code only.
                    self.close = Some(CloseFrame {
                        code: frame.code,
                        reason: String::new(),
                    });
                    self.close_queued = true;
                }
                self.expected.push(Event::CloseReceived(frame.clone()));
                if role == Side::Server {
                    self.expected.push(clean_close(frame.code, &frame.reason));
                }
                self.close_received = Some(frame.clone());
            }
        }
    }
}

struct Peer {
    side: Side,
    endpoint: Endpoint,
    config: Config,
    events: Vec<Event>,
    model: Model,
    /// What the application sent, for checks independent of the model.
    sent: Vec<Message>,
    pinged: Vec<Bytes>,
}

#[derive(Debug, Clone)]
enum Op {
    Send(Side, Payload),
    Ping(Side, Vec<u8>),
    /// This many pings at once, with payloads 0, 1, ...: more than the
    /// engine keeps pongs for, at times.
    Pings(Side, u8),
    /// Moves up to `max` transmits (all when `None`) from `from` to its peer.
    Pump {
        from: Side,
        max: Option<usize>,
        chunking: Chunking,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (side(), payload()).prop_map(|(side, payload)| Op::Send(side, payload)),
        2 => (side(), vec(any::<u8>(), 0..=125)).prop_map(|(side, payload)| Op::Ping(side, payload)),
        1 => (side(), 1u8..=40).prop_map(|(side, n)| Op::Pings(side, n)),
        3 => (side(), prop::option::weighted(0.3, 1usize..6), chunking())
            .prop_map(|(from, max, chunking)| Op::Pump { from, max, chunking }),
    ]
}

#[derive(Debug, Clone)]
struct Conversation {
    seed: u64,
    client_fragment: Option<usize>,
    server_fragment: Option<usize>,
    client_read_buffer: usize,
    server_read_buffer: usize,
    handshake: (Chunking, Chunking),
    ops: Vec<Op>,
    /// Deliver everything both ways before the close, so every ping has
    /// been answered; otherwise the close catches traffic in flight.
    settle: bool,
    closer: Side,
    /// The closer's peer delivers what it has queued before the close
    /// frame goes out, so it arrives while the closer is closing.
    peer_first: bool,
    code: u16,
    reason: String,
    close_chunking: Chunking,
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (
        (
            any::<u64>(),
            fragment_size(),
            fragment_size(),
            1usize..=8192,
            1usize..=8192,
        ),
        (chunking(), chunking()),
        vec(op(), 0..24),
        (
            any::<bool>(),
            side(),
            any::<bool>(),
            close_code(),
            close_reason(),
            chunking(),
        ),
    )
        .prop_map(
            |(
                (seed, client_fragment, server_fragment, client_read_buffer, server_read_buffer),
                handshake,
                ops,
                (settle, closer, peer_first, code, reason, close_chunking),
            )| Conversation {
                seed,
                client_fragment,
                server_fragment,
                client_read_buffer,
                server_read_buffer,
                handshake,
                ops,
                settle,
                closer,
                peer_first,
                code,
                reason,
                close_chunking,
            },
        )
}

/// Room for the largest generated message: `BigText` overshoots its length
/// by at most one character.
const MESSAGE_LIMIT: usize = 100 * 1024 + 4;

/// The two sides of a conversation. Bytes move only as the operations say,
/// frame by frame, so that each frame can be held against the model: a
/// whole-conversation driver (`testing::Pair::drive`) would move them all.
struct Talk {
    peers: [Peer; 2],
}

/// Writes the next frame `from` offers, in writes of at most the sizes
/// `sizes` gives, and returns it parsed, with its bytes. Offered one slice
/// at a time, a connection frames one frame at a time: the model's order
/// then holds frame by frame, and every write still ends where its size
/// says, inside a header, say, exercising each partial `handle_written`.
fn write_frame(
    from: &mut Endpoint,
    sizes: &mut impl Iterator<Item = usize>,
) -> Option<(Frame, Vec<u8>)> {
    let mut bytes = Vec::new();
    loop {
        let chunk = from.write(base(), sizes.next().expect("cycled"));
        if chunk.is_empty() {
            assert!(bytes.is_empty(), "a frame cut short: {bytes:?}");
            return None;
        }
        bytes.extend(chunk);
        let (frames, rest) = read_frames(&bytes);
        if let ([frame], []) = (&frames[..], rest) {
            return Some((frame.clone(), bytes));
        }
    }
}

impl Talk {
    fn new(case: &Conversation) -> Self {
        let config = |fragment_size, read_buffer_size| Config {
            fragment_size,
            read_buffer_size,
            max_frame_size: MESSAGE_LIMIT,
            max_message_size: MESSAGE_LIMIT,
            // Backpressure is not what this checks: the model predicts no
            // `Drained`.
            write_buffer_high_water: usize::MAX,
            ..Config::default()
        };
        let client_config = config(case.client_fragment, case.client_read_buffer);
        let server_config = config(case.server_fragment, case.server_read_buffer);
        let (client, server) = open_pair(
            client_config.clone(),
            server_config.clone(),
            case.seed,
            (&case.handshake.0, &case.handshake.1),
        );
        let peer = |side, mut endpoint: Endpoint, config: Config| {
            endpoint.slices = 1;
            Peer {
                side,
                endpoint,
                model: Model {
                    fragment_size: config.fragment_size,
                    ..Model::default()
                },
                config,
                events: Vec::new(),
                sent: Vec::new(),
                pinged: Vec::new(),
            }
        };
        Self {
            peers: [
                peer(Side::Client, client, client_config),
                peer(Side::Server, server, server_config),
            ],
        }
    }

    fn peer(&mut self, side: Side) -> &mut Peer {
        &mut self.peers[side as usize]
    }

    fn send(&mut self, side: Side, message: Message) {
        let peer = self.peer(side);
        peer.endpoint.conn.send(base(), message.clone()).unwrap();
        peer.model.data.push_back(message.clone());
        peer.sent.push(message);
    }

    fn ping(&mut self, side: Side, payload: Bytes) {
        let peer = self.peer(side);
        peer.endpoint.conn.ping(base(), payload.clone()).unwrap();
        peer.model.pings.push_back(payload.clone());
        peer.pinged.push(payload);
    }

    /// Moves up to `max` frames from `from` to the other side, written and
    /// read in pieces as `chunking` says, and checks each frame and the
    /// receiver's events against the model. Returns how many moved.
    fn pump(&mut self, from: Side, max: Option<usize>, chunking: &Chunking) -> usize {
        let [client, server] = &mut self.peers;
        let (src, dst) = match from {
            Side::Client => (client, server),
            Side::Server => (server, client),
        };
        let mut sizes = chunking.sizes();
        let mut wire = Vec::new();
        let mut moved = 0;
        while max.is_none_or(|max| moved < max) {
            let written = write_frame(&mut src.endpoint, &mut sizes);
            let len = written.as_ref().map(|(frame, _)| frame.payload.len());
            match (written, src.model.poll(len)) {
                (None, None) => break,
                (Some((frame, bytes)), Some(model)) => {
                    let shape = (frame.fin, frame.opcode, frame.payload.len());
                    assert_eq!(shape, model.shape(), "frame {model:?}");
                    assert_eq!(frame.rsv, 0, "no extension, no RSV bits");
                    assert_eq!(frame.length, Length::Shortest, "the shortest length");
                    assert_eq!(
                        frame.mask.is_some(),
                        from == Side::Client,
                        "clients mask, servers do not"
                    );
                    match &model {
                        Wire::Ping(p) | Wire::Pong(p) => {
                            assert_eq!(frame.payload, p[..], "control payload")
                        }
                        Wire::Close(close) => {
                            let mut expected = close.code.as_u16().to_be_bytes().to_vec();
                            expected.extend_from_slice(close.reason.as_bytes());
                            assert_eq!(frame.payload, expected, "close payload");
                        }
                        Wire::Data { .. } => {}
                    }
                    dst.model.receive(&model, dst.side);
                    wire.extend(bytes);
                    moved += 1;
                }
                (real, model) => {
                    panic!("{from:?} transmitted {real:?}, the model expected {model:?}")
                }
            }
        }
        for read in split_bytes(&wire, chunking) {
            dst.endpoint.conn.handle_input(base(), &read);
            check_input_held(&dst.endpoint.conn, &dst.config, read.len());
            dst.events.extend(dst.endpoint.events());
            check_input_held(&dst.endpoint.conn, &dst.config, 0);
        }
        assert_eq!(
            dst.events, dst.model.expected,
            "events of the {:?}",
            dst.side
        );
        // Whole frames were delivered, so only a fragmented message in
        // progress can be held. (Once closed, nothing is read any more.)
        if dst.endpoint.conn.state() != State::Closed {
            assert_eq!(
                dst.endpoint.conn.buffered_input(),
                dst.model.partial,
                "{:?} buffered input",
                dst.side
            );
        }
        moved
    }

    fn run(&mut self, case: &Conversation) {
        for op in &case.ops {
            match op {
                Op::Send(side, payload) => self.send(*side, payload.message()),
                Op::Ping(side, payload) => self.ping(*side, Bytes::copy_from_slice(payload)),
                Op::Pings(side, n) => {
                    for i in 0..*n {
                        self.ping(*side, Bytes::from(vec![i]));
                    }
                }
                Op::Pump {
                    from,
                    max,
                    chunking,
                } => {
                    self.pump(*from, *max, chunking);
                }
            }
        }
        if case.settle {
            // Pongs answer what arrived, so keep going until both are quiet.
            while self.pump(Side::Client, None, &case.close_chunking)
                + self.pump(Side::Server, None, &case.close_chunking)
                > 0
            {}
            for side in [Side::Client, Side::Server] {
                let peer = self.peer(side);
                let last_pong = peer.events.iter().rev().find_map(|event| match event {
                    Event::Pong(payload) => Some(payload),
                    _ => None,
                });
                assert_eq!(
                    last_pong,
                    peer.pinged.last(),
                    "{side:?}: the last ping is answered"
                );
            }
        }

        let closer = case.closer;
        let code = CloseCode::new(case.code);
        self.peer(closer)
            .endpoint
            .conn
            .close(base(), code, &case.reason)
            .unwrap();
        let model = &mut self.peer(closer).model;
        model.close = Some(CloseFrame {
            code,
            reason: case.reason.clone(),
        });
        model.close_queued = true;
        if case.peer_first {
            self.pump(closer.other(), None, &case.close_chunking);
        }
        // The close, the reply, and then nothing more either way.
        self.pump(closer, None, &case.close_chunking);
        self.pump(closer.other(), None, &case.close_chunking);
        assert_eq!(self.pump(closer, None, &case.close_chunking), 0);
        assert_eq!(self.pump(closer.other(), None, &case.close_chunking), 0);

        // The server has closed, and half-closes TCP first (§7.1.1): the
        // client waits for that. Nothing is written meanwhile.
        assert_eq!(self.peer(Side::Server).endpoint.conn.state(), State::Closed);
        assert_eq!(
            self.peer(Side::Client).endpoint.conn.state(),
            State::Closing
        );
        let out = self.peer(Side::Server).endpoint.drain(base());
        assert!(out.events.is_empty() && out.wire.is_empty(), "{out:?}");
        assert_eq!(out.transport, [TransportAction::HalfClose]);
        let client = self.peer(Side::Client);
        client.endpoint.conn.handle_eof(base());
        let out = client.endpoint.drain(base());
        assert!(out.wire.is_empty(), "{out:?}");
        assert_eq!(
            out.transport,
            [TransportAction::Close],
            "nothing to wait for"
        );
        client.events.extend(out.events);
        let frame = client
            .model
            .close_received
            .clone()
            .expect("the client read a close");
        client
            .model
            .expected
            .push(clean_close(frame.code, &frame.reason));

        // The client's end of stream ends the server's wait.
        let server = &mut self.peer(Side::Server).endpoint;
        server.conn.handle_eof(base());
        let out = server.drain(base());
        assert!(out.events.is_empty() && out.wire.is_empty(), "{out:?}");
        assert_eq!(out.transport, [TransportAction::Close]);

        for peer in &mut self.peers {
            assert_eq!(
                peer.events, peer.model.expected,
                "final events of the {:?}",
                peer.side
            );
            // The model could share a mistake with the engine; spell out
            // the promises of the close handshake independently.
            let received = peer
                .events
                .iter()
                .filter(|e| matches!(e, Event::CloseReceived(_)))
                .count();
            let closed: Vec<_> = peer
                .events
                .iter()
                .enumerate()
                .filter_map(|(i, event)| match event {
                    Event::Closed(closed) => Some((i, closed)),
                    _ => None,
                })
                .collect();
            assert_eq!(received, 1, "{:?} sees the close frame once", peer.side);
            let [(at, closed)] = closed[..] else {
                panic!(
                    "{:?} must report Closed exactly once: {:?}",
                    peer.side, peer.events
                );
            };
            assert_eq!(at, peer.events.len() - 1, "Closed is the last event");
            assert!(closed.clean && closed.error.is_none(), "{closed:?}");
            assert_eq!(closed.code, code, "the initiator's code");
            let conn = &mut peer.endpoint.conn;
            assert_eq!(conn.state(), State::Closed);
            assert_eq!(conn.poll_timeout(), None);
            assert!(peer.endpoint.write(base(), usize::MAX).is_empty());
            let conn = &mut peer.endpoint.conn;
            assert_eq!(
                conn.send(base(), Message::text("late")),
                Err(UsageError::Closing)
            );
            assert_eq!(conn.ping(base(), Bytes::new()), Err(UsageError::Closing));
        }
        // What each side sent arrived intact and in order.
        for side in [Side::Client, Side::Server] {
            let received: Vec<Message> = self
                .peer(side.other())
                .events
                .iter()
                .filter_map(|event| match event {
                    Event::Message(message) => Some(message.clone()),
                    _ => None,
                })
                .collect();
            let sent = &self.peer(side).sent;
            if case.settle || case.peer_first || closer == side {
                // Nothing was dropped: the sender finished before its close,
                // or everything had gone out before the peer's arrived.
                assert_eq!(&received, sent, "messages from the {side:?}");
            } else {
                // The sender dropped what was still queued when the peer's
                // close arrived; what got through is a prefix.
                assert_eq!(
                    received[..],
                    sent[..received.len()],
                    "messages from the {side:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// (a) Messages and pings go both ways through any chunking and arrive
    /// intact, in order, with the pongs the protocol calls for; then either
    /// side closes and both see a clean close with its code.
    #[test]
    fn conversations_arrive_intact_and_close_cleanly(case in conversation()) {
        Talk::new(&case).run(&case);
    }
}

// ---- (b) splitting the input changes nothing ---------------------------

/// One step of a scripted peer.
#[derive(Debug, Clone)]
enum Item {
    Send(Payload),
    Ping(Vec<u8>),
    /// An unsolicited pong (§5.5.3 allows them), written by hand.
    Pong(Vec<u8>),
    /// A message fragmented by hand at `cuts` (byte offsets, wrapped; they
    /// may split a code point), with a one-byte ping after fragment `i` when
    /// `pings[i]` is set: control frames may come between fragments.
    Fragmented {
        text: bool,
        body: String,
        cuts: Vec<usize>,
        pings: Vec<bool>,
    },
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => payload().prop_map(Item::Send),
        2 => vec(any::<u8>(), 0..=125).prop_map(Item::Ping),
        1 => vec(any::<u8>(), 0..=125).prop_map(Item::Pong),
        2 => (any::<bool>(), small_text(), vec(0usize..1000, 0..6), vec(any::<bool>(), 0..6))
            .prop_map(|(text, body, cuts, pings)| Item::Fragmented { text, body, cuts, pings }),
    ]
}

/// The receiver's limits: the defaults (with room for a whole stream of
/// early data), or small ones so that streams also end in 1009 failures.
#[derive(Debug, Clone)]
enum Limits {
    Roomy,
    Small {
        max_frame_size: usize,
        max_message_size: usize,
        read_buffer_size: usize,
    },
}

impl Limits {
    fn config(&self) -> Config {
        // A whole stream fed at once is all early data for a server that has
        // not answered yet, and early data is capped at max_handshake_size.
        let roomy = Config {
            max_handshake_size: 1 << 26,
            ..Config::default()
        };
        match *self {
            Self::Roomy => roomy,
            Self::Small {
                max_frame_size,
                max_message_size,
                read_buffer_size,
            } => Config {
                max_frame_size,
                max_message_size,
                read_buffer_size,
                ..roomy
            },
        }
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::Roomy),
        1 => (1usize..=3000, 1usize..=20_000, 1usize..=4096).prop_map(
            |(max_frame_size, max_message_size, read_buffer_size)| Limits::Small {
                max_frame_size,
                max_message_size,
                read_buffer_size,
            }
        ),
    ]
}

#[derive(Debug, Clone)]
struct Script {
    seed: u64,
    fragment_size: Option<usize>,
    items: Vec<Item>,
    close: Option<(u16, String)>,
    /// Arbitrary bytes after the script: errors must not depend on the
    /// split either.
    junk: Vec<u8>,
    limits: Limits,
    chunking: Chunking,
}

fn script() -> impl Strategy<Value = Script> {
    (
        any::<u64>(),
        fragment_size(),
        vec(item(), 0..16),
        prop::option::of((close_code(), close_reason())),
        prop_oneof![3 => Just(Vec::new()), 1 => vec(any::<u8>(), 1..64)],
        limits(),
        chunking(),
    )
        .prop_map(
            |(seed, fragment_size, items, close, junk, limits, chunking)| Script {
                seed,
                fragment_size,
                items,
                close,
                junk,
                limits,
                chunking,
            },
        )
}

/// Everything `producer` sends in a conversation following `script`: its
/// handshake message, then the frames. Also returns the events a receiver
/// with roomy limits must report after `Open`, including after EOF.
fn produce(producer: Side, script: &Script) -> (Vec<u8>, Vec<Event>) {
    let config = Config {
        fragment_size: script.fragment_size,
        ..Config::default()
    };
    let (client_config, server_config) = match producer {
        Side::Client => (config, Config::default()),
        Side::Server => (Config::default(), config),
    };
    // The producer must be open to send, so run a real handshake; a client
    // with the same seed later expects the very same 101.
    let mut client = endpoint(Side::Client, client_config, script.seed);
    let mut server = endpoint(Side::Server, server_config, script.seed);
    let request_bytes = client.drain(base()).wire;
    server.conn.handle_input(base(), &request_bytes);
    assert!(matches!(server.events()[..], [Event::Request(_)]));
    server.conn.accept(base(), Handshake::default()).unwrap();
    let response = server.drain(base()).wire;
    client.conn.handle_input(base(), &response);
    let (mut conn, mut stream) = match producer {
        Side::Client => (client, request_bytes),
        Side::Server => (server, response),
    };
    assert_eq!(conn.conn.state(), State::Open);

    let mut keys = script.seed;
    let mut expected = Vec::new();
    for item in &script.items {
        let key = (splitmix(&mut keys) as u32).to_be_bytes();
        match item {
            Item::Send(payload) => {
                let message = payload.message();
                conn.conn.send(base(), message.clone()).unwrap();
                expected.push(Event::Message(message));
            }
            Item::Ping(payload) => {
                let payload = Bytes::copy_from_slice(payload);
                conn.conn.ping(base(), payload.clone()).unwrap();
                expected.push(Event::Ping(payload));
            }
            Item::Pong(payload) => {
                stream.extend(sent_by(Frame::pong(payload.clone()), producer, key).encode());
                expected.push(Event::Pong(Bytes::copy_from_slice(payload)));
            }
            Item::Fragmented {
                text,
                body,
                cuts,
                pings,
            } => {
                let body = body.as_bytes();
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
                cuts.push(body.len());
                cuts.sort_unstable();
                cuts.dedup();
                let mut start = 0;
                for (i, &end) in cuts.iter().enumerate() {
                    let fin = end == body.len();
                    let opcode = match (i, text) {
                        (0, true) => 0x1,
                        (0, false) => 0x2,
                        _ => 0x0,
                    };
                    let fragment = Frame::new(opcode, &body[start..end]).fin(fin);
                    stream.extend(sent_by(fragment, producer, key).encode());
                    if !fin && pings.get(i).copied().unwrap_or(false) {
                        let ping = Frame::ping([i as u8]);
                        stream.extend(sent_by(ping, producer, key).encode());
                        expected.push(Event::Ping(Bytes::from(vec![i as u8])));
                    }
                    start = end;
                }
                let payload = Bytes::copy_from_slice(body);
                expected.push(Event::Message(if *text {
                    Message::Text(payload.try_into().unwrap())
                } else {
                    Message::Binary(payload)
                }));
            }
        }
        stream.extend(conn.drain(base()).wire);
    }
    match &script.close {
        Some((code, reason)) => {
            let code = CloseCode::new(*code);
            conn.conn.close(base(), code, reason).unwrap();
            stream.extend(conn.drain(base()).wire);
            expected.push(Event::CloseReceived(CloseFrame {
                code,
                reason: reason.clone(),
            }));
            expected.push(clean_close(code, reason));
        }
        None => expected.push(abnormal_eof()),
    }
    stream.extend_from_slice(&script.junk);
    (stream, expected)
}

/// A connection fed one stream, with what it said.
struct Fed {
    endpoint: Endpoint,
    events: Vec<Event>,
    /// The bytes it wrote, in order.
    wire: Vec<u8>,
    transport: Vec<TransportAction>,
}

/// How [`feed`] hands each write to the connection.
#[derive(Clone, Copy)]
enum Feeding {
    /// Through `handle_input`.
    Input,
    /// Through `handle_input`, writing the output after each: when pongs go
    /// out, and which ones once more than a few wait (the oldest are
    /// dropped), depends on when the output is written, not only on the
    /// input.
    DrainingEach,
    /// As a driver reads: into `payload_buffer` while the connection offers
    /// room, at most a write at a time, and the rest through `handle_input`,
    /// `read_size` bytes at a time.
    Direct,
}

/// Feeds `writes` to a fresh connection of the given role, draining events
/// after every input (and answering the upgrade request).
fn feed(role: Side, config: &Config, seed: u64, writes: &[Vec<u8>], feeding: Feeding) -> Fed {
    let mut fed = Fed {
        endpoint: endpoint(role, config.clone(), seed),
        events: Vec::new(),
        wire: Vec::new(),
        transport: Vec::new(),
    };
    for write in writes {
        let mut rest = &write[..];
        while !rest.is_empty() {
            let conn = &mut fed.endpoint.conn;
            if let Feeding::Direct = feeding
                && let Some(room) = conn.payload_buffer()
            {
                let n = room.len().min(rest.len());
                for (slot, byte) in room.iter_mut().zip(&rest[..n]) {
                    slot.write(*byte);
                }
                // SAFETY: the loop above wrote the first `n` bytes of `room`.
                unsafe { conn.handle_payload_read(base(), n) };
                rest = &rest[n..];
                fed.drain_events(config, n);
                continue;
            }
            let n = match feeding {
                Feeding::Direct => conn.read_size(rest.len()),
                Feeding::Input | Feeding::DrainingEach => rest.len(),
            };
            conn.handle_input(base(), &rest[..n]);
            rest = &rest[n..];
            fed.drain_events(config, n);
        }
        if let Feeding::DrainingEach = feeding {
            fed.drain();
        }
    }
    fed
}

impl Fed {
    /// Drains the events after an input of `len` bytes, answering the
    /// upgrade request, and checks what the connection holds on the way.
    fn drain_events(&mut self, config: &Config, len: usize) {
        check_input_held(&self.endpoint.conn, config, len);
        loop {
            let events = self.endpoint.events();
            if events.is_empty() {
                break;
            }
            for event in events {
                if matches!(event, Event::Request(_)) {
                    let conn = &mut self.endpoint.conn;
                    conn.accept(base(), Handshake::default()).unwrap();
                }
                self.events.push(event);
            }
        }
        check_input_held(&self.endpoint.conn, config, 0);
    }

    /// Drains every output, as the contract says.
    fn drain(&mut self) {
        let out = self.endpoint.drain(base());
        self.events.extend(out.events);
        self.wire.extend(out.wire);
        self.transport.extend(out.transport);
    }

    /// The HTTP head and the frames written, parsed (and unmasked, so that masking keys drawn
    /// in another order do not matter), leaving out pongs.
    fn without_pongs(&self, role: Side) -> (Vec<u8>, Vec<Frame>) {
        let (head, frames) = parse_output(role, &self.wire);
        let frames = frames
            .into_iter()
            .filter(|frame| frame.opcode != 0xA)
            .map(|frame| Frame {
                mask: frame.mask.map(|_| [0; 4]),
                ..frame
            })
            .collect();
        (head, frames)
    }
}

/// State, buffered input and deadline. Buffered input is left out once
/// closed: what a failed decoder still holds is never read.
fn observable(conn: &Connection) -> (State, Option<usize>, Option<Instant>) {
    let state = conn.state();
    let buffered = (state != State::Closed).then(|| conn.buffered_input());
    (state, buffered, conn.poll_timeout())
}

fn check_split_invariance(receiver: Side, script: &Script) {
    let (stream, expected) = produce(receiver.other(), script);
    let config = script.limits.config();
    let whole = vec![stream.clone()];
    let pieces = split_bytes(&stream, &script.chunking);
    let mut a = feed(receiver, &config, script.seed, &whole, Feeding::Input);
    let mut b = feed(receiver, &config, script.seed, &pieces, Feeding::Input);
    let mut c = feed(
        receiver,
        &config,
        script.seed,
        &pieces,
        Feeding::DrainingEach,
    );
    let mut d = feed(receiver, &config, script.seed, &pieces, Feeding::Direct);

    assert_eq!(b.events, a.events, "events, fed in pieces vs whole");
    assert_eq!(d.events, a.events, "events, read into the payload buffer");
    assert_eq!(
        c.events, a.events,
        "events, fed in pieces and drained each time vs whole"
    );
    for fed in [&mut a, &mut b, &mut d] {
        fed.drain();
    }
    assert_eq!(b.wire, a.wire, "output bytes");
    assert_eq!(d.wire, a.wire, "output bytes, direct");
    assert_eq!(b.transport, a.transport, "transport actions");
    assert_eq!(d.transport, a.transport, "transport actions, direct");
    assert_eq!(observable(&b.endpoint.conn), observable(&a.endpoint.conn));
    assert_eq!(observable(&d.endpoint.conn), observable(&a.endpoint.conn));
    assert_eq!(observable(&c.endpoint.conn), observable(&a.endpoint.conn));
    // Draining after every input can only add pongs, each answering a ping
    // that had arrived by then.
    c.drain();
    assert_eq!(
        c.without_pongs(receiver),
        a.without_pongs(receiver),
        "output frames other than pongs"
    );
    assert_eq!(
        c.transport, a.transport,
        "transport actions, drained each time"
    );
    let pinged: Vec<&[u8]> = c
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ping(p) => Some(&p[..]),
            _ => None,
        })
        .collect();
    for frame in parse_output(receiver, &c.wire).1 {
        if frame.opcode == 0xA {
            assert!(
                pinged.contains(&&frame.payload[..]),
                "pong {:?} answers no ping",
                frame.payload
            );
        }
    }

    for fed in [&mut a, &mut b, &mut c, &mut d] {
        fed.endpoint.conn.handle_eof(base());
        fed.drain();
    }
    assert_eq!(b.events, a.events, "events after EOF");
    assert_eq!(c.events, a.events, "events after EOF");
    assert_eq!(d.events, a.events, "events after EOF, direct");
    assert_eq!(b.wire, a.wire, "output bytes after EOF");
    for fed in [&a, &b, &c, &d] {
        // The end of the peer's stream leaves nothing to wait for.
        assert_eq!(fed.transport.last(), Some(&TransportAction::Close));
    }

    // Not just equal but right: a well-formed stream within the limits
    // gives exactly the scripted events.
    if script.junk.is_empty() && matches!(script.limits, Limits::Roomy) {
        let after_open = match receiver {
            Side::Server => match &a.events[..] {
                [Event::Request(_), Event::Open(_), rest @ ..] => rest,
                other => panic!("server events {other:?}"),
            },
            Side::Client => match &a.events[..] {
                [Event::Open(_), rest @ ..] => rest,
                other => panic!("client events {other:?}"),
            },
        };
        assert_eq!(after_open, &expected[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// (b) A client's byte stream (request and frames) gives a server the
    /// same events and output however it is split.
    #[test]
    fn server_events_do_not_depend_on_how_input_is_split(script in script()) {
        check_split_invariance(Side::Server, &script);
    }

    /// (b) A server's byte stream (101 response and frames) gives a client
    /// the same events and output however it is split.
    #[test]
    fn client_events_do_not_depend_on_how_input_is_split(script in script()) {
        check_split_invariance(Side::Client, &script);
    }
}

// ---- (c) hostile input -------------------------------------------------

fn small_config() -> Config {
    Config {
        max_handshake_size: 1024,
        max_message_size: 8192,
        max_frame_size: 4096,
        read_buffer_size: 512,
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

/// A frame-shaped input. Most are valid where they fall in the stream (the
/// data opcode follows whether a fragmented message is open), so input gets
/// past the first checks; a `mutation` breaks one thing: the RSV bits, the
/// opcode, FIN, the mask or the length field.
#[derive(Debug, Clone)]
struct FrameSpec {
    kind: FrameKind,
    /// FIN, for data frames; control frames always set it.
    fin: bool,
    key: [u8; 4],
    payload: FramePayload,
    mutation: Option<Mutation>,
}

#[derive(Debug, Clone)]
enum FrameKind {
    Data,
    Ping,
    Pong,
    /// A close frame, with a code and reason or empty; it takes the place
    /// of the spec's payload.
    Close(Option<(u16, String)>),
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Rsv(u8),
    Opcode(u8),
    FlipFin,
    WrongMask,
    Len(Length),
    /// Pads the payload to 125 + n bytes: one over the control frame limit
    /// is the interesting case.
    Long(u8),
}

#[derive(Debug, Clone)]
enum FramePayload {
    Bytes(Vec<u8>),
    Text(String),
    /// This many `a`s: near the frame and message limits.
    Filler(usize),
    Close(u16, String),
}

impl FrameSpec {
    /// The frame as `from` sends it. `open_message` tracks whether the
    /// stream so far is inside a fragmented message, and whether it is text.
    fn encode(&self, from: Side, open_message: &mut Option<bool>) -> Vec<u8> {
        let mut payload = match &self.payload {
            FramePayload::Bytes(bytes) => bytes.clone(),
            FramePayload::Text(text) => text.as_bytes().to_vec(),
            FramePayload::Filler(n) => vec![b'a'; *n],
            FramePayload::Close(code, reason) => {
                [&code.to_be_bytes()[..], reason.as_bytes()].concat()
            }
        };
        let (mut opcode, mut fin) = match &self.kind {
            FrameKind::Data => {
                let text = open_message.unwrap_or(!matches!(self.payload, FramePayload::Bytes(_)));
                if text {
                    // Keep text valid, so that UTF-8 errors come from
                    // mutations and chunking rather than from most cases.
                    payload = String::from_utf8_lossy(&payload).into_owned().into_bytes();
                }
                let opcode = match (*open_message, text) {
                    (Some(_), _) => 0x0,
                    (None, true) => 0x1,
                    (None, false) => 0x2,
                };
                *open_message = (!self.fin).then_some(text);
                (opcode, self.fin)
            }
            FrameKind::Ping => (0x9, true),
            FrameKind::Pong => (0xA, true),
            FrameKind::Close(close) => {
                payload = match close {
                    Some((code, reason)) => [&code.to_be_bytes()[..], reason.as_bytes()].concat(),
                    None => Vec::new(),
                };
                (0x8, true)
            }
        };
        if !matches!(self.kind, FrameKind::Data) {
            payload.truncate(125);
        }
        let (mut rsv, mut masked, mut len) = (0, from == Side::Client, Length::Shortest);
        match self.mutation {
            None => {}
            Some(Mutation::Rsv(bits)) => rsv = bits & 7,
            Some(Mutation::Opcode(code)) => opcode = code & 0xF,
            Some(Mutation::FlipFin) => fin = !fin,
            Some(Mutation::WrongMask) => masked = !masked,
            Some(Mutation::Len(form)) => len = form,
            Some(Mutation::Long(n)) => payload.resize(125 + usize::from(n), b'x'),
        }
        let frame = Frame::new(opcode, payload).fin(fin).rsv(rsv).length(len);
        match masked {
            true => frame.masked(self.key),
            false => frame,
        }
        .encode()
    }
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let kind = prop_oneof![
        8 => Just(FrameKind::Data),
        3 => Just(FrameKind::Ping),
        2 => Just(FrameKind::Pong),
        1 => prop::option::weighted(0.9, (close_code(), close_reason())).prop_map(FrameKind::Close),
    ];
    let payload = prop_oneof![
        4 => vec(any::<u8>(), 0..200).prop_map(FramePayload::Bytes),
        3 => small_text().prop_map(FramePayload::Text),
        1 => (0usize..5000).prop_map(FramePayload::Filler),
        1 => (prop_oneof![close_code(), any::<u16>()], close_reason())
            .prop_map(|(code, reason)| FramePayload::Close(code, reason)),
    ];
    let len = prop_oneof![
        Just(Length::Sixteen),
        Just(Length::SixtyFour),
        (0u64..10_000).prop_map(Length::Claimed),
        any::<u64>().prop_map(Length::Claimed),
    ];
    let mutation = prop_oneof![
        // About one frame in 20 is broken, so most cases get a while into
        // a session before a protocol error ends it.
        150 => Just(None),
        1 => (1u8..8).prop_map(|bits| Some(Mutation::Rsv(bits))),
        1 => (0u8..16).prop_map(|code| Some(Mutation::Opcode(code))),
        1 => Just(Some(Mutation::FlipFin)),
        1 => Just(Some(Mutation::WrongMask)),
        2 => len.prop_map(|form| Some(Mutation::Len(form))),
        2 => (1u8..=2).prop_map(|n| Some(Mutation::Long(n))),
    ];
    (
        kind,
        prop::bool::weighted(0.6),
        any::<[u8; 4]>(),
        payload,
        mutation,
    )
        .prop_map(|(kind, fin, key, payload, mutation)| FrameSpec {
            kind,
            fin,
            key,
            payload,
            mutation,
        })
}

#[derive(Debug, Clone)]
enum FuzzOp {
    Bytes(Vec<u8>),
    Frame(FrameSpec),
    /// A message of `frames` fragments of `size` bytes each, in one input:
    /// near, at and over the frame and message limits.
    LongMessage {
        frames: u8,
        size: usize,
    },
    /// Advance the clock this many milliseconds and call `handle_timeout`.
    Wait(u32),
    Eof,
    /// Server: answer a deferred request, accepting or refusing it.
    Answer {
        accept: bool,
    },
    Send(usize),
    Ping,
    Close,
}

fn app_op() -> impl Strategy<Value = FuzzOp> {
    prop_oneof![
        2 => prop_oneof![3 => 0u32..2_000, 1 => 0u32..40_000].prop_map(FuzzOp::Wait),
        1 => any::<bool>().prop_map(|accept| FuzzOp::Answer { accept }),
        1 => (0usize..3000).prop_map(FuzzOp::Send),
        1 => Just(FuzzOp::Ping),
        1 => Just(FuzzOp::Close),
    ]
}

fn bytes_op() -> impl Strategy<Value = FuzzOp> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..4096).prop_map(FuzzOp::Bytes),
        3 => app_op(),
        1 => Just(FuzzOp::Eof),
    ]
}

fn frame_op() -> impl Strategy<Value = FuzzOp> {
    prop_oneof![
        // Rare noise and EOF, so that most cases get deep into a session.
        48 => frame_spec().prop_map(FuzzOp::Frame),
        2 => (1u8..=4, prop_oneof![1usize..4096, 4090usize..=4100])
            .prop_map(|(frames, size)| FuzzOp::LongMessage { frames, size }),
        1 => vec(any::<u8>(), 0..64).prop_map(FuzzOp::Bytes),
        8 => app_op(),
        1 => Just(FuzzOp::Eof),
    ]
}

#[derive(Debug, Clone)]
struct FuzzCase {
    role: Side,
    seed: u64,
    /// Start with a valid handshake message from the peer.
    handshake: bool,
    /// Server: answer requests only on `Answer`, so early data piles up.
    defer: bool,
    ops: Vec<FuzzOp>,
}

fn fuzz_case(
    handshake: bool,
    op: BoxedStrategy<FuzzOp>,
    max_ops: usize,
) -> impl Strategy<Value = FuzzCase> {
    (
        side(),
        any::<u64>(),
        prop::bool::weighted(0.2),
        vec(op, 0..max_ops),
    )
        .prop_map(move |(role, seed, defer, ops)| FuzzCase {
            role,
            seed,
            handshake,
            defer,
            ops,
        })
}

/// A server's request waiting for the application's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Upgrade,
    Plain,
}

/// Drives one connection with hostile input through the harness (which
/// checks the event grammar and the drain order), and checks, after every
/// step, what else must hold whatever the input.
struct Fuzzer {
    role: Side,
    endpoint: Endpoint,
    config: Config,
    now: Instant,
    defer: bool,
    events: Vec<Event>,
    /// The state after the last step.
    state: State,
    pending: Option<Pending>,
    opened: bool,
    close_received: bool,
    closed: bool,
    /// The handshake message this side sent, if any.
    http: Option<Vec<u8>>,
    /// What it wrote after that and has not been parsed yet.
    out: Vec<u8>,
    close_sent: bool,
    close_code_sent: Option<CloseCode>,
    /// A protocol error's close code, and the state the connection was in
    /// before the step that failed it.
    failed: Option<(CloseCode, State)>,
    /// The peer's frames so far leave a fragmented message open: a text one
    /// or a binary one.
    open_message: Option<bool>,
}

impl Fuzzer {
    fn new(case: &FuzzCase) -> Self {
        let config = small_config();
        let mut fuzzer = Self {
            role: case.role,
            endpoint: endpoint(case.role, config.clone(), case.seed),
            config,
            now: base(),
            defer: case.defer,
            events: Vec::new(),
            state: State::Handshaking,
            pending: None,
            opened: false,
            close_received: false,
            closed: false,
            http: None,
            out: Vec::new(),
            close_sent: false,
            close_code_sent: None,
            failed: None,
            open_message: None,
        };
        fuzzer.check();
        fuzzer
    }

    /// A valid handshake message from the peer: a real client's request, or
    /// a real server's 101 for this client's key.
    fn peer_handshake(&self, seed: u64) -> Vec<u8> {
        let request = endpoint(Side::Client, Config::default(), seed)
            .drain(base())
            .wire;
        match self.role {
            Side::Server => request,
            Side::Client => {
                let mut server = endpoint(Side::Server, Config::default(), seed);
                server.conn.handle_input(base(), &request);
                assert!(matches!(server.events()[..], [Event::Request(_)]));
                server.conn.accept(base(), Handshake::default()).unwrap();
                server.drain(base()).wire
            }
        }
    }

    fn input(&mut self, data: &[u8]) {
        self.endpoint.conn.handle_input(self.now, data);
        check_input_held(&self.endpoint.conn, &self.config, data.len());
        self.check();
    }

    fn run(&mut self, op: &FuzzOp) {
        match op {
            FuzzOp::Bytes(bytes) => self.input(bytes),
            FuzzOp::Frame(spec) => {
                let frame = spec.encode(self.role.other(), &mut self.open_message);
                self.input(&frame);
            }
            FuzzOp::LongMessage { frames, size } => {
                let mut input = Vec::new();
                for i in 1..=*frames {
                    let spec = FrameSpec {
                        kind: FrameKind::Data,
                        fin: i == *frames,
                        key: [i, 2, 3, 4],
                        payload: FramePayload::Filler(*size),
                        mutation: None,
                    };
                    input.extend(spec.encode(self.role.other(), &mut self.open_message));
                }
                self.input(&input);
            }
            FuzzOp::Wait(ms) => self.wait(*ms),
            FuzzOp::Eof => {
                self.endpoint.conn.handle_eof(self.now);
                self.check();
                // A half-closed client still gets its answer: only a
                // request awaiting one keeps the connection.
                assert!(
                    self.closed || self.pending.is_some(),
                    "EOF ends the connection"
                );
            }
            FuzzOp::Answer { accept } => {
                let result = if *accept {
                    self.endpoint.conn.accept(self.now, Handshake::default())
                } else {
                    let response = Response::new(403, "no");
                    self.endpoint.conn.respond(self.now, response)
                };
                let allowed = match (accept, self.pending) {
                    (true, Some(Pending::Upgrade)) | (false, Some(_)) => Ok(()),
                    _ => Err(UsageError::NoPendingRequest),
                };
                assert_eq!(result, allowed, "answer with {:?} pending", self.pending);
                if result.is_ok() {
                    self.pending = None;
                }
                self.check();
            }
            FuzzOp::Send(len) => {
                let message = Message::binary(vec![7u8; *len]);
                let result = self.endpoint.conn.send(self.now, message);
                self.check_usage(result);
            }
            FuzzOp::Ping => {
                let result = self.endpoint.conn.ping(self.now, Bytes::from_static(b"hb"));
                self.check_usage(result);
            }
            FuzzOp::Close => {
                let result = self.endpoint.conn.close(self.now, CloseCode::NORMAL, "bye");
                self.check_usage(result);
            }
        }
    }

    /// Sending is allowed exactly when open, and a refusal changes nothing.
    fn check_usage(&mut self, result: Result<(), UsageError>) {
        let expected = match self.state {
            State::Open => Ok(()),
            State::Handshaking => Err(UsageError::NotOpen),
            State::Closing | State::Closed => Err(UsageError::Closing),
        };
        assert_eq!(result, expected, "in state {:?}", self.state);
        let events = self.events.len();
        // Outputs were drained before the call, so anything now is its
        // doing.
        let quiet = self.check();
        if result.is_err() {
            assert!(
                quiet && self.events.len() == events,
                "a refused call did something"
            );
        }
    }

    fn wait(&mut self, ms: u32) {
        self.now += Duration::from_millis(u64::from(ms));
        let deadline = self.endpoint.conn.poll_timeout();
        let events = self.events.len();
        self.endpoint.conn.handle_timeout(self.now);
        let quiet = self.check();
        if deadline.is_none_or(|d| self.now < d) {
            // Early calls (and any once closed) are harmless.
            assert!(
                quiet && self.events.len() == events,
                "an early handle_timeout did something"
            );
            assert_eq!(self.endpoint.conn.poll_timeout(), deadline);
        }
        // A driver calls again while the deadline has passed; that must end.
        for _ in 0..self.config.max_missed_pongs + 2 {
            if self
                .endpoint
                .conn
                .poll_timeout()
                .is_none_or(|d| d > self.now)
            {
                break;
            }
            self.endpoint.conn.handle_timeout(self.now);
            self.check();
        }
        assert!(
            self.endpoint
                .conn
                .poll_timeout()
                .is_none_or(|d| d > self.now),
            "deadline stuck in the past"
        );
    }

    /// Drains the outputs as the contract says, reacting to the events, and
    /// checks every invariant. Returns whether nothing was written and the
    /// transport was left alone.
    fn check(&mut self) -> bool {
        loop {
            let events = self.endpoint.events();
            if events.is_empty() {
                break;
            }
            for event in events {
                self.on_event(&event);
                self.events.push(event);
            }
        }
        let out = self.endpoint.drain(self.now);
        for event in &out.events {
            self.on_event(event);
        }
        self.events.extend(out.events);
        self.on_output(&out.wire);
        if let Some((code, before)) = self.failed {
            // §7.1.7: failing sends a close frame with the error's code,
            // unless this end had started closing already.
            assert!(self.close_sent, "failed with {code} without a close frame");
            if before != State::Closing {
                assert_eq!(
                    self.close_code_sent,
                    Some(code),
                    "close code sent on failure"
                );
            }
        }
        let state = self.endpoint.conn.state();
        self.state = state;
        assert_eq!(
            state == State::Closed,
            self.closed,
            "state {state:?} vs Closed event"
        );
        // With this config (the heartbeat is on) there is a deadline until
        // the transport is closed: the handshake's, the heartbeat's, the
        // close handshake's, then the wait for the last bytes or for the
        // peer's end of stream.
        let transport_closed = self.endpoint.grammar().is_transport_closed();
        assert_eq!(
            self.endpoint.conn.poll_timeout().is_some(),
            !transport_closed,
            "timer in {state:?}, transport closed: {transport_closed}"
        );
        check_input_held(&self.endpoint.conn, &self.config, 0);
        out.wire.is_empty() && out.transport.is_empty()
    }

    /// What the harness's grammar does not already check of each event.
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Request(_) | Event::HttpRequest(_) => {
                let kind = if matches!(event, Event::Request(_)) {
                    Pending::Upgrade
                } else {
                    Pending::Plain
                };
                let conn = &mut self.endpoint.conn;
                if self.defer {
                    self.pending = Some(kind);
                } else if kind == Pending::Upgrade {
                    conn.accept(self.now, Handshake::default()).unwrap();
                } else {
                    conn.respond(self.now, Response::new(404, "no")).unwrap();
                }
            }
            Event::Open(_) => self.opened = true,
            Event::Message(message) => {
                assert!(message.len() <= self.config.max_message_size);
            }
            Event::Ping(payload) | Event::Pong(payload) => {
                assert!(payload.len() <= 125, "control payload of {}", payload.len());
            }
            Event::Drained => {}
            Event::CloseReceived(frame) => {
                assert!(
                    frame.code == CloseCode::NO_STATUS || frame.code.is_valid_on_wire(),
                    "{frame:?}"
                );
                assert!(frame.reason.len() <= 123, "{frame:?}");
                self.close_received = true;
            }
            Event::Closed(closed) => {
                self.closed = true;
                self.pending = None;
                if closed.clean {
                    assert!(
                        closed.error.is_none() && self.close_received,
                        "clean without a close frame: {closed:?}"
                    );
                }
                if let Some(Error::Protocol(error)) = &closed.error {
                    assert_eq!(closed.code, error.close_code(), "{closed:?}");
                    // `self.state` is still the state before this step.
                    self.failed = Some((closed.code, self.state));
                }
            }
        }
    }

    /// Parses what was written: one HTTP message first, then frames, and
    /// nothing after the close frame.
    fn on_output(&mut self, wire: &[u8]) {
        if wire.is_empty() {
            return;
        }
        assert!(!self.close_sent, "{wire:?} written after the close frame");
        self.out.extend_from_slice(wire);
        if self.http.is_none() {
            let (head, rest) = split_head(&self.out).expect("a whole HTTP head first");
            let start: &[u8] = match self.role {
                Side::Client => b"GET /chat?room=1 HTTP/1.1\r\n",
                Side::Server => b"HTTP/1.1 ",
            };
            assert!(head.starts_with(start), "{head:?}");
            self.http = Some(head.to_vec());
            self.out = rest.to_vec();
        }
        let (frames, rest) = read_frames(&self.out);
        let rest = rest.to_vec();
        for frame in frames {
            self.on_frame(frame);
        }
        self.out = rest;
    }

    fn on_frame(&mut self, frame: Frame) {
        assert!(!self.close_sent, "a frame after the close frame: {frame:?}");
        // Frames only on an upgraded connection.
        let upgraded = match self.role {
            Side::Client => self.opened,
            Side::Server => self
                .http
                .as_ref()
                .is_some_and(|h| h.starts_with(b"HTTP/1.1 101 ")),
        };
        assert!(upgraded, "a frame without an upgrade");
        assert_eq!(
            frame.mask.is_some(),
            self.role == Side::Client,
            "masking follows the role"
        );
        assert_eq!(frame.rsv, 0, "no extension, no RSV bits");
        let opcode = frame.opcode;
        assert!([0x0, 0x1, 0x2, 0x8, 0x9, 0xA].contains(&opcode));
        if opcode >= 0x8 {
            assert!(
                frame.fin && frame.payload.len() <= 125,
                "control frame {opcode:#x} of {}",
                frame.payload.len()
            );
        }
        if opcode == 0x8 {
            self.close_sent = true;
            match &frame.payload[..] {
                [] => {}
                [hi, lo, reason @ ..] => {
                    let code = CloseCode::new(u16::from_be_bytes([*hi, *lo]));
                    self.close_code_sent = Some(code);
                    assert!(code.is_valid_on_wire(), "sent close code {code}");
                    assert!(std::str::from_utf8(reason).is_ok(), "close reason UTF-8");
                }
                [_] => panic!("a 1-byte close payload"),
            }
        }
    }
}

fn check_hostile(case: &FuzzCase) {
    let mut fuzzer = Fuzzer::new(case);
    if case.handshake {
        let handshake = fuzzer.peer_handshake(case.seed);
        fuzzer.input(&handshake);
        if !case.defer || case.role == Side::Client {
            assert_eq!(fuzzer.state, State::Open, "a valid handshake opens");
        }
    }
    for op in &case.ops {
        fuzzer.run(op);
    }
    // Whatever happened, the end of the transport ends the connection.
    fuzzer.run(&FuzzOp::Eof);
    if fuzzer.pending.is_some() {
        fuzzer.run(&FuzzOp::Answer { accept: false });
    }
    assert!(fuzzer.closed, "closed after EOF and the answer");
    let closed = fuzzer
        .events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closed, 1, "exactly one Closed: {:?}", fuzzer.events);
    assert!(matches!(fuzzer.events.last(), Some(Event::Closed(_))));
    // And with the peer's stream over, the transport is closed: nothing is
    // left to wait for.
    assert!(
        fuzzer.endpoint.grammar().is_transport_closed(),
        "the transport is still open after EOF"
    );
}

// Case counts keep the whole file well under a minute in a debug build on
// two cores (about 20 s of CPU in all); the cheap frame fuzzer gets the most.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (c) Arbitrary bytes from the start, with timeouts, EOF and
    /// application calls mixed in.
    #[test]
    fn arbitrary_bytes_survives_with_bounded_buffers(case in fuzz_case(false, bytes_op().boxed(), 24)) {
        check_hostile(&case);
    }

    /// (c) Arbitrary bytes after a valid handshake message.
    #[test]
    fn arbitrary_bytes_after_handshake_survives_with_bounded_buffers(
        case in fuzz_case(true, bytes_op().boxed(), 24)
    ) {
        check_hostile(&case);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// (c) Frame-shaped bytes (any opcode, RSV, mask and length) after a
    /// valid handshake message.
    #[test]
    fn arbitrary_frames_survives_with_bounded_buffers(case in fuzz_case(true, frame_op().boxed(), 48)) {
        check_hostile(&case);
    }
}
