//! Heap use of the core, measured with a counting allocator.
//!
//! Counters are per thread, so the tests in this file can run in parallel
//! without seeing each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use sockeye_core::testing::{Endpoint, Frame, write_all};
use sockeye_core::{Config, Connection, Event, Message};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the only
// addition is bookkeeping in const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.with(|l| l.set(l.get() + layout.size() as isize));
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.with(|l| l.set(l.get() - layout.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.with(|l| l.set(l.get() + new_size as isize - layout.size() as isize));
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Takes every event and writes everything offered, without allocating:
/// what is measured here is the connection's own heap use.
fn drain(conn: &mut Connection, now: Instant) {
    while conn.poll_event().is_some() {}
    write_all(conn, now);
}

/// A boxed, open server connection, as a driver would hold it.
fn open_server(now: Instant) -> Box<Connection> {
    Box::new(Endpoint::open_server(Config::default(), now).conn)
}

const KIB: isize = 1024;

#[test]
fn an_open_idle_connection_holds_at_most_1_kib() {
    let now = Instant::now();
    let before = live();
    let server = open_server(now);
    let held = live() - before;
    drop(server);
    let leaked = live() - before;
    println!("open idle server connection: {held} bytes of heap (struct included)");
    assert!(held <= KIB, "{held} bytes");
    assert_eq!(leaked, 0, "everything is freed on drop");
}

#[test]
fn a_connection_gives_its_buffers_back_when_the_peer_falls_silent() {
    let now = Instant::now();
    let before = live();
    let mut server = open_server(now);
    for i in 0..100u32 {
        server.handle_input(
            now,
            &Frame::binary(i.to_be_bytes().repeat(100))
                .from_client()
                .encode(),
        );
        drain(&mut server, now);
    }
    let busy = live() - before;
    // The heartbeat fires after 30 s of silence; buffers go with the ping.
    server.handle_timeout(now + Duration::from_secs(30));
    drain(&mut server, now);
    let idle = live() - before;
    println!("after traffic: {busy} bytes; after going idle: {idle} bytes");
    assert!(idle <= KIB, "{idle} bytes");
}

#[test]
fn steady_small_messages_do_not_allocate_per_frame() {
    let now = Instant::now();
    let mut server = open_server(now);
    let frame = Frame::text("a small chat message of 32 bytes")
        .from_client()
        .encode();
    let echo = Message::text("a small chat message of 32 bytes");
    // Warm up: the first frames allocate the shared read buffer and queues.
    for _ in 0..10 {
        server.handle_input(now, &frame);
        drain(&mut server, now);
    }
    let start = allocations();
    const FRAMES: usize = 10_000;
    for _ in 0..FRAMES {
        server.handle_input(now, &frame);
        while let Some(event) = server.poll_event() {
            assert!(matches!(event, Event::Message(_)));
        }
        server.send(now, echo.clone()).unwrap();
        write_all(&mut server, now);
    }
    let count = allocations() - start;
    println!("{count} allocations for {FRAMES} frames received and echoed");
    assert!(count * 100 < FRAMES, "{count} allocations");
}

#[test]
fn echoed_small_messages_share_their_allocations() {
    let now = Instant::now();
    let mut server = open_server(now);
    // Eight frames per read, each message still alive when the next one is
    // decoded, as in a driver that echoes a read's messages and writes the
    // replies together.
    const BURST: usize = 8;
    let burst = Frame::binary([7; 16]).from_client().encode().repeat(BURST);
    let mut echo_bursts = |bursts: usize| {
        for _ in 0..bursts {
            server.handle_input(now, &burst);
            while let Some(Event::Message(message)) = server.poll_event() {
                server.send(now, message).unwrap();
            }
            write_all(&mut server, now);
        }
    };
    echo_bursts(10);
    let start = allocations();
    const BURSTS: usize = 1_000;
    echo_bursts(BURSTS);
    let count = allocations() - start;
    println!("{count} allocations for {BURSTS} bursts of {BURST} messages echoed");
    // A few per burst (the rest of the read set aside, the replies written
    // together), not two per message as when each message had a buffer (and
    // a reference count) of its own: messages share 1 KiB buffers.
    assert!(count <= 3 * BURSTS, "{count} allocations");
}

#[test]
fn receiving_a_ping_costs_at_most_two_small_allocations() {
    let now = Instant::now();
    let mut server = open_server(now);
    let ping = Frame::ping(*b"beat").from_client().encode();
    server.handle_input(now, &ping);
    drain(&mut server, now);
    let start = allocations();
    for _ in 0..100 {
        server.handle_input(now, &ping);
        drain(&mut server, now);
    }
    let count = allocations() - start;
    // One copy of the payload out of the read buffer, and the reference count
    // shared between the event and the queued pong.
    assert!(count <= 200, "{count} allocations for 100 pings");
}

#[test]
fn messages_pipelined_in_one_read_are_copied_aside_once() {
    let now = Instant::now();
    let mut server = open_server(now);
    const FRAMES: usize = 4_000;
    let pipelined = Frame::binary([7; 16]).from_client().encode().repeat(FRAMES);
    // Warm up the shared read buffer and the event queue.
    server.handle_input(now, &pipelined);
    drain(&mut server, now);
    let start = allocations();
    server.handle_input(now, &pipelined);
    let mut messages = 0;
    while let Some(event) = server.poll_event() {
        assert!(matches!(event, Event::Message(_)));
        messages += 1;
    }
    let count = allocations() - start;
    println!("{count} allocations for {FRAMES} messages in one read");
    assert_eq!(messages, FRAMES);
    // Decoding pauses after each message, so the rest of the read waits
    // aside: copied there once, not once per message (which was quadratic).
    assert!(count * 100 < FRAMES, "{count} allocations");
}

// ---- the hub -------------------------------------------------------------

mod hub {
    use super::{KIB, allocations, live};
    use sockeye_core::hub::{
        ConnectionId, CustomEvent, Event, Hub, HubConfig, Identity, Publication, Reply, Resume,
        Streams, Target, Topic, carry,
    };
    use std::time::Instant;

    /// Carries the seam at once; what the hub queues stays queued.
    fn pump(hub: &mut Hub, streams: &mut Streams, now: Instant) {
        carry(hub, streams, now, 0, |_, _| {});
    }

    fn subscribed(n: usize) -> (Hub, Streams, Vec<ConnectionId>, Instant) {
        let config = HubConfig {
            max_connections_per_user: n,
            ..HubConfig::default()
        };
        let mut hub = Hub::new(config.clone()).unwrap();
        let mut streams = Streams::new(config, 3).unwrap();
        let now = Instant::now();
        let identity = Identity::new("u").unwrap().with_topics(["t"]).unwrap();
        let ids: Vec<_> = (0..n)
            .map(|_| hub.connect(identity.clone(), Resume::default()).unwrap())
            .collect();
        for &id in &ids {
            hub.handle_message(id, r#"{"type":"subscribe","topic":"t"}"#)
                .unwrap();
        }
        pump(&mut hub, &mut streams, now);
        for &id in &ids {
            while hub.poll_message(id).is_some() {}
        }
        (hub, streams, ids, now)
    }

    fn publish(streams: &mut Streams, now: Instant) -> sockeye_core::hub::Entry {
        let event = Event::Custom(CustomEvent {
            name: "tick".into(),
            data: serde_json::json!({"n": 1}),
        });
        let target = Target::Topic(Topic::new("t").unwrap());
        streams
            .publish(
                now,
                Publication {
                    target,
                    event,
                    priority: None,
                    timestamp_ms: 0,
                },
            )
            .unwrap();
        match streams.poll_reply() {
            Some(Reply::Deliver(entry)) => entry,
            other => panic!("{other:?}"),
        }
    }

    /// Once its queues have room, fanning an event out allocates nothing:
    /// every queue takes the same bytes.
    #[test]
    fn a_delivery_allocates_nothing() {
        let (mut hub, mut streams, ids, now) = subscribed(100);
        let deliver = |hub: &mut Hub, streams: &mut Streams| {
            let entry = publish(streams, now);
            let before = allocations();
            assert_eq!(hub.deliver(&entry), ids.len());
            let made = allocations() - before;
            while hub.poll_output().is_some() {}
            for &id in &ids {
                while hub.poll_message(id).is_some() {}
            }
            made
        };
        // The first rounds give the queues their room.
        for _ in 0..4 {
            deliver(&mut hub, &mut streams);
        }
        let made: usize = (0..16).map(|_| deliver(&mut hub, &mut streams)).sum();
        println!("16 publishes to 100 subscribers: {made} allocations in delivery");
        assert_eq!(made, 0);
    }

    /// The heap an idle hub connection holds, subscribed to one topic:
    /// what the hub keeps for it, and its user's stream in `Streams`.
    #[test]
    fn an_idle_hub_connection_holds_at_most_1_kib() {
        const N: usize = 1000;
        let before = live();
        let (hub, streams, _, _) = subscribed(N);
        let per_connection = (live() - before) / N as isize;
        println!(
            "an idle hub connection with one topic: {per_connection} bytes of heap (hub and streams)"
        );
        assert!(per_connection <= KIB, "{per_connection} bytes");
        drop((hub, streams));
    }
}
