//! [`Checked`]: a [`Connection`] driven the way the contract says (drain
//! events, then transmits, after every input), with every invariant asserted
//! on the way, and [`Wire`], which parses what the connection transmits.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Buf, Bytes};
use sockeye_core::frame::{Decoded, Decoder, Header as FrameHeader, MAX_HEADER_LEN, Role};
use sockeye_core::{
    Accept, ClientRequest, CloseCode, CloseFrame, Closed, Config, Connection, Error, Event, Header,
    MAX_CLOSE_REASON, Message, RequestError, Response, State, Transmit, UsageError, accept_key,
};

/// How a server answers an upgrade or plain request.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) enum Answer {
    /// [`Connection::accept`].
    Accept {
        protocol: ProtocolChoice,
        header: Option<HeaderSpec>,
    },
    /// [`Connection::respond`].
    Respond {
        status: StatusChoice,
        body: Vec<u8>,
        header: Option<HeaderSpec>,
    },
}

/// Which subprotocol an [`Answer::Accept`] names.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum ProtocolChoice {
    None,
    FirstOffered,
    /// One the client did not offer: a usage error.
    Unoffered,
}

/// An extra response header: a good one, or anything at all.
#[derive(Arbitrary, Debug, Clone)]
pub(crate) enum HeaderSpec {
    Good,
    Any { name: String, value: Vec<u8> },
}

impl HeaderSpec {
    fn header(&self) -> Header {
        match self {
            Self::Good => Header::new("X-Fuzz", "1"),
            Self::Any { name, value } => Header::new(name.clone(), value.clone()),
        }
    }
}

/// A response status: the common ones, or any number (most are invalid).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum StatusChoice {
    Ok,
    Forbidden,
    NotFound,
    Any(u16),
}

impl StatusChoice {
    fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Any(code) => code,
        }
    }
}

/// The subprotocols the fuzzed clients offer.
pub(crate) const CLIENT_PROTOCOLS: [&str; 2] = ["chat", "superchat"];

/// The request every fuzzed client connection sends.
pub(crate) fn client_request() -> ClientRequest {
    ClientRequest::new("example.com", 80, "/chat")
        .protocol(CLIENT_PROTOCOLS[0])
        .protocol(CLIENT_PROTOCOLS[1])
}

/// A request the server has reported and not answered yet.
#[derive(Debug, Clone)]
struct Pending {
    /// `Event::Request` (true) or `Event::HttpRequest` (false).
    upgrade: bool,
    protocols: Vec<String>,
    /// The `Sec-WebSocket-Accept` the 101 response must carry.
    accept: String,
}

/// What must not change when a call fails with a [`UsageError`].
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    state: State,
    buffered_amount: usize,
    buffered_input: usize,
    timeout: Option<Instant>,
}

/// A connection under test. Every method performs one input or call, then
/// drains the outputs as the contract says, checking invariants throughout.
pub(crate) struct Checked {
    conn: Connection,
    role: Role,
    config: Config,
    now: Instant,
    /// How to answer a request as soon as it is polled, if at all.
    pub(crate) auto_answer: Option<Answer>,
    last_state: State,
    requests: usize,
    pending: Option<Pending>,
    /// What the 101 response must say, once `accept` succeeded.
    accepted: Option<(String, Option<String>, Option<Header>)>,
    /// The subprotocol `accept` chose, for the Open event to match.
    accepted_protocol: Option<Option<String>>,
    /// The status `respond` sent, once it succeeded.
    responded: Option<u16>,
    opened: bool,
    close_received: Option<CloseFrame>,
    closed: Option<Closed>,
    /// The close checks that need the transmits drained first.
    closed_unchecked: bool,
    /// Transmits seen when the drain after `Closed` ended: none may follow.
    transmits_when_closed: Option<usize>,
    /// A close frame was queued before any failure could queue one: by
    /// `close`, as the reply to the peer's, or by the idle timeout.
    close_queued: bool,
    pings_received: Vec<Bytes>,
    /// How many of `pings_received` the pongs on the wire have used up.
    pings_answered: usize,
    /// How many of our pongs on the wire are checked against them.
    pongs_checked: usize,
    /// Messages `send` accepted, in order.
    sent: Vec<Message>,
    /// How many of the messages on the wire are checked against `sent`.
    messages_checked: usize,
    /// Every event polled, for targets that compare them.
    pub(crate) events: Vec<Event>,
    pub(crate) wire: Wire,
    /// Milestones reached, for the seed generator.
    pub(crate) features: BTreeSet<String>,
}

impl Checked {
    /// A server connection.
    pub(crate) fn server(config: Config, now: Instant) -> Self {
        let conn = Connection::server(config.clone(), now).expect("the fuzz config is valid");
        Self::new(conn, Role::Server, config, now)
    }

    /// A client connection sending [`client_request`]; its request is
    /// drained at once.
    pub(crate) fn client(config: Config, seed: u64, now: Instant) -> Self {
        let conn = Connection::client(client_request(), config.clone(), seed, now)
            .expect("the fuzz config and request are valid");
        let mut checked = Self::new(conn, Role::Client, config, now);
        checked.drain();
        let request = checked
            .wire
            .http
            .clone()
            .expect("a client sends its request first");
        assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
        checked
    }

    fn new(conn: Connection, role: Role, config: Config, now: Instant) -> Self {
        assert_eq!(conn.state(), State::Handshaking);
        assert_eq!(conn.role(), role);
        Self {
            conn,
            role,
            now,
            auto_answer: None,
            last_state: State::Handshaking,
            requests: 0,
            pending: None,
            accepted: None,
            accepted_protocol: None,
            responded: None,
            opened: false,
            close_received: None,
            closed: None,
            closed_unchecked: false,
            transmits_when_closed: None,
            close_queued: false,
            pings_received: Vec::new(),
            pings_answered: 0,
            pongs_checked: 0,
            sent: Vec::new(),
            messages_checked: 0,
            events: Vec::new(),
            wire: Wire::new(role),
            features: BTreeSet::new(),
            config,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.conn.state()
    }

    pub(crate) fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Received bytes, then drain.
    pub(crate) fn input(&mut self, data: &[u8]) {
        self.conn.handle_input(self.now, data);
        self.drain();
    }

    /// Received bytes as a driver reads them: into the payload buffer while
    /// the connection offers room, and otherwise [`read_size`] bytes at a
    /// time through [`input`](Self::input), draining after each read.
    ///
    /// [`read_size`]: sockeye_core::Connection::read_size
    pub(crate) fn read(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Some(room) = self.conn.payload_buffer() {
                let n = room.len().min(data.len());
                for (slot, byte) in room.iter_mut().zip(&data[..n]) {
                    slot.write(*byte);
                }
                // SAFETY: the loop above wrote the first `n` bytes of `room`.
                unsafe { self.conn.handle_payload_read(self.now, n) };
                data = &data[n..];
                self.features.insert("input:payload_buffer".into());
                self.drain();
                continue;
            }
            let n = self.conn.read_size(data.len());
            if n < data.len() {
                self.features.insert("input:read_size_limited".into());
            }
            self.input(&data[..n]);
            data = &data[n..];
        }
    }

    /// The peer stopped sending, then drain.
    pub(crate) fn eof(&mut self) {
        self.conn.handle_eof(self.now);
        self.features.insert("input:eof".into());
        self.drain();
    }

    /// Moves the clock forward by `by` and fires the timer, then drains.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
        self.drain();
    }

    /// Moves the clock to the connection's own deadline, if it has one and
    /// it is ahead, and fires the timer.
    pub(crate) fn fire_deadline(&mut self) {
        if let Some(deadline) = self.conn.poll_timeout() {
            self.now = self.now.max(deadline);
        }
        self.conn.handle_timeout(self.now);
        self.drain();
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.conn.state(),
            buffered_amount: self.conn.buffered_amount(),
            buffered_input: self.conn.buffered_input(),
            timeout: self.conn.poll_timeout(),
        }
    }

    /// Checks a call's result against the error the documentation predicts,
    /// and that a failed call changed nothing.
    fn expect(
        &mut self,
        result: Result<(), UsageError>,
        expected: Option<UsageError>,
        before: Snapshot,
    ) {
        match (&result, &expected) {
            (Ok(()), None) => {}
            (Err(got), Some(want)) => {
                assert_eq!(got, want, "wrong usage error");
                assert_eq!(
                    self.snapshot(),
                    before,
                    "a failed call changed the connection"
                );
                self.features.insert(format!("usage:{}", variant(got)));
            }
            _ => panic!("expected {expected:?}, got {result:?}"),
        }
    }

    /// The error `send` must give in the current state.
    fn send_error(&self) -> Option<UsageError> {
        match self.conn.state() {
            State::Handshaking => Some(UsageError::NotOpen),
            State::Open => None,
            State::Closing | State::Closed => Some(UsageError::Closing),
        }
    }

    /// [`Connection::send`], then drain.
    pub(crate) fn send(&mut self, message: Message) {
        let expected = self.send_error();
        let before = self.snapshot();
        let result = self.conn.send(self.now, message.clone());
        let ok = result.is_ok();
        self.expect(result, expected, before);
        if ok {
            self.features.insert("call:send".into());
            self.sent.push(message);
        }
        self.drain();
    }

    /// [`Connection::ping`], then drain.
    pub(crate) fn ping(&mut self, payload: Bytes) {
        let expected = if payload.len() > 125 {
            Some(UsageError::PingTooLarge(payload.len()))
        } else {
            self.send_error()
        };
        let before = self.snapshot();
        let result = self.conn.ping(payload);
        self.expect(result, expected, before);
        self.drain();
    }

    /// [`Connection::close`], then drain.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        let expected = if !code.is_valid_on_wire() {
            Some(UsageError::InvalidCloseCode(code.as_u16()))
        } else if reason.len() > MAX_CLOSE_REASON {
            Some(UsageError::CloseReasonTooLong(reason.len()))
        } else {
            self.send_error()
        };
        let before = self.snapshot();
        let result = self.conn.close(self.now, code, reason);
        let ok = result.is_ok();
        self.expect(result, expected, before);
        if ok {
            self.features.insert("call:close".into());
            self.close_queued = true;
            assert_eq!(self.conn.state(), State::Closing);
        }
        self.drain();
    }

    /// Answers the pending request (a usage error if there is none), then
    /// drains.
    pub(crate) fn answer(&mut self, answer: &Answer) {
        self.answer_now(answer);
        self.drain();
    }

    /// Answers without draining: used while draining.
    fn answer_now(&mut self, answer: &Answer) {
        let before = self.snapshot();
        match answer {
            Answer::Accept { protocol, header } => {
                let pending = self.pending.clone().filter(|p| p.upgrade);
                let protocol = match protocol {
                    ProtocolChoice::None => None,
                    ProtocolChoice::FirstOffered => {
                        pending.as_ref().and_then(|p| p.protocols.first().cloned())
                    }
                    ProtocolChoice::Unoffered => Some("x-unoffered".to_owned()),
                };
                let header = header.as_ref().map(HeaderSpec::header);
                let expected = match &pending {
                    None => Some(UsageError::NoPendingRequest),
                    Some(p) => match &protocol {
                        Some(chosen) if !p.protocols.contains(chosen) => {
                            Some(UsageError::ProtocolNotOffered(chosen.clone()))
                        }
                        _ => header
                            .as_ref()
                            .filter(|h| !header_is_writable(h))
                            .map(|h| UsageError::InvalidHeader(h.name.clone())),
                    },
                };
                let accept = Accept {
                    protocol: protocol.clone(),
                    headers: header.iter().cloned().collect(),
                };
                let result = self.conn.accept(accept);
                let ok = result.is_ok();
                self.expect(result, expected, before);
                if ok {
                    self.features.insert("call:accept".into());
                    let pending = pending.expect("accepted a pending request");
                    self.accepted_protocol = Some(protocol.clone());
                    self.accepted = Some((pending.accept, protocol, header));
                    self.pending = None;
                }
            }
            Answer::Respond {
                status,
                body,
                header,
            } => {
                let status = status.code();
                let header = header.as_ref().map(HeaderSpec::header);
                let expected = if self.pending.is_none() {
                    Some(UsageError::NoPendingRequest)
                } else if !(100..=999).contains(&status) || status == 101 {
                    Some(UsageError::InvalidStatus(status))
                } else {
                    header
                        .as_ref()
                        .filter(|h| !header_is_writable(h))
                        .map(|h| UsageError::InvalidHeader(h.name.clone()))
                };
                let mut response = Response::new(status, body.clone());
                response.headers.extend(header);
                let result = self.conn.respond(response);
                let ok = result.is_ok();
                self.expect(result, expected, before);
                if ok {
                    self.features.insert(format!("call:respond:{status}"));
                    self.responded = Some(status);
                    self.pending = None;
                    assert_eq!(self.conn.state(), State::Closed);
                }
            }
        }
    }

    /// Drains events (reacting to requests as `auto_answer` says), then
    /// transmits, then checks the invariants that hold between inputs.
    pub(crate) fn drain(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            self.check_event(&event);
            let is_request = matches!(event, Event::Request(_) | Event::HttpRequest(_));
            self.events.push(event);
            if is_request && let Some(answer) = self.auto_answer.clone() {
                self.answer_now(&answer);
            }
        }
        while let Some(transmit) = self.conn.poll_transmit() {
            self.wire.push(transmit);
        }
        self.check_quiescent();
    }

    fn check_state(&mut self) -> State {
        let state = self.conn.state();
        assert!(
            state >= self.last_state,
            "state moved backwards: {:?} -> {state:?}",
            self.last_state
        );
        if state != self.last_state {
            self.features.insert(format!("state:{state:?}"));
        }
        if state == State::Closing {
            // Whoever moved it there queued a close frame.
            self.close_queued = true;
        }
        self.last_state = state;
        state
    }

    fn check_event(&mut self, event: &Event) {
        assert!(self.closed.is_none(), "an event after Closed: {event:?}");
        let state = self.check_state();
        self.features.insert(event_kind(event).into());
        match event {
            Event::Request(request) | Event::HttpRequest(request) => {
                let upgrade = matches!(event, Event::Request(_));
                assert_eq!(self.role, Role::Server, "a client got a request");
                assert_eq!(self.requests, 0, "a second request on one connection");
                self.requests += 1;
                let key = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| h.value.trim_ascii().to_vec());
                if upgrade {
                    assert_eq!(request.method, "GET");
                    assert!(key.is_some(), "an upgrade request without a key");
                }
                self.pending = Some(Pending {
                    upgrade,
                    protocols: request.protocols.clone(),
                    accept: key.map(|k| accept_key(&k)).unwrap_or_default(),
                });
            }
            Event::Open(upgraded) => {
                assert!(!self.opened, "a second Open");
                assert!(state >= State::Open);
                self.opened = true;
                match self.role {
                    Role::Server => {
                        let protocol = self
                            .accepted_protocol
                            .as_ref()
                            .expect("Open without accept");
                        assert_eq!(&upgraded.protocol, protocol);
                    }
                    Role::Client => {
                        if let Some(protocol) = &upgraded.protocol {
                            assert!(CLIENT_PROTOCOLS.contains(&protocol.as_str()));
                        }
                    }
                }
            }
            Event::Message(message) => {
                assert!(self.opened, "a message before Open");
                assert!(
                    self.close_received.is_none(),
                    "a message after the peer's close"
                );
                assert!(message.len() <= self.config.max_message_size);
                if let Message::Text(text) = message {
                    // `as_str` trusts the decoder's validation: check it here.
                    assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                }
            }
            Event::Ping(payload) => {
                assert!(self.opened && payload.len() <= 125);
                self.pings_received.push(payload.clone());
            }
            Event::Pong(payload) => assert!(self.opened && payload.len() <= 125),
            Event::CloseReceived(frame) => {
                assert!(self.opened, "a close before Open");
                assert!(self.close_received.is_none(), "a second close frame");
                assert!(frame.reason.len() <= MAX_CLOSE_REASON);
                if frame.code == CloseCode::NO_STATUS {
                    assert!(frame.reason.is_empty());
                } else {
                    assert!(frame.code.is_valid_on_wire(), "{frame:?}");
                }
                self.close_received = Some(frame.clone());
                self.close_queued = true;
            }
            Event::Closed(closed) => {
                assert_eq!(state, State::Closed);
                self.check_closed(closed);
                self.closed = Some((**closed).clone());
                self.closed_unchecked = true;
                self.pending = None;
            }
        }
    }

    /// What `Closed` must say, from what happened before it.
    fn check_closed(&mut self, closed: &Closed) {
        self.features.insert(match &closed.error {
            Some(Error::Protocol(e)) => format!("closed:Protocol:{}", variant(e)),
            Some(Error::Request(e)) => format!("closed:Request:{}", variant(e)),
            Some(Error::Response(e)) => format!("closed:Response:{}", variant(e)),
            Some(error) => format!("closed:{}", variant(error)),
            None => format!("closed:clean={}", closed.clean),
        });
        assert!(closed.reason.len() <= MAX_CLOSE_REASON);
        let abnormal = |closed: &Closed| {
            assert_eq!(closed.code, CloseCode::ABNORMAL, "{closed:?}");
            assert!(!closed.clean);
        };
        match &closed.error {
            Some(Error::Protocol(e)) => {
                assert!(self.opened, "a protocol error before Open");
                assert_eq!(closed.code, e.close_code(), "{closed:?}");
                assert!(!closed.clean);
            }
            Some(Error::Request(_)) => {
                assert_eq!(self.role, Role::Server);
                assert!(!self.opened);
                abnormal(closed);
            }
            Some(Error::Response(_)) => {
                assert_eq!(self.role, Role::Client);
                assert!(!self.opened);
                abnormal(closed);
            }
            Some(Error::PeerUnresponsive(missed)) => {
                assert!(self.opened);
                assert_eq!(*missed, self.config.max_missed_pongs);
                abnormal(closed);
            }
            Some(Error::CloseTimeout) => {
                assert!(self.opened && self.close_received.is_none());
                abnormal(closed);
            }
            Some(Error::UnexpectedEof) => abnormal(closed),
            Some(other) => panic!("an error the documentation does not list: {other:?}"),
            None if closed.clean => {
                let frame = self.close_received.as_ref().expect("clean without a close");
                assert_eq!(closed.code, frame.code);
                assert_eq!(closed.reason, frame.reason);
            }
            None => {
                assert!(self.responded.is_some(), "unclean, no error, no response");
                abnormal(closed);
            }
        }
    }

    /// Invariants that hold once both events and transmits are drained.
    fn check_quiescent(&mut self) {
        let state = self.check_state();
        let bound = match state {
            State::Handshaking => 2 * self.config.max_handshake_size,
            _ => self.config.max_message_size + 125 + MAX_HEADER_LEN,
        };
        let held = self.conn.buffered_input();
        assert!(
            held <= bound,
            "buffered_input {held} > {bound} in {state:?}"
        );
        assert_eq!(
            self.conn.buffered_amount(),
            0,
            "transmits drained, bytes still queued"
        );
        assert_eq!(self.closed.is_some(), state == State::Closed);
        match state {
            State::Handshaking | State::Closing => assert!(self.conn.poll_timeout().is_some()),
            State::Open => {}
            State::Closed => assert_eq!(self.conn.poll_timeout(), None),
        }
        if let Some(count) = self.transmits_when_closed {
            assert_eq!(self.wire.transmits, count, "a transmit after Closed");
        }
        if self.closed_unchecked {
            self.closed_unchecked = false;
            self.transmits_when_closed = Some(self.wire.transmits);
            self.check_closed_wire();
        }
        // The 101 goes out with the Open event, so it is checked once.
        if let Some((accept, protocol, header)) = self.accepted.take() {
            let response = self.wire.http.as_ref().expect("accepted, no response sent");
            let response = std::str::from_utf8(response).expect("our 101 is ASCII");
            assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(response.ends_with("\r\n\r\n"));
            assert!(response.contains(&format!("\r\nSec-WebSocket-Accept: {accept}\r\n")));
            if let Some(protocol) = &protocol {
                assert!(response.contains(&format!("\r\nSec-WebSocket-Protocol: {protocol}\r\n")));
            }
            if let Some(header) = &header {
                let value = header.value_str().expect("checked writable");
                assert!(response.contains(&format!("\r\n{}: {value}\r\n", header.name)));
            }
        }
        // Checked incrementally: a byte-at-a-time input drains once per byte.
        for message in &self.wire.messages[self.messages_checked..] {
            assert_eq!(
                Some(message),
                self.sent.get(self.messages_checked),
                "transmitted messages are not the ones sent, in order"
            );
            self.messages_checked += 1;
        }
        for pong in &self.wire.pongs[self.pongs_checked..] {
            let rest = &self.pings_received[self.pings_answered..];
            let Some(at) = rest.iter().position(|ping| ping == pong) else {
                panic!("a pong that answers no ping, or out of order");
            };
            self.pings_answered += at + 1;
            self.pongs_checked += 1;
        }
        if self.wire.close.is_some() {
            self.features.insert("wire:close".into());
        }
    }

    /// The checks on `Closed` that need the transmits: the close code or
    /// HTTP status that went out matches the error.
    fn check_closed_wire(&mut self) {
        let closed = self.closed.clone().expect("closed");
        let sent_close = self.wire.close.clone();
        match &closed.error {
            Some(Error::Protocol(e)) => {
                let frame = sent_close.expect("failed without a close frame");
                if !self.close_queued {
                    let code = frame.map(|f| f.code);
                    assert_eq!(code, Some(e.close_code()), "close frame for {e:?}");
                }
            }
            Some(Error::Request(e)) => {
                assert_eq!(self.wire.status(), Some(e.status()), "response for {e:?}");
                assert_eq!(self.wire.frames, 0);
                if let RequestError::UnsupportedVersion(_) = e {
                    let http = self.wire.http.as_ref().expect("response");
                    assert!(contains(http, b"\r\nSec-WebSocket-Version: 13\r\n"));
                }
            }
            Some(Error::Response(_)) => assert_eq!(self.wire.frames, 0),
            None if closed.clean => assert!(sent_close.is_some(), "clean without our close"),
            None => {
                assert_eq!(self.wire.status(), self.responded);
                assert_eq!(self.wire.frames, 0);
            }
            Some(_) => {}
        }
    }
}

/// Whether the core can write this header (RFC 9110 token name, no control
/// characters in the value), as documented for `InvalidHeader`.
fn header_is_writable(header: &Header) -> bool {
    let token = !header.name.is_empty()
        && header
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value = header
        .value_str()
        .is_some_and(|v| v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
    token && value
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A feature name for an event, without formatting its payload.
fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Request(_) => "event:Request",
        Event::HttpRequest(_) => "event:HttpRequest",
        Event::Open(_) => "event:Open",
        Event::Message(Message::Text(_)) => "event:Message:text",
        Event::Message(Message::Binary(_)) => "event:Message:binary",
        Event::Ping(_) => "event:Ping",
        Event::Pong(_) => "event:Pong",
        Event::CloseReceived(_) => "event:CloseReceived",
        Event::Closed(_) => "event:Closed",
    }
}

/// The variant name of a value's `Debug` form: `Closed`, `InvalidUtf8`, ...
pub(crate) fn variant(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let end = debug.find(['(', '{', ' ']).unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// Our transmitted byte stream, parsed as the peer would parse it.
pub(crate) struct Wire {
    role: Role,
    /// A decoder of the peer's role, with roomy limits: our own frames must
    /// always parse.
    decoder: Decoder,
    /// The handshake message (a request or a response), if sent.
    pub(crate) http: Option<Bytes>,
    pub(crate) transmits: usize,
    pub(crate) frames: usize,
    /// Our close frame, once sent (`Some(None)`: one without a payload).
    pub(crate) close: Option<Option<CloseFrame>>,
    pub(crate) messages: Vec<Message>,
    pub(crate) pings: Vec<Bytes>,
    pub(crate) pongs: Vec<Bytes>,
    /// Bytes transmitted and not yet taken by [`Wire::take_outgoing`].
    outgoing: Vec<u8>,
}

impl Wire {
    fn new(role: Role) -> Self {
        let peer = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        Self {
            role,
            decoder: Decoder::new(peer, &Config::default()),
            http: None,
            transmits: 0,
            frames: 0,
            close: None,
            messages: Vec::new(),
            pings: Vec::new(),
            pongs: Vec::new(),
            outgoing: Vec::new(),
        }
    }

    /// The bytes transmitted since the last call, for a peer to read.
    pub(crate) fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// The status of the HTTP response we sent, for a server.
    pub(crate) fn status(&self) -> Option<u16> {
        let http = self.http.as_ref()?;
        let rest = http.strip_prefix(b"HTTP/1.1 ")?;
        let digits = std::str::from_utf8(rest.get(..3)?).ok()?;
        assert_eq!(rest.get(3), Some(&b' '), "status line");
        digits.parse().ok()
    }

    /// The `Sec-WebSocket-Key` of the request we sent, for a client.
    pub(crate) fn request_key(&self) -> String {
        let http = self.http.as_ref().expect("request sent");
        let text = std::str::from_utf8(http).expect("our request is ASCII");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("our request has a key");
        line.to_owned()
    }

    fn push(&mut self, transmit: Transmit) {
        self.transmits += 1;
        assert!(self.close.is_none(), "a transmit after our close frame");
        let header = transmit.header().to_vec();
        let payload = transmit.payload().clone();
        let bytes = read_buf(transmit, self.transmits);
        assert_eq!(bytes, [&header[..], &payload[..]].concat(), "Buf disagrees");
        if header.is_empty() {
            assert!(
                self.http.is_none() && self.frames == 0,
                "a second handshake message, or one after frames"
            );
            assert!(!payload.is_empty());
            self.http = Some(payload);
            self.outgoing.extend_from_slice(&bytes);
            return;
        }
        self.frames += 1;
        if self.role == Role::Server {
            assert_eq!(self.status(), Some(101), "frames without a 101 response");
        }
        let (parsed, len) = FrameHeader::parse(&header)
            .expect("our header parses")
            .expect("a transmit holds a whole header");
        assert_eq!(len, header.len());
        assert_eq!(parsed.payload_len, payload.len() as u64);
        assert_eq!(parsed.mask.is_some(), self.role == Role::Client, "masking");
        assert_eq!(parsed.rsv, 0);
        let mut input = &bytes[..];
        loop {
            match self.decoder.decode(&mut input) {
                Ok(Some(Decoded::Message(message))) => self.messages.push(message),
                Ok(Some(Decoded::Ping(payload))) => self.pings.push(payload),
                Ok(Some(Decoded::Pong(payload))) => self.pongs.push(payload),
                Ok(Some(Decoded::Close(frame))) => self.close = Some(frame),
                Ok(None) => break,
                Err(error) => panic!("our own output does not parse: {error}"),
            }
        }
        assert!(input.is_empty());
        self.outgoing.extend_from_slice(&bytes);
    }
}

/// Reads a transmit through its `Buf` implementation in small steps, as a
/// driver with partial writes would, checking `chunks_vectored` on the way.
fn read_buf(mut transmit: Transmit, salt: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(transmit.remaining());
    let step = 1 + salt % 7;
    while transmit.has_remaining() {
        // Lengths and addresses only, so that reading a large payload a few
        // bytes at a time stays linear; the bytes are compared once, after.
        let mut slices = [std::io::IoSlice::new(&[]); 2];
        let n = transmit.chunks_vectored(&mut slices);
        let total: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert_eq!(total, transmit.remaining(), "chunks_vectored disagrees");
        let chunk = transmit.chunk();
        assert!(!chunk.is_empty());
        assert_eq!(
            (slices[0].as_ptr(), slices[0].len()),
            (chunk.as_ptr(), chunk.len()),
            "the first slice is not the chunk"
        );
        let take = chunk.len().min(step);
        out.extend_from_slice(&chunk[..take]);
        transmit.advance(take);
    }
    out
}
