//! Blocking `std::net` drivers for `sockeye_core::Connection`, one thread per
//! connection. They show the whole sans-IO contract in one loop: feed bytes
//! and time in, drain events then transmits, sleep until the next deadline.
//!
//! ```sh
//! # An echo server (the default), answering GET /healthz on the same port:
//! cargo run --release -p sockeye-core --example blocking                  # 127.0.0.1:9001
//! cargo run --release -p sockeye-core --example blocking -- serve 0.0.0.0:9002
//! # The Autobahn|Testsuite client testee, against its fuzzing server:
//! cargo run --release -p sockeye-core --example blocking -- autobahn-client ws://127.0.0.1:9001 sockeye
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use bytes::Buf;
use sockeye_core::{
    Accept, ClientRequest, Closed, Config, Connection, Event, Message, Response, Transmit,
};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["serve"] => serve("127.0.0.1:9001"),
        ["serve", addr] => serve(addr),
        ["autobahn-client", url] => autobahn_client(url, "sockeye"),
        ["autobahn-client", url, agent] => autobahn_client(url, agent),
        _ => {
            eprintln!("usage: blocking [serve [ADDR]] | autobahn-client ws://HOST:PORT [AGENT]");
            std::process::exit(2);
        }
    }
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
    let _ = conn.send(message);
}

/// Runs Autobahn's client loop: ask for the case count, run every case
/// echoing what arrives, then ask for the reports to be written.
fn autobahn_client(url: &str, agent: &str) -> io::Result<()> {
    let authority = url
        .strip_prefix("ws://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let mut count = 0usize;
    run_client(authority, "/getCaseCount", |_, message| {
        count = message.as_text().and_then(|t| t.parse().ok()).unwrap_or(0);
    })?;
    for case in 1..=count {
        let closed = run_client(
            authority,
            &format!("/runCase?case={case}&agent={agent}"),
            echo,
        )?;
        eprintln!(
            "case {case}/{count}: closed with {} (clean: {})",
            closed.code, closed.clean
        );
    }
    run_client(
        authority,
        &format!("/updateReports?agent={agent}"),
        |_, _| {},
    )?;
    Ok(())
}

fn run_client(
    authority: &str,
    resource: &str,
    on_message: impl FnMut(&mut Connection, Message),
) -> io::Result<Closed> {
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
    let port: u16 = port
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
    let stream = TcpStream::connect((host, port))?;
    // Masking keys need unpredictable seeds; a real driver takes them from the OS.
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let config = Config {
        max_message_size: 64 << 20,
        ..Config::default()
    };
    let request = ClientRequest::new(host, port, resource);
    let conn = Connection::client(request, config, seed, Instant::now())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    drive(stream, conn, on_message)
}

/// The driver loop, the same for both roles: it returns how the connection
/// ended.
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
