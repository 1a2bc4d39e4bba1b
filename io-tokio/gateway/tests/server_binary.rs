//! The `sockeye` binary, run the way users run it: a child process on a free
//! loopback port, talked to over real TCP by a tokio-tungstenite client and
//! by hand-written HTTP. Every child is killed when its guard drops, so a
//! failing test leaves nothing running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const STARTUP: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(10);

/// A running `sockeye serve`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `sockeye serve --bind 127.0.0.1:<free port>` with `args`, and
    /// waits until it logs that it is listening.
    fn start(args: &[&str]) -> Self {
        let mut last_failure = String::new();
        // A free port can be taken by someone else before the server binds
        // it: try a few.
        for _ in 0..3 {
            let addr = free_port();
            let mut server = Self::spawn(&["serve", "--bind", &addr.to_string()], args, addr);
            let deadline = Instant::now() + STARTUP;
            loop {
                if server.logs().contains("listening") {
                    return server;
                }
                if let Some(status) = server.child.try_wait().unwrap() {
                    last_failure = format!("exited with {status}: {}", server.logs());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sockeye did not start listening within {STARTUP:?}: {}",
                    server.logs()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("sockeye did not start: {last_failure}");
    }

    fn spawn(command: &[&str], args: &[&str], addr: SocketAddr) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockeye"));
        cmd.args(command)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The tests set every flag they rely on; the environment must not.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SOCKEYE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("the sockeye binary runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        Self {
            child,
            addr,
            stderr,
        }
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit, for at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sockeye still running {limit:?} later: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no progress within {STEP:?}"),
    }
}

/// A plain HTTP/1.1 request; returns the whole response (the server closes
/// the connection after it).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }
}

#[test]
fn healthz_answers_200_on_the_websocket_port() {
    let server = Server::start(&[]);
    let response = http_get(server.addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert_eq!(body(&response), "ok\n", "{response}");

    // Any other plain request is told to upgrade.
    let response = http_get(server.addr, "/");
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13\r\n"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_echoes_every_message() {
    let server = Server::start(&[]);
    let (mut ws, response) = within(
        "connect",
        tokio_tungstenite::connect_async(server.url("/echo")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    let messages = [
        Message::text("hello ✓"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
    ];
    for message in &messages {
        ws.send(message.clone()).await.unwrap();
    }
    for want in &messages {
        let got = within("echo", ws.next()).await.unwrap().unwrap();
        assert!(
            &got == want,
            "got {} bytes, want {} bytes",
            got.len(),
            want.len()
        );
    }
    ws.close(Some(close_frame(1000, "bye"))).await.unwrap();
    let reply = within("close reply", ws.next()).await.unwrap().unwrap();
    assert_eq!(reply, Message::Close(Some(close_frame(1000, ""))));
    assert!(within("end", ws.next()).await.is_none());
}

/// A message over `--max-message-size` fails the connection with 1009, and
/// the client still sending the rest of it is neither reset nor left without
/// the close frame: the server reads and drops input until the client
/// closes (a reset could destroy the close frame before the client reads
/// it). The log names the error.
#[test]
fn a_message_over_the_limit_gets_1009_while_the_client_still_sends() {
    let server = Server::start(&["--max-message-size", "1024"]);
    let mut client = TcpStream::connect(server.addr).unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    write!(
        client,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        client.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );

    // 512-byte fragments, masked with a zero key: the third takes the
    // message over 1024 bytes.
    let fragment = |opcode: u8, fin: bool| {
        let mut frame = vec![u8::from(fin) << 7 | opcode, 0x80 | 126, 2, 0, 0, 0, 0, 0];
        frame.extend([b'x'; 512]);
        frame
    };
    for opcode in [2, 0, 0] {
        client.write_all(&fragment(opcode, false)).unwrap();
    }
    // Each of these wakes the server after it has failed the connection. A
    // server that closed its socket then would reset this one, and the
    // next write would fail.
    for fin in [false, false, true] {
        std::thread::sleep(Duration::from_millis(50));
        client
            .write_all(&fragment(0, fin))
            .expect("the server still reads after failing the connection");
    }
    let mut close = Vec::new();
    client
        .read_to_end(&mut close)
        .expect("the close frame, then the server's FIN");
    assert_eq!(
        close.get(..4),
        Some(&[0x88, close[1], 0x03, 0xf1][..]),
        "close 1009: {close:?}"
    );
    client.shutdown(std::net::Shutdown::Write).unwrap();

    let deadline = Instant::now() + STEP;
    while !server.logs().contains("exceeds the limit of 1024") {
        assert!(
            Instant::now() < deadline,
            "no close logged: {}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM: every open connection gets close 1001, and once they have
/// answered, the process exits 0, well within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_with_1001_and_exits_0() {
    const DRAIN: Duration = Duration::from_secs(5);
    let mut server = Server::start(&["--drain-timeout", "5"]);
    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = within("connect", tokio_tungstenite::connect_async(server.url("/")))
            .await
            .unwrap();
        // One echo: the connection is open on the server's side too.
        ws.send(Message::text(format!("client {i}"))).await.unwrap();
        let echo = within("echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(echo, Message::text(format!("client {i}")));
        clients.push(ws);
    }

    let signalled = Instant::now();
    server.terminate();
    for (i, mut ws) in clients.into_iter().enumerate() {
        let close = within("close 1001", ws.next()).await.unwrap().unwrap();
        assert_eq!(
            close,
            Message::Close(Some(close_frame(1001, "server shutting down"))),
            "client {i}"
        );
        // Reading on sends tungstenite's reply; then the server ends its
        // side, and the client, done, drops its socket: the end of stream
        // the server waits for before it lets go of the connection.
        assert!(within("end", ws.next()).await.is_none(), "client {i}");
    }
    let status = server.wait_exit(DRAIN + Duration::from_secs(5));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}: {}", server.logs());
    assert!(
        took < DRAIN,
        "took {took:?}: answered connections must not wait for the drain timeout"
    );
    let logs = server.logs();
    assert!(
        logs.contains("shutting down") && logs.contains("stopped"),
        "{logs}"
    );
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "nothing listens after the exit"
    );
}

/// A client that never answers the close does not hold the server past the
/// drain timeout: it exits 0 then, and the client did get its 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_shutdown() {
    const DRAIN: Duration = Duration::from_secs(1);
    let mut server = Server::start(&["--drain-timeout", "1"]);
    let (mut ws, _) = within("connect", tokio_tungstenite::connect_async(server.url("/")))
        .await
        .unwrap();
    ws.send(Message::text("open")).await.unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("open")
    );

    // The client stops reading: the close frame waits in its socket.
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}: {}", server.logs());
    // Not before the deadline, and not at the core's 5 s close timeout.
    assert!(
        took >= DRAIN.mul_f64(0.9) && took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM with a 1 s drain timeout"
    );
    assert!(server.logs().contains("drain timeout"), "{}", server.logs());
    let close = within("close 1001", ws.next()).await.unwrap().unwrap();
    assert_eq!(
        close,
        Message::Close(Some(close_frame(1001, "server shutting down")))
    );
}

/// Runs `sockeye` with `args` to its exit (killed after a deadline, in case
/// it starts serving instead); returns its status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut server = Server::spawn(args, &[], free_port());
    let status = server.wait_exit(STEP);
    // The stderr thread ends with the pipe; give it a moment to catch up.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.logs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    (status, server.logs())
}

#[test]
fn invalid_flag_values_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["serve", "--bind", "not-an-address"],
            "invalid value 'not-an-address' for '--bind <BIND>'",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--mode", "chat"],
            "invalid value 'chat' for '--mode <MODE>'",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--max-frame-size", "big"],
            "invalid value 'big' for '--max-frame-size <MAX_FRAME_SIZE>'",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--drain-timeout=-1"],
            "--drain-timeout must be a number of seconds ≥ 0, not -1",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--max-connections", "0"],
            "--max-connections must be at least 1",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--max-missed-pongs", "0"],
            "max_missed_pongs must be at least 1",
        ),
        (
            &["serve", "--bind", "127.0.0.1:0", "--workers", "0"],
            "--workers must be at least 1",
        ),
    ];
    for (args, message) in cases {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?}: {status}, stderr: {stderr}"
        );
        assert!(
            stderr.contains(message),
            "{args:?}: stderr lacks {message:?}: {stderr}"
        );
    }
}
