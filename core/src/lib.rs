//! # sockeye-core
//!
//! A sans-IO WebSocket engine: the HTTP/1.1 upgrade handshake in both roles,
//! RFC 6455 framing, UTF-8 rules, the close handshake, and a heartbeat, as a
//! deterministic state machine with no sockets, threads or clock.
//!
//! The caller passes in bytes and [`Instant`](std::time::Instant)s and takes
//! out bytes, events and the next deadline; see [`Connection`] for the
//! contract and a complete example. The same inputs always produce the same
//! outputs, so tests, property tests and fuzz crashes replay exactly.
//!
//! The layers, each usable alone:
//!
//! * [`Connection`]: handshake, messages, heartbeat and close for one peer.
//! * [`frame`]: headers and the incremental [`frame::Decoder`].
//! * [`apply_mask`], [`accept_key`], [`Extension::parse_list`]: the
//!   protocol's building blocks.
//!
//! ## Driving a server connection by hand
//!
//! ```
//! use std::io::IoSlice;
//! use std::time::Instant;
//! use sockeye_core::{Config, Connection, Event, Handshake, Message, Response};
//!
//! let now = Instant::now();
//! let mut conn = Connection::server(Config::default(), now)?;
//! conn.handle_input(now, b"GET /chat HTTP/1.1\r\nHost: example.com\r\n\
//!     Upgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
//!
//! while let Some(event) = conn.poll_event() {
//!     match event {
//!         Event::Request(request) if request.path == "/chat" => {
//!             conn.accept(now, Handshake::default())?
//!         }
//!         Event::Request(_) => conn.respond(now, Response::new(404, "no such endpoint"))?,
//!         Event::Open(_) => conn.send(now, Message::text("welcome"))?,
//!         _ => {}
//!     }
//! }
//! let mut slices = [IoSlice::new(&[]); 8];
//! let n = conn.poll_transmit(&mut slices);
//! let wire: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
//! assert!(wire.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(wire.ends_with(b"\r\n\r\n\x81\x07welcome"));
//! conn.handle_written(now, wire.len());
//! // The next thing to do: send a ping after 30 s of silence.
//! assert!(conn.poll_timeout().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod close;
mod config;
mod connection;
mod error;
mod event;
pub mod frame;
mod handshake;
#[cfg(feature = "hub")]
pub mod hub;
mod mask;
mod message;
mod outbox;
mod random;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod utf8;

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use config::{Config, ConfigError};
pub use connection::{Connection, State};
pub use error::{Error, ProtocolError, RequestError, ResponseError, UsageError};
pub use event::{Closed, Event, TransportAction};
pub use frame::Role;
pub use handshake::{ClientRequest, Extension, Handshake, Header, Request, Response, accept_key};
pub use mask::apply_mask;
pub use message::Message;
pub use utf8::Utf8Bytes;

/// Compiles and runs the examples in the repository's README.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
