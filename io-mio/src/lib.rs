//! # sockeye-mio
//!
//! The mio driver for [`sockeye_core`], for applications that already own
//! an event loop (a game server, a trading gateway, an embedded proxy) and
//! want WebSockets inside it without an async runtime.
//!
//! A [`Driver`] registers its listeners and connections with the caller's
//! `mio::Poll`, under tokens from a range the caller gives, and keeps every
//! connection's deadline in one heap. It stays thin: it moves bytes between
//! sockets and the core, and the core makes every protocol decision.
//!
//! ```no_run
//! use std::time::Instant;
//! use mio::{Events, Poll};
//! use sockeye_mio::{Config, Driver, Event, Handshake};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut poll = Poll::new()?;
//! let mut driver = Driver::new(poll.registry(), 1..100_001, Config::default())?;
//! driver.listen(mio::net::TcpListener::bind("127.0.0.1:9002".parse()?)?)?;
//! let mut events = Events::with_capacity(1024);
//! loop {
//!     poll.poll(&mut events, driver.next_timeout(Instant::now()))?;
//!     let now = Instant::now();
//!     for event in events.iter() {
//!         if !driver.handle_event(event, now) {
//!             // One of the application's own sources.
//!         }
//!     }
//!     driver.handle_timeouts(now);
//!     while let Some((id, event)) = driver.poll_event(now) {
//!         match event {
//!             Event::Request(_) => driver.accept(id, now, Handshake::default())?,
//!             Event::Message(message) => {
//!                 driver.send(id, now, message)?;
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! See [`Driver`] for the loop's contract and a runnable example, and the
//! crate's `examples/`: `echo_server` (the Autobahn testee) and `chat` (a
//! broadcast server with its own timer next to the driver's).

// One unsafe call, allowed where it is made: handing the core the count of
// bytes read straight into its message buffer.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod connection_id;
mod driver;
mod error;
mod timers;

pub use connection_id::ConnectionId;
pub use driver::Driver;
pub use error::Error;
pub use sockeye_core::{
    ClientRequest, CloseCode, CloseFrame, Closed, Config, Event, Handshake, Message, Request,
    Response,
};
