//! An echo server on blocking `std::net` sockets, one thread per connection,
//! driving `sockeye_core::Connection` by hand. It shows the whole sans-IO
//! contract in one place: feed bytes and time in, drain transmits and events,
//! sleep until the next deadline.
//!
//! ```sh
//! cargo run --release -p sockeye-core --example blocking_echo            # 127.0.0.1:9001
//! cargo run --release -p sockeye-core --example blocking_echo -- 0.0.0.0:9002
//! ```
//!
//! It answers `GET /healthz` with 200 and echoes every message back.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Buf;
use sockeye_core::{Accept, Config, Connection, Event, Response, Transmit};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("echo server listening on ws://{}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("connection error: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let mut conn =
        Connection::server(Config::default(), Instant::now()).expect("default config is valid");
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: VecDeque<Transmit> = VecDeque::new();
    loop {
        // Drain events first: they may queue replies.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(_) => conn.accept(Accept::default()).expect("request pending"),
                Event::HttpRequest(request) => {
                    let response = match request.path.as_str() {
                        "/healthz" => Response::new(200, "ok"),
                        _ => Response::new(404, "not found"),
                    };
                    conn.respond(response).expect("request pending");
                }
                Event::Message(message) => {
                    // The peer may have closed meanwhile; then there is no one to echo to.
                    let _ = conn.send(message);
                }
                Event::Closed(closed) => {
                    write_all(&mut stream, &mut conn, &mut pending)?;
                    eprintln!(
                        "{peer}: closed with {} (clean: {})",
                        closed.code, closed.clean
                    );
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(());
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
