//! The delivery side: connections, their subscriptions and their queues.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use super::protocol::{self, ClientMessage, ErrorCode, Refusal, RequestId, Start};
use super::queue::{Push, Queue};
use super::streams::{Entry, Position, Recovery, Reply, Request};
use super::{Error, HubConfig, Stream, Topic, TopicPattern, UserId};
use crate::CloseCode;

/// A hub connection's id: unique in the hub, and never used again for
/// another connection.
///
/// ```
/// # use sockeye_core::hub::{Hub, HubConfig, Identity, Resume};
/// let mut hub = Hub::new(HubConfig::default())?;
/// let a = hub.connect(Identity::new("alice")?, Resume::default())?;
/// hub.disconnect(a)?;
/// let b = hub.connect(Identity::new("alice")?, Resume::default())?;
/// assert_ne!(a, b);
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

/// The most hubs that can share one [`Streams`](super::Streams).
pub const MAX_SHARDS: usize = 256;

impl ConnectionId {
    /// The index of the hub the connection is in (see [`Hub::shard`]), which
    /// is where the streams' answers for it go.
    pub fn shard(self) -> usize {
        (self.0 % MAX_SHARDS as u64) as usize
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hashes a [`ConnectionId`] by one multiplication and a fold. The ids are the hub's
/// own counter, not chosen by anyone who could aim them at one bucket, so
/// the flooding resistance of the default hasher buys nothing here.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The table picks buckets by the low bits, which a product of
        // multiples of 256 (the shard in the low byte) leaves equal.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Who a connection is: a user the caller has authenticated (from a token,
/// say), and the topics that user may subscribe to.
///
/// ```
/// use sockeye_core::hub::{Identity, Topic};
/// let alice = Identity::new("alice")?.with_topics(["bill:*", "news"])?;
/// assert!(alice.may_subscribe(&Topic::new("bill:42")?));
/// assert!(!alice.may_subscribe(&Topic::new("bill")?));
/// # Ok::<(), sockeye_core::hub::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The patterns of the topics the user may subscribe to (none by
    /// default: the user's own stream and `$all` only).
    pub topics: Arc<[TopicPattern]>,
}

impl Identity {
    /// A user who may subscribe to no topic.
    pub fn new(user: &str) -> Result<Self, Error> {
        Ok(Self {
            user: UserId::new(user)?,
            topics: Arc::new([]),
        })
    }

    /// The same user, allowed the topics of `patterns`.
    pub fn with_topics<'a>(
        self,
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Error> {
        let topics = patterns
            .into_iter()
            .map(TopicPattern::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            topics: topics.into(),
            ..self
        })
    }

    /// Whether a pattern of the identity's allows `topic`.
    pub fn may_subscribe(&self, topic: &Topic) -> bool {
        self.topics.iter().any(|pattern| pattern.matches(topic))
    }
}

/// Where a reconnecting client was in the streams every connection starts
/// on, as it says in its upgrade request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    /// In the user's stream, `$user`.
    pub user: Option<Position>,
    /// In `$all`.
    pub all: Option<Position>,
}

/// What the hub needs done, from [`Hub::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Hand this to the streams' owner ([`Streams::handle`](super::Streams::handle)).
    Request(Request),
    /// The connection had nothing to send and now has: take its messages
    /// with [`Hub::poll_message`] while its `Connection` is not
    /// backpressured.
    Ready(ConnectionId),
    /// Close the connection's WebSocket with this code and reason, then
    /// [`disconnect`](Hub::disconnect) it. Its queue is already emptied, so
    /// the close goes out at once.
    Close {
        /// The connection.
        connection: ConnectionId,
        /// A code of [`close_codes`](super::close_codes), or 1013.
        code: CloseCode,
        /// Why, for the close frame.
        reason: &'static str,
    },
}

/// The delivery side of the hub: connections, each of one user, with their
/// subscriptions and outbound queues. It decides what JSON text goes to
/// which connection, and when; each connection's WebSocket
/// [`Connection`](crate::Connection) frames it.
///
/// Several hubs can share one [`Streams`](super::Streams), each holding
/// some of the connections (one per worker thread, say): the streams'
/// owner assigns offsets once, and each hub delivers to its own
/// connections, so no fan-out holds anything shared.
///
/// # The drain contract
///
/// After every input ([`connect`](Self::connect),
/// [`disconnect`](Self::disconnect), [`handle_message`](Self::handle_message),
/// [`handle_reply`](Self::handle_reply)):
///
/// 1. take every [`Output`] with [`poll_output`](Self::poll_output): carry
///    requests to the streams' owner (and its replies back, in order,
///    through [`handle_reply`](Self::handle_reply)), wake the writers of
///    connections that became ready, close the ones it says to close;
/// 2. for each connection with messages, move them into its `Connection`
///    with [`poll_message`](Self::poll_message) and `Connection::send`,
///    **only while** `Connection::is_backpressured()` is false. Resume on
///    the `Connection`'s `Event::Drained`.
///
/// Step 2 is the backpressure seam. A slow reader's backlog stays in the
/// hub's queue, where it has a byte budget
/// ([`HubConfig::queue_budget`]) and a policy: when full, events are
/// dropped lowest priority first and oldest first, each leaving a `gap`
/// message in its place; a CRITICAL event that cannot fit closes the
/// connection as a slow consumer ([`close_codes::SLOW_CONSUMER`](super::close_codes::SLOW_CONSUMER)),
/// and the client gets it back when it resumes.
///
/// ```
/// use std::time::Instant;
/// use sockeye_core::hub::{CustomEvent, Event, Hub, HubConfig, Identity, Output, Publication, Resume, Streams, Target, UserId};
///
/// let config = HubConfig::default();
/// let mut streams = Streams::new(config.clone(), 42)?;
/// let mut hub = Hub::new(config)?;
/// let now = Instant::now();
/// let alice = hub.connect(Identity::new("alice")?, Resume::default())?;
///
/// // The caller's loop: requests to the streams, replies back (`carry`
/// // does it for one hub in one process).
/// let mut pump = |hub: &mut Hub, streams: &mut Streams| loop {
///     while let Some(output) = hub.poll_output() {
///         if let Output::Request(request) = output {
///             streams.handle(now, 0, request);
///         }
///     }
///     let Some(reply) = streams.poll_reply() else { break };
///     hub.handle_reply(reply);
/// };
/// pump(&mut hub, &mut streams);
/// let welcome = hub.poll_message(alice).unwrap();
/// assert!(welcome.starts_with(br#"{"type":"welcome","connection":""#));
///
/// let event = Event::Custom(CustomEvent { name: "hello".into(), data: serde_json::json!("hi") });
/// let target = Target::User(UserId::new("alice")?);
/// streams.publish(now, Publication { target, event, priority: None, timestamp_ms: 1 })?;
/// pump(&mut hub, &mut streams);
/// let message = hub.poll_message(alice).unwrap();
/// assert!(message.starts_with(br#"{"type":"event","stream":"$user","#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Hub {
    config: HubConfig,
    shard: u64,
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Looked up for every message a connection takes: hashed cheaply.
    ids: HashMap<ConnectionId, usize, BuildHasherDefault<IdHasher>>,
    users: HashMap<UserId, Vec<usize>>,
    /// Each topic's subscribers: the connection's slot and the
    /// subscription's id in it.
    topics: HashMap<Topic, Vec<(usize, u32)>>,
    connections: usize,
    next_id: u64,
    outputs: VecDeque<Output>,
    /// Connections that became ready, apart from `outputs`: one a
    /// connection, so the room it keeps is small, and not given back after
    /// each fan-out.
    ready: VecDeque<ConnectionId>,
}

struct Conn {
    id: ConnectionId,
    identity: Identity,
    /// `$user` (id 0), `$all` (id 1), then the topics.
    subs: Vec<Sub>,
    next_sub: u32,
    queue: Queue,
    errors: u32,
    /// The `welcome` went out (so the streams started).
    welcomed: bool,
    /// What came before the `welcome` could: answers, and subscriptions
    /// ready to start. The `welcome` is the first message of a connection.
    early: Vec<Early>,
    /// Told to close: nothing more is queued.
    closing: bool,
}

struct Sub {
    id: u32,
    stream: Stream,
    state: SubState,
    /// The offset of the last item queued (or replayed) for it; live items
    /// at or before it are ones the connection has.
    last: u64,
    /// The client's request id, for `subscribed`.
    request: Option<RequestId>,
    resume: bool,
}

enum Early {
    Message(Bytes),
    Start(u32),
}

struct Answer {
    held: Vec<Entry>,
    position: Position,
    recovery: Recovery,
}

enum SubState {
    /// Asked for; live items are held until the streams' owner answers.
    Waiting { held: Vec<Entry> },
    /// Answered, waiting for the `welcome` (the streams every connection
    /// starts on). Boxed: it is brief, and every subscription carries the
    /// state's size.
    Answered(Box<Answer>),
    /// Receiving.
    Live,
}

/// Outputs or replies a drained queue keeps room for: a burst (a thousand
/// connections at once) leaves no lasting buffer behind.
const KEPT_ROOM: usize = 64;

/// Gives back the room of a drained queue beyond [`KEPT_ROOM`].
pub(crate) fn release_burst<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > KEPT_ROOM {
        queue.shrink_to(KEPT_ROOM);
    }
}

const USER_SUB: u32 = 0;
const ALL_SUB: u32 = 1;

impl Hub {
    /// A hub with no connections, the only one on its [`Streams`](super::Streams).
    pub fn new(config: HubConfig) -> Result<Self, Error> {
        Self::shard(config, 0)
    }

    /// Hub number `index` of several on one [`Streams`](super::Streams):
    /// the connection ids of each are its own ([`ConnectionId::shard`]
    /// gives `index` back). Put all the connections of a user on one hub
    /// (by a hash of the user id, say), so that the per-user limit, which
    /// each hub counts, is the user's.
    pub fn shard(config: HubConfig, index: usize) -> Result<Self, Error> {
        config.validate()?;
        if index >= MAX_SHARDS {
            return Err(Error::Config {
                field: "shard index",
                reason: "must be below 256",
            });
        }
        Ok(Self {
            shard: index as u64,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::default(),
            users: HashMap::new(),
            topics: HashMap::new(),
            connections: 0,
            next_id: 1,
            outputs: VecDeque::new(),
            ready: VecDeque::new(),
        })
    }

    /// Adds a connection of an authenticated user, before its upgrade is
    /// accepted: a refusal ([`Error::http_status`]) is the answer to the
    /// upgrade request. The connection starts on the user's stream and
    /// `$all`, resuming them where `resume` says; its first message is the
    /// `welcome`.
    pub fn connect(&mut self, identity: Identity, resume: Resume) -> Result<ConnectionId, Error> {
        if self.connections >= self.config.max_connections {
            return Err(Error::TooManyConnections {
                limit: self.config.max_connections,
            });
        }
        let held = self.users.get(&identity.user).map_or(0, Vec::len);
        if held >= self.config.max_connections_per_user {
            return Err(Error::TooManyUserConnections {
                user: identity.user.to_string(),
                limit: self.config.max_connections_per_user,
            });
        }
        let id = ConnectionId(self.next_id * MAX_SHARDS as u64 + self.shard);
        self.next_id += 1;
        let system = |sub_id, stream, resume: Option<Position>| Sub {
            id: sub_id,
            stream,
            state: SubState::Waiting { held: Vec::new() },
            last: 0,
            request: None,
            resume: resume.is_some(),
        };
        let mut subs = Vec::with_capacity(2);
        subs.extend([
            system(USER_SUB, Stream::User(identity.user.clone()), resume.user),
            system(ALL_SUB, Stream::All, resume.all),
        ]);
        for (sub, from) in subs.iter().zip([resume.user, resume.all]) {
            self.outputs.push_back(Output::Request(Request::Subscribe {
                connection: id,
                user: identity.user.clone(),
                stream: sub.stream.clone(),
                resume: from,
            }));
        }
        let conn = Conn {
            id,
            identity,
            subs,
            next_sub: ALL_SUB + 1,
            queue: Queue::new(self.config.queue_budget),
            errors: 0,
            welcomed: false,
            early: Vec::new(),
            closing: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(conn);
                slot
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        let user = self.slots[slot]
            .as_ref()
            .expect("just put")
            .identity
            .user
            .clone();
        self.users.entry(user).or_default().push(slot);
        self.ids.insert(id, slot);
        self.connections += 1;
        Ok(id)
    }

    /// Removes a connection (its WebSocket closed, for whatever reason).
    /// What it had queued is dropped; a client that comes back resumes.
    pub fn disconnect(&mut self, connection: ConnectionId) -> Result<(), Error> {
        let slot = self
            .ids
            .remove(&connection)
            .ok_or(Error::UnknownConnection(connection))?;
        let conn = self.slots[slot].take().expect("ids name live slots");
        self.free.push(slot);
        self.connections -= 1;
        if let Some(slots) = self.users.get_mut(&conn.identity.user) {
            slots.retain(|&s| s != slot);
            if slots.is_empty() {
                self.users.remove(&conn.identity.user);
            }
        }
        for sub in conn.subs {
            if let Stream::Topic(topic) = &sub.stream {
                self.forget_subscriber(topic, slot);
            }
            self.outputs
                .push_back(Output::Request(Request::Unsubscribe {
                    connection,
                    user: conn.identity.user.clone(),
                    stream: sub.stream,
                }));
        }
        Ok(())
    }

    /// Handles a text message from a client. Whatever is wrong with it is
    /// answered with an `error`; past
    /// [`HubConfig::max_errors`] errors the connection is closed
    /// ([`close_codes::TOO_MANY_ERRORS`](super::close_codes::TOO_MANY_ERRORS)).
    pub fn handle_message(&mut self, connection: ConnectionId, text: &str) -> Result<(), Error> {
        let slot = *self
            .ids
            .get(&connection)
            .ok_or(Error::UnknownConnection(connection))?;
        if self.conn(slot).closing {
            return Ok(());
        }
        let answer = if text.len() > self.config.max_client_message {
            Err(Refusal {
                code: ErrorCode::TooLarge,
                message: format!(
                    "a message may have at most {} bytes, not {}",
                    self.config.max_client_message,
                    text.len()
                ),
                id: None,
            })
        } else {
            ClientMessage::parse(text).and_then(|message| self.request(slot, message))
        };
        if let Err(refusal) = answer {
            self.refuse(slot, &refusal);
        }
        Ok(())
    }

    /// Handles a reply of the streams' owner: deliveries (all of them, in
    /// order) and the answers for this hub's connections. Answers for
    /// connections gone meanwhile are ignored. Returns to how many
    /// connections a delivery was queued (0 for an answer).
    pub fn handle_reply(&mut self, reply: Reply) -> usize {
        match reply {
            Reply::Deliver(entry) => return self.deliver(&entry),
            Reply::Subscribed {
                connection,
                stream,
                position,
                recovery,
            } => self.subscribed(connection, &stream, position, recovery),
            Reply::Presence {
                connection,
                topic,
                users,
                id,
            } => self.answer(connection, protocol::presence(&topic, &users, id.as_ref())),
            Reply::Published {
                connection,
                topic,
                position,
                id,
            } => self.answer(
                connection,
                protocol::published(&topic, position, id.as_ref()),
            ),
            Reply::Refused {
                connection,
                stream,
                refusal,
            } => {
                let Some(&slot) = self.ids.get(&connection) else {
                    return 0;
                };
                match stream {
                    Some(Stream::Topic(topic)) => {
                        // The answer to the client's subscribe, with its id.
                        let id = self
                            .conn_mut(slot)
                            .subs
                            .iter_mut()
                            .find(|s| s.stream.topic() == Some(&topic))
                            .and_then(|s| s.request.take());
                        self.drop_subscription(slot, &topic);
                        self.refuse(slot, &Refusal { id, ..refusal });
                    }
                    // Without its own streams a connection is of no use.
                    Some(_) => self.close(slot, CloseCode::TRY_AGAIN_LATER, "the hub is full"),
                    None => self.refuse(slot, &refusal),
                }
            }
        }
        0
    }

    /// Delivers a stream's item to this hub's connections that receive the
    /// stream. Returns to how many it was queued.
    pub fn deliver(&mut self, entry: &Entry) -> usize {
        let mut queued = 0;
        match &entry.stream {
            Stream::User(user) => {
                let Some(slots) = self.users.get_mut(user).map(std::mem::take) else {
                    return 0;
                };
                for &slot in &slots {
                    queued += usize::from(self.offer(slot, USER_SUB, entry));
                }
                // Offering never connects or disconnects.
                self.users.insert(user.clone(), slots);
            }
            Stream::All => {
                for slot in 0..self.slots.len() {
                    if self.slots[slot].is_some() {
                        queued += usize::from(self.offer(slot, ALL_SUB, entry));
                    }
                }
            }
            Stream::Topic(topic) => {
                let Some(subscribers) = self.topics.get_mut(topic) else {
                    return 0;
                };
                let subscribers = std::mem::take(subscribers);
                for &(slot, sub) in &subscribers {
                    queued += usize::from(self.offer(slot, sub, entry));
                }
                if let Some(list) = self.topics.get_mut(topic) {
                    // Offering never subscribes or unsubscribes.
                    *list = subscribers;
                }
            }
        }
        queued
    }

    /// The next outbound message of a connection, if it has one.
    pub fn poll_message(&mut self, connection: ConnectionId) -> Option<Bytes> {
        let slot = *self.ids.get(&connection)?;
        self.slots[slot].as_mut()?.queue.pop()
    }

    /// The next thing the hub needs done.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        release_burst(&mut self.outputs);
        self.ready.pop_front().map(Output::Ready)
    }

    /// How many connections the hub holds.
    pub fn len(&self) -> usize {
        self.connections
    }

    /// Whether the hub holds no connection.
    pub fn is_empty(&self) -> bool {
        self.connections == 0
    }

    /// Bytes queued for a connection.
    pub fn queued_bytes(&self, connection: ConnectionId) -> Option<usize> {
        let slot = *self.ids.get(&connection)?;
        Some(self.slots[slot].as_ref()?.queue.bytes())
    }

    /// Events dropped from a connection's queue so far, by priority: low,
    /// normal, high, critical (always 0).
    pub fn dropped(&self, connection: ConnectionId) -> Option<[u64; 4]> {
        let slot = *self.ids.get(&connection)?;
        Some(self.slots[slot].as_ref()?.queue.dropped())
    }

    // ---- inside ---------------------------------------------------------

    fn conn(&self, slot: usize) -> &Conn {
        self.slots[slot].as_ref().expect("a live slot")
    }

    fn conn_mut(&mut self, slot: usize) -> &mut Conn {
        self.slots[slot].as_mut().expect("a live slot")
    }

    fn request(&mut self, slot: usize, message: ClientMessage) -> Result<(), Refusal> {
        let refuse = |code, message: String, id: &Option<RequestId>| Refusal {
            code,
            message,
            id: id.clone(),
        };
        let conn = self.conn(slot);
        let connection = conn.id;
        let permitted = |verb: &str, topic: &Topic, id: &Option<RequestId>| {
            if conn.identity.may_subscribe(topic) {
                return Ok(());
            }
            Err(refuse(
                ErrorCode::Forbidden,
                format!("{verb}: {topic:?} is not among the topics this user may subscribe to"),
                id,
            ))
        };
        match message {
            ClientMessage::Subscribe { topic, resume, id } => {
                permitted("subscribe", &topic, &id)?;
                if conn.subs.iter().any(|s| s.stream.topic() == Some(&topic)) {
                    return Err(refuse(
                        ErrorCode::AlreadySubscribed,
                        format!("subscribe: already subscribed to {topic:?}"),
                        &id,
                    ));
                }
                let topics = conn.subs.len() - 2;
                if topics >= self.config.max_subscriptions {
                    return Err(refuse(
                        ErrorCode::TooManySubscriptions,
                        format!(
                            "subscribe: a connection may have at most {} subscriptions",
                            self.config.max_subscriptions
                        ),
                        &id,
                    ));
                }
                let user = conn.identity.user.clone();
                let conn = self.conn_mut(slot);
                let sub_id = conn.next_sub;
                conn.next_sub += 1;
                // Room for one more only: most connections have few topics,
                // and each keeps its room while it lives.
                conn.subs.reserve_exact(1);
                conn.subs.push(Sub {
                    id: sub_id,
                    stream: Stream::Topic(topic.clone()),
                    state: SubState::Waiting { held: Vec::new() },
                    last: 0,
                    request: id,
                    resume: resume.is_some(),
                });
                self.topics
                    .entry(topic.clone())
                    .or_default()
                    .push((slot, sub_id));
                self.outputs.push_back(Output::Request(Request::Subscribe {
                    connection,
                    user,
                    stream: Stream::Topic(topic),
                    resume,
                }));
            }
            ClientMessage::Unsubscribe { topic, id } => {
                if !conn.subs.iter().any(|s| s.stream.topic() == Some(&topic)) {
                    return Err(refuse(
                        ErrorCode::NotSubscribed,
                        format!("unsubscribe: not subscribed to {topic:?}"),
                        &id,
                    ));
                }
                let user = conn.identity.user.clone();
                self.drop_subscription(slot, &topic);
                self.outputs
                    .push_back(Output::Request(Request::Unsubscribe {
                        connection,
                        user,
                        stream: Stream::Topic(topic.clone()),
                    }));
                self.queue_message(slot, protocol::unsubscribed(&topic, id.as_ref()));
            }
            ClientMessage::Presence { topic, id } => {
                permitted("presence", &topic, &id)?;
                if !self.config.namespace(topic.namespace()).presence {
                    return Err(refuse(
                        ErrorCode::PresenceDisabled,
                        format!("presence: the namespace of {topic:?} does not track presence"),
                        &id,
                    ));
                }
                self.outputs.push_back(Output::Request(Request::Presence {
                    connection,
                    topic,
                    id,
                }));
            }
            ClientMessage::Publish { topic, event, id } => {
                permitted("publish", &topic, &id)?;
                if !self.config.namespace(topic.namespace()).client_publish {
                    return Err(refuse(
                        ErrorCode::PublishDisabled,
                        format!(
                            "publish: the namespace of {topic:?} does not take publishes from clients"
                        ),
                        &id,
                    ));
                }
                self.outputs.push_back(Output::Request(Request::Publish {
                    connection,
                    topic,
                    event,
                    id,
                }));
            }
        }
        Ok(())
    }

    fn refuse(&mut self, slot: usize, refusal: &Refusal) {
        let conn = self.conn_mut(slot);
        conn.errors += 1;
        if conn.errors > self.config.max_errors {
            self.close(
                slot,
                super::close_codes::TOO_MANY_ERRORS,
                "too many invalid messages",
            );
            return;
        }
        self.queue_message(slot, protocol::error(refusal));
    }

    fn answer(&mut self, connection: ConnectionId, message: Bytes) {
        if let Some(&slot) = self.ids.get(&connection) {
            self.queue_message(slot, message);
        }
    }

    /// Removes a topic subscription from a connection and the topic's list.
    fn drop_subscription(&mut self, slot: usize, topic: &Topic) {
        self.conn_mut(slot)
            .subs
            .retain(|s| s.stream.topic() != Some(topic));
        self.forget_subscriber(topic, slot);
    }

    fn forget_subscriber(&mut self, topic: &Topic, slot: usize) {
        if let Some(list) = self.topics.get_mut(topic) {
            list.retain(|&(s, _)| s != slot);
            if list.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    fn subscribed(
        &mut self,
        connection: ConnectionId,
        stream: &Stream,
        position: Position,
        recovery: Recovery,
    ) {
        let Some(&slot) = self.ids.get(&connection) else {
            return;
        };
        let conn = self.conn_mut(slot);
        let Some(sub) = conn.subs.iter_mut().find(|s| &s.stream == stream) else {
            // Unsubscribed before the answer came.
            return;
        };
        if !matches!(sub.state, SubState::Waiting { .. }) {
            return;
        }
        let SubState::Waiting { held } = std::mem::replace(&mut sub.state, SubState::Live) else {
            unreachable!("checked above");
        };
        let sub_id = sub.id;
        if stream.topic().is_none() {
            sub.state = SubState::Answered(Box::new(Answer {
                held,
                position,
                recovery,
            }));
            self.welcome_when_answered(slot);
        } else if !conn.welcomed {
            sub.state = SubState::Answered(Box::new(Answer {
                held,
                position,
                recovery,
            }));
            conn.early.push(Early::Start(sub_id));
        } else {
            self.start_topic(slot, sub_id, position, recovery, held);
        }
    }

    /// Queues a topic's `subscribed`, then starts it.
    fn start_topic(
        &mut self,
        slot: usize,
        sub_id: u32,
        position: Position,
        recovery: Recovery,
        held: Vec<Entry>,
    ) {
        let conn = self.conn_mut(slot);
        let Some(sub) = conn.subs.iter_mut().find(|s| s.id == sub_id) else {
            return;
        };
        let topic = sub.stream.topic().expect("a topic").clone();
        let start = Start {
            position,
            recovered: sub
                .resume
                .then_some(matches!(recovery, Recovery::Recovered(_))),
        };
        let message = protocol::subscribed(&topic, &start, sub.request.take().as_ref());
        self.queue_message(slot, message);
        self.start(slot, sub_id, position, recovery, held);
    }

    /// Sends the `welcome` once both streams every connection starts on are
    /// answered, then starts them.
    fn welcome_when_answered(&mut self, slot: usize) {
        let conn = self.conn_mut(slot);
        let answered = conn.subs[..2]
            .iter()
            .all(|s| matches!(s.state, SubState::Answered(_)));
        if !answered || conn.welcomed {
            return;
        }
        conn.welcomed = true;
        let mut starts = Vec::with_capacity(2);
        let mut pending = Vec::with_capacity(2);
        for sub in &mut conn.subs[..2] {
            let SubState::Answered(answer) = std::mem::replace(&mut sub.state, SubState::Live)
            else {
                unreachable!("checked above");
            };
            let Answer {
                held,
                position,
                recovery,
            } = *answer;
            let recovered = sub
                .resume
                .then_some(matches!(recovery, Recovery::Recovered(_)));
            starts.push((
                sub.stream.wire_name(),
                Start {
                    position,
                    recovered,
                },
            ));
            pending.push((sub.id, position, recovery, held));
        }
        let message = protocol::welcome(conn.id, &conn.identity.user, &starts);
        let early = std::mem::take(&mut conn.early);
        self.queue_message(slot, message);
        for (sub, position, recovery, held) in pending {
            self.start(slot, sub, position, recovery, held);
        }
        for item in early {
            match item {
                Early::Message(message) => self.queue_message(slot, message),
                Early::Start(sub_id) => {
                    let Some(sub) = self.conn_mut(slot).subs.iter_mut().find(|s| s.id == sub_id)
                    else {
                        continue;
                    };
                    let SubState::Answered(answer) =
                        std::mem::replace(&mut sub.state, SubState::Live)
                    else {
                        continue;
                    };
                    let Answer {
                        held,
                        position,
                        recovery,
                    } = *answer;
                    self.start_topic(slot, sub_id, position, recovery, held);
                }
            }
        }
    }

    /// Queues what a subscription starts with: the replay, then the live
    /// items held meanwhile that came after it.
    fn start(
        &mut self,
        slot: usize,
        sub_id: u32,
        position: Position,
        recovery: Recovery,
        held: Vec<Entry>,
    ) {
        if let Some(sub) = self.conn_mut(slot).subs.iter_mut().find(|s| s.id == sub_id) {
            sub.last = position.offset;
        }
        if let Recovery::Recovered(replay) = recovery {
            for entry in &replay {
                self.queue_entry(slot, entry);
            }
        }
        // Those at or before the start are in the replay, or before the
        // subscription: `offer` skips them.
        for entry in &held {
            self.offer(slot, sub_id, entry);
        }
    }

    /// Offers a live item to one subscription of a connection. Whether it
    /// was queued.
    fn offer(&mut self, slot: usize, sub_id: u32, entry: &Entry) -> bool {
        let budget = self.config.queue_budget;
        let Some(conn) = self.slots[slot].as_mut() else {
            return false;
        };
        if conn.closing {
            return false;
        }
        let Some(sub) = conn.subs.iter_mut().find(|s| s.id == sub_id) else {
            return false;
        };
        let held = match &mut sub.state {
            SubState::Waiting { held } => held,
            SubState::Answered(answer) => &mut answer.held,
            SubState::Live => {
                if entry.position.offset <= sub.last {
                    // Replayed already, or from before the subscription.
                    return false;
                }
                sub.last = entry.position.offset;
                return self.queue_entry(slot, entry);
            }
        };
        let held_bytes: usize = held.iter().map(|e| e.message.len()).sum();
        if held_bytes + entry.message.len() <= budget {
            held.push(entry.clone());
            return false;
        }
        // The streams' owner is so slow to answer that what came meanwhile
        // would not fit the queue.
        self.close(slot, super::close_codes::SLOW_CONSUMER, "too far behind");
        false
    }

    fn queue_entry(&mut self, slot: usize, entry: &Entry) -> bool {
        let conn = self.conn_mut(slot);
        let was_empty = conn.queue.is_empty();
        match conn.queue.push_event(entry) {
            Push::Queued => {
                if was_empty {
                    let id = conn.id;
                    self.ready.push_back(id);
                }
                true
            }
            Push::Dropped => {
                if was_empty {
                    let id = conn.id;
                    self.ready.push_back(id);
                }
                false
            }
            Push::Full => {
                self.close(slot, super::close_codes::SLOW_CONSUMER, "too far behind");
                false
            }
        }
    }

    fn queue_message(&mut self, slot: usize, message: Bytes) {
        let budget = self.config.queue_budget;
        let conn = self.conn_mut(slot);
        if conn.closing {
            return;
        }
        if !conn.welcomed {
            let early: usize = conn
                .early
                .iter()
                .map(|item| match item {
                    Early::Message(m) => m.len(),
                    Early::Start(_) => 0,
                })
                .sum();
            if early + message.len() > budget {
                self.close(slot, super::close_codes::SLOW_CONSUMER, "too far behind");
            } else {
                conn.early.push(Early::Message(message));
            }
            return;
        }
        let was_empty = conn.queue.is_empty();
        match conn.queue.push_message(message) {
            Push::Full => self.close(slot, super::close_codes::SLOW_CONSUMER, "too far behind"),
            _ if was_empty => {
                let id = conn.id;
                self.ready.push_back(id);
            }
            _ => {}
        }
    }

    fn close(&mut self, slot: usize, code: CloseCode, reason: &'static str) {
        let budget = self.config.queue_budget;
        let conn = self.conn_mut(slot);
        if conn.closing {
            return;
        }
        conn.closing = true;
        conn.queue = Queue::new(budget);
        let connection = conn.id;
        self.outputs.push_back(Output::Close {
            connection,
            code,
            reason,
        });
    }
}
