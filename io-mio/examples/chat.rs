//! A chat room inside an event loop the application owns: every text message
//! goes to everyone else in the room, and the room announces its size on a
//! timer of the application's own, next to the driver's deadlines.
//!
//! ```sh
//! cargo run -p sockeye-mio --example chat -- 127.0.0.1:9003
//! ```
//!
//! The pattern: the driver gets a token range and shares the `Poll`; the
//! loop sleeps until the earlier of the driver's deadline and its own; each
//! event goes to whoever owns its token; then the driver's events are
//! drained. Slow readers are skipped, not buffered without bound.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use sockeye_mio::{Config, ConnectionId, Driver, Event, Handshake, Message};

/// The application's own token; the driver's range starts after it.
const ADMIN: Token = Token(0);
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

/// A member of the room, and whether its queue is over the high-water mark.
struct Member {
    name: String,
    slow: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:9003".into());
    let mut poll = Poll::new()?;
    let mut driver = Driver::new(poll.registry(), 1..10_001, Config::default())?;
    driver.listen(TcpListener::bind(addr.parse()?)?)?;
    // An application source in the same poll: a second port where any
    // connection just gets the head count (a stand-in for the game
    // protocol, the market feed, …).
    let mut admin = TcpListener::bind("127.0.0.1:0".parse()?)?;
    poll.registry()
        .register(&mut admin, ADMIN, Interest::READABLE)?;
    println!("chat on ws://{addr}, head count on {}", admin.local_addr()?);

    let mut room: HashMap<ConnectionId, Member> = HashMap::new();
    let mut next_announce = Instant::now() + ANNOUNCE_EVERY;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let ours = next_announce.saturating_duration_since(now);
        let timeout = driver
            .next_timeout(now)
            .map_or(ours, |theirs| theirs.min(ours));
        poll.poll(&mut events, Some(timeout))?;

        let now = Instant::now();
        for event in events.iter() {
            if !driver.handle_event(event, now) && event.token() == ADMIN {
                while let Ok((mut stream, _)) = admin.accept() {
                    let line = format!("{} in the room\n", room.len());
                    let _ = std::io::Write::write(&mut stream, line.as_bytes());
                }
            }
        }
        driver.handle_timeouts(now);
        if now >= next_announce {
            next_announce = now + ANNOUNCE_EVERY;
            let text = format!("{} online", room.len());
            broadcast(&mut driver, &mut room, None, now, text);
        }

        while let Some((id, event)) = driver.poll_event(now) {
            match event {
                Event::Request(request) => {
                    let name = request
                        .query
                        .clone()
                        .unwrap_or_else(|| format!("guest{}", room.len()));
                    if driver.accept(id, now, Handshake::default()).is_ok() {
                        room.insert(id, Member { name, slow: false });
                    }
                }
                Event::Open(_) => {
                    let text = format!("{} joined", room[&id].name);
                    broadcast(&mut driver, &mut room, Some(id), now, text);
                }
                Event::Message(message) => {
                    let Some(text) = message.as_text() else {
                        continue;
                    };
                    let text = format!("{}: {text}", room[&id].name);
                    broadcast(&mut driver, &mut room, Some(id), now, text);
                }
                Event::Drained => {
                    if let Some(member) = room.get_mut(&id) {
                        member.slow = false;
                    }
                }
                Event::Closed(_) => {
                    if let Some(member) = room.remove(&id) {
                        let text = format!("{} left", member.name);
                        broadcast(&mut driver, &mut room, None, now, text);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Sends `text` to every member but `from`. One `Message` serves them all:
/// its payload is shared, not copied.
fn broadcast(
    driver: &mut Driver,
    room: &mut HashMap<ConnectionId, Member>,
    from: Option<ConnectionId>,
    now: Instant,
    text: String,
) {
    let message = Message::text(text);
    for (&id, member) in room.iter_mut() {
        if Some(id) == from || member.slow {
            continue;
        }
        // `false`: over the high-water mark; skip this member until it
        // drains. An error: it is closing, and its Closed event will come.
        if let Ok(below) = driver.send(id, now, message.clone()) {
            member.slow = !below;
        }
    }
}
