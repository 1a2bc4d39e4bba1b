//! The tokio driver against a peer nobody here wrote, over real TCP sockets
//! on 127.0.0.1: our server with a `tokio-tungstenite` client, and our
//! client with a `tokio-tungstenite` server, on the same scenarios; plus raw
//! TCP peers where the test needs to control the bytes (cancel-safety), and
//! the driver's own promises (split halves, backpressure, 1 000 connections).
//!
//! Every exchange has a deadline, so a hang fails the test instead of
//! stalling the suite.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_core::{Error as CoreError, ProtocolError, ResponseError};
use sockeye_tokio::{
    Client, CloseCode, Closed, Config, Error, Handshake, Incoming, Message, Response, WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Barrier, oneshot};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{
    CloseCode as TCloseCode, Data, OpCode,
};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame as TCloseFrame, Frame};
use tokio_tungstenite::tungstenite::{self, Message as TMessage};

type Ours = WebSocket<TcpStream>;
type Theirs = WebSocketStream<TcpStream>;

/// Which end is ours; the other is tokio-tungstenite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    OurServer,
    OurClient,
}

const SIDES: [Side; 2] = [Side::OurServer, Side::OurClient];

/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no progress within {STEP:?}"),
    }
}

/// A connected pair over loopback: ours with `ours`, theirs with
/// `theirs`.
async fn pair(side: Side, ours: Config, theirs: Option<WebSocketConfig>) -> (Ours, Theirs) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://{addr}/interop?side={side:?}");
    // Shown with a failing test's output: which pairing it was.
    println!(
        "pair: ours is the {}",
        if side == Side::OurServer {
            "server"
        } else {
            "client"
        }
    );
    match side {
        Side::OurServer => {
            let server = async {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let incoming = Incoming::read(stream, ours).await.unwrap();
                assert!(incoming.is_upgrade());
                assert_eq!(incoming.request().path, "/interop");
                assert_eq!(incoming.request().query.as_deref(), Some("side=OurServer"));
                incoming.accept(Handshake::default()).await.unwrap()
            };
            let client = async {
                let stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio_tungstenite::client_async_with_config(url.as_str(), stream, theirs)
                    .await
                    .unwrap()
                    .0
            };
            within("handshake", async { tokio::join!(server, client) }).await
        }
        Side::OurClient => {
            let server = async {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                tokio_tungstenite::accept_async_with_config(stream, theirs)
                    .await
                    .unwrap()
            };
            let client = Client::new(url.as_str()).config(ours).connect();
            let (theirs, ours) = within("handshake", async { tokio::join!(server, client) }).await;
            (ours.unwrap(), theirs)
        }
    }
}

async fn pair_default(side: Side) -> (Ours, Theirs) {
    pair(side, Config::default(), None).await
}

/// Our next message, which must be one.
async fn recv(ours: &mut Ours) -> Message {
    match within("our recv", ours.recv()).await {
        Some(Ok(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Their next message, which must be one.
async fn next(theirs: &mut Theirs) -> TMessage {
    match within("their next", theirs.next()).await {
        Some(Ok(message)) => message,
        other => panic!("expected a message from tungstenite, got {other:?}"),
    }
}

/// Awaits `future` (tungstenite's side) while ours waits in `recv`, as an
/// application's read loop would; ours must get no message meanwhile. (Ours
/// writes its pongs when `recv` waits for input, not when it returns a
/// message, so a test that stops calling `recv` would see no pong.)
async fn while_ours_reads<T>(ours: &mut Ours, future: impl Future<Output = T>) -> T {
    tokio::select! {
        output = future => output,
        got = ours.recv() => panic!("ours: unexpected {got:?}"),
    }
}

/// Ours closes with 1000; theirs sees that close frame, then the end of
/// the stream; both sides agree the close was clean.
async fn close_normally(side: Side, mut ours: Ours, mut theirs: Theirs) {
    let (closed, ()) = tokio::join!(ours.close(CloseCode::NORMAL, ""), async {
        assert_their_close(next_close(&mut theirs).await, 1000, "");
        expect_end(&mut theirs).await;
        drop(theirs);
    });
    assert_eq!(closed.unwrap(), clean(1000, ""), "{side:?}");
}

/// Their next message that is not one of ours' heartbeat pings.
async fn next_skipping_pings(theirs: &mut Theirs) -> TMessage {
    loop {
        match next(theirs).await {
            TMessage::Ping(payload) if payload.is_empty() => {}
            other => return other,
        }
    }
}

/// Their next close frame, skipping nothing: it must come next.
async fn next_close(theirs: &mut Theirs) -> Option<TCloseFrame> {
    match next(theirs).await {
        TMessage::Close(frame) => frame,
        other => panic!("expected a close frame, got {}", describe(&other)),
    }
}

/// Tungstenite's stream must end now (after a close handshake).
async fn expect_end(theirs: &mut Theirs) {
    match within("their end", theirs.next()).await {
        None => {}
        Some(other) => panic!("expected the end of tungstenite's stream, got {other:?}"),
    }
}

fn describe(message: &TMessage) -> String {
    match message {
        TMessage::Text(t) if t.len() > 64 => format!("Text({} bytes)", t.len()),
        TMessage::Binary(b) if b.len() > 64 => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Converts what tungstenite received into our type, for exact comparison.
fn ours_from(message: TMessage) -> Message {
    match message {
        TMessage::Text(text) => Message::text(text.as_str()),
        TMessage::Binary(bytes) => Message::binary(bytes),
        other => panic!("expected a data message, got {}", describe(&other)),
    }
}

fn theirs_from(message: &Message) -> TMessage {
    match message {
        Message::Text(text) => TMessage::text(text.as_str()),
        Message::Binary(bytes) => TMessage::binary(bytes.clone()),
    }
}

#[track_caller]
fn assert_same(got: &Message, want: &Message, what: &str) {
    if got != want {
        let kind = |m: &Message| {
            if m.as_text().is_some() {
                "text"
            } else {
                "binary"
            }
        };
        let first_diff = got
            .payload()
            .iter()
            .zip(want.payload().iter())
            .position(|(a, b)| a != b);
        panic!(
            "{what}: got {} of {} bytes, want {} of {} bytes (first difference at {first_diff:?})",
            kind(got),
            got.len(),
            kind(want),
            want.len()
        );
    }
}

#[track_caller]
fn assert_connection_error(got: Option<Result<Message, Error>>, want: CoreError) {
    match got {
        Some(Err(Error::Connection(error))) => assert_eq!(error, want),
        other => panic!("expected Error::Connection({want:?}), got {other:?}"),
    }
}

fn their_close(code: u16, reason: &str) -> TCloseFrame {
    TCloseFrame {
        code: TCloseCode::from(code),
        reason: reason.into(),
    }
}

#[track_caller]
fn assert_their_close(got: Option<TCloseFrame>, code: u16, reason: &str) {
    let frame = got.unwrap_or_else(|| panic!("expected close {code} {reason:?}, got no code"));
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (code, reason),
        "the close frame tungstenite received"
    );
}

fn clean(code: u16, reason: &str) -> Closed {
    Closed {
        code: CloseCode::new(code),
        reason: reason.into(),
        clean: true,
        error: None,
    }
}

/// Payloads at the edges of the three length encodings (7-bit, 16-bit,
/// 64-bit), with multi-byte characters.
fn sample_messages() -> Vec<Message> {
    let mut messages = vec![
        Message::text(""),
        Message::binary(Vec::new()),
        Message::text("hello"),
        Message::text("héllo wörld ✓ 🦀"),
        Message::binary(vec![0, 255, 1, 254, 0x80, 0x7f]),
    ];
    for len in [125, 126, 127, 65_535, 65_536, 100_003] {
        let text: String = "añ✓🦀".chars().cycle().take(len).collect();
        messages.push(Message::text(text));
        messages.push(Message::binary(
            (0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>(),
        ));
    }
    messages
}

// ---- data ------------------------------------------------------------

/// Text and binary of every length encoding, both ways, exactly and in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_both_ways() {
    for side in SIDES {
        let (mut ours, mut theirs) = pair_default(side).await;
        let messages = sample_messages();

        let send = async {
            for message in &messages {
                ours.send(message.clone()).await.unwrap();
            }
            ours
        };
        let receive = async {
            for (i, want) in messages.iter().enumerate() {
                let got = ours_from(next(&mut theirs).await);
                assert_same(&got, want, &format!("{side:?}: ours → theirs #{i}"));
            }
            theirs
        };
        let (mut ours, mut theirs) =
            within("ours → theirs", async { tokio::join!(send, receive) }).await;

        let send = async {
            for message in &messages {
                theirs.send(theirs_from(message)).await.unwrap();
            }
            theirs
        };
        let receive = async {
            for (i, want) in messages.iter().enumerate() {
                let got = recv(&mut ours).await;
                assert_same(&got, want, &format!("{side:?}: theirs → ours #{i}"));
            }
            ours
        };
        let (theirs, ours) = within("theirs → ours", async { tokio::join!(send, receive) }).await;

        close_normally(side, ours, theirs).await;
    }
}

/// Fragmented messages both ways. Theirs sends hand-made fragments with a
/// ping and a split code point in the middle; ours sends with
/// `fragment_size`, and tungstenite, limited to frames of that size, proves
/// the message was really cut up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_messages_both_ways() {
    const FRAGMENT: usize = 7;
    for side in SIDES {
        let ours = Config {
            fragment_size: Some(FRAGMENT),
            ..Config::default()
        };
        let their_config = WebSocketConfig::default().max_frame_size(Some(FRAGMENT));
        let (mut ours, mut theirs) = pair(side, ours, Some(their_config)).await;

        // Theirs → ours: "Hello, wörld" in three fragments, the ö split
        // between two of them, a ping between fragments; then a binary
        // message whose middle fragment is empty.
        let fragments = [
            Frame::message(&b"Hel"[..], OpCode::Data(Data::Text), false),
            Frame::message(&b"lo, w\xc3"[..], OpCode::Data(Data::Continue), false),
            Frame::message(&b"\xb6rld"[..], OpCode::Data(Data::Continue), true),
            Frame::message(&[1u8, 2][..], OpCode::Data(Data::Binary), false),
            Frame::message(&[][..], OpCode::Data(Data::Continue), false),
            Frame::message(&[3u8][..], OpCode::Data(Data::Continue), true),
        ];
        for (i, frame) in fragments.into_iter().enumerate() {
            theirs.feed(TMessage::Frame(frame)).await.unwrap();
            if i == 1 {
                theirs.feed(TMessage::Ping("mid".into())).await.unwrap();
            }
        }
        theirs.flush().await.unwrap();
        assert_same(
            &recv(&mut ours).await,
            &Message::text("Hello, wörld"),
            "fragmented text",
        );
        assert_same(
            &recv(&mut ours).await,
            &Message::binary(vec![1, 2, 3]),
            "fragmented binary",
        );
        let pong = while_ours_reads(&mut ours, next(&mut theirs)).await;
        assert_eq!(pong, TMessage::Pong("mid".into()), "{side:?}");

        // Ours → theirs: every frame fits in 7 bytes, or tungstenite fails.
        let text: String = "fragments ✓ añ 🦀 ".repeat(20);
        let binary: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        ours.send(Message::text(text.clone())).await.unwrap();
        ours.send(Message::binary(binary.clone())).await.unwrap();
        let (got_text, got_binary) = within("fragments to theirs", async {
            let text = next(&mut theirs).await;
            (text, next(&mut theirs).await)
        })
        .await;
        assert_eq!(got_text, TMessage::text(text), "{side:?}");
        assert_eq!(got_binary, TMessage::binary(binary), "{side:?}");

        close_normally(side, ours, theirs).await;
    }
}

/// 16 MiB messages, exactly the default frame limit of both libraries, both
/// ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_messages_both_ways() {
    const SIZE: usize = 16 << 20;
    let binary = Message::binary((0..SIZE).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let text = Message::text(
        "sixteen mebibytes, ✓ "
            .chars()
            .cycle()
            .scan(0, |len, c| {
                *len += c.len_utf8();
                (*len <= SIZE).then_some(c)
            })
            .collect::<String>(),
    );
    for side in SIDES {
        let (mut ours, mut theirs) = pair_default(side).await;

        let (sent, got) = tokio::join!(ours.send(binary.clone()), next(&mut theirs));
        sent.unwrap();
        assert_same(
            &ours_from(got),
            &binary,
            &format!("{side:?}: 16 MiB ours → theirs"),
        );

        let (sent, got) = tokio::join!(theirs.send(theirs_from(&text)), recv(&mut ours));
        sent.unwrap();
        assert_same(&got, &text, &format!("{side:?}: 16 MiB theirs → ours"));

        let (closed, ()) = tokio::join!(ours.close(CloseCode::NORMAL, "big"), async {
            assert_their_close(next_close(&mut theirs).await, 1000, "big");
            expect_end(&mut theirs).await;
            drop(theirs);
        });
        assert_eq!(closed.unwrap(), clean(1000, "big"), "{side:?}");
    }
}

// ---- ping and pong ---------------------------------------------------

/// Ours answers tungstenite's pings, each with its own payload, in order;
/// ours' heartbeat pings reach tungstenite, and tungstenite's automatic pongs
/// keep ours from declaring it dead. The control: a tungstenite that stops
/// reading is declared dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_both_ways() {
    const INTERVAL: Duration = Duration::from_millis(100);
    for side in SIDES {
        let heartbeat = Config {
            ping_interval: Some(INTERVAL),
            max_missed_pongs: 1,
            ..Config::default()
        };
        let (mut ours, mut theirs) = pair(side, heartbeat, None).await;

        // Theirs pings; ours answers while it waits for a message.
        let payloads: Vec<Vec<u8>> = vec![vec![], b"ping 1".to_vec(), vec![0xAB; 125]];
        for payload in &payloads {
            theirs
                .send(TMessage::Ping(payload.clone().into()))
                .await
                .unwrap();
        }
        theirs
            .send(TMessage::text("after the pings"))
            .await
            .unwrap();
        assert_same(
            &recv(&mut ours).await,
            &Message::text("after the pings"),
            "after pings",
        );
        for payload in &payloads {
            let got = while_ours_reads(&mut ours, next_skipping_pings(&mut theirs)).await;
            assert_eq!(got, TMessage::Pong(payload.clone().into()), "{side:?}");
        }

        // Ours' heartbeat: several intervals of silence from theirs apart
        // from its automatic pongs, and ours stays open.
        let mut pings = 0;
        let watch = async {
            let deadline = tokio::time::Instant::now() + INTERVAL * 6;
            while let Ok(message) = tokio::time::timeout_at(deadline, next(&mut theirs)).await {
                match message {
                    TMessage::Ping(payload) => {
                        assert!(payload.is_empty(), "heartbeat pings are empty");
                        pings += 1;
                    }
                    other => panic!("{side:?}: expected only pings, got {other:?}"),
                }
            }
        };
        tokio::select! {
            () = watch => {}
            got = ours.recv() => panic!("{side:?}: ours ended while tungstenite answered its pings: {got:?}"),
        }
        assert!(
            pings >= 3,
            "{side:?}: {pings} heartbeat pings in 6 intervals"
        );
        ours.send(Message::text("still here")).await.unwrap();
        let got = next_skipping_pings(&mut theirs).await;
        assert_eq!(got, TMessage::text("still here"), "{side:?}");

        // The control: theirs stops reading, so nobody answers the pings.
        let started = tokio::time::Instant::now();
        assert_connection_error(
            within("heartbeat", ours.recv()).await,
            CoreError::PeerUnresponsive(1),
        );
        // Dead one interval after the unanswered ping, which went out at
        // most one interval after the last pong.
        let waited = started.elapsed();
        assert!(
            waited >= INTERVAL / 2 && waited < INTERVAL * 10,
            "{side:?}: declared dead after {waited:?}"
        );
        let closed = ours.closed().unwrap();
        assert_eq!((closed.code, closed.clean), (CloseCode::ABNORMAL, false));
        assert!(ours.recv().await.is_none());
        drop(theirs);
    }
}

/// An application ping from ours reaches tungstenite with its payload, in
/// both roles; tungstenite's pong is taken in by ours (it is not a message),
/// and the conversation goes on. A payload over 125 bytes is refused before
/// anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_pings_reach_the_peer() {
    for side in SIDES {
        let (mut ours, mut theirs) = pair_default(side).await;
        ours.ping(bytes::Bytes::from_static(b"probe"))
            .await
            .unwrap();
        assert!(matches!(
            ours.ping(vec![0; 126].into()).await,
            Err(Error::Usage(sockeye_core::UsageError::PingTooLarge(126)))
        ));
        ours.send(Message::text("after the ping")).await.unwrap();
        // tungstenite hands the ping to its reader, and queues the pong.
        assert_eq!(
            next(&mut theirs).await,
            TMessage::Ping("probe".into()),
            "{side:?}"
        );
        assert_eq!(
            next(&mut theirs).await,
            TMessage::text("after the ping"),
            "{side:?}"
        );
        theirs.send(TMessage::text("reply")).await.unwrap();
        assert_same(
            &recv(&mut ours).await,
            &Message::text("reply"),
            "after the pong",
        );
    }
}

// ---- closing ---------------------------------------------------------

/// Ours closes with a code and a reason: tungstenite sees them, echoes them,
/// and both ends agree the close was clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_initiated_by_ours() {
    for side in SIDES {
        let (mut ours, mut theirs) = pair_default(side).await;
        let (closed, ()) =
            tokio::join!(ours.close(CloseCode::new(4000), "ours is done ✓"), async {
                assert_their_close(next_close(&mut theirs).await, 4000, "ours is done ✓");
                expect_end(&mut theirs).await;
                // Tungstenite as a server does not close TCP by itself: dropping
                // it is what lets our client finish.
                drop(theirs);
            });
        assert_eq!(closed.unwrap(), clean(4000, "ours is done ✓"), "{side:?}");
        assert!(ours.recv().await.is_none(), "{side:?}");
        assert_eq!(ours.closed(), Some(&clean(4000, "ours is done ✓")));
        assert!(matches!(
            ours.send(Message::text("late")).await,
            Err(Error::Closed)
        ));
    }
}

/// Tungstenite closes, with each kind of code and with none: ours' `recv`
/// ends, ours reports the peer's code and reason as a clean close, and
/// echoes the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_initiated_by_theirs() {
    // (what tungstenite sends, the code and reason ours reports)
    type Case = (Option<(u16, &'static str)>, u16, &'static str);
    let cases: [Case; 6] = [
        (Some((1000, "")), 1000, ""),
        (Some((1001, "going away")), 1001, "going away"),
        (Some((1009, "too big for me")), 1009, "too big for me"),
        (Some((1011, "oops")), 1011, "oops"),
        (Some((4999, "app-specific ✓")), 4999, "app-specific ✓"),
        (None, 1005, ""),
    ];
    for side in SIDES {
        for (sent, code, reason) in cases {
            let (mut ours, mut theirs) = pair_default(side).await;
            theirs
                .send(TMessage::text("before the close"))
                .await
                .unwrap();
            theirs
                .close(sent.map(|(code, reason)| their_close(code, reason)))
                .await
                .unwrap();
            assert_same(
                &recv(&mut ours).await,
                &Message::text("before the close"),
                "before close",
            );
            let their_side = async {
                match (sent, next_close(&mut theirs).await) {
                    // Ours echoes the code without the reason (§5.5.1).
                    (Some((code, _)), reply) => assert_their_close(reply, code, ""),
                    (None, reply) => assert_eq!(reply, None, "an empty close gets an empty reply"),
                }
                expect_end(&mut theirs).await;
                drop(theirs);
            };
            let (end, ()) = tokio::join!(within("our end", ours.recv()), their_side);
            assert!(
                end.is_none(),
                "{side:?} {sent:?}: a clean close ends recv: {end:?}"
            );
            assert_eq!(
                ours.closed(),
                Some(&clean(code, reason)),
                "{side:?} {sent:?}"
            );
        }
    }
}

/// Tungstenite drops TCP without a close frame: what it sent before still
/// arrives, then ours reports an unexpected EOF (1006), once. And the other
/// way: dropping ours ends the TCP connection for tungstenite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tcp_is_an_abnormal_close() {
    for side in SIDES {
        let (mut ours, mut theirs) = pair_default(side).await;
        theirs.send(TMessage::text("last words")).await.unwrap();
        drop(theirs);
        assert_same(
            &recv(&mut ours).await,
            &Message::text("last words"),
            "last words",
        );
        assert_connection_error(within("eof", ours.recv()).await, CoreError::UnexpectedEof);
        assert_eq!(
            ours.closed(),
            Some(&Closed {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                clean: false,
                error: Some(CoreError::UnexpectedEof),
            }),
            "{side:?}"
        );
        assert!(
            ours.recv().await.is_none(),
            "{side:?}: the error is reported once"
        );
        assert!(matches!(
            ours.send(Message::text("x")).await,
            Err(Error::Closed)
        ));

        let (ours, mut theirs) = pair_default(side).await;
        drop(ours);
        match within("their eof", theirs.next()).await {
            Some(Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ))) => {}
            other => panic!("{side:?}: expected a reset without closing handshake, got {other:?}"),
        }
    }
}

/// Ours closes and tungstenite never answers (it is not polled): `close`
/// gives up after the close timeout with an abnormal close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_times_out_when_the_peer_never_answers() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    for side in SIDES {
        let impatient = Config {
            close_timeout: TIMEOUT,
            ..Config::default()
        };
        let (mut ours, mut theirs) = pair(side, impatient, None).await;
        let started = tokio::time::Instant::now();
        match within("close", ours.close(CloseCode::NORMAL, "anyone?")).await {
            Err(Error::Connection(CoreError::CloseTimeout)) => {}
            other => panic!("{side:?}: expected a close timeout, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= TIMEOUT && waited < TIMEOUT * 10,
            "{side:?}: gave up after {waited:?}"
        );
        assert_eq!(
            ours.closed(),
            Some(&Closed {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                clean: false,
                error: Some(CoreError::CloseTimeout),
            }),
            "{side:?}"
        );
        assert!(ours.recv().await.is_none(), "{side:?}");
        // The close frame did go out.
        assert_their_close(next_close(&mut theirs).await, 1000, "anyone?");
    }
}

// ---- protocol failures -----------------------------------------------

/// Drives a protocol failure: ours' `recv` returns the error, and tungstenite
/// gets a close frame with its code and message, then the end of the
/// connection.
async fn expect_failure(ours: &mut Ours, mut theirs: Theirs, error: ProtocolError) {
    let code = error.close_code().as_u16();
    let reason = error.to_string();
    let their_side = async move {
        let close = next_close(&mut theirs).await;
        // Tungstenite answers the close; then the stream ends with the
        // transport (as an error or not: ours shut it down first).
        if let Some(Ok(message)) = within("their end", theirs.next()).await {
            panic!("after the close: {}", describe(&message));
        }
        close
    };
    let (got, close) = tokio::join!(within("our failure", ours.recv()), their_side);
    assert_connection_error(got, CoreError::Protocol(error.clone()));
    assert_their_close(close, code, &reason);
    let closed = ours.closed().expect("closed after a failure");
    assert_eq!(
        (closed.code.as_u16(), closed.clean, closed.error.clone()),
        (code, false, Some(CoreError::Protocol(error)))
    );
    assert!(ours.recv().await.is_none(), "the error is reported once");
}

/// A message over ours' limit gets close 1009, whole or in fragments; one
/// exactly at the limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_limit_gets_1009() {
    const MAX: usize = 1000;
    let limited = || Config {
        max_message_size: MAX,
        ..Config::default()
    };
    for side in SIDES {
        let (mut ours, mut theirs) = pair(side, limited(), None).await;
        theirs.send(TMessage::binary(vec![7u8; MAX])).await.unwrap();
        assert_same(
            &recv(&mut ours).await,
            &Message::binary(vec![7u8; MAX]),
            "at the limit",
        );
        theirs
            .send(TMessage::binary(vec![8u8; MAX + 1]))
            .await
            .unwrap();
        let error = ProtocolError::MessageTooLarge {
            size: MAX as u64 + 1,
            max: MAX,
        };
        expect_failure(&mut ours, theirs, error).await;

        let (mut ours, mut theirs) = pair(side, limited(), None).await;
        for (payload, opcode, fin) in [
            (vec![b'a'; 600], OpCode::Data(Data::Text), false),
            (vec![b'b'; 600], OpCode::Data(Data::Continue), true),
        ] {
            theirs
                .send(TMessage::Frame(Frame::message(payload, opcode, fin)))
                .await
                .unwrap();
        }
        let error = ProtocolError::MessageTooLarge {
            size: 1200,
            max: MAX,
        };
        expect_failure(&mut ours, theirs, error).await;
    }
}

/// Text that is not UTF-8 gets close 1007: in one frame, across fragments,
/// and as soon as a first fragment is invalid, without waiting for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_gets_1007() {
    let cases: [&[(&[u8], bool)]; 3] = [
        &[(b"valid, then \xff", true)],
        // "€" is E2 82 AC; 0x28 cannot continue it.
        &[(b"ok \xe2\x82", false), (b"\x28 rest", true)],
        // Fail fast (§8.1): the rest never comes.
        &[(b"\xc0\xaf never valid", false)],
    ];
    for side in SIDES {
        for (n, fragments) in cases.iter().enumerate() {
            let (mut ours, mut theirs) = pair_default(side).await;
            theirs.send(TMessage::text("valid first")).await.unwrap();
            assert_same(
                &recv(&mut ours).await,
                &Message::text("valid first"),
                "valid first",
            );
            for (i, &(payload, fin)) in fragments.iter().enumerate() {
                let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
                theirs
                    .send(TMessage::Frame(Frame::message(
                        payload.to_vec(),
                        opcode,
                        fin,
                    )))
                    .await
                    .unwrap();
            }
            println!("{side:?}: invalid UTF-8 case {n}");
            expect_failure(&mut ours, theirs, ProtocolError::InvalidUtf8).await;
        }
    }
}

// ---- handshake refusals ----------------------------------------------

/// Our server refuses with 403: tungstenite's connect fails with that status
/// and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_refuses_with_403() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let incoming = Incoming::read(stream, Config::default()).await.unwrap();
        assert!(incoming.is_upgrade());
        assert_eq!(incoming.request().path, "/private");
        incoming
            .respond(Response::new(403, "go away").with_header("X-Why", "no token"))
            .await
    };
    let client = tokio_tungstenite::connect_async(format!("ws://{addr}/private"));
    let (responded, connected) = within("403", async { tokio::join!(server, client) }).await;
    responded.unwrap();
    match connected {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
            assert_eq!(response.headers()["x-why"], "no token");
            // Tungstenite keeps whatever body came with the head.
            let body = response.body().clone().unwrap_or_default();
            assert!(b"go away".starts_with(&body), "body {body:?}");
        }
        Err(other) => panic!("expected an HTTP 403 error, got {other:?}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

/// Tungstenite refuses with 403: our client's error carries the status,
/// reason, headers and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_gets_403_from_a_refusing_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        #[allow(clippy::result_large_err)] // the signature is tungstenite's
        let refuse = |request: &tungstenite::handshake::server::Request,
                      _: tungstenite::handshake::server::Response| {
            assert_eq!(request.uri().path(), "/private");
            assert_eq!(request.headers()["authorization"], "Bearer nope");
            Err(http::Response::builder()
                .status(http::StatusCode::FORBIDDEN)
                .header("Content-Length", "4")
                .header("X-Why", "bad token")
                .body(Some("nope".to_owned()))
                .unwrap())
        };
        let result = tokio_tungstenite::accept_hdr_async(stream, refuse).await;
        assert!(result.is_err(), "tungstenite reports its own refusal");
    };
    let client = Client::new(format!("ws://{addr}/private"))
        .header("Authorization", "Bearer nope")
        .connect();
    let ((), connected) = within("403", async { tokio::join!(server, client) }).await;
    match connected {
        Err(Error::Connection(CoreError::Response(ResponseError::Rejected {
            status,
            reason,
            headers,
            body,
        }))) => {
            assert_eq!((status, reason.as_str()), (403, "Forbidden"));
            assert!(
                headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("x-why") && h.value == b"bad token"),
                "headers {headers:?}"
            );
            assert_eq!(body.as_ref(), b"nope");
        }
        Err(other) => panic!("expected Rejected {{ status: 403 }}, got {other:?}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

// ---- a handshake done by hyper ---------------------------------------

/// hyper answers the upgrade (checking the key and choosing a subprotocol
/// itself) and hands the upgraded connection to `WebSocket::from_upgraded`,
/// which then talks to a tungstenite client: the path an axum or hyper
/// application takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_upgraded_by_hyper() {
    use http_body_util::Empty;
    use hyper::body::Bytes as HyperBytes;
    use hyper::{Request as HyperRequest, Response as HyperResponse, StatusCode};
    use hyper_util::rt::TokioIo;
    use sockeye_tokio::Role;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let done_tx = std::sync::Mutex::new(Some(done_tx));
        let service = hyper::service::service_fn(move |mut request: HyperRequest<_>| {
            let key = request.headers()["sec-websocket-key"].as_bytes().to_vec();
            let upgrade = hyper::upgrade::on(&mut request);
            let done_tx = done_tx.lock().unwrap().take().expect("one request");
            tokio::spawn(async move {
                let io = TokioIo::new(upgrade.await.unwrap());
                let agreed = Handshake {
                    protocol: Some("chat".into()),
                    headers: Vec::new(),
                };
                let mut socket =
                    WebSocket::from_upgraded(io, Role::Server, agreed, Config::default()).unwrap();
                assert_eq!(socket.handshake().protocol.as_deref(), Some("chat"));
                while let Some(message) = socket.recv().await {
                    socket.send(message.unwrap()).await.unwrap();
                }
                done_tx.send(socket.closed().cloned()).unwrap();
            });
            let response = HyperResponse::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", sockeye_core::accept_key(&key))
                .header("sec-websocket-protocol", "chat")
                .body(Empty::<HyperBytes>::new())
                .unwrap();
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await
            .unwrap();
    });

    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/hyper"))
            .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("chat"),
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut theirs, _) = within(
        "handshake",
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .unwrap();
    for message in [
        TMessage::text("through hyper ✓"),
        TMessage::binary(vec![7; 70_000]),
    ] {
        theirs.send(message.clone()).await.unwrap();
        assert_eq!(next(&mut theirs).await, message);
    }
    theirs.close(None).await.unwrap();
    assert_eq!(
        next(&mut theirs).await,
        TMessage::Close(None),
        "the close echoed"
    );
    expect_end(&mut theirs).await;
    let closed = within("server done", done_rx).await.unwrap();
    assert_eq!(closed, Some(clean(1005, "")));
    within("hyper connection", server).await.unwrap();
}

// ---- many connections ------------------------------------------------

/// Raises the soft limit on open files to `want` (or the hard limit).
#[cfg(unix)]
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let want = want as libc::rlim_t;
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(not(unix))]
fn raise_fd_limit(_: u64) {}

/// 1 000 tungstenite clients connected to our server at the same moment
/// (a barrier holds every client and every server task until all are
/// open), then all echoing at once: every message comes back, every close is
/// clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_echo_at_once() {
    const CONNECTIONS: usize = 1000;
    const MESSAGES: usize = 4;
    raise_fd_limit(4 * CONNECTIONS as u64 + 256);

    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let addr = listener.local_addr().unwrap();
    let all_open = Arc::new(Barrier::new(2 * CONNECTIONS));
    let started = std::time::Instant::now();

    let barrier = all_open.clone();
    let server = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener.accept().await.unwrap();
            let barrier = barrier.clone();
            connections.spawn(async move {
                let mut socket = sockeye_tokio::accept(stream).await?;
                barrier.wait().await;
                let mut echoed = 0;
                while let Some(message) = socket.recv().await {
                    socket.send(message?).await?;
                    echoed += 1;
                }
                Ok::<_, Error>((echoed, socket.closed().cloned()))
            });
        }
        let mut results = Vec::new();
        while let Some(result) = connections.join_next().await {
            results.push(result.unwrap());
        }
        results
    });

    let mut clients = JoinSet::new();
    for c in 0..CONNECTIONS {
        let barrier = all_open.clone();
        clients.spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/{c}"), stream)
                .await
                .unwrap();
            barrier.wait().await;
            let sent: Vec<TMessage> = (0..MESSAGES)
                .map(|m| match m % 2 {
                    0 => TMessage::text(format!("client {c} message {m} ✓")),
                    _ => TMessage::binary(format!("client {c} binary {m}").into_bytes()),
                })
                .collect();
            for message in &sent {
                ws.feed(message.clone()).await.unwrap();
            }
            ws.flush().await.unwrap();
            for want in &sent {
                let got = ws.next().await.unwrap().unwrap();
                assert_eq!(&got, want, "client {c}");
            }
            ws.close(Some(their_close(1000, "done"))).await.unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            assert_eq!(
                reply,
                TMessage::Close(Some(their_close(1000, ""))),
                "client {c}"
            );
            assert!(ws.next().await.is_none(), "client {c}");
        });
    }
    let clients_done = async {
        while let Some(result) = clients.join_next().await {
            result.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), clients_done)
        .await
        .expect("1 000 connections echo within 30 s");
    let results = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server tasks end")
        .unwrap();
    assert_eq!(results.len(), CONNECTIONS);
    for result in results {
        let (echoed, closed) = result.unwrap();
        assert_eq!(echoed, MESSAGES);
        assert_eq!(closed, Some(clean(1000, "done")));
    }
    println!(
        "{CONNECTIONS} connections × {MESSAGES} echoes in {:?}",
        started.elapsed()
    );
}

// ---- split halves ----------------------------------------------------

/// The halves on two tasks, through the `Stream` and `Sink` impls, while
/// tungstenite's halves send and receive at the same time: everything
/// arrives in order both ways, then the write half closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_on_two_tasks() {
    const COUNT: usize = 2000;
    let message = |who: &str, i: usize| {
        let body = format!("{who} {i} ").repeat(i % 50 + 1);
        if i.is_multiple_of(3) {
            Message::binary(body.into_bytes())
        } else {
            Message::text(body)
        }
    };
    for side in SIDES {
        let (ours, theirs) = pair_default(side).await;
        let (mut read, mut write) = ours.split();
        let (mut their_sink, mut their_stream) = theirs.split();

        let reader = tokio::spawn(async move {
            for i in 0..COUNT {
                let got = read.next().await.expect("a message").expect("no error");
                assert_same(&got, &message("theirs", i), &format!("ours received #{i}"));
            }
            read
        });
        let writer = tokio::spawn(async move {
            for i in 0..COUNT {
                SinkExt::send(&mut write, message("ours", i)).await.unwrap();
            }
            write
        });
        let their_writer = tokio::spawn(async move {
            for i in 0..COUNT {
                their_sink
                    .send(theirs_from(&message("theirs", i)))
                    .await
                    .unwrap();
            }
            their_sink
        });
        let their_reader = tokio::spawn(async move {
            for i in 0..COUNT {
                let got = ours_from(their_stream.next().await.unwrap().unwrap());
                assert_same(&got, &message("ours", i), &format!("theirs received #{i}"));
            }
            their_stream
        });
        let (read, mut write, their_sink, mut their_stream) = within("2 × 2 000 messages", async {
            let (a, b, c, d) = tokio::join!(reader, writer, their_writer, their_reader);
            (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap())
        })
        .await;

        let their_side = async move {
            match within("their close", their_stream.next()).await {
                Some(Ok(TMessage::Close(frame))) => assert_their_close(frame, 1000, "split done"),
                other => panic!("expected a close, got {other:?}"),
            }
            assert!(within("their end", their_stream.next()).await.is_none());
            drop((their_stream, their_sink));
        };
        let (closed, ()) = tokio::join!(write.close(CloseCode::NORMAL, "split done"), their_side);
        assert_eq!(closed.unwrap(), clean(1000, "split done"), "{side:?}");
        assert_eq!(read.closed(), Some(clean(1000, "split done")));
    }
}

/// Only the write half is polled (it sends a tick every few milliseconds)
/// while tungstenite pings: every ping gets its pong, the messages tungstenite
/// sends meanwhile wait for the read half, and a close from tungstenite is
/// answered and stops the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_flow_while_only_the_write_half_is_polled() {
    const PINGS: usize = 10;
    for side in SIDES {
        let (ours, mut theirs) = pair_default(side).await;
        let (mut read, mut write) = ours.split();
        let writer = tokio::spawn(async move {
            let mut ticks = 0usize;
            loop {
                match write.send(Message::text(format!("tick {ticks}"))).await {
                    Ok(()) => ticks += 1,
                    Err(Error::Closed) => return ticks,
                    Err(other) => panic!("the writer failed: {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });

        let mut ticks_seen = 0usize;
        let mut next_tick = async |theirs: &mut Theirs| -> TMessage {
            loop {
                match next(theirs).await {
                    TMessage::Text(t) if t.starts_with("tick ") => {
                        assert_eq!(t.as_str(), format!("tick {ticks_seen}"));
                        ticks_seen += 1;
                    }
                    other => return other,
                }
            }
        };
        for p in 0..PINGS {
            let payload = format!("ping {p}");
            theirs
                .send(TMessage::text(format!("for the reader {p}")))
                .await
                .unwrap();
            theirs
                .send(TMessage::Ping(payload.clone().into()))
                .await
                .unwrap();
            assert_eq!(
                next_tick(&mut theirs).await,
                TMessage::Pong(payload.into()),
                "{side:?}"
            );
        }
        theirs.close(Some(their_close(4003, "stop"))).await.unwrap();
        match next_tick(&mut theirs).await {
            TMessage::Close(frame) => assert_their_close(frame, 4003, ""),
            other => panic!("expected the close reply, got {}", describe(&other)),
        }
        expect_end(&mut theirs).await;
        drop(theirs);
        let ticks = within("the writer stops", writer).await.unwrap();
        // Every tick `send` returned `Ok` for arrived: the write half writes
        // what was queued before it reads ahead, so a close it reads cannot
        // drop an accepted tick.
        assert_eq!(ticks, ticks_seen, "{side:?}: ticks sent and arrived");
        // Pongs go out only while the write half is polled: each `send`
        // reads ahead twice (waiting for room, then after writing), so it
        // answers at most two of the pings, which come one at a time.
        assert!(2 * ticks >= PINGS, "{side:?}: {ticks} ticks");

        // The read half gets what the write half read ahead, in order.
        for p in 0..PINGS {
            let got = recv_half(&mut read).await;
            assert_same(
                &got,
                &Message::text(format!("for the reader {p}")),
                "read ahead",
            );
        }
        assert!(within("read end", read.recv()).await.is_none(), "{side:?}");
        assert_eq!(read.closed(), Some(clean(4003, "stop")), "{side:?}");
    }
}

async fn recv_half(read: &mut sockeye_tokio::ReadHalf<TcpStream>) -> Message {
    match within("read half", read.recv()).await {
        Some(Ok(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Only the read half is polled, the write half idle, while tungstenite
/// pings: every ping gets its pong, and a close is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_flow_while_only_the_read_half_is_polled() {
    for side in SIDES {
        let (ours, mut theirs) = pair_default(side).await;
        let (mut read, write) = ours.split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(message) = read.recv().await {
                got.push(message.unwrap());
            }
            (got, read.closed())
        });
        for p in 0..10 {
            let payload = format!("ping {p}");
            theirs
                .send(TMessage::Ping(payload.clone().into()))
                .await
                .unwrap();
            assert_eq!(
                next(&mut theirs).await,
                TMessage::Pong(payload.into()),
                "{side:?}"
            );
        }
        theirs.send(TMessage::text("a")).await.unwrap();
        theirs.send(TMessage::binary(vec![b'b'])).await.unwrap();
        theirs.close(Some(their_close(4002, "bye"))).await.unwrap();
        assert_their_close(next_close(&mut theirs).await, 4002, "");
        expect_end(&mut theirs).await;
        drop(theirs);
        let (got, closed) = within("reader", reader).await.unwrap();
        assert_eq!(
            got,
            [Message::text("a"), Message::binary(vec![b'b'])],
            "{side:?}"
        );
        assert_eq!(closed, Some(clean(4002, "bye")), "{side:?}");
        drop(write);
    }
}

// ---- cancel-safety ---------------------------------------------------

/// A small deterministic generator, so that a failure replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend((len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend((len as u64).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Unmasked server frames: (fin, opcode, payload).
fn parse_server_frames(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "truncated frame header");
        let (fin, opcode) = (bytes[0] & 0x80 != 0, bytes[0] & 0x0F);
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, header) = match bytes[1] & 0x7F {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            len => (len as usize, 2),
        };
        frames.push((fin, opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// A raw client's handshake with our server; returns the stream after the
/// 101 response.
async fn raw_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "EOF in the response"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    stream
}

/// `recv()` futures dropped over and over inside `tokio::select!` (against
/// an immediately-yielding branch and a short timer) while a raw peer
/// trickles frames a few bytes at a time: every message arrives exactly
/// once, in order, and every ping in between is answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_is_cancel_safe() {
    const MESSAGES: usize = 300;
    let mut rng = XorShift(0x5EED_CAFE_F00D_1234);

    // The conversation: text and binary, some fragmented (text cut inside
    // code points), with pings between fragments; every length encoding.
    let mut expected = Vec::new();
    let mut pings = Vec::new();
    let mut wire = Vec::new();
    for i in 0..MESSAGES {
        let len = match i {
            150 => 70_000,
            _ => (i * 37) % 700,
        };
        let message = if i.is_multiple_of(2) {
            let text: String = format!("message {i}: añ✓🦀 ")
                .chars()
                .cycle()
                .take(len)
                .collect();
            Message::text(text)
        } else {
            Message::binary((0..len).map(|j| (i + j) as u8).collect::<Vec<u8>>())
        };
        let opcode = if i.is_multiple_of(2) { 0x1 } else { 0x2 };
        let payload = message.payload().clone();
        let mask = (rng.next() as u32).to_be_bytes();
        if i.is_multiple_of(3) && payload.len() >= 3 {
            let (a, b) = (payload.len() / 3, 2 * payload.len() / 3);
            wire.extend(client_frame(false, opcode, &payload[..a], mask));
            if i.is_multiple_of(2) {
                let ping = format!("ping {i}").into_bytes();
                wire.extend(client_frame(true, 0x9, &ping, mask));
                pings.push(ping);
            }
            wire.extend(client_frame(false, 0x0, &payload[a..b], mask));
            wire.extend(client_frame(true, 0x0, &payload[b..], mask));
        } else {
            wire.extend(client_frame(true, opcode, &payload, mask));
        }
        expected.push(message);
    }
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend(b"done");
    let close_frame = client_frame(true, 0x8, &close, [1, 2, 3, 4]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut stream = raw_client(addr).await;
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = match rng.below(10) {
                0 => 1 + rng.below(4096),
                _ => 1 + rng.below(7),
            } as usize;
            let (chunk, after) = rest.split_at(n.min(rest.len()));
            stream.write_all(chunk).await.unwrap();
            rest = after;
            if rng.below(4) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        stream.write_all(&close_frame).await.unwrap();
        let mut output = Vec::new();
        stream.read_to_end(&mut output).await.unwrap();
        output
    });

    let (stream, _) = listener.accept().await.unwrap();
    let mut ours = sockeye_tokio::accept(stream).await.unwrap();
    let mut received = Vec::new();
    let (mut cancelled, mut cancelled_mid_frame) = (0usize, 0usize);
    let started = std::time::Instant::now();
    while received.len() < MESSAGES {
        assert!(
            started.elapsed() < STEP,
            "cancel-safety: {} messages received",
            received.len()
        );
        let spin = cancelled.is_multiple_of(2);
        tokio::select! {
            message = ours.recv() => received.push(message.expect("a message").expect("no error")),
            () = async {
                if spin {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } => {
                cancelled += 1;
                if ours.connection().buffered_input() > 0 {
                    cancelled_mid_frame += 1;
                }
            }
        }
    }
    for (i, (got, want)) in received.iter().zip(&expected).enumerate() {
        assert_same(got, want, &format!("message {i}"));
    }
    assert!(within("clean end", ours.recv()).await.is_none());
    assert_eq!(ours.closed(), Some(&clean(1000, "done")));

    // The peer saw one pong per ping, in order, then the close reply.
    let output = within("peer", peer).await.unwrap();
    let frames = parse_server_frames(&output);
    let mut want: Vec<(bool, u8, Vec<u8>)> = pings.into_iter().map(|p| (true, 0xA, p)).collect();
    want.push((true, 0x8, 1000u16.to_be_bytes().to_vec()));
    assert_eq!(frames, want, "pongs and the close reply");

    println!(
        "{cancelled} recv futures dropped, {cancelled_mid_frame} with a partial frame buffered"
    );
    assert!(
        cancelled_mid_frame >= 50,
        "only {cancelled_mid_frame} of {cancelled} cancellations hit a partial frame: the test did not test"
    );
}

// ---- backpressure ----------------------------------------------------

/// Against a tungstenite that does not read: queuing stops at the high-water
/// mark (the buffer stays bounded), `send().await` stays pending, and both
/// resume when tungstenite reads; nothing is lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_pends_until_the_peer_reads() {
    const HIGH_WATER: usize = 64 * 1024;
    const SIZE: usize = 16 * 1024;
    const LIMIT: usize = 256 << 20;
    let message = |i: usize| {
        let mut payload = vec![(i % 251) as u8; SIZE];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Message::binary(payload)
    };
    for side in SIDES {
        let (mut ours, mut theirs) = pair(
            side,
            Config {
                write_buffer_high_water: HIGH_WATER,
                ..Config::default()
            },
            None,
        )
        .await;
        let (start_reading, reading) = oneshot::channel::<()>();

        let writer = async {
            // Feed until poll_ready stays pending: tungstenite reads nothing,
            // so the kernel buffers fill, then ours' buffer passes the mark.
            let mut queued = 0;
            loop {
                let ready = poll_fn(|cx| futures_util::Sink::poll_ready(Pin::new(&mut ours), cx));
                match tokio::time::timeout(Duration::from_millis(300), ready).await {
                    Ok(result) => result.unwrap(),
                    Err(_) => break,
                }
                assert!(
                    ours.buffered_amount() <= HIGH_WATER,
                    "ready means under the mark"
                );
                futures_util::Sink::start_send(Pin::new(&mut ours), message(queued)).unwrap();
                queued += 1;
                assert!(
                    queued * SIZE < LIMIT,
                    "{side:?}: never pended after {queued} messages"
                );
            }
            assert!(
                ours.buffered_amount() > HIGH_WATER,
                "pending because of the mark"
            );
            // `send` pends too, with its message in hand…
            {
                let send = ours.send(message(queued));
                tokio::pin!(send);
                assert!(
                    tokio::time::timeout(Duration::from_millis(300), &mut send)
                        .await
                        .is_err(),
                    "{side:?}: send completed against a peer that does not read"
                );
                // …and completes once the peer reads.
                start_reading.send(()).unwrap();
                within("send resumes", send).await.unwrap();
            }
            queued += 1;
            ours.send(Message::text("done")).await.unwrap();
            queued
        };
        let reader = async {
            reading.await.unwrap();
            let mut got = 0;
            loop {
                match next(&mut theirs).await {
                    TMessage::Binary(payload) => {
                        assert_same(&Message::binary(payload), &message(got), "in order");
                        got += 1;
                    }
                    TMessage::Text(text) if text == "done" => return (got, theirs),
                    other => panic!("unexpected {}", describe(&other)),
                }
            }
        };
        let (queued, (got, theirs)) =
            within("backpressure", async { tokio::join!(writer, reader) }).await;
        assert_eq!(got, queued, "{side:?}");
        println!("{side:?}: pended after {} KiB", (queued - 1) * SIZE / 1024);

        close_normally(side, ours, theirs).await;
    }
}
