use std::time::Duration;

use super::*;
use crate::testing::{Endpoint, Frame, Output, Pair, REQUEST};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A server past the handshake, and the time it opened at.
fn open_server(config: Config) -> (Endpoint, Instant) {
    let t0 = crate::testing::base_instant();
    (Endpoint::open_server(config, t0), t0)
}

fn closed(out: &Output) -> &Closed {
    out.closed().expect("a Closed event")
}

fn client(frame: Frame) -> Vec<u8> {
    frame.from_client().encode()
}

#[test]
fn server_initiated_close_completes_cleanly_and_the_server_closes_tcp_first() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.close(t0, CloseCode::NORMAL, "bye").unwrap();
    assert_eq!(server.conn.state(), State::Closing);
    assert_eq!(server.drain(t0).wire, b"\x88\x05\x03\xe8bye");
    assert_eq!(
        server.conn.send(t0, Message::text("late")),
        Err(UsageError::Closing)
    );
    assert_eq!(
        server.conn.close(t0, CloseCode::NORMAL, ""),
        Err(UsageError::Closing)
    );

    server
        .conn
        .handle_input(t0, &client(Frame::close(1000, "ok")));
    let out = server.drain(t0);
    assert_eq!(
        out.events,
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
    assert!(out.wire.is_empty(), "nothing after our close frame");
    assert_eq!(out.transport, [TransportAction::HalfClose]);
    assert_eq!(server.conn.state(), State::Closed);
    // It waits for the client to close its side, as long as a close
    // handshake may take.
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(5)));
    server.conn.handle_eof(t0 + SECS(1));
    assert_eq!(server.drain(t0).transport, [TransportAction::Close]);
    assert_eq!(server.conn.poll_timeout(), None);
}

#[test]
fn peer_close_is_echoed_with_its_code_and_the_server_half_closes_at_once() {
    let (mut server, t0) = open_server(Config::default());
    server
        .conn
        .handle_input(t0, &client(Frame::close(4001, "x")));
    let out = server.drain(t0);
    assert_eq!(out.wire, b"\x88\x02\x0f\xa1");
    assert!(closed(&out).clean);
    assert_eq!(closed(&out).code, CloseCode::new(4001));
    assert_eq!(out.transport, [TransportAction::HalfClose]);
}

#[test]
fn empty_close_is_answered_with_an_empty_close() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.handle_input(t0, &client(Frame::empty_close()));
    let out = server.drain(t0);
    assert_eq!(out.wire, b"\x88\x00");
    assert_eq!(closed(&out).code, CloseCode::NO_STATUS);
}

#[test]
fn close_inside_a_fragmented_message_gets_a_normal_close() {
    // Autobahn 7.1.5: a close frame between fragments is legal and answered.
    let (mut server, t0) = open_server(Config::default());
    let mut input = client(Frame::text("frag").fin(false));
    input.extend(client(Frame::close(1000, "")));
    input.extend(client(Frame::continuation("ment")));
    server.conn.handle_input(t0, &input);
    let out = server.drain(t0);
    assert_eq!(out.wire, b"\x88\x02\x03\xe8");
    assert_eq!(out.events.len(), 2, "{out:?}");
    assert!(closed(&out).clean);
}

#[test]
fn app_close_goes_out_after_the_messages_queued_before_it() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.send(t0, Message::text("a")).unwrap();
    server.conn.send(t0, Message::binary(vec![1])).unwrap();
    server.conn.close(t0, CloseCode::GOING_AWAY, "").unwrap();
    assert_eq!(
        server.drain(t0).wire,
        b"\x81\x01a\x82\x01\x01\x88\x02\x03\xe9"
    );
}

#[test]
fn no_pong_after_our_close() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.close(t0, CloseCode::NORMAL, "").unwrap();
    server.drain(t0);
    server.conn.handle_input(t0, &client(Frame::ping("p")));
    let out = server.drain(t0);
    assert_eq!(out.events, vec![Event::Ping(Bytes::from_static(b"p"))]);
    assert!(out.wire.is_empty());
}

#[test]
fn protocol_error_sends_its_close_code_then_lingers_discarding_input() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.send(t0, Message::text("queued")).unwrap();
    // Unmasked frame from a client.
    server.conn.handle_input(t0, b"\x81\x01a");
    let out = server.drain(t0);
    let reason = ProtocolError::UnmaskedClientFrame.to_string();
    let mut expected = b"\x81\x06queued".to_vec();
    expected.extend_from_slice(&[0x88, 2 + reason.len() as u8, 0x03, 0xEA]);
    expected.extend_from_slice(reason.as_bytes());
    assert_eq!(
        out.wire, expected,
        "data queued before the failure goes first"
    );
    assert_eq!(
        out.events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::PROTOCOL_ERROR,
            reason,
            clean: false,
            error: Some(Error::Protocol(ProtocolError::UnmaskedClientFrame)),
        }))]
    );
    assert_eq!(out.transport, [TransportAction::HalfClose]);
    // The client may still be sending: that is read and dropped, until it
    // closes its side.
    server
        .conn
        .handle_input(t0 + SECS(1), &client(Frame::text("more")));
    assert_eq!(server.drain(t0).transport, []);
    server.conn.handle_eof(t0 + SECS(2));
    assert_eq!(server.drain(t0).transport, [TransportAction::Close]);
    server.conn.handle_timeout(t0 + SECS(3600));
    assert!(server.drain(t0).is_empty());
}

#[test]
fn a_peer_that_never_closes_its_side_is_cut_off_at_the_close_timeout() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.handle_input(t0, b"\x81\x01a");
    assert_eq!(server.drain(t0).transport, [TransportAction::HalfClose]);
    server
        .conn
        .handle_input(t0 + SECS(4), &client(Frame::text("still")));
    server.conn.handle_timeout(t0 + SECS(4));
    assert!(server.drain(t0).is_empty(), "not yet");
    server.conn.handle_timeout(t0 + SECS(5));
    assert_eq!(server.drain(t0).transport, [TransportAction::Close]);
}

#[test]
fn last_bytes_that_cannot_be_written_are_given_up_at_the_close_timeout() {
    let (mut server, t0) = open_server(Config::default());
    server
        .conn
        .send(t0, Message::binary(vec![0; 1 << 20]))
        .unwrap();
    server.conn.handle_input(t0, b"\x81\x01a");
    // The peer reads nothing: no write takes a byte.
    assert!(matches!(server.events()[..], [Event::Closed(_)]));
    assert_eq!(server.conn.poll_transport(), None, "bytes still to write");
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(5)));
    server.conn.handle_timeout(t0 + SECS(5));
    assert_eq!(server.conn.poll_transport(), Some(TransportAction::Close));
    assert_eq!(server.conn.buffered_amount(), 0);
}

#[test]
fn invalid_utf8_and_oversized_messages_get_1007_and_1009() {
    let config = Config {
        max_message_size: 10,
        ..Config::default()
    };
    let (mut server, t0) = open_server(config.clone());
    server
        .conn
        .handle_input(t0, &client(Frame::new(0x1, b"\xc3\x28".to_vec())));
    let out = server.drain(t0);
    assert_eq!(&out.wire[2..4], &1007u16.to_be_bytes());
    assert_eq!(closed(&out).code, CloseCode::INVALID_PAYLOAD);

    let (mut server, t0) = open_server(config);
    server
        .conn
        .handle_input(t0, &client(Frame::binary(vec![0; 11])));
    let out = server.drain(t0);
    assert_eq!(&out.wire[2..4], &1009u16.to_be_bytes());
    assert_eq!(closed(&out).code, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn heartbeat_pings_a_silent_peer_and_declares_it_dead_after_three_misses() {
    let (mut server, t0) = open_server(Config::default());
    for (n, at) in [(1, 30), (2, 60), (3, 90)] {
        assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(at)));
        server.conn.handle_timeout(t0 + SECS(at));
        let out = server.drain(t0 + SECS(at));
        assert_eq!(
            (out.events, out.wire),
            (vec![], b"\x89\x00".to_vec()),
            "ping {n}"
        );
    }
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(120)));
    server.conn.handle_timeout(t0 + SECS(119));
    assert_eq!(server.conn.state(), State::Open, "not yet");
    server.conn.handle_timeout(t0 + SECS(120));
    let out = server.drain(t0 + SECS(120));
    assert!(out.wire.is_empty(), "a dead peer gets no close frame");
    assert_eq!(
        out.events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(Error::PeerUnresponsive(3)),
        }))]
    );
    assert_eq!(out.transport, [TransportAction::Close], "no waiting for it");
}

#[test]
fn any_frame_is_a_sign_of_life_so_a_busy_peer_gets_no_ping() {
    let (mut server, t0) = open_server(Config::default());
    server
        .conn
        .handle_input(t0 + SECS(20), &client(Frame::binary("data")));
    server.drain(t0);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(50)));
    server.conn.handle_timeout(t0 + SECS(30));
    assert!(server.drain(t0).is_empty());
    // A pong after a missed ping resets the count.
    server.conn.handle_timeout(t0 + SECS(50));
    assert_eq!(server.drain(t0).wire, b"\x89\x00");
    server
        .conn
        .handle_input(t0 + SECS(51), &client(Frame::pong("")));
    assert_eq!(server.drain(t0).events, vec![Event::Pong(Bytes::new())]);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(81)));
}

#[test]
fn every_ping_is_answered_until_a_flood_keeps_only_the_latest() {
    let (mut server, t0) = open_server(Config::default());
    let mut input = client(Frame::ping("first"));
    input.extend(client(Frame::ping("second")));
    server.conn.handle_input(t0, &input);
    let out = server.drain(t0);
    assert_eq!(
        out.events,
        vec![
            Event::Ping(Bytes::from_static(b"first")),
            Event::Ping(Bytes::from_static(b"second"))
        ]
    );
    assert_eq!(out.wire, b"\x8a\x05first\x8a\x06second");

    let flood: Vec<u8> = (0..100u8).flat_map(|i| client(Frame::ping([i]))).collect();
    server.conn.handle_input(t0, &flood);
    let out = server.drain(t0);
    assert_eq!(out.events.len(), 100);
    let expected: Vec<u8> = (84..100u8).flat_map(|i| [0x8A, 1, i]).collect();
    assert_eq!(out.wire, expected, "the 16 latest pings are answered");
}

#[test]
fn messages_are_decoded_one_at_a_time_so_replies_keep_their_order() {
    // Autobahn 3.2: a message, then a broken frame. The echo of the message
    // goes out before the close that the broken frame causes.
    let (mut server, t0) = open_server(Config::default());
    let mut input = client(Frame::text("hello"));
    input.extend(client(Frame::text("").rsv(0b010)));
    server.conn.handle_input(t0, &input);
    assert_eq!(server.conn.buffered_input(), 6, "the second frame waits");
    let Some(Event::Message(message)) = server.conn.poll_event() else {
        panic!()
    };
    server.conn.send(t0, message).unwrap();
    let out = server.drain(t0);
    assert_eq!(
        closed(&out).error,
        Some(Error::Protocol(ProtocolError::ReservedBits(2)))
    );
    assert!(out.wire.starts_with(b"\x81\x05hello\x88"), "{out:?}");
}

#[test]
fn eof_decodes_what_arrived_before_it() {
    let (mut server, t0) = open_server(Config::default());
    let mut input = client(Frame::text("one"));
    input.extend(client(Frame::text("two")));
    input.extend(client(Frame::close(1000, "")));
    server.conn.handle_input(t0, &input);
    server.conn.handle_eof(t0);
    let out = server.drain(t0);
    assert_eq!(out.events.len(), 4, "{out:?}");
    assert!(closed(&out).clean);
    // The peer has closed its side already: the close reply, then close.
    assert_eq!(out.wire, b"\x88\x02\x03\xe8");
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn pong_and_close_slip_between_fragments_of_a_long_message() {
    let config = Config {
        fragment_size: Some(4),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    // Room for one frame per write (small frames in a row would share a
    // slice).
    server.slices = 1;
    server
        .conn
        .send(t0, Message::binary(b"0123456789AB".to_vec()))
        .unwrap();
    assert_eq!(server.write(t0, usize::MAX), b"\x02\x040123");
    server.conn.handle_input(t0, &client(Frame::ping("p")));
    server.events();
    assert_eq!(server.write(t0, usize::MAX), b"\x8a\x01p");
    assert_eq!(server.write(t0, usize::MAX), b"\x00\x044567");
    // The peer closes: the reply cuts in at the next fragment boundary.
    server
        .conn
        .handle_input(t0, &client(Frame::close(1000, "")));
    assert_eq!(server.drain(t0).wire, b"\x88\x02\x03\xe8");
}

#[test]
fn a_write_that_brings_the_queue_back_under_the_high_water_mark_reports_drained() {
    let config = Config {
        write_buffer_high_water: 1000,
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server.conn.send(t0, Message::binary(vec![0; 800])).unwrap();
    assert!(!server.conn.is_backpressured());
    server.conn.send(t0, Message::binary(vec![0; 800])).unwrap();
    assert!(server.conn.is_backpressured());
    assert_eq!(server.write(t0, 500).len(), 500);
    assert!(server.conn.is_backpressured());
    assert_eq!(server.events(), []);
    assert_eq!(server.write(t0, 400).len(), 400);
    assert!(!server.conn.is_backpressured());
    assert_eq!(server.events(), [Event::Drained]);
    // Only a fall from above the mark counts.
    server.drain(t0);
    assert_eq!(server.events(), []);
}

#[test]
fn idle_timeout_closes_with_1001() {
    let config = Config {
        ping_interval: None,
        idle_timeout: Some(SECS(60)),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server
        .conn
        .handle_input(t0 + SECS(10), &client(Frame::ping("")));
    server.drain(t0);
    assert_eq!(
        server.conn.poll_timeout(),
        Some(t0 + SECS(60)),
        "control frames are not activity"
    );
    server
        .conn
        .handle_input(t0 + SECS(20), &client(Frame::text("hi")));
    server.drain(t0);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(80)));
    server.conn.handle_timeout(t0 + SECS(80));
    assert_eq!(server.drain(t0).wire, b"\x88\x0e\x03\xe9idle timeout");
    assert_eq!(server.conn.state(), State::Closing);
}

#[test]
fn unanswered_close_times_out_and_closes_at_once() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.close(t0, CloseCode::NORMAL, "").unwrap();
    server.drain(t0);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(5)));
    server.conn.handle_timeout(t0 + SECS(5));
    let out = server.drain(t0);
    assert_eq!(closed(&out).error, Some(Error::CloseTimeout));
    assert!(!closed(&out).clean);
    assert_eq!(out.transport, [TransportAction::Close]);
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
    server.conn.close(later, CloseCode::NORMAL, "").unwrap();
    server.drain(later);
    assert_eq!(server.conn.poll_timeout(), Some(later + SECS(5)));
}

#[test]
fn sending_restarts_the_idle_timer() {
    let config = Config {
        ping_interval: None,
        idle_timeout: Some(SECS(60)),
        ..Config::default()
    };
    let (mut server, t0) = open_server(config);
    server
        .conn
        .send(t0 + SECS(50), Message::text("push"))
        .unwrap();
    server.drain(t0);
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(110)));
}

#[test]
fn the_heartbeat_starts_when_the_request_is_accepted_not_when_it_arrived() {
    let t0 = crate::testing::base_instant();
    let mut server = Endpoint::server(Config::default(), t0);
    server.conn.handle_input(t0, REQUEST);
    server.events();
    // The application took 8 s to check a token.
    server
        .conn
        .accept(t0 + SECS(8), crate::Handshake::default())
        .unwrap();
    server.drain(t0 + SECS(8));
    assert_eq!(server.conn.poll_timeout(), Some(t0 + SECS(38)));
}

#[test]
fn eof_without_close_is_abnormal_and_closes_at_once() {
    let (mut server, t0) = open_server(Config::default());
    server.conn.handle_eof(t0);
    let out = server.drain(t0);
    assert_eq!(
        out.events,
        vec![Event::Closed(Box::new(Closed {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(Error::UnexpectedEof),
        }))]
    );
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn a_transport_error_ends_the_connection_and_the_wait_for_its_transport() {
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let (mut server, t0) = open_server(Config::default());
    server.conn.send(t0, Message::text("lost")).unwrap();
    server.conn.handle_transport_error(t0, &reset);
    let out = server.drain(t0);
    assert!(out.wire.is_empty(), "nothing more is written");
    assert_eq!(out.transport, [TransportAction::Close]);
    assert!(matches!(
        closed(&out),
        Closed {
            code: CloseCode::ABNORMAL,
            clean: false,
            error: Some(Error::Transport {
                kind: std::io::ErrorKind::ConnectionReset,
                ..
            }),
            ..
        }
    ));

    // Once over, a failure while lingering only stops the wait.
    let (mut server, t0) = open_server(Config::default());
    server
        .conn
        .handle_input(t0, &client(Frame::close(1000, "")));
    assert_eq!(server.drain(t0).transport, [TransportAction::HalfClose]);
    server.conn.handle_transport_error(t0, &reset);
    let out = server.drain(t0);
    assert_eq!(
        (out.events, out.transport),
        (vec![], vec![TransportAction::Close])
    );
}

#[test]
fn usage_errors_leave_the_connection_unchanged() {
    let t0 = crate::testing::base_instant();
    let mut server = Connection::server(Config::default(), t0).unwrap();
    assert_eq!(
        server.send(t0, Message::text("x")),
        Err(UsageError::NotOpen)
    );
    let (mut server, _) = open_server(Config::default());
    assert_eq!(
        server.conn.ping(t0, Bytes::from(vec![0; 126])),
        Err(UsageError::PingTooLarge(126))
    );
    assert_eq!(
        server.conn.close(t0, CloseCode::NO_STATUS, ""),
        Err(UsageError::InvalidCloseCode(1005))
    );
    assert_eq!(
        server.conn.close(t0, CloseCode::NORMAL, &"x".repeat(124)),
        Err(UsageError::CloseReasonTooLong(124))
    );
    assert_eq!(server.conn.state(), State::Open);
    assert!(server.drain(t0).is_empty());
}

#[test]
fn bad_config_is_the_same_error_from_every_constructor() {
    let config = Config {
        max_missed_pongs: 0,
        ..Config::default()
    };
    let now = Instant::now();
    let request = ClientRequest::new("h", 80, "/");
    for result in [
        Connection::server(config.clone(), now),
        Connection::client(request, config.clone(), 1, now),
        Connection::upgraded(Role::Server, config, 0, now),
    ] {
        assert!(
            matches!(&result, Err(UsageError::Config(e)) if e.field == "max_missed_pongs"),
            "{result:?}"
        );
    }
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
    assert_eq!(server.conn.poll_timeout(), None);
    server.conn.handle_timeout(t0 + SECS(1 << 40));
    server.conn.close(t0, CloseCode::NORMAL, "").unwrap();
    assert_eq!(server.conn.poll_timeout(), None);
}

// ---- client and server together ------------------------------------

#[test]
fn client_frames_are_masked_and_the_callers_payload_is_untouched() {
    let mut pair = Pair::new(Config::default(), Config::default()).open();
    let shared = Bytes::from(vec![7u8; 300]);
    pair.client
        .conn
        .send(pair.now, Message::Binary(shared.clone()))
        .unwrap();
    let (client, server) = pair.drive();
    assert_eq!(client.wire[1] & 0x80, 0x80, "mask bit");
    assert_ne!(&client.wire[8..], &shared[..], "masked on the wire");
    assert_eq!(shared, vec![7u8; 300], "caller's copy unchanged");
    assert_eq!(server.events, [Event::Message(Message::Binary(shared))]);
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut pair = Pair::new(Config::default(), Config::default()).open();
        pair.client
            .conn
            .send(pair.now, Message::text("deterministic"))
            .unwrap();
        pair.drive().0.wire
    };
    assert_eq!(run(), run());
}

#[test]
fn client_close_waits_for_the_server_to_close_tcp() {
    let mut pair = Pair::new(Config::default(), Config::default()).open();
    pair.client
        .conn
        .close(pair.now, CloseCode::NORMAL, "done")
        .unwrap();
    let (client, server) = pair.drive();
    assert!(closed(&server).clean);
    assert_eq!(
        server.transport,
        [TransportAction::HalfClose, TransportAction::Close]
    );
    assert_eq!(
        client.events,
        // Like a browser's CloseEvent: the code and reason of the peer's
        // frame, which echoed the code only.
        vec![
            Event::CloseReceived(CloseFrame {
                code: CloseCode::NORMAL,
                reason: String::new()
            }),
            Event::Closed(Box::new(Closed {
                code: CloseCode::NORMAL,
                reason: String::new(),
                clean: true,
                error: None
            }))
        ]
    );
    assert_eq!(client.transport, [TransportAction::Close]);
    assert_eq!(pair.resets(), 0);
}

#[test]
fn client_answering_a_server_close_gives_up_waiting_for_tcp_at_the_deadline() {
    let t0 = crate::testing::base_instant();
    let mut server = Endpoint::server(Config::default(), t0);
    let request = ClientRequest::new("example.com", 80, "/");
    let mut client = Endpoint::new(Connection::client(request, Config::default(), 6, t0).unwrap());
    let hello = client.drain(t0).wire;
    server.conn.handle_input(t0, &hello);
    server.events();
    server.conn.accept(t0, crate::Handshake::default()).unwrap();
    let response = server.drain(t0).wire;
    client.conn.handle_input(t0, &response);
    client.drain(t0);

    server
        .conn
        .close(t0, CloseCode::GOING_AWAY, "restart")
        .unwrap();
    client.conn.handle_input(t0, &server.drain(t0).wire);
    let out = client.drain(t0);
    assert_eq!(&out.wire[..2], &[0x88, 0x82], "masked echo of the code");
    // The server never closes TCP.
    client.conn.handle_timeout(t0 + SECS(5));
    let out = client.drain(t0 + SECS(5));
    assert_eq!(closed(&out).code, CloseCode::GOING_AWAY);
    assert!(closed(&out).clean, "close frames were exchanged");
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn a_failed_connection_hears_the_peer_out_so_its_close_frame_is_not_reset() {
    // The client sends a message over the server's limit in fragments; the
    // server fails the connection after the first three, while the rest are
    // on their way.
    let client = Config {
        fragment_size: Some(512),
        ..Config::default()
    };
    let server = Config {
        max_message_size: 1024,
        ..Config::default()
    };
    let mut pair = Pair::new(client, server).open();
    pair.read_size = Some(600);
    pair.client
        .conn
        .send(pair.now, Message::binary(vec![0; 8 * 512]))
        .unwrap();
    let (client, server) = pair.drive();
    assert_eq!(closed(&server).code, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(
        closed(&client).code,
        CloseCode::MESSAGE_TOO_BIG,
        "{client:?}"
    );
    assert_eq!(
        server.transport,
        [TransportAction::HalfClose, TransportAction::Close]
    );
    assert_eq!(pair.resets(), 0);
}

#[test]
fn an_http_answer_is_followed_by_a_half_close_and_a_wait_for_the_client() {
    let t0 = crate::testing::base_instant();
    let mut server = Endpoint::server(Config::default(), t0);
    server
        .conn
        .handle_input(t0, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(server.events()[..], [Event::HttpRequest(_)]));
    server
        .conn
        .respond(t0, crate::Response::new(200, "ok"))
        .unwrap();
    let out = server.drain(t0);
    assert!(out.wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(out.transport, [TransportAction::HalfClose]);
    // A client that pipelines more is not reset under the answer.
    server.conn.handle_input(t0, b"GET / HTTP/1.1\r\n\r\n");
    server.conn.handle_eof(t0);
    assert_eq!(server.drain(t0).transport, [TransportAction::Close]);

    // A client that half-closed after its request gets the answer, then close.
    let mut server = Endpoint::server(Config::default(), t0);
    server
        .conn
        .handle_input(t0, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    server.conn.handle_eof(t0);
    server.events();
    server
        .conn
        .respond(t0, crate::Response::new(200, "ok"))
        .unwrap();
    let out = server.drain(t0);
    assert!(!out.wire.is_empty());
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn an_upgraded_connection_starts_open_with_its_heartbeat_armed() {
    let t0 = Instant::now();
    let mut client =
        Endpoint::new(Connection::upgraded(Role::Client, Config::default(), 9, t0).unwrap());
    assert_eq!(client.conn.state(), State::Open);
    assert_eq!(client.events(), [], "the upgrade happened elsewhere");
    assert_eq!(client.conn.poll_timeout(), Some(t0 + SECS(30)));
    client.conn.send(t0, Message::text("x")).unwrap();
    let out = client.drain(t0);
    assert_eq!(out.wire[..2], [0x81, 0x81], "a client masks its frames");
}
