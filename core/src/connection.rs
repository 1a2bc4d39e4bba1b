//! [`Connection`]: one WebSocket connection as a deterministic state machine.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
use crate::config::Config;
use crate::error::{Error, ProtocolError, RequestError, ResponseError, UsageError};
use crate::event::{Closed, Event, TransportAction};
use crate::frame::{Decoded, Decoder, Role};
use crate::handshake::{
    ClientHandshake, ClientRequest, Handshake, Header, RequestOutcome, Response, ResponseOutcome,
    find_head_end, parse_request,
};
use crate::message::Message;
use crate::outbox::Outbox;
use crate::random::SplitMix64;

/// Where a connection is in its life. It only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// The HTTP upgrade is in progress.
    Handshaking,
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received; the handshake is finishing.
    Closing,
    /// Over for the application. The transport is still being wound down:
    /// keep driving until [`Connection::poll_transport`] says
    /// [`TransportAction::Close`].
    Closed,
}

/// The handshake phase, boxed so an open connection does not carry it.
#[derive(Debug)]
enum Opening {
    /// Server: reading the request head.
    ReadingRequest { head: BytesMut, searched: usize },
    /// Server: the application must answer. `accept` is the
    /// `Sec-WebSocket-Accept` value, absent for a plain HTTP request.
    AwaitingAnswer {
        accept: Option<String>,
        protocols: Vec<String>,
        early: BytesMut,
    },
    /// Client: reading the response head.
    ReadingResponse {
        head: BytesMut,
        searched: usize,
        expect: ClientHandshake,
    },
    /// Client: reading the body of a refusal.
    ReadingRefusal {
        status: u16,
        reason: String,
        headers: Vec<Header>,
        body: BytesMut,
        body_len: usize,
    },
}

/// How the transport ends, once the connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// The connection is not over.
    Running,
    /// Write what is queued (until `deadline`); then close if the peer has
    /// ended its side, or half-close and linger.
    Flush { deadline: Option<Instant> },
    /// Half-closed: read and discard until the peer's end of stream or
    /// `deadline`, so that closing does not reset the connection under the
    /// last bytes written.
    Linger { deadline: Option<Instant> },
    /// Close the transport at once.
    Close,
    /// The driver was told to close.
    Done,
}

/// How a connection that is over lets go of its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Write what is queued, then half-close and linger (or close, once the
    /// peer has ended its side): the peer should read our last bytes.
    Graceful,
    /// Drop what is queued and close: the transport failed, the peer stopped
    /// responding, or there is nothing left for it to read.
    Abort,
}

/// One WebSocket connection, client or server, with no I/O of its own.
///
/// The caller owns the transport and the clock. It feeds in what happens
/// and takes out what to do:
///
/// * **Inputs**: [`handle_input`](Self::handle_input) for received bytes,
///   [`handle_eof`](Self::handle_eof) when the peer stops sending,
///   [`handle_transport_error`](Self::handle_transport_error) when the
///   transport fails, [`handle_written`](Self::handle_written) for bytes the
///   transport took, [`handle_timeout`](Self::handle_timeout) when the
///   deadline from [`poll_timeout`](Self::poll_timeout) passes, and the
///   application's calls: [`accept`](Self::accept),
///   [`respond`](Self::respond), [`send`](Self::send), [`ping`](Self::ping)
///   and [`close`](Self::close). Every one that can start or move a timer
///   takes `now`.
/// * **Outputs**: [`poll_event`](Self::poll_event) (what happened, for the
///   application), [`poll_transmit`](Self::poll_transmit) (bytes to write),
///   [`poll_transport`](Self::poll_transport) (when to half-close or close
///   the transport) and [`poll_timeout`](Self::poll_timeout) (when to call
///   `handle_timeout`).
///
/// **After every input, drain the outputs, in this order**:
///
/// 1. `poll_event` until it returns `None`; reacting to an event may queue
///    more output;
/// 2. `poll_transmit`, write what it offers, and report what the transport
///    took with `handle_written`, until it offers nothing or the transport
///    is full (then write again when the transport can take more);
/// 3. `poll_transport`, and do what it says;
/// 4. re-arm the one timer with `poll_timeout`.
///
/// Keep reading and driving after [`Event::Closed`], which ends the
/// connection for the application: the transport is done only at
/// [`TransportAction::Close`]. The core decides how it ends (a half-close
/// and a bounded wait for the peer's end of stream after it has been sent a
/// close frame or an HTTP response, at once after a transport failure), so
/// every driver ends connections the same way. The same inputs always
/// produce the same outputs.
///
/// # Writing and backpressure
///
/// The core owns the whole outbound path. Messages wait in protocol order
/// (the handshake, control frames, data, the close frame); `poll_transmit`
/// frames the front of it into the slices the driver offers, and only as
/// much as they and one write's worth hold, so a pong or the reply to a
/// close goes ahead of data not offered yet. While more than
/// [`Config::write_buffer_high_water`] bytes wait,
/// [`is_backpressured`](Self::is_backpressured) is true; an application
/// that holds further sends meanwhile resumes at [`Event::Drained`]. A
/// queue of its own in front of `send` (such as the hub's, with its
/// priorities) moves its next message into the connection only while
/// `is_backpressured` is false, so its backlog builds up where its own
/// policy applies.
///
/// # Example: a client and a server wired together in memory
///
/// ```
/// use std::io::IoSlice;
/// use std::time::Instant;
/// use sockeye_core::{ClientRequest, CloseCode, Config, Connection, Event, Handshake, Message};
///
/// let now = Instant::now();
/// let mut server = Connection::server(Config::default(), now).unwrap();
/// let request = ClientRequest::new("localhost", 9001, "/chat");
/// let mut client = Connection::client(request, Config::default(), 42, now).unwrap();
///
/// // Move every pending byte from one side to the other.
/// fn pump(from: &mut Connection, to: &mut Connection, now: Instant) {
///     loop {
///         let mut slices = [IoSlice::new(&[]); 16];
///         let n = from.poll_transmit(&mut slices);
///         if n == 0 {
///             return;
///         }
///         let mut written = 0;
///         for slice in &slices[..n] {
///             to.handle_input(now, slice);
///             written += slice.len();
///         }
///         from.handle_written(now, written);
///     }
/// }
///
/// pump(&mut client, &mut server, now);
/// let Some(Event::Request(request)) = server.poll_event() else { panic!() };
/// assert_eq!(request.path, "/chat");
/// server.accept(now, Handshake::default()).unwrap();
/// assert!(matches!(server.poll_event(), Some(Event::Open(_))));
///
/// pump(&mut server, &mut client, now);
/// assert!(matches!(client.poll_event(), Some(Event::Open(_))));
///
/// client.send(now, Message::text("hello")).unwrap();
/// pump(&mut client, &mut server, now);
/// assert_eq!(server.poll_event(), Some(Event::Message(Message::text("hello"))));
///
/// server.close(now, CloseCode::NORMAL, "bye").unwrap();
/// pump(&mut server, &mut client, now);
/// pump(&mut client, &mut server, now);
/// assert!(matches!(server.poll_event(), Some(Event::CloseReceived(_))));
/// let Some(Event::Closed(closed)) = server.poll_event() else { panic!() };
/// assert!(closed.clean);
/// // The server half-closes first (RFC 6455 §7.1.1) and waits for the
/// // client's end of stream, which comes once the client has seen ours.
/// use sockeye_core::TransportAction;
/// assert_eq!(server.poll_transport(), Some(TransportAction::HalfClose));
/// client.handle_eof(now);
/// assert!(matches!(client.poll_event(), Some(Event::CloseReceived(_))));
/// assert!(matches!(client.poll_event(), Some(Event::Closed(_))));
/// assert_eq!(client.poll_transport(), Some(TransportAction::Close));
/// server.handle_eof(now);
/// assert_eq!(server.poll_transport(), Some(TransportAction::Close));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    state: State,
    config: Config,
    handshake: Option<Box<Opening>>,
    decoder: Decoder,
    outbox: Outbox,
    events: VecDeque<Event>,
    /// The latest time passed in; sends are stamped with it.
    now: Instant,
    /// The handshake or close-handshake deadline.
    deadline: Option<Instant>,
    /// When the peer last sent anything.
    last_seen: Instant,
    /// Pings sent since then.
    missed_pongs: u32,
    /// When a data message last went either way.
    last_data: Instant,
    close_sent: bool,
    close_received: Option<CloseFrame>,
    /// Received bytes not decoded yet. Decoding pauses after each message
    /// until the application has polled it, so that what it sends in
    /// reaction goes out before anything a later frame causes (a failure's
    /// close frame, say).
    unread: BytesMut,
    /// The peer has ended its sending side.
    eof: bool,
    teardown: Teardown,
}

impl Connection {
    /// A server connection, waiting for the client's upgrade request. The
    /// handshake timeout starts at `now`.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, State};
    /// let server = Connection::server(Config::default(), Instant::now()).unwrap();
    /// assert_eq!(server.state(), State::Handshaking);
    /// ```
    pub fn server(config: Config, now: Instant) -> Result<Self, UsageError> {
        config.validate()?;
        let handshake = Opening::ReadingRequest {
            head: BytesMut::new(),
            searched: 0,
        };
        Ok(Self::new(
            Role::Server,
            config,
            Some(handshake),
            SplitMix64::new(0),
            now,
        ))
    }

    /// A client connection. Its upgrade request is the first transmit.
    ///
    /// `seed` drives the `Sec-WebSocket-Key` and the masking keys; drivers
    /// take it from the OS, and tests fix it to replay a run exactly.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{ClientRequest, Config, Connection};
    /// let request = ClientRequest::new("example.com", 80, "/socket").protocol("v1");
    /// let mut client = Connection::client(request, Config::default(), 7, Instant::now()).unwrap();
    /// let mut slices = [std::io::IoSlice::new(&[]); 4];
    /// assert_eq!(client.poll_transmit(&mut slices), 1);
    /// assert!(slices[0].starts_with(b"GET /socket HTTP/1.1\r\nHost: example.com\r\n"));
    /// ```
    pub fn client(
        request: ClientRequest,
        config: Config,
        seed: u64,
        now: Instant,
    ) -> Result<Self, UsageError> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let mut key = [0u8; 16];
        rng.fill(&mut key);
        let (bytes, expect) = request.encode(key)?;
        let handshake = Opening::ReadingResponse {
            head: BytesMut::new(),
            searched: 0,
            expect,
        };
        let mut connection = Self::new(Role::Client, config, Some(handshake), rng, now);
        connection.outbox.push_handshake(bytes);
        Ok(connection)
    }

    /// A connection whose HTTP upgrade was done elsewhere: by hyper or axum,
    /// say, which answered the request with a 101 carrying
    /// [`accept_key`](crate::accept_key). It starts [`State::Open`] and
    /// reports no [`Event::Open`]: the first input is frame bytes.
    ///
    /// `seed` drives the masking keys of a client; a server ignores it.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, Event, Message, Role, State};
    /// let now = Instant::now();
    /// let mut server = Connection::upgraded(Role::Server, Config::default(), 0, now).unwrap();
    /// assert_eq!(server.state(), State::Open);
    /// // A masked text frame "Hi" from the client.
    /// server.handle_input(now, &[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
    /// assert_eq!(server.poll_event(), Some(Event::Message(Message::text("Hi"))));
    /// ```
    pub fn upgraded(
        role: Role,
        config: Config,
        seed: u64,
        now: Instant,
    ) -> Result<Self, UsageError> {
        config.validate()?;
        let mut connection = Self::new(role, config, None, SplitMix64::new(seed), now);
        connection.state = State::Open;
        connection.deadline = None;
        Ok(connection)
    }

    fn new(
        role: Role,
        config: Config,
        handshake: Option<Opening>,
        rng: SplitMix64,
        now: Instant,
    ) -> Self {
        Self {
            role,
            state: State::Handshaking,
            decoder: Decoder::new(role, &config),
            outbox: Outbox::new(role, rng, config.fragment_size),
            deadline: now.checked_add(config.handshake_timeout),
            config,
            handshake: handshake.map(Box::new),
            events: VecDeque::new(),
            now,
            last_seen: now,
            missed_pongs: 0,
            last_data: now,
            close_sent: false,
            close_received: None,
            unread: BytesMut::new(),
            eof: false,
            teardown: Teardown::Running,
        }
    }

    /// The latest time passed in.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The settings it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes waiting to be written: the payloads of what was sent and not
    /// yet offered by [`poll_transmit`](Self::poll_transmit), and the framed
    /// bytes (headers included) offered and not yet reported written.
    pub fn buffered_amount(&self) -> usize {
        self.outbox.buffered()
    }

    /// Whether more than [`Config::write_buffer_high_water`] bytes wait to
    /// be written. An application (or a queue in front of the connection)
    /// should hold further sends until [`Event::Drained`]; the core itself
    /// queues whatever it is given.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, Event, Message, Role};
    ///
    /// let now = Instant::now();
    /// let config = Config { write_buffer_high_water: 1000, ..Config::default() };
    /// let mut server = Connection::upgraded(Role::Server, config, 0, now)?;
    /// server.send(now, Message::binary(vec![0; 1500]))?;
    /// assert!(server.is_backpressured());
    ///
    /// // The transport takes 600 bytes of the frame: 904 are left.
    /// let mut slices = [std::io::IoSlice::new(&[]); 4];
    /// server.poll_transmit(&mut slices);
    /// server.handle_written(now, 600);
    /// assert!(!server.is_backpressured());
    /// assert_eq!(server.poll_event(), Some(Event::Drained));
    /// # Ok::<(), sockeye_core::UsageError>(())
    /// ```
    pub fn is_backpressured(&self) -> bool {
        self.outbox.buffered() > self.config.write_buffer_high_water
    }

    /// Received bytes held for an incomplete request, response, frame or
    /// message, or not decoded yet.
    ///
    /// Once [`poll_event`](Self::poll_event) has returned `None` it is at most
    /// twice `max_handshake_size` during the handshake, and at most
    /// `max_message_size` plus one control frame header and payload after it.
    /// Between [`handle_input`](Self::handle_input) and that drain it can
    /// also hold the part of that input past the first message, which is
    /// decoded as the events are polled. A driver that feeds input without
    /// draining events makes both this and the event queue grow.
    pub fn buffered_input(&self) -> usize {
        let handshake = match self.handshake.as_deref() {
            Some(Opening::ReadingRequest { head, .. } | Opening::ReadingResponse { head, .. }) => {
                head.len()
            }
            Some(Opening::AwaitingAnswer { early, .. }) => early.len(),
            Some(Opening::ReadingRefusal { body, .. }) => body.len(),
            None => 0,
        };
        handshake + self.unread.len() + self.decoder.buffered()
    }

    // ---- inputs -------------------------------------------------------

    /// Feeds bytes received from the transport. Any chunking works. Once the
    /// connection is [`Closed`](State::Closed), input is read only to be
    /// discarded (see [`TransportAction`]).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        match self.state {
            State::Handshaking => self.handshake_input(data),
            State::Open | State::Closing => self.frame_input(data),
            State::Closed => {}
        }
    }

    /// How many bytes the next read into the caller's own buffer (for
    /// [`handle_input`](Self::handle_input)) should ask for, out of the
    /// `capacity` that buffer has.
    ///
    /// All of it, as a rule: one read takes in many frames. But when the
    /// peer's last data frame was large (64 KiB or more), its next one
    /// likely is too, so only the rest of the frame in progress and
    /// [`Config::read_buffer_size`] more: enough for the next header, after
    /// which [`payload_buffer`](Self::payload_buffer) takes the payload
    /// straight into its message buffer. A full read would bring up to
    /// `capacity` bytes of that payload through the caller's buffer, to be
    /// copied again; at 1 MiB messages and a 256 KiB buffer, that copy was a
    /// third of the server's unmasking time.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, Role};
    ///
    /// let now = Instant::now();
    /// let config = Config::default();
    /// let mut client = Connection::upgraded(Role::Client, config.clone(), 7, now).unwrap();
    /// assert_eq!(client.read_size(256 * 1024), 256 * 1024);
    ///
    /// // A whole unmasked binary frame of 64 KiB.
    /// let mut frame = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
    /// frame.resize(frame.len() + 64 * 1024, 0);
    /// client.handle_input(now, &frame);
    /// assert!(client.poll_event().is_some());
    /// assert_eq!(client.read_size(256 * 1024), config.read_buffer_size);
    /// ```
    pub fn read_size(&self, capacity: usize) -> usize {
        self.decoder.read_size(capacity)
    }

    /// Room for the next read from the transport, when what comes next is
    /// the payload of a large data frame: reading it here, straight into the
    /// message buffer, saves the copy from a buffer of the driver's that
    /// [`handle_input`](Self::handle_input) makes. Pass the count to
    /// [`handle_payload_read`](Self::handle_payload_read).
    ///
    /// `None` when that does not apply: between frames, in control frames,
    /// when the frame has less than [`Config::read_buffer_size`] bytes to
    /// come, and while earlier input is still waiting to be decoded. Read
    /// into your own buffer then. The room never reaches past the frame, so
    /// a read cannot take in the next frame; an end of stream still goes to
    /// [`handle_eof`](Self::handle_eof).
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, Event, Message, Role};
    ///
    /// let now = Instant::now();
    /// let mut client = Connection::upgraded(Role::Client, Config::default(), 7, now).unwrap();
    /// // An unmasked binary frame of 32 KiB, of which only the header is in.
    /// client.handle_input(now, &[0x82, 126, 0x80, 0x00]);
    /// while let Some(room) = client.payload_buffer() {
    ///     // A transport read would fill some of `room`; this fills it all.
    ///     room.fill(MaybeUninit::new(7));
    ///     let n = room.len();
    ///     // SAFETY: the first `n` bytes of `room` were just written.
    ///     unsafe { client.handle_payload_read(now, n) };
    /// }
    /// assert!(matches!(
    ///     client.poll_event(),
    ///     Some(Event::Message(Message::Binary(payload))) if payload.len() == 32 * 1024
    /// ));
    /// ```
    pub fn payload_buffer(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        let reading = matches!(self.state, State::Open | State::Closing)
            && self.close_received.is_none()
            && self.unread.is_empty();
        if reading {
            self.decoder.payload_spare()
        } else {
            None
        }
    }

    /// Takes `n` bytes read into the start of the room that
    /// [`payload_buffer`](Self::payload_buffer) offered, as
    /// [`handle_input`](Self::handle_input) would take them.
    ///
    /// # Safety
    ///
    /// Those `n` bytes have been written, as a read into them does, and
    /// nothing else was called on this connection since `payload_buffer`.
    ///
    /// # Panics
    ///
    /// If `n` is longer than that room, or `payload_buffer` offered none.
    pub unsafe fn handle_payload_read(&mut self, now: Instant, n: usize) {
        self.now = now;
        if n == 0 {
            return;
        }
        self.heard_from_peer();
        // SAFETY: the caller's promise, passed on: `payload_buffer` handed
        // out the decoder's `payload_spare`, and `n` of it is written.
        match unsafe { self.decoder.commit_payload(n) } {
            Ok(Some(item)) => self.on_decoded(item),
            Ok(None) => {}
            Err(error) => self.fail(error),
        }
    }

    /// The peer closed its sending side (TCP FIN, or the stream ended).
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.eof = true;
        // What arrived before the end still counts, in order.
        while !self.unread.is_empty()
            && self.state != State::Closed
            && self.close_received.is_none()
        {
            self.decode_unread();
        }
        match self.state {
            State::Closed => {
                if let Teardown::Linger { .. } = self.teardown {
                    self.teardown = Teardown::Close;
                }
            }
            State::Handshaking => match self.handshake.as_deref_mut() {
                // The client half-closed after its request; it may still
                // read the answer.
                Some(Opening::AwaitingAnswer { .. }) => {}
                Some(Opening::ReadingRefusal { .. }) => self.finish_refusal(),
                Some(Opening::ReadingResponse { .. }) => {
                    self.fail_handshake(ResponseError::Eof.into())
                }
                _ => self.fail_handshake(Error::UnexpectedEof),
            },
            State::Open | State::Closing => match self.close_received.take() {
                // A client waits for exactly this after the close frames.
                Some(frame) => self.finish(frame.code, frame.reason, true, None, End::Graceful),
                None => self.finish(
                    CloseCode::ABNORMAL,
                    String::new(),
                    false,
                    Some(Error::UnexpectedEof),
                    End::Graceful,
                ),
            },
        }
    }

    /// The transport failed: a read or a write returned an error (a reset,
    /// a broken pipe). An open connection ends with [`Event::Closed`], code
    /// [`CloseCode::ABNORMAL`] and [`Error::Transport`]; one that was over
    /// already stops waiting for its transport. Either way,
    /// [`poll_transport`](Self::poll_transport) says
    /// [`TransportAction::Close`] next.
    ///
    /// ```
    /// use std::time::Instant;
    /// use sockeye_core::{CloseCode, Config, Connection, Error, Event, Role, TransportAction};
    ///
    /// let now = Instant::now();
    /// let mut server = Connection::upgraded(Role::Server, Config::default(), 0, now)?;
    /// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// server.handle_transport_error(now, &reset);
    /// let Some(Event::Closed(closed)) = server.poll_event() else { panic!() };
    /// assert_eq!(closed.code, CloseCode::ABNORMAL);
    /// assert!(matches!(closed.error, Some(Error::Transport { kind: std::io::ErrorKind::ConnectionReset, .. })));
    /// assert_eq!(server.poll_transport(), Some(TransportAction::Close));
    /// # Ok::<(), sockeye_core::UsageError>(())
    /// ```
    pub fn handle_transport_error(&mut self, now: Instant, error: &std::io::Error) {
        self.now = now;
        if self.state == State::Closed {
            if self.teardown != Teardown::Done {
                self.outbox.clear();
                self.teardown = Teardown::Close;
            }
            return;
        }
        let error = Error::Transport {
            kind: error.kind(),
            message: error.to_string(),
        };
        self.handshake = None;
        self.finish(
            CloseCode::ABNORMAL,
            String::new(),
            false,
            Some(error),
            End::Abort,
        );
    }

    /// Handles the deadline from [`poll_timeout`](Self::poll_timeout). Early
    /// or repeated calls are harmless. Deadlines that would overflow
    /// `Instant` count as never.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.state {
            State::Handshaking if self.deadline.is_some_and(|d| now >= d) => match self.role {
                Role::Server => self.refuse(RequestError::Timeout),
                // The status is known; report it with the body so far.
                Role::Client
                    if matches!(
                        self.handshake.as_deref(),
                        Some(Opening::ReadingRefusal { .. })
                    ) =>
                {
                    self.finish_refusal();
                }
                Role::Client => self.fail_handshake(ResponseError::Timeout.into()),
            },
            State::Open => {
                if self.heartbeat_due().is_some_and(|d| now >= d) {
                    if self.missed_pongs >= self.config.max_missed_pongs {
                        let error = Error::PeerUnresponsive(self.missed_pongs);
                        let code = CloseCode::ABNORMAL;
                        self.finish(code, String::new(), false, Some(error), End::Abort);
                        return;
                    }
                    self.missed_pongs += 1;
                    self.outbox.push_ping(Bytes::new());
                    // The peer has gone quiet: give back the read buffers.
                    self.decoder.release_buffers();
                    self.outbox.release_buffers();
                    if self.events.is_empty() {
                        self.events = VecDeque::new();
                    }
                }
                if self.idle_due().is_some_and(|d| now >= d) {
                    self.start_close(CloseCode::GOING_AWAY, "idle timeout");
                }
            }
            // A client that has waited long enough for the server to close
            // TCP closes it itself (§7.1.1); a peer that never answered our
            // close is not waited for any longer either.
            State::Closing if self.deadline.is_some_and(|d| now >= d) => {
                match self.close_received.take() {
                    Some(frame) => self.finish(frame.code, frame.reason, true, None, End::Abort),
                    None => self.finish(
                        CloseCode::ABNORMAL,
                        String::new(),
                        false,
                        Some(Error::CloseTimeout),
                        End::Abort,
                    ),
                }
            }
            State::Closed => match self.teardown {
                Teardown::Flush { deadline } | Teardown::Linger { deadline }
                    if deadline.is_some_and(|d| now >= d) =>
                {
                    self.outbox.clear();
                    self.teardown = Teardown::Close;
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Server: accepts the upgrade request from [`Event::Request`]. The 101
    /// response is queued and [`Event::Open`] follows, with `handshake`;
    /// bytes the client sent after its request are processed now. The
    /// heartbeat starts at `now`: an application may take its time to
    /// decide (check a token, say) without the peer's silence counting.
    pub fn accept(&mut self, now: Instant, handshake: Handshake) -> Result<(), UsageError> {
        let Some(Opening::AwaitingAnswer {
            accept: Some(key),
            protocols,
            ..
        }) = self.handshake.as_deref()
        else {
            return Err(UsageError::NoPendingRequest);
        };
        let response = handshake.encode(key, protocols)?;
        let Some(Opening::AwaitingAnswer { early, .. }) = self.handshake.take().map(|h| *h) else {
            unreachable!("checked above");
        };
        self.now = now;
        self.outbox.push_handshake(response);
        self.open(handshake);
        self.frame_input(&early);
        if self.eof {
            self.handle_eof(now);
        }
        Ok(())
    }

    /// Server: answers the pending request with a plain HTTP response: a
    /// refusal of an [`Event::Request`], or the answer to an
    /// [`Event::HttpRequest`]. [`Event::Closed`] follows, and the transport
    /// is wound down once the response is written (see
    /// [`poll_transport`](Self::poll_transport)); the wait for the client
    /// to close its side runs from `now`.
    pub fn respond(&mut self, now: Instant, response: Response) -> Result<(), UsageError> {
        if !matches!(
            self.handshake.as_deref(),
            Some(Opening::AwaitingAnswer { .. })
        ) {
            return Err(UsageError::NoPendingRequest);
        }
        let bytes = response.encode()?;
        self.now = now;
        self.handshake = None;
        self.outbox.push_handshake(bytes);
        let code = CloseCode::ABNORMAL;
        self.finish(code, String::new(), false, None, End::Graceful);
        Ok(())
    }

    /// Queues a message. Large messages are split into frames of
    /// [`Config::fragment_size`]; pings, pongs and a close can go out between
    /// the fragments.
    ///
    /// `now` restarts the [idle timer](Config::idle_timeout): a connection
    /// that only sends is not idle.
    pub fn send(&mut self, now: Instant, message: Message) -> Result<(), UsageError> {
        self.check_can_send()?;
        self.now = now;
        self.last_data = now;
        self.outbox.push_message(message);
        Ok(())
    }

    /// Queues a ping with up to 125 bytes of payload. [`Event::Pong`] brings
    /// the answer. The heartbeat pings on its own; this is for an
    /// application that probes the peer itself.
    pub fn ping(&mut self, now: Instant, payload: Bytes) -> Result<(), UsageError> {
        if payload.len() > 125 {
            return Err(UsageError::PingTooLarge(payload.len()));
        }
        self.check_can_send()?;
        self.now = now;
        self.outbox.push_ping(payload);
        Ok(())
    }

    /// Starts the close handshake. Messages queued earlier go out first; then
    /// the close frame, and nothing after it.
    ///
    /// When the peer closes first, the reply goes out at once, and messages
    /// still queued are dropped: the peer has said it is done.
    ///
    /// The [close timeout](Config::close_timeout) runs from `now`, not from
    /// the last input, which may be long past on a quiet connection.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        if !code.is_valid_on_wire() {
            return Err(UsageError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(UsageError::CloseReasonTooLong(reason.len()));
        }
        self.check_can_send()?;
        self.now = now;
        self.start_close(code, reason);
        Ok(())
    }

    // ---- outputs ------------------------------------------------------

    /// Fills `slices` with the bytes to write next, and returns how many it
    /// filled: frame headers and payloads as they are (a payload is never
    /// copied to join its header), small frames in a row copied into one
    /// slice. `0` when nothing waits. Write them with one vectored write,
    /// then report what the transport took with
    /// [`handle_written`](Self::handle_written); what it did not take is
    /// offered again, first.
    ///
    /// Only as much is framed as `slices` and one write's worth (256 KiB)
    /// hold; the rest waits in protocol order, where a pong, a ping or the
    /// reply to the peer's close can still go ahead of queued data.
    ///
    /// ```
    /// use std::io::IoSlice;
    /// use std::time::Instant;
    /// use sockeye_core::{Config, Connection, Message, Role};
    ///
    /// let now = Instant::now();
    /// let mut server = Connection::upgraded(Role::Server, Config::default(), 0, now)?;
    /// server.send(now, Message::text("one"))?;
    /// server.send(now, Message::text("two"))?;
    /// let mut wire = Vec::new();
    /// loop {
    ///     let mut slices = [IoSlice::new(&[]); 8];
    ///     let n = server.poll_transmit(&mut slices);
    ///     if n == 0 {
    ///         break;
    ///     }
    ///     // A transport that takes at most 7 bytes per vectored write.
    ///     let mut room = 7;
    ///     for slice in &slices[..n] {
    ///         let take = slice.len().min(room);
    ///         wire.extend_from_slice(&slice[..take]);
    ///         room -= take;
    ///     }
    ///     server.handle_written(now, 7 - room);
    /// }
    /// assert_eq!(wire, b"\x81\x03one\x81\x03two");
    /// # Ok::<(), sockeye_core::UsageError>(())
    /// ```
    pub fn poll_transmit<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        self.outbox.poll_transmit(slices)
    }

    /// The transport took `n` bytes of what
    /// [`poll_transmit`](Self::poll_transmit) offered. Bringing the bytes
    /// waiting to the high-water mark or below queues [`Event::Drained`];
    /// writing the last bytes of a connection that is over lets
    /// [`poll_transport`](Self::poll_transport) half-close, and the wait for
    /// the peer's end of stream runs from `now`.
    ///
    /// # Panics
    ///
    /// If `n` is more than was offered.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        self.now = now;
        let high_water = self.config.write_buffer_high_water;
        let before = self.outbox.buffered();
        self.outbox.advance(n);
        if before > high_water && !self.is_backpressured() && self.state == State::Open {
            self.events.push_back(Event::Drained);
        }
    }

    /// What to do with the transport, once: [`TransportAction::HalfClose`]
    /// when a connection that is over has written everything and the peer
    /// should see the end of our stream while we wait for the end of its
    /// own, then [`TransportAction::Close`]. `None` while the transport
    /// should stay as it is. Ask after writing what
    /// [`poll_transmit`](Self::poll_transmit) offered.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use sockeye_core::{Config, Connection, Event, Response, TransportAction};
    ///
    /// let now = Instant::now();
    /// let mut server = Connection::server(Config::default(), now)?;
    /// server.handle_input(now, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    /// assert!(matches!(server.poll_event(), Some(Event::HttpRequest(_))));
    /// server.respond(now, Response::new(200, "ok"))?;
    /// assert!(matches!(server.poll_event(), Some(Event::Closed(_))));
    /// // Not before the response is written.
    /// assert_eq!(server.poll_transport(), None);
    /// let mut slices = [std::io::IoSlice::new(&[]); 4];
    /// let n = server.poll_transmit(&mut slices);
    /// let len = slices[..n].iter().map(|s| s.len()).sum();
    /// server.handle_written(now, len);
    /// assert_eq!(server.poll_transport(), Some(TransportAction::HalfClose));
    /// // A client that never closes its side is waited for up to the close timeout.
    /// let later = now + Config::default().close_timeout;
    /// assert_eq!(server.poll_timeout(), Some(later));
    /// server.handle_timeout(later);
    /// assert_eq!(server.poll_transport(), Some(TransportAction::Close));
    /// assert_eq!(server.poll_timeout(), None);
    /// # Ok::<(), sockeye_core::UsageError>(())
    /// ```
    pub fn poll_transport(&mut self) -> Option<TransportAction> {
        match self.teardown {
            Teardown::Flush { .. } if self.outbox.is_empty() => {
                if self.eof {
                    // Nothing more will arrive: nothing to wait for.
                    self.teardown = Teardown::Done;
                    Some(TransportAction::Close)
                } else {
                    self.teardown = Teardown::Linger {
                        deadline: self.close_deadline(),
                    };
                    Some(TransportAction::HalfClose)
                }
            }
            Teardown::Close => {
                self.teardown = Teardown::Done;
                Some(TransportAction::Close)
            }
            _ => None,
        }
    }

    /// The next event, if any.
    ///
    /// Received messages come out one at a time: the next frame is decoded
    /// only when the application asks for the next event, after it has
    /// reacted to this one.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() && !self.unread.is_empty() {
            self.decode_unread();
        }
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the earliest of
    /// the handshake, heartbeat, idle and close deadlines that apply now,
    /// and once the connection is over, the deadline for writing its last
    /// bytes or for the peer to close its side. `None` once the transport
    /// is to be closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking | State::Closing => self.deadline,
            State::Open => match (self.heartbeat_due(), self.idle_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            State::Closed => match self.teardown {
                Teardown::Flush { deadline } | Teardown::Linger { deadline } => deadline,
                Teardown::Running | Teardown::Close | Teardown::Done => None,
            },
        }
    }

    // ---- internals ----------------------------------------------------

    fn heartbeat_due(&self) -> Option<Instant> {
        let interval = self.config.ping_interval?;
        self.last_seen
            .checked_add(interval.checked_mul(self.missed_pongs + 1)?)
    }

    fn idle_due(&self) -> Option<Instant> {
        self.last_data.checked_add(self.config.idle_timeout?)
    }

    fn close_deadline(&self) -> Option<Instant> {
        self.now.checked_add(self.config.close_timeout)
    }

    fn check_can_send(&self) -> Result<(), UsageError> {
        match self.state {
            State::Handshaking => Err(UsageError::NotOpen),
            State::Open => Ok(()),
            State::Closing | State::Closed => Err(UsageError::Closing),
        }
    }

    fn open(&mut self, handshake: Handshake) {
        self.state = State::Open;
        self.deadline = None;
        self.last_seen = self.now;
        self.last_data = self.now;
        self.events.push_back(Event::Open(handshake));
    }

    fn handshake_input(&mut self, data: &[u8]) {
        let cap = self.config.max_handshake_size;
        let Some(handshake) = self.handshake.as_deref_mut() else {
            return;
        };
        match handshake {
            Opening::ReadingRequest { head, searched }
            | Opening::ReadingResponse { head, searched, .. } => {
                // Copy no more than the cap allows; a head that does not end
                // within it is refused whatever follows.
                let take = data.len().min(cap - head.len());
                head.extend_from_slice(&data[..take]);
                let Some(end) = find_head_end(head, *searched) else {
                    *searched = head.len();
                    if head.len() >= cap {
                        match self.role {
                            Role::Server => self.refuse(RequestError::TooLarge(cap)),
                            Role::Client => self.fail_handshake(ResponseError::TooLarge.into()),
                        }
                    }
                    return;
                };
                let mut rest = head.split_off(end);
                rest.extend_from_slice(&data[take..]);
                let head = std::mem::take(head).freeze();
                match self.role {
                    Role::Server => self.request_complete(&head, rest),
                    Role::Client => self.response_complete(&head, rest),
                }
            }
            Opening::AwaitingAnswer { accept, early, .. } => {
                // A plain request's body is ignored; an upgrade's early frames
                // wait for the answer, up to the cap.
                if accept.is_some() {
                    if early.len() + data.len() > cap {
                        self.refuse(RequestError::EarlyData(cap));
                    } else {
                        early.extend_from_slice(data);
                    }
                }
            }
            Opening::ReadingRefusal { body, body_len, .. } => {
                let take = data.len().min(*body_len - body.len());
                body.extend_from_slice(&data[..take]);
                if body.len() == *body_len {
                    self.finish_refusal();
                }
            }
        }
    }

    fn request_complete(&mut self, head: &[u8], early: BytesMut) {
        match parse_request(head, self.config.max_headers) {
            RequestOutcome::Upgrade { request, accept } => {
                if early.len() > self.config.max_handshake_size {
                    self.refuse(RequestError::EarlyData(self.config.max_handshake_size));
                    return;
                }
                self.handshake = Some(Box::new(Opening::AwaitingAnswer {
                    accept: Some(accept),
                    protocols: request.protocols.clone(),
                    early,
                }));
                self.events.push_back(Event::Request(Box::new(request)));
            }
            RequestOutcome::Plain(request) => {
                self.handshake = Some(Box::new(Opening::AwaitingAnswer {
                    accept: None,
                    protocols: Vec::new(),
                    early: BytesMut::new(),
                }));
                self.events.push_back(Event::HttpRequest(Box::new(request)));
            }
            RequestOutcome::Invalid(error) => self.refuse(error),
        }
    }

    fn response_complete(&mut self, head: &[u8], rest: BytesMut) {
        let Some(Opening::ReadingResponse { expect, .. }) = self.handshake.as_deref() else {
            return;
        };
        match expect.check(head, self.config.max_headers) {
            ResponseOutcome::Upgraded { protocol, headers } => {
                self.handshake = None;
                self.open(Handshake { protocol, headers });
                self.frame_input(&rest);
            }
            ResponseOutcome::Refused {
                status,
                reason,
                headers,
                body_len,
            } => {
                let body_len = body_len
                    .unwrap_or(usize::MAX)
                    .min(self.config.max_handshake_size);
                let mut body = rest;
                body.truncate(body_len);
                let done = body.len() == body_len;
                self.handshake = Some(Box::new(Opening::ReadingRefusal {
                    status,
                    reason,
                    headers,
                    body,
                    body_len,
                }));
                if done {
                    self.finish_refusal();
                }
            }
            ResponseOutcome::Invalid(error) => self.fail_handshake(error.into()),
        }
    }

    fn finish_refusal(&mut self) {
        if let Some(Opening::ReadingRefusal {
            status,
            reason,
            headers,
            body,
            ..
        }) = self.handshake.take().map(|h| *h)
        {
            let error = ResponseError::Rejected {
                status,
                reason,
                headers,
                body: body.freeze(),
            };
            self.fail_handshake(error.into());
        }
    }

    /// Server: refuses the request with the status the error maps to.
    fn refuse(&mut self, error: RequestError) {
        let response = Response::for_error(&error)
            .encode()
            .expect("error responses are well-formed");
        self.outbox.push_handshake(response);
        self.handshake = None;
        let code = CloseCode::ABNORMAL;
        self.finish(
            code,
            String::new(),
            false,
            Some(error.into()),
            End::Graceful,
        );
    }

    /// Ends a handshake that failed with nothing for the peer to read: a
    /// client's, or a server's whose peer left before its request was in.
    fn fail_handshake(&mut self, error: Error) {
        self.handshake = None;
        let code = CloseCode::ABNORMAL;
        self.finish(code, String::new(), false, Some(error), End::Abort);
    }

    fn frame_input(&mut self, data: &[u8]) {
        if data.is_empty() || self.close_received.is_some() {
            // Nothing follows the peer's close frame (§5.5.1).
            return;
        }
        self.heard_from_peer();
        if self.unread.is_empty() {
            let rest = self.decode(data);
            self.unread.extend_from_slice(rest);
        } else {
            self.unread.extend_from_slice(data);
        }
    }

    /// Frame bytes arrived: the peer is alive, whatever they hold.
    fn heard_from_peer(&mut self) {
        self.last_seen = self.now;
        self.missed_pongs = 0;
    }

    /// Decodes the next message from `unread`, keeping the rest in place:
    /// many messages in one read cost one copy into `unread`, not one per
    /// message.
    fn decode_unread(&mut self) {
        let mut unread = std::mem::take(&mut self.unread);
        let used = unread.len() - self.decode(&unread).len();
        unread.advance(used);
        if !unread.is_empty() {
            self.unread = unread;
        }
    }

    /// Decodes `input` up to the end of the next message, and returns what
    /// is left of it: nothing once the peer's close frame or a failure has
    /// ended the input.
    fn decode<'a>(&mut self, mut input: &'a [u8]) -> &'a [u8] {
        loop {
            match self.decoder.decode(&mut input) {
                Ok(Some(item)) => {
                    let message = matches!(item, Decoded::Message(_));
                    self.on_decoded(item);
                    if self.close_received.is_some() || self.state == State::Closed {
                        return &[];
                    }
                    if message {
                        return input;
                    }
                }
                Ok(None) => return input,
                Err(error) => {
                    self.fail(error);
                    return &[];
                }
            }
        }
    }

    fn on_decoded(&mut self, item: Decoded) {
        match item {
            Decoded::Message(message) => {
                self.last_data = self.now;
                self.events.push_back(Event::Message(message));
            }
            Decoded::Ping(payload) => {
                if !self.close_sent {
                    self.outbox.push_pong(payload.clone());
                }
                self.events.push_back(Event::Ping(payload));
            }
            Decoded::Pong(payload) => self.events.push_back(Event::Pong(payload)),
            Decoded::Close(frame) => {
                if !self.close_sent {
                    // Echo the code (§5.5.1), or an empty close for an empty one.
                    let payload = match &frame {
                        Some(f) => Bytes::copy_from_slice(&f.code.as_u16().to_be_bytes()),
                        None => Bytes::new(),
                    };
                    self.outbox.close_now(payload);
                    self.close_sent = true;
                }
                let frame = frame.unwrap_or(CloseFrame {
                    code: CloseCode::NO_STATUS,
                    reason: String::new(),
                });
                self.events.push_back(Event::CloseReceived(frame.clone()));
                match self.role {
                    // The server closes TCP first (§7.1.1).
                    Role::Server => {
                        self.finish(frame.code, frame.reason, true, None, End::Graceful)
                    }
                    Role::Client => {
                        self.state = State::Closing;
                        self.deadline = self.close_deadline();
                        self.close_received = Some(frame);
                    }
                }
            }
        }
    }

    fn start_close(&mut self, code: CloseCode, reason: &str) {
        self.outbox.push_close(close_payload(code, reason));
        self.close_sent = true;
        self.state = State::Closing;
        self.deadline = self.close_deadline();
    }

    /// Fails the connection (§7.1.7): a close frame with the error's code if
    /// none was sent yet, then [`Event::Closed`]. Messages the application
    /// queued before the failure still go out first.
    fn fail(&mut self, error: ProtocolError) {
        let code = error.close_code();
        let reason = truncate_reason(&error.to_string()).to_owned();
        self.unread = BytesMut::new();
        if !self.close_sent {
            self.outbox.push_close(close_payload(code, &reason));
            self.close_sent = true;
        }
        self.finish(code, reason, false, Some(error.into()), End::Graceful);
    }

    /// Ends the connection for the application, and starts winding down
    /// its transport as `end` says.
    fn finish(
        &mut self,
        code: CloseCode,
        reason: String,
        clean: bool,
        error: Option<Error>,
        end: End,
    ) {
        self.state = State::Closed;
        self.unread = BytesMut::new();
        self.deadline = None;
        self.close_received = None;
        self.handshake = None;
        self.teardown = match end {
            End::Graceful => Teardown::Flush {
                deadline: self.close_deadline(),
            },
            End::Abort => {
                self.outbox.clear();
                Teardown::Close
            }
        };
        self.events.push_back(Event::Closed(Box::new(Closed {
            code,
            reason,
            clean,
            error,
        })));
    }
}

fn close_payload(code: CloseCode, reason: &str) -> Bytes {
    let mut payload = BytesMut::with_capacity(2 + reason.len());
    payload.put_u16(code.as_u16());
    payload.put_slice(reason.as_bytes());
    payload.freeze()
}

/// The longest prefix of `reason` that fits a close frame, cut at a
/// character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests;
