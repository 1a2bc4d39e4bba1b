//! A client core and a server core wired together (the shared harness's
//! [`Pair`]): what one sends, the other receives, unchanged and in order,
//! under any fragmentation and any read size; or the receiver fails with
//! exactly the size error the sizes predict.

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use sockeye_core::testing::{Endpoint, Pair, Side};
use sockeye_core::{Error, Event, Message, ProtocolError, State};

use super::check::{Answer, Checker, ProtocolChoice, client_request};
use super::connection::CodeChoice;
use super::small_config;

/// At most this many items per input.
const MAX_ITEMS: usize = 48;
/// The receiver's frame limit. Smaller than the other targets' so that
/// crossing it takes little data: every byte may be its own input here.
const MAX_FRAME: usize = 512;
/// The receiver's message limit.
const MAX_MESSAGE: usize = 1024;

/// Both ends' configuration; the sender's fragment size is set apart.
fn config() -> sockeye_core::Config {
    sockeye_core::Config {
        max_frame_size: MAX_FRAME,
        max_message_size: MAX_MESSAGE,
        ..small_config()
    }
}

/// Input of [`round_trip`].
#[derive(Arbitrary, Debug)]
struct Exchange {
    /// The client sends and the server receives, or the other way round.
    client_sends: bool,
    /// The sender's `Config::fragment_size`.
    fragment_size: Option<u16>,
    /// How much one read takes: `1 + chunk_seed % chunk_max` bytes, or
    /// everything that has arrived if either is 0.
    chunk_seed: u8,
    chunk_max: u8,
    items: Vec<Item>,
    /// The sender closes at the end with this code and reason.
    close: Option<(CodeChoice, String)>,
}

/// What the sender does next.
#[derive(Arbitrary, Debug)]
enum Item {
    Text(String),
    Binary(Vec<u8>),
    /// A large message from a small input, possibly over the limits.
    Fill {
        text: bool,
        len: u16,
    },
    Ping(Vec<u8>),
    /// Move the bytes across now rather than later.
    Pump,
}

/// The round-trip target. Input: an [`Exchange`] (via `arbitrary`).
pub fn round_trip(data: &[u8]) {
    run(data);
}

/// Both ends, and what each is expected to do.
struct Ends {
    pair: Pair,
    client: Checker,
    server: Checker,
}

impl Ends {
    /// One end's checker and endpoint.
    fn end(&mut self, side: Side) -> (&mut Checker, &mut Endpoint) {
        match side {
            Side::Client => (&mut self.client, &mut self.pair.client),
            Side::Server => (&mut self.server, &mut self.pair.server),
        }
    }

    /// Moves bytes both ways until neither end has anything more to say,
    /// and shows each checker what its end said.
    fn drive(&mut self) {
        let (client, server) = self.pair.drive();
        self.client.observe(&self.pair.client, &client);
        self.client.check_quiescent(&self.pair.client);
        self.server.observe(&self.pair.server, &server);
        self.server.check_quiescent(&self.pair.server);
    }
}

/// Runs one exchange and returns the milestones both ends reached.
pub(crate) fn run(data: &[u8]) -> BTreeSet<String> {
    let Ok(exchange) = Exchange::arbitrary_take_rest(Unstructured::new(data)) else {
        return BTreeSet::new();
    };
    let sender_config = sockeye_core::Config {
        fragment_size: exchange.fragment_size.map(|n| usize::from(n).clamp(1, 800)),
        ..config()
    };
    let (client_config, server_config) = if exchange.client_sends {
        (sender_config.clone(), config())
    } else {
        (config(), sender_config.clone())
    };
    let mut pair = Pair::with_request(client_request(), client_config, server_config);
    let (seed, max) = (exchange.chunk_seed, exchange.chunk_max);
    pair.read_size = (seed != 0 && max != 0).then(|| 1 + usize::from(seed % max));
    let mut ends = Ends {
        client: Checker::new(&pair.client),
        server: Checker::new(&pair.server),
        pair,
    };
    ends.drive();
    let accept = Answer::Accept {
        protocol: ProtocolChoice::FirstOffered,
        header: None,
    };
    let now = ends.pair.now;
    ends.server.answer(&mut ends.pair.server.conn, now, &accept);
    ends.drive();
    assert_eq!(ends.pair.client.conn.state(), State::Open);
    assert_eq!(ends.pair.server.conn.state(), State::Open);
    let (tx, rx) = if exchange.client_sends {
        (Side::Client, Side::Server)
    } else {
        (Side::Server, Side::Client)
    };

    let mut sent = Vec::new();
    let mut pings = Vec::new();
    for item in exchange.items.iter().take(MAX_ITEMS) {
        let (checker, endpoint) = ends.end(tx);
        let message = match item {
            Item::Text(text) => Message::text(text.as_str()),
            Item::Binary(bytes) => Message::binary(bytes.clone()),
            Item::Fill { text: true, len } => Message::text("€".repeat(usize::from(*len) % 500)),
            Item::Fill { text: false, len } => Message::binary(vec![7; usize::from(*len) % 1500]),
            Item::Ping(payload) => {
                let payload = Bytes::copy_from_slice(&payload[..payload.len().min(125)]);
                if checker.ping(&mut endpoint.conn, now, payload.clone()) {
                    pings.push(payload);
                }
                continue;
            }
            Item::Pump => {
                ends.drive();
                continue;
            }
        };
        // Once the receiver has failed, the sender is closing: sends are
        // refused (the checker checks the error), and are not expected.
        if checker.send(&mut endpoint.conn, now, message.clone()) {
            sent.push(message);
        }
    }
    ends.drive();

    let received: Vec<&Message> = ends
        .end(rx)
        .0
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    match first_violation(&sent, sender_config.fragment_size) {
        Some((index, error)) => {
            assert_eq!(received, sent[..index].iter().collect::<Vec<_>>());
            let closed = ends.end(rx).0.closed().expect("the receiver failed");
            assert_eq!(closed.error, Some(Error::Protocol(error)));
        }
        None => {
            assert_eq!(
                received,
                sent.iter().collect::<Vec<_>>(),
                "messages changed"
            );
            let got_pings: Vec<&Bytes> = ends
                .end(rx)
                .0
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Ping(p) => Some(p),
                    _ => None,
                })
                .collect();
            assert_eq!(got_pings, pings.iter().collect::<Vec<_>>(), "pings changed");
            let pongs: Vec<&Bytes> = ends
                .end(tx)
                .0
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Pong(p) => Some(p),
                    _ => None,
                })
                .collect();
            // Pongs may be dropped under a flood, but never the latest.
            assert_eq!(
                pongs.last(),
                pings.last().as_ref(),
                "the last ping went unanswered"
            );
            if let Some((code, reason)) = &exchange.close {
                close_cleanly(&mut ends, tx, code.code(), reason);
            }
        }
    }
    let mut features = ends.client.features;
    features.extend(ends.server.features);
    features
}

/// The sender closes; both ends must finish a clean close handshake with
/// the sender's code, and close their transports without a reset.
fn close_cleanly(ends: &mut Ends, tx: Side, code: sockeye_core::CloseCode, reason: &str) {
    let code = if code.is_valid_on_wire() {
        code
    } else {
        sockeye_core::CloseCode::NORMAL
    };
    let mut end = reason.len().min(sockeye_core::MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let now = ends.pair.now;
    let (checker, endpoint) = ends.end(tx);
    checker.close(&mut endpoint.conn, now, code, reason);
    // The pair carries the transports' ends as TCP does: the server's
    // half-close reaches the client as an end of stream.
    ends.drive();
    let (rx_checker, rx_endpoint) = ends.end(tx.other());
    assert!(rx_endpoint.grammar().is_transport_closed());
    let frame = rx_checker.events.iter().find_map(|e| match e {
        Event::CloseReceived(frame) => Some(frame),
        _ => None,
    });
    let frame = frame.expect("the receiver got the close");
    assert_eq!((frame.code, frame.reason.as_str()), (code, reason));
    let rx_closed = rx_checker.closed().expect("closed").clone();
    let (tx_checker, tx_endpoint) = ends.end(tx);
    assert!(tx_endpoint.grammar().is_transport_closed());
    let tx_closed = tx_checker.closed().expect("closed");
    assert!(
        tx_closed.clean && rx_closed.clean,
        "{tx_closed:?} {rx_closed:?}"
    );
    assert_eq!((rx_closed.code, rx_closed.reason.as_str()), (code, reason));
    // The reply echoes the code (RFC 6455 §5.5.1), without a reason.
    assert_eq!(tx_closed.code, code);
    assert_eq!(ends.pair.resets(), 0, "a reset under the close handshake");
}

/// The first sent message whose frames break the receiver's limits, and
/// the error it must fail with: frames are checked in order, the frame
/// size first, then the message size so far.
fn first_violation(sent: &[Message], fragment: Option<usize>) -> Option<(usize, ProtocolError)> {
    for (index, message) in sent.iter().enumerate() {
        let len = message.len();
        let size = fragment.unwrap_or(len).max(1);
        let mut total = 0;
        let mut frames: Vec<usize> = (0..len)
            .step_by(size)
            .map(|s| (len - s).min(size))
            .collect();
        if frames.is_empty() {
            frames.push(0);
        }
        for frame in frames {
            if frame > MAX_FRAME {
                let size = frame as u64;
                return Some((
                    index,
                    ProtocolError::FrameTooLarge {
                        size,
                        max: MAX_FRAME,
                    },
                ));
            }
            total += frame;
            if total > MAX_MESSAGE {
                let size = total as u64;
                return Some((
                    index,
                    ProtocolError::MessageTooLarge {
                        size,
                        max: MAX_MESSAGE,
                    },
                ));
            }
        }
    }
    None
}
