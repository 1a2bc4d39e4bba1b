//! [`Driver`]: the connections of one caller-owned `mio::Poll`, moved by
//! readiness events and one heap of deadlines.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::SockRef;
use sockeye_core::{
    ClientRequest, CloseCode, Config, Connection, Event, Handshake, Message, Response, State,
    TransportAction, UsageError,
};

use crate::timers::Timers;
use crate::{ConnectionId, Error};

/// Bytes per read, into one buffer the driver shares between its
/// connections: the core copies what it keeps, so an idle connection holds
/// no read buffer.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes one connection may read before the others get their turn, unless
/// [`Driver::with_read_budget`] says otherwise.
const READ_BUDGET: usize = 4 * READ_CHUNK;
/// `IoSlice`s offered to the core per vectored write: a header and a
/// payload per frame.
const MAX_SLICES: usize = 64;

/// WebSocket connections, server and client, inside an event loop the caller
/// owns.
///
/// The driver registers its listeners and sockets with the caller's
/// `mio::Poll` under tokens from the range given to [`new`](Self::new), and
/// never blocks, spawns a thread or reads the clock: every call that can
/// move time takes `now`. The caller's loop:
///
/// 1. `poll.poll(&mut events, driver.next_timeout(now))`;
/// 2. [`handle_event`](Self::handle_event) for each event (it returns
///    `false` for tokens that are not the driver's);
/// 3. [`handle_timeouts`](Self::handle_timeouts);
/// 4. [`poll_event`](Self::poll_event) until it returns `None`, reacting to
///    each event ([`accept`](Self::accept), [`send`](Self::send),
///    [`close`](Self::close), …). The driver does its reading and writing
///    here, so what the application sends in reaction to a batch of input
///    goes out in one vectored write.
///
/// Calls such as `send` outside step 4 are fine too: they make
/// [`next_timeout`](Self::next_timeout) return zero, so the next turn of
/// the loop writes them.
///
/// # Example: a client and an echo server in one loop
///
/// ```
/// use std::time::Instant;
/// use mio::net::{TcpListener, TcpStream};
/// use mio::{Events, Poll};
/// use sockeye_mio::{ClientRequest, CloseCode, Config, Driver, Event, Handshake, Message};
///
/// let mut poll = Poll::new()?;
/// let mut driver = Driver::new(poll.registry(), 0..1024, Config::default())?;
/// let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
/// let addr = listener.local_addr()?;
/// driver.listen(listener)?;
/// let request = ClientRequest::new("127.0.0.1", addr.port(), "/echo");
/// let client = driver.connect(TcpStream::connect(addr)?, request, Instant::now())?;
///
/// let mut events = Events::with_capacity(256);
/// let (mut reply, mut closed) = (None, 0);
/// while closed < 2 {
///     poll.poll(&mut events, driver.next_timeout(Instant::now()))?;
///     let now = Instant::now();
///     for event in events.iter() {
///         driver.handle_event(event, now);
///     }
///     driver.handle_timeouts(now);
///     while let Some((id, event)) = driver.poll_event(now) {
///         match event {
///             Event::Request(_) => driver.accept(id, now, Handshake::default())?,
///             Event::Open(_) if id == client => {
///                 driver.send(id, now, Message::text("hello"))?;
///             }
///             Event::Message(message) if id == client => {
///                 reply = Some(message);
///                 driver.close(id, now, CloseCode::NORMAL, "done")?;
///             }
///             Event::Message(message) => {
///                 driver.send(id, now, message)?;
///             }
///             Event::Closed(how) => {
///                 assert!(how.clean);
///                 closed += 1;
///             }
///             _ => {}
///         }
///     }
/// }
/// assert_eq!(reply, Some(Message::text("hello")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Receive buffers
///
/// Under load the driver reads its connections in turn, each up to its
/// [read budget](Self::with_read_budget) per round. The kernel sizes a
/// socket's receive buffer by how much the application takes at a time, so
/// a busy connection's buffer settles near a round's worth. A peer that keeps more than that in flight meets a
/// zero window and waits, and over loopback its queued data is then sent
/// from the reading side's CPU when the window reopens. A fixed `SO_RCVBUF`
/// on the listener, which accepted connections inherit, holds what peers
/// keep in flight, and moves more when they keep much in flight
/// (BENCHMARKS.md, "1 MiB: taking turns"). A fixed size switches the kernel's tuning off for those
/// sockets, and `net.core.rmem_max` caps it, so size it for the traffic you
/// expect.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let poll = mio::Poll::new()?;
/// # let mut driver = sockeye_mio::Driver::new(poll.registry(), 0..16, Default::default())?;
/// let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse()?)?;
/// socket2::SockRef::from(&listener).set_recv_buffer_size(4 << 20)?;
/// driver.listen(listener)?;
/// # Ok(()) }
/// ```
pub struct Driver {
    registry: Registry,
    tokens: Range<usize>,
    /// Every connection's settings. Above `write_buffer_high_water` bytes
    /// waiting, [`Driver::send`] returns `false`, the driver stops reading
    /// from the peer, and [`Event::Drained`] follows once the core has
    /// written its way back to the mark.
    config: Config,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Connections in `slots`.
    live: usize,
    timers: Timers,
    /// Connections with something to do this round, each at most once
    /// (see `Conn::queued`); the front one is being driven.
    ready: VecDeque<usize>,
    /// Connections that used up their read budget, for the next round,
    /// where they first write the replies of this one.
    later: VecDeque<usize>,
    /// What a connection may read per round.
    read_budget: usize,
    /// What the front of `ready` may still read this round.
    budget: usize,
    read_buf: Box<[u8]>,
}

struct Slot {
    /// Bumped when the slot is freed, so ids and timers of the previous
    /// occupant stop matching.
    generation: u32,
    kind: Kind,
}

enum Kind {
    Free,
    Listener(TcpListener),
    Conn(Box<Conn>),
}

impl Kind {
    fn source(&mut self) -> Option<&mut dyn mio::event::Source> {
        match self {
            Kind::Free => None,
            Kind::Listener(listener) => Some(listener),
            Kind::Conn(conn) => Some(&mut conn.stream),
        }
    }
}

struct Conn {
    stream: TcpStream,
    core: Connection,
    /// Readiness not used up yet: mio is edge-triggered, so it reports a
    /// socket readable once, and the driver reads until the kernel says
    /// there is no more.
    readable: bool,
    /// The peer closed its side or the socket has an error: read until the
    /// read itself says so.
    read_closed: bool,
    /// The read side is done: the peer's end of stream, or an error.
    eof: bool,
    /// A write hit `WouldBlock`: wait for a writable event.
    write_blocked: bool,
    /// Whether `WRITABLE` is in the registered interest. It is only while a
    /// write is blocked, so a connection with nothing to send costs no
    /// wake-ups.
    write_interest: bool,
    /// In `ready` or `later`.
    queued: bool,
    /// The deadline of this connection's live timer entry.
    armed: Option<Instant>,
}

/// What driving a connection came to.
enum Step {
    /// Something for the application.
    Event(Event),
    /// Nothing to do until the next readiness event or deadline.
    Idle,
    /// Out of read budget with input left: continue next round.
    Deferred,
    /// Done with the transport.
    Free,
}

/// What a connection needs from the driver while it is driven.
struct Ctx<'a> {
    read_buf: &'a mut [u8],
    budget: &'a mut usize,
    now: Instant,
}

impl Driver {
    /// A driver for connections registered with the poll behind `registry`,
    /// under tokens from `tokens` (one per listener and per connection, so
    /// its length is the most connections at once). The caller's own
    /// sources keep tokens outside it.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let poll = mio::Poll::new()?;
    /// // Token(0) stays the caller's; the driver may use 1 to 100 000.
    /// let driver = sockeye_mio::Driver::new(poll.registry(), 1..100_001, Default::default())?;
    /// # drop(driver); Ok(()) }
    /// ```
    pub fn new(registry: &Registry, tokens: Range<usize>, config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            registry: registry.try_clone()?,
            tokens,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: Timers::default(),
            ready: VecDeque::new(),
            later: VecDeque::new(),
            read_budget: READ_BUDGET,
            budget: READ_BUDGET,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// Sets how many bytes one connection may read in a round before the
    /// others get their turn (at least one read's worth). The default, 1 MiB,
    /// keeps the driver fair: a peer that never stops sending cannot hold up
    /// the rest. A larger budget lets a busy connection read more per turn,
    /// so a few connections move while the others wait: their tail latency
    /// grows, and in our measurements the total moved did not (BENCHMARKS.md,
    /// "1 MiB: taking turns").
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let poll = mio::Poll::new()?;
    /// let driver = sockeye_mio::Driver::new(poll.registry(), 0..1024, Default::default())?
    ///     .with_read_budget(16 << 20);
    /// # drop(driver); Ok(()) }
    /// ```
    pub fn with_read_budget(mut self, bytes: usize) -> Self {
        // Zero would defer every connection before its first read.
        self.read_budget = bytes.max(1);
        self.budget = self.read_budget;
        self
    }

    /// Accepts WebSocket connections on `listener`; each comes out of
    /// [`poll_event`](Self::poll_event) as a [`Event::Request`] (or
    /// [`Event::HttpRequest`]). When the token range is full, new
    /// connections are closed at once.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let poll = mio::Poll::new()?;
    /// # let mut driver = sockeye_mio::Driver::new(poll.registry(), 0..16, Default::default())?;
    /// let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse()?)?;
    /// driver.listen(listener)?;
    /// # Ok(()) }
    /// ```
    pub fn listen(&mut self, listener: TcpListener) -> Result<(), Error> {
        self.insert(Kind::Listener(listener), Interest::READABLE)?;
        Ok(())
    }

    /// Starts a client connection over `stream` (usually just made with
    /// `mio::net::TcpStream::connect`, still connecting). The upgrade
    /// request goes out once the stream is connected; [`Event::Open`]
    /// follows the server's 101, or [`Event::Closed`] a refusal (its error
    /// carries the status, headers and body).
    ///
    /// The masking keys are seeded from the OS, as in every driver, so they
    /// are unpredictable to the page scripts RFC 6455 §10.3 defends against.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let poll = mio::Poll::new()?;
    /// # let mut driver = sockeye_mio::Driver::new(poll.registry(), 0..16, Default::default())?;
    /// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let addr = server.local_addr()?;
    /// use sockeye_mio::ClientRequest;
    /// let request = ClientRequest::new("127.0.0.1", addr.port(), "/agent?session=42")
    ///     .protocol("agent.v1")
    ///     .header("Authorization", "Bearer t0k3n");
    /// let stream = mio::net::TcpStream::connect(addr)?;
    /// let id = driver.connect(stream, request, std::time::Instant::now())?;
    /// # let _ = id; Ok(()) }
    /// ```
    pub fn connect(
        &mut self,
        stream: TcpStream,
        request: ClientRequest,
        now: Instant,
    ) -> Result<ConnectionId, Error> {
        stream.set_nodelay(true)?;
        let seed = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        let core = Connection::client(request, self.config.clone(), seed, now)?;
        let mut conn = Conn::new(stream, core);
        // The request waits in `out` until the connection is established,
        // which mio reports as writable.
        conn.write_blocked = true;
        conn.write_interest = true;
        self.add(conn, Interest::READABLE | Interest::WRITABLE)
    }

    /// Handles one event from the caller's poll. Returns `false` if its
    /// token is not in the driver's range (it is the caller's own).
    ///
    /// It only notes readiness (and accepts on a listener): the reading and
    /// writing happen in [`poll_event`](Self::poll_event).
    pub fn handle_event(&mut self, event: &mio::event::Event, now: Instant) -> bool {
        let Some(index) = self.index_of(event.token()) else {
            return false;
        };
        match &mut self.slots[index].kind {
            // A socket closed earlier in this batch of events.
            Kind::Free => {}
            Kind::Listener(_) => self.accept_all(index, now),
            Kind::Conn(conn) => {
                let closed = event.is_read_closed() || event.is_error();
                conn.readable |= event.is_readable() || closed;
                conn.read_closed |= closed;
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    conn.write_blocked = false;
                }
                self.wake(index);
            }
        }
        true
    }

    /// Handles every deadline that has passed at `now`: heartbeats,
    /// handshake and close timeouts. What they cause comes out of
    /// [`poll_event`](Self::poll_event).
    pub fn handle_timeouts(&mut self, now: Instant) {
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(Slot {
                generation,
                kind: Kind::Conn(conn),
            }) = self.slots.get_mut(entry.index)
            else {
                continue;
            };
            if *generation != entry.generation || conn.armed != Some(entry.at) {
                continue;
            }
            conn.armed = None;
            // It may be early (the deadline moved later since it was
            // armed); the core ignores that, and the step re-arms.
            conn.core.handle_timeout(now);
            self.wake(entry.index);
        }
    }

    /// How long the caller's poll may sleep: zero while connections have
    /// work left, otherwise until the earliest deadline. `None`: no
    /// deadline at all.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let poll = mio::Poll::new()?;
    /// let driver = sockeye_mio::Driver::new(poll.registry(), 0..16, Default::default())?;
    /// assert_eq!(driver.next_timeout(std::time::Instant::now()), None);
    /// # Ok(()) }
    /// ```
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || !self.later.is_empty() {
            return Some(Duration::ZERO);
        }
        self.timers
            .next()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    /// The next event of any connection; `None` when every connection has
    /// done what it can for now. This is where the driver reads (until the
    /// socket has no more, or the connection's turn is over) and writes.
    ///
    /// A connection's events come one at a time: the core decodes the next
    /// message only when asked, so what the application sends in reaction
    /// to one message goes out before anything a later frame causes.
    pub fn poll_event(&mut self, now: Instant) -> Option<(ConnectionId, Event)> {
        while let Some(&index) = self.ready.front() {
            let generation = self.slots[index].generation;
            match self.step(index, now) {
                Step::Event(event) => return Some((ConnectionId { index, generation }, event)),
                Step::Idle => {
                    self.ready.pop_front();
                    if let Kind::Conn(conn) = &mut self.slots[index].kind {
                        conn.queued = false;
                    }
                }
                Step::Deferred => {
                    self.ready.pop_front();
                    self.later.push_back(index);
                }
                Step::Free => {
                    self.ready.pop_front();
                    self.release(index);
                }
            }
            self.budget = self.read_budget;
        }
        // The round is over. Connections with input left go first in the
        // next one, after the caller has polled: a peer that never stops
        // sending cannot starve the rest of the caller's loop.
        std::mem::swap(&mut self.ready, &mut self.later);
        None
    }

    /// Server: accepts the upgrade request of [`Event::Request`]. The 101
    /// response is queued, and [`Event::Open`] follows. The heartbeat starts
    /// at `now`.
    pub fn accept(
        &mut self,
        id: ConnectionId,
        now: Instant,
        handshake: Handshake,
    ) -> Result<(), Error> {
        self.conn_mut(id)?.core.accept(now, handshake)?;
        self.wake(id.index);
        Ok(())
    }

    /// Server: answers the request of [`Event::Request`] or
    /// [`Event::HttpRequest`] with a plain HTTP response (a refusal, or a
    /// health check's answer). The transport closes once it is written;
    /// [`Event::Closed`] follows.
    ///
    /// A server that refuses every path but `/chat`, and a client that asks
    /// for another:
    ///
    /// ```
    /// use sockeye_mio::{ClientRequest, Config, Driver, Event, Response};
    /// # use std::time::Instant;
    /// # use mio::net::{TcpListener, TcpStream};
    /// # use mio::{Events, Poll};
    /// # let mut poll = Poll::new()?;
    /// # let mut driver = Driver::new(poll.registry(), 0..16, Config::default())?;
    /// # let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    /// # let addr = listener.local_addr()?;
    /// # driver.listen(listener)?;
    /// let request = ClientRequest::new("127.0.0.1", addr.port(), "/admin");
    /// let client = driver.connect(TcpStream::connect(addr)?, request, Instant::now())?;
    /// let mut events = Events::with_capacity(64);
    /// let mut refused = None;
    /// while refused.is_none() {
    ///     poll.poll(&mut events, driver.next_timeout(Instant::now()))?;
    ///     let now = Instant::now();
    ///     for event in events.iter() {
    ///         driver.handle_event(event, now);
    ///     }
    ///     driver.handle_timeouts(now);
    ///     while let Some((id, event)) = driver.poll_event(now) {
    ///         match event {
    ///             Event::Request(request) if request.path != "/chat" => {
    ///                 driver.respond(id, now, Response::new(403, "no such room"))?;
    ///             }
    ///             Event::Closed(how) if id == client => refused = Some(how),
    ///             _ => {}
    ///         }
    ///     }
    /// }
    /// let error = refused.unwrap().error.expect("a refusal");
    /// assert_eq!(error.to_string(), "server refused the upgrade with 403 Forbidden");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn respond(
        &mut self,
        id: ConnectionId,
        now: Instant,
        response: Response,
    ) -> Result<(), Error> {
        self.conn_mut(id)?.core.respond(now, response)?;
        self.wake(id.index);
        Ok(())
    }

    /// Queues a message. Returns whether the connection's queue is still at
    /// or under the high-water mark: after `false`, hold further messages
    /// until [`Event::Drained`]. The message is queued either way; the
    /// driver stops reading from the peer meanwhile.
    ///
    /// Sending one `Message` to many connections shares its payload.
    pub fn send(
        &mut self,
        id: ConnectionId,
        now: Instant,
        message: Message,
    ) -> Result<bool, Error> {
        let conn = self.conn_mut(id)?;
        conn.core.send(now, message).map_err(closing_is_closed)?;
        let below = !conn.core.is_backpressured();
        self.wake(id.index);
        Ok(below)
    }

    /// Queues a ping with up to 125 bytes of payload. The heartbeat pings on
    /// its own (see [`Config::ping_interval`]); this is for an application
    /// that probes the peer itself. [`Event::Pong`] brings the answer.
    ///
    /// ```
    /// use sockeye_mio::{ClientRequest, Config, Driver, Event, Handshake};
    /// # use std::time::Instant;
    /// # use mio::net::{TcpListener, TcpStream};
    /// # use mio::{Events, Poll};
    /// # let mut poll = Poll::new()?;
    /// # let mut driver = Driver::new(poll.registry(), 0..16, Config::default())?;
    /// # let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    /// # let addr = listener.local_addr()?;
    /// # driver.listen(listener)?;
    /// let request = ClientRequest::new("127.0.0.1", addr.port(), "/");
    /// let client = driver.connect(TcpStream::connect(addr)?, request, Instant::now())?;
    /// let mut events = Events::with_capacity(64);
    /// let mut answer = None;
    /// while answer.is_none() {
    ///     poll.poll(&mut events, driver.next_timeout(Instant::now()))?;
    ///     let now = Instant::now();
    ///     for event in events.iter() {
    ///         driver.handle_event(event, now);
    ///     }
    ///     driver.handle_timeouts(now);
    ///     while let Some((id, event)) = driver.poll_event(now) {
    ///         match event {
    ///             Event::Request(_) => driver.accept(id, now, Handshake::default())?,
    ///             Event::Open(_) if id == client => {
    ///                 driver.ping(id, now, "are you there?".into())?;
    ///             }
    ///             Event::Pong(payload) if id == client => answer = Some(payload),
    ///             _ => {}
    ///         }
    ///     }
    /// }
    /// assert_eq!(answer.unwrap(), "are you there?");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ping(&mut self, id: ConnectionId, now: Instant, payload: Bytes) -> Result<(), Error> {
        self.conn_mut(id)?
            .core
            .ping(now, payload)
            .map_err(closing_is_closed)?;
        self.wake(id.index);
        Ok(())
    }

    /// Starts the close handshake: the close frame goes out after the
    /// messages queued before it. [`Event::Closed`] follows when the
    /// handshake completes or the close timeout passes.
    pub fn close(
        &mut self,
        id: ConnectionId,
        now: Instant,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.conn_mut(id)?
            .core
            .close(now, code, reason)
            .map_err(closing_is_closed)?;
        self.wake(id.index);
        Ok(())
    }

    /// Bytes queued on the connection and not yet written to the socket.
    ///
    /// ```
    /// use sockeye_mio::{ClientRequest, Config, Driver};
    /// # use std::time::Instant;
    /// # use mio::net::{TcpListener, TcpStream};
    /// # use mio::Poll;
    /// # let mut poll = Poll::new()?;
    /// # let mut driver = Driver::new(poll.registry(), 0..16, Config::default())?;
    /// # let listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    /// # let addr = listener.local_addr()?;
    /// # driver.listen(listener)?;
    /// let request = ClientRequest::new("127.0.0.1", addr.port(), "/");
    /// let client = driver.connect(TcpStream::connect(addr)?, request, Instant::now())?;
    /// // The upgrade request waits for the loop's next turn to be written.
    /// assert!(driver.buffered_amount(client)? > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn buffered_amount(&self, id: ConnectionId) -> Result<usize, Error> {
        match self.slots.get(id.index) {
            Some(Slot {
                generation,
                kind: Kind::Conn(conn),
            }) if *generation == id.generation => Ok(conn.core.buffered_amount()),
            _ => Err(Error::Closed),
        }
    }

    // ---- internals ----------------------------------------------------

    fn index_of(&self, token: Token) -> Option<usize> {
        self.tokens
            .contains(&token.0)
            .then(|| token.0 - self.tokens.start)
            .filter(|&index| index < self.slots.len())
    }

    /// The connection behind `id`, if the application may still act on it.
    fn conn_mut(&mut self, id: ConnectionId) -> Result<&mut Conn, Error> {
        match self.slots.get_mut(id.index) {
            Some(Slot {
                generation,
                kind: Kind::Conn(conn),
            }) if *generation == id.generation && conn.core.state() != State::Closed => Ok(conn),
            _ => Err(Error::Closed),
        }
    }

    /// Puts `index` on the ready queue, once.
    fn wake(&mut self, index: usize) {
        if let Kind::Conn(conn) = &mut self.slots[index].kind
            && !conn.queued
        {
            conn.queued = true;
            self.ready.push_back(index);
        }
    }

    /// Takes a free slot and registers the source in it.
    fn insert(&mut self, mut kind: Kind, interest: Interest) -> Result<usize, Error> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < self.tokens.len() => {
                self.slots.push(Slot {
                    generation: 0,
                    kind: Kind::Free,
                });
                self.slots.len() - 1
            }
            None => return Err(Error::NoTokens),
        };
        let token = Token(self.tokens.start + index);
        if let Some(source) = kind.source()
            && let Err(error) = self.registry.register(source, token, interest)
        {
            self.free.push(index);
            return Err(error.into());
        }
        self.slots[index].kind = kind;
        Ok(index)
    }

    fn add(&mut self, conn: Conn, interest: Interest) -> Result<ConnectionId, Error> {
        let deadline = conn.core.poll_timeout();
        let index = self.insert(Kind::Conn(Box::new(conn)), interest)?;
        self.live += 1;
        let generation = self.slots[index].generation;
        self.arm(index, deadline);
        Ok(ConnectionId { index, generation })
    }

    fn accept_all(&mut self, index: usize, now: Instant) {
        loop {
            let Kind::Listener(listener) = &self.slots[index].kind else {
                return;
            };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    // Out of descriptors, say: the connection stays in the
                    // backlog until the next one arrives.
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            };
            let added = Connection::server(self.config.clone(), now)
                .map_err(Error::from)
                .and_then(|core| {
                    stream.set_nodelay(true)?;
                    // Data that came with the connection is reported by the
                    // registration itself.
                    self.add(Conn::new(stream, core), Interest::READABLE)
                });
            if let Err(error) = added {
                tracing::warn!(%error, "connection dropped");
            }
        }
    }

    /// Drives the connection at `index` until it has an event for the
    /// application or nothing more to do now; then re-registers and re-arms.
    fn step(&mut self, index: usize, now: Instant) -> Step {
        let token = Token(self.tokens.start + index);
        let Kind::Conn(conn) = &mut self.slots[index].kind else {
            return Step::Idle;
        };
        let mut ctx = Ctx {
            read_buf: &mut self.read_buf,
            budget: &mut self.budget,
            now,
        };
        let step = conn.drive(&mut ctx);
        if let Step::Idle | Step::Deferred = step {
            let want = conn.write_blocked;
            if want != conn.write_interest {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if let Err(error) = self.registry.reregister(&mut conn.stream, token, interest) {
                    // The core ends the connection; the next step reports it.
                    conn.fail(now, error);
                    conn.write_blocked = false;
                    return conn.drive(&mut ctx);
                }
                conn.write_interest = want;
            }
            let deadline = conn.deadline();
            self.arm(index, deadline);
        }
        step
    }

    fn arm(&mut self, index: usize, deadline: Option<Instant>) {
        let slot = &mut self.slots[index];
        if let Kind::Conn(conn) = &mut slot.kind {
            self.timers
                .arm(&mut conn.armed, deadline, index, slot.generation);
        }
        // Entries of closed connections and superseded deadlines wait for
        // their time to be dropped; sweep them if they pile up (a burst of
        // short connections, say).
        if self.timers.len() > 2 * self.live + 1024 {
            let slots = &self.slots;
            self.timers.retain(|entry| {
                matches!(
                    &slots[entry.index],
                    Slot { generation, kind: Kind::Conn(conn) }
                        if *generation == entry.generation && conn.armed == Some(entry.at)
                )
            });
        }
    }

    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if let Kind::Conn(mut conn) = std::mem::replace(&mut slot.kind, Kind::Free) {
            // Dropping the socket would remove it from the poll too; this
            // says so, and keeps mio's debug checks happy.
            let _ = self.registry.deregister(&mut conn.stream);
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index);
            self.live -= 1;
        }
    }
}

fn closing_is_closed(error: UsageError) -> Error {
    match error {
        UsageError::Closing => Error::Closed,
        other => other.into(),
    }
}

impl Conn {
    fn new(stream: TcpStream, core: Connection) -> Self {
        Self {
            stream,
            core,
            readable: false,
            read_closed: false,
            eof: false,
            write_blocked: false,
            write_interest: false,
            queued: false,
            armed: None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Drives the connection as the core's contract says: its next event,
    /// else the writes it offers and what it says of the transport, else
    /// a read. The driver has no teardown policy of its own: after
    /// `Closed` it keeps writing and reading (the core discards the input)
    /// until the core says to close.
    fn drive(&mut self, ctx: &mut Ctx<'_>) -> Step {
        loop {
            if let Some(event) = self.core.poll_event() {
                return Step::Event(event);
            }
            // Out of budget with input left, the turn is over, and the
            // replies wait for the next one. Writing them now would let the
            // peer send its next message at once: with one message less in
            // our hands, more of what it keeps in flight waits in the
            // socket, and a buffer the kernel sized for one message per
            // turn (see "Receive buffers" on `Driver`) closes the window.
            if *ctx.budget == 0 && self.readable && !self.eof {
                return Step::Deferred;
            }
            // Everything the application did in reaction to the input so
            // far goes out before more input is read.
            self.flush(ctx.now);
            match self.core.poll_transport() {
                Some(TransportAction::HalfClose) => {
                    if let Err(error) = self.stream.shutdown(Shutdown::Write) {
                        self.core.handle_transport_error(ctx.now, &error);
                    }
                    continue;
                }
                Some(TransportAction::Close) => return Step::Free,
                None => {}
            }
            // Writing may have brought `Drained`, or a failure `Closed`.
            if let Some(event) = self.core.poll_event() {
                return Step::Event(event);
            }
            let backpressured = self.core.state() != State::Closed && self.core.is_backpressured();
            if !self.readable || self.eof || backpressured {
                return Step::Idle;
            }
            // A large frame's payload goes straight into the core's message
            // buffer; the rest through the shared buffer.
            let read = match self.core.payload_buffer() {
                Some(room) => {
                    let len = room.len();
                    read_once(
                        &self.stream,
                        &mut self.readable,
                        self.read_closed,
                        len,
                        |s| SockRef::from(s).recv(room),
                    )
                    .map(|n| (n, true))
                }
                None => {
                    let len = self.core.read_size(ctx.read_buf.len());
                    self.read(&mut ctx.read_buf[..len]).map(|n| (n, false))
                }
            };
            match read {
                Ok((0, _)) => {
                    self.eof = true;
                    self.core.handle_eof(ctx.now);
                }
                Ok((n, direct)) => {
                    *ctx.budget = ctx.budget.saturating_sub(n);
                    if direct {
                        // SAFETY: `recv` wrote the first `n` bytes of the
                        // room `payload_buffer` offered, and nothing touched
                        // the core in between.
                        #[allow(unsafe_code)]
                        unsafe {
                            self.core.handle_payload_read(ctx.now, n)
                        };
                    } else {
                        self.core.handle_input(ctx.now, &ctx.read_buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    self.eof = true;
                    self.fail(ctx.now, error);
                }
            }
        }
    }

    /// The transport broke: the core ends the connection (or its teardown).
    fn fail(&mut self, now: Instant, error: io::Error) {
        tracing::debug!(%error, "transport failed");
        self.core.handle_transport_error(now, &error);
    }

    /// Reads once into `buf`: see [`read_once`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_once(
            &self.stream,
            &mut self.readable,
            self.read_closed,
            buf.len(),
            |mut s| s.read(buf),
        )
    }

    /// Writes what the core offers until it offers nothing or the socket is
    /// full, with vectored writes (large payloads are never copied).
    fn flush(&mut self, now: Instant) {
        while !self.write_blocked {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let used = self.core.poll_transmit(&mut slices);
            if used == 0 {
                return;
            }
            match (&self.stream).write_vectored(&slices[..used]) {
                Ok(0) => return self.fail(now, io::ErrorKind::WriteZero.into()),
                Ok(written) => self.core.handle_written(now, written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return self.fail(now, error),
            }
        }
    }
}

/// Reads once from `stream` with `read`, which takes at most `len` bytes,
/// and keeps `readable` true while more may be waiting. `WouldBlock` means
/// the readiness is used up.
fn read_once(
    stream: &TcpStream,
    readable: &mut bool,
    read_closed: bool,
    len: usize,
    mut read: impl FnMut(&TcpStream) -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match read(stream) {
            Ok(n) => {
                // A short read emptied the socket: more data, or the peer's
                // FIN, will come with a new event, so skip the read that
                // would only say `WouldBlock`. Unless the event already said
                // the peer closed: then read on to the EOF.
                if n == 0 || (n < len && !read_closed) {
                    *readable = false;
                }
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                *readable = false;
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use mio::{Events, Poll};
    use sockeye_core::testing::Frame;

    use super::*;

    /// A server driver echoing every message, and a raw client socket, in
    /// one thread: each `round` is one turn of the caller's loop.
    struct EchoLoop {
        poll: Poll,
        events: Events,
        driver: Driver,
        client: std::net::TcpStream,
        /// What the client has read from the server.
        received: Vec<u8>,
    }

    impl EchoLoop {
        fn new(read_budget: usize) -> Self {
            let poll = Poll::new().unwrap();
            let mut driver = Driver::new(poll.registry(), 0..4, Config::default())
                .unwrap()
                .with_read_budget(read_budget);
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            client.set_nonblocking(true).unwrap();
            driver.listen(listener).unwrap();
            Self {
                poll,
                events: Events::with_capacity(16),
                driver,
                client,
                received: Vec::new(),
            }
        }

        fn round(&mut self) {
            let timeout = Some(Duration::from_millis(10));
            self.poll.poll(&mut self.events, timeout).unwrap();
            let now = Instant::now();
            for event in self.events.iter() {
                self.driver.handle_event(event, now);
            }
            self.driver.handle_timeouts(now);
            while let Some((id, event)) = self.driver.poll_event(now) {
                match event {
                    Event::Request(_) => self.driver.accept(id, now, Handshake::default()).unwrap(),
                    Event::Message(message) => {
                        self.driver.send(id, now, message).unwrap();
                    }
                    _ => {}
                }
            }
        }

        /// Reads what the server has written so far; returns its length.
        fn receive(&mut self) -> usize {
            let mut buf = [0; 64 * 1024];
            loop {
                match self.client.read(&mut buf) {
                    Ok(0) => panic!("the server closed"),
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return self.received.len(),
                    Err(e) => panic!("{e}"),
                }
            }
        }

        /// Runs rounds until `bytes` are written and the server has written
        /// `expect` bytes back; then forgets them.
        fn exchange(&mut self, mut bytes: &[u8], expect: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !bytes.is_empty() || self.receive() < expect {
                assert!(
                    Instant::now() < deadline,
                    "{} of {expect}",
                    self.received.len()
                );
                match self.client.write(bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                self.round();
            }
            assert_eq!(self.received.len(), expect);
            self.received.clear();
        }
    }

    /// A binary frame of `len` bytes from a client.
    fn client_frame(len: usize) -> Vec<u8> {
        Frame::binary(vec![7; len]).from_client().encode()
    }

    /// A connection that has used up its read budget ends its turn before
    /// it writes: the replies to what it read go out at the start of its
    /// next turn, before its next read. A peer that keeps several messages
    /// in flight then has one of them in the application's hands rather
    /// than in the socket, which is what keeps it off a zero window when
    /// the kernel's buffer is just big enough (see "Receive buffers").
    #[test]
    fn a_connection_out_of_budget_writes_its_replies_on_its_next_turn() {
        let mut echo = EchoLoop::new(1);
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        echo.exchange(request, 129);
        // After a large frame, the server reads `read_buffer_size` (4 KiB)
        // at a time through its buffer.
        echo.exchange(&client_frame(64 * 1024), 10 + 64 * 1024);

        // A small message and a large one, queued at once: the server's
        // next read (a full 4 KiB, so the socket may have more) takes the
        // first and uses up the budget of 1 byte.
        let mut both = client_frame(10);
        both.extend(client_frame(16 * 1024));
        assert_eq!(echo.client.write(&both).unwrap(), both.len());
        echo.round();
        assert_eq!(
            echo.receive(),
            0,
            "replied in the turn that used up the budget"
        );
        echo.exchange(&[], (2 + 10) + (4 + 16 * 1024));
    }
}
