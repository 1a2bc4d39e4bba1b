//! The mio driver over real TCP sockets on 127.0.0.1: the mio server (on its
//! own thread, with its own `Poll` loop) against the sockeye-tokio client and
//! `tokio-tungstenite`; the mio client (a blocking loop on a worker thread)
//! against the sockeye-tokio server; raw TCP peers where a test needs a peer
//! that stays silent; and 1 000 connections each way.
//!
//! Both echo servers obey the same commands, so one scenario can drive
//! either end: `!close CODE REASON` closes, `!drop` drops TCP, `!big N`
//! sends N bytes, `!ping PAYLOAD` pings. Every wait has a deadline, so a
//! hang fails the test instead of stalling the suite.
//!
//! The last section plays the same TCP-level misbehaviour against both
//! drivers and the core's blocking example, and checks they end the
//! connection identically.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mio::{Events, Poll, Registry, Token, Waker};
use sockeye_core::testing;
use sockeye_core::{Error as CoreError, ProtocolError, ResponseError};
use sockeye_mio::{
    ClientRequest, CloseCode, Closed, Config, ConnectionId, Driver, Event, Handshake, Message,
    Response,
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{
    CloseCode as TCloseCode, Data, OpCode,
};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame as TCloseFrame, Frame};
use tokio_tungstenite::tungstenite::{self, Message as TMessage};

/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    edit(&mut config);
    config
}

/// How a connection ended: `Ok` with the close code and reason of a clean
/// close handshake, `Err` with the error of an abnormal end (1006, no
/// close handshake).
fn ended(how: Result<(u16, &str), CoreError>) -> Closed {
    let (code, reason, error) = match how {
        Ok((code, reason)) => (CloseCode::new(code), reason.into(), None),
        Err(error) => (CloseCode::ABNORMAL, String::new(), Some(error)),
    };
    Closed {
        code,
        reason,
        clean: error.is_none(),
        error,
    }
}

/// Payloads at the edges of the three length encodings, text with
/// multi-byte characters and binary.
fn messages() -> Vec<Message> {
    [0, 1, 125, 126, 127, 65_535, 65_536, 100_003]
        .into_iter()
        .flat_map(|len| {
            let text: String = "añ✓🦀".chars().cycle().take(len).collect();
            let binary: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            [Message::text(text), Message::binary(binary)]
        })
        .collect()
}

fn sixteen_mib() -> [Message; 2] {
    const SIZE: usize = 16 << 20;
    let text: String = "sixteen mebibytes ✓ ".repeat(SIZE / 22);
    let binary: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    [Message::text(text), Message::binary(binary)]
}

fn to_tungstenite(message: &Message) -> TMessage {
    match message {
        Message::Text(text) => TMessage::text(text.as_str()),
        Message::Binary(bytes) => TMessage::binary(bytes.clone()),
    }
}

fn from_tungstenite(message: TMessage) -> Message {
    match message {
        TMessage::Text(text) => Message::text(text.as_str()),
        TMessage::Binary(bytes) => Message::binary(bytes),
        other => panic!("expected a data message, got {other:?}"),
    }
}

#[track_caller]
fn assert_same(got: &Message, want: &Message, what: &str) {
    assert!(
        got == want,
        "{what}: got {} bytes (text: {}), want {} bytes (text: {})",
        got.len(),
        got.as_text().is_some(),
        want.len(),
        want.as_text().is_some()
    );
}

// ---- the echo servers' commands ----------------------------------------

/// What a test asks an echo server to do instead of echoing.
enum Command {
    Close(CloseCode, String),
    Drop,
    Big(usize),
    Ping(Bytes),
}

fn command(message: &Message) -> Option<Command> {
    let text = message.as_text()?.strip_prefix('!')?;
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    Some(match verb {
        "close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            Command::Close(CloseCode::new(code.parse().unwrap()), reason.into())
        }
        "drop" => Command::Drop,
        "big" => Command::Big(rest.parse().unwrap()),
        "ping" => Command::Ping(Bytes::copy_from_slice(rest.as_bytes())),
        _ => panic!("unknown command {text:?}"),
    })
}

// ---- the mio server ----------------------------------------------------

/// What the mio server's loop saw, for the test to check.
#[derive(Debug, Clone, PartialEq)]
enum Report {
    Closed(Closed),
    Drained,
}

type Behaviour = Box<dyn FnMut(&mut Driver, ConnectionId, Event, Instant) + Send>;

/// A mio driver serving on its own thread until dropped.
struct MioServer {
    addr: SocketAddr,
    reports: mpsc::Receiver<(ConnectionId, Report)>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

const STOP: Token = Token(0);

impl MioServer {
    fn echo(config: Config) -> Self {
        Self::spawn(Driver::new, config, Box::new(echo))
    }

    /// Serves with the driver `new` makes (`Driver::new`, or one with
    /// settings of its own).
    fn spawn(
        new: impl FnOnce(&Registry, Range<usize>, Config) -> Result<Driver, sockeye_mio::Error>,
        config: Config,
        mut behaviour: Behaviour,
    ) -> Self {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), STOP).unwrap());
        let mut driver = new(poll.registry(), 1..4097, config).unwrap();
        let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        driver.listen(listener).unwrap();
        let (report, reports) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut events = Events::with_capacity(1024);
            loop {
                poll.poll(&mut events, driver.next_timeout(Instant::now()))
                    .unwrap();
                let now = Instant::now();
                for event in events.iter() {
                    if !driver.handle_event(event, now) {
                        return;
                    }
                }
                driver.handle_timeouts(now);
                while let Some((id, event)) = driver.poll_event(now) {
                    let seen = match &event {
                        Event::Closed(closed) => Some(Report::Closed((**closed).clone())),
                        Event::Drained => Some(Report::Drained),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        let _ = report.send((id, seen));
                    }
                    behaviour(&mut driver, id, event, now);
                }
            }
        });
        Self {
            addr,
            reports,
            waker,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn report(&self) -> (ConnectionId, Report) {
        self.reports
            .recv_timeout(STEP)
            .expect("the mio server reports within the step")
    }

    /// How the next connection to end ended; it must not be a transport
    /// failure.
    fn closed(&self) -> Closed {
        loop {
            match self.report() {
                (_, Report::Closed(closed)) => {
                    assert_no_transport_failure(&closed);
                    return closed;
                }
                (_, Report::Drained) => {}
            }
        }
    }
}

/// A transport failure is a test failure: the peers here are all on
/// loopback and well behaved at the TCP level.
fn assert_no_transport_failure(closed: &Closed) {
    if let Some(error @ CoreError::Transport { .. }) = &closed.error {
        panic!("transport failed: {error}");
    }
}

impl Drop for MioServer {
    fn drop(&mut self) {
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the mio server's thread panicked");
        }
    }
}

/// Accepts every upgrade but to `/private` (403) and answers plain HTTP
/// with 200; echoes every message, or obeys its command.
fn echo(driver: &mut Driver, id: ConnectionId, event: Event, now: Instant) {
    let done = match event {
        Event::Request(request) if request.path == "/private" => driver.respond(
            id,
            now,
            Response::new(403, "go away").with_header("X-Why", "test"),
        ),
        Event::Request(_) => driver.accept(id, now, Handshake::default()),
        Event::HttpRequest(_) => driver.respond(id, now, Response::new(200, "ok")),
        Event::Message(message) => match command(&message) {
            Some(Command::Close(code, reason)) => driver.close(id, now, code, &reason),
            Some(Command::Big(len)) => driver
                .send(id, now, Message::binary(vec![7; len]))
                .map(drop),
            Some(Command::Ping(payload)) => driver.ping(id, now, payload),
            Some(Command::Drop) => panic!("the mio server does not drop connections"),
            None => driver.send(id, now, message).map(drop),
        },
        _ => Ok(()),
    };
    // A connection that failed meanwhile refuses; its Closed is reported.
    if let Err(error) = done {
        assert!(matches!(error, sockeye_mio::Error::Closed), "{error}");
    }
}

// ---- the peers of the mio server ---------------------------------------

type Theirs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn tungstenite(url: &str, config: Option<WebSocketConfig>) -> Theirs {
    within(
        "tungstenite connect",
        tokio_tungstenite::connect_async_with_config(url, config, true),
    )
    .await
    .unwrap()
    .0
}

async fn tokio_client(
    url: &str,
    config: Config,
) -> sockeye_tokio::WebSocket<tokio::net::TcpStream> {
    within(
        "sockeye-tokio connect",
        sockeye_tokio::Client::new(url).config(config).connect(),
    )
    .await
    .unwrap()
}

/// Tungstenite's next message that is not a ping (it answers those itself).
async fn next(theirs: &mut Theirs) -> TMessage {
    loop {
        match within("tungstenite next", theirs.next()).await {
            Some(Ok(TMessage::Ping(_))) => {}
            Some(Ok(message)) => return message,
            other => panic!("expected a message from tungstenite, got {other:?}"),
        }
    }
}

async fn next_close(theirs: &mut Theirs) -> (u16, String) {
    match next(theirs).await {
        TMessage::Close(Some(TCloseFrame { code, reason })) => (code.into(), reason.to_string()),
        other => panic!("expected a close frame with a code, got {other:?}"),
    }
}

/// After the close frames: the mio server closes TCP, and tungstenite's
/// stream ends.
async fn expect_end(theirs: &mut Theirs) {
    while let Some(item) = within("tungstenite end", theirs.next()).await {
        match item {
            Ok(TMessage::Ping(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
            Ok(other) => panic!("expected the end, got {other:?}"),
            Err(error) => panic!("expected a clean end, got {error}"),
        }
    }
}

async fn their_frames(theirs: &mut Theirs, frames: Vec<(Vec<u8>, OpCode, bool)>) {
    for (payload, opcode, fin) in frames {
        let frame = Frame::message(payload, opcode, fin);
        theirs.feed(TMessage::Frame(frame)).await.unwrap();
    }
    theirs.flush().await.unwrap();
}

async fn tokio_recv(ours: &mut sockeye_tokio::WebSocket<tokio::net::TcpStream>) -> Message {
    match within("sockeye-tokio recv", ours.recv()).await {
        Some(Ok(message)) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A raw client that completes the handshake with `addr` and then does
/// what the test says: nothing, typically.
fn raw_client(addr: SocketAddr) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

fn read_head(stream: &mut std::net::TcpStream) -> String {
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "EOF in the head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

// ---- the mio server: data ----------------------------------------------

/// Every length encoding, text and binary, through the mio echo server,
/// from a sockeye-tokio client and from tungstenite; then a clean close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_echoes_text_and_binary() {
    let server = MioServer::echo(Config::default());

    let mut ours = tokio_client(&server.url("/tokio"), Default::default()).await;
    for message in messages() {
        ours.feed(message).await.unwrap();
    }
    ours.flush().await.unwrap();
    for (i, want) in messages().iter().enumerate() {
        assert_same(&tokio_recv(&mut ours).await, want, &format!("tokio #{i}"));
    }
    let closed = within("tokio close", ours.close(CloseCode::NORMAL, "bye")).await;
    // The closer gets the code back without the reason (RFC 6455 §5.5.1).
    assert_eq!(closed.unwrap(), ended(Ok((1000, ""))));
    assert_eq!(server.closed(), ended(Ok((1000, "bye"))));

    let mut theirs = tungstenite(&server.url("/tungstenite"), None).await;
    for message in messages() {
        theirs.feed(to_tungstenite(&message)).await.unwrap();
    }
    theirs.flush().await.unwrap();
    for (i, want) in messages().iter().enumerate() {
        let got = from_tungstenite(next(&mut theirs).await);
        assert_same(&got, want, &format!("tungstenite #{i}"));
    }
    theirs.close(None).await.unwrap();
    assert_eq!(next(&mut theirs).await, TMessage::Close(None));
    expect_end(&mut theirs).await;
    assert_eq!(server.closed(), ended(Ok((1005, ""))));
}

/// Fragments in (with a ping and a split code point between them) become
/// whole messages; with `fragment_size`, the echo goes out in fragments
/// small enough for a tungstenite that refuses bigger frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_fragmented_messages() {
    const FRAGMENT: usize = 7;
    let server = MioServer::echo(config(|c| c.fragment_size = Some(FRAGMENT)));
    let small_frames = WebSocketConfig::default().max_frame_size(Some(FRAGMENT));
    let mut theirs = tungstenite(&server.url("/"), Some(small_frames)).await;
    their_frames(
        &mut theirs,
        vec![
            (b"Hel".to_vec(), OpCode::Data(Data::Text), false),
            (b"lo, w\xc3".to_vec(), OpCode::Data(Data::Continue), false),
        ],
    )
    .await;
    theirs.send(TMessage::Ping("mid".into())).await.unwrap();
    their_frames(
        &mut theirs,
        vec![
            (b"\xb6rld".to_vec(), OpCode::Data(Data::Continue), true),
            (vec![1, 2], OpCode::Data(Data::Binary), false),
            (vec![], OpCode::Data(Data::Continue), false),
            (vec![3], OpCode::Data(Data::Continue), true),
        ],
    )
    .await;
    match within("pong", theirs.next()).await {
        Some(Ok(TMessage::Pong(payload))) => assert_eq!(&payload[..], b"mid"),
        other => panic!("expected the pong first, got {other:?}"),
    }
    assert_eq!(next(&mut theirs).await, TMessage::text("Hello, wörld"));
    assert_eq!(next(&mut theirs).await, TMessage::binary(vec![1, 2, 3]));

    let long = "fragments ✓ añ 🦀 ".repeat(20);
    theirs.send(TMessage::text(long.clone())).await.unwrap();
    assert_eq!(next(&mut theirs).await, TMessage::text(long));
    theirs
        .close(Some(TCloseFrame {
            code: TCloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    assert_eq!(next_close(&mut theirs).await, (1000, String::new()));
    expect_end(&mut theirs).await;
    assert_eq!(server.closed(), ended(Ok((1000, ""))));
}

/// 16 MiB text and binary messages, the default frame limit of both
/// libraries, from both clients at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_echoes_sixteen_mib() {
    let server = MioServer::echo(Config::default());
    let mut ours = tokio_client(&server.url("/"), Default::default()).await;
    let mut theirs = tungstenite(&server.url("/"), None).await;
    // Each side sends whole before it reads: the server reads the whole
    // message before it echoes, whoever reads.
    let tokio_side = async {
        for message in sixteen_mib() {
            within("16 MiB send", ours.send(message.clone()))
                .await
                .unwrap();
            assert_same(
                &tokio_recv(&mut ours).await,
                &message,
                "16 MiB via sockeye-tokio",
            );
        }
    };
    let tungstenite_side = async {
        for message in sixteen_mib() {
            within("16 MiB send", theirs.send(to_tungstenite(&message)))
                .await
                .unwrap();
            let got = from_tungstenite(next(&mut theirs).await);
            assert_same(&got, &message, "16 MiB via tungstenite");
        }
    };
    tokio::join!(tokio_side, tungstenite_side);
}

/// A read budget smaller than one read still moves every byte: each
/// connection reads once per round, and a 1 MiB message gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_with_a_tiny_read_budget_echoes_a_large_message() {
    let tiny = |registry: &Registry, tokens, config| {
        Driver::new(registry, tokens, config).map(|driver| driver.with_read_budget(0))
    };
    let server = MioServer::spawn(tiny, Config::default(), Box::new(echo));
    let mut theirs = tungstenite(&server.url("/"), None).await;
    let message = Message::binary(vec![7; 1 << 20]);
    within("1 MiB send", theirs.send(to_tungstenite(&message)))
        .await
        .unwrap();
    assert_same(
        &from_tungstenite(next(&mut theirs).await),
        &message,
        "1 MiB",
    );
}

// ---- the mio server: ping, pong, heartbeat -----------------------------

/// Tungstenite's pings get pongs with their payloads, in order; the mio
/// server's heartbeat pings reach tungstenite, whose pongs keep the
/// connection open through many intervals; `Driver::ping` pings on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_pings_and_pongs() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let server = MioServer::echo(config(|c| {
        c.ping_interval = Some(INTERVAL);
        c.max_missed_pongs = 1;
    }));
    let mut theirs = tungstenite(&server.url("/"), None).await;
    let payloads: [&[u8]; 3] = [b"", b"ping 1", &[0xAB; 125]];
    for payload in payloads {
        theirs
            .send(TMessage::Ping(payload.to_vec().into()))
            .await
            .unwrap();
    }
    for payload in payloads {
        assert_eq!(
            next(&mut theirs).await,
            TMessage::Pong(payload.to_vec().into())
        );
    }

    let mut heartbeats = 0;
    let quiet_until = tokio::time::Instant::now() + INTERVAL * 10;
    while let Ok(got) = tokio::time::timeout_at(quiet_until, theirs.next()).await {
        match got {
            Some(Ok(TMessage::Ping(payload))) if payload.is_empty() => heartbeats += 1,
            other => panic!("expected only heartbeat pings, got {other:?}"),
        }
    }
    assert!(
        heartbeats >= 3,
        "{heartbeats} heartbeat pings in 10 intervals"
    );

    theirs
        .send(TMessage::text("!ping on demand"))
        .await
        .unwrap();
    match next_skipping_heartbeats(&mut theirs).await {
        TMessage::Ping(payload) => assert_eq!(&payload[..], b"on demand"),
        other => panic!("expected the ping, got {other:?}"),
    }
    theirs.send(TMessage::text("still here")).await.unwrap();
    assert_eq!(next(&mut theirs).await, TMessage::text("still here"));
}

async fn next_skipping_heartbeats(theirs: &mut Theirs) -> TMessage {
    loop {
        match within("tungstenite next", theirs.next()).await {
            Some(Ok(TMessage::Ping(payload))) if payload.is_empty() => {}
            Some(Ok(message)) => return message,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// A peer that completes the handshake and then says nothing, and reads
/// nothing, is declared dead by the heartbeat.
#[test]
fn mio_server_heartbeat_declares_a_silent_peer_dead() {
    let server = MioServer::echo(config(|c| {
        c.ping_interval = Some(Duration::from_millis(50));
        c.max_missed_pongs = 2;
    }));
    let silent = raw_client(server.addr);
    assert_eq!(server.closed(), ended(Err(CoreError::PeerUnresponsive(2))));
    drop(silent);
}

// ---- the mio server: closing -------------------------------------------

/// Every close path between a client and the mio server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_close_paths() {
    let server = MioServer::echo(config(|c| c.close_timeout = Duration::from_millis(300)));

    // Tungstenite closes, with each kind of code and with none: the mio
    // server echoes the code and reports the peer's code and reason.
    let cases = [
        (Some((1001, "going away")), ended(Ok((1001, "going away")))),
        (Some((4999, "app ✓")), ended(Ok((4999, "app ✓")))),
        (None, ended(Ok((1005, "")))),
    ];
    for (sent, want) in cases {
        let mut theirs = tungstenite(&server.url("/"), None).await;
        let frame = sent.map(|(code, reason): (u16, &str)| TCloseFrame {
            code: code.into(),
            reason: reason.into(),
        });
        theirs.close(frame).await.unwrap();
        match (sent, next(&mut theirs).await) {
            (Some((code, _)), TMessage::Close(Some(reply))) => {
                assert_eq!(u16::from(reply.code), code)
            }
            (None, TMessage::Close(None)) => {}
            (_, other) => panic!("{sent:?}: got {other:?}"),
        }
        expect_end(&mut theirs).await;
        assert_eq!(server.closed(), want);
    }

    // The mio server closes: tungstenite sees code and reason, and both
    // ends call it clean.
    let mut theirs = tungstenite(&server.url("/"), None).await;
    theirs
        .send(TMessage::text("!close 4000 server is done ✓"))
        .await
        .unwrap();
    assert_eq!(
        next_close(&mut theirs).await,
        (4000, "server is done ✓".into())
    );
    expect_end(&mut theirs).await;
    // Tungstenite echoes the reason too.
    assert_eq!(server.closed(), ended(Ok((4000, "server is done ✓"))));

    // The same with a sockeye-tokio client.
    let mut ours = tokio_client(&server.url("/"), Default::default()).await;
    ours.send(Message::text("!close 4001 again")).await.unwrap();
    assert!(within("tokio end", ours.recv()).await.is_none());
    assert_eq!(ours.closed(), Some(&ended(Ok((4001, "again")))));
    assert_eq!(server.closed(), ended(Ok((4001, ""))));

    // The client drops TCP: an abnormal close.
    let theirs = tungstenite(&server.url("/"), None).await;
    drop(theirs);
    assert_eq!(server.closed(), ended(Err(CoreError::UnexpectedEof)));

    // The mio server closes and the peer never answers: the close timeout.
    let mut silent = raw_client(server.addr);
    silent
        .write_all(&client_frame(0x1, b"!close 1000 anyone?"))
        .unwrap();
    assert_eq!(server.closed(), ended(Err(CoreError::CloseTimeout)));
    let mut close = [0; 4];
    silent.read_exact(&mut close).unwrap();
    assert_eq!(close, [0x88, 9, 0x03, 0xe8], "the close frame went out");
}

/// A masked client frame, for the raw peers.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1, 2, 3, 4];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend(mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

// ---- the mio server: limits and refusals -------------------------------

/// Drives a protocol failure through tungstenite: it gets the close code and
/// the error's text, the mio server reports the error.
async fn expect_failure(server: &MioServer, mut theirs: Theirs, error: ProtocolError) {
    let (code, reason) = next_close(&mut theirs).await;
    assert_eq!(
        (code, reason),
        (error.close_code().as_u16(), error.to_string())
    );
    while let Some(Ok(message)) = within("their end", theirs.next()).await {
        assert!(
            matches!(message, TMessage::Ping(_)),
            "after the close: {message:?}"
        );
    }
    let closed = server.closed();
    assert_eq!(
        (closed.code, closed.clean, closed.error),
        (error.close_code(), false, Some(CoreError::Protocol(error)))
    );
}

/// A message over the limit gets 1009, whole or in fragments; one at the
/// limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_message_over_the_limit_gets_1009() {
    const MAX: usize = 1000;
    let server = MioServer::echo(config(|c| c.max_message_size = MAX));
    let mut theirs = tungstenite(&server.url("/"), None).await;
    theirs.send(TMessage::binary(vec![1; MAX])).await.unwrap();
    assert_eq!(next(&mut theirs).await, TMessage::binary(vec![1; MAX]));
    theirs
        .send(TMessage::binary(vec![2; MAX + 1]))
        .await
        .unwrap();
    let size = MAX as u64 + 1;
    expect_failure(
        &server,
        theirs,
        ProtocolError::MessageTooLarge { size, max: MAX },
    )
    .await;

    let mut theirs = tungstenite(&server.url("/"), None).await;
    let half = |byte, opcode, fin| (vec![byte; 600], opcode, fin);
    their_frames(
        &mut theirs,
        vec![
            half(b'a', OpCode::Data(Data::Text), false),
            half(b'b', OpCode::Data(Data::Continue), true),
        ],
    )
    .await;
    expect_failure(
        &server,
        theirs,
        ProtocolError::MessageTooLarge {
            size: 1200,
            max: MAX,
        },
    )
    .await;
}

/// Text that is not UTF-8 gets 1007: in one frame, across fragments, and at
/// once for a first fragment that can never become valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_invalid_utf8_gets_1007() {
    let server = MioServer::echo(Config::default());
    let cases: [&[(&[u8], bool)]; 3] = [
        &[(b"valid, then \xff", true)],
        &[(b"ok \xe2\x82", false), (b"\x28 rest", true)],
        &[(b"\xc0\xaf never valid", false)],
    ];
    for fragments in cases {
        let mut theirs = tungstenite(&server.url("/"), None).await;
        let frames = fragments
            .iter()
            .enumerate()
            .map(|(i, &(payload, fin))| {
                let data = if i == 0 { Data::Text } else { Data::Continue };
                (payload.to_vec(), OpCode::Data(data), fin)
            })
            .collect();
        their_frames(&mut theirs, frames).await;
        expect_failure(&server, theirs, ProtocolError::InvalidUtf8).await;
    }
}

/// The application refuses an upgrade with 403 and answers plain HTTP on
/// the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_refuses_and_answers_plain_http() {
    let server = MioServer::echo(Config::default());
    match within(
        "403",
        tokio_tungstenite::connect_async(server.url("/private")),
    )
    .await
    {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            assert_eq!(response.headers()["x-why"], "test");
        }
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let closed = server.closed();
    assert!(!closed.clean);

    let mut http = std::net::TcpStream::connect(server.addr).unwrap();
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    http.set_read_timeout(Some(STEP)).unwrap();
    http.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
}

// ---- the mio server: backpressure --------------------------------------

/// A mio server floods a tungstenite that does not read: it sends until
/// `send` says the high-water mark is passed and resumes on each
/// `Event::Drained`, and its queue never holds much more than the mark.
/// With nobody reading, the kernel buffers fill and the Drained events stop;
/// once tungstenite reads, they resume, and everything arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_backpressure_and_drained() {
    const HIGH_WATER: usize = 64 * 1024;
    const SIZE: usize = 16 * 1024;
    // More than loopback's socket buffers hold.
    const TOTAL: u32 = 2048;
    let message = |i: u32| {
        let mut payload = vec![(i % 251) as u8; SIZE];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        Message::binary(payload)
    };
    let mut sent = 0u32;
    let flood: Behaviour = Box::new(move |driver, id, event, now| match event {
        Event::Request(_) => driver.accept(id, now, Handshake::default()).unwrap(),
        Event::Open(_) | Event::Drained => {
            while sent < TOTAL {
                let below = driver.send(id, now, message(sent)).unwrap();
                sent += 1;
                let buffered = driver.buffered_amount(id).unwrap();
                assert!(buffered <= HIGH_WATER + 2 * SIZE, "{buffered} bytes queued");
                if !below {
                    return;
                }
            }
            if sent == TOTAL {
                sent += 1;
                driver.send(id, now, Message::text("done")).unwrap();
            }
        }
        _ => {}
    });
    let config = Config {
        write_buffer_high_water: HIGH_WATER,
        ..Config::default()
    };
    let server = MioServer::spawn(Driver::new, config, flood);
    let mut theirs = tungstenite(&server.url("/"), None).await;

    // Not reading: the Drained events stop once the kernel buffers are full.
    let mut stalled_after = 0;
    while let Ok((_, report)) = server.reports.recv_timeout(Duration::from_millis(300)) {
        assert_eq!(report, Report::Drained);
        stalled_after += 1;
    }
    let mut got = 0u32;
    loop {
        match next(&mut theirs).await {
            TMessage::Binary(payload) => {
                assert_same(&Message::binary(payload), &message(got), "in order");
                got += 1;
            }
            TMessage::Text(text) if text == "done" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, TOTAL);
    let resumed = server.reports.try_iter().count();
    println!("stalled after {stalled_after} Drained events; {resumed} more once read");
    assert!(resumed > 0, "reading resumed the flood");
}

// ---- the mio server: many connections ----------------------------------

/// Raises the soft limit on open files to the hard limit.
#[cfg(unix)]
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the given struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() {}

const CONNECTIONS: usize = 1000;

/// 1 000 sockeye-tokio clients open at once against the one-threaded mio
/// server (a barrier holds them until all are open), all echoing at once,
/// all closing cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_server_a_thousand_connections_at_once() {
    raise_fd_limit();
    let server = MioServer::echo(Config::default());
    let all_open = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let (url, all_open) = (server.url(&format!("/{c}")), all_open.clone());
        clients.spawn(async move {
            let mut ours = sockeye_tokio::connect(&url).await.unwrap();
            all_open.wait().await;
            let sent = [
                Message::text(format!("client {c} ✓")),
                Message::binary(format!("{c}").into_bytes()),
            ];
            for message in &sent {
                ours.feed(message.clone()).await.unwrap();
            }
            ours.flush().await.unwrap();
            for want in &sent {
                assert_eq!(&ours.recv().await.unwrap().unwrap(), want, "client {c}");
            }
            ours.close(CloseCode::NORMAL, "done").await.unwrap()
        });
    }
    let closes = tokio::time::timeout(Duration::from_secs(60), clients.join_all())
        .await
        .expect("1 000 connections echo within 60 s");
    assert!(closes.iter().all(|closed| *closed == ended(Ok((1000, "")))));
    for _ in 0..CONNECTIONS {
        assert_eq!(server.closed(), ended(Ok((1000, "done"))));
    }
}

// ---- the mio client ----------------------------------------------------

/// A mio driver used as a client, pumped by blocking calls: each runs the
/// loop until the driver has an event.
struct MioClient {
    poll: Poll,
    driver: Driver,
    events: Events,
    inbox: VecDeque<(ConnectionId, Event)>,
}

impl MioClient {
    fn new(config: Config) -> Self {
        let poll = Poll::new().unwrap();
        let driver = Driver::new(poll.registry(), 0..2 * CONNECTIONS, config).unwrap();
        Self {
            poll,
            driver,
            events: Events::with_capacity(1024),
            inbox: VecDeque::new(),
        }
    }

    fn connect(&mut self, addr: SocketAddr, path: &str) -> ConnectionId {
        let stream = mio::net::TcpStream::connect(addr).unwrap();
        let request = ClientRequest::new("127.0.0.1", addr.port(), path);
        self.driver
            .connect(stream, request, Instant::now())
            .unwrap()
    }

    /// Connects and waits for the handshake.
    fn open(&mut self, addr: SocketAddr, path: &str) -> ConnectionId {
        let id = self.connect(addr, path);
        match self.next() {
            (got, Event::Open(_)) if got == id => id,
            other => panic!("expected Open, got {other:?}"),
        }
    }

    /// The next event of any connection, skipping pings, pongs and
    /// `Drained` (the 16 MiB messages pass the high-water mark).
    fn next(&mut self) -> (ConnectionId, Event) {
        let deadline = Instant::now() + STEP;
        loop {
            while let Some((id, event)) = self.inbox.pop_front() {
                if !matches!(event, Event::Ping(_) | Event::Pong(_) | Event::Drained) {
                    return (id, event);
                }
            }
            let now = Instant::now();
            assert!(now < deadline, "the mio client: no event within {STEP:?}");
            let wait = self
                .driver
                .next_timeout(now)
                .unwrap_or(STEP)
                .min(deadline - now);
            self.poll.poll(&mut self.events, Some(wait)).unwrap();
            self.turn(Instant::now());
        }
    }

    /// One turn of the loop without waiting; events go to the inbox.
    fn turn(&mut self, now: Instant) {
        for event in self.events.iter() {
            assert!(self.driver.handle_event(event, now));
        }
        self.driver.handle_timeouts(now);
        while let Some(item) = self.driver.poll_event(now) {
            self.inbox.push_back(item);
        }
    }

    fn message(&mut self, id: ConnectionId) -> Message {
        match self.next() {
            (got, Event::Message(message)) if got == id => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn closed(&mut self, id: ConnectionId) -> Closed {
        loop {
            match self.next() {
                (got, Event::Closed(closed)) if got == id => {
                    assert_no_transport_failure(&closed);
                    return *closed;
                }
                (got, Event::CloseReceived(_)) if got == id => {}
                other => panic!("expected Closed, got {other:?}"),
            }
        }
    }

    /// Closes normally and waits for the close handshake.
    fn close(&mut self, id: ConnectionId, reason: &str) -> Closed {
        let now = Instant::now();
        self.driver
            .close(id, now, CloseCode::NORMAL, reason)
            .unwrap();
        self.closed(id)
    }

    fn send(&mut self, id: ConnectionId, message: Message) {
        self.driver.send(id, Instant::now(), message).unwrap();
    }
}

/// What a sockeye-tokio echo connection ended with.
type TokioEnd = Result<Option<Closed>, sockeye_tokio::Error>;

/// A sockeye-tokio echo server obeying the commands; every connection's end
/// is reported on the channel.
async fn tokio_echo_server(
    config: Config,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<TokioEnd>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (config, report) = (config.clone(), report.clone());
            tokio::spawn(async move {
                let _ = report.send(tokio_echo(stream, config).await);
            });
        }
    });
    (addr, ends)
}

async fn tokio_echo(stream: tokio::net::TcpStream, config: Config) -> TokioEnd {
    let incoming = sockeye_tokio::Incoming::read(stream, config).await?;
    if incoming.request().path == "/private" {
        incoming.respond(Response::new(403, "go away")).await?;
        return Ok(None);
    }
    let mut ws = incoming.accept(Handshake::default()).await?;
    while let Some(message) = ws.recv().await {
        let message = message?;
        match command(&message) {
            Some(Command::Close(code, reason)) => return ws.close(code, &reason).await.map(Some),
            Some(Command::Drop) => return Ok(None),
            Some(Command::Big(len)) => ws.send(Message::binary(vec![7; len])).await?,
            Some(Command::Ping(payload)) => ws.ping(payload).await?,
            None => ws.send(message).await?,
        }
    }
    Ok(ws.closed().cloned())
}

/// Runs a mio client script on a blocking thread.
async fn mio_client<T: Send + 'static>(
    config: Config,
    script: impl FnOnce(&mut MioClient) -> T + Send + 'static,
) -> T {
    let client = tokio::task::spawn_blocking(move || script(&mut MioClient::new(config)));
    within("the mio client", client).await.unwrap()
}

/// Every length encoding, 16 MiB both ways, and fragments (the mio client
/// sends with `fragment_size`), through a sockeye-tokio echo server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_client_echoes_through_a_tokio_server() {
    let (addr, mut ends) = tokio_echo_server(Default::default()).await;
    mio_client(config(|c| c.fragment_size = Some(1000)), move |client| {
        let id = client.open(addr, "/echo");
        // One at a time: past the high-water mark the driver stops reading
        // until its queue drains, and the tokio server does not read while
        // its echo waits to be written. Pipelining 32 MiB would deadlock
        // them, as it would any two peers with backpressure.
        for (i, want) in messages().iter().chain(&sixteen_mib()).enumerate() {
            client.send(id, want.clone());
            assert_same(&client.message(id), want, &format!("#{i}"));
        }
        assert_eq!(client.close(id, "bye"), ended(Ok((1000, ""))));
    })
    .await;
    assert_eq!(
        ends.recv().await.unwrap().unwrap(),
        Some(ended(Ok((1000, "bye"))))
    );
}

/// The sockeye-tokio server closes, drops TCP, and refuses; the mio client
/// reports each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_client_close_paths_and_refusal() {
    let (addr, mut ends) = tokio_echo_server(Default::default()).await;
    mio_client(Config::default(), move |client| {
        let id = client.open(addr, "/");
        client.send(id, Message::text("!close 4000 server is done ✓"));
        assert_eq!(client.closed(id), ended(Ok((4000, "server is done ✓"))));

        let id = client.open(addr, "/");
        client.send(id, Message::text("!drop"));
        assert_eq!(client.closed(id), ended(Err(CoreError::UnexpectedEof)));

        let id = client.connect(addr, "/private");
        let closed = client.closed(id);
        match closed.error {
            Some(CoreError::Response(ResponseError::Rejected {
                status: 403, body, ..
            })) => {
                assert_eq!(&body[..], b"go away");
            }
            other => panic!("expected a 403 refusal, got {other:?}"),
        }
    })
    .await;
    assert_eq!(
        ends.recv().await.unwrap().unwrap(),
        Some(ended(Ok((4000, ""))))
    );
    assert_eq!(ends.recv().await.unwrap().unwrap(), None);
    assert_eq!(ends.recv().await.unwrap().unwrap(), None);
}

/// The mio client fails a message over its limit with 1009 and invalid
/// UTF-8 with 1007; the server gets the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_client_limits_and_invalid_utf8() {
    const MAX: usize = 1000;
    let (addr, mut ends) = tokio_echo_server(Default::default()).await;
    mio_client(config(|c| c.max_message_size = MAX), move |client| {
        let id = client.open(addr, "/");
        client.send(id, Message::text(format!("!big {MAX}")));
        assert_eq!(client.message(id).len(), MAX);
        client.send(id, Message::text(format!("!big {}", MAX + 1)));
        let error = ProtocolError::MessageTooLarge {
            size: MAX as u64 + 1,
            max: MAX,
        };
        let closed = client.closed(id);
        assert_eq!(
            (closed.code.as_u16(), closed.error),
            (1009, Some(CoreError::Protocol(error)))
        );
    })
    .await;
    match ends.recv().await.unwrap() {
        Err(sockeye_tokio::Error::Connection(CoreError::Protocol(_)))
        | Ok(Some(Closed { clean: true, .. })) => {}
        other => panic!("the server: {other:?}"),
    }

    // Invalid UTF-8 needs a server that can send it: tungstenite.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut theirs = tokio_tungstenite::accept_async(stream).await.unwrap();
        let frame = Frame::message(b"ok \xe2\x82\x28".to_vec(), OpCode::Data(Data::Text), true);
        theirs.send(TMessage::Frame(frame)).await.unwrap();
        match theirs.next().await {
            Some(Ok(TMessage::Close(Some(frame)))) => u16::from(frame.code),
            other => panic!("expected a close, got {other:?}"),
        }
    });
    mio_client(Config::default(), move |client| {
        let id = client.open(addr, "/");
        let closed = client.closed(id);
        assert_eq!(
            closed.error,
            Some(CoreError::Protocol(ProtocolError::InvalidUtf8))
        );
    })
    .await;
    assert_eq!(within("tungstenite", server).await.unwrap(), 1007);
}

/// The mio client answers the server's heartbeat and on-demand pings, gets
/// the pong to its own ping, and declares a silent server dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_client_pings_and_heartbeat() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let server_config = Config {
        ping_interval: Some(INTERVAL),
        max_missed_pongs: 1,
        ..Config::default()
    };
    let (addr, mut ends) = tokio_echo_server(server_config).await;
    mio_client(Config::default(), move |client| {
        let id = client.open(addr, "/");
        client
            .driver
            .ping(id, Instant::now(), Bytes::from_static(b"are you there?"))
            .unwrap();
        let quiet_until = Instant::now() + INTERVAL * 10;
        let mut pong = None;
        while Instant::now() < quiet_until {
            client
                .poll
                .poll(&mut client.events, Some(INTERVAL))
                .unwrap();
            client.turn(Instant::now());
            for (_, event) in client.inbox.drain(..) {
                match event {
                    Event::Pong(payload) => pong = Some(payload),
                    Event::Ping(_) => {}
                    other => panic!("expected only pings and pongs, got {other:?}"),
                }
            }
        }
        assert_eq!(pong.as_deref(), Some(&b"are you there?"[..]));
        client.send(id, Message::text("still here"));
        assert_eq!(client.message(id), Message::text("still here"));
        assert_eq!(client.close(id, ""), ended(Ok((1000, ""))));
    })
    .await;
    assert_eq!(
        ends.recv().await.unwrap().unwrap(),
        Some(ended(Ok((1000, ""))))
    );

    // A server that answers the handshake and then goes silent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, wait) = mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let head = read_head(&mut stream);
        let key = head
            .lines()
            .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = sockeye_core::accept_key(key.as_bytes());
        write!(stream, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").unwrap();
        let _ = wait.recv_timeout(STEP);
    });
    let heartbeat = config(|c| {
        c.ping_interval = Some(INTERVAL);
        c.max_missed_pongs = 2;
    });
    mio_client(heartbeat, move |client| {
        let id = client.open(addr, "/");
        assert_eq!(
            client.closed(id),
            ended(Err(CoreError::PeerUnresponsive(2)))
        );
    })
    .await;
    done.send(()).unwrap();
    silent.join().unwrap();
}

/// One mio driver with 1 000 client connections open at once against a
/// sockeye-tokio echo server; each echoes and closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mio_client_a_thousand_connections_at_once() {
    raise_fd_limit();
    let (addr, mut ends) = tokio_echo_server(Default::default()).await;
    mio_client(Config::default(), move |client| {
        let ids: Vec<ConnectionId> = (0..CONNECTIONS)
            .map(|c| client.connect(addr, &format!("/{c}")))
            .collect();
        let mut open = 0;
        while open < CONNECTIONS {
            match client.next() {
                (_, Event::Open(_)) => open += 1,
                other => panic!("expected Open, got {other:?}"),
            }
        }
        for (c, &id) in ids.iter().enumerate() {
            client.send(id, Message::text(format!("client {c} ✓")));
        }
        let (mut echoed, mut closed) = (0, 0);
        while closed < CONNECTIONS {
            match client.next() {
                (id, Event::Message(message)) => {
                    let c = ids.iter().position(|&x| x == id).unwrap();
                    assert_eq!(message, Message::text(format!("client {c} ✓")));
                    let now = Instant::now();
                    client
                        .driver
                        .close(id, now, CloseCode::NORMAL, "done")
                        .unwrap();
                    echoed += 1;
                }
                (_, Event::CloseReceived(_)) => {}
                (_, Event::Closed(how)) => {
                    assert_eq!(*how, ended(Ok((1000, ""))));
                    closed += 1;
                }
                other => panic!("expected an echo or a close, got {other:?}"),
            }
        }
        assert_eq!(echoed, CONNECTIONS);
    })
    .await;
    for _ in 0..CONNECTIONS {
        assert_eq!(
            ends.recv().await.unwrap().unwrap(),
            Some(ended(Ok((1000, "done"))))
        );
    }
}

// ---- teardown: one policy, in the core -----------------------------------

/// The blocking example from `sockeye-core`, served from a thread: the
/// third loop that follows the core's transport actions.
#[path = "../../core/examples/blocking.rs"]
#[allow(dead_code)] // its `main`
mod blocking;

/// What a raw TCP peer saw of how a server ended its connection.
#[derive(Debug, PartialEq)]
struct Ending {
    /// The HTTP status of the server's answer.
    status: u16,
    /// The frames after it: the opcode, and the code of a close frame.
    frames: Vec<(u8, Option<u16>)>,
    /// Whether the stream ended with the server's FIN; a reset instead can
    /// destroy what the server wrote last.
    fin: bool,
    /// Whether the server was still reading after its FIN, that is, it
    /// half-closed and waited for the peer rather than closing outright.
    /// `None` where the peer had already shut its own side.
    lingered: Option<bool>,
}

/// A peer misbehaving at the TCP level: its request; what it writes once
/// the answer's head has arrived, in one go and while it reads; and whether
/// it then shuts its side down.
struct Script {
    request: Vec<u8>,
    writes: Vec<u8>,
    shutdown: bool,
}

/// A masked binary frame of `len` bytes.
fn junk(len: usize) -> Vec<u8> {
    testing::Frame::binary(vec![0x5a; len])
        .from_client()
        .encode()
}

/// Plays `script` against the server at `addr` and reports what came back.
fn play(addr: SocketAddr, script: &Script) -> Ending {
    use std::net::{Shutdown, TcpStream};
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(&script.request).unwrap();
    let mut wire = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while testing::split_head(&wire).is_none() {
        let n = stream.read(&mut buf).expect("an answer");
        assert_ne!(n, 0, "the stream ended before the answer's head");
        wire.extend_from_slice(&buf[..n]);
    }
    let mut writer = stream.try_clone().unwrap();
    let (writes, shutdown) = (script.writes.clone(), script.shutdown);
    // Writing from a thread of its own, so that a server which stops
    // reading cannot stall the read below.
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&writes);
        if shutdown {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let fin = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => wire.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break false,
            Err(e) => panic!("the server neither ended the stream nor reset it: {e}"),
        }
    };
    writing.join().unwrap();
    // A socket that is fully closed answers a write with a reset, which
    // fails the write after it; one that half-closed takes both. The pause
    // is for the reset's round trip on loopback, far below the linger time
    // (`close_timeout` is a whole step).
    let lingered = (fin && !script.shutdown).then(|| {
        let probe = junk(16);
        let first = stream.write_all(&probe).is_ok();
        std::thread::sleep(Duration::from_millis(200));
        first && stream.write_all(&probe).is_ok()
    });
    let _ = stream.shutdown(Shutdown::Write);

    let (head, rest) = testing::split_head(&wire).expect("an HTTP answer");
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    // After an HTTP answer comes its body; after a 101, frames.
    let mut frames = Vec::new();
    if status == 101 {
        let (read, incomplete) = testing::read_frames(rest);
        assert!(incomplete.is_empty(), "a frame cut short: {incomplete:?}");
        frames = read
            .iter()
            .map(|frame| {
                let code = (frame.opcode == 8)
                    .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                (frame.opcode, code)
            })
            .collect();
    }
    Ending {
        status,
        frames,
        fin,
        lingered,
    }
}

/// The misbehaviours, each with the ending the core decides on.
fn misbehaviours() -> Vec<(&'static str, Script, Ending)> {
    let upgrade = || testing::REQUEST.to_vec();
    let ending = |status, frames: &[(u8, Option<u16>)], lingered| Ending {
        status,
        frames: frames.to_vec(),
        fin: true,
        lingered,
    };
    let bad_request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let frames = |frames: &[&[u8]]| frames.concat();
    vec![
        (
            // The reset-under-the-close-frame case: the server fails the
            // connection while a quarter mebibyte is still on its way.
            "a protocol error with data in flight",
            Script {
                request: upgrade(),
                writes: frames(&[
                    &testing::Frame::new(3, "reserved").from_client().encode(),
                    &junk(256 << 10),
                ]),
                shutdown: false,
            },
            ending(101, &[(8, Some(1002))], Some(true)),
        ),
        (
            "a close, then more data",
            Script {
                request: upgrade(),
                writes: frames(&[
                    &testing::Frame::close(1000, "bye").from_client().encode(),
                    &junk(64 << 10),
                ]),
                shutdown: false,
            },
            ending(101, &[(8, Some(1000))], Some(true)),
        ),
        (
            "a bad request, then more bytes",
            Script {
                request: bad_request.to_vec(),
                writes: junk(64 << 10),
                shutdown: false,
            },
            ending(400, &[], Some(true)),
        ),
        (
            "the end of stream in the middle of a frame",
            Script {
                request: upgrade(),
                writes: junk(1000)[..500].to_vec(),
                shutdown: true,
            },
            ending(101, &[], None),
        ),
    ]
}

/// Both drivers and the blocking example end connections the same way under
/// the same misbehaviour, because the core decides: none of them has a
/// teardown policy of its own. (Before the core owned teardown, the blocking
/// example reset the peer in the first case.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loop_ends_a_misbehaving_connection_as_the_core_says() {
    let config = config(|c| c.close_timeout = STEP);
    let mio = MioServer::echo(config.clone());
    let (tokio_addr, _ends) = tokio_echo_server(config.clone()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blocking_addr = listener.local_addr().unwrap();
    let blocking_config = config.clone();
    std::thread::spawn(move || blocking::serve(listener, blocking_config));

    let servers = [
        ("mio", mio.addr),
        ("tokio", tokio_addr),
        ("blocking", blocking_addr),
    ];
    for (what, script, want) in misbehaviours() {
        let script = Arc::new(script);
        for (server, addr) in servers {
            let script = script.clone();
            let got = within(
                what,
                tokio::task::spawn_blocking(move || play(addr, &script)),
            )
            .await
            .unwrap();
            assert_eq!(got, want, "{what}, against the {server} loop");
        }
    }
}
