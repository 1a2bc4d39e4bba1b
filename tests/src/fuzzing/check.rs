//! [`Checker`]: what a fuzzed connection must do, given what it was asked to
//! do, on top of the rules every connection follows. The driving and those
//! rules are the shared harness's ([`sockeye_core::testing`]): an
//! [`Endpoint`] drains a connection as its contract says and checks its
//! events against the [`Grammar`](sockeye_core::testing::Grammar) and its
//! bytes through [`Wire`](sockeye_core::testing::Wire). This module adds
//! what only the scenario knows: the usage error each call must give, the
//! answer to the request, the messages and pongs that must go out, and the
//! close code or status that must match a failure. [`Checked`] is one
//! endpoint with its checker, driven by a scripted peer.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use sockeye_core::testing::{Endpoint, Output};
use sockeye_core::{
    ClientRequest, CloseCode, Closed, Config, Connection, Error, Event, Handshake, Header,
    MAX_CLOSE_REASON, Message, RequestError, Response, Role, State, UsageError, accept_key,
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
    Any(Header),
}

impl HeaderSpec {
    fn header(&self) -> Header {
        match self {
            Self::Good => Header::new("X-Fuzz", "1"),
            Self::Any(header) => header.clone(),
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

impl Snapshot {
    fn of(conn: &Connection) -> Self {
        Self {
            state: conn.state(),
            buffered_amount: conn.buffered_amount(),
            buffered_input: conn.buffered_input(),
            timeout: conn.poll_timeout(),
        }
    }
}

/// The scenario's expectations of one endpoint. Every call goes through it,
/// and every output the endpoint drained is shown to it.
pub(crate) struct Checker {
    role: Role,
    config: Config,
    last_state: State,
    pending: Option<Pending>,
    /// What the 101 response must say, once `accept` succeeded.
    accepted: Option<(String, Option<String>, Option<Header>)>,
    /// The subprotocol `accept` chose, for the Open event to match.
    accepted_protocol: Option<Option<String>>,
    /// The status and body `respond` sent, once it succeeded.
    responded: Option<(u16, Bytes)>,
    closed: Option<Closed>,
    /// The close checks that need the bytes written first.
    closed_unchecked: bool,
    /// Bytes written when the drain that reported `Closed` ended: none may
    /// follow.
    written_when_closed: Option<usize>,
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
    /// Every event, for targets that compare them.
    pub(crate) events: Vec<Event>,
    /// Milestones reached, for the seed generator.
    pub(crate) features: BTreeSet<String>,
}

impl Checker {
    /// The checker of `endpoint`, which has not been driven yet.
    pub(crate) fn new(endpoint: &Endpoint) -> Self {
        let conn = &endpoint.conn;
        assert_eq!(conn.state(), State::Handshaking);
        Self {
            role: conn.role(),
            config: conn.config().clone(),
            last_state: State::Handshaking,
            pending: None,
            accepted: None,
            accepted_protocol: None,
            responded: None,
            closed: None,
            closed_unchecked: false,
            written_when_closed: None,
            close_queued: false,
            pings_received: Vec::new(),
            pings_answered: 0,
            pongs_checked: 0,
            sent: Vec::new(),
            messages_checked: 0,
            events: Vec::new(),
            features: BTreeSet::new(),
        }
    }

    pub(crate) fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Checks a call's result against the error the documentation predicts,
    /// and that a failed call changed nothing.
    fn expect(
        &mut self,
        conn: &Connection,
        result: Result<(), UsageError>,
        expected: Option<UsageError>,
        before: Snapshot,
    ) {
        match (&result, &expected) {
            (Ok(()), None) => {}
            (Err(got), Some(want)) => {
                assert_eq!(got, want, "wrong usage error");
                assert_eq!(
                    Snapshot::of(conn),
                    before,
                    "a failed call changed the connection"
                );
                self.features.insert(format!("usage:{}", variant(got)));
            }
            _ => panic!("expected {expected:?}, got {result:?}"),
        }
    }

    /// The error `send` must give in the current state.
    fn send_error(conn: &Connection) -> Option<UsageError> {
        match conn.state() {
            State::Handshaking => Some(UsageError::NotOpen),
            State::Open => None,
            State::Closing | State::Closed => Some(UsageError::Closing),
        }
    }

    /// [`Connection::send`]; returns whether it succeeded.
    pub(crate) fn send(&mut self, conn: &mut Connection, now: Instant, message: Message) -> bool {
        let expected = Self::send_error(conn);
        let before = Snapshot::of(conn);
        let result = conn.send(now, message.clone());
        let ok = result.is_ok();
        self.expect(conn, result, expected, before);
        if ok {
            self.features.insert("call:send".into());
            self.sent.push(message);
        }
        ok
    }

    /// [`Connection::ping`]; returns whether it succeeded.
    pub(crate) fn ping(&mut self, conn: &mut Connection, now: Instant, payload: Bytes) -> bool {
        let expected = if payload.len() > 125 {
            Some(UsageError::PingTooLarge(payload.len()))
        } else {
            Self::send_error(conn)
        };
        let before = Snapshot::of(conn);
        let result = conn.ping(now, payload);
        let ok = result.is_ok();
        self.expect(conn, result, expected, before);
        ok
    }

    /// [`Connection::close`].
    pub(crate) fn close(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        code: CloseCode,
        reason: &str,
    ) {
        let expected = if !code.is_valid_on_wire() {
            Some(UsageError::InvalidCloseCode(code.as_u16()))
        } else if reason.len() > MAX_CLOSE_REASON {
            Some(UsageError::CloseReasonTooLong(reason.len()))
        } else {
            Self::send_error(conn)
        };
        let before = Snapshot::of(conn);
        let result = conn.close(now, code, reason);
        let ok = result.is_ok();
        self.expect(conn, result, expected, before);
        if ok {
            self.features.insert("call:close".into());
            self.close_queued = true;
            assert_eq!(conn.state(), State::Closing);
        }
    }

    /// Answers the pending request (a usage error if there is none).
    pub(crate) fn answer(&mut self, conn: &mut Connection, now: Instant, answer: &Answer) {
        let before = Snapshot::of(conn);
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
                let handshake = Handshake {
                    protocol: protocol.clone(),
                    headers: header.iter().cloned().collect(),
                };
                let result = conn.accept(now, handshake);
                let ok = result.is_ok();
                self.expect(conn, result, expected, before);
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
                let body = response.body.clone();
                let result = conn.respond(now, response);
                let ok = result.is_ok();
                self.expect(conn, result, expected, before);
                if ok {
                    self.features.insert(format!("call:respond:{status}"));
                    self.responded = Some((status, body));
                    self.pending = None;
                    assert_eq!(conn.state(), State::Closed);
                }
            }
        }
    }

    /// Whether `events` hold a request waiting for an answer.
    pub(crate) fn has_request(events: &[Event]) -> bool {
        events
            .iter()
            .any(|e| matches!(e, Event::Request(_) | Event::HttpRequest(_)))
    }

    /// Takes in what the endpoint said, then checks the invariants that hold
    /// once it is drained.
    pub(crate) fn observe(&mut self, endpoint: &Endpoint, out: &Output) {
        for event in &out.events {
            self.check_event(&endpoint.conn, event);
            self.events.push(event.clone());
        }
        for action in &out.transport {
            self.features.insert(format!("transport:{action:?}"));
        }
        self.note_state(endpoint.conn.state());
    }

    fn note_state(&mut self, state: State) {
        if state != self.last_state {
            self.features.insert(format!("state:{state:?}"));
        }
        if state == State::Closing {
            // Whoever moved it there queued a close frame.
            self.close_queued = true;
        }
        self.last_state = state;
    }

    fn check_event(&mut self, conn: &Connection, event: &Event) {
        self.note_state(conn.state());
        self.features.insert(event_kind(event).into());
        match event {
            Event::Request(request) | Event::HttpRequest(request) => {
                let upgrade = matches!(event, Event::Request(_));
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
            Event::Open(handshake) => match self.role {
                Role::Server => {
                    let protocol = self
                        .accepted_protocol
                        .as_ref()
                        .expect("Open without accept");
                    assert_eq!(&handshake.protocol, protocol);
                }
                Role::Client => {
                    if let Some(protocol) = &handshake.protocol {
                        assert!(CLIENT_PROTOCOLS.contains(&protocol.as_str()));
                    }
                }
            },
            Event::Message(message) => {
                assert!(message.len() <= self.config.max_message_size);
            }
            Event::Ping(payload) => self.pings_received.push(payload.clone()),
            Event::Pong(_) | Event::Drained => {}
            Event::CloseReceived(_) => self.close_queued = true,
            Event::Closed(closed) => {
                self.check_closed(closed);
                self.closed = Some((**closed).clone());
                self.closed_unchecked = true;
                self.pending = None;
            }
        }
    }

    /// What `Closed` must say beyond the grammar's rules, from what the
    /// scenario did.
    fn check_closed(&mut self, closed: &Closed) {
        self.features.insert(match &closed.error {
            Some(Error::Protocol(e)) => format!("closed:Protocol:{}", variant(e)),
            Some(Error::Request(e)) => format!("closed:Request:{}", variant(e)),
            Some(Error::Response(e)) => format!("closed:Response:{}", variant(e)),
            Some(error) => format!("closed:{}", variant(error)),
            None => format!("closed:clean={}", closed.clean),
        });
        match &closed.error {
            Some(Error::PeerUnresponsive(missed)) => {
                assert_eq!(*missed, self.config.max_missed_pongs);
            }
            // A scripted peer's transport never fails.
            Some(Error::Transport { .. }) => panic!("a transport error: {closed:?}"),
            None if !closed.clean => {
                assert!(self.responded.is_some(), "unclean, no error, no response");
            }
            _ => {}
        }
    }

    /// Invariants that hold once events, writes and the transport action
    /// are drained.
    pub(crate) fn check_quiescent(&mut self, endpoint: &Endpoint) {
        let conn = &endpoint.conn;
        let wire = endpoint.wire();
        let written = wire.written();
        assert_eq!(conn.buffered_amount(), 0, "drained, bytes still queued");
        let transport_closed = endpoint.grammar().is_transport_closed();
        match conn.state() {
            State::Handshaking | State::Closing => assert!(conn.poll_timeout().is_some()),
            State::Open => {}
            // A connection over waits for the peer's end of stream until a
            // deadline, and for nothing once the transport is closed.
            State::Closed => assert_eq!(conn.poll_timeout().is_none(), transport_closed),
        }
        if let Some(count) = self.written_when_closed {
            assert_eq!(written, count, "bytes written after Closed");
        }
        if self.closed_unchecked {
            self.closed_unchecked = false;
            self.written_when_closed = Some(written);
            self.check_closed_wire(endpoint);
        }
        // The 101 goes out with the Open event, so it is checked once.
        if let Some((accept, protocol, header)) = self.accepted.take() {
            let response = wire.head.as_ref().expect("accepted, no response sent");
            let response = std::str::from_utf8(response).expect("our 101 is ASCII");
            assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
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
        for message in &wire.messages[self.messages_checked..] {
            assert_eq!(
                Some(message),
                self.sent.get(self.messages_checked),
                "written messages are not the ones sent, in order"
            );
            self.messages_checked += 1;
        }
        for pong in wire.payloads(0xA).skip(self.pongs_checked) {
            let rest = &self.pings_received[self.pings_answered..];
            let Some(at) = rest.iter().position(|ping| ping == pong) else {
                panic!("a pong that answers no ping, or out of order");
            };
            self.pings_answered += at + 1;
            self.pongs_checked += 1;
        }
        if wire.close().is_some() {
            self.features.insert("wire:close".into());
        }
    }

    /// The checks on `Closed` that need the bytes written: the close code or
    /// HTTP status that went out matches the error.
    fn check_closed_wire(&mut self, endpoint: &Endpoint) {
        let wire = endpoint.wire();
        let closed = self.closed.clone().expect("closed");
        let sent_close = wire.close();
        match &closed.error {
            Some(Error::Protocol(e)) => {
                let frame = sent_close.expect("failed without a close frame");
                if !self.close_queued {
                    let code = frame
                        .payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]));
                    assert_eq!(code, Some(e.close_code().as_u16()), "close frame for {e:?}");
                }
            }
            Some(Error::Request(e)) => {
                assert_eq!(wire.status(), Some(e.status()), "response for {e:?}");
                // The core's refusal says how long its body is: that, and
                // nothing after it (no frames).
                let head = wire.head.as_deref().expect("a response");
                let length = content_length(head).expect("a Content-Length");
                assert_eq!(wire.body.len(), length, "the body, and nothing after it");
                if let RequestError::UnsupportedVersion(_) = e {
                    let head = wire.head.as_ref().expect("response");
                    assert!(contains(head, b"\r\nSec-WebSocket-Version: 13\r\n"));
                }
            }
            Some(Error::Response(_)) => assert!(wire.frames.is_empty()),
            None if closed.clean => assert!(sent_close.is_some(), "clean without our close"),
            None => {
                let (status, body) = self.responded.as_ref().expect("responded");
                assert_eq!(wire.status(), Some(*status));
                assert_eq!(wire.body, body[..], "the body, and nothing after it");
            }
            Some(_) => {}
        }
    }
}

/// One connection under test, with its checker, driven by a scripted peer:
/// every method performs one input or call, then drains the outputs.
pub(crate) struct Checked {
    pub(crate) endpoint: Endpoint,
    pub(crate) checker: Checker,
    now: Instant,
    /// How to answer a request as soon as it is polled, if at all.
    pub(crate) auto_answer: Option<Answer>,
}

impl Checked {
    /// A server connection.
    pub(crate) fn server(config: Config, now: Instant) -> Self {
        Self::new(Endpoint::server(config, now), now)
    }

    /// A client connection sending [`client_request`]; its request is
    /// drained at once.
    pub(crate) fn client(config: Config, seed: u64, now: Instant) -> Self {
        let conn = Connection::client(client_request(), config, seed, now)
            .expect("the fuzz config and request are valid");
        let mut checked = Self::new(Endpoint::new(conn), now);
        checked.drain();
        let request = checked.endpoint.wire().head.as_ref();
        let request = request.expect("a client sends its request first");
        assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
        checked
    }

    fn new(endpoint: Endpoint, now: Instant) -> Self {
        Self {
            checker: Checker::new(&endpoint),
            endpoint,
            now,
            auto_answer: None,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.endpoint.conn.state()
    }

    pub(crate) fn config(&self) -> &Config {
        self.endpoint.conn.config()
    }

    pub(crate) fn events(&self) -> &[Event] {
        &self.checker.events
    }

    /// The `Sec-WebSocket-Key` of the request a client sent.
    pub(crate) fn request_key(&self) -> String {
        request_key(self.endpoint.wire().head.as_ref().expect("request sent"))
    }

    /// Received bytes, then drain.
    pub(crate) fn input(&mut self, data: &[u8]) {
        self.endpoint.conn.handle_input(self.now, data);
        self.drain();
    }

    /// Received bytes as a driver reads them: into the payload buffer while
    /// the connection offers room, and otherwise [`read_size`] bytes at a
    /// time through [`input`](Self::input), draining after each read.
    ///
    /// [`read_size`]: sockeye_core::Connection::read_size
    pub(crate) fn read(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Some(room) = self.endpoint.conn.payload_buffer() {
                let n = room.len().min(data.len());
                for (slot, byte) in room.iter_mut().zip(&data[..n]) {
                    slot.write(*byte);
                }
                // SAFETY: the loop above wrote the first `n` bytes of `room`.
                unsafe { self.endpoint.conn.handle_payload_read(self.now, n) };
                data = &data[n..];
                self.checker.features.insert("input:payload_buffer".into());
                self.drain();
                continue;
            }
            let n = self.endpoint.conn.read_size(data.len());
            if n < data.len() {
                self.checker
                    .features
                    .insert("input:read_size_limited".into());
            }
            self.input(&data[..n]);
            data = &data[n..];
        }
    }

    /// The peer stopped sending, then drain.
    pub(crate) fn eof(&mut self) {
        self.endpoint.conn.handle_eof(self.now);
        self.checker.features.insert("input:eof".into());
        self.drain();
    }

    /// Moves the clock forward by `by` and fires the timer, then drains.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.endpoint.conn.handle_timeout(self.now);
        self.drain();
    }

    /// Moves the clock to the connection's own deadline, if it has one and
    /// it is ahead, and fires the timer.
    pub(crate) fn fire_deadline(&mut self) {
        if let Some(deadline) = self.endpoint.conn.poll_timeout() {
            self.now = self.now.max(deadline);
        }
        self.endpoint.conn.handle_timeout(self.now);
        self.drain();
    }

    /// [`Connection::send`], then drain.
    pub(crate) fn send(&mut self, message: Message) {
        self.checker
            .send(&mut self.endpoint.conn, self.now, message);
        self.drain();
    }

    /// [`Connection::ping`], then drain.
    pub(crate) fn ping(&mut self, payload: Bytes) {
        self.checker
            .ping(&mut self.endpoint.conn, self.now, payload);
        self.drain();
    }

    /// [`Connection::close`], then drain.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        self.checker
            .close(&mut self.endpoint.conn, self.now, code, reason);
        self.drain();
    }

    /// Answers the pending request (a usage error if there is none), then
    /// drains.
    pub(crate) fn answer(&mut self, answer: &Answer) {
        self.checker
            .answer(&mut self.endpoint.conn, self.now, answer);
        self.drain();
    }

    /// Drains as the contract says, answering a request as `auto_answer`
    /// says as soon as it is polled, then checks the invariants that hold
    /// between inputs.
    fn drain(&mut self) {
        let events = self.endpoint.events();
        let request = Checker::has_request(&events);
        let polled = Output {
            events,
            ..Output::default()
        };
        self.checker.observe(&self.endpoint, &polled);
        if request && let Some(answer) = self.auto_answer.clone() {
            self.checker
                .answer(&mut self.endpoint.conn, self.now, &answer);
        }
        let out = self.endpoint.drain(self.now);
        self.checker.observe(&self.endpoint, &out);
        self.checker.check_quiescent(&self.endpoint);
    }
}

/// The `Sec-WebSocket-Key` of a request head.
pub(crate) fn request_key(head: &[u8]) -> String {
    let text = std::str::from_utf8(head).expect("our request is ASCII");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("our request has a key");
    line.to_owned()
}

/// The `Content-Length` of an HTTP head we wrote.
fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .parse()
        .ok()
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
        Event::Drained => "event:Drained",
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
