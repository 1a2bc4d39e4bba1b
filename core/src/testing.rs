//! One way to test a connection, shared by every test of the project: the
//! core's unit tests, its property tests and model, and the fuzz targets.
//! Behind the `testing` feature.
//!
//! * [`Endpoint`]: a [`Connection`] driven exactly as its contract says
//!   (events, then writes, then the transport action, after every input),
//!   with the [`Grammar`] of its outputs checked at every step.
//! * [`Pair`]: a client and a server endpoint joined by an in-memory
//!   transport that ends as TCP does: a half-close or a close delivers an
//!   end of stream after the bytes in flight, and bytes that reach an end
//!   that has closed make a reset, which destroys what the other end had
//!   not read yet and fails its transport ([`Pair::resets`]).
//! * [`Frame`]: frames built byte by byte, independently of the core's
//!   encoder, flaws included; [`read_frames`] parses what an endpoint wrote,
//!   independently of the core's decoder, and [`Wire`] reads an endpoint's
//!   whole output that way, checking it against what RFC 6455 lets a sender
//!   write.
//!
//! ```
//! use sockeye_core::testing::{Frame, Pair};
//! use sockeye_core::{CloseCode, Config, Event, Message};
//!
//! let mut pair = Pair::new(Config::default(), Config::default()).open();
//! pair.client.conn.send(pair.now, Message::text("hi"))?;
//! let (_, server) = pair.drive();
//! assert_eq!(server.events, [Event::Message(Message::text("hi"))]);
//!
//! // The peer can also be played byte by byte.
//! pair.server.conn.handle_input(pair.now, &Frame::close(1000, "bye").from_client().encode());
//! let out = pair.server.drain(pair.now);
//! assert_eq!(out.closed().unwrap().code, CloseCode::NORMAL);
//! # Ok::<(), sockeye_core::UsageError>(())
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use crate::{
    ClientRequest, CloseCode, CloseFrame, Closed, Config, Connection, Error, Event, Handshake,
    MAX_CLOSE_REASON, Message, Role, State, TransportAction,
};

/// A valid upgrade request, as a browser would send it.
pub const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The masking key of the frames [`Frame::from_client`] builds.
pub const MASK: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

/// Everything a connection said after one or more inputs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// The events, in order.
    pub events: Vec<Event>,
    /// The bytes written, in order.
    pub wire: Vec<u8>,
    /// The transport actions, in order.
    pub transport: Vec<TransportAction>,
}

impl Output {
    /// Whether nothing at all came out.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.wire.is_empty() && self.transport.is_empty()
    }

    /// The `Closed` event, if there was one.
    pub fn closed(&self) -> Option<&Closed> {
        self.events.iter().find_map(|event| match event {
            Event::Closed(closed) => Some(&**closed),
            _ => None,
        })
    }

    fn append(&mut self, other: Output) {
        self.events.extend(other.events);
        self.wire.extend(other.wire);
        self.transport.extend(other.transport);
    }
}

/// A connection driven as its contract says, with every output checked
/// against the [`Grammar`] and every byte it writes read by its [`Wire`].
#[derive(Debug)]
pub struct Endpoint {
    /// The connection, for inputs and calls.
    pub conn: Connection,
    grammar: Grammar,
    wire: Wire,
    /// Most bytes one write takes; `None`: all that is offered.
    pub write_size: Option<usize>,
    /// Slices offered to one `poll_transmit`.
    pub slices: usize,
}

impl Endpoint {
    /// Drives `conn`.
    pub fn new(conn: Connection) -> Self {
        let grammar = Grammar::new(conn.role(), conn.state());
        let wire = Wire::new(conn.role(), conn.state());
        Self {
            conn,
            grammar,
            wire,
            write_size: None,
            slices: 64,
        }
    }

    /// A server endpoint waiting for a request.
    pub fn server(config: Config, now: Instant) -> Self {
        Self::new(Connection::server(config, now).expect("a valid config"))
    }

    /// A server endpoint past the handshake of [`REQUEST`], its outputs
    /// drained.
    pub fn open_server(config: Config, now: Instant) -> Self {
        let mut server = Self::server(config, now);
        server.conn.handle_input(now, REQUEST);
        let events = server.events();
        assert!(matches!(events[..], [Event::Request(_)]), "{events:?}");
        server
            .conn
            .accept(now, Handshake::default())
            .expect("a pending request");
        let out = server.drain(now);
        assert!(matches!(out.events[..], [Event::Open(_)]), "{out:?}");
        assert!(out.wire.starts_with(b"HTTP/1.1 101 "));
        server
    }

    /// The events waiting, checked.
    pub fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.conn.poll_event() {
            self.grammar.event(&event);
            events.push(event);
        }
        self.grammar.state(self.conn.state());
        self.check_buffered_input();
        events
    }

    /// The bound `Connection::buffered_input` documents for a connection
    /// whose events are drained.
    fn check_buffered_input(&self) {
        let config = self.conn.config();
        let bound = match self.conn.state() {
            State::Handshaking => 2 * config.max_handshake_size,
            _ => config.max_message_size + 125 + crate::frame::MAX_HEADER_LEN,
        };
        let held = self.conn.buffered_input();
        assert!(
            held <= bound,
            "buffered_input {held} > {bound}, events drained"
        );
    }

    /// One write of at most `max` bytes of what the connection offers;
    /// returns the bytes written.
    pub fn write(&mut self, now: Instant, max: usize) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); self.slices];
        let n = self.conn.poll_transmit(&mut slices);
        let mut wire = Vec::new();
        for slice in &slices[..n] {
            assert!(!slice.is_empty(), "an empty slice was offered");
            let take = slice.len().min(max - wire.len());
            wire.extend_from_slice(&slice[..take]);
            if wire.len() == max {
                break;
            }
        }
        drop(slices);
        self.grammar.wrote(wire.len());
        self.wire.read(&wire);
        self.conn.handle_written(now, wire.len());
        wire
    }

    /// Drains every output as the contract says: the events, then writes
    /// (of at most [`write_size`](Self::write_size) bytes each) until
    /// nothing is offered, then the transport action; again while any of
    /// them brought more.
    pub fn drain(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        loop {
            let events = self.events();
            let mut wrote = false;
            loop {
                let chunk = self.write(now, self.write_size.unwrap_or(usize::MAX));
                if chunk.is_empty() {
                    break;
                }
                wrote = true;
                out.wire.extend(chunk);
            }
            let action = self.conn.poll_transport();
            if let Some(action) = action {
                self.grammar.transport(action);
                out.transport.push(action);
            }
            let more = !events.is_empty() || wrote || action.is_some();
            out.events.extend(events);
            if !more {
                return out;
            }
        }
    }

    /// The grammar's view of the connection so far.
    pub fn grammar(&self) -> &Grammar {
        &self.grammar
    }

    /// Everything the connection wrote, read back as its peer reads it.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }
}

/// The rules every connection's outputs follow, checked as they come out.
/// A violation panics with what broke the rule, so the fuzzers report it.
///
/// * A server's first event is its one `Request` or `HttpRequest`; `Open`
///   comes at most once, and for a server only after a `Request`.
/// * Messages, pings and pongs come only while open, and not after
///   `CloseReceived`, which comes at most once; `Drained` only while open.
///   Text is UTF-8, ping and pong payloads at most 125 bytes, and a
///   received close frame carries a code that may be sent (or none, and no
///   reason) and a reason of at most 123 bytes.
/// * `Closed` comes exactly once, and last, with the code its cause
///   documents: a protocol error's own code, the peer's close frame's code
///   and reason when clean, and `ABNORMAL` for anything else; handshake
///   errors only before `Open`, in the role that reads that message.
/// * Nothing is written after the transport was half-closed or closed.
/// * `HalfClose` comes at most once, after `Closed`, and before `Close`;
///   `Close` comes once, after `Closed`.
/// * The state only moves forward.
#[derive(Debug, Clone)]
pub struct Grammar {
    role: Role,
    state: State,
    requests: usize,
    accepted_request: bool,
    open: bool,
    close_received: Option<CloseFrame>,
    closed: bool,
    half_closed: bool,
    transport_closed: bool,
}

impl Grammar {
    /// The grammar of a connection in `role` that starts in `state`.
    pub fn new(role: Role, state: State) -> Self {
        Self {
            role,
            state,
            requests: 0,
            accepted_request: false,
            open: state == State::Open,
            close_received: None,
            closed: false,
            half_closed: false,
            transport_closed: false,
        }
    }

    /// Checks the next event.
    pub fn event(&mut self, event: &Event) {
        assert!(!self.closed, "{event:?} after Closed");
        match event {
            Event::Request(_) | Event::HttpRequest(_) => {
                assert_eq!(self.role, Role::Server, "a client got a request");
                assert!(!self.open, "a request after Open");
                self.requests += 1;
                assert_eq!(self.requests, 1, "a second request");
                self.accepted_request = matches!(event, Event::Request(_));
            }
            Event::Open(_) => {
                assert!(!self.open, "a second Open");
                if self.role == Role::Server {
                    assert!(self.accepted_request, "Open without an upgrade request");
                }
                self.open = true;
            }
            Event::Message(_) | Event::Ping(_) | Event::Pong(_) => {
                assert!(self.open, "{event:?} before Open");
                assert!(
                    self.close_received.is_none(),
                    "{event:?} after CloseReceived"
                );
                match event {
                    // `as_str` trusts the decoder's validation: check it.
                    Event::Message(Message::Text(text)) => {
                        assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "{text:?}");
                    }
                    Event::Ping(payload) | Event::Pong(payload) => {
                        assert!(payload.len() <= 125, "{event:?}");
                    }
                    _ => {}
                }
            }
            Event::Drained => {
                assert!(
                    self.open && self.close_received.is_none(),
                    "Drained while not open"
                );
            }
            Event::CloseReceived(frame) => {
                assert!(self.open, "CloseReceived before Open");
                assert!(self.close_received.is_none(), "a second CloseReceived");
                assert!(frame.reason.len() <= MAX_CLOSE_REASON, "{frame:?}");
                if frame.code == CloseCode::NO_STATUS {
                    assert!(frame.reason.is_empty(), "{frame:?}");
                } else {
                    assert!(frame.code.is_valid_on_wire(), "{frame:?}");
                }
                self.close_received = Some(frame.clone());
            }
            Event::Closed(closed) => {
                self.check_closed(closed);
                self.closed = true;
            }
        }
    }

    /// What `Closed` says, from what came before it.
    fn check_closed(&self, closed: &Closed) {
        assert!(closed.reason.len() <= MAX_CLOSE_REASON, "{closed:?}");
        let abnormal = || {
            assert_eq!(closed.code, CloseCode::ABNORMAL, "{closed:?}");
            assert!(!closed.clean, "{closed:?}");
        };
        match &closed.error {
            Some(Error::Protocol(e)) => {
                assert!(self.open, "a protocol error before Open: {closed:?}");
                assert_eq!(closed.code, e.close_code(), "{closed:?}");
                assert!(!closed.clean, "{closed:?}");
            }
            Some(Error::Request(_)) => {
                assert!(self.role == Role::Server && !self.open, "{closed:?}");
                abnormal();
            }
            Some(Error::Response(_)) => {
                assert!(self.role == Role::Client && !self.open, "{closed:?}");
                abnormal();
            }
            Some(Error::CloseTimeout) => {
                assert!(self.open && self.close_received.is_none(), "{closed:?}");
                abnormal();
            }
            // The heartbeat runs only while open.
            Some(Error::PeerUnresponsive(_)) => {
                assert!(self.open, "{closed:?}");
                abnormal();
            }
            Some(Error::UnexpectedEof | Error::Transport { .. }) => abnormal(),
            None if closed.clean => {
                let frame = self.close_received.as_ref().expect("clean without a close");
                assert_eq!((&closed.code, &closed.reason), (&frame.code, &frame.reason));
            }
            // Only an answer to a request ends a connection without an error.
            None => {
                assert!(self.role == Role::Server && !self.open, "{closed:?}");
                abnormal();
            }
        }
    }

    /// Checks that `n` bytes may be written now.
    pub fn wrote(&mut self, n: usize) {
        if n > 0 {
            assert!(!self.half_closed, "{n} bytes written after HalfClose");
            assert!(!self.transport_closed, "{n} bytes written after Close");
        }
    }

    /// Checks a transport action.
    pub fn transport(&mut self, action: TransportAction) {
        assert!(self.closed, "{action:?} before Closed");
        assert!(!self.transport_closed, "{action:?} after Close");
        match action {
            TransportAction::HalfClose => {
                assert!(!self.half_closed, "a second HalfClose");
                self.half_closed = true;
            }
            TransportAction::Close => self.transport_closed = true,
        }
    }

    /// Checks the connection's state after an output.
    pub fn state(&mut self, state: State) {
        assert!(
            state >= self.state,
            "state went back from {:?} to {state:?}",
            self.state
        );
        assert_eq!(
            state == State::Closed,
            self.closed,
            "the Closed state and the Closed event disagree"
        );
        if self.open {
            assert!(state >= State::Open, "Open in {state:?}");
        }
        self.state = state;
    }

    /// Whether `Closed` came.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the transport was half-closed.
    pub fn is_half_closed(&self) -> bool {
        self.half_closed
    }

    /// Whether the transport was closed.
    pub fn is_transport_closed(&self) -> bool {
        self.transport_closed
    }
}

/// What a connection wrote, read back as its peer reads it (with
/// [`split_head`] and [`read_frames`], not the core's decoder), and checked
/// against what RFC 6455 lets a sender write:
///
/// * a handshake connection writes its HTTP head first, once; after a
///   server's non-101 answer the rest is its body;
/// * every frame has no RSV bits, a known opcode, the shortest length form,
///   and a mask exactly when a client sent it; control frames are final
///   and at most 125 bytes; continuations continue a message, text is
///   UTF-8, a close frame's code may be sent and its reason is UTF-8 of at
///   most 123 bytes;
/// * nothing follows the close frame.
#[derive(Debug, Clone)]
pub struct Wire {
    role: Role,
    written: usize,
    /// Bytes of an incomplete head or frame.
    unread: Vec<u8>,
    /// The HTTP head (blank line included), once complete.
    pub head: Option<Vec<u8>>,
    /// What followed a server's non-101 answer.
    pub body: Vec<u8>,
    /// Every frame, in order.
    pub frames: Vec<Frame>,
    /// The data messages the frames make up, in order.
    pub messages: Vec<Message>,
    /// The message in progress: its first frame's opcode and its payload.
    fragments: Option<(u8, Vec<u8>)>,
}

impl Wire {
    /// The output of a connection in `role` that starts in `state`.
    pub fn new(role: Role, state: State) -> Self {
        Self {
            role,
            written: 0,
            unread: Vec::new(),
            // An upgraded connection starts with frames.
            head: (state != State::Handshaking).then(Vec::new),
            body: Vec::new(),
            frames: Vec::new(),
            messages: Vec::new(),
            fragments: None,
        }
    }

    /// The status of a response head, for a server.
    pub fn status(&self) -> Option<u16> {
        let rest = self.head.as_deref()?.strip_prefix(b"HTTP/1.1 ")?;
        assert_eq!(rest.get(3), Some(&b' '), "a status line");
        std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
    }

    /// The close frame, once written.
    pub fn close(&self) -> Option<&Frame> {
        self.frames.last().filter(|frame| frame.opcode == 0x8)
    }

    /// The payloads of the frames with `opcode`, in order.
    pub fn payloads(&self, opcode: u8) -> impl Iterator<Item = &[u8]> {
        self.frames
            .iter()
            .filter(move |frame| frame.opcode == opcode)
            .map(|frame| &frame.payload[..])
    }

    /// How many bytes were written.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Reads the next bytes written.
    pub fn read(&mut self, bytes: &[u8]) {
        self.written += bytes.len();
        self.take(bytes);
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.head.is_some() && self.status().is_some_and(|s| s != 101) {
            self.body.extend_from_slice(bytes);
            return;
        }
        self.unread.extend_from_slice(bytes);
        if self.head.is_none() {
            let Some((head, rest)) = split_head(&self.unread) else {
                return;
            };
            let (head, rest) = (head.to_vec(), rest.to_vec());
            self.head = Some(head);
            self.unread.clear();
            return self.take(&rest);
        }
        assert!(
            self.close().is_none() || bytes.is_empty(),
            "bytes after the close frame"
        );
        let (frames, rest) = read_frames(&self.unread);
        self.unread = rest.to_vec();
        for frame in frames {
            self.frame(frame);
        }
    }

    fn frame(&mut self, frame: Frame) {
        assert!(self.close().is_none(), "{frame:?} after the close frame");
        assert_eq!(frame.rsv, 0, "{frame:?}");
        assert_eq!(frame.length, Length::Shortest, "{frame:?}");
        assert_eq!(frame.mask.is_some(), self.role == Role::Client, "{frame:?}");
        match frame.opcode {
            0x8..=0xA => {
                assert!(frame.fin && frame.payload.len() <= 125, "{frame:?}");
                if frame.opcode == 0x8 {
                    check_close_payload(&frame.payload);
                }
            }
            0x0..=0x2 => {
                let (opcode, mut payload) = match (frame.opcode, self.fragments.take()) {
                    (0x0, Some(started)) => started,
                    (0x1 | 0x2, None) => (frame.opcode, Vec::new()),
                    _ => panic!("{frame:?} out of sequence"),
                };
                payload.extend_from_slice(&frame.payload);
                if !frame.fin {
                    self.fragments = Some((opcode, payload));
                } else if opcode == 0x1 {
                    let text = String::from_utf8(payload).expect("text is UTF-8");
                    self.messages.push(Message::text(text));
                } else {
                    self.messages.push(Message::binary(payload));
                }
            }
            _ => panic!("{frame:?}: a reserved opcode"),
        }
        self.frames.push(frame);
    }
}

/// A close frame's payload: empty, or a code that may be sent and a short
/// UTF-8 reason.
fn check_close_payload(payload: &[u8]) {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        assert!(payload.is_empty(), "a one-byte close payload");
        return;
    };
    let code = CloseCode::new(u16::from_be_bytes(*code));
    assert!(code.is_valid_on_wire(), "close code {code:?}");
    assert!(reason.len() <= MAX_CLOSE_REASON);
    assert!(
        std::str::from_utf8(reason).is_ok(),
        "close reason {reason:?}"
    );
}

/// One direction of the in-memory transport.
#[derive(Debug, Default)]
struct Link {
    /// Written and not read yet: in flight, or in the receiver's buffer.
    bytes: VecDeque<u8>,
    /// The writer half-closed or closed: an end of stream follows the bytes.
    eof: bool,
    eof_delivered: bool,
}

/// Which endpoint of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The endpoint that sent the upgrade request.
    Client,
    /// The endpoint that answered it.
    Server,
}

impl Side {
    /// The other endpoint.
    pub fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// A client and a server endpoint joined by an in-memory transport, on one
/// virtual clock.
///
/// [`drive`](Self::drive) drains both, moves what each wrote to the other
/// (in reads of at most [`read_size`](Self::read_size) bytes), and carries
/// out their transport actions as TCP would: after a half-close or a close,
/// the other side reads an end of stream once it has read the bytes in
/// flight. Bytes that reach an endpoint that closed its transport make a
/// reset: the writer's unread input is destroyed and its transport fails.
#[derive(Debug)]
pub struct Pair {
    /// The client.
    pub client: Endpoint,
    /// The server.
    pub server: Endpoint,
    /// The virtual clock.
    pub now: Instant,
    /// Most bytes one read takes; `None`: everything that has arrived.
    pub read_size: Option<usize>,
    to_server: Link,
    to_client: Link,
    resets: usize,
}

impl Pair {
    /// A client (with a fixed seed, asking for `/chat` on `localhost`) and
    /// a server, before the handshake.
    pub fn new(client: Config, server: Config) -> Self {
        Self::with_request(ClientRequest::new("localhost", 80, "/chat"), client, server)
    }

    /// A client sending `request`, and a server, before the handshake.
    pub fn with_request(request: ClientRequest, client: Config, server: Config) -> Self {
        let now = base_instant();
        Self {
            client: Endpoint::new(
                Connection::client(request, client, 0x5eed, now).expect("a valid client"),
            ),
            server: Endpoint::server(server, now),
            now,
            read_size: None,
            to_server: Link::default(),
            to_client: Link::default(),
            resets: 0,
        }
    }

    /// Completes the handshake, the server accepting with the default
    /// [`Handshake`]; both sides' outputs are drained.
    pub fn open(mut self) -> Self {
        let (_, server) = self.drive();
        assert!(
            matches!(server.events[..], [Event::Request(_)]),
            "{server:?}"
        );
        self.server
            .conn
            .accept(self.now, Handshake::default())
            .expect("a pending request");
        let (client, server) = self.drive();
        assert!(matches!(client.events[..], [Event::Open(_)]), "{client:?}");
        assert!(matches!(server.events[..], [Event::Open(_)]), "{server:?}");
        self
    }

    /// One endpoint.
    pub fn side(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Drives both endpoints until neither has anything more to say or to
    /// read; returns what each said, client first.
    pub fn drive(&mut self) -> (Output, Output) {
        let mut said = (Output::default(), Output::default());
        loop {
            let client = self.client.drain(self.now);
            let server = self.server.drain(self.now);
            let mut moved = !client.is_empty() || !server.is_empty();
            Self::carry(&mut self.to_server, &client);
            Self::carry(&mut self.to_client, &server);
            said.0.append(client);
            said.1.append(server);
            moved |= self.deliver(Side::Server);
            moved |= self.deliver(Side::Client);
            if !moved {
                return said;
            }
        }
    }

    /// Moves the clock on by `by`, handles the deadlines that passed (each
    /// endpoint's in turn, at its deadline), and drives both; returns what
    /// they said.
    pub fn advance(&mut self, by: Duration) -> (Output, Output) {
        let until = self.now + by;
        let mut said = (Output::default(), Output::default());
        loop {
            let next = [&self.client, &self.server]
                .iter()
                .filter(|e| !e.grammar.transport_closed)
                .filter_map(|e| e.conn.poll_timeout())
                .filter(|&deadline| deadline <= until)
                .min();
            let Some(deadline) = next else { break };
            self.now = self.now.max(deadline);
            for side in [Side::Client, Side::Server] {
                let now = self.now;
                let endpoint = self.side(side);
                if endpoint.conn.poll_timeout().is_some_and(|d| d <= now) {
                    endpoint.conn.handle_timeout(now);
                }
            }
            let (client, server) = self.drive();
            said.0.append(client);
            said.1.append(server);
        }
        self.now = until;
        let (client, server) = self.drive();
        said.0.append(client);
        said.1.append(server);
        said
    }

    /// Moves the clock on, deadline by deadline, until both transports are
    /// closed or `limit` has passed; returns whether they are closed.
    pub fn settle(&mut self, limit: Duration) -> bool {
        self.advance(limit);
        self.client.grammar.transport_closed && self.server.grammar.transport_closed
    }

    /// How many times bytes reached an endpoint that had closed its
    /// transport: each is a TCP reset, which can destroy the other side's
    /// unread input (a close frame, say).
    pub fn resets(&self) -> usize {
        self.resets
    }

    /// Bytes written toward `side` and not read by it yet.
    pub fn in_flight(&self, side: Side) -> usize {
        match side {
            Side::Client => self.to_client.bytes.len(),
            Side::Server => self.to_server.bytes.len(),
        }
    }

    fn carry(link: &mut Link, out: &Output) {
        assert!(
            !link.eof || out.wire.is_empty(),
            "bytes written after the end of stream"
        );
        link.bytes.extend(&out.wire);
        if !out.transport.is_empty() {
            link.eof = true;
        }
    }

    /// Lets `side` read what has arrived for it; returns whether anything
    /// happened.
    fn deliver(&mut self, side: Side) -> bool {
        let now = self.now;
        let read_size = self.read_size.unwrap_or(usize::MAX).max(1);
        let (receiver, link, back) = match side {
            Side::Client => (&mut self.client, &mut self.to_client, &mut self.to_server),
            Side::Server => (&mut self.server, &mut self.to_server, &mut self.to_client),
        };
        if receiver.grammar.transport_closed {
            if link.bytes.is_empty() {
                return false;
            }
            // A reset: the writer loses what it had not read, and its
            // transport fails from now on.
            self.resets += 1;
            link.bytes.clear();
            back.bytes.clear();
            back.eof = true;
            back.eof_delivered = true;
            let writer = match side {
                Side::Client => &mut self.server,
                Side::Server => &mut self.client,
            };
            if !writer.grammar.transport_closed {
                let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                writer.conn.handle_transport_error(now, &reset);
            }
            return true;
        }
        if !link.bytes.is_empty() {
            let n = link.bytes.len().min(read_size);
            let chunk: Vec<u8> = link.bytes.drain(..n).collect();
            receiver.conn.handle_input(now, &chunk);
            return true;
        }
        if link.eof && !link.eof_delivered {
            link.eof_delivered = true;
            receiver.conn.handle_eof(now);
            return true;
        }
        false
    }
}

/// Writes everything `conn` offers, in vectored writes of up to 64 slices
/// that take all they are given, and returns how many bytes that was. It
/// allocates nothing and checks nothing, unlike [`Endpoint::drain`]: it is
/// for benchmarks and allocation counts, which measure the connection alone.
pub fn write_all(conn: &mut Connection, now: Instant) -> usize {
    let mut written = 0;
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = conn.poll_transmit(&mut slices);
        let len: usize = slices[..n].iter().map(|slice| slice.len()).sum();
        if len == 0 {
            return written;
        }
        conn.handle_written(now, len);
        written += len;
    }
}

/// One `Instant`, taken once, that every harness clock starts from, so that
/// runs replay exactly.
pub fn base_instant() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// How a [`Frame`] writes its payload length (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The shortest form that holds it.
    Shortest,
    /// The 16-bit form, whatever the length (not the shortest below 126).
    Sixteen,
    /// The 64-bit form, whatever the length.
    SixtyFour,
    /// This value in the 64-bit form, whatever the payload's length.
    Declared(u64),
    /// This value in the shortest form that holds it, whatever the
    /// payload's length.
    Claimed(u64),
}

/// A frame, built byte by byte without the core's encoder, so that tests
/// check the core against an independent reading of RFC 6455.
///
/// ```
/// use sockeye_core::testing::{Frame, MASK};
/// assert_eq!(Frame::text("Hi").encode(), b"\x81\x02Hi");
/// let masked = Frame::text("Hi").from_client().encode();
/// assert_eq!(masked[..6], [0x81, 0x82, MASK[0], MASK[1], MASK[2], MASK[3]]);
/// assert_eq!(Frame::close(1000, "").fin(false).rsv(0b100).encode(), [0x48, 2, 3, 232]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// RSV1 to RSV3, as the three low bits.
    pub rsv: u8,
    /// The opcode, any of the 16 values.
    pub opcode: u8,
    /// The masking key, if masked.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
    /// How the length is written.
    pub length: Length,
}

impl Frame {
    /// A final, unmasked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload: payload.into(),
            length: Length::Shortest,
        }
    }

    /// A text frame.
    pub fn text(text: &str) -> Self {
        Self::new(0x1, text.as_bytes())
    }

    /// A binary frame.
    pub fn binary(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(0x2, payload)
    }

    /// A continuation frame.
    pub fn continuation(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(0x0, payload)
    }

    /// A ping.
    pub fn ping(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(0x9, payload)
    }

    /// A pong.
    pub fn pong(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(0xA, payload)
    }

    /// A close frame with a code and a reason.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Self::new(0x8, payload)
    }

    /// A close frame without a payload.
    pub fn empty_close() -> Self {
        Self::new(0x8, [])
    }

    /// Sets FIN.
    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    /// Sets the RSV bits.
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    /// Masks it with `key`.
    pub fn masked(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }

    /// Masks it with [`MASK`], as a client sends it.
    pub fn from_client(self) -> Self {
        self.masked(MASK)
    }

    /// As `role` sends it: masked with [`MASK`] from a client.
    pub fn sent_by(self, role: Role) -> Self {
        match role {
            Role::Client => self.from_client(),
            Role::Server => self,
        }
    }

    /// Writes the length in the given form.
    pub fn length(mut self, length: Length) -> Self {
        self.length = length;
        self
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len() as u64;
        let mut wire =
            vec![(u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0xF)];
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        // The value written, and in how many bits.
        let shortest = |n: u64| match n {
            0..126 => 7,
            126..=0xFFFF => 16,
            _ => 64,
        };
        let (value, bits) = match self.length {
            Length::Shortest => (len, shortest(len)),
            Length::Sixteen => (len, 16),
            Length::SixtyFour => (len, 64),
            Length::Declared(declared) => (declared, 64),
            Length::Claimed(claimed) => (claimed, shortest(claimed)),
        };
        match bits {
            7 => wire.push(mask_bit | value as u8),
            16 => {
                wire.push(mask_bit | 126);
                wire.extend((value as u16).to_be_bytes());
            }
            _ => {
                wire.push(mask_bit | 127);
                wire.extend(value.to_be_bytes());
            }
        }
        let start = match self.mask {
            Some(key) => {
                wire.extend(key);
                wire.len()
            }
            None => wire.len(),
        };
        wire.extend(&self.payload);
        if let Some(key) = self.mask {
            for (i, byte) in wire[start..].iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        wire
    }
}

/// The bytes of several frames in a row.
pub fn encode_all(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(Frame::encode).collect()
}

/// Splits the HTTP head off the front of `wire`, if it starts with a
/// complete one: the head (blank line included) and what follows.
pub fn split_head(wire: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(wire.split_at(end))
}

/// Parses `wire` as complete frames, independently of the core's decoder:
/// the frames (payloads unmasked, lengths as declared) and the bytes of an
/// incomplete frame at the end.
///
/// ```
/// use sockeye_core::testing::{Frame, read_frames};
/// let mut wire = Frame::text("a").from_client().encode();
/// wire.extend(&Frame::ping("p").encode()[..2]);
/// let (frames, rest) = read_frames(&wire);
/// assert_eq!(frames, [Frame::text("a").from_client()]);
/// assert_eq!(rest.len(), 2);
/// ```
pub fn read_frames(mut wire: &[u8]) -> (Vec<Frame>, &[u8]) {
    let mut frames = Vec::new();
    loop {
        let Some((frame, used)) = read_frame(wire) else {
            return (frames, wire);
        };
        frames.push(frame);
        wire = &wire[used..];
    }
}

fn read_frame(wire: &[u8]) -> Option<(Frame, usize)> {
    let (&first, rest) = wire.split_first()?;
    let (&second, mut rest) = rest.split_first()?;
    let (len, length) = match second & 0x7F {
        126 => {
            let (bytes, tail) = rest.split_first_chunk::<2>()?;
            rest = tail;
            (u64::from(u16::from_be_bytes(*bytes)), Length::Sixteen)
        }
        127 => {
            let (bytes, tail) = rest.split_first_chunk::<8>()?;
            rest = tail;
            (u64::from_be_bytes(*bytes), Length::SixtyFour)
        }
        short => (u64::from(short), Length::Shortest),
    };
    let mask = if second & 0x80 != 0 {
        let (key, tail) = rest.split_first_chunk::<4>()?;
        rest = tail;
        Some(*key)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    let mut payload = rest.get(..len)?.to_vec();
    if let Some(key) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    let used = wire.len() - rest.len() + len;
    let length = match length {
        Length::Sixteen if len < 126 => Length::Sixteen,
        Length::SixtyFour if len <= 0xFFFF => Length::SixtyFour,
        _ => Length::Shortest,
    };
    let frame = Frame {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 7,
        opcode: first & 0xF,
        mask,
        payload,
        length,
    };
    Some((frame, used))
}
