use std::time::Duration;

use bytes::Buf;

use super::*;
use crate::handshake::ClientRequest;

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Everything a connection has to say after an input.
fn drain(conn: &mut Connection) -> (Vec<Event>, Vec<u8>) {
    let mut events = Vec::new();
    while let Some(event) = conn.poll_event() {
        events.push(event);
    }
    (events, transmitted(conn))
}

fn transmitted(conn: &mut Connection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(mut t) = conn.poll_transmit() {
        while t.has_remaining() {
            bytes.extend_from_slice(t.chunk());
            let n = t.chunk().len();
            t.advance(n);
        }
    }
    bytes
}

/// A server connection past the handshake, with its outputs drained.
fn open_server(config: Config) -> (Connection, Instant) {
    let t0 = Instant::now();
    let mut server = Connection::server(config, t0).unwrap();
    server.handle_input(t0, REQUEST);
    assert!(matches!(server.poll_event(), Some(Event::Request(_))));
    server.accept(Accept::default()).unwrap();
    let (events, out) = drain(&mut server);
    assert!(matches!(events[..], [Event::Open(_)]));
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    (server, t0)
}

/// A frame as a client would send it, masked with a fixed key.
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    let header = frame::Header {
        fin: first_byte & 0x80 != 0,
        rsv: 0,
        opcode: frame::Opcode::from_u8(first_byte & 0x0F).unwrap(),
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut wire = header.encode().as_slice().to_vec();
    let start = wire.len();
    wire.extend_from_slice(payload);
    crate::apply_mask(&mut wire[start..], key, 0);
    wire
}

fn close_frame_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

fn closed(event: &Event) -> &Closed {
    match event {
        Event::Closed(closed) => closed,
        other => panic!("expected Closed, got {other:?}"),
    }
}

use crate::frame;

#[test]
fn server_initiated_close_completes_cleanly() {
    let (mut server, t0) = open_server(Config::default());
    server.close(t0, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(server.state(), State::Closing);
    assert_eq!(drain(&mut server).1, b"\x88\x05\x03\xe8bye");
    assert_eq!(
        server.send(t0, Message::text("late")),
        Err(UsageError::Closing)
    );
    assert_eq!(
        server.close(t0, CloseCode::NORMAL, ""),
        Err(UsageError::Closing)
    );

    server.handle_input(t0, &client_frame(0x88, &close_frame_payload(1000, "ok")));
    let (events, out) = drain(&mut server);
    assert_eq!(
        events,
        vec![
            Event::CloseReceived(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "ok".into()
            }),
            Event::Closed(Box::new(Closed {
                code: CloseCode::NORMAL,
                reason: "ok".into(),
                clean: true,
                error: None
            })),
        ]
    );
    assert!(out.is_empty(), "nothing after our close frame");
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn peer_close_is_echoed_with_its_code_and_the_server_closes_at_once() {
    let (mut server, t0) = open_server(Config::default());
    server.handle_input(t0, &client_frame(0x88, &close_frame_payload(4001, "x")));
    let (events, out) = drain(&mut server);
    assert_eq!(out, b"\x88\x02\x0f\xa1");
    assert!(closed(events.last().unwrap()).clean);
    assert_eq!(closed(events.last().unwrap()).code, CloseCode::new(4001));
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let (mut server, t0) = open_server(Config::default());
    server.handle_input(t0, &client_frame(0x88, b""));
    let (events, out) = drain(&mut server);
    assert_eq!(out, b"\x88\x00");
    assert_eq!(closed(&events[1]).code, CloseCode::NO_STATUS);
}

#[test]
fn close_inside_a_fragmented_message_gets_a_normal_close() {
    // Autobahn 7.1.5: a close frame between fragments is legal and answered.
    let (mut server, t0) = open_server(Config::default());
    let mut input = client_frame(0x01, b"frag");
    input.extend(client_frame(0x88, &close_frame_payload(1000, "")));
    input.extend(client_frame(0x80, b"ment"));
    server.handle_input(t0, &input);
    let (events, out) = drain(&mut server);
    assert_eq!(out, b"\x88\x02\x03\xe8");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(closed(&events[1]).clean);
}

#[test]
fn app_close_goes_out_after_the_messages_queued_before_it() {
    let (mut server, t0) = open_server(Config::default());
    server.send(t0, Message::text("a")).unwrap();
    server.send(t0, Message::binary(vec![1])).unwrap();
    server.close(t0, CloseCode::GOING_AWAY, "").unwrap();
    assert_eq!(
        drain(&mut server).1,
        b"\x81\x01a\x82\x01\x01\x88\x02\x03\xe9"
    );
}

#[test]
fn no_pong_after_our_close() {
    let (mut server, t0) = open_server(Config::default());
    server.close(t0, CloseCode::NORMAL, "").unwrap();
    drain(&mut server);
    server.handle_input(t0, &client_frame(0x89, b"p"));
    let (events, out) = drain(&mut server);
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"p"))]);
    assert!(out.is_empty());
}

#[test]
fn protocol_error_sends_its_close_code_and_ignores_what_follows() {
    let (mut server, t0) = open_server(Config::default());
    server.send(t0, Message::text("queued")).unwrap();
    // Unmasked frame from a client.
    server.handle_input(t0, b"\x81\x01a");
    let (events, out) = drain(&mut server);
    let reason = ProtocolError::UnmaskedClientFrame.to_string();
    let mut expected = b"\x81\x06queued".to_vec();
    expected.extend_from_slice(&[0x88, 2 + reason.len() as u8, 0x03, 0xEA]);
    expected.extend_from_slice(reason.as_bytes());
    assert_eq!(out, expected, "data queued before the failure goes first");
    assert_eq!(
        events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
            clean: false,
            error: Some(Error::Protocol(ProtocolError::UnmaskedClientFrame)),
        }))]
    );
    server.handle_input(t0, &client_frame(0x81, b"more"));
    server.handle_eof(t0);
    server.handle_timeout(t0 + SECS(3600));
    assert_eq!(drain(&mut server), (vec![], vec![]));
}

#[test]
fn invalid_utf8_and_oversized_messages_get_1007_and_1009() {
    let config = Config {
        max_message_size: 10,
        ..Config::default()
    };
    let (mut server, t0) = open_server(config.clone());
    server.handle_input(t0, &client_frame(0x81, b"\xc3\x28"));
    let (events, out) = drain(&mut server);
    assert_eq!(&out[2..4], &1007u16.to_be_bytes());
    assert_eq!(closed(&events[0]).code, CloseCode::INVALID_PAYLOAD);

    let (mut server, t0) = open_server(config);
    server.handle_input(t0, &client_frame(0x82, &[0; 11]));
    let (events, out) = drain(&mut server);
    assert_eq!(&out[2..4], &1009u16.to_be_bytes());
    assert_eq!(closed(&events[0]).code, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn heartbeat_pings_a_silent_peer_and_declares_it_dead_after_three_misses() {
    let (mut server, t0) = open_server(Config::default());
    for (n, at) in [(1, 30), (2, 60), (3, 90)] {
        assert_eq!(server.poll_timeout(), Some(t0 + SECS(at)));
        server.handle_timeout(t0 + SECS(at));
        assert_eq!(
            drain(&mut server),
            (vec![], b"\x89\x00".to_vec()),
            "ping {n}"
        );
    }
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(120)));
    server.handle_timeout(t0 + SECS(119));
    assert_eq!(server.state(), State::Open, "not yet");
    server.handle_timeout(t0 + SECS(120));
    let (events, out) = drain(&mut server);
    assert!(out.is_empty(), "a dead peer gets no close frame");
    assert_eq!(
        events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(Error::PeerUnresponsive(3)),
        }))]
    );
}

#[test]
fn any_frame_is_a_sign_of_life_so_a_busy_peer_gets_no_ping() {
    let (mut server, t0) = open_server(Config::default());
    server.handle_input(t0 + SECS(20), &client_frame(0x82, b"data"));
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(50)));
    server.handle_timeout(t0 + SECS(30));
    assert_eq!(drain(&mut server), (vec![], vec![]));
    // A pong after a missed ping resets the count.
    server.handle_timeout(t0 + SECS(50));
    assert_eq!(drain(&mut server).1, b"\x89\x00");
    server.handle_input(t0 + SECS(51), &client_frame(0x8A, b""));
    assert_eq!(drain(&mut server).0, vec![Event::Pong(Bytes::new())]);
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(81)));
}

#[test]
fn every_ping_is_answered_until_a_flood_keeps_only_the_latest() {
    let (mut server, t0) = open_server(Config::default());
    let mut input = client_frame(0x89, b"first");
    input.extend(client_frame(0x89, b"second"));
    server.handle_input(t0, &input);
    let (events, out) = drain(&mut server);
    assert_eq!(
        events,
        vec![
            Event::Ping(Bytes::from_static(b"first")),
            Event::Ping(Bytes::from_static(b"second"))
        ]
    );
    assert_eq!(out, b"\x8a\x05first\x8a\x06second");

    let flood: Vec<u8> = (0..100u8).flat_map(|i| client_frame(0x89, &[i])).collect();
    server.handle_input(t0, &flood);
    let (events, out) = drain(&mut server);
    assert_eq!(events.len(), 100);
    let expected: Vec<u8> = (84..100u8).flat_map(|i| [0x8A, 1, i]).collect();
    assert_eq!(out, expected, "the 16 latest pings are answered");
}

#[test]
fn messages_are_decoded_one_at_a_time_so_replies_keep_their_order() {
    // Autobahn 3.2: a message, then a broken frame. The echo of the message
    // goes out before the close that the broken frame causes.
    let (mut server, t0) = open_server(Config::default());
    let mut input = client_frame(0x81, b"hello");
    input.extend_from_slice(&[0xA1, 0x80, 0, 0, 0, 0]); // RSV2 set
    server.handle_input(t0, &input);
    assert_eq!(server.buffered_input(), 6, "the second frame waits");
    let Some(Event::Message(message)) = server.poll_event() else {
        panic!()
    };
    server.send(t0, message).unwrap();
    let Some(Event::Closed(closed)) = server.poll_event() else {
        panic!()
    };
    assert_eq!(
        closed.error,
        Some(Error::Protocol(ProtocolError::ReservedBits(2)))
    );
    let out = transmitted(&mut server);
    assert!(out.starts_with(b"\x81\x05hello\x88"), "{out:?}");
}

#[test]
fn eof_decodes_what_arrived_before_it() {
    let (mut server, t0) = open_server(Config::default());
    let mut input = client_frame(0x81, b"one");
    input.extend(client_frame(0x81, b"two"));
    input.extend(client_frame(0x88, &close_frame_payload(1000, "")));
    server.handle_input(t0, &input);
    server.handle_eof(t0);
    let events = drain_events(&mut server);
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(closed(&events[3]).clean);
}

#[test]
fn pong_and_close_slip_between_fragments_of_a_long_message() {
    let config = Config {
        fragment_size: Some(4),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server
        .send(t0, Message::binary(b"0123456789AB".to_vec()))
        .unwrap();
    let first = server.poll_transmit().unwrap();
    assert_eq!(
        (first.header(), &first.payload()[..]),
        (&[0x02, 4][..], &b"0123"[..])
    );
    server.handle_input(t0, &client_frame(0x89, b"p"));
    drain_events(&mut server);
    let pong = server.poll_transmit().unwrap();
    assert_eq!(pong.header(), &[0x8A, 1]);
    let second = server.poll_transmit().unwrap();
    assert_eq!(
        (second.header(), &second.payload()[..]),
        (&[0x00, 4][..], &b"4567"[..])
    );
    // The peer closes: the reply cuts in at the next fragment boundary.
    server.handle_input(t0, &client_frame(0x88, &close_frame_payload(1000, "")));
    assert_eq!(transmitted(&mut server), b"\x88\x02\x03\xe8");
}

fn drain_events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

#[test]
fn idle_timeout_closes_with_1001() {
    let config = Config {
        ping_interval: None,
        idle_timeout: Some(SECS(60)),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server.handle_input(t0 + SECS(10), &client_frame(0x89, b""));
    drain(&mut server);
    assert_eq!(
        server.poll_timeout(),
        Some(t0 + SECS(60)),
        "control frames are not activity"
    );
    server.handle_input(t0 + SECS(20), &client_frame(0x81, b"hi"));
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(80)));
    server.handle_timeout(t0 + SECS(80));
    assert_eq!(drain(&mut server).1, b"\x88\x0e\x03\xe9idle timeout");
    assert_eq!(server.state(), State::Closing);
}

#[test]
fn unanswered_close_times_out() {
    let (mut server, t0) = open_server(Config::default());
    server.close(t0, CloseCode::NORMAL, "").unwrap();
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(5)));
    server.handle_timeout(t0 + SECS(5));
    let (events, _) = drain(&mut server);
    assert_eq!(closed(&events[0]).error, Some(Error::CloseTimeout));
    assert!(!closed(&events[0]).clean);
}

#[test]
fn close_timeout_runs_from_the_close_call_not_from_the_last_input() {
    let config = Config {
        ping_interval: None,
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    // A quiet hour: no input, so the connection last heard of time at t0.
    let later = t0 + SECS(3600);
    server.close(later, CloseCode::NORMAL, "").unwrap();
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(later + SECS(5)));
}

#[test]
fn sending_restarts_the_idle_timer() {
    let config = Config {
        ping_interval: None,
        idle_timeout: Some(SECS(60)),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server.send(t0 + SECS(50), Message::text("push")).unwrap();
    drain(&mut server);
    assert_eq!(server.poll_timeout(), Some(t0 + SECS(110)));
}

#[test]
fn eof_without_close_is_abnormal() {
    let (mut server, t0) = open_server(Config::default());
    server.handle_eof(t0);
    let (events, _) = drain(&mut server);
    assert_eq!(
        events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(Error::UnexpectedEof),
        }))]
    );
}

#[test]
fn usage_errors_leave_the_connection_unchanged() {
    let t0 = Instant::now();
    let mut server = Connection::server(Config::default(), t0).unwrap();
    assert_eq!(
        server.send(t0, Message::text("x")),
        Err(UsageError::NotOpen)
    );
    let (mut server, _) = open_server(Config::default());
    assert_eq!(
        server.ping(Bytes::from(vec![0; 126])),
        Err(UsageError::PingTooLarge(126))
    );
    assert_eq!(
        server.close(t0, CloseCode::NO_STATUS, ""),
        Err(UsageError::InvalidCloseCode(1005))
    );
    assert_eq!(
        server.close(t0, CloseCode::NORMAL, &"x".repeat(124)),
        Err(UsageError::CloseReasonTooLong(124))
    );
    assert_eq!(server.state(), State::Open);
    assert_eq!(drain(&mut server), (vec![], vec![]));
}

#[test]
fn bad_config_is_an_error_not_a_panic() {
    let config = Config {
        max_missed_pongs: 0,
        ..Config::default()
    };
    assert_eq!(
        Connection::server(config.clone(), Instant::now())
            .unwrap_err()
            .field,
        "max_missed_pongs"
    );
    let request = ClientRequest::new("h", 80, "/");
    assert!(matches!(
        Connection::client(request, config, 1, Instant::now()),
        Err(UsageError::Config(_))
    ));
}

#[test]
fn huge_intervals_mean_never_rather_than_overflow() {
    let config = Config {
        ping_interval: Some(Duration::MAX),
        idle_timeout: Some(Duration::MAX),
        close_timeout: Duration::MAX,
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(t0 + SECS(1 << 40));
    server.close(t0, CloseCode::NORMAL, "").unwrap();
    assert_eq!(server.poll_timeout(), None);
}

// ---- client and server together ------------------------------------

fn pump(from: &mut Connection, to: &mut Connection, now: Instant) {
    let bytes = transmitted(from);
    if !bytes.is_empty() {
        to.handle_input(now, &bytes);
    }
}

fn open_pair(seed: u64) -> (Connection, Connection, Instant) {
    let t0 = Instant::now();
    let mut client = Connection::client(
        ClientRequest::new("example.com", 80, "/"),
        Config::default(),
        seed,
        t0,
    )
    .unwrap();
    let mut server = Connection::server(Config::default(), t0).unwrap();
    pump(&mut client, &mut server, t0);
    assert!(matches!(server.poll_event(), Some(Event::Request(_))));
    server.accept(Accept::default()).unwrap();
    assert!(matches!(server.poll_event(), Some(Event::Open(_))));
    pump(&mut server, &mut client, t0);
    assert!(matches!(client.poll_event(), Some(Event::Open(_))));
    (client, server, t0)
}

#[test]
fn client_frames_are_masked_and_the_callers_payload_is_untouched() {
    let (mut client, mut server, t0) = open_pair(9);
    let shared = Bytes::from(vec![7u8; 300]);
    client.send(t0, Message::Binary(shared.clone())).unwrap();
    let frame = client.poll_transmit().unwrap();
    assert_eq!(frame.header()[1] & 0x80, 0x80, "mask bit");
    assert_ne!(&frame.payload()[..], &shared[..], "masked on the wire");
    assert_eq!(shared, vec![7u8; 300], "caller's copy unchanged");
    server.handle_input(t0, frame.header());
    server.handle_input(t0, frame.payload());
    assert_eq!(
        server.poll_event(),
        Some(Event::Message(Message::Binary(shared)))
    );
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let (mut client, _, t0) = open_pair(1234);
        client.send(t0, Message::text("deterministic")).unwrap();
        transmitted(&mut client)
    };
    assert_eq!(run(), run());
}

#[test]
fn client_close_waits_for_the_server_to_close_tcp() {
    let (mut client, mut server, t0) = open_pair(5);
    client.close(t0, CloseCode::NORMAL, "done").unwrap();
    pump(&mut client, &mut server, t0);
    let events = drain_events(&mut server);
    assert!(closed(events.last().unwrap()).clean);
    pump(&mut server, &mut client, t0 + SECS(1));
    assert_eq!(client.state(), State::Closing);
    assert!(matches!(
        drain_events(&mut client)[..],
        [Event::CloseReceived(_)]
    ));
    assert_eq!(
        client.poll_timeout(),
        Some(t0 + SECS(6)),
        "waits close_timeout for TCP"
    );
    client.handle_eof(t0 + SECS(2));
    let events = drain_events(&mut client);
    assert_eq!(
        events,
        // Like a browser's CloseEvent: the code and reason of the peer's frame,
        // which echoed the code only.
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::NORMAL,
            reason: String::new(),
            clean: true,
            error: None
        }))]
    );
}

#[test]
fn client_answering_a_server_close_gives_up_waiting_for_tcp_at_the_deadline() {
    let (mut client, mut server, t0) = open_pair(6);
    server.close(t0, CloseCode::GOING_AWAY, "restart").unwrap();
    pump(&mut server, &mut client, t0);
    let reply = transmitted(&mut client);
    assert_eq!(&reply[..2], &[0x88, 0x82], "masked echo of the code");
    let _ = client.poll_event();
    client.handle_timeout(t0 + SECS(5));
    let events = drain_events(&mut client);
    assert_eq!(closed(&events[0]).code, CloseCode::GOING_AWAY);
    assert!(closed(&events[0]).clean, "close frames were exchanged");
}

#[test]
fn an_upgraded_connection_starts_open_with_its_heartbeat_armed() {
    let t0 = Instant::now();
    let mut client = Connection::upgraded(Role::Client, Config::default(), 9, t0).unwrap();
    assert_eq!(client.state(), State::Open);
    assert_eq!(client.poll_event(), None, "the upgrade happened elsewhere");
    assert_eq!(client.poll_timeout(), Some(t0 + SECS(30)));
    client.send(t0, Message::text("x")).unwrap();
    let out = transmitted(&mut client);
    assert_eq!(out[..2], [0x81, 0x81], "a client masks its frames");

    let invalid = Config {
        max_frame_size: 0,
        ..Config::default()
    };
    assert!(Connection::upgraded(Role::Server, invalid, 0, t0).is_err());
}
