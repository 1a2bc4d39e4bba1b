//! An echo server on blocking `std::net` sockets, one thread per connection,
//! driving `sockeye_core::Connection` by hand. It shows the whole sans-IO
//! contract in one loop: feed bytes and time in, drain events then
//! transmits, sleep until the next deadline. (The `sockeye` server does the
//! same with tokio.)
//!
//! ```sh
//! cargo run --release -p sockeye-core --example blocking                # 127.0.0.1:9001
//! cargo run --release -p sockeye-core --example blocking -- 0.0.0.0:9002
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Buf;
use sockeye_core::{Accept, Closed, Config, Connection, Event, Message, Response, Transmit};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    serve(&addr)
}

fn serve(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("echo server listening on ws://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let conn = Connection::server(Config::default(), Instant::now())
                .expect("default config is valid");
            match drive(stream, conn, echo) {
                Ok(closed) => eprintln!(
                    "{peer}: closed with {} (clean: {})",
                    closed.code, closed.clean
                ),
                Err(e) => eprintln!("{peer}: {e}"),
            }
        });
    }
    Ok(())
}

fn echo(conn: &mut Connection, message: Message) {
    // The peer may have closed meanwhile; then there is no one to echo to.
    let _ = conn.send(Instant::now(), message);
}

/// The driver loop: it returns how the connection ended.
fn drive(
    mut stream: TcpStream,
    mut conn: Connection,
    mut on_message: impl FnMut(&mut Connection, Message),
) -> io::Result<Closed> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: VecDeque<Transmit> = VecDeque::new();
    loop {
        // Events first: reacting to them queues output.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(_) => conn
                    .accept(Accept::default())
                    .expect("a request is pending"),
                Event::HttpRequest(request) => {
                    let response = match request.path.as_str() {
                        "/healthz" => Response::new(200, "ok"),
                        _ => Response::new(404, "not found"),
                    };
                    conn.respond(response).expect("a request is pending");
                }
                Event::Message(message) => on_message(&mut conn, message),
                Event::Closed(closed) => {
                    write_all(&mut stream, &mut conn, &mut pending)?;
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(*closed);
                }
                _ => {}
            }
        }
        write_all(&mut stream, &mut conn, &mut pending)?;

        // Wait for bytes, but no longer than the next deadline.
        let now = Instant::now();
        let timeout = conn
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now));
        if timeout == Some(Duration::ZERO) {
            conn.handle_timeout(now);
            continue;
        }
        stream.set_read_timeout(timeout)?;
        match stream.read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => conn.handle_eof(Instant::now()),
            Err(e) => return Err(e),
        }
    }
}

/// Writes every pending transmit with vectored writes: headers and payloads
/// go out without being copied together.
fn write_all(
    stream: &mut TcpStream,
    conn: &mut Connection,
    pending: &mut VecDeque<Transmit>,
) -> io::Result<()> {
    pending.extend(std::iter::from_fn(|| conn.poll_transmit()));
    while !pending.is_empty() {
        let mut slices = Vec::with_capacity(pending.len() * 2);
        for transmit in pending.iter() {
            let mut pair = [IoSlice::new(&[]); 2];
            let n = transmit.chunks_vectored(&mut pair);
            slices.extend_from_slice(&pair[..n]);
        }
        let mut written = stream.write_vectored(&slices)?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let first = pending.front_mut().expect("bytes were written from it");
            let n = written.min(first.remaining());
            first.advance(n);
            written -= n;
            if !first.has_remaining() {
                pending.pop_front();
            }
        }
    }
    Ok(())
}
