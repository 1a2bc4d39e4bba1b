//! A mio echo server: every text and binary message goes back unchanged,
//! with the same opcode. The Autobahn testee (`tests/autobahn/run.sh mio`)
//! and a wsbench contestant.
//!
//! ```sh
//! cargo run --release -p sockeye-mio --example echo_server -- --bind 127.0.0.1:9002
//! cargo run --release -p sockeye-mio --example echo_server -- --port 9002 --recv-buffer 4194304
//! ```
//!
//! One thread, one `Poll`. A plain HTTP request gets `426 Upgrade Required`.
//! `--read-budget BYTES` sets how much one connection reads per turn
//! ([`Driver::with_read_budget`]). `--recv-buffer BYTES` sets `SO_RCVBUF`
//! on the listener, which accepted connections inherit: see "Receive
//! buffers" on [`Driver`].

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Poll};
use sockeye_mio::{Config, Driver, Event, Handshake, Response};

const USAGE: &str = "usage: echo_server [--bind ADDR | --port PORT] [--read-budget BYTES] [--recv-buffer BYTES]  (default 127.0.0.1:9002)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options(std::env::args().skip(1))?;
    let mut poll = Poll::new()?;
    let mut driver = Driver::new(poll.registry(), 0..1 << 20, Config::default())?;
    if let Some(bytes) = options.read_budget {
        driver = driver.with_read_budget(bytes);
    }
    let listener = TcpListener::bind(options.bind)?;
    if let Some(bytes) = options.recv_buffer {
        socket2::SockRef::from(&listener).set_recv_buffer_size(bytes)?;
    }
    eprintln!("echo_server: listening on ws://{}", listener.local_addr()?);
    driver.listen(listener)?;

    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, driver.next_timeout(Instant::now()))?;
        let now = Instant::now();
        for event in events.iter() {
            driver.handle_event(event, now);
        }
        driver.handle_timeouts(now);
        while let Some((id, event)) = driver.poll_event(now) {
            // A connection that closed meanwhile refuses the call; its
            // Closed event is on its way, so the errors are not ours to act on.
            let _ = match event {
                Event::Request(_) => driver.accept(id, now, Handshake::default()),
                Event::HttpRequest(_) => driver.respond(id, now, Response::upgrade_required()),
                // Over the high-water mark the driver stops reading from
                // this peer until it drains: that is the backpressure.
                Event::Message(message) => driver.send(id, now, message).map(drop),
                _ => Ok(()),
            };
        }
    }
}

struct Options {
    bind: SocketAddr,
    read_budget: Option<usize>,
    recv_buffer: Option<usize>,
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        bind: "127.0.0.1:9002".parse().expect("a valid default"),
        read_budget: None,
        recv_buffer: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--bind" => {
                options.bind = value.parse().map_err(|e| format!("--bind {value}: {e}"))?;
            }
            "--port" => {
                let port = value.parse().map_err(|e| format!("--port {value}: {e}"))?;
                options.bind.set_port(port);
            }
            "--read-budget" => {
                let bytes = value
                    .parse()
                    .map_err(|e| format!("--read-budget {value}: {e}"))?;
                options.read_budget = Some(bytes);
            }
            "--recv-buffer" => {
                let bytes = value
                    .parse()
                    .map_err(|e| format!("--recv-buffer {value}: {e}"))?;
                options.recv_buffer = Some(bytes);
            }
            _ => return Err(USAGE.into()),
        }
    }
    Ok(options)
}
