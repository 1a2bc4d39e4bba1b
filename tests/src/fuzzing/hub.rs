//! The `hub_client` target: client messages of any bytes into a hub, mixed
//! with publishes, reads and reconnections.
//!
//! The input is a list of records, each `[op, len]` and, for a message or a
//! publish, `len` bytes: what
//! client A or B sends (the bytes as text, as a WebSocket connection would
//! hand them over once valid UTF-8), a publish to A or to a topic, a read of
//! A's or B's queue, a reconnection. The checks:
//!
//! * every message the hub writes is a JSON object of a documented type,
//!   an `error` has a documented code, and the `welcome` comes first;
//! * B never gets an event published to A;
//! * queues stay within their budget, and closes have documented codes;
//! * nothing panics, whatever the bytes.

use std::time::Instant;

use serde_json::Value;
use sockeye_core::CloseCode;
use sockeye_core::hub::{
    ConnectionId, CustomEvent, Event, Hub, HubConfig, Identity, Namespace, Output, Priority,
    Publication, Resume, Streams, Target, Topic, UserId, carry, close_codes,
};

const BUDGET: usize = 4096;

const SERVER_TYPES: &[&str] = &[
    "welcome",
    "event",
    "join",
    "leave",
    "gap",
    "subscribed",
    "unsubscribed",
    "presence",
    "published",
    "error",
];

const ERROR_CODES: &[&str] = &[
    "bad_json",
    "unknown_type",
    "missing_field",
    "invalid_field",
    "too_large",
    "invalid_topic",
    "forbidden",
    "already_subscribed",
    "not_subscribed",
    "too_many_subscriptions",
    "presence_disabled",
    "publish_disabled",
    "invalid_event",
    "unavailable",
];

fn config() -> HubConfig {
    let mut config = HubConfig {
        queue_budget: BUDGET,
        max_client_message: 512,
        max_errors: 8,
        max_subscriptions: 4,
        max_streams: 16,
        ..HubConfig::default()
    };
    config.defaults.history_size = 8;
    config.namespaces.insert(
        "room".into(),
        Namespace {
            presence: true,
            client_publish: true,
            ..Namespace::default()
        },
    );
    config
}

struct Client {
    user: &'static str,
    conn: Option<ConnectionId>,
    welcomed: bool,
}

struct Fuzz {
    streams: Streams,
    hub: Hub,
    now: Instant,
    clients: [Client; 2],
}

impl Fuzz {
    fn connect(&mut self, client: usize) {
        let c = &mut self.clients[client];
        let identity = Identity::new(c.user)
            .and_then(|i| i.with_topics(["room:*", "news"]))
            .expect("a valid identity");
        c.conn = Some(
            self.hub
                .connect(identity, Resume::default())
                .expect("room for two"),
        );
        c.welcomed = false;
        self.pump();
    }

    fn pump(&mut self) {
        let clients = &mut self.clients;
        carry(
            &mut self.hub,
            &mut self.streams,
            self.now,
            0,
            |hub, output| {
                if let Output::Close {
                    connection, code, ..
                } = output
                {
                    assert!(
                        [
                            close_codes::SLOW_CONSUMER,
                            close_codes::TOO_MANY_ERRORS,
                            CloseCode::TRY_AGAIN_LATER
                        ]
                        .contains(&code),
                        "an undocumented close code {code}"
                    );
                    hub.disconnect(connection).expect("a live connection");
                    for c in clients.iter_mut() {
                        if c.conn == Some(connection) {
                            c.conn = None;
                        }
                    }
                }
            },
        );
        for c in &self.clients {
            if let Some(conn) = c.conn {
                let queued = self.hub.queued_bytes(conn).expect("a live connection");
                assert!(queued <= BUDGET, "{queued} bytes queued");
            }
        }
    }

    fn read(&mut self, client: usize, up_to: usize) {
        for _ in 0..up_to {
            let Some(conn) = self.clients[client].conn else {
                return;
            };
            let Some(message) = self.hub.poll_message(conn) else {
                return;
            };
            let value: Value = serde_json::from_slice(&message).expect("the hub writes JSON");
            let kind = value["type"].as_str().expect("every message has a type");
            assert!(SERVER_TYPES.contains(&kind), "an undocumented type {kind}");
            let c = &mut self.clients[client];
            assert_eq!(
                kind == "welcome",
                !c.welcomed,
                "the welcome comes first, once"
            );
            c.welcomed = true;
            if kind == "error" {
                let code = value["code"].as_str().expect("an error has a code");
                assert!(ERROR_CODES.contains(&code), "an undocumented code {code}");
            }
            if kind == "event" && value["stream"] == "$user" {
                assert_eq!(value["data"]["to"], c.user, "another user's event");
            }
        }
    }

    fn publish(&mut self, target: Target, to: &str, priority: u8, pad: usize) {
        let priority = [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ][usize::from(priority % 4)];
        let event = Event::Custom(CustomEvent {
            name: "fuzz".into(),
            data: serde_json::json!({ "to": to, "pad": "x".repeat(pad) }),
        });
        let publication = Publication {
            target,
            event,
            priority: Some(priority),
            timestamp_ms: 0,
        };
        // Too many streams is a documented refusal, not a failure.
        let _ = self.streams.publish(self.now, publication);
        self.pump();
    }
}

/// The `hub_client` fuzz target.
pub fn hub_client(data: &[u8]) {
    let mut fuzz = Fuzz {
        streams: Streams::new(config(), 1).expect("a valid config"),
        hub: Hub::new(config()).expect("a valid config"),
        now: Instant::now(),
        clients: [
            Client {
                user: "alice",
                conn: None,
                welcomed: false,
            },
            Client {
                user: "bob",
                conn: None,
                welcomed: false,
            },
        ],
    };
    fuzz.connect(0);
    fuzz.connect(1);
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let client = usize::from(op & 1);
        let kind = (op >> 1) % 6;
        // Messages and publishes carry `len` bytes; the rest only `len`.
        let (bytes, tail) = if kind < 3 {
            tail.split_at(usize::from(*len).min(tail.len()))
        } else {
            (&[][..], tail)
        };
        rest = tail;
        match kind {
            0 => {
                if let Some(conn) = fuzz.clients[client].conn {
                    let text = String::from_utf8_lossy(bytes);
                    fuzz.hub
                        .handle_message(conn, &text)
                        .expect("a live connection");
                    fuzz.pump();
                }
            }
            1 => {
                let priority = bytes.first().copied().unwrap_or(0);
                let pad = usize::from(bytes.get(1).copied().unwrap_or(0)) * 8;
                let user = fuzz.clients[client].user;
                let target = Target::User(UserId::new(user).expect("a valid user"));
                fuzz.publish(target, user, priority, pad);
            }
            2 => {
                if let Ok(topic) = Topic::new(&String::from_utf8_lossy(bytes)) {
                    fuzz.publish(Target::Topic(topic), "topic", 0, 16);
                }
            }
            3 => fuzz.read(client, usize::from(*len).max(1)),
            4 => {
                if let Some(conn) = fuzz.clients[client].conn.take() {
                    fuzz.hub.disconnect(conn).expect("a live connection");
                }
                fuzz.connect(client);
            }
            _ => {
                if fuzz.clients[client].conn.is_none() {
                    fuzz.connect(client);
                }
            }
        }
    }
    fuzz.read(0, usize::MAX);
    fuzz.read(1, usize::MAX);
}

/// Seeds: each client message of the protocol, valid and not, and the
/// other operations.
pub(super) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let message = |client: u8, text: &str| {
        let mut record = vec![client, text.len() as u8];
        record.extend_from_slice(text.as_bytes());
        record
    };
    let read = |client: u8| vec![3 << 1 | client, 64];
    let publish = |client: u8, priority: u8, pad: u8| vec![1 << 1 | client, 2, priority, pad];
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "subscribe-publish-presence",
            vec![
                message(0, r#"{"type":"subscribe","topic":"room:a","id":1}"#),
                message(1, r#"{"type":"subscribe","topic":"room:a"}"#),
                message(0, r#"{"type":"presence","topic":"room:a","id":"p"}"#),
                message(
                    1,
                    r#"{"type":"publish","topic":"room:a","event":"typing","data":{"on":true}}"#,
                ),
                publish(0, 3, 1),
                read(0),
                read(1),
                message(0, r#"{"type":"unsubscribe","topic":"room:a"}"#),
                read(0),
            ],
        ),
        (
            "bad-messages",
            vec![
                message(0, "not json"),
                message(0, "[1]"),
                message(0, r#"{"type":"hello"}"#),
                message(0, r#"{"type":"subscribe"}"#),
                message(0, r#"{"type":"subscribe","topic":"room:*"}"#),
                message(0, r#"{"type":"subscribe","topic":"bill:1"}"#),
                message(
                    0,
                    r#"{"type":"subscribe","topic":"room:a","resume":{"epoch":"zz","offset":1}}"#,
                ),
                message(0, r#"{"type":"publish","topic":"news","event":"x"}"#),
                message(
                    0,
                    r#"{"type":"publish","topic":"room:a","event":"agent_started","data":{}}"#,
                ),
                read(0),
            ],
        ),
        (
            "slow-reader",
            (0..12)
                .map(|i| publish(0, i % 4, 100))
                .chain([read(0)])
                .collect(),
        ),
        (
            "resume-and-reconnect",
            vec![
                publish(0, 3, 4),
                read(0),
                vec![4 << 1, 0],
                message(
                    0,
                    r#"{"type":"subscribe","topic":"room:b","resume":{"epoch":"0000000000000001","offset":3}}"#,
                ),
                vec![2 << 1, 6, b'r', b'o', b'o', b'm', b':', b'b'],
                read(0),
                read(1),
            ],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, records)| (name, records.concat()))
        .collect()
}
