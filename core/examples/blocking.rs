//! An echo server on blocking `std::net` sockets, one thread per connection,
//! driving `sockeye_core::Connection` by hand. It shows the whole sans-IO
//! contract in one loop: feed bytes and time in; drain events, then
//! transmits, then transport actions; sleep until the next deadline. The
//! drivers in `sockeye-tokio` and `sockeye-mio` run the same loop.
//!
//! ```sh
//! cargo run --release -p sockeye-core --example blocking                # 127.0.0.1:9001
//! cargo run --release -p sockeye-core --example blocking -- 0.0.0.0:9002
//! ```
//!
//! The loop has no teardown policy of its own: it half-closes and closes
//! the socket when the connection says so, and keeps reading in between,
//! which is what keeps a peer still sending from getting a reset that
//! would destroy the close frame it has not read yet.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sockeye_core::{
    Closed, Config, Connection, Event, Handshake, Message, Response, TransportAction,
};

/// How long one write may wait for a peer to read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(addr)?;
    eprintln!("echo server listening on ws://{}", listener.local_addr()?);
    serve(listener, Config::default())
}

/// Accepts connections forever, each on a thread of its own.
pub fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        let config = config.clone();
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let conn = Connection::server(config, Instant::now()).expect("the config is valid");
            let closed = drive(stream, conn, echo);
            eprintln!(
                "{peer}: closed with {} (clean: {}){}",
                closed.code,
                closed.clean,
                closed.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        });
    }
    Ok(())
}

fn echo(conn: &mut Connection, message: Message) {
    // The peer may have closed meanwhile; then there is no one to echo to.
    let _ = conn.send(Instant::now(), message);
}

/// The driver loop: it returns how the connection ended once the core has
/// said to close the socket. I/O errors go into the connection too, so the
/// `Closed` it returns is the only account of the ending.
fn drive(
    mut stream: TcpStream,
    mut conn: Connection,
    mut on_message: impl FnMut(&mut Connection, Message),
) -> Closed {
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = None;
    // A blocking write to a peer that has stopped reading would wait
    // forever; past this the peer counts as gone.
    let setup = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        conn.handle_transport_error(Instant::now(), &e);
    }
    loop {
        // Events first: reacting to them queues output.
        while let Some(event) = conn.poll_event() {
            let now = Instant::now();
            match event {
                Event::Request(_) => conn
                    .accept(now, Handshake::default())
                    .expect("a request is pending"),
                Event::HttpRequest(request) => {
                    let response = match request.path.as_str() {
                        "/healthz" => Response::new(200, "ok"),
                        _ => Response::upgrade_required(),
                    };
                    conn.respond(now, response).expect("a request is pending");
                }
                Event::Message(message) => on_message(&mut conn, message),
                Event::Closed(ending) => closed = Some(*ending),
                _ => {}
            }
        }
        if let Err(e) = write_out(&mut stream, &mut conn) {
            // The connection reports the failure as an event: go get it.
            conn.handle_transport_error(Instant::now(), &e);
            continue;
        }
        // Then what the transport should do. Errors here are not worth
        // reporting: the connection is already over.
        match conn.poll_transport() {
            Some(TransportAction::HalfClose) => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Some(TransportAction::Close) => {
                drop(stream);
                // Closed always comes before Close.
                return closed.expect("the connection reported how it ended");
            }
            None => {}
        }

        // Wait for bytes, but no longer than the next deadline.
        let now = Instant::now();
        let timeout = conn
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now));
        if timeout == Some(Duration::ZERO) {
            conn.handle_timeout(now);
            continue;
        }
        if let Err(e) = stream.set_read_timeout(timeout) {
            conn.handle_transport_error(now, &e);
            continue;
        }
        match stream.read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                conn.handle_timeout(Instant::now());
            }
            Err(e) => conn.handle_transport_error(Instant::now(), &e),
        }
    }
}

/// Writes everything the connection has to send, with vectored writes:
/// headers and payloads go out without being copied together.
fn write_out(stream: &mut TcpStream, conn: &mut Connection) -> io::Result<()> {
    loop {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = conn.poll_transmit(&mut slices);
        if n == 0 {
            return Ok(());
        }
        let written = stream.write_vectored(&slices[..n])?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.handle_written(Instant::now(), written);
    }
}
