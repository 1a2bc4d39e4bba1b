//! The one owner of every stream's epoch, offsets, history and presence.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::event::{Event, Priority};
use super::protocol::{self, ErrorCode, Refusal, RequestId};
use super::{ConnectionId, Error, HubConfig, Stream, Topic, UserId};

/// The most users one publish may name.
pub const MAX_RECIPIENTS: usize = 10_000;

/// A stream's epoch: it changes whenever the stream's history is lost, so
/// a position from before the loss cannot be mistaken for one after it.
/// Clients see it as 16 hex digits.
///
/// ```
/// use sockeye_core::hub::Epoch;
/// let epoch = Epoch::parse("00000000000000ff").unwrap();
/// assert_eq!(epoch.to_string(), "00000000000000ff");
/// assert_eq!(Epoch::parse("ff"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u64);

impl Epoch {
    /// Reads an epoch as the hub writes it: 16 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        digits.then(|| u64::from_str_radix(text, 16).ok().map(Self))?
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A place in a stream: its epoch and an offset. As a stream's current
/// position, the offset is that of its last event (0 before the first); as
/// a client's resume point, that of the last event it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: Epoch,
    /// The offset.
    pub offset: u64,
}

/// One item of a stream, as every recipient gets it: the message is
/// written once, and every queue that holds it shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream.
    pub stream: Stream,
    /// Its epoch and offset.
    pub position: Position,
    /// What it is dropped by when a queue is full.
    pub priority: Priority,
    /// The wire message (`event`, `join` or `leave`).
    pub message: Bytes,
}

/// Where to deliver a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of one user (the user's stream).
    User(UserId),
    /// Every connection of each user named (each user's stream).
    Users(Vec<UserId>),
    /// Every connection subscribed to a topic.
    Topic(Topic),
    /// Every connection (the `$all` stream).
    All,
}

/// A publish: what, to whom, how much it matters, and when (wall-clock
/// milliseconds since the Unix epoch, as the caller's clock says).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Where it goes.
    pub target: Target,
    /// The event.
    pub event: Event,
    /// Its priority; `None` for the event's default.
    pub priority: Option<Priority>,
    /// Its timestamp.
    pub timestamp_ms: u64,
}

/// What a hub asks of the streams' owner. The caller carries each request
/// from [`Hub::poll_output`](super::Hub::poll_output) to
/// [`Streams::handle`], in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A connection starts receiving a stream, from now or from where it
    /// was.
    Subscribe {
        /// The connection.
        connection: ConnectionId,
        /// Its user, for presence.
        user: UserId,
        /// The stream.
        stream: Stream,
        /// The position the client had, if it asks to resume.
        resume: Option<Position>,
    },
    /// A connection stops receiving a stream.
    Unsubscribe {
        /// The connection.
        connection: ConnectionId,
        /// Its user, for presence.
        user: UserId,
        /// The stream.
        stream: Stream,
    },
    /// A connection asks who is in a topic.
    Presence {
        /// The connection.
        connection: ConnectionId,
        /// The topic.
        topic: Topic,
        /// The client's request id.
        id: Option<RequestId>,
    },
    /// A connection publishes into a topic.
    Publish {
        /// The connection.
        connection: ConnectionId,
        /// The topic.
        topic: Topic,
        /// The event.
        event: Event,
        /// The client's request id.
        id: Option<RequestId>,
    },
}

/// How a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No resume was asked for: live events from the position on.
    Fresh,
    /// Exactly the events after the client's position, in order (possibly
    /// none).
    Recovered(Vec<Entry>),
    /// The client's position cannot be resumed from: another epoch, an
    /// offset never reached, or events no longer in history. Nothing is
    /// replayed.
    NotRecovered,
}

/// What the streams' owner answers. [`Reply::Deliver`] goes to every hub;
/// the others go to the hub of [`Reply::connection`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A new item of a stream, for every subscriber.
    Deliver(Entry),
    /// The start of a subscription.
    Subscribed {
        /// The connection.
        connection: ConnectionId,
        /// The stream.
        stream: Stream,
        /// The stream's position when the subscription started: live
        /// events come after it.
        position: Position,
        /// What to replay first.
        recovery: Recovery,
    },
    /// The answer to a presence question.
    Presence {
        /// The connection.
        connection: ConnectionId,
        /// The topic.
        topic: Topic,
        /// Each user subscribed, with its subscribed connections.
        users: Vec<(UserId, usize)>,
        /// The client's request id.
        id: Option<RequestId>,
    },
    /// A client's publish, done.
    Published {
        /// The connection.
        connection: ConnectionId,
        /// The topic.
        topic: Topic,
        /// The event's position.
        position: Position,
        /// The client's request id.
        id: Option<RequestId>,
    },
    /// A request that could not be done.
    Refused {
        /// The connection.
        connection: ConnectionId,
        /// The stream a refused subscription was for.
        stream: Option<Stream>,
        /// Why.
        refusal: Refusal,
    },
}

impl Reply {
    /// The connection a reply is for (`None`: a delivery, for every hub).
    pub fn connection(&self) -> Option<ConnectionId> {
        match self {
            Self::Deliver(_) => None,
            Self::Subscribed { connection, .. }
            | Self::Presence { connection, .. }
            | Self::Published { connection, .. }
            | Self::Refused { connection, .. } => Some(*connection),
        }
    }
}

/// The one owner of every stream: it assigns each item the next offset,
/// keeps history, answers resumes, and counts presence. The in-memory
/// engine; a Redis-backed one takes the same requests and gives the same
/// replies.
///
/// # The drain contract
///
/// After every input ([`publish`](Self::publish), [`handle`](Self::handle),
/// [`handle_timeout`](Self::handle_timeout)), take every reply with
/// [`poll_reply`](Self::poll_reply) and hand it to the hubs, in order:
/// deliveries to every hub, the rest to the hub of the connection. Then arm
/// a timer at [`poll_timeout`](Self::poll_timeout), for history's age
/// limit. Replies keep the order in which items got their offsets, which is
/// what lets a hub join a replay and live events with no gap and no
/// duplicate.
///
/// ```
/// use std::time::Instant;
/// use sockeye_core::hub::{CustomEvent, Event, HubConfig, Publication, Reply, Streams, Target, Topic};
///
/// let mut streams = Streams::new(HubConfig::default(), 7)?;
/// let now = Instant::now();
/// let event = Event::Custom(CustomEvent { name: "price".into(), data: serde_json::json!({"eur": 3}) });
/// let target = Target::Topic(Topic::new("stock:acme")?);
/// let positions = streams.publish(now, Publication { target, event, priority: None, timestamp_ms: 0 })?;
/// assert_eq!(positions[0].offset, 1);
/// let Some(Reply::Deliver(entry)) = streams.poll_reply() else { panic!() };
/// assert!(std::str::from_utf8(&entry.message)?.starts_with(r#"{"type":"event","stream":"stock:acme""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Streams {
    config: HubConfig,
    streams: HashMap<Stream, State>,
    /// Streams nobody holds, by when they were let go: the first is
    /// forgotten first when room is needed.
    idle: BTreeMap<u64, Stream>,
    idle_clock: u64,
    /// When each stream's oldest item leaves history, soonest first. An
    /// item can be out of date (its stream trimmed or forgotten since); it
    /// is checked when it comes up.
    expiries: BinaryHeap<Reverse<(Instant, Stream)>>,
    random: u64,
    replies: VecDeque<Reply>,
}

struct State {
    epoch: Epoch,
    last: u64,
    history: VecDeque<Kept>,
    history_bytes: usize,
    limits: Limits,
    holders: usize,
    idle_since: Option<u64>,
    /// Subscribed connections per user, where the namespace tracks
    /// presence.
    presence: Option<BTreeMap<UserId, usize>>,
}

struct Kept {
    expires: Instant,
    entry: Entry,
}

#[derive(Clone, Copy)]
struct Limits {
    size: usize,
    age: Duration,
    bytes: usize,
}

impl Streams {
    /// An owner with no streams. `seed` is where epochs come from: give
    /// each process a different one (from the OS), so that a restarted
    /// process starts new epochs.
    pub fn new(config: HubConfig, seed: u64) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            streams: HashMap::new(),
            idle: BTreeMap::new(),
            idle_clock: 0,
            expiries: BinaryHeap::new(),
            random: seed,
            replies: VecDeque::new(),
        })
    }

    /// Publishes an event: gives it the next offset of each stream it goes
    /// to, keeps it in history, and queues its delivery. Returns the
    /// position in each stream, in the order of the target's users.
    pub fn publish(
        &mut self,
        now: Instant,
        publication: Publication,
    ) -> Result<Vec<Position>, Error> {
        let Publication {
            target,
            event,
            priority,
            timestamp_ms,
        } = publication;
        event.validate()?;
        let priority = priority.unwrap_or_else(|| event.default_priority());
        let streams = match target {
            Target::User(user) => vec![Stream::User(user)],
            Target::Users(users) => {
                if users.is_empty() || users.len() > MAX_RECIPIENTS {
                    return Err(Error::Recipients {
                        count: users.len(),
                        limit: MAX_RECIPIENTS,
                    });
                }
                let mut seen = std::collections::HashSet::new();
                users
                    .into_iter()
                    .filter(|user| seen.insert(user.clone()))
                    .map(Stream::User)
                    .collect()
            }
            Target::Topic(topic) => vec![Stream::Topic(topic)],
            Target::All => vec![Stream::All],
        };
        // Every stream must be there before any gets the event: a publish
        // is whole or not at all. The targets are made the streams idle
        // the shortest, so making room for one never forgets another.
        let missing = streams
            .iter()
            .filter(|s| !self.streams.contains_key(s))
            .count();
        let idle_targets = streams
            .iter()
            .filter(|s| {
                self.streams
                    .get(s)
                    .is_some_and(|state| state.idle_since.is_some())
            })
            .count();
        let room = self.config.max_streams - self.streams.len();
        if missing > room + (self.idle.len() - idle_targets) {
            return Err(Error::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        for stream in &streams {
            self.touch(stream);
        }
        for stream in &streams {
            self.ensure(stream)?;
        }
        Ok(streams
            .into_iter()
            .map(|stream| {
                let name = stream.wire_name().to_owned();
                self.append(now, stream, priority, |at| {
                    protocol::event(&name, at, &event, priority, timestamp_ms)
                })
            })
            .collect())
    }

    /// Handles a hub's request, in the order the hub made them.
    /// `timestamp_ms` is the wall clock now, for a client's publish.
    pub fn handle(&mut self, now: Instant, timestamp_ms: u64, request: Request) {
        match request {
            Request::Subscribe {
                connection,
                user,
                stream,
                resume,
            } => self.subscribe(now, connection, user, stream, resume),
            Request::Unsubscribe { user, stream, .. } => self.unsubscribe(now, &user, &stream),
            Request::Presence {
                connection,
                topic,
                id,
            } => {
                let users = self.presence(&topic);
                self.replies.push_back(Reply::Presence {
                    connection,
                    topic,
                    users,
                    id,
                });
            }
            Request::Publish {
                connection,
                topic,
                event,
                id,
            } => {
                let publication = Publication {
                    target: Target::Topic(topic.clone()),
                    event,
                    priority: None,
                    timestamp_ms,
                };
                let reply = match self.publish(now, publication) {
                    Ok(positions) => Reply::Published {
                        connection,
                        topic,
                        position: positions[0],
                        id,
                    },
                    Err(error) => Reply::Refused {
                        connection,
                        stream: None,
                        refusal: refusal(error, id),
                    },
                };
                self.replies.push_back(reply);
            }
        }
    }

    /// The next reply, in order.
    pub fn poll_reply(&mut self) -> Option<Reply> {
        let reply = self.replies.pop_front();
        if reply.is_none() {
            super::hub::release_burst(&mut self.replies);
        }
        reply
    }

    /// When the oldest item kept leaves history by age.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.peek().map(|Reverse((at, _))| *at)
    }

    /// Lets items past their namespace's age leave history.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, stream))) = self.expiries.pop() else {
                break;
            };
            let Some(state) = self.streams.get_mut(&stream) else {
                continue;
            };
            while state
                .history
                .front()
                .is_some_and(|kept| kept.expires <= now)
            {
                let kept = state.history.pop_front().expect("there is a front");
                state.history_bytes -= kept.entry.message.len();
            }
            if let Some(front) = state.history.front() {
                self.expiries.push(Reverse((front.expires, stream)));
            }
        }
    }

    /// A stream's current position, if the owner keeps the stream.
    pub fn position(&self, stream: &Stream) -> Option<Position> {
        self.streams.get(stream).map(|state| Position {
            epoch: state.epoch,
            offset: state.last,
        })
    }

    /// Who is subscribed to a topic, if its namespace tracks presence: each
    /// user with its subscribed connections, by user.
    pub fn presence(&self, topic: &Topic) -> Vec<(UserId, usize)> {
        let stream = Stream::Topic(topic.clone());
        self.streams
            .get(&stream)
            .and_then(|state| state.presence.as_ref())
            .map(|users| users.iter().map(|(u, n)| (u.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// How many streams are kept.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes of history kept, over every stream.
    pub fn history_bytes(&self) -> usize {
        self.streams.values().map(|s| s.history_bytes).sum()
    }

    fn subscribe(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        user: UserId,
        stream: Stream,
        resume: Option<Position>,
    ) {
        if let Err(error) = self.ensure(&stream) {
            self.replies.push_back(Reply::Refused {
                connection,
                stream: Some(stream),
                refusal: refusal(error, None),
            });
            return;
        }
        let state = self.streams.get_mut(&stream).expect("ensured");
        state.holders += 1;
        if let Some(since) = state.idle_since.take() {
            self.idle.remove(&since);
        }
        let joined = state.presence.as_mut().is_some_and(|users| {
            let count = users.entry(user.clone()).or_insert(0);
            *count += 1;
            *count == 1
        });
        if joined {
            self.presence_change(now, &stream, &user, true);
        }
        let state = &self.streams[&stream];
        let position = Position {
            epoch: state.epoch,
            offset: state.last,
        };
        let recovery = match resume {
            None => Recovery::Fresh,
            Some(from) => recover(state, from),
        };
        self.replies.push_back(Reply::Subscribed {
            connection,
            stream,
            position,
            recovery,
        });
    }

    fn unsubscribe(&mut self, now: Instant, user: &UserId, stream: &Stream) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        state.holders = state.holders.saturating_sub(1);
        let left = state.presence.as_mut().is_some_and(|users| {
            let Some(count) = users.get_mut(user) else {
                return false;
            };
            *count -= 1;
            if *count == 0 {
                users.remove(user);
                return true;
            }
            false
        });
        if left {
            self.presence_change(now, stream, user, false);
        }
        let state = self.streams.get_mut(stream).expect("still there");
        if state.holders == 0 {
            self.idle_clock += 1;
            state.idle_since = Some(self.idle_clock);
            self.idle.insert(self.idle_clock, stream.clone());
        }
    }

    fn presence_change(&mut self, now: Instant, stream: &Stream, user: &UserId, joined: bool) {
        let topic = stream.topic().expect("only topics track presence").clone();
        self.append(now, stream.clone(), Priority::Normal, |at| {
            protocol::presence_change(&topic, at, user, joined)
        });
    }

    /// Makes an idle stream the one idle the shortest.
    fn touch(&mut self, stream: &Stream) {
        if let Some(state) = self.streams.get_mut(stream)
            && let Some(since) = state.idle_since
        {
            self.idle.remove(&since);
            self.idle_clock += 1;
            state.idle_since = Some(self.idle_clock);
            self.idle.insert(self.idle_clock, stream.clone());
        }
    }

    /// Makes sure the owner keeps `stream`, forgetting the stream idle the
    /// longest if there is no room.
    fn ensure(&mut self, stream: &Stream) -> Result<(), Error> {
        if self.streams.contains_key(stream) {
            return Ok(());
        }
        if self.streams.len() >= self.config.max_streams {
            let Some((_, forgotten)) = self.idle.pop_first() else {
                return Err(Error::TooManyStreams {
                    limit: self.config.max_streams,
                });
            };
            self.streams.remove(&forgotten);
        }
        let namespace = match stream {
            Stream::Topic(topic) => self.config.namespace(topic.namespace()),
            Stream::User(_) | Stream::All => &self.config.defaults,
        };
        let limits = Limits {
            size: namespace.history_size,
            age: namespace.history_age,
            bytes: namespace.history_bytes,
        };
        let presence = (namespace.presence && stream.topic().is_some()).then(BTreeMap::new);
        self.idle_clock += 1;
        self.idle.insert(self.idle_clock, stream.clone());
        let epoch = Epoch(self.next_random());
        self.streams.insert(
            stream.clone(),
            State {
                epoch,
                last: 0,
                history: VecDeque::new(),
                history_bytes: 0,
                limits,
                holders: 0,
                idle_since: Some(self.idle_clock),
                presence,
            },
        );
        Ok(())
    }

    /// Gives the next offset of an ensured stream to the item `write`
    /// makes, keeps it in history and queues its delivery.
    fn append(
        &mut self,
        now: Instant,
        stream: Stream,
        priority: Priority,
        write: impl FnOnce(Position) -> Bytes,
    ) -> Position {
        let state = self.streams.get_mut(&stream).expect("ensured");
        state.last += 1;
        let position = Position {
            epoch: state.epoch,
            offset: state.last,
        };
        let entry = Entry {
            stream,
            position,
            priority,
            message: write(position),
        };
        let limits = state.limits;
        if limits.size > 0 && entry.message.len() <= limits.bytes {
            let was_empty = state.history.is_empty();
            state.history_bytes += entry.message.len();
            let expires = now + limits.age;
            state.history.push_back(Kept {
                expires,
                entry: entry.clone(),
            });
            while state.history.len() > limits.size || state.history_bytes > limits.bytes {
                let kept = state.history.pop_front().expect("over a bound");
                state.history_bytes -= kept.entry.message.len();
            }
            if was_empty {
                self.expiries.push(Reverse((expires, entry.stream.clone())));
            }
        } else {
            // An item history cannot hold makes everything before it
            // unrecoverable too: a replay must be whole.
            state.history.clear();
            state.history_bytes = 0;
        }
        self.replies.push_back(Reply::Deliver(entry));
        position
    }

    /// SplitMix64: epochs need to differ, not to be secret.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The events after `from`, if history has every one of them.
fn recover(state: &State, from: Position) -> Recovery {
    if from.epoch != state.epoch || from.offset > state.last {
        return Recovery::NotRecovered;
    }
    if from.offset == state.last {
        return Recovery::Recovered(Vec::new());
    }
    let first_kept = state.history.front().map(|kept| kept.entry.position.offset);
    match first_kept {
        Some(first) if first <= from.offset + 1 => {
            let skip = (from.offset + 1 - first) as usize;
            Recovery::Recovered(
                state
                    .history
                    .iter()
                    .skip(skip)
                    .map(|kept| kept.entry.clone())
                    .collect(),
            )
        }
        _ => Recovery::NotRecovered,
    }
}

fn refusal(error: Error, id: Option<RequestId>) -> Refusal {
    let code = match error {
        Error::TooManyStreams { .. } => ErrorCode::Unavailable,
        _ => ErrorCode::InvalidEvent,
    };
    Refusal {
        code,
        message: error.to_string(),
        id,
    }
}
