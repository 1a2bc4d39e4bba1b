//! Sockeye's client against a server nobody here wrote: runs the interop
//! scenarios against `tests/python/interop_server.py` (Python `websockets`).
//!
//! ```sh
//! python tests/python/interop_server.py --port 9101 &
//! target/release/examples/interop_client ws://127.0.0.1:9101
//! ```
//!
//! Prints `PASS name` or `FAIL name: reason` per scenario and exits 1 if any
//! failed. `tests/python/run.sh` builds and runs it. The last scenario shuts
//! the Python server down.

use std::process::ExitCode;
use std::time::Duration;

use sockeye_core::{Error as CoreError, ProtocolError, ResponseError};
use sockeye_tokio::{Client, CloseCode, Config, Error, Message, WebSocket};
use tokio::net::TcpStream;

type Socket = WebSocket<TcpStream>;
type Outcome = Result<(), String>;

/// Every scenario must finish within this.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20);
/// Waiting for one message or one close.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails the scenario with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err(format!($($reason)+));
        }
    };
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(base) = std::env::args().nth(1) else {
        eprintln!("usage: interop_client ws://HOST:PORT");
        return ExitCode::from(2);
    };
    let base = base.trim_end_matches('/');
    let mut failed = 0;
    for (name, outcome) in [
        ("text", run(text(base)).await),
        ("binary", run(binary(base)).await),
        ("utf8-multibyte", run(utf8_multibyte(base)).await),
        ("fragmented", run(fragmented(base)).await),
        (
            "fragmented-utf8-split",
            run(fragmented_utf8_split(base)).await,
        ),
        ("large-16mib", run(large_16mib(base)).await),
        ("ping-pong", run(ping_pong(base)).await),
        ("heartbeat", run(heartbeat(base)).await),
        ("close-by-client", run(close_by_client(base)).await),
        ("close-by-server", run(close_by_server(base)).await),
        ("too-big", run(too_big(base, 1)).await),
        ("too-big-fragmented", run(too_big(base, 8)).await),
        ("invalid-utf8", run(invalid_utf8(base)).await),
        ("handshake-rejected-403", run(rejected_403(base)).await),
        ("abort-without-close", run(abort(base)).await),
        // Last: it stops the server.
        ("shutdown-1001", run(shutdown_1001(base)).await),
    ] {
        match outcome {
            Ok(()) => println!("PASS {name}"),
            Err(reason) => {
                failed += 1;
                println!("FAIL {name}: {reason}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(scenario: impl Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {SCENARIO_TIMEOUT:?}")))
}

// ---- helpers --------------------------------------------------------------

async fn open(base: &str, path: &str, config: Config) -> Result<Socket, String> {
    let url = format!("{base}{path}");
    Client::new(&url)
        .config(config)
        .connect()
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

/// The next message; anything else (a close, an error, silence) fails.
async fn next_message(socket: &mut Socket) -> Result<Message, String> {
    match tokio::time::timeout(STEP_TIMEOUT, socket.recv()).await {
        Err(_) => Err(format!("no message within {STEP_TIMEOUT:?}")),
        Ok(Some(Ok(message))) => Ok(message),
        Ok(Some(Err(error))) => Err(format!("expected a message, got error: {error}")),
        Ok(None) => Err(format!(
            "expected a message, the connection closed: {:?}",
            socket.closed()
        )),
    }
}

/// The next message, which must be this text.
async fn expect_text(socket: &mut Socket, expected: &str) -> Outcome {
    let message = next_message(socket).await?;
    ensure!(
        message.as_text() == Some(expected),
        "expected text {expected:?}, got {message:?}"
    );
    Ok(())
}

/// The next `recv` result, whatever it is.
async fn next_event(socket: &mut Socket) -> Result<Option<Result<Message, Error>>, String> {
    tokio::time::timeout(STEP_TIMEOUT, socket.recv())
        .await
        .map_err(|_| format!("nothing within {STEP_TIMEOUT:?}"))
}

/// Closes normally and checks the handshake completed with 1000.
async fn close_normally(mut socket: Socket) -> Outcome {
    let closed = socket
        .close(CloseCode::NORMAL, "")
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    ensure!(
        closed.code == CloseCode::NORMAL && closed.clean,
        "expected a clean 1000 close, got {closed:?}"
    );
    Ok(())
}

/// Sends `message` to /echo, expects it back unchanged, closes.
async fn round_trip(base: &str, config: Config, message: Message) -> Outcome {
    let mut socket = open(base, "/echo", config).await?;
    socket
        .send(message.clone())
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let reply = next_message(&mut socket).await?;
    ensure!(
        reply == message,
        "echo differs: sent {} bytes ({}), got {} bytes ({})",
        message.len(),
        kind(&message),
        reply.len(),
        kind(&reply)
    );
    close_normally(socket).await
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
    }
}

/// How the server saw connection `key` end: "rcvd=CODE:REASON sent=...".
async fn server_report(base: &str, key: &str) -> Result<String, String> {
    let mut socket = open(base, &format!("/report?key={key}"), Config::default()).await?;
    let message = next_message(&mut socket).await?;
    while socket.recv().await.is_some() {}
    message
        .as_text()
        .map(str::to_owned)
        .ok_or_else(|| "the report is not text".to_owned())
}

/// Deterministic bytes that do not compress or repeat (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

// ---- scenarios ------------------------------------------------------------

async fn text(base: &str) -> Outcome {
    round_trip(base, Config::default(), Message::text("hello, websockets")).await
}

async fn binary(base: &str) -> Outcome {
    let bytes: Vec<u8> = (0..=255).cycle().take(1024).collect();
    round_trip(base, Config::default(), Message::binary(bytes)).await
}

async fn utf8_multibyte(base: &str) -> Outcome {
    // 2-, 3- and 4-byte sequences.
    let text = "κόσμε · ü · € · 日本語 · 😀🦀";
    round_trip(base, Config::default(), Message::text(text)).await
}

/// We send in 4-byte fragments; the server counts the frames, then sends the
/// message back in the same fragments (plus websockets' empty final frame).
async fn fragmented(base: &str) -> Outcome {
    let config = Config {
        fragment_size: Some(4),
        ..Config::default()
    };
    let mut socket = open(base, "/fragmented", config).await?;
    let text = "fragmented text!"; // 16 bytes: 4 frames
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    expect_text(&mut socket, "frames=4").await?;
    expect_text(&mut socket, text).await?;
    close_normally(socket).await
}

/// One-byte fragments split every multi-byte character: UTF-8 is checked on
/// the message, not per frame, in both directions.
async fn fragmented_utf8_split(base: &str) -> Outcome {
    let config = Config {
        fragment_size: Some(1),
        ..Config::default()
    };
    let mut socket = open(base, "/fragmented", config).await?;
    let text = "ü😀ü😀"; // 12 bytes
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    expect_text(&mut socket, "frames=12").await?;
    expect_text(&mut socket, text).await?;
    close_normally(socket).await
}

async fn large_16mib(base: &str) -> Outcome {
    round_trip(base, Config::default(), Message::binary(noise(16 << 20))).await
}

/// The server pings with a payload; websockets resolves its waiter only on a
/// pong carrying the same payload, and then says "pong-ok".
async fn ping_pong(base: &str) -> Outcome {
    let mut socket = open(base, "/ping", Config::default()).await?;
    expect_text(&mut socket, "pong-ok").await?;
    close_normally(socket).await
}

/// Our heartbeat pings a silent server every 100 ms; its pongs keep the
/// connection alive (2 missed would fail it), and it counts the pings.
async fn heartbeat(base: &str) -> Outcome {
    let config = Config {
        ping_interval: Some(Duration::from_millis(100)),
        max_missed_pongs: 2,
        ..Config::default()
    };
    let mut socket = open(base, "/heartbeat?ms=800", config).await?;
    let message = next_message(&mut socket).await?;
    let pings: u32 = message
        .as_text()
        .and_then(|t| t.strip_prefix("pings="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected report {message:?}"))?;
    ensure!(
        pings >= 4,
        "the server saw {pings} pings in 800 ms at a 100 ms interval"
    );
    close_normally(socket).await
}

async fn close_by_client(base: &str) -> Outcome {
    let mut socket = open(base, "/echo?key=close-by-client", Config::default()).await?;
    let closed = socket
        .close(CloseCode::new(4001), "client bye")
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    // websockets echoes the close frame it receives.
    ensure!(
        closed.clean && closed.code == CloseCode::new(4001) && closed.reason == "client bye",
        "expected a clean close 4001 \"client bye\", got {closed:?}"
    );
    ensure!(
        socket.recv().await.is_none(),
        "recv after close returned something"
    );
    let report = server_report(base, "close-by-client").await?;
    ensure!(
        report == "rcvd=4001:client bye sent=4001:client bye",
        "the server saw {report:?}"
    );
    Ok(())
}

async fn close_by_server(base: &str) -> Outcome {
    let path = "/close?code=4002&reason=server%20bye&key=close-by-server";
    let mut socket = open(base, path, Config::default()).await?;
    match next_event(&mut socket).await? {
        None => {}
        Some(other) => return Err(format!("expected the end of the stream, got {other:?}")),
    }
    let closed = socket.closed().ok_or("recv ended without closed()")?;
    ensure!(
        closed.clean
            && closed.code == CloseCode::new(4002)
            && closed.reason == "server bye"
            && closed.error.is_none(),
        "expected a clean close 4002 \"server bye\", got {closed:?}"
    );
    let report = server_report(base, "close-by-server").await?;
    // We echo the code (§5.5.1).
    ensure!(
        report.starts_with("rcvd=4002:") && report.ends_with("sent=4002:server bye"),
        "the server saw {report:?}"
    );
    Ok(())
}

/// The server sends 2 KiB (in `chunks` fragments) to a client that accepts
/// 1 KiB: the client fails the connection with 1009, and the server gets it.
async fn too_big(base: &str, chunks: usize) -> Outcome {
    let key = format!("too-big-{chunks}");
    let config = Config {
        max_message_size: 1024,
        ..Config::default()
    };
    let path = format!("/too-big?size=2048&chunks={chunks}&key={key}");
    let mut socket = open(base, &path, config).await?;
    match next_event(&mut socket).await? {
        Some(Err(Error::Connection(CoreError::Protocol(ProtocolError::MessageTooLarge {
            max: 1024,
            ..
        })))) => {}
        other => return Err(format!("expected MessageTooLarge, got {other:?}")),
    }
    let code = socket.closed().map(|c| c.code);
    ensure!(
        code == Some(CloseCode::MESSAGE_TOO_BIG),
        "closed() says {code:?}"
    );
    ensure!(socket.recv().await.is_none(), "recv after the error");
    // Like an application would: drop the socket, then look at the peer.
    drop(socket);
    let report = server_report(base, &key).await?;
    ensure!(
        report.starts_with("rcvd=1009:"),
        "the server saw {report:?}"
    );
    Ok(())
}

async fn invalid_utf8(base: &str) -> Outcome {
    let mut socket = open(base, "/invalid-utf8?key=invalid-utf8", Config::default()).await?;
    match next_event(&mut socket).await? {
        Some(Err(Error::Connection(CoreError::Protocol(ProtocolError::InvalidUtf8)))) => {}
        other => return Err(format!("expected InvalidUtf8, got {other:?}")),
    }
    let code = socket.closed().map(|c| c.code);
    ensure!(
        code == Some(CloseCode::INVALID_PAYLOAD),
        "closed() says {code:?}"
    );
    drop(socket);
    let report = server_report(base, "invalid-utf8").await?;
    ensure!(
        report.starts_with("rcvd=1007:"),
        "the server saw {report:?}"
    );
    Ok(())
}

async fn rejected_403(base: &str) -> Outcome {
    match Client::new(format!("{base}/reject")).connect().await {
        Err(Error::Connection(CoreError::Response(ResponseError::Rejected {
            status: 403,
            body,
            ..
        }))) => {
            ensure!(
                body.as_ref() == b"rejected by the interop server\n",
                "unexpected body {body:?}"
            );
            Ok(())
        }
        Err(other) => Err(format!(
            "expected Rejected {{ status: 403 }}, got {other:?}"
        )),
        Ok(_) => Err("the handshake succeeded".into()),
    }
}

/// The server drops TCP without a close frame: an error, not a clean close.
async fn abort(base: &str) -> Outcome {
    let mut socket = open(base, "/abort", Config::default()).await?;
    match next_event(&mut socket).await? {
        Some(Err(Error::Connection(CoreError::UnexpectedEof))) => {}
        other => return Err(format!("expected UnexpectedEof, got {other:?}")),
    }
    let closed = socket.closed().ok_or("no closed() after the error")?;
    ensure!(
        closed.code == CloseCode::ABNORMAL && !closed.clean,
        "expected an unclean 1006, got {closed:?}"
    );
    Ok(())
}

/// The server shuts down gracefully: every connection gets 1001.
async fn shutdown_1001(base: &str) -> Outcome {
    let mut socket = open(base, "/shutdown", Config::default()).await?;
    match next_event(&mut socket).await? {
        None => {}
        Some(other) => return Err(format!("expected the end of the stream, got {other:?}")),
    }
    let closed = socket.closed().ok_or("recv ended without closed()")?;
    ensure!(
        closed.clean && closed.code == CloseCode::GOING_AWAY,
        "expected a clean 1001, got {closed:?}"
    );
    Ok(())
}
