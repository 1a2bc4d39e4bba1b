//! # sockeye-tokio
//!
//! The tokio driver for [`sockeye_core`]: a thin layer that moves bytes
//! between a stream and the core's state machine, arms one timer per
//! connection, and maps events to an async API. Every protocol decision is
//! the core's.
//!
//! * Server: [`accept`] for the common case, [`Incoming`] to look at the
//!   request (path, origin, subprotocols, headers) and accept or refuse it,
//!   on any `AsyncRead + AsyncWrite` stream; [`WebSocket::from_upgraded`]
//!   when hyper or axum did the HTTP upgrade.
//! * Client: [`connect`] to a `ws://` URL, or [`Client`] for subprotocols,
//!   headers, a config and caller-supplied streams.
//! * [`WebSocket`]: `recv`/`send`/`feed`/`close`, a `Stream` and a `Sink`,
//!   and [`split`](WebSocket::split) into halves for two tasks.
//!
//! ```no_run
//! use sockeye_tokio::{Message, connect};
//!
//! # async fn run() -> Result<(), sockeye_tokio::Error> {
//! let mut socket = connect("ws://127.0.0.1:9001/").await?;
//! socket.send(Message::text(r#"{"type":"agent_started"}"#)).await?;
//! while let Some(message) = socket.recv().await {
//!     println!("{:?}", message?);
//! }
//! println!("closed: {:?}", socket.closed());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod driver;
mod error;
mod server;
mod socket;

pub use client::{Client, connect};
pub use error::Error;
pub use server::{Incoming, accept};
pub use socket::{ReadHalf, WebSocket, WriteHalf};
pub use sockeye_core::{CloseCode, Closed, Config, Handshake, Message, Request, Response, Role};
