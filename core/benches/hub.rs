//! The hub's costs: one publish fanned out to 1, 100 and 10 000
//! subscribers (per delivery: the event queued for a connection and taken
//! out again, as a driver would), and the resume of 10 000 missed events.
//! The allocations per delivery and the heap of an idle hub connection are
//! counted in `core/tests/memory.rs`.
//!
//! ```text
//! cargo bench -p sockeye-core --features hub --bench hub
//! ```

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use sockeye_core::hub::{
    ConnectionId, CustomEvent, Event, Hub, HubConfig, Identity, Publication, Resume, Streams,
    Target, Topic, carry,
};

fn config() -> HubConfig {
    let mut config = HubConfig {
        max_connections_per_user: 20_000,
        queue_budget: 16 << 20,
        ..HubConfig::default()
    };
    config.defaults.history_size = 10_000;
    config.defaults.history_bytes = 16 << 20;
    config
}

struct Bench {
    hub: Hub,
    streams: Streams,
    now: Instant,
}

impl Bench {
    fn new() -> Self {
        Self {
            hub: Hub::new(config()).unwrap(),
            streams: Streams::new(config(), 9).unwrap(),
            now: Instant::now(),
        }
    }

    fn pump(&mut self) {
        carry(&mut self.hub, &mut self.streams, self.now, 0, |_, _| {});
    }

    fn subscriber(&mut self, resume: &str) -> ConnectionId {
        let identity = Identity::new("u").unwrap().with_topics(["t"]).unwrap();
        let id = self.hub.connect(identity, Resume::default()).unwrap();
        let request = format!(r#"{{"type":"subscribe","topic":"t"{resume}}}"#);
        self.hub.handle_message(id, &request).unwrap();
        self.pump();
        id
    }

    fn publish(&mut self) {
        let entry = self.entry();
        self.hub.deliver(&entry);
        self.pump();
    }

    /// A published entry, not delivered yet.
    fn entry(&mut self) -> sockeye_core::hub::Entry {
        let event = Event::Custom(CustomEvent {
            name: "tick".into(),
            data: serde_json::json!({"price": 101.25, "symbol": "ACME"}),
        });
        let target = Target::Topic(Topic::new("t").unwrap());
        let publication = Publication {
            target,
            event,
            priority: None,
            timestamp_ms: 1_764_850_000_000,
        };
        self.streams.publish(self.now, publication).unwrap();
        match self.streams.poll_reply() {
            Some(sockeye_core::hub::Reply::Deliver(entry)) => entry,
            other => panic!("{other:?}"),
        }
    }

    /// Takes every queued message of `ids`; how many there were.
    fn drain(&mut self, ids: &[ConnectionId]) -> usize {
        let mut taken = 0;
        for &id in ids {
            while let Some(message) = self.hub.poll_message(id) {
                black_box(message);
                taken += 1;
            }
        }
        taken
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for n in [1, 100, 10_000] {
        let mut bench = Bench::new();
        let ids: Vec<_> = (0..n).map(|_| bench.subscriber("")).collect();
        bench.drain(&ids);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("publish_and_take", n), |b| {
            b.iter(|| {
                bench.publish();
                assert_eq!(bench.drain(&ids), n);
            })
        });
        // The hub's part alone: the entry offered to every subscriber's
        // queue, without serializing it or taking it out again.
        group.bench_function(BenchmarkId::new("deliver", n), |b| {
            b.iter_custom(|iterations| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    let entry = bench.entry();
                    let start = Instant::now();
                    assert_eq!(bench.hub.deliver(black_box(&entry)), n);
                    spent += start.elapsed();
                    while bench.hub.poll_output().is_some() {}
                    bench.drain(&ids);
                }
                spent
            })
        });
    }
    group.finish();
}

fn resume(c: &mut Criterion) {
    const MISSED: usize = 10_000;
    let mut group = c.benchmark_group("resume");
    let mut bench = Bench::new();
    let first = bench.subscriber("");
    let welcome = bench.hub.poll_message(first).unwrap();
    let welcome: serde_json::Value = serde_json::from_slice(&welcome).unwrap();
    bench.drain(&[first]);
    bench.hub.disconnect(first).unwrap();
    bench.pump();
    for _ in 0..MISSED {
        bench.publish();
    }
    // The topic's epoch, from a subscription that started at offset 0.
    let probe = bench.subscriber("");
    let mut epoch = String::new();
    while let Some(message) = bench.hub.poll_message(probe) {
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        if value["type"] == "subscribed" {
            epoch = value["epoch"].as_str().unwrap().to_owned();
        }
    }
    drop(welcome);
    let resume = format!(r#","resume":{{"epoch":"{epoch}","offset":0}}"#);
    group.throughput(Throughput::Elements(MISSED as u64));
    group.bench_function(BenchmarkId::from_parameter(MISSED), |b| {
        b.iter(|| {
            let id = bench.subscriber(&resume);
            // The welcome, `subscribed` and every missed event.
            assert_eq!(bench.drain(&[id]), MISSED + 2);
            bench.hub.disconnect(id).unwrap();
            bench.pump();
        })
    });
    group.finish();
}

criterion::criterion_group!(benches, fan_out, resume);
criterion::criterion_main!(benches);
