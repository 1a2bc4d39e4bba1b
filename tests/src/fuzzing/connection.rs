//! Whole connections, in both roles, driven by a structured scenario:
//! interleaved byte chunks (frames built valid or flawed, handshakes, raw
//! bytes), timeouts, EOF, and every application call.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use sockeye_core::{CloseCode, Error, Event, Message, ResponseError, Role};

use super::check::{Answer, Checked};
use super::peer::{FrameSpec, RequestSpec, ResponseBreakage, ResponseSpec, encode_frame};
use super::small_config;

/// Scenarios stop after this many operations, so every input runs fast.
const MAX_OPS: usize = 256;

/// A scenario: connection settings and what happens, in order.
#[derive(Arbitrary, Debug)]
struct Scenario {
    settings: Settings,
    ops: Vec<Op>,
}

/// The connection's configuration, within the small fuzz limits.
#[derive(Arbitrary, Debug)]
struct Settings {
    fragment_size: Option<u16>,
    heartbeat: bool,
    idle_timeout: bool,
    missed_pongs: u8,
    /// The client's randomness seed.
    seed: u64,
    /// Server: answer a request as soon as it is polled.
    auto_answer: Option<Answer>,
}

/// One step of a scenario.
#[derive(Arbitrary, Debug)]
enum Op {
    /// The peer's handshake message (a request to a server, a response to
    /// a client), optionally split in two inputs.
    Handshake {
        request: RequestSpec,
        response: ResponseSpec,
        split: Option<u16>,
    },
    /// Frames in one input, or split in two.
    Frames {
        frames: Vec<FrameSpec>,
        split: Option<u16>,
    },
    /// Any bytes.
    Raw(Vec<u8>),
    /// Time passes (in 10 ms steps) and the timer fires.
    Advance(u16),
    /// The clock jumps to the connection's deadline and the timer fires.
    Deadline,
    Eof,
    Send(SendSpec),
    Ping(Vec<u8>),
    Close {
        code: CodeChoice,
        reason: String,
    },
    Answer(Answer),
}

/// A message to send.
#[derive(Arbitrary, Debug)]
enum SendSpec {
    Text(String),
    Binary(Vec<u8>),
    /// A large message from a small input.
    Fill {
        text: bool,
        len: u16,
    },
}

impl SendSpec {
    fn message(&self) -> Message {
        match self {
            Self::Text(text) => Message::text(text.as_str()),
            Self::Binary(bytes) => Message::binary(bytes.clone()),
            Self::Fill { text: true, len } => Message::text("é".repeat(usize::from(*len) % 3000)),
            Self::Fill { text: false, len } => {
                Message::binary(vec![0xA5; usize::from(*len) % 6000])
            }
        }
    }
}

/// A close code for [`Connection::close`](sockeye_core::Connection::close):
/// weighted towards codes that may be sent, which a uniform `CloseCode`
/// seldom is.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum CodeChoice {
    Normal,
    GoingAway,
    Application(u16),
    /// Any number; most may not be sent.
    Any(CloseCode),
}

impl CodeChoice {
    pub(crate) fn code(self) -> CloseCode {
        match self {
            Self::Normal => CloseCode::NORMAL,
            Self::GoingAway => CloseCode::GOING_AWAY,
            Self::Application(n) => CloseCode::new(3000 + n % 2000),
            Self::Any(code) => code,
        }
    }
}

/// A whole server connection. Input: a [`Scenario`] (via `arbitrary`).
pub fn connection_server(data: &[u8]) {
    run(Role::Server, data);
}

/// A whole client connection. Input: a [`Scenario`] (via `arbitrary`).
pub fn connection_client(data: &[u8]) {
    run(Role::Client, data);
}

/// Runs a scenario and returns the milestones it reached.
pub(crate) fn run(role: Role, data: &[u8]) -> BTreeSet<String> {
    let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) else {
        return BTreeSet::new();
    };
    let s = &scenario.settings;
    let config = sockeye_core::Config {
        fragment_size: s.fragment_size.map(|n| usize::from(n).clamp(1, 3000)),
        ping_interval: s.heartbeat.then(|| Duration::from_secs(30)),
        idle_timeout: s.idle_timeout.then(|| Duration::from_secs(60)),
        max_missed_pongs: u32::from(s.missed_pongs % 3) + 1,
        ..small_config()
    };
    let now = Instant::now();
    let mut conn = match role {
        Role::Server => Checked::server(config, now),
        Role::Client => Checked::client(config, s.seed, now),
    };
    conn.auto_answer = s.auto_answer.clone();
    // Bytes the peer has sent so far: a handshake is checked against its
    // expected verdict only when it is the first thing sent.
    let mut fed = 0;
    let peer = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    for op in scenario.ops.iter().take(MAX_OPS) {
        match op {
            Op::Handshake {
                request,
                response,
                split,
            } => {
                let bytes = match role {
                    Role::Server => request.encode(),
                    Role::Client => response.encode(&conn.request_key()),
                };
                let events_before = conn.events().len();
                let first = fed == 0 && conn.state() == sockeye_core::State::Handshaking;
                feed(&mut conn, &bytes, *split);
                if first {
                    let events = &conn.events()[events_before..];
                    match role {
                        Role::Server => check_request_verdict(request, events),
                        Role::Client => check_response_verdict(response, &conn, events),
                    }
                }
                fed += bytes.len();
            }
            Op::Frames { frames, split } => {
                let bytes: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f, peer)).collect();
                feed(&mut conn, &bytes, *split);
                fed += bytes.len();
            }
            Op::Raw(bytes) => {
                conn.input(bytes);
                fed += bytes.len();
            }
            Op::Advance(steps) => conn.advance(Duration::from_millis(u64::from(*steps) * 10)),
            Op::Deadline => conn.fire_deadline(),
            Op::Eof => conn.eof(),
            Op::Send(spec) => conn.send(spec.message()),
            Op::Ping(payload) => conn.ping(Bytes::copy_from_slice(payload)),
            Op::Close { code, reason } => conn.close(code.code(), reason),
            Op::Answer(answer) => conn.answer(answer),
        }
    }
    conn.checker.features
}

/// Feeds `bytes` as one read, or at `split` (modulo the length) as an input
/// and a read: both ways a driver hands bytes over.
fn feed(conn: &mut Checked, bytes: &[u8], split: Option<u16>) {
    match split {
        Some(at) if !bytes.is_empty() => {
            let (a, b) = bytes.split_at(usize::from(at) % bytes.len());
            conn.input(a);
            conn.read(b);
        }
        _ => conn.read(bytes),
    }
}

/// The first thing a server reports about a request it was sent first.
fn check_request_verdict(request: &RequestSpec, events: &[Event]) {
    let verdict = events
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::Request(_) | Event::HttpRequest(_) | Event::Closed(_)
            )
        })
        .expect("a complete request head gets a verdict");
    match (request.breakage.and_then(|b| b.error()), verdict) {
        (None, Event::Request(_)) if request.breakage.is_none() => {}
        (None, Event::HttpRequest(_)) if request.breakage.is_some() => {}
        (Some(expected), Event::Closed(closed)) => {
            assert_eq!(closed.error, Some(Error::Request(expected)));
        }
        (expected, got) => panic!("{request:?}: expected {expected:?}, got {got:?}"),
    }
}

/// The first thing a client reports about a response it was sent first.
fn check_response_verdict(response: &ResponseSpec, conn: &Checked, events: &[Event]) {
    let verdict = events
        .iter()
        .find(|e| matches!(e, Event::Open(_) | Event::Closed(_)));
    let error = match verdict {
        Some(Event::Closed(closed)) => match &closed.error {
            Some(Error::Response(e)) => Some(e.clone()),
            other => panic!("{response:?}: closed with {other:?}"),
        },
        _ => None,
    };
    match response {
        ResponseSpec::Switch { breakage, .. } => {
            let expected = breakage.map(|b| match b {
                ResponseBreakage::NoUpgrade => ResponseError::MissingUpgrade,
                ResponseBreakage::NoConnection => ResponseError::MissingConnectionUpgrade,
                ResponseBreakage::NoAccept
                | ResponseBreakage::WrongAccept
                | ResponseBreakage::TwoAccepts => ResponseError::BadAccept,
                ResponseBreakage::UnofferedProtocol => {
                    ResponseError::UnexpectedProtocol("x-unoffered".into())
                }
                ResponseBreakage::Extension => {
                    ResponseError::UnexpectedExtension("permessage-deflate".into())
                }
            });
            match expected {
                None => assert!(matches!(verdict, Some(Event::Open(_))), "{verdict:?}"),
                Some(expected) => assert_eq!(error, Some(expected)),
            }
        }
        ResponseSpec::Refuse { length, body, .. } => {
            // The client keeps at most `max_handshake_size` bytes of the
            // body; without a Content-Length the body runs to EOF.
            let cap = conn.config().max_handshake_size;
            let wanted = if *length { body.len().min(cap) } else { cap };
            if body.len() < wanted {
                assert!(verdict.is_none(), "{verdict:?}");
                return;
            }
            let Some(ResponseError::Rejected {
                status, body: got, ..
            }) = error
            else {
                panic!("{response:?}: got {error:?}");
            };
            assert!((100..=999).contains(&status) && status != 101);
            assert_eq!(&got[..], &body[..wanted]);
        }
    }
}
