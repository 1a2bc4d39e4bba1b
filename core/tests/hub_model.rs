//! The hub's guarantees over random interleavings: many users on two hubs
//! sharing one `Streams`, connecting, disconnecting, subscribing,
//! unsubscribing, publishing to users, lists, topics and everyone, reading
//! slowly or not at all, being closed as slow consumers, letting time pass
//! history's age, and resuming.
//!
//! The clients here know only what the wire tells them, and check it
//! against rules, not against a second implementation:
//!
//! - an item carries a stream the client receives: its own user's, `$all`,
//!   or a topic between `subscribed` and `unsubscribed`; its bytes are
//!   exactly what the streams' owner wrote at that position, and a publish
//!   to users names the client's user;
//! - each stream's items come in offset order with nothing missing: each
//!   is the one after the last, or a `gap` names the ones between, and a
//!   gap never covers a CRITICAL event;
//! - a resume that says `recovered: true` continues exactly where the
//!   client was; once everything is read, each stream a client receives is
//!   read up to the stream's last offset (so nothing was lost silently);
//! - limits and queue budgets hold at every step.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;
use sockeye_core::hub::{
    ConnectionId, CustomEvent, Entry, Error, Event, Hub, HubConfig, Identity, Namespace, Output,
    Position, Priority, Publication, Reply, Request, Resume, Stream, Streams, Target, Topic,
    UserId,
};

const USERS: usize = 5;
const SHARDS: usize = 2;
const TOPICS: [&str; 4] = ["room:a", "room:b", "bill:1", "news"];
const BUDGET: usize = 4096;

fn config() -> HubConfig {
    let mut config = HubConfig {
        queue_budget: BUDGET,
        max_subscriptions: 3,
        ..HubConfig::default()
    };
    config.defaults.history_size = 12;
    config.defaults.history_age = Duration::from_secs(60);
    config.namespaces.insert(
        "room".into(),
        Namespace {
            presence: true,
            client_publish: true,
            history_size: 6,
            ..config.defaults.clone()
        },
    );
    config
}

#[derive(Debug, Clone)]
enum Op {
    Connect {
        client: usize,
    },
    Disconnect {
        client: usize,
    },
    Subscribe {
        client: usize,
        topic: usize,
    },
    Unsubscribe {
        client: usize,
        topic: usize,
    },
    ClientPublish {
        client: usize,
        topic: usize,
    },
    Presence {
        client: usize,
        topic: usize,
    },
    Publish {
        target: TargetPick,
        priority: Priority,
        pad: usize,
    },
    Read {
        client: usize,
        up_to: usize,
    },
    Serve {
        requests: usize,
    },
    Arrive {
        shard: usize,
        replies: usize,
    },
    Advance {
        seconds: u64,
    },
    Settle,
}

#[derive(Debug, Clone)]
enum TargetPick {
    User(usize),
    Users(Vec<usize>),
    Topic(usize),
    All,
}

/// Clients: two per user, so a user can hold several connections.
const CLIENTS: usize = USERS * 2;

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let priority = prop_oneof![
        Just(Priority::Low),
        Just(Priority::Normal),
        Just(Priority::High),
        Just(Priority::Critical),
    ];
    let target = prop_oneof![
        (0..USERS).prop_map(TargetPick::User),
        proptest::collection::vec(0..USERS, 1..4).prop_map(TargetPick::Users),
        (0..TOPICS.len()).prop_map(TargetPick::Topic),
        Just(TargetPick::All),
    ];
    prop_oneof![
        3 => client.clone().prop_map(|client| Op::Connect { client }),
        1 => client.clone().prop_map(|client| Op::Disconnect { client }),
        3 => (client.clone(), 0..TOPICS.len()).prop_map(|(client, topic)| Op::Subscribe { client, topic }),
        1 => (client.clone(), 0..TOPICS.len()).prop_map(|(client, topic)| Op::Unsubscribe { client, topic }),
        2 => (client.clone(), 0..TOPICS.len()).prop_map(|(client, topic)| Op::ClientPublish { client, topic }),
        1 => (client.clone(), 0..TOPICS.len()).prop_map(|(client, topic)| Op::Presence { client, topic }),
        6 => (target, priority, 0..1500usize).prop_map(|(target, priority, pad)| Op::Publish { target, priority, pad }),
        4 => (client, 1..40usize).prop_map(|(client, up_to)| Op::Read { client, up_to }),
        4 => (0..6usize).prop_map(|requests| Op::Serve { requests }),
        4 => (0..SHARDS, 0..12usize).prop_map(|(shard, replies)| Op::Arrive { shard, replies }),
        1 => (1..90u64).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Settle),
    ]
}

/// Where a client is in one stream, as the wire told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    epoch: u64,
    offset: u64,
}

#[derive(Debug, Default)]
struct Client {
    conn: Option<ConnectionId>,
    /// Survives reconnections: where to resume from.
    cursors: HashMap<String, Cursor>,
    /// Topics between `subscribed` and `unsubscribed`.
    active: BTreeSet<String>,
    /// Topics asked for and not answered yet.
    asked: BTreeSet<String>,
    /// Active topics the client has asked to leave.
    leaving: BTreeSet<String>,
    /// Streams whose last start said `recovered: true`.
    recovered: BTreeSet<String>,
    /// Topics the client wants, to subscribe again after a reconnection.
    wanted: BTreeSet<String>,
    welcomed: bool,
    /// Requests the hub must refuse (forbidden, over the cap, disabled).
    expected_errors: usize,
    /// Answers owed: `published` and `presence`.
    expected_published: usize,
    expected_presence: usize,
}

/// What the streams' owner wrote, by stream and position: the truth every
/// received item is compared with.
#[derive(Default)]
struct Log {
    items: HashMap<(Stream, u64, u64), (Bytes, Priority)>,
    /// Publish id → the users of a publish to users.
    recipients: HashMap<u64, BTreeSet<usize>>,
}

struct World {
    streams: Streams,
    hubs: Vec<Hub>,
    clients: Vec<Client>,
    log: Log,
    now: Instant,
    next_publish: u64,
    shard_of: HashMap<ConnectionId, usize>,
    /// Requests on their way to the streams' owner.
    requests: VecDeque<Request>,
    /// Replies on their way to each hub.
    replies: Vec<VecDeque<Reply>>,
    /// Slow consumers closed, to see that the cases get there.
    closes: usize,
}

fn user_of(client: usize) -> usize {
    client % USERS
}

fn user_id(user: usize) -> UserId {
    UserId::new(&format!("u{user}")).unwrap()
}

/// User 0 may subscribe to nothing; the others to the rooms; the odd ones
/// to bills and news too.
fn identity(user: usize) -> Identity {
    let patterns: &[&str] = match user {
        0 => &[],
        u if u % 2 == 1 => &["room:*", "bill:*", "news"],
        _ => &["room:*"],
    };
    Identity::new(&format!("u{user}"))
        .unwrap()
        .with_topics(patterns.iter().copied())
        .unwrap()
}

fn parse_epoch(text: &str) -> u64 {
    u64::from_str_radix(text, 16).unwrap()
}

fn position_of(cursor: Option<&Cursor>) -> Option<Position> {
    cursor.map(|c| Position {
        epoch: sockeye_core::hub::Epoch::parse(&format!("{:016x}", c.epoch)).unwrap(),
        offset: c.offset,
    })
}

impl World {
    fn new() -> Self {
        Self {
            streams: Streams::new(config(), 0x5eed).unwrap(),
            hubs: (0..SHARDS)
                .map(|i| Hub::shard(config(), i).unwrap())
                .collect(),
            clients: (0..CLIENTS).map(|_| Client::default()).collect(),
            log: Log::default(),
            now: Instant::now(),
            next_publish: 0,
            shard_of: HashMap::new(),
            requests: VecDeque::new(),
            replies: (0..SHARDS).map(|_| VecDeque::new()).collect(),
            closes: 0,
        }
    }

    /// Users are sharded by user, so each user's limit is one hub's.
    fn shard(client: usize) -> usize {
        user_of(client) % SHARDS
    }

    fn stream_of(&self, client: usize, name: &str) -> Stream {
        match name {
            "$user" => Stream::User(user_id(user_of(client))),
            "$all" => Stream::All,
            topic => Stream::Topic(Topic::new(topic).unwrap()),
        }
    }

    /// Takes what the hubs and the streams' owner put out, into the model's
    /// in-flight queues: requests to the owner, replies to each hub. They
    /// arrive when `Serve` and `Arrive` say, as over a real network of
    /// channels, but each queue keeps its order.
    fn collect(&mut self) {
        for shard in 0..SHARDS {
            while let Some(output) = self.hubs[shard].poll_output() {
                match output {
                    Output::Request(request) => self.requests.push_back(request),
                    Output::Ready(_) => {}
                    Output::Close {
                        connection, code, ..
                    } => {
                        assert_eq!(code, sockeye_core::hub::close_codes::SLOW_CONSUMER);
                        let client = self
                            .clients
                            .iter()
                            .position(|c| c.conn == Some(connection))
                            .expect("a client's connection");
                        // Whatever it had queued is gone with it.
                        self.hubs[shard].disconnect(connection).unwrap();
                        self.forget_connection(client);
                        self.closes += 1;
                    }
                }
            }
        }
        while let Some(reply) = self.streams.poll_reply() {
            if let Reply::Deliver(entry) = &reply {
                self.record(entry);
            }
            match reply.connection() {
                None => {
                    for in_flight in &mut self.replies {
                        in_flight.push_back(reply.clone());
                    }
                }
                Some(connection) => self.replies[connection.shard()].push_back(reply),
            }
        }
        self.check_budgets();
    }

    /// The owner handles up to `n` requests.
    fn serve(&mut self, n: usize) {
        for _ in 0..n {
            let Some(request) = self.requests.pop_front() else {
                break;
            };
            self.streams.handle(self.now, 0, request);
            self.collect();
        }
    }

    /// Up to `n` replies arrive at a hub.
    fn arrive(&mut self, shard: usize, n: usize) {
        for _ in 0..n {
            let Some(reply) = self.replies[shard].pop_front() else {
                break;
            };
            self.hubs[shard].handle_reply(reply);
            self.collect();
        }
    }

    /// Moves everything in flight until nothing is.
    fn deliver_all(&mut self) {
        while !self.requests.is_empty() || self.replies.iter().any(|r| !r.is_empty()) {
            self.serve(usize::MAX);
            for shard in 0..SHARDS {
                self.arrive(shard, usize::MAX);
            }
        }
    }

    fn record(&mut self, entry: &Entry) {
        let epoch = parse_epoch(&entry.position.epoch.to_string());
        let key = (entry.stream.clone(), epoch, entry.position.offset);
        let previous = self
            .log
            .items
            .insert(key, (entry.message.clone(), entry.priority));
        assert!(previous.is_none(), "two items at one position: {entry:?}");
    }

    fn check_budgets(&self) {
        for client in &self.clients {
            if let Some(conn) = client.conn {
                let hub = &self.hubs[self.shard_of[&conn]];
                let queued = hub.queued_bytes(conn).unwrap();
                assert!(queued <= BUDGET, "{queued} bytes queued, over the budget");
            }
        }
        for (user, hub_user) in (0..USERS).map(|u| (u, u % SHARDS)) {
            let live = (0..CLIENTS)
                .filter(|&c| user_of(c) == user && self.clients[c].conn.is_some())
                .count();
            assert!(
                live <= config().max_connections_per_user,
                "user {user} on hub {hub_user}"
            );
        }
    }

    fn forget_connection(&mut self, client: usize) {
        let c = &mut self.clients[client];
        if let Some(conn) = c.conn.take() {
            self.shard_of.remove(&conn);
        }
        c.active.clear();
        c.asked.clear();
        c.leaving.clear();
        c.welcomed = false;
        c.expected_errors = 0;
        c.expected_published = 0;
        c.expected_presence = 0;
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect { client } => self.connect(client),
            Op::Disconnect { client } => {
                if let Some(conn) = self.clients[client].conn {
                    self.hubs[self.shard_of[&conn]].disconnect(conn).unwrap();
                    self.forget_connection(client);
                }
            }
            Op::Subscribe { client, topic } => {
                self.clients[client].wanted.insert(TOPICS[topic].into());
                self.subscribe(client, TOPICS[topic]);
            }
            Op::Unsubscribe { client, topic } => self.unsubscribe(client, TOPICS[topic]),
            Op::ClientPublish { client, topic } => self.client_request(client, TOPICS[topic], true),
            Op::Presence { client, topic } => self.client_request(client, TOPICS[topic], false),
            Op::Publish {
                ref target,
                priority,
                pad,
            } => self.publish(target, priority, pad),
            Op::Read { client, up_to } => self.read(client, up_to),
            Op::Serve { requests } => self.serve(requests),
            Op::Arrive { shard, replies } => self.arrive(shard, replies),
            Op::Advance { seconds } => {
                self.now += Duration::from_secs(seconds);
                self.streams.handle_timeout(self.now);
            }
            Op::Settle => self.settle(),
        }
        self.collect();
    }

    fn connect(&mut self, client: usize) {
        if self.clients[client].conn.is_some() {
            return;
        }
        let user = user_of(client);
        let shard = Self::shard(client);
        let c = &self.clients[client];
        let resume = Resume {
            user: position_of(c.cursors.get("$user")),
            all: position_of(c.cursors.get("$all")),
        };
        let live = (0..CLIENTS)
            .filter(|&other| user_of(other) == user && self.clients[other].conn.is_some())
            .count();
        match self.hubs[shard].connect(identity(user), resume) {
            Ok(conn) => {
                assert!(
                    live < config().max_connections_per_user,
                    "a 4th connection admitted"
                );
                self.clients[client].conn = Some(conn);
                self.shard_of.insert(conn, shard);
                let wanted: Vec<String> = self.clients[client].wanted.iter().cloned().collect();
                for topic in wanted {
                    self.subscribe(client, &topic);
                }
            }
            Err(Error::TooManyUserConnections { .. }) => {
                assert_eq!(
                    live,
                    config().max_connections_per_user,
                    "refused below the limit"
                );
            }
            Err(other) => panic!("connect: {other}"),
        }
    }

    fn subscribe(&mut self, client: usize, topic: &str) {
        let Some(conn) = self.clients[client].conn else {
            return;
        };
        let c = &self.clients[client];
        if c.active.contains(topic) || c.asked.contains(topic) || c.leaving.contains(topic) {
            return;
        }
        let allowed = identity(user_of(client)).may_subscribe(&Topic::new(topic).unwrap());
        let full = c.active.len() - c.leaving.len() + c.asked.len() >= config().max_subscriptions;
        let resume = match c.cursors.get(topic) {
            Some(cursor) => format!(
                r#","resume":{{"epoch":"{:016x}","offset":{}}}"#,
                cursor.epoch, cursor.offset
            ),
            None => String::new(),
        };
        let text = format!(r#"{{"type":"subscribe","topic":"{topic}"{resume}}}"#);
        let c = &mut self.clients[client];
        if allowed && !full {
            c.asked.insert(topic.into());
        } else {
            c.expected_errors += 1;
        }
        self.hubs[self.shard_of[&conn]]
            .handle_message(conn, &text)
            .unwrap();
    }

    fn unsubscribe(&mut self, client: usize, topic: &str) {
        self.clients[client].wanted.remove(topic);
        let Some(conn) = self.clients[client].conn else {
            return;
        };
        // Only once the subscription is answered: before, the answer would
        // race the request in this model's bookkeeping.
        let c = &mut self.clients[client];
        if !c.active.contains(topic) || !c.leaving.insert(topic.into()) {
            return;
        }
        let text = format!(r#"{{"type":"unsubscribe","topic":"{topic}"}}"#);
        self.hubs[self.shard_of[&conn]]
            .handle_message(conn, &text)
            .unwrap();
    }

    /// A client's publish into a topic, or its question of who is there:
    /// answered, or refused when its patterns or the namespace say no.
    fn client_request(&mut self, client: usize, topic: &str, publish: bool) {
        let Some(conn) = self.clients[client].conn else {
            return;
        };
        let allowed = identity(user_of(client)).may_subscribe(&Topic::new(topic).unwrap())
            && topic.starts_with("room:");
        let text = if publish {
            let id = self.next_publish;
            self.next_publish += 1;
            format!(r#"{{"type":"publish","topic":"{topic}","event":"said","data":{{"p":{id}}}}}"#)
        } else {
            format!(r#"{{"type":"presence","topic":"{topic}"}}"#)
        };
        let c = &mut self.clients[client];
        match (allowed, publish) {
            (false, _) => c.expected_errors += 1,
            (true, true) => c.expected_published += 1,
            (true, false) => c.expected_presence += 1,
        }
        self.hubs[self.shard_of[&conn]]
            .handle_message(conn, &text)
            .unwrap();
    }

    fn publish(&mut self, target: &TargetPick, priority: Priority, pad: usize) {
        let id = self.next_publish;
        self.next_publish += 1;
        let target = match target {
            TargetPick::User(u) => {
                self.log.recipients.insert(id, [*u].into());
                Target::User(user_id(*u))
            }
            TargetPick::Users(users) => {
                self.log
                    .recipients
                    .insert(id, users.iter().copied().collect());
                Target::Users(users.iter().map(|&u| user_id(u)).collect())
            }
            TargetPick::Topic(t) => Target::Topic(Topic::new(TOPICS[*t]).unwrap()),
            TargetPick::All => Target::All,
        };
        let event = Event::Custom(CustomEvent {
            name: "e".into(),
            data: serde_json::json!({ "p": id, "pad": "x".repeat(pad) }),
        });
        self.streams
            .publish(
                self.now,
                Publication {
                    target,
                    event,
                    priority: Some(priority),
                    timestamp_ms: id,
                },
            )
            .unwrap();
    }

    fn read(&mut self, client: usize, up_to: usize) {
        for _ in 0..up_to {
            let Some(conn) = self.clients[client].conn else {
                return;
            };
            let shard = self.shard_of[&conn];
            let Some(message) = self.hubs[shard].poll_message(conn) else {
                return;
            };
            self.check(client, &message);
        }
    }

    /// Reads everything, then checks that every stream each client receives
    /// is read to its end.
    fn settle(&mut self) {
        // Reading can close slow consumers... no: closes come from
        // deliveries, so deliver everything, then read everything.
        self.deliver_all();
        for client in 0..CLIENTS {
            self.read(client, usize::MAX);
        }
        self.check_presence();
        for client in 0..CLIENTS {
            let c = &self.clients[client];
            if c.conn.is_none() {
                continue;
            }
            assert!(c.welcomed, "client {client}: no welcome");
            assert!(
                c.asked.is_empty(),
                "client {client}: unanswered {:?}",
                c.asked
            );
            assert_eq!(c.expected_errors, 0, "client {client}: errors owed");
            assert_eq!(
                (c.expected_published, c.expected_presence),
                (0, 0),
                "client {client}: answers owed"
            );
            let names = ["$user".to_owned(), "$all".to_owned()]
                .into_iter()
                .chain(c.active.iter().cloned());
            for name in names {
                let stream = self.stream_of(client, &name);
                let head = self
                    .streams
                    .position(&stream)
                    .expect("a received stream is kept");
                let cursor = c.cursors[&name];
                assert_eq!(
                    (cursor.epoch, cursor.offset),
                    (parse_epoch(&head.epoch.to_string()), head.offset),
                    "client {client} is behind in {name}"
                );
            }
        }
    }

    /// Each room's presence is its subscribed connections, by user.
    fn check_presence(&self) {
        for topic in TOPICS.iter().filter(|t| t.starts_with("room:")) {
            let mut want: std::collections::BTreeMap<String, usize> = Default::default();
            for (client, c) in self.clients.iter().enumerate() {
                if c.conn.is_some() && c.active.contains(*topic) {
                    *want.entry(format!("u{}", user_of(client))).or_default() += 1;
                }
            }
            let got: std::collections::BTreeMap<String, usize> = self
                .streams
                .presence(&Topic::new(topic).unwrap())
                .into_iter()
                .map(|(user, n)| (user.to_string(), n))
                .collect();
            assert_eq!(got, want, "presence of {topic}");
        }
    }

    /// Checks one message a client read against the rules.
    fn check(&mut self, client: usize, message: &[u8]) {
        let value: Value = serde_json::from_slice(message).expect("the hub writes JSON");
        let kind = value["type"].as_str().unwrap().to_owned();
        let c = &self.clients[client];
        if kind != "welcome" {
            assert!(c.welcomed, "{kind} before welcome");
        }
        match kind.as_str() {
            "welcome" => {
                assert!(!c.welcomed, "a second welcome");
                assert_eq!(value["user"], format!("u{}", user_of(client)));
                for name in ["$user", "$all"] {
                    self.start(client, name, &value["streams"][name]);
                }
                self.clients[client].welcomed = true;
            }
            "subscribed" => {
                let topic = value["topic"].as_str().unwrap().to_owned();
                let c = &mut self.clients[client];
                assert!(c.asked.remove(&topic), "subscribed to {topic} unasked");
                c.active.insert(topic.clone());
                self.start(client, &topic, &value);
            }
            "unsubscribed" => {
                let topic = value["topic"].as_str().unwrap();
                let c = &mut self.clients[client];
                assert!(c.leaving.remove(topic), "unsubscribed unasked");
                assert!(c.active.remove(topic), "unsubscribed twice");
            }
            "error" => {
                let c = &mut self.clients[client];
                assert!(c.expected_errors > 0, "an error nobody asked for: {value}");
                c.expected_errors -= 1;
                let code = value["code"].as_str().unwrap();
                assert!(
                    [
                        "forbidden",
                        "too_many_subscriptions",
                        "publish_disabled",
                        "presence_disabled"
                    ]
                    .contains(&code),
                    "{value}"
                );
            }
            "published" => {
                let c = &mut self.clients[client];
                assert!(c.expected_published > 0, "published unasked: {value}");
                c.expected_published -= 1;
            }
            "presence" => {
                let c = &mut self.clients[client];
                assert!(c.expected_presence > 0, "presence unasked: {value}");
                c.expected_presence -= 1;
                for (user, count) in value["users"].as_object().unwrap() {
                    let count = count.as_u64().unwrap() as usize;
                    assert!(
                        user.starts_with('u') && (1..=CLIENTS).contains(&count),
                        "{value}"
                    );
                }
            }
            "event" | "join" | "leave" => self.item(client, &value, message),
            "gap" => {
                let name = value["stream"].as_str().unwrap().to_owned();
                self.entitled(client, &name);
                let stream = self.stream_of(client, &name);
                let epoch = parse_epoch(value["epoch"].as_str().unwrap());
                let (from, to) = (
                    value["from"].as_u64().unwrap(),
                    value["to"].as_u64().unwrap(),
                );
                let cursor = self.clients[client].cursors.get_mut(&name).unwrap();
                assert_eq!(cursor.epoch, epoch, "a gap in another epoch");
                assert_eq!(
                    from,
                    cursor.offset + 1,
                    "a gap that does not start where {name} was"
                );
                assert!(to >= from);
                for offset in from..=to {
                    let (_, priority) = &self.log.items[&(stream.clone(), epoch, offset)];
                    assert_ne!(*priority, Priority::Critical, "a CRITICAL event dropped");
                }
                cursor.offset = to;
            }
            other => panic!("an unexpected message {other}: {value}"),
        }
    }

    /// Where a stream starts, from a `welcome` entry or a `subscribed`.
    fn start(&mut self, client: usize, name: &str, start: &Value) {
        let epoch = parse_epoch(start["epoch"].as_str().unwrap());
        let offset = start["offset"].as_u64().unwrap();
        let c = &mut self.clients[client];
        let resumed = c.cursors.get(name).copied();
        match start.get("recovered").and_then(Value::as_bool) {
            Some(true) => {
                c.recovered.insert(name.into());
                let was = resumed.expect("recovered without a resume");
                assert_eq!(was.epoch, epoch, "recovered across epochs");
                assert!(was.offset <= offset);
                // The replay follows, from where the client was.
            }
            Some(false) | None => {
                c.recovered.remove(name);
                assert_eq!(
                    start.get("recovered").is_some(),
                    resumed.is_some(),
                    "`recovered` answers exactly the resumes"
                );
                c.cursors.insert(name.into(), Cursor { epoch, offset });
            }
        }
    }

    fn entitled(&self, client: usize, name: &str) {
        let c = &self.clients[client];
        let receives = name == "$user" || name == "$all" || c.active.contains(name);
        assert!(
            receives,
            "client {client} got an item of {name}, which it does not receive"
        );
    }

    fn item(&mut self, client: usize, value: &Value, message: &[u8]) {
        let name = value["stream"].as_str().unwrap().to_owned();
        self.entitled(client, &name);
        let stream = self.stream_of(client, &name);
        let epoch = parse_epoch(value["epoch"].as_str().unwrap());
        let offset = value["offset"].as_u64().unwrap();
        let (bytes, _) = self
            .log
            .items
            .get(&(stream, epoch, offset))
            .unwrap_or_else(|| panic!("client {client}: an item nobody wrote at {name}/{offset}"));
        assert_eq!(&bytes[..], message, "client {client}: not what was written");
        if name == "$user" {
            let publish = value["data"]["p"].as_u64().unwrap();
            if let Some(users) = self.log.recipients.get(&publish) {
                assert!(users.contains(&user_of(client)), "another user's event");
            }
        }
        let cursor = self.clients[client].cursors.get_mut(&name).unwrap();
        assert_eq!(cursor.epoch, epoch, "an item of another epoch");
        assert_eq!(
            offset,
            cursor.offset + 1,
            "client {client}: {name} skipped or repeated"
        );
        cursor.offset = offset;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_hub_keeps_its_guarantees(ops in proptest::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
        }
        world.apply(&Op::Settle);
    }
}

/// A client that reconnects at once resumes with `recovered: true` and
/// misses nothing; the presence of a room follows its subscribers.
#[test]
fn a_prompt_resume_recovers_everything() {
    let mut world = World::new();
    world.apply(&Op::Connect { client: 1 });
    world.apply(&Op::Subscribe {
        client: 1,
        topic: 0,
    });
    world.apply(&Op::Settle);
    world.apply(&Op::Disconnect { client: 1 });
    for pad in [1, 2, 3] {
        world.apply(&Op::Publish {
            target: TargetPick::User(1),
            priority: Priority::Critical,
            pad,
        });
        world.apply(&Op::Publish {
            target: TargetPick::Topic(0),
            priority: Priority::Low,
            pad,
        });
    }
    world.apply(&Op::Connect { client: 1 });
    world.apply(&Op::Settle);
    let client = &world.clients[1];
    assert!(client.recovered.contains("$user") && client.recovered.contains("room:a"));
    assert_eq!(client.cursors["$user"].offset, 3);
    // Subscribed, left (a leave), subscribed again (a join), three events.
    assert_eq!(client.cursors["room:a"].offset, 1 + 1 + 1 + 3);
}
