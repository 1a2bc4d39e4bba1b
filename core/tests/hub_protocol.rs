//! The hub's wire protocol (`core/PROTOCOL.md`), message by message, as
//! tables: what a client sends or what is published, and what comes back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sockeye_core::CloseCode;
use sockeye_core::hub::{
    ConnectionId, CustomEvent, Error, Event, Hub, HubConfig, Identity, Namespace, Output, Position,
    Priority, Publication, Resume, Streams, Target, UserId, carry, close_codes,
};

/// One hub on one `Streams`, with the seam carried at once.
struct Session {
    streams: Streams,
    hub: Hub,
    now: Instant,
    closed: Vec<(ConnectionId, CloseCode)>,
}

fn config() -> HubConfig {
    let mut config = HubConfig::default();
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

impl Session {
    fn new(config: HubConfig) -> Self {
        Self {
            streams: Streams::new(config.clone(), 1).unwrap(),
            hub: Hub::new(config).unwrap(),
            now: Instant::now(),
            closed: Vec::new(),
        }
    }

    /// To how many connections the deliveries carried were queued.
    fn pump(&mut self) -> usize {
        let closed = &mut self.closed;
        carry(
            &mut self.hub,
            &mut self.streams,
            self.now,
            7,
            |_, output| {
                if let Output::Close {
                    connection, code, ..
                } = output
                {
                    closed.push((connection, code));
                }
            },
        )
    }

    fn connect(&mut self, user: &str, topics: &[&str]) -> ConnectionId {
        self.connect_resuming(user, topics, Resume::default())
    }

    fn connect_resuming(&mut self, user: &str, topics: &[&str], resume: Resume) -> ConnectionId {
        let identity = Identity::new(user)
            .unwrap()
            .with_topics(topics.iter().copied())
            .unwrap();
        let id = self.hub.connect(identity, resume).unwrap();
        self.pump();
        id
    }

    fn send(&mut self, id: ConnectionId, message: &str) {
        self.hub.handle_message(id, message).unwrap();
        self.pump();
    }

    fn publish(&mut self, target: Target, name: &str, priority: Priority, data: Value) -> Position {
        let event = Event::parse(name, data).unwrap();
        let publication = Publication {
            target,
            event,
            priority: Some(priority),
            timestamp_ms: 1_764_850_000_123,
        };
        let positions = self.streams.publish(self.now, publication).unwrap();
        self.pump();
        positions[0]
    }

    /// Everything queued for a connection, as JSON.
    fn take(&mut self, id: ConnectionId) -> Vec<Value> {
        std::iter::from_fn(|| self.hub.poll_message(id))
            .map(|m| serde_json::from_slice(&m).expect("the hub writes JSON"))
            .collect()
    }

    /// The one message queued for a connection.
    fn one(&mut self, id: ConnectionId) -> Value {
        let mut messages = self.take(id);
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.remove(0)
    }
}

fn user(name: &str) -> Target {
    Target::User(UserId::new(name).unwrap())
}

/// Removes what varies (epochs), so a table can state the rest exactly.
fn without_epochs(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("epoch");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[test]
fn the_first_message_is_the_welcome() {
    let mut s = Session::new(config());
    let alice = s.connect("alice", &[]);
    let welcome = s.one(alice);
    assert_eq!(
        without_epochs(welcome.clone()),
        json!({"type":"welcome","connection":alice.to_string(),"user":"alice",
               "streams":{"$user":{"offset":0},"$all":{"offset":0}}})
    );
    let epoch = welcome["streams"]["$user"]["epoch"].as_str().unwrap();
    assert_eq!(epoch.len(), 16);
}

/// Every message type a server sends, from what causes it.
#[test]
fn every_server_message() {
    let mut s = Session::new(config());
    let alice = s.connect("alice", &["room:*"]);
    let bob = s.connect("bob", &["room:*"]);
    s.take(alice);
    s.take(bob);

    s.publish(
        user("alice"),
        "agent_started",
        Priority::Critical,
        json!({"run_id":"r1"}),
    );
    assert_eq!(
        without_epochs(s.one(alice)),
        json!({"type":"event","stream":"$user","offset":1,"event":"agent_started",
               "priority":"critical","ts":1_764_850_000_123u64,"data":{"run_id":"r1"}})
    );
    assert_eq!(
        s.take(bob),
        Vec::<Value>::new(),
        "alice's event reached bob"
    );

    let cases: &[(&str, Value)] = &[
        (
            r#"{"type":"subscribe","topic":"room:lobby","id":"r1"}"#,
            json!({"type":"subscribed","topic":"room:lobby","offset":1,"id":"r1"}),
        ),
        (
            r#"{"type":"presence","topic":"room:lobby","id":2}"#,
            json!({"type":"presence","topic":"room:lobby","users":{"alice":1},"id":2}),
        ),
        (
            r#"{"type":"publish","topic":"room:lobby","event":"typing","data":{"on":true},"id":"p"}"#,
            json!({"type":"published","topic":"room:lobby","offset":2,"id":"p"}),
        ),
    ];
    for (request, answer) in cases {
        s.send(alice, request);
        // A publisher subscribed to the topic gets the event before the
        // answer: the answer says where it went.
        let messages: Vec<Value> = s.take(alice).into_iter().map(without_epochs).collect();
        assert_eq!(messages.last(), Some(answer), "{request}: {messages:?}");
    }

    // Bob's subscription makes him join; Alice sees it.
    s.send(bob, r#"{"type":"subscribe","topic":"room:lobby"}"#);
    assert_eq!(
        without_epochs(s.one(alice)),
        json!({"type":"join","stream":"room:lobby","offset":3,"user":"bob"})
    );
    s.take(bob);
    s.send(
        bob,
        r#"{"type":"unsubscribe","topic":"room:lobby","id":"u"}"#,
    );
    assert_eq!(
        s.one(bob),
        json!({"type":"unsubscribed","topic":"room:lobby","id":"u"})
    );
    assert_eq!(
        without_epochs(s.one(alice)),
        json!({"type":"leave","stream":"room:lobby","offset":4,"user":"bob"})
    );

    s.publish(
        Target::All,
        "notice",
        Priority::Low,
        json!("maintenance at noon"),
    );
    for id in [alice, bob] {
        assert_eq!(
            without_epochs(s.one(id)),
            json!({"type":"event","stream":"$all","offset":1,"event":"notice",
                   "priority":"low","ts":1_764_850_000_123u64,"data":"maintenance at noon"})
        );
    }
}

/// Every error code, with what exactly was wrong and the request's id.
#[test]
fn every_error_code() {
    let mut config = config();
    config.max_subscriptions = 1;
    config.max_client_message = 256;
    let cases: &[(&str, &str, &str)] = &[
        (
            "not json",
            "bad_json",
            "not JSON: expected ident at line 1 column 2",
        ),
        ("[1, 2]", "bad_json", "a message is a JSON object"),
        (
            r#"{"id":"x"}"#,
            "missing_field",
            "message: the field `type` is missing",
        ),
        (
            r#"{"type":7}"#,
            "invalid_field",
            "message: the field `type` must be a string",
        ),
        (
            r#"{"type":"hello"}"#,
            "unknown_type",
            "unknown type \"hello\": subscribe, unsubscribe, presence or publish",
        ),
        (
            r#"{"type":"subscribe"}"#,
            "missing_field",
            "subscribe: the field `topic` is missing",
        ),
        (
            r#"{"type":"subscribe","topic":["a"]}"#,
            "invalid_field",
            "subscribe: the field `topic` must be a string",
        ),
        (
            r#"{"type":"subscribe","topic":"room:*"}"#,
            "invalid_topic",
            "subscribe: invalid topic \"room:*\": only ASCII letters, digits and _ - . : @ / may appear in it",
        ),
        (
            r#"{"type":"subscribe","topic":"bill:1"}"#,
            "forbidden",
            "subscribe: \"bill:1\" is not among the topics this user may subscribe to",
        ),
        (
            r#"{"type":"subscribe","topic":"room:a","resume":5}"#,
            "invalid_field",
            "subscribe: the field `resume` must be an object with `epoch` and `offset`",
        ),
        (
            r#"{"type":"subscribe","topic":"room:a","resume":{"offset":5}}"#,
            "missing_field",
            "subscribe: the field `resume.epoch` is missing",
        ),
        (
            r#"{"type":"subscribe","topic":"room:a","resume":{"epoch":"zz","offset":5}}"#,
            "invalid_field",
            "subscribe: the field `resume.epoch` must be an epoch the hub sent",
        ),
        (
            r#"{"type":"subscribe","topic":"room:a","resume":{"epoch":"00000000000000aa","offset":-1}}"#,
            "invalid_field",
            "subscribe: the field `resume.offset` must be a whole number of 0 or more",
        ),
        (
            r#"{"type":"subscribe","topic":"room:a","id":{"no":1}}"#,
            "invalid_field",
            "message: the field `id` must be a string or a number",
        ),
        (
            r#"{"type":"unsubscribe","topic":"room:a"}"#,
            "not_subscribed",
            "unsubscribe: not subscribed to \"room:a\"",
        ),
        (
            r#"{"type":"presence","topic":"news"}"#,
            "presence_disabled",
            "presence: the namespace of \"news\" does not track presence",
        ),
        (
            r#"{"type":"publish","topic":"news","event":"x"}"#,
            "publish_disabled",
            "publish: the namespace of \"news\" does not take publishes from clients",
        ),
        (
            r#"{"type":"publish","topic":"room:a","event":"agent_started","data":{}}"#,
            "invalid_event",
            "publish: `agent_started` is missing the required field `run_id`",
        ),
        (
            r#"{"type":"publish","topic":"room:a","data":{}}"#,
            "missing_field",
            "publish: the field `event` is missing",
        ),
    ];
    for (request, code, message) in cases {
        let mut s = Session::new(config.clone());
        let id = s.connect("alice", &["room:*", "news"]);
        s.take(id);
        let with_id = request.replacen('{', r#"{"id":"q","#, 1);
        let request: &str = if request.starts_with('{') && !request.contains(r#""id""#) {
            &with_id
        } else {
            request
        };
        s.send(id, request);
        let error = s.one(id);
        assert_eq!(error["type"], "error", "{request}");
        assert_eq!(error["code"], *code, "{request}");
        assert_eq!(error["message"], *message, "{request}");
        if request.starts_with(r#"{"id":"q""#) {
            assert_eq!(error["id"], "q", "{request}");
        }
    }

    // The codes that need a state first.
    let mut s = Session::new(config.clone());
    let id = s.connect("alice", &["room:*"]);
    s.send(id, r#"{"type":"subscribe","topic":"room:a"}"#);
    s.take(id);
    let stateful = [
        (
            r#"{"type":"subscribe","topic":"room:a"}"#,
            "already_subscribed",
        ),
        (
            r#"{"type":"subscribe","topic":"room:b"}"#,
            "too_many_subscriptions",
        ),
        (
            &*format!(
                r#"{{"type":"subscribe","topic":"room:a","pad":"{}"}}"#,
                "x".repeat(300)
            ),
            "too_large",
        ),
    ];
    for (request, code) in stateful {
        s.send(id, request);
        assert_eq!(s.one(id)["code"], code, "{request}");
    }

    // Every stream kept has subscribers: a new one cannot be started.
    let mut s = Session::new(HubConfig {
        max_streams: 3,
        ..config
    });
    let id = s.connect("alice", &["room:*"]);
    s.send(id, r#"{"type":"subscribe","topic":"room:a","id":1}"#);
    s.take(id);
    s.send(id, r#"{"type":"unsubscribe","topic":"room:a"}"#);
    let bob = s.connect("bob", &["room:*"]);
    s.take(id);
    s.take(bob);
    // room:a was let go, and is forgotten to make room for bob's stream.
    s.send(id, r#"{"type":"subscribe","topic":"room:b","id":2}"#);
    let error = s.one(id);
    assert_eq!(
        (&error["code"], &error["id"]),
        (&json!("unavailable"), &json!(2)),
        "{error}"
    );
}

#[test]
fn too_many_errors_close_the_connection() {
    let config = HubConfig {
        max_errors: 3,
        ..config()
    };
    let mut s = Session::new(config);
    let id = s.connect("alice", &[]);
    s.take(id);
    for _ in 0..3 {
        s.send(id, "nope");
        assert_eq!(s.one(id)["code"], "bad_json");
    }
    assert!(s.closed.is_empty());
    s.send(id, "nope");
    assert_eq!(s.closed, [(id, close_codes::TOO_MANY_ERRORS)]);
    assert_eq!(
        s.take(id),
        Vec::<Value>::new(),
        "a closing connection gets nothing more"
    );
}

#[test]
fn limits_refuse_before_the_upgrade() {
    let mut s = Session::new(HubConfig {
        max_connections: 4,
        ..config()
    });
    for _ in 0..3 {
        s.connect("alice", &[]);
    }
    let identity = || Identity::new("alice").unwrap();
    let refused = s.hub.connect(identity(), Resume::default()).unwrap_err();
    assert!(matches!(
        refused,
        Error::TooManyUserConnections { limit: 3, .. }
    ));
    assert_eq!(refused.http_status(), 429);
    s.connect("bob", &[]);
    let refused = s
        .hub
        .connect(Identity::new("carol").unwrap(), Resume::default())
        .unwrap_err();
    assert_eq!(refused.http_status(), 503);
    assert_eq!(
        refused.to_string(),
        "the hub already holds 4 connection(s), the most allowed"
    );
}

/// Over the budget, low events go first, then normal, each leaving a gap;
/// a critical event that does not fit closes the connection.
#[test]
fn a_full_queue_drops_by_priority_and_says_so() {
    let mut s = Session::new(HubConfig {
        queue_budget: 4096,
        ..config()
    });
    let id = s.connect("alice", &[]);
    s.take(id);
    let pad = "x".repeat(700);
    // About 850 bytes each: four fit.
    s.publish(user("alice"), "a", Priority::Low, json!(pad));
    s.publish(user("alice"), "b", Priority::Normal, json!(pad));
    s.publish(user("alice"), "c", Priority::Low, json!(pad));
    s.publish(user("alice"), "d", Priority::High, json!(pad));
    s.publish(user("alice"), "e", Priority::Normal, json!(pad));
    s.publish(user("alice"), "f", Priority::Critical, json!(pad));
    assert_eq!(s.hub.dropped(id), Some([2, 0, 0, 0]));
    assert!(s.hub.queued_bytes(id).unwrap() <= 4096);
    let got: Vec<(String, Value)> = s
        .take(id)
        .into_iter()
        .map(|m| (m["type"].as_str().unwrap().to_owned(), m["event"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("gap".to_owned(), Value::Null),
            ("event".to_owned(), json!("b")),
            ("gap".to_owned(), Value::Null),
            ("event".to_owned(), json!("d")),
            ("event".to_owned(), json!("e")),
            ("event".to_owned(), json!("f")),
        ]
    );

    // Five critical events do not fit: the fifth closes the connection.
    for _ in 0..5 {
        s.publish(user("alice"), "g", Priority::Critical, json!(pad));
    }
    assert_eq!(s.closed, [(id, close_codes::SLOW_CONSUMER)]);
}

#[test]
fn a_gap_names_the_dropped_offsets() {
    let mut s = Session::new(HubConfig {
        queue_budget: 4096,
        ..config()
    });
    let id = s.connect("alice", &[]);
    s.take(id);
    let pad = "x".repeat(700);
    for _ in 0..4 {
        s.publish(user("alice"), "low", Priority::Low, json!(pad));
    }
    // Three more: the three oldest go, one gap for all of them.
    for _ in 0..3 {
        s.publish(user("alice"), "high", Priority::High, json!(pad));
    }
    let messages = s.take(id);
    assert_eq!(
        without_epochs(messages[0].clone()),
        json!({"type":"gap","stream":"$user","from":1,"to":3,"reason":"backpressure"})
    );
    let offsets: Vec<u64> = messages[1..]
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6, 7]);
}

/// Resumes: exact when history has every missed item, `recovered: false`
/// and nothing replayed otherwise.
#[test]
fn resumes_are_exact_or_say_so() {
    let mut config = config();
    config.defaults.history_size = 3;
    let mut s = Session::new(config);
    let id = s.connect("alice", &[]);
    let welcome = s.one(id);
    let epoch =
        sockeye_core::hub::Epoch::parse(welcome["streams"]["$user"]["epoch"].as_str().unwrap())
            .unwrap();
    for n in 1..=5 {
        s.publish(user("alice"), "n", Priority::Normal, json!(n));
    }
    s.take(id);
    s.hub.disconnect(id).unwrap();
    s.pump();

    let cases = [
        (
            "the last two",
            Position { epoch, offset: 3 },
            Some(vec![4, 5]),
        ),
        (
            "nothing missed",
            Position { epoch, offset: 5 },
            Some(vec![]),
        ),
        ("beyond history", Position { epoch, offset: 1 }, None),
        (
            "an offset never reached",
            Position { epoch, offset: 9 },
            None,
        ),
        (
            "another epoch",
            Position {
                epoch: sockeye_core::hub::Epoch::parse("0123456789abcdef").unwrap(),
                offset: 3,
            },
            None,
        ),
    ];
    for (what, from, replay) in cases {
        let id = s.connect_resuming(
            "alice",
            &[],
            Resume {
                user: Some(from),
                all: None,
            },
        );
        let mut messages = s.take(id);
        let welcome = messages.remove(0);
        let start = &welcome["streams"]["$user"];
        assert_eq!(start["offset"], 5, "{what}");
        assert_eq!(start["recovered"], replay.is_some(), "{what}");
        assert!(
            welcome["streams"]["$all"].get("recovered").is_none(),
            "{what}"
        );
        let offsets: Vec<u64> = messages
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, replay.unwrap_or_default(), "{what}");
        s.hub.disconnect(id).unwrap();
        s.pump();
    }
}

#[test]
fn history_leaves_by_age() {
    let mut s = Session::new(config());
    let id = s.connect("alice", &[]);
    let welcome = s.one(id);
    let epoch =
        sockeye_core::hub::Epoch::parse(welcome["streams"]["$user"]["epoch"].as_str().unwrap())
            .unwrap();
    s.publish(user("alice"), "n", Priority::Normal, json!(1));
    s.take(id);
    let expiry = s
        .streams
        .poll_timeout()
        .expect("history's age is a deadline");
    assert_eq!(expiry, s.now + Duration::from_secs(300));
    s.now = expiry;
    s.streams.handle_timeout(s.now);
    assert_eq!(s.streams.poll_timeout(), None);
    s.hub.disconnect(id).unwrap();
    s.pump();
    let id = s.connect_resuming(
        "alice",
        &[],
        Resume {
            user: Some(Position { epoch, offset: 0 }),
            all: None,
        },
    );
    assert_eq!(s.one(id)["streams"]["$user"]["recovered"], false);
}

#[test]
fn a_publish_to_users_reaches_each_once_and_no_one_else() {
    let mut s = Session::new(config());
    let ids: Vec<_> = ["a", "b", "c"].iter().map(|u| s.connect(u, &[])).collect();
    for &id in &ids {
        s.take(id);
    }
    let event = Event::Custom(CustomEvent {
        name: "hello".into(),
        data: json!(null),
    });
    let positions = s
        .streams
        .publish(
            s.now,
            Publication {
                target: Target::Users(vec![
                    UserId::new("a").unwrap(),
                    UserId::new("c").unwrap(),
                    UserId::new("a").unwrap(),
                ]),
                event,
                priority: None,
                timestamp_ms: 0,
            },
        )
        .unwrap();
    assert_eq!(s.pump(), 2, "queued to two connections");
    assert_eq!(positions.len(), 2, "a user named twice gets it once");
    assert_eq!(s.take(ids[0]).len(), 1);
    assert_eq!(s.take(ids[1]).len(), 0);
    assert_eq!(s.take(ids[2]).len(), 1);
    let empty = s.streams.publish(
        s.now,
        Publication {
            target: Target::Users(vec![]),
            event: Event::parse("x", json!(1)).unwrap(),
            priority: None,
            timestamp_ms: 0,
        },
    );
    assert!(matches!(empty, Err(Error::Recipients { count: 0, .. })));
}

/// The backpressure seam: a hub connection's messages move into its
/// WebSocket `Connection` only while it is not backpressured, so a slow
/// reader's backlog waits in the hub's queue (where priorities apply), and
/// the moving resumes on `Drained`. Every message arrives, in order, as a
/// text frame.
#[test]
fn messages_move_into_the_connection_only_below_its_high_water_mark() {
    use sockeye_core::testing::{Endpoint, read_frames};
    use sockeye_core::{Config, Event as WsEvent, Message};

    let mut s = Session::new(config());
    let id = s.connect("alice", &[]);
    let ws_config = Config {
        write_buffer_high_water: 4096,
        ..Config::default()
    };
    let mut ws = Endpoint::open_server(ws_config, s.now);
    let pad = "x".repeat(1000);
    for n in 0..20 {
        s.publish(
            user("alice"),
            "n",
            Priority::Critical,
            json!({ "n": n, "pad": pad }),
        );
    }
    let move_messages = |s: &mut Session, ws: &mut Endpoint| {
        let mut moved = 0;
        while !ws.conn.is_backpressured() {
            let Some(message) = s.hub.poll_message(id) else {
                break;
            };
            let text = String::from_utf8(message.to_vec()).unwrap();
            ws.conn.send(s.now, Message::text(text)).unwrap();
            moved += 1;
        }
        moved
    };
    // The welcome and four or five events: then the connection is over its
    // mark, and the rest waits in the hub.
    let first = move_messages(&mut s, &mut ws);
    assert!((2..=7).contains(&first), "{first} moved");
    assert!(s.hub.queued_bytes(id).unwrap() > 10_000);
    let mut wire = Vec::new();
    let mut rounds = 0;
    while s.hub.queued_bytes(id).unwrap() > 0 {
        rounds += 1;
        // The peer reads 2 KiB; once under the mark the connection says so.
        wire.extend(ws.write(s.now, 2048));
        if ws.events().contains(&WsEvent::Drained) {
            move_messages(&mut s, &mut ws);
        }
        assert!(rounds < 1000, "no progress");
    }
    // The hub is empty; the rest of the connection's queue goes out.
    loop {
        let bytes = ws.write(s.now, 1 << 20);
        if bytes.is_empty() {
            break;
        }
        wire.extend(bytes);
    }
    let (frames, rest) = read_frames(&wire);
    assert!(rest.is_empty());
    let offsets: Vec<u64> = frames
        .iter()
        .map(|f| serde_json::from_slice::<Value>(&f.payload).unwrap())
        .filter(|m| m["type"] == "event")
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
    assert_eq!(s.hub.dropped(id), Some([0; 4]));
}
