//! The hub: per-user delivery of typed agent events over WebSocket
//! connections, as a sans-IO state machine (feature `hub`).
//!
//! * [`event`]: the events the hub delivers, their JSON and their checks.
//! * [`Error`]: every failure the hub reports, as values.

mod error;
pub mod event;

pub use error::Error;
